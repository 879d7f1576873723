// The WebSocket pump: after a 101, IIS's WebSocket module owns the client's side and speaks in
// fragments (IWebSocketContext::ReadFragment / WriteFragment / SendConnectionClose), and so
// does the engine (ancm_request_websocket_fragments): this file only moves fragments between
// the two, as ANCM's out-of-process handler does between IIS and WinHTTP's WebSocket API.
//
//   body_wanted          → ReadFragment (async); its completion → ancm_request_supply_ws_fragment
//                          (a close: GetCloseStatus → a close fragment; a failure → end_body)
//   ws_fragment callback → WriteFragment (async), or SendConnectionClose for a close;
//                          its completion → ancm_request_ack_write
//
// Completions arrive through PFN_WEBSOCKET_COMPLETION on IIS threads and take the request's
// lock. A read and a write may be outstanding at once (the engine runs both directions after
// an upgrade); never two of either.

#include "websocket.h"

#include <new>

namespace iisglue {

namespace {

const DWORD kFragmentBufferSize = 64 * 1024;

// "No status" (RFC 6455 §7.4.1): never on the wire. ANCM hands a close without a status to
// IIS as 1005 with no reason (websockethandler.cpp, DoIisWebSocketSend), and IIS then sends a
// close frame without a body; a made-up 1000 would tell the client something the backend did
// not say.
const USHORT kNoStatus = 1005;

std::wstring FromUtf8(const uint8_t *p, size_t n)
{
    if (n == 0 || n > 0x7FFFFFFF) {
        return std::wstring();
    }
    const char *s = reinterpret_cast<const char *>(p);
    int len = MultiByteToWideChar(CP_UTF8, 0, s, static_cast<int>(n), nullptr, 0);
    std::wstring out(len > 0 ? static_cast<size_t>(len) : 0, L'\0');
    if (len > 0) {
        MultiByteToWideChar(CP_UTF8, 0, s, static_cast<int>(n), &out[0], len);
    }
    return out;
}

} // namespace

bool WebSocketsAvailable() noexcept
{
    void *server2 = nullptr;
    return g_server != nullptr &&
           SUCCEEDED(g_server->GetExtendedInterface(HTTP_SERVER_INTERFACE_V2, &server2)) &&
           server2 != nullptr;
}

bool WebSocketModuleServes(IHttpContext *ctx) noexcept
{
    PCSTR value = nullptr;
    DWORD len = 0;
    // Any failure (ERROR_INVALID_INDEX when the variable is not there) means "not served",
    // as with ANCM: an app told "supported" would accept an upgrade that IIS then resets.
    return ctx != nullptr && SUCCEEDED(ctx->GetServerVariableA("WEBSOCKET_VERSION", &value, &len));
}

WebSocketPump::WebSocketPump(IHttpContext *ctx, CRITICAL_SECTION *lock, void *owner,
                             DrainedFn drained)
    : ctx_(ctx), lock_(lock), owner_(owner), drained_(drained)
{
    ZeroMemory(&write_, sizeof write_);
}

WebSocketPump::~WebSocketPump()
{
    if (deadline_ != nullptr) {
        SetThreadpoolTimer(deadline_, nullptr, 0, 0);
        WaitForThreadpoolTimerCallbacks(deadline_, TRUE);
        CloseThreadpoolTimer(deadline_);
    }
}

bool WebSocketPump::AttachLocked()
{
    void *p = nullptr;
    if (g_server == nullptr || FAILED(g_server->GetExtendedInterface(HTTP_SERVER_INTERFACE_V2, &p)) ||
        p == nullptr) {
        return false;
    }
    IHttpServer2 *server2 = static_cast<IHttpServer2 *>(p);
    void *c3 = nullptr;
    if (FAILED(server2->GetExtendedInterfaceByGuid(IID_IHttpContext, ctx_, IID_IHttpContext3, &c3)) ||
        c3 == nullptr) {
        return false;
    }
    INamedContextContainer *named = static_cast<IHttpContext3 *>(c3)->GetNamedContextContainer();
    IHttpStoredContext *stored = named != nullptr ? named->GetNamedContext(IIS_WEBSOCKET) : nullptr;
    if (stored == nullptr) {
        return false; // IIS's WebSocket module did not take the request
    }
    ws_ = static_cast<IWebSocketContext *>(stored);
    try {
        readBuffer_.resize(kFragmentBufferSize);
    } catch (...) {
        ws_ = nullptr;
        return false;
    }
    if (wantRead_) {
        wantRead_ = false;
        StartReadLocked();
    }
    if (writeQueued_) {
        writeQueued_ = false;
        StartWriteLocked();
    }
    return true;
}

void WebSocketPump::WantReadLocked()
{
    if (ended_) {
        return;
    }
    if (ws_ == nullptr) {
        wantRead_ = true; // the 101 is still being flushed
        return;
    }
    StartReadLocked();
}

void WebSocketPump::WriteLocked(const ancm_ws_fragment *f)
{
    if (ended_) {
        return;
    }
    write_ = *f;
    if (ws_ == nullptr) {
        writeQueued_ = true;
        return;
    }
    StartWriteLocked();
}

void WebSocketPump::StartReadLocked()
{
    DWORD cb = kFragmentBufferSize;
    BOOL utf8 = FALSE, final = FALSE, close = FALSE, expected = FALSE;
    reading_ = true;
    HRESULT hr = ws_->ReadFragment(readBuffer_.data(), &cb, TRUE, &utf8, &final, &close,
                                   &WebSocketPump::ReadDone, this, &expected);
    if (SUCCEEDED(hr) && expected) {
        return; // ReadDone brings the fragment
    }
    reading_ = false;
    ReadDoneLocked(hr, cb, utf8, final, close);
}

void WebSocketPump::ReadDoneLocked(HRESULT hr, DWORD cb, BOOL utf8, BOOL final, BOOL close)
{
    if (ended_ || req_ == nullptr) {
        return;
    }
    ancm_ws_fragment f;
    ZeroMemory(&f, sizeof f);
    ancm_result r;
    if (FAILED(hr)) {
        // The client's connection ended without a close: half-close towards the backend.
        r = ancm_request_end_body(req_);
    } else if (close) {
        USHORT status = 0;
        LPCWSTR reason = nullptr;
        USHORT reasonLen = 0;
        std::string utf8Reason;
        if (SUCCEEDED(ws_->GetCloseStatus(&status, &reason, &reasonLen)) && reason != nullptr) {
            try {
                utf8Reason = ToUtf8(reason, reasonLen);
            } catch (...) {
                utf8Reason.clear();
            }
        }
        f.close = true;
        f.final_fragment = true;
        f.close_status = status;
        f.data.ptr = reinterpret_cast<const uint8_t *>(utf8Reason.data());
        f.data.len = utf8Reason.size();
        r = ancm_request_supply_ws_fragment(req_, &f);
    } else {
        f.data.ptr = reinterpret_cast<const uint8_t *>(readBuffer_.data());
        f.data.len = cb;
        f.utf8 = utf8 != FALSE;
        f.final_fragment = final != FALSE;
        r = ancm_request_supply_ws_fragment(req_, &f);
    }
    if (r != ANCM_RESULT_OK) {
        FailLocked();
    }
}

void WebSocketPump::StartWriteLocked()
{
    BOOL expected = FALSE;
    HRESULT hr;
    writing_ = true;
    if (write_.close) {
        closeReason_ = FromUtf8(write_.data.ptr, write_.data.len);
        USHORT status = write_.close_status;
        const bool noStatus = status == 0 || status == kNoStatus;
        if (noStatus) {
            status = kNoStatus;
        }
        hr = ws_->SendConnectionClose(TRUE, status, noStatus ? nullptr : closeReason_.c_str(),
                                      &WebSocketPump::WriteDone, this, &expected);
    } else {
        // The engine's fragments are far below 4 GiB (they come from 16 KiB-ish reads).
        DWORD cb = static_cast<DWORD>(write_.data.len);
        hr = ws_->WriteFragment(const_cast<uint8_t *>(write_.data.ptr), &cb, TRUE,
                                write_.utf8 ? TRUE : FALSE, write_.final_fragment ? TRUE : FALSE,
                                &WebSocketPump::WriteDone, this, &expected);
    }
    if (SUCCEEDED(hr) && expected) {
        return; // WriteDone acknowledges
    }
    writing_ = false;
    WriteDoneLocked(hr);
}

void WebSocketPump::WriteDoneLocked(HRESULT hr)
{
    if (ended_ || req_ == nullptr) {
        return;
    }
    if (FAILED(hr) || ancm_request_ack_write(req_) != ANCM_RESULT_OK) {
        FailLocked(); // the client is gone
    }
}

void WebSocketPump::FailLocked()
{
    if (!ended_ && req_ != nullptr) {
        ancm_request_cancel(req_);
    }
}

bool WebSocketPump::EndLocked(bool abort)
{
    ended_ = true;
    wantRead_ = false;
    writeQueued_ = false;
    if (ws_ != nullptr) {
        if (abort) {
            ws_->CloseTcpConnection();
        }
        if (reading_ || writing_) {
            // Both, as ANCM does: the WebSocket context's own cancel, and the request's.
            ws_->CancelOutstandingIO();
            ctx_->CancelIo();
        }
    }
    drainPending_ = reading_ || writing_;
    if (drainPending_ && deadline_ == nullptr) {
        deadline_ = CreateThreadpoolTimer(&WebSocketPump::DeadlinePassed, this, nullptr);
        if (deadline_ == nullptr) {
            ForceCloseLocked(); // no timer: force now rather than risk waiting forever
        } else {
            // Relative due time, in 100 ns units (negative).
            ULARGE_INTEGER due;
            due.QuadPart = static_cast<ULONGLONG>(-static_cast<LONGLONG>(kTeardownDeadlineMs) * 10000);
            FILETIME ft;
            ft.dwLowDateTime = due.LowPart;
            ft.dwHighDateTime = due.HighPart;
            SetThreadpoolTimer(deadline_, &ft, 0, 0);
        }
    }
    return !drainPending_;
}

VOID CALLBACK WebSocketPump::DeadlinePassed(PTP_CALLBACK_INSTANCE, PVOID context, PTP_TIMER)
{
    WebSocketPump *self = static_cast<WebSocketPump *>(context);
    EnterCriticalSection(self->lock_);
    // Drained meanwhile: the request may be ending; touch nothing of IIS's.
    if (self->drainPending_) {
        self->ForceCloseLocked();
    }
    LeaveCriticalSection(self->lock_);
}

void WebSocketPump::ForceCloseLocked()
{
    if (forced_) {
        return;
    }
    forced_ = true;
    Trace(L"WebSocket teardown: IIS did not complete the cancelled operations in time; "
          L"resetting the client's connection");
    if (ws_ != nullptr) {
        ws_->CloseTcpConnection();
    }
    IHttpResponse *response = ctx_->GetResponse();
    if (response != nullptr) {
        response->SetNeedDisconnect();
        response->ResetConnection();
    }
}

VOID WINAPI WebSocketPump::ReadDone(HRESULT hr, VOID *context, DWORD cb, BOOL utf8, BOOL final,
                                    BOOL close)
{
    WebSocketPump *self = static_cast<WebSocketPump *>(context);
    EnterCriticalSection(self->lock_);
    self->reading_ = false;
    self->ReadDoneLocked(hr, cb, utf8, final, close);
    const bool drained = self->drainPending_ && !self->reading_ && !self->writing_;
    if (drained) {
        self->drainPending_ = false;
    }
    LeaveCriticalSection(self->lock_);
    self->AfterCompletion(drained);
}

VOID WINAPI WebSocketPump::WriteDone(HRESULT hr, VOID *context, DWORD, BOOL, BOOL, BOOL)
{
    WebSocketPump *self = static_cast<WebSocketPump *>(context);
    EnterCriticalSection(self->lock_);
    self->writing_ = false;
    self->WriteDoneLocked(hr);
    const bool drained = self->drainPending_ && !self->reading_ && !self->writing_;
    if (drained) {
        self->drainPending_ = false;
    }
    LeaveCriticalSection(self->lock_);
    self->AfterCompletion(drained);
}

void WebSocketPump::AfterCompletion(bool drainedNow)
{
    if (drainedNow) {
        // The last touch of the pump: the owner may end the request, and IIS dispose it.
        drained_(owner_);
    }
}

} // namespace iisglue
