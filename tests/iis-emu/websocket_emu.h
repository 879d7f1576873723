// The emulated IIS's WebSocket side (included by emu.cpp, one translation unit).
//
// WsSession plays IIS's WebSocket module on a real TCP connection: once the module has flushed
// a 101, it writes that response head to the client socket and offers itself as the named
// context L"websockets" (IWebSocketContext). From then on it parses the client's frames and
// produces the server's frames per RFC 6455, as IIS does, and hands the module fragments:
//
// - ReadFragment (asynchronous only): up to the caller's buffer of the current data frame's
//   payload, flagged UTF-8 (text message) and final (the message's last byte); a close frame
//   completes a read with fClose (its status and reason through GetCloseStatus); pings are
//   answered here, as IIS answers them; unmasked client frames are a protocol error.
// - WriteFragment / SendConnectionClose (asynchronous only): one frame each, unmasked, sent
//   from the caller's buffer (by reference, until the completion).
// - Completions run through the caller's PFN_WEBSOCKET_COMPLETION on a worker thread (one for
//   reads, one for writes), never inside the call. One read and one write may be outstanding
//   at once; a second of either is recorded as a contract violation.
// - CancelOutstandingIO (and IHttpContext::CancelIo) complete what is outstanding with
//   ERROR_OPERATION_ABORTED; CloseTcpConnection, and IHttpResponse::ResetConnection on the
//   request, shut the socket down (the client sees the connection end), which fails a pending
//   read. With `stuckCancel`, the harsher reading of what ANCM's websockethandler.cpp reports
//   ("CancelIo sometimes may not be able to cancel pending websocket IO"; it resets the
//   connection "to force IISWebsocket module to release the pipeline"): cancelling does
//   nothing, and only the connection's end completes a pending read.
// - SendConnectionClose with 1005 ("no status", RFC 6455 §7.4.1: never on the wire) sends a
//   close frame without a body: ANCM passes 1005 with no reason for a close that had no
//   status (websockethandler.cpp, DoIisWebSocketSend).
//
// WsClient is the browser: it sends the handshake and masked frames and reads the server's.

#pragma once

#include "ws_wire.h"

namespace wsemu {

using wswire::ClosePayload;
using wswire::Frame;
using wswire::kGuid;
using wswire::SendAll;
using wswire::Sha1;

// A thread running one job at a time (IIS's completion threads for one direction).
class Worker {
public:
    Worker()
    {
        InitializeCriticalSection(&lock_);
        InitializeConditionVariable(&cv_);
        thread_ = CreateThread(nullptr, 0, &Worker::Main, this, 0, nullptr);
    }
    ~Worker()
    {
        EnterCriticalSection(&lock_);
        stop_ = true;
        WakeAllConditionVariable(&cv_);
        LeaveCriticalSection(&lock_);
        if (thread_ != nullptr) {
            WaitForSingleObject(thread_, INFINITE);
            CloseHandle(thread_);
        }
        DeleteCriticalSection(&lock_);
    }
    template <typename F> void Post(F f)
    {
        EnterCriticalSection(&lock_);
        job_ = f;
        WakeAllConditionVariable(&cv_);
        LeaveCriticalSection(&lock_);
    }

private:
    static DWORD WINAPI Main(LPVOID p)
    {
        Worker *self = static_cast<Worker *>(p);
        EnterCriticalSection(&self->lock_);
        for (;;) {
            while (!self->stop_ && !self->job_) {
                SleepConditionVariableCS(&self->cv_, &self->lock_, INFINITE);
            }
            if (!self->job_) {
                break; // stopping, nothing left to run
            }
            std::function<void()> job = self->job_;
            self->job_ = nullptr;
            LeaveCriticalSection(&self->lock_);
            job();
            EnterCriticalSection(&self->lock_);
        }
        LeaveCriticalSection(&self->lock_);
        return 0;
    }
    CRITICAL_SECTION lock_;
    CONDITION_VARIABLE cv_;
    HANDLE thread_ = nullptr;
    bool stop_ = false;
    std::function<void()> job_;
};

class WsSession final : public IWebSocketContext {
public:
    // `s` is the server side of the client's connection; `leftover` what was read past the
    // request head. `installed` false plays an IIS without the WebSocket Protocol feature.
    WsSession(SOCKET s, std::string leftover, bool installed, bool stuckCancel = false)
        : s_(s), buf_(std::move(leftover)), installed_(installed), stuckCancel_(stuckCancel)
    {
        InitializeCriticalSection(&lock_);
        InitializeCriticalSection(&sendLock_);
    }
    ~WsSession()
    {
        // The workers first (they may still be finishing a job), then the socket.
        reader_.reset();
        writer_.reset();
        closesocket(s_);
        DeleteCriticalSection(&sendLock_);
        DeleteCriticalSection(&lock_);
    }

    // Contract records, read by the test after the request.
    volatile LONG doubleRead = 0, doubleWrite = 0, duplexSeen = 0, unmaskedFrame = 0;
    volatile LONG fragmentsRead = 0, fragmentsWritten = 0, closesSent = 0, cancels = 0;
    volatile LONG tcpClosed = 0, syncCalls = 0;
    volatile LONG contextCancels = 0, resets = 0, nullReasonCloses = 0;

    // IIS closes the connection when the request is over.
    void EndConnection() { shutdown(s_, SD_BOTH); }
    int Outstanding()
    {
        EnterCriticalSection(&lock_);
        int n = (reading_ ? 1 : 0) + (writing_ ? 1 : 0);
        LeaveCriticalSection(&lock_);
        return n;
    }

    // Response::Flush of a 101: the head goes to the client, the context becomes available.
    void OnFlush(USHORT status, const std::string &reason,
                 const std::vector<std::pair<std::string, std::string>> &headers)
    {
        if (status != 101 || handshakeSent_) {
            return;
        }
        std::string head = "HTTP/1.1 101 " + reason + "\r\n";
        for (const auto &h : headers) {
            head += h.first + ": " + h.second + "\r\n";
        }
        head += "\r\n";
        SendLocked(head);
        handshakeSent_ = true;
    }
    // INamedContextContainer::GetNamedContext(L"websockets").
    IWebSocketContext *Named() { return installed_ && handshakeSent_ ? this : nullptr; }

    VOID CleanupStoredContext() override {} // IIS owns it; modules never call this

    HRESULT WriteFragment(VOID *pData, DWORD *pcbSent, BOOL fAsync, BOOL fUTF8Encoded,
                          BOOL fFinalFragment, PFN_WEBSOCKET_COMPLETION pfn, VOID *context,
                          BOOL *pfCompletionExpected) override
    {
        if (!fAsync || pfn == nullptr || pcbSent == nullptr) {
            InterlockedIncrement(&syncCalls);
            return E_INVALIDARG;
        }
        if (!BeginWrite()) {
            return HRESULT_FROM_WIN32(ERROR_INVALID_STATE);
        }
        const unsigned opcode = inMessage_ ? 0x0 : (fUTF8Encoded ? 0x1 : 0x2);
        inMessage_ = !fFinalFragment;
        const DWORD n = *pcbSent;
        const char *data = static_cast<const char *>(pData);
        const bool fin = fFinalFragment != FALSE;
        *pfCompletionExpected = TRUE;
        writer_->Post([this, opcode, fin, data, n, pfn, context]() {
            // By reference: the module keeps the bytes until this completion.
            bool ok = SendLocked(Frame(opcode, fin, std::string(data, n), nullptr));
            InterlockedIncrement(&fragmentsWritten);
            EndWrite();
            pfn(ok ? S_OK : HRESULT_FROM_WIN32(ERROR_NETNAME_DELETED), context, ok ? n : 0,
                FALSE, FALSE, FALSE);
        });
        return S_OK;
    }

    HRESULT ReadFragment(VOID *pData, DWORD *pcbData, BOOL fAsync, BOOL *, BOOL *, BOOL *,
                         PFN_WEBSOCKET_COMPLETION pfn, VOID *context,
                         BOOL *pfCompletionExpected) override
    {
        if (!fAsync || pfn == nullptr || pcbData == nullptr || *pcbData == 0) {
            InterlockedIncrement(&syncCalls);
            return E_INVALIDARG;
        }
        EnterCriticalSection(&lock_);
        if (reading_) {
            InterlockedIncrement(&doubleRead);
            LeaveCriticalSection(&lock_);
            return HRESULT_FROM_WIN32(ERROR_INVALID_STATE);
        }
        reading_ = true;
        cancelRead_ = false;
        if (writing_) {
            InterlockedIncrement(&duplexSeen);
        }
        LeaveCriticalSection(&lock_);
        char *buf = static_cast<char *>(pData);
        const DWORD cap = *pcbData;
        *pfCompletionExpected = TRUE;
        reader_->Post([this, buf, cap, pfn, context]() { ReadJob(buf, cap, pfn, context); });
        return S_OK;
    }

    HRESULT SendConnectionClose(BOOL fAsync, USHORT uStatusCode, LPCWSTR pszReason,
                                PFN_WEBSOCKET_COMPLETION pfn, VOID *context,
                                BOOL *pfCompletionExpected) override
    {
        if (!fAsync || pfn == nullptr) {
            InterlockedIncrement(&syncCalls);
            return E_INVALIDARG;
        }
        if (!BeginWrite()) {
            return HRESULT_FROM_WIN32(ERROR_INVALID_STATE);
        }
        std::string reason;
        if (pszReason != nullptr && *pszReason != L'\0') {
            int n = WideCharToMultiByte(CP_UTF8, 0, pszReason, -1, nullptr, 0, nullptr, nullptr);
            if (n > 1) {
                reason.resize(static_cast<size_t>(n));
                WideCharToMultiByte(CP_UTF8, 0, pszReason, -1, &reason[0], n, nullptr, nullptr);
                reason.resize(static_cast<size_t>(n - 1));
            }
        }
        if (pszReason == nullptr) {
            InterlockedIncrement(&nullReasonCloses);
        }
        const std::string payload = uStatusCode == 1005 ? std::string() : ClosePayload(uStatusCode, reason);
        *pfCompletionExpected = TRUE;
        writer_->Post([this, payload, pfn, context]() {
            bool ok = SendLocked(Frame(0x8, true, payload, nullptr));
            InterlockedIncrement(&closesSent);
            EndWrite();
            pfn(ok ? S_OK : HRESULT_FROM_WIN32(ERROR_NETNAME_DELETED), context, 0, FALSE, FALSE,
                FALSE);
        });
        return S_OK;
    }

    HRESULT GetCloseStatus(USHORT *pStatusCode, LPCWSTR *ppszReason, USHORT *pcchReason) override
    {
        EnterCriticalSection(&lock_);
        const bool have = closeReceived_;
        LeaveCriticalSection(&lock_);
        if (!have) {
            return HRESULT_FROM_WIN32(ERROR_INVALID_STATE);
        }
        *pStatusCode = closeStatus_;
        *ppszReason = closeReason_.c_str();
        *pcchReason = static_cast<USHORT>(closeReason_.size());
        return S_OK;
    }

    VOID CloseTcpConnection() override
    {
        InterlockedIncrement(&tcpClosed);
        EndedByIis();
    }

    VOID CancelOutstandingIO() override
    {
        InterlockedIncrement(&cancels);
        CancelRead();
    }

    // IHttpContext::CancelIo of the upgraded request.
    void CancelFromContext()
    {
        InterlockedIncrement(&contextCancels);
        CancelRead();
    }

    // IHttpResponse::ResetConnection of the upgraded request: the connection ends.
    void ResetFromResponse()
    {
        InterlockedIncrement(&resets);
        EndedByIis();
    }

private:
    // IIS ended the connection: the client sees it end, and what is pending on it fails.
    void EndedByIis()
    {
        EnterCriticalSection(&lock_);
        ended_ = true;
        LeaveCriticalSection(&lock_);
        shutdown(s_, SD_BOTH);
    }

    void CancelRead()
    {
        EnterCriticalSection(&lock_);
        if (reading_ && !stuckCancel_) {
            cancelRead_ = true;
        }
        LeaveCriticalSection(&lock_);
    }

    bool BeginWrite()
    {
        EnterCriticalSection(&lock_);
        if (writing_) {
            InterlockedIncrement(&doubleWrite);
            LeaveCriticalSection(&lock_);
            return false;
        }
        writing_ = true;
        if (reading_) {
            InterlockedIncrement(&duplexSeen);
        }
        LeaveCriticalSection(&lock_);
        return true;
    }
    void EndWrite()
    {
        EnterCriticalSection(&lock_);
        writing_ = false;
        LeaveCriticalSection(&lock_);
    }
    bool SendLocked(const std::string &bytes)
    {
        EnterCriticalSection(&sendLock_);
        bool ok = SendAll(s_, bytes.data(), bytes.size());
        LeaveCriticalSection(&sendLock_);
        return ok;
    }

    // Fills buf_ to n bytes, polling so that a cancellation is noticed. 0 ok, else a Win32
    // error (ERROR_OPERATION_ABORTED when cancelled, ERROR_NETNAME_DELETED when the
    // connection ended).
    DWORD Need(size_t n)
    {
        while (buf_.size() < n) {
            EnterCriticalSection(&lock_);
            const bool cancel = cancelRead_;
            const bool ended = ended_;
            LeaveCriticalSection(&lock_);
            if (cancel) {
                return ERROR_OPERATION_ABORTED;
            }
            if (ended) {
                return ERROR_CONNECTION_ABORTED;
            }
            fd_set rd;
            FD_ZERO(&rd);
            FD_SET(s_, &rd);
            timeval tv = {0, 50 * 1000};
            int r = select(0, &rd, nullptr, nullptr, &tv);
            if (r < 0) {
                return ERROR_NETNAME_DELETED;
            }
            if (r == 0) {
                continue;
            }
            char tmp[65536];
            int k = recv(s_, tmp, sizeof tmp, 0);
            if (k <= 0) {
                return ERROR_NETNAME_DELETED;
            }
            buf_.append(tmp, static_cast<size_t>(k));
        }
        return 0;
    }

    void Complete(PFN_WEBSOCKET_COMPLETION pfn, VOID *context, DWORD err, DWORD cb, bool utf8,
                  bool fin, bool close)
    {
        EnterCriticalSection(&lock_);
        reading_ = false;
        cancelRead_ = false;
        LeaveCriticalSection(&lock_);
        if (err == 0 && !close) {
            InterlockedIncrement(&fragmentsRead);
        }
        pfn(err == 0 ? S_OK : HRESULT_FROM_WIN32(err), context, cb, utf8, fin, close);
    }

    void ReadJob(char *out, DWORD cap, PFN_WEBSOCKET_COMPLETION pfn, VOID *context)
    {
        for (;;) {
            if (remaining_ > 0) {
                const size_t n = static_cast<size_t>(remaining_ < cap ? remaining_ : cap);
                if (DWORD e = Need(n)) {
                    return Complete(pfn, context, e, 0, false, false, false);
                }
                for (size_t i = 0; i < n; ++i) {
                    out[i] = static_cast<char>(buf_[i] ^ mask_[(maskPos_ + i) % 4]);
                }
                buf_.erase(0, n);
                maskPos_ = (maskPos_ + n) % 4;
                remaining_ -= n;
                const bool fin = frameFin_ && remaining_ == 0;
                return Complete(pfn, context, 0, static_cast<DWORD>(n), messageText_, fin, false);
            }
            if (DWORD e = Need(2)) {
                return Complete(pfn, context, e, 0, false, false, false);
            }
            const unsigned char b0 = static_cast<unsigned char>(buf_[0]);
            const unsigned char b1 = static_cast<unsigned char>(buf_[1]);
            size_t at = 2;
            unsigned long long len = b1 & 0x7F;
            if (len == 126) {
                if (DWORD e = Need(4)) return Complete(pfn, context, e, 0, false, false, false);
                len = (static_cast<unsigned char>(buf_[2]) << 8) | static_cast<unsigned char>(buf_[3]);
                at = 4;
            } else if (len == 127) {
                if (DWORD e = Need(10)) return Complete(pfn, context, e, 0, false, false, false);
                len = 0;
                for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(buf_[2 + i]);
                at = 10;
            }
            if ((b1 & 0x80) == 0) {
                // RFC 6455 §5.1: a server fails the connection on an unmasked client frame.
                InterlockedIncrement(&unmaskedFrame);
                return Complete(pfn, context, ERROR_INVALID_DATA, 0, false, false, false);
            }
            if (DWORD e = Need(at + 4)) return Complete(pfn, context, e, 0, false, false, false);
            std::memcpy(mask_, buf_.data() + at, 4);
            at += 4;
            buf_.erase(0, at);
            const unsigned opcode = b0 & 0x0F;
            const bool fin = (b0 & 0x80) != 0;
            if (opcode >= 0x8) {
                if (DWORD e = Need(static_cast<size_t>(len))) {
                    return Complete(pfn, context, e, 0, false, false, false);
                }
                std::string p = buf_.substr(0, static_cast<size_t>(len));
                buf_.erase(0, static_cast<size_t>(len));
                for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<char>(p[i] ^ mask_[i % 4]);
                if (opcode == 0x9) {
                    SendLocked(Frame(0xA, true, p, nullptr)); // IIS answers pings itself
                    continue;
                }
                if (opcode == 0xA) {
                    continue;
                }
                EnterCriticalSection(&lock_);
                closeReceived_ = true;
                closeStatus_ = p.size() >= 2 ? static_cast<USHORT>(
                                                   (static_cast<unsigned char>(p[0]) << 8) |
                                                   static_cast<unsigned char>(p[1]))
                                             : 1005;
                closeReason_.clear();
                if (p.size() > 2) {
                    int n = MultiByteToWideChar(CP_UTF8, 0, p.data() + 2,
                                                static_cast<int>(p.size() - 2), nullptr, 0);
                    closeReason_.resize(static_cast<size_t>(n > 0 ? n : 0));
                    if (n > 0) {
                        MultiByteToWideChar(CP_UTF8, 0, p.data() + 2,
                                            static_cast<int>(p.size() - 2), &closeReason_[0], n);
                    }
                }
                LeaveCriticalSection(&lock_);
                return Complete(pfn, context, 0, 0, false, true, true);
            }
            if (opcode != 0x0) {
                messageText_ = opcode == 0x1;
            }
            frameFin_ = fin;
            maskPos_ = 0;
            remaining_ = len;
            if (len == 0) {
                if (fin) {
                    return Complete(pfn, context, 0, 0, messageText_, true, false);
                }
                continue; // an empty fragment that ends nothing
            }
        }
    }

    SOCKET s_;
    std::string buf_;
    bool installed_;
    bool stuckCancel_;
    bool handshakeSent_ = false;
    CRITICAL_SECTION lock_;     // the flags below
    CRITICAL_SECTION sendLock_; // one frame at a time on the socket (writes and pongs)
    bool reading_ = false, writing_ = false, cancelRead_ = false;
    bool ended_ = false; // IIS ended the connection (CloseTcpConnection, ResetConnection)
    bool closeReceived_ = false;
    USHORT closeStatus_ = 0;
    std::wstring closeReason_;
    // The reader's frame state (reader thread only).
    unsigned long long remaining_ = 0;
    unsigned char mask_[4] = {0, 0, 0, 0};
    size_t maskPos_ = 0;
    bool frameFin_ = false, messageText_ = false;
    bool inMessage_ = false; // the writer's: a message is in progress
    std::unique_ptr<Worker> reader_{new Worker()};
    std::unique_ptr<Worker> writer_{new Worker()};
};

// The browser's side.
class WsClient {
public:
    SOCKET s = INVALID_SOCKET;
    std::string buf;
    unsigned maskSeed = 0x9E3779B9u;

    ~WsClient()
    {
        if (s != INVALID_SOCKET) closesocket(s);
    }
    // -1: the connection ended (EOF or reset), -2: nothing within the hang guard.
    int Fill()
    {
        char tmp[65536];
        int k = recv(s, tmp, sizeof tmp, 0);
        if (k > 0) {
            buf.append(tmp, static_cast<size_t>(k));
            return k;
        }
        if (k < 0 && WSAGetLastError() == WSAETIMEDOUT) {
            return -2;
        }
        return -1;
    }
    bool Send(unsigned opcode, bool fin, const std::string &payload)
    {
        unsigned char mask[4];
        for (unsigned char &b : mask) {
            maskSeed = maskSeed * 1103515245u + 12345u;
            b = static_cast<unsigned char>(maskSeed >> 16);
        }
        std::string f = Frame(opcode, fin, payload, mask);
        return SendAll(s, f.data(), f.size());
    }
    // One frame: 0 ok, -1 connection ended, -2 hang guard hit, -3 a masked server frame.
    int Read(unsigned &opcode, bool &fin, std::string &payload)
    {
        for (;;) {
            if (buf.size() >= 2) {
                const unsigned char b1 = static_cast<unsigned char>(buf[1]);
                size_t at = 2;
                unsigned long long len = b1 & 0x7F;
                bool have = true;
                if (len == 126) {
                    have = buf.size() >= 4;
                    if (have) len = (static_cast<unsigned char>(buf[2]) << 8) | static_cast<unsigned char>(buf[3]);
                    at = 4;
                } else if (len == 127) {
                    have = buf.size() >= 10;
                    if (have) {
                        len = 0;
                        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(buf[2 + i]);
                    }
                    at = 10;
                }
                if (have && (b1 & 0x80) != 0) {
                    return -3;
                }
                if (have && buf.size() >= at + len) {
                    opcode = static_cast<unsigned char>(buf[0]) & 0x0F;
                    fin = (static_cast<unsigned char>(buf[0]) & 0x80) != 0;
                    payload = buf.substr(at, static_cast<size_t>(len));
                    buf.erase(0, at + static_cast<size_t>(len));
                    return 0;
                }
            }
            int r = Fill();
            if (r < 0) {
                return r;
            }
        }
    }
    // A whole data message (or a close frame, returned as opcode 8 with its payload).
    int ReadMessage(unsigned &opcode, std::string &payload)
    {
        payload.clear();
        opcode = 0;
        for (;;) {
            unsigned op = 0;
            bool fin = false;
            std::string p;
            int r = Read(op, fin, p);
            if (r != 0) {
                return r;
            }
            if (op >= 0x8) {
                opcode = op;
                payload = p;
                return 0;
            }
            if (op != 0x0) {
                opcode = op;
            }
            payload += p;
            if (fin) {
                return 0;
            }
        }
    }
    // Reads until the connection ends: true when it did (and nothing but `allowed` bytes came).
    bool Ends()
    {
        for (;;) {
            int r = Fill();
            if (r == -1) return true;
            if (r == -2) return false;
        }
    }
};

} // namespace wsemu
