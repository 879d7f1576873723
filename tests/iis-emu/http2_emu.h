// HTTP/2 requests to an h2c app through the module (issue 19): trailers out through
// IHttpResponse4::SetTrailer, a backend's reset out through IHttpResponse4::ResetStream, and an
// IIS without IHttpResponse4 (before Windows Server 2022) answering a gRPC call with a clear
// error; and the grpcio app of the other hosts' tests (grpc_server.py, EMU_GRPC_PORT). The app is
// tests/backends/h2_raw.py (HTTP/2 on the h2 library), run outside Wine by
// `cargo xtask iis-emu` on the port in EMU_H2_PORT; backend.exe, which the engine starts and
// pairs with, relays its connections there (backend.cpp, --relay).
//
// Included by emu.cpp after its helpers (Spec, RunRequest, Check, MakeApp).
#pragma once

// The trailer named `name` among those set, or "" (a missing one).
std::string TrailerOf(const Response &r, const char *name)
{
    for (const auto &kv : r.trailers) {
        if (kv.first == name) {
            return kv.second;
        }
    }
    return std::string();
}

// One gRPC message on the wire: flag 0 (uncompressed), 4-byte big-endian length, the bytes.
std::string GrpcFrame(const std::string &msg)
{
    std::string f(5, '\0');
    const size_t n = msg.size();
    f[1] = static_cast<char>(n >> 24);
    f[2] = static_cast<char>(n >> 16);
    f[3] = static_cast<char>(n >> 8);
    f[4] = static_cast<char>(n);
    return f + msg;
}

// The grpcio app of ancm-serve's and the C ABI's tests (tests/backends/grpc_server.py, generic
// handlers on raw bytes), the same app through the emulated IIS: a unary call and a server stream
// over HTTP/2, their grpc-status through IHttpResponse4::SetTrailer.
void RunGrpcioTests(Registration &reg, Server &server, const std::string &backend)
{
    const char *port = std::getenv("EMU_GRPC_PORT");
    if (port == nullptr || *port == '\0') {
        Check(false, "gRPC: EMU_GRPC_PORT is not set (cargo xtask iis-emu starts grpc_server.py)");
        return;
    }
    Application app;
    if (!MakeApp(app, "grpcio", backend)) {
        return;
    }
    server.admin.sections[app.configPath] = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")},
         {L"arguments", Str(L"--relay " + Widen(port))}},
        Pairs(), {{L"backendProtocol", L"h2c"}});
    Spec call;
    call.method = "POST";
    call.url = "/test.Echo/Unary";
    call.http2 = true;
    call.headers = {{"Host", "localhost"}, {"Content-Type", "application/grpc"}, {"TE", "trailers"}};
    call.body = GrpcFrame("hello from IIS");
    Result r1;
    RunRequest(reg, app, call, r1);
    PrintResponse("grpcio unary call through the emulated IIS", r1);
    Check(r1.status == RQ_NOTIFICATION_CONTINUE && r1.response.status == 200 &&
              r1.response.body == GrpcFrame("hello from IIS") &&
              TrailerOf(r1.response, "grpc-status") == "0" && r1.response.resetStream < 0,
          "grpcio app in the emulated IIS: unary call answered, grpc-status 0 through SetTrailer (" +
              TrailerOf(r1.response, "grpc-status") + ")");
    Spec stream = call;
    stream.url = "/test.Echo/ServerStream";
    stream.body = GrpcFrame("3");
    Result r2;
    RunRequest(reg, app, stream, r2);
    Check(r2.status == RQ_NOTIFICATION_CONTINUE && r2.response.status == 200 &&
              r2.response.body == GrpcFrame("msg-0") + GrpcFrame("msg-1") + GrpcFrame("msg-2") &&
              TrailerOf(r2.response, "grpc-status") == "0",
          "grpcio app in the emulated IIS: server stream of 3 messages, then grpc-status 0");
}

void RunHttp2Tests(Registration &reg, Server &server, const std::string &backend)
{
    const char *port = std::getenv("EMU_H2_PORT");
    if (port == nullptr || *port == '\0') {
        Check(false, "HTTP/2: EMU_H2_PORT is not set (cargo xtask iis-emu starts h2_raw.py)");
        return;
    }
    Application h2c;
    if (!MakeApp(h2c, "h2c", backend)) {
        return;
    }
    server.admin.sections[h2c.configPath] = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")},
         {L"arguments", Str(L"--relay " + Widen(port))}},
        Pairs(), {{L"backendProtocol", L"h2c"}});

    // A gRPC-shaped HTTP/2 POST: no Content-Length (HTTP.sys flags the body instead), TE:
    // trailers. h2_raw.py's /echo answers with its view of the request, then the trailers
    // x-echo-trailer: done and grpc-status: 0.
    Spec grpc;
    grpc.method = "POST";
    grpc.url = "/echo";
    grpc.http2 = true;
    grpc.headers = {{"Host", "localhost"}, {"Content-Type", "application/grpc"}, {"TE", "trailers"}};
    grpc.body = std::string("\0\0\0\0\x03" "abc", 8);
    Result r1;
    RunRequest(reg, h2c, grpc, r1);
    PrintResponse("HTTP/2 gRPC-shaped POST to an h2c app", r1);
    CheckCycle(r1, "HTTP/2 POST to an h2c app");
    const auto &t = r1.response.trailers;
    bool trailersOk = t.size() == 2 && r1.response.resetStream < 0 &&
                      ((t[0] == std::make_pair(std::string("x-echo-trailer"), std::string("done")) &&
                        t[1] == std::make_pair(std::string("grpc-status"), std::string("0"))) ||
                       (t[1] == std::make_pair(std::string("x-echo-trailer"), std::string("done")) &&
                        t[0] == std::make_pair(std::string("grpc-status"), std::string("0"))));
    std::string seen;
    for (const auto &kv : t) {
        seen += kv.first + "=" + kv.second + " ";
    }
    Check(r1.status == RQ_NOTIFICATION_CONTINUE && r1.response.status == 200 && trailersOk &&
              r1.response.trailerReplaces == 2,
          "HTTP/2: the h2c app's trailers went out through IHttpResponse4::SetTrailer (" + seen + ")");
    Check(Contains(r1.response.body, "\"body_len\": 8") &&
              Contains(r1.response.body, "\"ms-aspnetcore-token\"") &&
              Contains(r1.response.body, "[\"te\", \"trailers\"]"),
          "HTTP/2: the body without Content-Length, the pairing token and TE: trailers reached the app");

    // The app resets its stream after the head and some data: the client's stream is reset with
    // the same code, the connection is not.
    Spec reset;
    reset.url = "/reset?code=11";
    reset.http2 = true;
    reset.headers = {{"Host", "localhost"}};
    Result r2;
    RunRequest(reg, h2c, reset, r2);
    Check(r2.status == RQ_NOTIFICATION_FINISH_REQUEST && r2.response.resetStream == 11 &&
              !r2.response.reset && r2.response.trailers.empty(),
          "HTTP/2: the app's RST_STREAM (ENHANCE_YOUR_CALM) went out through "
          "IHttpResponse4::ResetStream(11), not a connection reset (got " +
              std::to_string(r2.response.resetStream) + ")");

    // An HTTP/1.1 client: HTTP.sys sends no trailers on HTTP/1.1, so none are set.
    Spec h1 = grpc;
    h1.http2 = false;
    h1.headers = {{"Host", "localhost"}, {"Content-Type", "application/octet-stream"},
                  {"Content-Length", "8"}};
    Result r3;
    RunRequest(reg, h2c, h1, r3);
    Check(r3.response.status == 200 && r3.response.trailers.empty() && r3.response.resetStream < 0,
          "HTTP/1.1 client of an h2c app: answered, no SetTrailer");

    RunGrpcioTests(reg, server, backend);

    // IIS without IHttpResponse4: a gRPC call is answered 502 naming the reason, not forwarded
    // to end as a stream without its status.
    g_offerResponse4 = false;
    Result r4;
    RunRequest(reg, h2c, grpc, r4);
    g_offerResponse4 = true;
    PrintResponse("HTTP/2 gRPC call, IIS without IHttpResponse4", r4);
    Check(r4.response.status == 502 && Contains(r4.response.body, "IHttpResponse4") &&
              r4.response.trailers.empty() && r4.response.resetStream < 0,
          "no IHttpResponse4: a gRPC call gets 502 naming IHttpResponse4");
    // ... while a plain HTTP/2 request still goes through (it needs no trailers).
    Spec plain = reset;
    plain.url = "/";
    g_offerResponse4 = false;
    Result r5;
    RunRequest(reg, h2c, plain, r5);
    g_offerResponse4 = true;
    Check(r5.response.status == 200 && r5.response.body == "ok\n",
          "no IHttpResponse4: a plain HTTP/2 request is still forwarded");
}
