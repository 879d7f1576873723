// The emulated IIS's lifecycle cases (included by emu.cpp after its request machinery, one
// translation unit): the WebSocket module's presence, configuration changes at the machine
// level, a WebSocket teardown whose cancellation IIS never completes, and stop listening while
// requests keep arriving. Each case names the IIS contract or ANCM source it plays.

#pragma once

namespace {

// IIS's WebSocket module is not in the application's pipeline while the webSocket section is
// there: no WEBSOCKET_VERSION server variable (ANCM's outprocessapplication.cpp,
// SetWebsocketStatus), so the app must be told ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED=false, and
// an upgrade request is answered as an ordinary one (the backend plays ASP.NET Core's
// IISMiddleware) instead of a 101 that IIS would reset.
void RunWebSocketModuleAbsentTests(Registration &reg, Server &server, const std::string &backend)
{
    Application app;
    if (!MakeApp(app, "ws-nomodule", backend)) {
        return;
    }
    app.webSocketModule = false;
    server.admin.sections[app.configPath] = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")}, {L"shutdownTimeLimit", Uint(5)}}, Pairs(),
        Pairs());
    Spec plain;
    plain.url = "/ws-nomodule/echo";
    plain.headers = {{"Host", "localhost"}};
    Result r0;
    RunRequest(reg, app, plain, r0);
    Check(r0.response.status == 200 &&
              Contains(r0.response.body, "env: ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED=false\n"),
          "no WebSocket module (no WEBSOCKET_VERSION): the app was told "
          "ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED=false");
    Spec upgrade;
    upgrade.url = "/ws";
    upgrade.headers = {{"Host", "localhost"},
                       {"Upgrade", "websocket"},
                       {"Connection", "Upgrade"},
                       {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                       {"Sec-WebSocket-Version", "13"}};
    Result r1;
    RunRequest(reg, app, upgrade, r1);
    Check(r1.response.status == 200 && !r1.response.reset &&
              r1.status == RQ_NOTIFICATION_CONTINUE && EchoField(r1.response.body, "target") == "/ws",
          "no WebSocket module: an upgrade request was answered normally (status " +
              std::to_string(r1.response.status) + "), not upgraded and reset");
    AppStop stop(&app);
    reg.global->OnGlobalApplicationStop(&stop);
}

// GL_CONFIGURATION_CHANGE at MACHINE and MACHINE/WEBROOT (machine.config and the root
// web.config) stops no application: ANCM's globalmodule.cpp ignores both paths (compared
// case-insensitively). `running` is a request's result whose process must survive.
void RunMachineConfigChangeTests(Registration &reg, Application &app, const Spec &echo,
                                 const Result &running)
{
    Process p(PidOf(running));
    for (PCWSTR path : {L"MACHINE", L"MACHINE/WEBROOT", L"machine/webroot"}) {
        ConfigChange change;
        change.path = path;
        reg.global->OnGlobalConfigurationChange(&change);
    }
    Result after;
    RunRequest(reg, app, echo, after);
    Check(p.pid != 0 && !p.Exited(500) && p.Running() && PidOf(after) == p.pid,
          "GL_CONFIGURATION_CHANGE at MACHINE and MACHINE/WEBROOT stopped nothing (process " +
              std::to_string(p.pid) + " still serves)");
}

// A WebSocket whose teardown meets a ReadFragment that IIS never completes on cancellation
// (websocket_emu.h, `stuckCancel`; ANCM's websockethandler.cpp says IIS's cancel may not
// work and resets the connection to force the end). The backend closes without a status and
// ends its connection at once; the client never answers, so the module's read stays pending.
// The teardown must still end: the client gets the close without a body (1005 passed as no
// status), the connection is forced closed, and the request finishes within a bound.
void RunWebSocketStuckTeardownTests(Registration &reg, Application &app)
{
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        Check(false, "WSAStartup");
        return;
    }
    const DWORD bound = 15000; // far above the module's 2 s deadline; the run's own guard is 20 s
    Result r;
    RunWebSocket(reg, app, true, [](wsemu::WsClient &c) {
        if (!WsHandshakeOk(c, "stuck teardown")) {
            return;
        }
        unsigned op = 0;
        std::string back;
        Check(c.Send(0x1, true, "close-empty") && c.ReadMessage(op, back) == 0 && op == 0x8 &&
                  back.empty(),
              "a close without a status reached the client as a close without a body (1005 "
              "passed as no status, " + std::to_string(back.size()) + " payload bytes)");
        // No answer to the close: the module's read stays outstanding.
        Check(c.Ends(), "stuck teardown: the client's connection was ended");
    }, r, "stuck teardown", true, 20000);
    Check(r.status == RQ_NOTIFICATION_FINISH_REQUEST && r.elapsedMs < bound && r.wsResets >= 1,
          "a ReadFragment whose cancellation never completes: the module reset the connection "
          "and the request finished (" + std::to_string(r.elapsedMs) + " ms, bound " +
              std::to_string(bound) + " ms)");
    Check(r.wsNullReasonCloses == 1, "the close without a status went to IIS with no reason");
    WSACleanup();
}

} // namespace
