// TEST FIXTURE: a tiny Windows HTTP backend for the emulated IIS (tests/iis-emu), built with
// mingw and run under Wine by the engine, so that the engine's Windows process code starts,
// pairs with and stops a real process. Not a product; just enough HTTP/1.1 for the tests.
//
// Listens on 127.0.0.1:%ASPNETCORE_PORT%; every request must carry MS-ASPNETCORE-TOKEN equal
// to %ASPNETCORE_TOKEN% (else 400). Thread per connection, keep-alive.
//   POST .../iisintegration with MS-ASPNETCORE-EVENT: shutdown → 202, then the process exits
//   GET /bytes?n=N  → N bytes of Pattern() (Content-Length)
//   GET /slow?n=N   → N bytes of Pattern() in 16 KiB pieces, 20 ms apart
//   POST /early     → 256 KiB answered before the request body is read (then drained)
//   GET /truncate?n=N → Content-Length N, N/2 bytes, then the connection is closed
//   GET /exit-soon  → 200, then the process exits with code 5 (a crash after answering)
//   GET /headers    → 200 with its own Server header, two Set-Cookie and a mixed-case name
//   GET /seen?m=M   → "seen: yes" when an earlier request's target contained M, else "no"
//   GET /ws with Upgrade: websocket → 101 (unless ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED=false:
//                     then the echo below, as ASP.NET Core's IISMiddleware does), then a WebSocket echo (RFC 6455): every data frame
//                     comes back as it came (opcode, FIN, payload), a close is answered with
//                     the same close; text "close-me" makes it close first (4001 "server
//                     bye"), "close-empty" makes it send a close without a status and
//                     end the connection at once, "ping-me" makes it ping and report the pong, "die" ends the
//                     process at once (a backend killed mid-stream)
//   anything else   → text/plain echo: method, target, headers, body length and FNV-1a hash,
//                     pid, the EMU_* / ASPNETCORE_* environment, and for a
//                     MS-ASPNETCORE-WINAUTHTOKEN what the handle is in this process (then it
//                     is closed, as ASP.NET Core's IIS integration does)
// Argument --fail-at-start: exit with code 3 before listening (a startup failure).
// Argument --ignore-shutdown: the shutdown event is answered 202 but the process keeps running
// (an app slow to stop: only the kill after shutdownTimeLimit ends it).

#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <sddl.h>

#include "ws_wire.h"

#include <cctype>
#include <cstdio>
#include <cwchar>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

using wswire::ClosePayload;
using wswire::SendAll;

namespace {

std::string g_token;
bool g_ignoreShutdown = false;

// Every request target this process received (/seen), across its connection threads.
CRITICAL_SECTION g_seenLock;
std::vector<std::string> g_seen;

// The byte at offset i of every generated body (the emulator computes the same).
inline unsigned char Pattern(unsigned long long i)
{
    return static_cast<unsigned char>(i * 131 + (i >> 10));
}

struct Fnv {
    unsigned long long h = 1469598103934665603ULL;
    void Add(const char *p, size_t n)
    {
        for (size_t i = 0; i < n; ++i) {
            h ^= static_cast<unsigned char>(p[i]);
            h *= 1099511628211ULL;
        }
    }
};

struct Conn {
    SOCKET s;
    std::string buf; // received, not yet consumed
};

bool Fill(Conn &c)
{
    char tmp[65536];
    int n = recv(c.s, tmp, sizeof tmp, 0);
    if (n <= 0) {
        return false;
    }
    c.buf.append(tmp, static_cast<size_t>(n));
    return true;
}

bool ReadLine(Conn &c, std::string &line)
{
    size_t pos;
    while ((pos = c.buf.find("\r\n")) == std::string::npos) {
        if (!Fill(c)) {
            return false;
        }
    }
    line = c.buf.substr(0, pos);
    c.buf.erase(0, pos + 2);
    return true;
}

// Consumes n body bytes into the hash.
bool ReadBody(Conn &c, unsigned long long n, Fnv &fnv, unsigned long long &total)
{
    while (n > 0) {
        if (c.buf.empty() && !Fill(c)) {
            return false;
        }
        size_t k = c.buf.size() < n ? c.buf.size() : static_cast<size_t>(n);
        fnv.Add(c.buf.data(), k);
        c.buf.erase(0, k);
        n -= k;
        total += k;
    }
    return true;
}

bool IEquals(const std::string &a, const char *b) { return _stricmp(a.c_str(), b) == 0; }

bool Respond(SOCKET s, int status, const char *reason, const std::string &type,
             const std::string &body)
{
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                       "\r\nContent-Type: " + type +
                       "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    return SendAll(s, head.data(), head.size()) && SendAll(s, body.data(), body.size());
}

bool SendPattern(SOCKET s, unsigned long long n, bool slow)
{
    std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                       "Content-Length: " + std::to_string(n) + "\r\n\r\n";
    if (!SendAll(s, head.data(), head.size())) {
        return false;
    }
    std::vector<char> piece(slow ? 16384 : 65536);
    unsigned long long off = 0;
    while (off < n) {
        size_t k = static_cast<size_t>(n - off < piece.size() ? n - off : piece.size());
        for (size_t i = 0; i < k; ++i) {
            piece[i] = static_cast<char>(Pattern(off + i));
        }
        if (!SendAll(s, piece.data(), k)) {
            return false;
        }
        off += k;
        if (slow) {
            Sleep(20);
        }
    }
    return true;
}

unsigned long long QueryN(const std::string &target)
{
    size_t p = target.find("n=");
    return p == std::string::npos ? 0 : std::strtoull(target.c_str() + p + 2, nullptr, 10);
}

// ---- The Windows user token (MS-ASPNETCORE-WINAUTHTOKEN) ----

// For a token header: "winauth-handle: <hex>" and "winauth-sid: <the token user's SID>" (or
// "winauth-error: …" when the value is not a token handle in this process); then the
// handle is closed, since the backend owns it.
std::string WinAuthToken(const std::vector<std::pair<std::string, std::string>> &headers)
{
    std::string out;
    for (const auto &h : headers) {
        if (!IEquals(h.first, "MS-ASPNETCORE-WINAUTHTOKEN")) {
            continue;
        }
        out += "winauth-handle: " + h.second + "\n";
        HANDLE token = reinterpret_cast<HANDLE>(
            static_cast<uintptr_t>(std::strtoull(h.second.c_str(), nullptr, 16)));
        DWORD size = 0;
        GetTokenInformation(token, TokenUser, nullptr, 0, &size);
        std::vector<char> buf(size > 0 ? size : 1);
        LPSTR sid = nullptr;
        if (size > 0 && GetTokenInformation(token, TokenUser, buf.data(), size, &size) &&
            ConvertSidToStringSidA(reinterpret_cast<TOKEN_USER *>(buf.data())->User.Sid, &sid)) {
            out += std::string("winauth-sid: ") + sid + "\n";
            LocalFree(sid);
        } else {
            out += "winauth-error: " + std::to_string(GetLastError()) + "\n";
        }
        CloseHandle(token);
    }
    return out;
}

// ---- WebSocket echo (/ws) ----

struct WsFrame {
    bool fin = false;
    unsigned opcode = 0;
    bool masked = false;
    std::string payload; // unmasked
};

bool Need(Conn &c, size_t n)
{
    while (c.buf.size() < n) {
        if (!Fill(c)) {
            return false;
        }
    }
    return true;
}

bool ReadFrame(Conn &c, WsFrame &f)
{
    if (!Need(c, 2)) return false;
    const unsigned char b0 = static_cast<unsigned char>(c.buf[0]);
    const unsigned char b1 = static_cast<unsigned char>(c.buf[1]);
    f.fin = (b0 & 0x80) != 0;
    f.opcode = b0 & 0x0F;
    f.masked = (b1 & 0x80) != 0;
    unsigned long long len = b1 & 0x7F;
    size_t at = 2;
    if (len == 126) {
        if (!Need(c, 4)) return false;
        len = (static_cast<unsigned char>(c.buf[2]) << 8) | static_cast<unsigned char>(c.buf[3]);
        at = 4;
    } else if (len == 127) {
        if (!Need(c, 10)) return false;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(c.buf[2 + i]);
        at = 10;
    }
    unsigned char key[4] = {0, 0, 0, 0};
    if (f.masked) {
        if (!Need(c, at + 4)) return false;
        std::memcpy(key, c.buf.data() + at, 4);
        at += 4;
    }
    if (len > (64ULL << 20) || !Need(c, at + static_cast<size_t>(len))) return false;
    f.payload = c.buf.substr(at, static_cast<size_t>(len));
    c.buf.erase(0, at + static_cast<size_t>(len));
    for (size_t i = 0; i < f.payload.size(); ++i) f.payload[i] ^= static_cast<char>(key[i % 4]);
    return true;
}

// A server frame: never masked.
bool SendFrame(SOCKET s, unsigned opcode, bool fin, const std::string &payload)
{
    const std::string f = wswire::Frame(opcode, fin, payload, nullptr);
    return SendAll(s, f.data(), f.size());
}

void ServeWebSocket(Conn &c, const std::string &key, bool extensionsOffered)
{
    std::string head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: " + wswire::AcceptKey(key) +
                       "\r\nX-Backend-Saw-Extensions: " + (extensionsOffered ? "yes" : "no") +
                       "\r\n\r\n";
    if (!SendAll(c.s, head.data(), head.size())) {
        return;
    }
    WsFrame f;
    while (ReadFrame(c, f)) {
        if (!f.masked) {
            SendFrame(c.s, 0x8, true, ClosePayload(1002, "unmasked client frame"));
            return;
        }
        if (f.opcode == 0x8) {
            SendFrame(c.s, 0x8, true, f.payload); // answer the close, then end
            return;
        }
        if (f.opcode == 0x9) {
            SendFrame(c.s, 0xA, true, f.payload);
            continue;
        }
        if (f.opcode == 0xA) {
            continue;
        }
        if (f.opcode == 0x1 && f.fin && f.payload == "die") {
            ExitProcess(7); // killed mid-stream: no close frame, the connection just ends
        }
        if (f.opcode == 0x1 && f.fin && f.payload == "close-me") {
            SendFrame(c.s, 0x8, true, ClosePayload(4001, "server bye"));
            while (ReadFrame(c, f) && f.opcode != 0x8) {
            }
            return; // the client's close arrived (or the connection ended)
        }
        if (f.opcode == 0x1 && f.fin && f.payload == "close-empty") {
            // A close without a status (no body), and the connection ends at once, without
            // waiting for the client's answer (a server may, RFC 6455 §7.1.1).
            SendFrame(c.s, 0x8, true, std::string());
            return;
        }
        if (f.opcode == 0x1 && f.fin && f.payload == "ping-me") {
            const std::string p = "p-" + std::to_string(GetCurrentProcessId());
            SendFrame(c.s, 0x9, true, p);
            std::string got = "no pong";
            while (ReadFrame(c, f)) {
                if (f.opcode == 0xA) {
                    got = f.payload == p ? "pong ok" : "pong mismatch: " + f.payload;
                    break;
                }
            }
            SendFrame(c.s, 0x1, true, got);
            continue;
        }
        if (!SendFrame(c.s, f.opcode, f.fin, f.payload)) {
            return;
        }
    }
}

// One request; false ends the connection.
bool Serve(Conn &c)
{
    std::string line;
    if (!ReadLine(c, line)) {
        return false;
    }
    size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
    if (sp1 == std::string::npos || sp2 == sp1) {
        return false;
    }
    const std::string method = line.substr(0, sp1);
    const std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::vector<std::pair<std::string, std::string>> headers;
    unsigned long long contentLength = 0;
    bool chunked = false, close = false;
    std::string token, event, wsKey;
    bool upgradeWebSocket = false, wsExtensions = false;
    for (;;) {
        if (!ReadLine(c, line)) {
            return false;
        }
        if (line.empty()) {
            break;
        }
        size_t colon = line.find(':');
        if (colon == std::string::npos) {
            continue;
        }
        std::string name = line.substr(0, colon);
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value[0] == ' ') {
            value.erase(0, 1);
        }
        if (IEquals(name, "Content-Length")) {
            contentLength = std::strtoull(value.c_str(), nullptr, 10);
        } else if (IEquals(name, "Transfer-Encoding")) {
            chunked = true;
        } else if (IEquals(name, "Connection") && IEquals(value, "close")) {
            close = true;
        } else if (IEquals(name, "MS-ASPNETCORE-TOKEN")) {
            token = value;
        } else if (IEquals(name, "MS-ASPNETCORE-EVENT")) {
            event = value;
        } else if (IEquals(name, "Upgrade") && IEquals(value, "websocket")) {
            upgradeWebSocket = true;
        } else if (IEquals(name, "Sec-WebSocket-Key")) {
            wsKey = value;
        } else if (IEquals(name, "Sec-WebSocket-Extensions")) {
            wsExtensions = true;
        }
        headers.emplace_back(name, value);
    }
    // /early answers before reading the request body (then drains it): the response starts
    // while the client is still uploading.
    const bool early = target.compare(0, 6, "/early") == 0;
    if (early) {
        if (token != g_token) {
            Respond(c.s, 400, "Bad Request", "text/plain", "bad or missing MS-ASPNETCORE-TOKEN\n");
            return false;
        }
        std::string big(256 * 1024, 'e');
        if (!Respond(c.s, 200, "OK", "text/plain", big)) {
            return false;
        }
    }
    Fnv fnv;
    unsigned long long total = 0;
    if (chunked) {
        for (;;) {
            if (!ReadLine(c, line)) {
                return false;
            }
            unsigned long long n = std::strtoull(line.c_str(), nullptr, 16);
            if (n == 0) {
                while (ReadLine(c, line) && !line.empty()) {
                }
                break;
            }
            if (!ReadBody(c, n, fnv, total) || !ReadLine(c, line)) {
                return false;
            }
        }
    } else if (!ReadBody(c, contentLength, fnv, total)) {
        return false;
    }

    if (early) {
        return !close;
    }
    if (token != g_token) {
        Respond(c.s, 400, "Bad Request", "text/plain", "bad or missing MS-ASPNETCORE-TOKEN\n");
        return false;
    }
    const size_t q = target.find('?');
    const std::string path = target.substr(0, q);
    if (path == "/seen") {
        const std::string m = target.substr(target.find("m=") + 2);
        bool seen = false;
        EnterCriticalSection(&g_seenLock);
        for (const std::string &t : g_seen) {
            seen = seen || t.find(m) != std::string::npos;
        }
        LeaveCriticalSection(&g_seenLock);
        return Respond(c.s, 200, "OK", "text/plain", seen ? "seen: yes\n" : "seen: no\n") && !close;
    }
    EnterCriticalSection(&g_seenLock);
    g_seen.push_back(target);
    LeaveCriticalSection(&g_seenLock);
    if (path == "/headers") {
        const std::string body = "headers\n";
        const std::string head = "HTTP/1.1 200 OK\r\nServer: Kestrel-emu\r\nSet-Cookie: a=1; Path=/\r\n"
                                 "X-Backend-Case: Mixed\r\nSet-Cookie: b=2\r\nContent-Type: text/plain\r\n"
                                 "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
        return SendAll(c.s, head.data(), head.size()) && SendAll(c.s, body.data(), body.size()) && !close;
    }
    if (method == "POST" && path.size() >= 15 &&
        path.compare(path.size() - 15, 15, "/iisintegration") == 0 && IEquals(event, "shutdown")) {
        Respond(c.s, 202, "Accepted", "text/plain", "");
        if (g_ignoreShutdown) {
            return false;
        }
        shutdown(c.s, SD_SEND);
        Sleep(100);
        ExitProcess(0); // the graceful stop the engine asked for
    }
    // Told that IIS cannot carry WebSockets, ASP.NET Core's IISMiddleware removes the upgrade
    // feature: the app answers the request as an ordinary one.
    const char *wsSupported = std::getenv("ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED");
    const bool upgradeAllowed = wsSupported == nullptr || std::strcmp(wsSupported, "false") != 0;
    if (path == "/ws" && upgradeWebSocket && !wsKey.empty() && upgradeAllowed) {
        ServeWebSocket(c, wsKey, wsExtensions);
        return false; // the connection ends with the WebSocket
    }
    if (path == "/bytes" || path.compare(0, 6, "/bytes") == 0) {
        return SendPattern(c.s, QueryN(target), false) && !close;
    }
    if (path.compare(0, 9, "/truncate") == 0) {
        // Promise n bytes, send half, drop the connection: a response broken after its head.
        const unsigned long long n = QueryN(target);
        std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                           "Content-Length: " + std::to_string(n) + "\r\n\r\n" +
                           std::string(static_cast<size_t>(n / 2), 'x');
        SendAll(c.s, head.data(), head.size());
        return false;
    }
    if (path.size() >= 10 && path.compare(path.size() - 10, 10, "/exit-soon") == 0) {
        Respond(c.s, 200, "OK", "text/plain", "exiting\n");
        shutdown(c.s, SD_SEND);
        Sleep(100);
        ExitProcess(5);
    }
    if (path.compare(0, 5, "/slow") == 0) {
        return SendPattern(c.s, QueryN(target), true) && !close;
    }
    std::string body = "method: " + method + "\ntarget: " + target + "\ntoken-ok: yes\n";
    // Names lower-cased (HTTP/1.1 names are case-insensitive; the engine sends lower case).
    for (const auto &h : headers) {
        std::string name = h.first;
        for (char &ch : name) {
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
        body += "header: " + name + ": " + h.second + "\n";
    }
    char hex[32];
    std::snprintf(hex, sizeof hex, "%016llx", fnv.h);
    body += "body-length: " + std::to_string(total) + "\nbody-fnv: " + hex + "\n";
    body += "pid: " + std::to_string(GetCurrentProcessId()) + "\n";
    // The wide environment, as UTF-8 (the ANSI one would lose non-ASCII values).
    wchar_t *env = GetEnvironmentStringsW();
    for (const wchar_t *e = env; e != nullptr && *e != L'\0'; e += wcslen(e) + 1) {
        if (wcsncmp(e, L"EMU_", 4) == 0 || wcsncmp(e, L"ASPNETCORE_", 11) == 0) {
            int n = WideCharToMultiByte(CP_UTF8, 0, e, -1, nullptr, 0, nullptr, nullptr);
            std::string u(n > 0 ? static_cast<size_t>(n) : 0, '\0');
            if (n > 0) {
                WideCharToMultiByte(CP_UTF8, 0, e, -1, &u[0], n, nullptr, nullptr);
                u.resize(static_cast<size_t>(n - 1));
            }
            body += "env: " + u + "\n";
        }
    }
    FreeEnvironmentStringsW(env);
    body += WinAuthToken(headers);
    return Respond(c.s, 200, "OK", "text/plain; charset=utf-8", body) && !close;
}

DWORD WINAPI ConnectionThread(LPVOID param)
{
    Conn c;
    c.s = reinterpret_cast<SOCKET>(param);
    while (Serve(c)) {
    }
    closesocket(c.s);
    return 0;
}

// ---- --relay PORT: a transparent TCP relay to an app on the Linux side ----
// The emulator's h2c cases need an HTTP/2 app, and the real one (tests/backends/h2_raw.py, on
// the h2 library) runs outside Wine; Wine shares the host's loopback, so this process, which
// the engine starts and pairs with, passes each connection's bytes both ways unchanged.

struct Pipe {
    SOCKET from, to;
};

DWORD WINAPI PipeThread(LPVOID param)
{
    Pipe p = *static_cast<Pipe *>(param);
    delete static_cast<Pipe *>(param);
    char buf[16384];
    for (;;) {
        int n = recv(p.from, buf, sizeof buf, 0);
        if (n <= 0) {
            break;
        }
        for (int off = 0; off < n;) {
            int k = send(p.to, buf + off, n - off, 0);
            if (k <= 0) {
                n = -1;
                break;
            }
            off += k;
        }
        if (n < 0) {
            break;
        }
    }
    shutdown(p.to, SD_SEND);
    return 0;
}

struct RelayConn {
    SOCKET client;
    int port;
};

DWORD WINAPI RelayThread(LPVOID param)
{
    RelayConn c = *static_cast<RelayConn *>(param);
    delete static_cast<RelayConn *>(param);
    SOCKET up = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    sockaddr_in addr;
    std::memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<u_short>(c.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (up == INVALID_SOCKET || connect(up, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
        closesocket(c.client);
        if (up != INVALID_SOCKET) {
            closesocket(up);
        }
        return 0;
    }
    HANDLE t = CreateThread(nullptr, 0, &PipeThread, new Pipe{up, c.client}, 0, nullptr);
    Pipe *down = new Pipe{c.client, up};
    PipeThread(down);
    if (t != nullptr) {
        WaitForSingleObject(t, INFINITE);
        CloseHandle(t);
    }
    closesocket(up);
    closesocket(c.client);
    return 0;
}

int g_relayPort = 0;

} // namespace

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--relay") == 0 && i + 1 < argc) {
            g_relayPort = std::atoi(argv[++i]);
        }
        if (std::strcmp(argv[i], "--fail-at-start") == 0) {
            std::fprintf(stderr, "backend: failing at start as asked\n");
            return 3;
        }
        if (std::strcmp(argv[i], "--ignore-shutdown") == 0) {
            g_ignoreShutdown = true;
        }
    }
    const char *port = std::getenv("ASPNETCORE_PORT");
    const char *token = std::getenv("ASPNETCORE_TOKEN");
    if (port == nullptr || token == nullptr) {
        std::fprintf(stderr, "backend: ASPNETCORE_PORT / ASPNETCORE_TOKEN not set\n");
        return 2;
    }
    g_token = token;
    InitializeCriticalSection(&g_seenLock);
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        return 2;
    }
    SOCKET ls = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    sockaddr_in addr;
    std::memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<u_short>(std::atoi(port)));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ls == INVALID_SOCKET || bind(ls, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
        listen(ls, SOMAXCONN) != 0) {
        std::fprintf(stderr, "backend: cannot listen on port %s\n", port);
        return 2;
    }
    std::printf("backend: listening on 127.0.0.1:%s\n", port);
    std::fflush(stdout);
    for (;;) {
        SOCKET s = accept(ls, nullptr, nullptr);
        if (s == INVALID_SOCKET) {
            continue;
        }
        if (g_relayPort != 0) {
            HANDLE r = CreateThread(nullptr, 0, &RelayThread, new RelayConn{s, g_relayPort}, 0,
                                    nullptr);
            if (r == nullptr) {
                closesocket(s);
            } else {
                CloseHandle(r);
            }
            continue;
        }
        HANDLE t = CreateThread(nullptr, 0, &ConnectionThread, reinterpret_cast<LPVOID>(s), 0,
                                nullptr);
        if (t == nullptr) {
            closesocket(s);
        } else {
            CloseHandle(t);
        }
    }
}
