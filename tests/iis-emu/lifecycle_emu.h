// The emulated IIS's lifecycle cases (included by emu.cpp after its request machinery, one
// translation unit): the WebSocket module's presence, configuration changes at the machine
// level, a WebSocket teardown whose cancellation IIS never completes, and stop listening while
// requests keep arriving (then the module's Terminate). Each case names the IIS contract or ANCM source it plays.

#pragma once

#include <tlhelp32.h>

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
        // (The result first: the order in which a call's arguments are evaluated is unspecified.)
        const bool closed = c.Send(0x1, true, "close-empty") && c.ReadMessage(op, back) == 0 &&
                            op == 0x8;
        Check(closed && back.empty(),
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

// The ids of the live backend.exe processes (every app's processes run a copy of it).
std::vector<DWORD> BackendPids()
{
    std::vector<DWORD> out;
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    if (snap == INVALID_HANDLE_VALUE) {
        return out;
    }
    PROCESSENTRY32W e;
    e.dwSize = sizeof e;
    for (BOOL more = Process32FirstW(snap, &e); more; more = Process32NextW(snap, &e)) {
        const wchar_t *base = std::wcsrchr(e.szExeFile, L'\\');
        base = base != nullptr ? base + 1 : e.szExeFile;
        if (_wcsicmp(base, L"backend.exe") == 0) {
            out.push_back(e.th32ProcessID);
        }
    }
    CloseHandle(snap);
    return out;
}

// Requests that keep arriving while IIS runs the stop-listening notification (IIS goes on
// handing the worker requests meanwhile: ANCM's globalmodule.h, StartShutdown). Each request
// notes whether the notification had returned when it started.
struct Arrivals {
    Registration *reg = nullptr;
    Application *serving = nullptr; // an app with a running process
    Application *fresh = nullptr;   // an app that never had a request before the stop
    Spec servingSpec, freshSpec;
    volatile LONG stop = 0;
    volatile LONG returned = 0; // the notification has returned
    volatile LONG afterServing = 0, afterFresh = 0, after503 = 0, before = 0;
    std::string odd; // the first status after the return that was not 503
};

DWORD WINAPI ArrivalsThread(LPVOID param)
{
    Arrivals *a = static_cast<Arrivals *>(param);
    while (a->stop == 0) {
        for (int which = 0; which < 2; ++which) {
            const bool late = a->returned != 0;
            if (which == 1 && !late) {
                continue; // the fresh app gets its first request only after the stop
            }
            Result r;
            RunRequest(*a->reg, which == 0 ? *a->serving : *a->fresh,
                       which == 0 ? a->servingSpec : a->freshSpec, r, 30000);
            if (!late) {
                InterlockedIncrement(&a->before);
                continue;
            }
            InterlockedIncrement(which == 0 ? &a->afterServing : &a->afterFresh);
            if (r.response.status == 503) {
                InterlockedIncrement(&a->after503);
            } else if (a->odd.empty()) {
                a->odd = std::to_string(r.response.status) + "." + std::to_string(r.response.subStatus);
            }
        }
    }
    return 0;
}

// GL_STOP_LISTENING while requests keep arriving (one app's process is slow to stop: it
// ignores the shutdown event, so only the kill after shutdownTimeLimit ends it). The
// notification must return at once (within 100 ms, the bound issue 16 asks for), the requests
// that arrive afterwards get 503, no process starts (not even for an app never seen before),
// and by Terminate (IHttpModuleFactory/CGlobalModule::Terminate: the worker process is ending)
// every backend process is gone. Ends with the module's Terminate calls.
void RunStopListeningTests(Registration &reg, Server &server, const std::string &backend,
                           Application &serving, const Spec &servingEcho)
{
    Application stubborn, fresh;
    if (!MakeApp(stubborn, "stubborn", backend) || !MakeApp(fresh, "fresh", backend)) {
        return;
    }
    server.admin.sections[stubborn.configPath] = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")},
         {L"arguments", Str(L"--ignore-shutdown")},
         {L"shutdownTimeLimit", Uint(1)}},
        Pairs(), Pairs());
    server.admin.sections[fresh.configPath] =
        AspNetCoreSection({{L"processPath", Str(L".\\backend.exe")}}, Pairs(), Pairs());
    Spec echo;
    echo.url = "/stubborn/echo";
    echo.headers = {{"Host", "localhost"}};
    Result first;
    RunRequest(reg, stubborn, echo, first);
    Check(first.response.status == 200 && PidOf(first) != 0,
          "an app whose process ignores the shutdown event is running");

    const std::vector<DWORD> before = BackendPids();
    std::vector<std::unique_ptr<Process>> running;
    for (DWORD pid : before) {
        running.emplace_back(new Process(pid));
    }

    Arrivals a;
    a.reg = &reg;
    a.serving = &serving;
    a.fresh = &fresh;
    a.servingSpec = servingEcho;
    a.freshSpec = echo;
    a.freshSpec.url = "/fresh/echo";
    HANDLE t = CreateThread(nullptr, 0, &ArrivalsThread, &a, 0, nullptr);
    Sleep(300); // requests are flowing

    LARGE_INTEGER freq, t0, t1;
    QueryPerformanceFrequency(&freq);
    StopListening stopListening;
    QueryPerformanceCounter(&t0);
    const GLOBAL_NOTIFICATION_STATUS st = reg.global->OnGlobalStopListening(&stopListening);
    QueryPerformanceCounter(&t1);
    InterlockedExchange(&a.returned, 1);
    const double ms = 1000.0 * static_cast<double>(t1.QuadPart - t0.QuadPart) /
                      static_cast<double>(freq.QuadPart);
    Check(st == GL_NOTIFICATION_CONTINUE && ms < 100.0,
          "OnGlobalStopListening returned CONTINUE at once (" + std::to_string(ms) +
              " ms, bound 100 ms) while requests kept arriving");

    // Some requests after the return, to both apps (bounded: a hang fails, not blocks).
    const DWORD deadline = GetTickCount() + 30000;
    while ((a.afterServing < 5 || a.afterFresh < 5) && GetTickCount() < deadline) {
        Sleep(20);
    }
    const std::vector<DWORD> now = BackendPids();
    InterlockedExchange(&a.stop, 1);
    if (t != nullptr) {
        WaitForSingleObject(t, 60000);
        CloseHandle(t);
    }
    Check(a.afterServing >= 5 && a.afterFresh >= 5 &&
              a.after503 == a.afterServing + a.afterFresh,
          "requests after stop listening got 503 (" + std::to_string(a.after503) + " of " +
              std::to_string(a.afterServing + a.afterFresh) + ", " + std::to_string(a.afterFresh) +
              " to an app never seen before" + (a.odd.empty() ? "" : ", one got " + a.odd) +
              "; " + std::to_string(a.before) + " before)");
    bool noNew = true;
    for (DWORD pid : now) {
        bool known = false;
        for (DWORD b : before) {
            known = known || b == pid;
        }
        noNew = noNew && known;
    }
    Check(noNew, "no backend process started after stop listening (" + std::to_string(now.size()) +
                     " running, " + std::to_string(before.size()) + " before)");

    // Shutdown, as IIS does it. IIS never unloads a module's DLL (the worker process exits),
    // and the engine's runtime threads live until then, so no FreeLibrary.
    reg.global->Terminate();
    reg.factory->Terminate();
    bool allExited = !running.empty();
    for (const auto &p : running) {
        allExited = allExited && p->Exited(2000);
    }
    Check(allExited, "by Terminate every backend process had exited (" +
                         std::to_string(running.size()) + ", the stubborn one killed after its "
                                                          "shutdownTimeLimit)");
}

} // namespace
