// The glue's WebSocket pump: IIS's IWebSocketContext on one side, the engine's fragment calls
// (ancm_request_websocket_fragments) on the other. Translation only: IIS's WebSocket module
// frames the client's side, the engine frames the backend's; this moves fragments between them.
#pragma once

#include "glue.h"

#include <string>
#include <vector>

namespace iisglue {

// Whether IIS offers what WebSockets need (IHttpServer2, so IHttpContext3 and its named
// contexts: IIS 8+). Whether its WebSocket module serves an application is
// WebSocketModuleServes; a 101 flushed without it finds no named context. Never throws.
bool WebSocketsAvailable() noexcept;

// Whether IIS's WebSocket module serves the request's application: it sets the server
// variable WEBSOCKET_VERSION when it is installed and enabled there. The webSocket section
// may be present in applicationHost.config while the module is not, so this is what ANCM
// reads (outprocessapplication.cpp, SetWebsocketStatus). Never throws.
bool WebSocketModuleServes(IHttpContext *ctx) noexcept;

// One upgraded request's pump. Created by the request in the response_head callback of a 101,
// owned by the request, used under the request's lock (`lock`), which the pump's completion
// routines (IIS threads) take too. Reads and writes are independent: one ReadFragment and one
// WriteFragment/SendConnectionClose may be outstanding at once.
class WebSocketPump {
public:
    // Called when the pump has ended (EndLocked) and its last outstanding operation
    // completed, outside the lock: the request may now end (PostCompletion).
    using DrainedFn = void (*)(void *owner);

    WebSocketPump(IHttpContext *ctx, CRITICAL_SECTION *lock, void *owner, DrainedFn drained);
    // Stops the teardown deadline and waits for its callback (call outside `lock`).
    ~WebSocketPump();
    WebSocketPump(const WebSocketPump &) = delete;
    WebSocketPump &operator=(const WebSocketPump &) = delete;

    // The engine's handle; set before any other call, valid until EndLocked.
    void SetRequest(ancm_request *req) { req_ = req; }

    // After the 101 was flushed: finds IIS's WebSocket context and starts what the engine
    // asked for meanwhile. False when IIS has none (no WebSocket Protocol feature).
    bool AttachLocked();

    // body_wanted: the engine wants the client's next fragment.
    void WantReadLocked();
    // The engine's fragment for the client (its bytes valid until ancm_request_ack_write).
    void WriteLocked(const ancm_ws_fragment *f);

    // The engine completed the request: cancel what is outstanding (IWebSocketContext's
    // CancelOutstandingIO and IHttpContext::CancelIo); `abort` closes the client's TCP
    // connection at once (the backend went away without a close handshake). IIS may never
    // complete a cancelled ReadFragment (ANCM's websockethandler.cpp: "CancelIo sometimes may
    // not be able to cancel pending websocket IO"), so if something is still outstanding after
    // kTeardownDeadlineMs the connection is forced closed (CloseTcpConnection and
    // IHttpResponse::ResetConnection, which make IIS release what it holds). Returns true when
    // nothing is outstanding (the caller ends the request now), false when `drained` will be
    // called once it is.
    bool EndLocked(bool abort);

    // Whether the teardown had to force the connection closed (the request then ends with a
    // reset rather than a clean finish).
    bool ForcedLocked() const { return forced_; }

    // How long a teardown waits for cancelled operations before forcing the connection closed.
    static const DWORD kTeardownDeadlineMs = 2000;

private:
    static VOID WINAPI ReadDone(HRESULT hr, VOID *context, DWORD cb, BOOL utf8, BOOL final,
                                BOOL close);
    static VOID WINAPI WriteDone(HRESULT hr, VOID *context, DWORD cb, BOOL utf8, BOOL final,
                                 BOOL close);
    void StartReadLocked();
    void ReadDoneLocked(HRESULT hr, DWORD cb, BOOL utf8, BOOL final, BOOL close);
    void StartWriteLocked();
    void WriteDoneLocked(HRESULT hr);
    void FailLocked();
    // The teardown deadline (a thread-pool timer thread): forces the connection closed if
    // operations are still outstanding.
    static VOID CALLBACK DeadlinePassed(PTP_CALLBACK_INSTANCE, PVOID context, PTP_TIMER);
    void ForceCloseLocked();
    // After a completion, outside the lock: tells the owner when the pump has drained.
    void AfterCompletion(bool drainedNow);

    IHttpContext *ctx_;
    CRITICAL_SECTION *lock_;
    void *owner_;
    DrainedFn drained_;
    ancm_request *req_ = nullptr;
    IWebSocketContext *ws_ = nullptr;
    PTP_TIMER deadline_ = nullptr; // armed by EndLocked while operations are outstanding
    bool forced_ = false;      // the deadline passed: the connection was forced closed
    bool ended_ = false;       // EndLocked ran: no more engine calls
    bool drainPending_ = false; // EndLocked found operations outstanding
    bool wantRead_ = false;    // the engine asked before the context was attached
    bool reading_ = false;     // a ReadFragment is outstanding
    bool writing_ = false;     // a WriteFragment / SendConnectionClose is outstanding
    bool writeQueued_ = false; // a fragment arrived before the context was attached
    ancm_ws_fragment write_;   // the fragment being (or to be) written
    std::wstring closeReason_; // SendConnectionClose's reason, alive until its completion
    std::vector<char> readBuffer_;
};

} // namespace iisglue
