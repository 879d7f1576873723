// RegisterModule, the module factory, the per-request module and the global module.
//
// Per request (OnExecuteRequestHandler) the module builds the request head from IIS, starts it
// in the engine (ancm_request_start) and returns RQ_NOTIFICATION_PENDING. From then on the
// engine drives the request through four callbacks, which this file translates into IIS calls:
//
//   body_wanted    → IHttpRequest::ReadEntityBody (async); its completion → supply/end body
//   response_head  → IHttpResponse::SetStatus + SetHeader (+ DisableBuffering)
//   response_body  → IHttpResponse::WriteEntityChunks (async) [+ Flush (async) when the engine
//                    says nothing more is ready]; the completion → ancm_request_ack_write
//   complete       → IHttpContext::PostCompletion(0); the OnAsyncCompletion that follows ends
//                    the request (CONTINUE; FINISH_REQUEST when cancelled; reset when aborted)
//
// A 101 (WebSocket) switches the request to fragments: the head callback asks the engine for
// them (ancm_request_websocket_fragments) and flushes the 101; from then on body_wanted and the
// engine's fragments go to the WebSocket pump (websocket.cpp), whose operations IIS completes
// through its own completion routine, not OnAsyncCompletion.
//
// Threads. Engine callbacks run on the engine's core threads; IIS completions arrive on IIS
// threads in OnAsyncCompletion; a client disconnect arrives on an IIS thread through the
// connection's stored context. All three touch the request's state and call IIS, so each does
// so under the request's lock (a CRITICAL_SECTION: recursive, so an IIS that completed an
// operation inline on the calling thread would not deadlock). This is what ANCM's
// out-of-process handler does from its WinHTTP callback threads. Nothing here blocks an IIS
// thread on the engine: the engine's request calls return at once and never run a callback
// inside them.
//
// One asynchronous IIS operation at a time (IIS allows no more without full duplex): the head
// asks the engine for serialize_io, so a body read and a response write are never both
// outstanding; `io_` records which one is.
//
// Lifetime. The module object lives in IIS's request memory until Dispose, which IIS calls
// only after a notification returned something other than PENDING. The engine's handle, which
// owns the bytes of the last response write, is freed in Dispose: IIS documents that the
// memory of an asynchronous unbuffered WriteEntityChunks must be preserved until the request
// completes, not only until the write's completion (ANCM, too, frees its buffers when its
// handler is destroyed). The last action on the way out is PostCompletion (or the return of
// the final OnAsyncCompletion), after which nothing but Dispose touches the object.

#include "glue.h"
#include "websocket.h"

#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace iisglue {
namespace {

// The request header names of HTTP_REQUEST.Headers.KnownHeaders, by HTTP_HEADER_ID
// (HttpHeaderCacheControl = 0 … HttpHeaderUserAgent = 40): HTTP.sys parses these into slots
// and keeps only the value.
const char *const kKnownRequestHeaders[HttpHeaderRequestMaximum] = {
    "Cache-Control",     "Connection",        "Date",
    "Keep-Alive",        "Pragma",            "Trailer",
    "Transfer-Encoding", "Upgrade",           "Via",
    "Warning",           "Allow",             "Content-Length",
    "Content-Type",      "Content-Encoding",  "Content-Language",
    "Content-Location",  "Content-MD5",       "Content-Range",
    "Expires",           "Last-Modified",     "Accept",
    "Accept-Charset",    "Accept-Encoding",   "Accept-Language",
    "Authorization",     "Cookie",            "Expect",
    "From",              "Host",              "If-Match",
    "If-Modified-Since", "If-None-Match",     "If-Range",
    "If-Unmodified-Since", "Max-Forwards",    "Proxy-Authorization",
    "Referer",           "Range",             "TE",
    "Translate",         "User-Agent",
};

const DWORD kReadBufferSize = 64 * 1024;

class RequestModule;

// Lives on an IIS connection (IHttpConnectionStoredContext), shared by the requests made on
// it one after another; IIS calls NotifyDisconnect when the client goes away and
// CleanupStoredContext when the connection is destroyed. Reference-counted because IIS and
// the request currently attached both hold it.
class ConnectionContext final : public IHttpConnectionStoredContext {
public:
    ConnectionContext() { InitializeCriticalSection(&lock_); }

    VOID CleanupStoredContext() override { Release(); }
    VOID NotifyDisconnect() override;

    void AddRef() { InterlockedIncrement(&refs_); }
    void Release()
    {
        if (InterlockedDecrement(&refs_) == 0) {
            delete this;
        }
    }
    // Returns whether the client has gone already: IIS notified this connection before the
    // request attached (ANCM's DisconnectHandler remembers that too and fires at once).
    bool Attach(RequestModule *m)
    {
        EnterCriticalSection(&lock_);
        current_ = m;
        const bool fired = fired_;
        LeaveCriticalSection(&lock_);
        return fired;
    }
    void Detach(RequestModule *m)
    {
        EnterCriticalSection(&lock_);
        if (current_ == m) {
            current_ = nullptr;
        }
        LeaveCriticalSection(&lock_);
    }

private:
    ~ConnectionContext() { DeleteCriticalSection(&lock_); }

    // Lock order: this lock, then the request's (NotifyDisconnect); never the reverse
    // (requests detach after leaving their own lock).
    CRITICAL_SECTION lock_;
    RequestModule *current_ = nullptr;
    bool fired_ = false; // NotifyDisconnect came: every later request on it is gone too
    LONG refs_ = 1;      // IIS's reference, dropped by CleanupStoredContext
};

// One per request, placed by IIS's IModuleAllocator (IIS owns the memory).
class RequestModule final : public CHttpModule {
public:
    RequestModule() { InitializeCriticalSection(&lock_); }

    REQUEST_NOTIFICATION_STATUS OnExecuteRequestHandler(IHttpContext *ctx,
                                                        IHttpEventProvider *provider) override
    {
        try {
            return Execute(ctx, provider);
        } catch (...) {
            // Most likely bad_alloc before the engine had the request. Nothing may escape into
            // IIS; fail this request only.
            if (provider != nullptr) {
                provider->SetErrorStatus(E_UNEXPECTED);
            }
            Detach();
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }
    }

    // IIS thread: an asynchronous read, write or flush completed, or the PostCompletion(0)
    // made by `complete`. Returns PENDING while the engine still has the request.
    REQUEST_NOTIFICATION_STATUS OnAsyncCompletion(IHttpContext *, DWORD, BOOL,
                                                  IHttpEventProvider *,
                                                  IHttpCompletionInfo *info) override
    {
        EnterCriticalSection(&lock_);
        const Io op = io_;
        io_ = Io::None;
        if (done_) {
            // The engine is done and nothing of ours is outstanding any more: end the
            // request here (no PostCompletion needed, this is the notification's end).
            REQUEST_NOTIFICATION_STATUS st = FinishLocked();
            LeaveCriticalSection(&lock_);
            Detach();
            return st;
        }
        const HRESULT hr = info != nullptr ? info->GetCompletionStatus() : S_OK;
        const DWORD bytes = info != nullptr ? info->GetCompletionBytes() : 0;
        switch (op) {
        case Io::Read:
            ReadDoneLocked(hr, bytes);
            break;
        case Io::Write:
            WriteDoneLocked(hr);
            break;
        case Io::Flush:
            FlushDoneLocked(hr);
            break;
        case Io::Upgrade:
            UpgradeFlushedLocked(hr);
            break;
        case Io::None:
            break; // nothing outstanding and not done: nothing to do
        }
        LeaveCriticalSection(&lock_);
        return RQ_NOTIFICATION_PENDING;
    }

    // IIS thread (through ConnectionContext): the client went away.
    void OnClientDisconnect()
    {
        EnterCriticalSection(&lock_);
        disconnected_ = true;
        CancelLocked();
        LeaveCriticalSection(&lock_);
    }

    // The memory belongs to IModuleAllocator: destroy, never free.
    VOID Dispose() override { this->~RequestModule(); }
    static void operator delete(void *) {}

private:
    // Upgrade: the flush of a 101, after which IIS's WebSocket context exists.
    enum class Io { None, Read, Write, Flush, Upgrade };

    ~RequestModule()
    {
        // The one place the engine's handle is freed (see "Lifetime" above). Before `complete`
        // (IIS disposing a request the engine still had: a bug in the glue's state machine)
        // this cancels it too.
        Detach();
        delete ws_;
        ancm_request_free(req_);
        DeleteCriticalSection(&lock_);
    }

    REQUEST_NOTIFICATION_STATUS Execute(IHttpContext *ctx, IHttpEventProvider *provider)
    {
        ctx_ = ctx;
        IHttpRequest *request = ctx->GetRequest();
        IHttpResponse *response = ctx->GetResponse();
        const HTTP_REQUEST *raw = request != nullptr ? request->GetRawHttpRequest() : nullptr;
        if (response == nullptr || raw == nullptr) {
            provider->SetErrorStatus(E_POINTER);
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }
        // A client already gone is not forwarded (ANCM's forwardinghandler.cpp: 400 when
        // IHttpConnection::IsConnected() is false at the start); a long poll would otherwise
        // hold a backend request for nobody until requestTimeout.
        IHttpConnection *connection = ctx->GetConnection();
        if (connection == nullptr || !connection->IsConnected()) {
            return ClientGone();
        }
        std::shared_ptr<AppEntry> app = GetApp(ctx);
        if (!app) {
            provider->SetErrorStatus(E_OUTOFMEMORY);
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }
        if (!app->app) {
            // 500.19 is IIS's "configuration data is invalid" status, as ANCM uses it.
            return WriteErrorPage(500, 19, "Internal Server Error", app->error);
        }

        // ---- The head, borrowed from IIS for the duration of ancm_request_start ----
        ancm_request_head head;
        std::memset(&head, 0, sizeof head);
        PCSTR method = request->GetHttpMethod();
        head.method = ancm::slice(method != nullptr ? method : "");
        std::string target;
        if (!BuildTarget(request, raw, target)) {
            return WriteErrorPage(400, 0, "Bad Request", "the request has no usable URL");
        }
        head.target = ancm::slice(target);

        std::vector<ancm_header> headers;
        headers.reserve(HttpHeaderRequestMaximum + raw->Headers.UnknownHeaderCount);
        bool chunked = false;
        const char *contentLength = nullptr;
        USHORT contentLengthLen = 0;
        for (int id = 0; id < HttpHeaderRequestMaximum; ++id) {
            const HTTP_KNOWN_HEADER &h = raw->Headers.KnownHeaders[id];
            if (h.pRawValue == nullptr) {
                continue;
            }
            if (id == HttpHeaderTransferEncoding) {
                chunked = true; // HTTP.sys accepts only chunked as a request coding
            } else if (id == HttpHeaderContentLength) {
                contentLength = h.pRawValue;
                contentLengthLen = h.RawValueLength;
            }
            ancm_header hh;
            hh.name = ancm::slice(kKnownRequestHeaders[id]);
            hh.value.ptr = reinterpret_cast<const uint8_t *>(h.pRawValue);
            hh.value.len = h.RawValueLength;
            headers.push_back(hh);
        }
        for (USHORT i = 0; i < raw->Headers.UnknownHeaderCount; ++i) {
            const HTTP_UNKNOWN_HEADER &h = raw->Headers.pUnknownHeaders[i];
            ancm_header hh;
            hh.name.ptr = reinterpret_cast<const uint8_t *>(h.pName);
            hh.name.len = h.pName != nullptr ? h.NameLength : 0;
            hh.value.ptr = reinterpret_cast<const uint8_t *>(h.pRawValue);
            hh.value.len = h.pRawValue != nullptr ? h.RawValueLength : 0;
            headers.push_back(hh);
        }
        head.headers = headers.empty() ? nullptr : headers.data();
        head.header_count = headers.size();
        head.content_length = 0;
        if (chunked) {
            head.content_length = -1;
        } else if (contentLength != nullptr) {
            // HTTP.sys has validated the value; parse the decimal digits.
            long long n = 0;
            for (USHORT i = 0; i < contentLengthLen; ++i) {
                char c = contentLength[i];
                if (c >= '0' && c <= '9' && n < (1LL << 58)) {
                    n = n * 10 + (c - '0');
                }
            }
            head.content_length = n;
        } else if (raw->Version.MajorVersion >= 2 &&
                   (raw->Flags & HTTP_REQUEST_FLAG_MORE_ENTITY_BODY_EXISTS) != 0) {
            // HTTP/2 has no chunked coding: a body without Content-Length (every gRPC call's)
            // is announced by HTTP.sys's flag and read to its end.
            head.content_length = -1;
        }

        PCSTR remoteAddr = nullptr, remotePort = nullptr, https = nullptr;
        DWORD remoteAddrLen = 0, remotePortLen = 0, httpsLen = 0;
        if (FAILED(ctx->GetServerVariableA("REMOTE_ADDR", &remoteAddr, &remoteAddrLen))) {
            remoteAddr = nullptr;
        }
        if (FAILED(ctx->GetServerVariableA("REMOTE_PORT", &remotePort, &remotePortLen))) {
            remotePort = nullptr;
        }
        if (FAILED(ctx->GetServerVariableA("HTTPS", &https, &httpsLen))) {
            https = nullptr;
        }
        head.client_address.ptr = reinterpret_cast<const uint8_t *>(remoteAddr);
        head.client_address.len = remoteAddr != nullptr ? remoteAddrLen : 0;
        unsigned port = 0;
        for (DWORD i = 0; remotePort != nullptr && i < remotePortLen; ++i) {
            if (remotePort[i] >= '0' && remotePort[i] <= '9' && port < 65536) {
                port = port * 10 + static_cast<unsigned>(remotePort[i] - '0');
            }
        }
        head.client_port = static_cast<uint16_t>(port < 65536 ? port : 0);
        head.https = https != nullptr && httpsLen == 2 && _strnicmp(https, "on", 2) == 0;
        if (raw->pSslInfo != nullptr && raw->pSslInfo->pClientCertInfo != nullptr &&
            raw->pSslInfo->pClientCertInfo->pCertEncoded != nullptr) {
            head.client_cert_der.ptr = raw->pSslInfo->pClientCertInfo->pCertEncoded;
            head.client_cert_der.len = raw->pSslInfo->pClientCertInfo->CertEncodedSize;
        }
        // The Windows user and its token: the engine decides whether to forward it
        // (forwardWindowsAuthToken, Negotiate/NTLM) and duplicates it into the backend that gets
        // the request; the token stays IIS's (borrowed during ancm_request_start only).
        std::string authType;
        IHttpUser *user = ctx->GetUser();
        if (user != nullptr) {
            PCWSTR type = user->GetAuthenticationType();
            authType = ToUtf8(type, type != nullptr ? wcslen(type) : 0);
            // The impersonation token when there is no primary one, as ANCM does
            // (forwardinghandler.cpp, GetHeaders).
            HANDLE token = user->GetPrimaryToken();
            if (token == nullptr || token == INVALID_HANDLE_VALUE) {
                token = user->GetImpersonationToken();
            }
            if (token != nullptr && token != INVALID_HANDLE_VALUE) {
                head.windows_token = token;
            }
        }
        head.auth_type = ancm::slice(authType);
        head.serialize_io = true;

        // HTTP/2 clients: trailers and stream resets go out through IHttpResponse4 (IIS on
        // Windows Server 2022 and later). Without it a gRPC call, whose status is a trailer,
        // could only end as a broken stream, so it gets a clear error and is not forwarded.
        http2_ = raw->Version.MajorVersion >= 2;
        if (http2_) {
            response4_ = QueryResponse4(ctx->GetResponse());
            if (response4_ == nullptr && IsGrpc(head)) {
                static const char why[] =
                    "this IIS cannot send HTTP/2 response trailers (IHttpResponse4, Windows Server "
                    "2022 or later), which gRPC needs for its status: the call was not forwarded";
                TraceUtf8(why, sizeof why - 1);
                return WriteErrorPage(502, 0, "Bad Gateway", why);
            }
        }

        // Listen for a client disconnect before the engine can start calling back. One that
        // IIS reported before this request attached means the client is gone already.
        if (Attach(ctx)) {
            Detach();
            return ClientGone();
        }

        static const ancm_callbacks callbacks = {&BodyWanted, &ResponseHead, &ResponseBody,
                                                 &Complete, &ResponseTrailers};
        // Under the request's lock, so that a disconnect on another thread sees req_ either
        // unset or set. ancm_request_start writes req_ before any callback can run; callbacks
        // that run meanwhile wait for the lock.
        EnterCriticalSection(&lock_);
        ancm_result r = ancm_request_start(app->app.get(), &head, &callbacks, this, &req_);
        if (r == ANCM_RESULT_OK && disconnected_) {
            CancelLocked(); // the client left before the engine had the request
        }
        LeaveCriticalSection(&lock_);
        if (r != ANCM_RESULT_OK) {
            Detach();
            const char *m = ancm_result_message(r);
            TraceUtf8(m, strlen(m));
            // The head came from IIS, so what the engine refuses is the client's request.
            const bool clientError = (r >= ANCM_RESULT_INVALID_METHOD &&
                                      r <= ANCM_RESULT_INVALID_CLIENT_ADDRESS) ||
                                     r == ANCM_RESULT_FRAMING_HEADER;
            return clientError ? WriteErrorPage(400, 0, "Bad Request", m)
                               : WriteErrorPage(500, 0, "Internal Server Error", m);
        }
        // Completions of what the callbacks started (and the final PostCompletion) arrive
        // only after this notification has returned PENDING.
        return RQ_NOTIFICATION_PENDING;
    }

    // The target for the backend, a valid origin-form target built by the engine's escaping
    // rule (ancm_target_escape_*). When IIS did not change the URL (GetUrlChanged FALSE) and
    // pRawUrl is usable, the client's target as sent: %2F and every other escape survive,
    // which the decoded CookedUrl would lose. Otherwise the URL as IIS has it now, so that an
    // inbound URL Rewrite rule takes effect as with ANCM (which always forwards the cooked URL,
    // re-escaped: url_utility.cpp, EscapeAbsPath): after a rewrite (pRawUrl is still the
    // client's), for a warm-up request without pRawUrl, for an absolute-form pRawUrl.
    static bool BuildTarget(IHttpRequest *request, const HTTP_REQUEST *raw, std::string &out)
    {
        const char *sent = raw->pRawUrl;
        size_t sentLen = sent != nullptr ? raw->RawUrlLength : 0;
        // Application Initialization's requests may count a trailing NUL (ASP.NET Core's
        // IISHttpContext.cs, GetOriginalPath).
        if (sentLen > 0 && sent[sentLen - 1] == '\0') {
            --sentLen;
        }
        const bool usable = sentLen > 0 && (sent[0] == '/' || (sentLen == 1 && sent[0] == '*'));
        size_t len = 0;
        ancm_result r;
        if (!request->GetUrlChanged() && usable) {
            out.resize(3 * sentLen);
            r = ancm_target_escape_sent(ancm::slice(std::string_view(sent, sentLen)),
                                        reinterpret_cast<uint8_t *>(&out[0]), out.size(), &len);
        } else {
            const HTTP_COOKED_URL &cooked = raw->CookedUrl;
            if (cooked.pAbsPath == nullptr || cooked.AbsPathLength == 0) {
                return false;
            }
            const size_t path = cooked.AbsPathLength / sizeof(WCHAR);
            const size_t query =
                cooked.pQueryString != nullptr ? cooked.QueryStringLength / sizeof(WCHAR) : 0;
            out.resize(9 * (path + query));
            r = ancm_target_escape_decoded_utf16(
                reinterpret_cast<const uint16_t *>(cooked.pAbsPath), path,
                reinterpret_cast<const uint16_t *>(cooked.pQueryString), query,
                reinterpret_cast<uint8_t *>(&out[0]), out.size(), &len);
        }
        if (r != ANCM_RESULT_OK) {
            return false;
        }
        out.resize(len);
        return true;
    }

    // IIS's IHttpResponse4 for this response, as httpserv.h's HttpGetExtendedInterface gets it
    // (IHttpServer2::GetExtendedInterface from IID_IHttpResponse to IID_IHttpResponse4); NULL
    // where IIS predates it.
    static IHttpResponse4 *QueryResponse4(IHttpResponse *response)
    {
        void *p = nullptr;
        if (g_server == nullptr || FAILED(g_server->GetExtendedInterface(HTTP_SERVER_INTERFACE_V2, &p)) ||
            p == nullptr) {
            return nullptr;
        }
        void *r4 = nullptr;
        if (FAILED(static_cast<IHttpServer2 *>(p)->GetExtendedInterfaceByGuid(
                IID_IHttpResponse, response, IID_IHttpResponse4, &r4))) {
            return nullptr;
        }
        return static_cast<IHttpResponse4 *>(r4);
    }

    // A gRPC call: Content-Type application/grpc, with or without a +suffix or parameters
    // (gRPC's HTTP/2 protocol document).
    static bool IsGrpc(const ancm_request_head &head)
    {
        static const char grpc[] = "application/grpc";
        const size_t n = sizeof grpc - 1;
        for (size_t i = 0; i < head.header_count; ++i) {
            const ancm_header &h = head.headers[i];
            if (h.name.len == 12 && _strnicmp(reinterpret_cast<const char *>(h.name.ptr), "Content-Type", 12) == 0) {
                const char *v = reinterpret_cast<const char *>(h.value.ptr);
                return h.value.len >= n && _strnicmp(v, grpc, n) == 0 &&
                       (h.value.len == n || v[n] == '+' || v[n] == ';');
            }
        }
        return false;
    }

    // The client went away before the request was forwarded: nothing is sent to the backend,
    // and the status is ANCM's (400, WSAECONNRESET) for IIS's log; no one reads the body.
    REQUEST_NOTIFICATION_STATUS ClientGone()
    {
        const HRESULT connReset = HRESULT_FROM_WIN32(10054); // WSAECONNRESET
        ctx_->GetResponse()->SetStatus(400, "Bad Request", 0, connReset, nullptr, FALSE);
        return RQ_NOTIFICATION_FINISH_REQUEST;
    }

    // A small HTML page for errors the glue answers itself (the engine makes its own pages,
    // such as 502.5 and 503, and they arrive as ordinary responses). Synchronous: it runs on
    // the IIS thread of OnExecuteRequestHandler, and the page is small.
    REQUEST_NOTIFICATION_STATUS WriteErrorPage(USHORT status, USHORT substatus,
                                               const char *reason, const std::string &message)
    {
        IHttpResponse *response = ctx_->GetResponse();
        page_ = "<!DOCTYPE html>\n<html><head><title>ancm-rs: ";
        page_ += reason;
        page_ += "</title></head><body><h1>HTTP Error " + std::to_string(status);
        if (substatus != 0) {
            page_ += "." + std::to_string(substatus);
        }
        page_ += " - ";
        page_ += reason;
        page_ += "</h1><p>";
        for (char c : message) {
            switch (c) {
            case '<': page_ += "&lt;"; break;
            case '>': page_ += "&gt;"; break;
            case '&': page_ += "&amp;"; break;
            case '"': page_ += "&quot;"; break;
            default: page_ += c;
            }
        }
        page_ += "</p></body></html>\n";
        HRESULT hr = response->SetStatus(status, reason, substatus, S_OK, nullptr, TRUE);
        if (SUCCEEDED(hr)) {
            static const char type[] = "text/html; charset=utf-8";
            hr = response->SetHeaderByName("Content-Type", type, sizeof type - 1, TRUE);
        }
        if (SUCCEEDED(hr)) {
            HTTP_DATA_CHUNK chunk;
            ZeroMemory(&chunk, sizeof chunk);
            chunk.DataChunkType = HttpDataChunkFromMemory;
            chunk.FromMemory.pBuffer = &page_[0];
            chunk.FromMemory.BufferLength = static_cast<ULONG>(page_.size());
            DWORD sent = 0;
            BOOL completionExpected = FALSE;
            hr = response->WriteEntityChunks(&chunk, 1, FALSE, FALSE, &sent, &completionExpected);
        }
        return RQ_NOTIFICATION_FINISH_REQUEST;
    }

    // ---- Engine callbacks (core threads; must not block beyond the request's lock) ----

    static void BodyWanted(void *userdata)
    {
        RequestModule *self = static_cast<RequestModule *>(userdata);
        EnterCriticalSection(&self->lock_);
        if (self->ws_ != nullptr) {
            self->ws_->WantReadLocked(); // after a 101: the client's next WebSocket fragment
        } else {
            self->StartReadLocked();
        }
        LeaveCriticalSection(&self->lock_);
    }

    // After a 101: a WebSocket fragment from the backend (see websocket.cpp).
    static void WsFragment(void *userdata, const ancm_ws_fragment *fragment)
    {
        RequestModule *self = static_cast<RequestModule *>(userdata);
        EnterCriticalSection(&self->lock_);
        if (self->ws_ != nullptr) {
            self->ws_->WriteLocked(fragment);
        }
        LeaveCriticalSection(&self->lock_);
    }

    // The pump's last outstanding operation completed after the engine had completed: end
    // the request now (IIS thread, outside the lock).
    static void WsDrained(void *owner)
    {
        RequestModule *self = static_cast<RequestModule *>(owner);
        EnterCriticalSection(&self->lock_);
        const bool post = self->io_ == Io::None;
        IHttpContext *ctx = self->ctx_;
        LeaveCriticalSection(&self->lock_);
        if (post) {
            self->Detach();
            if (FAILED(ctx->PostCompletion(0))) {
                Trace(L"PostCompletion failed; the request cannot be ended");
            }
        }
    }

    static void ResponseHead(void *userdata, const ancm_response_head *head)
    {
        RequestModule *self = static_cast<RequestModule *>(userdata);
        EnterCriticalSection(&self->lock_);
        try {
            self->SetHeadLocked(head);
        } catch (...) {
            self->CancelLocked(); // out of memory: give up on this request
        }
        LeaveCriticalSection(&self->lock_);
    }

    static void ResponseBody(void *userdata, const uint8_t *data, size_t len, bool flush)
    {
        RequestModule *self = static_cast<RequestModule *>(userdata);
        EnterCriticalSection(&self->lock_);
        self->StartWriteLocked(data, len, flush);
        LeaveCriticalSection(&self->lock_);
    }

    // The backend's trailers, after its last chunk was written: to an HTTP/2 client through
    // IHttpResponse4::SetTrailer (IIS sends them after the body); an HTTP/1.1 client gets none
    // (HTTP.sys sends trailers on HTTP/2 only).
    static void ResponseTrailers(void *userdata, const ancm_header *headers, size_t count)
    {
        RequestModule *self = static_cast<RequestModule *>(userdata);
        EnterCriticalSection(&self->lock_);
        if (self->response4_ != nullptr && self->http2_ && !self->done_) {
            try {
                std::vector<std::string_view> seen;
                for (size_t i = 0; i < count; ++i) {
                    std::string name(ancm::view(headers[i].name));
                    // A NUL-terminated copy, as for SetHeader (PCSTR); an empty value (grpcio's
                    // `grpc-message:`) is "" rather than a null pointer.
                    std::string value(ancm::view(headers[i].value));
                    bool first = true;
                    for (std::string_view s : seen) {
                        first = first && !(s.size() == name.size() &&
                                           _strnicmp(s.data(), name.data(), name.size()) == 0);
                    }
                    if (first) {
                        seen.push_back(ancm::view(headers[i].name));
                    }
                    // IIS takes a USHORT length: a longer value cannot be sent whole.
                    if (value.size() > 0xFFFF ||
                        FAILED(self->response4_->SetTrailer(name.c_str(), value.c_str(),
                                                            static_cast<USHORT>(value.size()),
                                                            first ? TRUE : FALSE))) {
                        self->CancelLocked();
                        break;
                    }
                }
            } catch (...) {
                self->CancelLocked();
            }
        }
        LeaveCriticalSection(&self->lock_);
    }

    static void Complete(void *userdata, ancm_result result, const uint8_t *message, size_t len)
    {
        RequestModule *self = static_cast<RequestModule *>(userdata);
        if (result != ANCM_RESULT_OK && message != nullptr) {
            TraceUtf8(reinterpret_cast<const char *>(message), len);
        }
        uint32_t code = 0;
        if (result != ANCM_RESULT_STREAM_RESET ||
            ancm_request_reset_code(self->req_, &code) != ANCM_RESULT_OK) {
            code = 2; // INTERNAL_ERROR
        }
        EnterCriticalSection(&self->lock_);
        self->resetCode_ = code;
        self->done_ = true;
        self->result_ = result;
        // With an IIS operation outstanding, its completion ends the request; otherwise post.
        // After an upgrade the WebSocket pump's operations count too (WsDrained posts once they
        // end). Either way the engine's handle (and the chunk bytes IIS may still use) lives
        // until Dispose.
        bool post = self->io_ == Io::None;
        if (self->ws_ != nullptr && !self->ws_->EndLocked(result != ANCM_RESULT_OK)) {
            post = false;
        }
        IHttpContext *ctx = self->ctx_;
        LeaveCriticalSection(&self->lock_);
        if (post) {
            self->Detach();
            // The last touch of this object on this thread: IIS may run the final
            // OnAsyncCompletion and Dispose as soon as it has the completion.
            HRESULT hr = ctx->PostCompletion(0);
            if (FAILED(hr)) {
                Trace(L"PostCompletion failed; the request cannot be ended");
            }
        }
    }

    // ---- IIS operations (under the request's lock) ----

    void StartReadLocked()
    {
        if (done_ || req_ == nullptr) {
            return;
        }
        if (readBuffer_.empty()) {
            try {
                readBuffer_.resize(kReadBufferSize);
            } catch (...) {
                CancelLocked();
                return;
            }
        }
        DWORD received = 0;
        BOOL pending = FALSE;
        io_ = Io::Read;
        HRESULT hr = ctx_->GetRequest()->ReadEntityBody(readBuffer_.data(), kReadBufferSize, TRUE,
                                                        &received, &pending);
        if (SUCCEEDED(hr) && pending) {
            return; // OnAsyncCompletion brings the bytes
        }
        io_ = Io::None;
        ReadDoneLocked(hr, received);
    }

    void ReadDoneLocked(HRESULT hr, DWORD bytes)
    {
        if (req_ == nullptr || done_) {
            return;
        }
        ancm_result r;
        if (hr == HRESULT_FROM_WIN32(ERROR_HANDLE_EOF) || (SUCCEEDED(hr) && bytes == 0)) {
            r = ancm_request_end_body(req_); // the client sent all of it
        } else if (FAILED(hr)) {
            CancelLocked(); // the client connection failed
            return;
        } else {
            r = ancm_request_supply_body(req_, reinterpret_cast<const uint8_t *>(readBuffer_.data()),
                                         bytes);
        }
        if (r != ANCM_RESULT_OK) {
            CancelLocked();
        }
    }

    void SetHeadLocked(const ancm_response_head *head)
    {
        if (done_ || req_ == nullptr) {
            return;
        }
        IHttpResponse *response = ctx_->GetResponse();
        std::string reason(ancm::view(head->reason));
        // fTrySkipCustomErrors: the app's (or the engine's) body is the answer, as with ANCM.
        HRESULT hr =
            response->SetStatus(head->status, reason.c_str(), head->substatus, S_OK, nullptr, TRUE);
        // The backend's headers replace IIS's own (IHttpResponse::SetHeader: fReplace FALSE
        // would append to a value IIS set, such as Server): the first of each name replaces,
        // the next ones of that name are added (Set-Cookie: every value arrives). Names and
        // values go as NUL-terminated copies, as the API types them (PCSTR) and ANCM passes
        // them.
        std::string name, value;
        std::vector<std::string_view> seen;
        bool server = false;
        for (size_t i = 0; SUCCEEDED(hr) && i < head->header_count; ++i) {
            const ancm_header &h = head->headers[i];
            if (h.value.len > 0xFFFF) {
                hr = HRESULT_FROM_WIN32(ERROR_BUFFER_OVERFLOW); // IIS takes USHORT lengths
                break;
            }
            const std::string_view n = ancm::view(h.name);
            name.assign(n);
            value.assign(ancm::view(h.value));
            bool first = true;
            for (std::string_view s : seen) {
                const bool same =
                    s.size() == n.size() && _strnicmp(s.data(), n.data(), n.size()) == 0;
                first = first && !same;
            }
            if (first) {
                seen.push_back(n);
            }
            server = server || _stricmp(name.c_str(), "Server") == 0;
            hr = response->SetHeaderByName(name.c_str(), value.c_str(),
                                           static_cast<USHORT>(value.size()), first ? TRUE : FALSE);
        }
        if (SUCCEEDED(hr) && !server) {
            // ANCM deletes IIS's Server header when the backend sends none (SetStatusAndHeaders).
            response->DeleteHeaderByName("Server");
        }
        if (FAILED(hr)) {
            CancelLocked();
            return;
        }
        // Stream as the backend writes (SSE, long polls): IIS would otherwise buffer.
        response->DisableBuffering();
        if (head->upgraded) {
            BeginUpgradeLocked();
        }
    }

    // A 101 from the backend (a WebSocket): ask the engine for fragments, then flush the 101,
    // after which IIS's WebSocket module has its context (UpgradeFlushedLocked).
    void BeginUpgradeLocked()
    {
        ws_ = new (std::nothrow) WebSocketPump(ctx_, &lock_, this, &WsDrained);
        if (ws_ == nullptr) {
            CancelLocked();
            return;
        }
        ws_->SetRequest(req_);
        if (ancm_request_websocket_fragments(req_, &WsFragment) != ANCM_RESULT_OK) {
            CancelLocked();
            return;
        }
        upgraded_ = true;
        DWORD sent = 0;
        BOOL expected = FALSE;
        io_ = Io::Upgrade;
        HRESULT hr = ctx_->GetResponse()->Flush(TRUE, TRUE, &sent, &expected);
        if (SUCCEEDED(hr) && expected) {
            return;
        }
        io_ = Io::None;
        UpgradeFlushedLocked(hr);
    }

    void UpgradeFlushedLocked(HRESULT hr)
    {
        if (req_ == nullptr || done_) {
            return;
        }
        if (FAILED(hr)) {
            CancelLocked();
            return;
        }
        if (!ws_->AttachLocked()) {
            // The client has its 101 but IIS offers no WebSocket context (the WebSocket
            // Protocol feature is not installed): nothing can flow, so close the connection.
            Trace(L"WebSocket upgrade: IIS has no WebSocket context (is the WebSocket Protocol "
                  L"feature installed?); closing the connection");
            noWebSocket_ = true;
            CancelLocked();
        }
    }

    void StartWriteLocked(const uint8_t *data, size_t len, bool flush)
    {
        if (done_ || req_ == nullptr) {
            return;
        }
        // The engine's chunks are far below 4 GiB; IIS takes a ULONG.
        ZeroMemory(&chunk_, sizeof chunk_);
        chunk_.DataChunkType = HttpDataChunkFromMemory;
        chunk_.FromMemory.pBuffer = const_cast<uint8_t *>(data); // valid until the ack
        chunk_.FromMemory.BufferLength = static_cast<ULONG>(len);
        flushAfterWrite_ = flush;
        DWORD sent = 0;
        BOOL expected = FALSE;
        io_ = Io::Write;
        HRESULT hr = ctx_->GetResponse()->WriteEntityChunks(&chunk_, 1, TRUE, TRUE, &sent,
                                                            &expected);
        if (SUCCEEDED(hr) && expected) {
            return; // OnAsyncCompletion acknowledges
        }
        io_ = Io::None;
        WriteDoneLocked(hr);
    }

    void WriteDoneLocked(HRESULT hr)
    {
        if (req_ == nullptr || done_) {
            return;
        }
        if (FAILED(hr)) {
            CancelLocked(); // the client is gone
            return;
        }
        if (!flushAfterWrite_) {
            AckLocked();
            return;
        }
        DWORD sent = 0;
        BOOL expected = FALSE;
        io_ = Io::Flush;
        hr = ctx_->GetResponse()->Flush(TRUE, TRUE, &sent, &expected);
        if (SUCCEEDED(hr) && expected) {
            return;
        }
        io_ = Io::None;
        FlushDoneLocked(hr);
    }

    void FlushDoneLocked(HRESULT hr)
    {
        if (req_ == nullptr || done_) {
            return;
        }
        if (FAILED(hr)) {
            CancelLocked();
            return;
        }
        AckLocked();
    }

    void AckLocked()
    {
        if (ancm_request_ack_write(req_) != ANCM_RESULT_OK) {
            CancelLocked();
        }
    }

    // The engine abandons the request; `complete` follows (CANCELLED) on a core thread.
    void CancelLocked()
    {
        if (!done_ && req_ != nullptr) {
            ancm_request_cancel(req_);
        }
    }

    // The request's end, once the engine has completed it and no IIS operation is
    // outstanding: choose how IIS ends the response (the handle is freed in Dispose).
    REQUEST_NOTIFICATION_STATUS FinishLocked()
    {
        IHttpResponse *response = ctx_->GetResponse();
        if (noWebSocket_) {
            response->SetNeedDisconnect();
            response->ResetConnection();
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }
        if (upgraded_) {
            // The WebSocket session is over (the pump closed the TCP connection if it broke):
            // nothing more is sent on this request.
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }
        switch (result_) {
        case ANCM_RESULT_OK:
            return RQ_NOTIFICATION_CONTINUE;
        case ANCM_RESULT_CANCELLED:
            // The client went away (or IIS failed an operation): nothing to send.
            return RQ_NOTIFICATION_FINISH_REQUEST;
        default:
            // The response broke after its head (backend lost, malformed body, a timeout
            // between chunks, the backend reset its stream) or the engine failed: the client
            // must not take a truncated response for a complete one. An HTTP/2 client's stream
            // is reset (with the backend's code, else INTERNAL_ERROR), as ASP.NET Core's
            // in-process server aborts HTTP/2 responses; otherwise the connection is reset.
            if (http2_ && response4_ != nullptr) {
                response4_->ResetStream(resetCode_);
                return RQ_NOTIFICATION_FINISH_REQUEST;
            }
            response->SetNeedDisconnect();
            response->ResetConnection();
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }
    }

    // ---- Disconnect listener ----

    // Returns whether the client is gone already: a disconnect IIS reported on this connection
    // before the request attached, or (checked after attaching, so that a disconnect cannot
    // slip between the two) IsConnected() false, as ANCM's DisconnectHandler::SetHandler.
    bool Attach(IHttpContext *ctx)
    {
        IHttpConnection *connection = ctx->GetConnection();
        IHttpConnectionModuleContextContainer *container =
            connection != nullptr ? connection->GetModuleContextContainer() : nullptr;
        if (container == nullptr) {
            return false; // no disconnect notification; the failing writes still cancel
        }
        ConnectionContext *cc =
            static_cast<ConnectionContext *>(container->GetConnectionModuleContext(g_moduleId));
        if (cc == nullptr) {
            cc = new (std::nothrow) ConnectionContext();
            if (cc == nullptr) {
                return false;
            }
            if (FAILED(container->SetConnectionModuleContext(cc, g_moduleId))) {
                cc->Release();
                return false;
            }
        }
        cc->AddRef();
        const bool fired = cc->Attach(this);
        conn_ = cc;
        return fired || !connection->IsConnected();
    }

    // Not under the request's lock (lock order: connection, then request).
    void Detach()
    {
        ConnectionContext *cc = conn_;
        conn_ = nullptr;
        if (cc != nullptr) {
            cc->Detach(this);
            cc->Release();
        }
    }

    CRITICAL_SECTION lock_;
    IHttpContext *ctx_ = nullptr;
    ancm_request *req_ = nullptr; // the engine's handle, freed in Dispose
    Io io_ = Io::None;            // the one IIS operation outstanding
    bool done_ = false;           // the engine called `complete`
    bool disconnected_ = false;   // IIS reported the client gone
    ancm_result result_ = ANCM_RESULT_OK;
    bool flushAfterWrite_ = false;
    HTTP_DATA_CHUNK chunk_;
    std::vector<char> readBuffer_;
    std::string page_;
    ConnectionContext *conn_ = nullptr;
    WebSocketPump *ws_ = nullptr; // after a 101
    bool upgraded_ = false;       // a 101 was handed to IIS
    bool noWebSocket_ = false;    // ... but IIS had no WebSocket context for it
    bool http2_ = false;          // the client's request is HTTP/2 (HTTP_REQUEST.Version)
    IHttpResponse4 *response4_ = nullptr; // IIS's trailers and stream resets, when it has them
    uint32_t resetCode_ = 0;      // the backend's RST_STREAM code (ANCM_RESULT_STREAM_RESET)
};

VOID ConnectionContext::NotifyDisconnect()
{
    EnterCriticalSection(&lock_);
    fired_ = true;
    if (current_ != nullptr) {
        current_->OnClientDisconnect();
    }
    LeaveCriticalSection(&lock_);
}

// The worker process ends: the engine's shutdown (if stop listening did not begin it, as
// IIS Express may skip it: ANCM's globalmodule.cpp), waited for, then every app freed. Blocks
// until every backend process has exited, so none outlives the worker.
void EndAllApps() noexcept
{
    (void)ancm_shutdown_begin();
    if (ancm_shutdown_wait() != ANCM_RESULT_OK) {
        Trace(L"waiting for the applications to stop failed");
    }
    StopAllApps();
}

class ModuleFactory final : public IHttpModuleFactory {
public:
    HRESULT GetHttpModule(CHttpModule **ppModule, IModuleAllocator *pAllocator) override
    {
        if (ppModule == nullptr || pAllocator == nullptr) {
            return E_INVALIDARG;
        }
        *ppModule = nullptr;
        void *mem = pAllocator->AllocateMemory(sizeof(RequestModule));
        if (mem == nullptr) {
            return E_OUTOFMEMORY;
        }
        try {
            *ppModule = new (mem) RequestModule();
        } catch (...) {
            return E_OUTOFMEMORY;
        }
        return S_OK;
    }

    // IIS is shutting the worker process down: no request runs any more.
    VOID Terminate() override
    {
        EndAllApps();
        delete this;
    }
};

// MACHINE or MACHINE/WEBROOT, compared as ANCM does (case-insensitive, the whole path).
bool IsMachineLevelPath(PCWSTR path)
{
    return CompareStringOrdinal(path, -1, L"MACHINE", -1, TRUE) == CSTR_EQUAL ||
           CompareStringOrdinal(path, -1, L"MACHINE/WEBROOT", -1, TRUE) == CSTR_EQUAL;
}

// Global notifications arrive on IIS threads, so stopping apps there (ancm_app_stop blocks
// until the processes have exited, at most shutdownTimeLimit) is allowed; it is what ANCM
// does on application stop and configuration change. Stop listening is the exception (it
// must return at once).
class GlobalModule final : public CGlobalModule {
public:
    GLOBAL_NOTIFICATION_STATUS OnGlobalConfigurationChange(
        IGlobalConfigurationChangeProvider *provider) override
    {
        // The app's settings changed (or those of a parent path): stop it; its next request
        // reads the configuration again and starts a new process. Changes at MACHINE and
        // MACHINE/WEBROOT (machine.config, the root web.config: .NET settings IIS reports for
        // every edit there) stop nothing, as in ANCM's globalmodule.cpp.
        PCWSTR path = provider != nullptr ? provider->GetChangePath() : nullptr;
        if (path != nullptr && !IsMachineLevelPath(path)) {
            StopAppsUnder(path);
        }
        return GL_NOTIFICATION_CONTINUE;
    }

    GLOBAL_NOTIFICATION_STATUS OnGlobalStopListening(IGlobalStopListeningProvider *) override
    {
        // The worker process stops taking requests (recycle, shutdown), but IIS keeps handing
        // it requests while this notification runs (ANCM's globalmodule.h, StartShutdown), so
        // it returns at once: the engine answers 503 from now on, creates no process, and
        // stops every app's processes in the background, all at once, each within its
        // shutdownTimeLimit. The apps stay cached (they answer 503); Terminate waits for the
        // stops and frees them.
        (void)ancm_shutdown_begin();
        return GL_NOTIFICATION_CONTINUE;
    }

    GLOBAL_NOTIFICATION_STATUS OnGlobalApplicationStop(IHttpApplicationStopProvider *provider) override
    {
        if (provider != nullptr) {
            IHttpApplication *app = provider->GetApplication();
            if (app != nullptr) {
                StopApp(app->GetApplicationId());
            }
        }
        return GL_NOTIFICATION_CONTINUE;
    }

    VOID Terminate() override
    {
        EndAllApps();
        delete this;
    }
};

// The engine's log: every message to the debugger output, Event Log events (a non-zero
// `event`) to the Event Log as well (eventlog.cpp).
void OnEngineLog(void *, ancm_log_level level, uint32_t event, const uint8_t *message, size_t len)
{
    TraceUtf8(reinterpret_cast<const char *>(message), len);
    WriteEvent(level, event, reinterpret_cast<const char *>(message), len);
}

} // namespace
} // namespace iisglue

// Called by the Rust export RegisterModule (src/lib.rs).
extern "C" HRESULT WINAPI ancm_glue_register_module(DWORD serverVersion,
                                                     IHttpModuleRegistrationInfo *moduleInfo,
                                                     IHttpServer *server)
{
    (void)serverVersion; // IIS 7+ all provide what the glue uses
    try {
        if (moduleInfo == nullptr || server == nullptr) {
            return E_INVALIDARG;
        }
        iisglue::g_moduleId = moduleInfo->GetId();
        iisglue::g_server = server;
        // Another Rust logger in the process (none expected) would keep the engine's messages.
        iisglue::StartEventLog();
        (void)ancm_log_set_callback(&iisglue::OnEngineLog, nullptr, ANCM_LOG_LEVEL_INFO);

        iisglue::ModuleFactory *factory = new (std::nothrow) iisglue::ModuleFactory();
        if (factory == nullptr) {
            return E_OUTOFMEMORY;
        }
        HRESULT hr = moduleInfo->SetRequestNotifications(factory, RQ_EXECUTE_REQUEST_HANDLER, 0);
        if (FAILED(hr)) {
            delete factory; // IIS took no ownership
            return hr;
        }
        iisglue::GlobalModule *global = new (std::nothrow) iisglue::GlobalModule();
        if (global == nullptr) {
            return E_OUTOFMEMORY;
        }
        hr = moduleInfo->SetGlobalNotifications(
            global, GL_CONFIGURATION_CHANGE | GL_STOP_LISTENING | GL_APPLICATION_STOP);
        if (FAILED(hr)) {
            delete global;
            return hr;
        }
        return S_OK;
    } catch (...) {
        return E_UNEXPECTED;
    }
}
