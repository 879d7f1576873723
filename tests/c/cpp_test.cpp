// cpp_test.cpp: the main path through ancm.hpp: configuration (with an error message), an app, a
// GET and a streamed POST to examples/hello/app.py. Usage: cpp_test <repo root>.
#include "ancm.hpp"
#include "ancm.hpp" // twice on purpose

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>

namespace {

struct Exchange {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    ancm_result result = ANCM_RESULT_OK;
    int status = 0;
    std::string body;
    size_t upload_left = 0;
    ancm::Request req;
};

const ancm_callbacks kCallbacks = {
    [](void *ud) {
        auto *x = static_cast<Exchange *>(ud);
        static const char chunk[4096] = {'x'};
        if (x->upload_left == 0) {
            (void)x->req.end_body();
            return;
        }
        size_t n = x->upload_left < sizeof chunk ? x->upload_left : sizeof chunk;
        x->upload_left -= n;
        (void)x->req.supply_body(chunk, n);
    },
    [](void *ud, const ancm_response_head *head) { static_cast<Exchange *>(ud)->status = head->status; },
    [](void *ud, const uint8_t *data, size_t len, bool) {
        auto *x = static_cast<Exchange *>(ud);
        x->body.append(reinterpret_cast<const char *>(data), len);
        (void)x->req.ack_write();
    },
    [](void *ud, ancm_result result, const uint8_t *, size_t) {
        auto *x = static_cast<Exchange *>(ud);
        std::lock_guard<std::mutex> lock(x->mu);
        x->result = result;
        x->done = true;
        x->cv.notify_all();
    },
    nullptr, // no response trailers
};

bool run(const ancm::App &app, const char *method, const char *target, size_t upload, Exchange &x) {
    x.upload_left = upload;
    std::string len = std::to_string(upload);
    ancm_header headers[] = {{ancm::slice("Host"), ancm::slice("localhost")},
                             {ancm::slice("Content-Length"), ancm::slice(len)}};
    ancm_request_head head{};
    head.method = ancm::slice(method);
    head.target = ancm::slice(target);
    head.headers = headers;
    head.header_count = upload ? 2 : 1;
    head.content_length = static_cast<int64_t>(upload);
    head.client_address = ancm::slice("::1");
    head.client_port = 1234;
    ancm::Status s = ancm::Request::start(app, head, kCallbacks, &x, x.req);
    if (!s) {
        std::printf("start: %s\n", s.message().c_str());
        return false;
    }
    std::unique_lock<std::mutex> lock(x.mu);
    bool done = x.cv.wait_for(lock, std::chrono::seconds(60), [&] { return x.done; });
    if (!done) {
        (void)x.req.cancel();
        x.cv.wait(lock, [&] { return x.done; });
    }
    return done && x.result == ANCM_RESULT_OK;
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 2) return 100;
    std::string site = std::string(argv[1]) + "/examples/hello";
    int failures = 0;
    auto check = [&](bool ok, const char *what) {
        std::printf("%s - %s\n", ok ? "ok" : "not ok", what);
        failures += !ok;
    };

    ancm::ConfigBuilder bad;
    check(ancm::ConfigBuilder::create("settings", ANCM_DIALECT_ASP_NET_CORE, bad).ok(), "builder");
    ancm::Status s = bad.set(u"startupTimeLimit", u"9999");
    check(s.ok(), "utf-16 set");
    ancm::Config none;
    s = bad.build(none);
    check(!s && s.code() == ANCM_RESULT_CONFIG_INVALID && s.message().find("processPath") != std::string::npos,
          ("configuration error message: " + s.message()).c_str());

    ancm::ConfigBuilder b;
    ancm::Config config;
    bool ok = ancm::ConfigBuilder::create("settings", ANCM_DIALECT_ASP_NET_CORE, b).ok() &&
              b.set("processPath", "python3").ok() && b.set("arguments", "app.py").ok() &&
              b.add_environment_variable(u"DROPPED", u"x").ok() && b.clear_environment_variables().ok() &&
              b.add_environment_variable(u"TEMPORARY", u"y").ok() && b.remove_environment_variable("temporary").ok() &&
              b.add_handler_setting(u"recycleAfterRequests", u"0").ok() && b.remove_handler_setting("recycleafterrequests").ok() &&
              b.add_handler_setting("debugLevel", "INFO").ok() && b.clear_handler_settings().ok() &&
              b.add_environment_variable("HELLO_GREETING", "from C++").ok() && b.build(config).ok();
    check(ok, "configuration from the builder");

    ancm_host_info host{};
    host.site_root = ancm::slice(site);
    ancm::App app;
    check(ancm::App::create(config, host, app).ok(), "app");

    Exchange get;
    check(run(app, "GET", "/", 0, get) && get.status == 200 && get.body.find("from C++") != std::string::npos,
          "GET / shows the configured greeting");
    Exchange env;
    check(run(app, "GET", "/env", 0, env) && env.status == 200 &&
              env.body.find("HELLO_GREETING") != std::string::npos &&
              env.body.find("DROPPED") == std::string::npos && env.body.find("TEMPORARY") == std::string::npos,
          "UTF-16 collections: cleared and removed variables do not reach the app");
    Exchange post;
    check(run(app, "POST", "/json", 1 << 20, post) && post.status == 200 &&
              post.body.find("\"body_len\": 1048576") != std::string::npos,
          "streamed 1 MiB POST");
    ancm_app_status st{};
    check(app.status(st).ok() && st.process_count == 1, "status");
    check(app.stop().ok(), "graceful stop");
    std::printf("cpp_test: %d failure(s)\n", failures);
    return failures;
}
