// cpp_api_test.cpp: all of ancm.hpp against real backends (examples/hello/app.py and
// tests/backends/ws_echo.py): version, configuration from files (UTF-8 and UTF-16 paths) with
// error kinds, the builder's UTF-16 removals, requests whose callbacks are C++ callables
// (GET, streamed POST, a missing callable), WebSocket fragments through a callable, the process
// list, and the log callback as a callable. Run under AddressSanitizer by `cargo xtask c-tests`.
// Usage: cpp_api_test <repo root>.
#include "ancm.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const std::string &what) {
    std::printf("%s - %s\n", ok ? "ok" : "not ok", what.c_str());
    std::fflush(stdout);
    failures += !ok;
}

/// What one request saw; the callables write it, the test thread waits on `done`.
struct Seen {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    ancm_result result = ANCM_RESULT_PANIC;
    std::string message;
    int status = 0;
    bool upgraded = false;
    std::string body;
    std::vector<std::string> fragments;
    bool close = false;
    uint16_t close_status = 0;

    bool wait() {
        std::unique_lock<std::mutex> lock(mu);
        return cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; });
    }
};

ancm_request_head head_for(const char *method, const char *target, const std::vector<ancm_header> &headers,
                           int64_t content_length) {
    ancm_request_head head{};
    head.method = ancm::slice(method);
    head.target = ancm::slice(target);
    head.headers = headers.data();
    head.header_count = headers.size();
    head.content_length = content_length;
    head.client_address = ancm::slice("127.0.0.1");
    head.client_port = 40000;
    return head;
}

/// Callables that record into `seen`; `next_body` answers each body_wanted (0 bytes: the end).
ancm::Callbacks recording(Seen &seen, ancm::Request &req, std::function<std::string()> next_body) {
    ancm::Callbacks cb;
    cb.body_wanted = [&req, next_body]() {
        std::string part = next_body();
        if (part.empty())
            (void)req.end_body();
        else
            (void)req.supply_body(part.data(), part.size());
    };
    cb.response_head = [&seen](const ancm_response_head &h) {
        std::lock_guard<std::mutex> lock(seen.mu);
        seen.status = h.status;
        seen.upgraded = h.upgraded;
    };
    cb.response_body = [&seen, &req](const uint8_t *data, size_t len, bool) {
        {
            std::lock_guard<std::mutex> lock(seen.mu);
            seen.body.append(reinterpret_cast<const char *>(data), len);
        }
        (void)req.ack_write();
    };
    cb.complete = [&seen](ancm_result r, std::string_view message) {
        std::lock_guard<std::mutex> lock(seen.mu);
        seen.result = r;
        seen.message = std::string(message);
        seen.done = true;
        seen.cv.notify_all();
    };
    return cb;
}

std::string write_config(const std::string &dir, const std::string &attrs, const std::string &inner = "") {
    std::string path = dir + "/web.config";
    FILE *f = std::fopen(path.c_str(), "w");
    if (!f) std::exit(100);
    std::fprintf(f,
                 "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration><system.webServer>\n"
                 "<aspNetCore %s>%s</aspNetCore>\n</system.webServer></configuration>\n",
                 attrs.c_str(), inner.c_str());
    std::fclose(f);
    return path;
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 2) return 100;
    const std::string root = argv[1];
    char tmpl[] = "/tmp/ancm-cpp-api-XXXXXX";
    if (!mkdtemp(tmpl)) return 100;
    const std::string dir = tmpl;

    check(ancm::version() == ANCM_VERSION, "version() is ANCM_VERSION");
    check(ancm::result_message(ANCM_RESULT_INVALID_TARGET) == "the request target cannot be forwarded",
          "result_message()");

    // The log callback as a callable: the process start is Event Log event 1001.
    std::atomic<int> messages{0}, starts{0};
    check(ancm::set_log_callback(
              [&](ancm_log_level, uint32_t event, std::string_view text) {
                  messages++;
                  if (event == ANCM_EVENT_PROCESS_START_SUCCESS && text.find("listening") != std::string_view::npos)
                      starts++;
              },
              ANCM_LOG_LEVEL_INFO)
              .ok(),
          "set_log_callback with a lambda");

    // Configuration files, UTF-8 and UTF-16 paths; an error with its kind.
    ancm::Config bad;
    std::string bad_path = write_config(dir, "processPath=\"python3\" startupTimeLimit=\"9999\"");
    ancm::Status s = ancm::Config::from_file(bad_path, bad);
    check(s.code() == ANCM_RESULT_CONFIG_INVALID && s.error_kind() == ANCM_CONFIG_ERROR_KIND_OUT_OF_RANGE &&
              s.message().find("startupTimeLimit") != std::string::npos,
          "from_file: error message and kind: " + s.message());
    std::string path = write_config(dir, "processPath=\"python3\" arguments=\"" + root + "/examples/hello/app.py\"");
    std::u16string path16(path.begin(), path.end()); // ASCII path
    ancm::Config config;
    check(ancm::Config::from_file(path16, config).ok(), "from_file with a UTF-16 path");

    ancm::ConfigBuilder b;
    ancm::Config built;
    check(ancm::ConfigBuilder::create("settings", ANCM_DIALECT_ASP_NET_CORE, b).ok() &&
              b.set("processPath", "python3").ok() && b.add_environment_variable(u"GONE", u"1").ok() &&
              b.remove_environment_variable(u"gone").ok() && b.add_handler_setting(u"debugLevel", u"INFO").ok() &&
              b.remove_handler_setting(u"DEBUGLEVEL").ok() && b.build(built).ok(),
          "builder: UTF-16 removals");

    ancm_host_info host{};
    std::string site = root + "/examples/hello";
    host.site_root = ancm::slice(site);
    ancm::App app;
    check(ancm::App::create(config, host, app).ok(), "app");

    std::vector<ancm_header> plain = {{ancm::slice("Host"), ancm::slice("localhost")}};
    {
        Seen seen;
        ancm::Request req;
        s = ancm::Request::start(app, head_for("GET", "/json", plain, 0),
                                 recording(seen, req, [] { return std::string(); }), req);
        check(s.ok() && seen.wait() && seen.result == ANCM_RESULT_OK && seen.status == 200 &&
                  seen.body.find("\"path\": \"/json\"") != std::string::npos,
              "GET with callables");
    }
    {
        Seen seen;
        ancm::Request req;
        auto left = std::make_shared<int>(64);
        std::string piece(1024, 'z');
        s = ancm::Request::start(app, head_for("POST", "/json", plain, 64 * 1024),
                                 recording(seen, req,
                                           [left, piece] { return (*left)-- > 0 ? piece : std::string(); }),
                                 req);
        check(s.ok() && seen.wait() && seen.result == ANCM_RESULT_OK &&
                  seen.body.find("\"body_len\": 65536") != std::string::npos,
              "streamed POST with callables: " + seen.message);
    }
    {
        Seen seen;
        ancm::Request req;
        ancm::Callbacks cb = recording(seen, req, [] { return std::string(); });
        cb.response_body = nullptr;
        s = ancm::Request::start(app, head_for("GET", "/", plain, 0), std::move(cb), req);
        check(s.code() == ANCM_RESULT_MISSING_CALLBACK && req.get() == nullptr, "an empty callable: MISSING_CALLBACK");
    }

    std::vector<ancm_process_info> procs;
    check(app.processes(procs).ok() && procs.size() == 1 && procs[0].pid > 0 && procs[0].port > 0,
          "processes(): one running process");
    check(app.stop().ok(), "graceful stop");
    check(app.processes(procs).ok() && procs.empty(), "processes(): none after stop");

    // WebSocket fragments through the ws_fragment callable.
    std::string ws_dir = dir + "/ws";
    mkdir(ws_dir.c_str(), 0700);
    std::string ws_path =
        write_config(ws_dir, "processPath=\"python3\" arguments=\"" + root + "/tests/backends/ws_echo.py\"");
    ancm::Config ws_config;
    ancm_host_info ws_host{};
    ws_host.site_root = ancm::slice(ws_dir);
    ws_host.websockets_supported = true;
    ancm::App ws_app;
    check(ancm::Config::from_file(ws_path, ws_config).ok() && ancm::App::create(ws_config, ws_host, ws_app).ok(),
          "WebSocket app");
    {
        Seen seen;
        ancm::Request req;
        std::vector<ancm_header> upgrade = {{ancm::slice("Host"), ancm::slice("localhost")},
                                            {ancm::slice("Connection"), ancm::slice("Upgrade")},
                                            {ancm::slice("Upgrade"), ancm::slice("websocket")},
                                            {ancm::slice("Sec-WebSocket-Version"), ancm::slice("13")},
                                            {ancm::slice("Sec-WebSocket-Key"), ancm::slice("dGhlIHNhbXBsZSBub25jZQ==")}};
        ancm::Callbacks cb = recording(seen, req, [] { return std::string(); });
        // The close goes once the echo is back and the core asks for the next fragment,
        // whichever comes last (either callable may send it; the two never run at once).
        struct Stage {
            int asked = 0;
            bool echoed = false, close_sent = false;
        };
        auto stage = std::make_shared<Stage>();
        auto send_close = [&req, stage]() {
            if (stage->asked < 2 || !stage->echoed || stage->close_sent) return;
            stage->close_sent = true;
            ancm_ws_fragment f{};
            f.close = true;
            f.close_status = 1000;
            f.final_fragment = true;
            (void)req.supply_ws_fragment(f);
        };
        cb.body_wanted = [&req, stage, send_close]() {
            int n = ++stage->asked;
            if (n == 1) {
                ancm_ws_fragment f{};
                f.data = ancm::slice("hi from C++");
                f.utf8 = true;
                f.final_fragment = true;
                (void)req.supply_ws_fragment(f);
            } else if (n == 2) {
                send_close();
            } else {
                (void)req.end_body();
            }
        };
        cb.response_head = [&seen, &req](const ancm_response_head &h) {
            {
                std::lock_guard<std::mutex> lock(seen.mu);
                seen.status = h.status;
                seen.upgraded = h.upgraded;
            }
            if (h.upgraded && !req.websocket_fragments().ok()) std::printf("    websocket_fragments failed\n");
        };
        cb.ws_fragment = [&seen, &req, stage, send_close](const ancm_ws_fragment &f) {
            {
                std::lock_guard<std::mutex> lock(seen.mu);
                if (f.close) {
                    seen.close = true;
                    seen.close_status = f.close_status;
                } else {
                    seen.fragments.emplace_back(ancm::view(f.data));
                }
            }
            (void)req.ack_write();
            if (!f.close) {
                stage->echoed = true;
                send_close();
            }
        };
        s = ancm::Request::start(ws_app, head_for("GET", "/echo", upgrade, 0), std::move(cb), req);
        bool done = s.ok() && seen.wait();
        check(done && seen.status == 101 && seen.upgraded && seen.result == ANCM_RESULT_OK &&
                  seen.fragments.size() == 1 && seen.fragments[0] == "hi from C++" && seen.close &&
                  seen.close_status == 1000,
              "WebSocket fragments through callables: status " + std::to_string(seen.status) + ", result " +
                  std::to_string(seen.result) + " " + seen.message + ", " + std::to_string(seen.fragments.size()) +
                  " fragments, close " + std::to_string(seen.close_status));
    }
    {
        // websocket_fragments() needs a request started with callables.
        ancm::Request none;
        check(none.websocket_fragments().code() == ANCM_RESULT_MISSING_CALLBACK,
              "websocket_fragments() without callables: MISSING_CALLBACK");
    }
    check(ws_app.stop().ok(), "WebSocket app stop");

    // HTTP/2 trailers and resets through callables, to an h2c app (tests/backends/h2_raw.py).
    std::string h2_dir = dir + "/h2";
    mkdir(h2_dir.c_str(), 0700);
    std::string h2_path = write_config(
        h2_dir, "processPath=\"python3\" arguments=\"" + root + "/tests/backends/h2_raw.py\"",
        "<handlerSettings><handlerSetting name=\"backendProtocol\" value=\"h2c\" /></handlerSettings>");
    ancm::Config h2_config;
    ancm_host_info h2_host{};
    h2_host.site_root = ancm::slice(h2_dir);
    ancm::App h2_app;
    check(ancm::Config::from_file(h2_path, h2_config).ok() && ancm::App::create(h2_config, h2_host, h2_app).ok(),
          "h2c app");
    std::vector<ancm_header> h2_headers = {{ancm::slice("Host"), ancm::slice("localhost")},
                                           {ancm::slice("TE"), ancm::slice("trailers")}};
    {
        Seen seen;
        ancm::Request req;
        ancm::Callbacks cb = recording(seen, req, [] { return std::string(); });
        auto sent = std::make_shared<bool>(false);
        std::vector<ancm_header> trailers = {{ancm::slice("x-req-trailer"), ancm::slice("from C++")}};
        cb.body_wanted = [&req, sent, trailers]() {
            if (!*sent) {
                *sent = true;
                (void)req.supply_body("abc", 3);
            } else {
                (void)req.supply_trailers(trailers.data(), trailers.size());
            }
        };
        std::string got_trailers;
        cb.response_trailers = [&seen, &got_trailers](const ancm_header *h, size_t n) {
            std::lock_guard<std::mutex> lock(seen.mu);
            for (size_t i = 0; i < n; i++)
                got_trailers += std::string(ancm::view(h[i].name)) + "=" + std::string(ancm::view(h[i].value)) + ";";
        };
        s = ancm::Request::start(h2_app, head_for("POST", "/echo", h2_headers, -1), std::move(cb), req);
        bool done = s.ok() && seen.wait();
        check(done && seen.result == ANCM_RESULT_OK &&
                  seen.body.find("[\"x-req-trailer\", \"from C++\"]") != std::string::npos &&
                  got_trailers.find("x-echo-trailer=done;") != std::string::npos,
              "supply_trailers and response_trailers through callables: " + seen.body + " / " + got_trailers);
    }
    {
        Seen seen;
        ancm::Request req;
        s = ancm::Request::start(h2_app, head_for("GET", "/reset?code=2", h2_headers, 0),
                                 recording(seen, req, [] { return std::string(); }), req);
        uint32_t code = 0;
        bool done = s.ok() && seen.wait() && req.reset_code(code).ok();
        check(done && seen.result == ANCM_RESULT_STREAM_RESET && code == 2,
              "a backend reset: STREAM_RESET and reset_code() " + std::to_string(code));
    }
    check(h2_app.stop().ok(), "h2c app stop");

    check(ancm::set_log_callback(nullptr).ok(), "set_log_callback(nullptr) stops delivery");
    int before = messages.load();
    ancm::Config again;
    (void)ancm::Config::from_file(bad_path, again); // would log, if anything were delivered
    check(messages.load() > 0 && starts.load() > 0 && messages.load() == before,
          "log callable saw the engine's messages, event 1001, and nothing after it was cleared");

    unlink(bad_path.c_str());
    unlink(path.c_str());
    unlink(ws_path.c_str());
    unlink(h2_path.c_str());
    std::string h2_log = h2_dir + "/resets.log";
    unlink(h2_log.c_str());
    rmdir(h2_dir.c_str());
    rmdir(ws_dir.c_str());
    rmdir(dir.c_str());
    std::printf("cpp_api_test: %d failure(s)\n", failures);
    return failures;
}
