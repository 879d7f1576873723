// The emulated IIS's deploy cases (issue 18; included by emu.cpp after its request and
// WebSocket machinery, one translation unit). Each case names the IIS contract or ANCM source
// it plays.

#pragma once

namespace {

// A WebSocket session open while its backend is recycled (recycleTriggerFile: an overlapped
// replacement, as a deploy's generation switch is): after webSocketDrainSeconds the client gets
// a close with 1001 (going away, RFC 6455 §7.4.1) through IIS's WebSocket module
// (IWebSocketContext::SendConnectionClose, as in websocket_emu.h), instead of a connection cut
// when the old process stops; and the old process is then stopped. IIS plays no part in the
// drain beyond carrying the close: the fragments are as in RunWebSocketTests.
void RunWebSocketDrainTests(Registration &reg, Server &server, const std::string &backend)
{
    Application app;
    if (!MakeApp(app, "ws-drain", backend)) {
        return;
    }
    const std::string trigger = Narrow(app.physicalPath) + "restart.txt";
    DeleteFileA(trigger.c_str());
    server.admin.sections[app.configPath] = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")}, {L"shutdownTimeLimit", Uint(10)}}, Pairs(),
        {{L"recycleTriggerFile", L"restart.txt"}, {L"webSocketDrainSeconds", L"1"}});
    Spec plain;
    plain.url = "/ws-drain/echo";
    plain.headers = {{"Host", "localhost"}};
    Result r0;
    RunRequest(reg, app, plain, r0);
    Process old(PidOf(r0));
    Check(r0.response.status == 200 && old.pid != 0, "ws drain: the app's first process runs");
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        Check(false, "WSAStartup");
        return;
    }
    Result r;
    RunWebSocket(reg, app, true, [&trigger](wsemu::WsClient &c) {
        if (!WsHandshakeOk(c, "ws drain")) {
            return;
        }
        unsigned op = 0;
        std::string back;
        const bool echoed = c.Send(0x1, true, "before the drain") && c.ReadMessage(op, back) == 0 &&
                            back == "before the drain";
        Check(echoed, "ws drain: an echo before the recycle");
        HANDLE f = CreateFileA(trigger.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_ALWAYS,
                               FILE_ATTRIBUTE_NORMAL, nullptr);
        Check(f != INVALID_HANDLE_VALUE, "ws drain: touched recycleTriggerFile");
        if (f != INVALID_HANDLE_VALUE) {
            DWORD n = 0;
            WriteFile(f, "now", 3, &n, nullptr);
            CloseHandle(f);
        }
        // The socket's 30 s receive guard bounds this read; the drain closes within ~1 s.
        const int rc = c.ReadMessage(op, back);
        Check(rc == 0 && op == 0x8 && back == wsemu::ClosePayload(1001, ""),
              "ws drain: after webSocketDrainSeconds the client got a close with 1001 (going "
              "away), rc " + std::to_string(rc) + ", opcode " + std::to_string(op) + ", " +
                  std::to_string(back.size()) + " payload bytes");
        Check(c.Send(0x8, true, wsemu::ClosePayload(1001, "")) && c.Ends(),
              "ws drain: the client answered the close and the connection ended");
    }, r, "ws drain");
    Check(r.wsTcpClosed == 0, "ws drain: a clean close, not a forced TCP close");
    Check(old.Exited(15000), "ws drain: the drained process was stopped after the session closed");
    Result r1;
    RunRequest(reg, app, plain, r1);
    Check(r1.response.status == 200 && PidOf(r1) != 0 && PidOf(r1) != old.pid,
          "ws drain: its replacement serves");
    AppStop stop(&app);
    reg.global->OnGlobalApplicationStop(&stop);
    WSACleanup();
}

// recycleOnFileChange read from IIS's configuration (the aspNetCore section's child element
// with its <file path> collection, as msi/schema declares it and IAppHostElement returns it:
// IIS has applied <clear/> and expanded the path) reaches the engine: a change of the named
// file starts a new generation, so a later request is served by a new process.
void RunRecycleOnFileChangeTests(Registration &reg, Server &server, const std::string &backend)
{
    Application app;
    if (!MakeApp(app, "recycle-files", backend)) {
        return;
    }
    const std::string watched = Narrow(app.physicalPath) + "watched.txt";
    auto write = [](const std::string &path, const char *text) {
        HANDLE f = CreateFileA(path.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_ALWAYS,
                               FILE_ATTRIBUTE_NORMAL, nullptr);
        if (f == INVALID_HANDLE_VALUE) {
            return false;
        }
        DWORD n = 0;
        const BOOL ok = WriteFile(f, text, static_cast<DWORD>(std::strlen(text)), &n, nullptr);
        CloseHandle(f);
        return ok != FALSE;
    };
    Check(write(watched, "1"), "recycleOnFileChange: wrote watched.txt");
    auto section = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")}, {L"shutdownTimeLimit", Uint(5)}}, Pairs(), Pairs());
    auto files = std::make_shared<ElementData>();
    auto item = std::make_shared<ElementData>();
    item->props.emplace_back(L"path", Str(L"watched.txt"));
    files->items.push_back(item);
    section->children[L"recycleOnFileChange"] = files;
    server.admin.sections[app.configPath] = section;
    Spec echo;
    echo.url = "/recycle-files/echo";
    echo.headers = {{"Host", "localhost"}};
    Result r0;
    RunRequest(reg, app, echo, r0);
    Process first(PidOf(r0));
    Check(r0.response.status == 200 && first.pid != 0, "recycleOnFileChange: the app runs");
    Check(write(watched, "22"), "recycleOnFileChange: changed watched.txt");
    // A bound for the poll, not a timing assertion: the debounce is 1 s.
    DWORD now = 0;
    for (int i = 0; i < 300; ++i) {
        Result r;
        RunRequest(reg, app, echo, r);
        now = PidOf(r);
        if (r.response.status == 200 && now != 0 && now != first.pid) {
            break;
        }
        Sleep(100);
    }
    Check(now != 0 && now != first.pid,
          "recycleOnFileChange from IIS's configuration: the file's change started a new "
          "generation (process " + std::to_string(first.pid) + " -> " + std::to_string(now) + ")");
    Check(first.Exited(15000), "recycleOnFileChange: the old generation's process stopped");
    AppStop stop(&app);
    reg.global->OnGlobalApplicationStop(&stop);
}

} // namespace
