// ancm.hpp: a header-only C++17 RAII wrapper over ancm.h (the C ABI of ancm-core), covering all of
// it: configuration (UTF-8 and UTF-16), apps with their status and process list, requests with
// either a C callback table or C++ callables, WebSocket fragments, and the log callback.
//
// Owners are std::unique_ptr with the matching ancm_*_free as deleter, so every handle is freed
// exactly once; fallible calls return an ancm::Status marked [[nodiscard]]. Nothing here throws
// except std::bad_alloc from the standard containers. The threading and callback rules are those
// of ancm.h (docs/c-api.md): callables run on core threads and must not block; an exception
// escaping one calls std::terminate (it must never unwind into the engine).
#ifndef ANCM_HPP
#define ANCM_HPP

#include "ancm.h"

#include <functional>
#include <memory>
#include <atomic>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ancm {

/// The result of a call: a result code, plus the configuration error's message when there is one.
class [[nodiscard]] Status {
public:
    Status(ancm_result code = ANCM_RESULT_OK, std::string detail = {},
           ancm_config_error_kind kind = ANCM_CONFIG_ERROR_KIND_OTHER)
        : code_(code), detail_(std::move(detail)), kind_(kind) {}
    [[nodiscard]] bool ok() const noexcept { return code_ == ANCM_RESULT_OK; }
    explicit operator bool() const noexcept { return ok(); }
    [[nodiscard]] ancm_result code() const noexcept { return code_; }
    /// The configuration error's one-line message, or the code's description.
    [[nodiscard]] std::string message() const { return detail_.empty() ? ancm_result_message(code_) : detail_; }
    /// For ANCM_RESULT_CONFIG_INVALID, the kind of rule the configuration broke.
    [[nodiscard]] ancm_config_error_kind error_kind() const noexcept { return kind_; }

private:
    ancm_result code_;
    std::string detail_;
    ancm_config_error_kind kind_;
};

/// The library's version at run time ("MAJOR.MINOR.PATCH", ANCM_VERSION at build time).
inline std::string_view version() noexcept { return ancm_version(); }

/// A result code's one-line description.
inline std::string_view result_message(ancm_result code) noexcept { return ancm_result_message(code); }

/// A byte slice over a string view (borrowed: the view must outlive the call that uses it).
inline ancm_slice slice(std::string_view s) noexcept {
    return ancm_slice{reinterpret_cast<const uint8_t *>(s.data()), s.size()};
}

/// A string view over a byte slice (valid as long as the slice is).
inline std::string_view view(ancm_slice s) noexcept {
    return s.len ? std::string_view(reinterpret_cast<const char *>(s.ptr), s.len) : std::string_view();
}

namespace detail {
struct ConfigFree { void operator()(ancm_config *p) const noexcept { ancm_config_free(p); } };
struct BuilderFree { void operator()(ancm_config_builder *p) const noexcept { ancm_config_builder_free(p); } };
struct ErrorFree { void operator()(ancm_error *p) const noexcept { ancm_error_free(p); } };
struct AppFree { void operator()(ancm_app *p) const noexcept { ancm_app_free(p); } };

/// Turns a code and an optional error out-parameter into a Status, freeing the error.
inline Status status(ancm_result r, ancm_error *e) {
    std::unique_ptr<ancm_error, ErrorFree> owned(e);
    if (!owned) return Status(r);
    return Status(r, std::string(ancm_error_message(owned.get())), ancm_error_kind(owned.get()));
}

inline const uint16_t *u16(std::u16string_view s) noexcept { return reinterpret_cast<const uint16_t *>(s.data()); }
} // namespace detail

/// A validated configuration (owns an ancm_config).
class Config {
public:
    Config() = default;
    /// Reads a web.config file; on failure the Status carries the one-line message.
    [[nodiscard]] static Status from_file(std::string_view path, Config &out) {
        ancm_config *c = nullptr;
        ancm_error *e = nullptr;
        ancm_result r = ancm_config_from_file(slice(path).ptr, path.size(), &c, &e);
        if (r == ANCM_RESULT_OK) out.p_.reset(c);
        return detail::status(r, e);
    }
    /// Reads a web.config file whose path is UTF-16 (as IIS hands paths).
    [[nodiscard]] static Status from_file(std::u16string_view path, Config &out) {
        ancm_config *c = nullptr;
        ancm_error *e = nullptr;
        ancm_result r = ancm_config_from_file_utf16(detail::u16(path), path.size(), &c, &e);
        if (r == ANCM_RESULT_OK) out.p_.reset(c);
        return detail::status(r, e);
    }
    [[nodiscard]] const ancm_config *get() const noexcept { return p_.get(); }

private:
    friend class ConfigBuilder;
    std::unique_ptr<ancm_config, detail::ConfigFree> p_;
};

/// Settings key by key (owns an ancm_config_builder until build()).
class ConfigBuilder {
public:
    [[nodiscard]] static Status create(std::string_view source, ancm_dialect dialect, ConfigBuilder &out) {
        ancm_config_builder *b = nullptr;
        ancm_result r = ancm_config_builder_new(slice(source).ptr, source.size(), dialect, &b);
        if (r == ANCM_RESULT_OK) out.p_.reset(b);
        return Status(r);
    }
    [[nodiscard]] Status set(std::string_view key, std::string_view value) {
        ancm_error *e = nullptr;
        return detail::status(
            ancm_config_builder_set(p_.get(), slice(key).ptr, key.size(), slice(value).ptr, value.size(), &e), e);
    }
    [[nodiscard]] Status set(std::u16string_view key, std::u16string_view value) {
        ancm_error *e = nullptr;
        return detail::status(ancm_config_builder_set_utf16(p_.get(), reinterpret_cast<const uint16_t *>(key.data()),
                                                            key.size(), reinterpret_cast<const uint16_t *>(value.data()),
                                                            value.size(), &e),
                              e);
    }
    [[nodiscard]] Status add_environment_variable(std::string_view name, std::string_view value) {
        ancm_error *e = nullptr;
        return detail::status(ancm_config_builder_add_environment_variable(p_.get(), slice(name).ptr, name.size(),
                                                                           slice(value).ptr, value.size(), &e),
                              e);
    }
    [[nodiscard]] Status add_handler_setting(std::string_view name, std::string_view value) {
        ancm_error *e = nullptr;
        return detail::status(ancm_config_builder_add_handler_setting(p_.get(), slice(name).ptr, name.size(),
                                                                      slice(value).ptr, value.size(), &e),
                              e);
    }
    [[nodiscard]] Status add_environment_variable(std::u16string_view name, std::u16string_view value) {
        ancm_error *e = nullptr;
        return detail::status(ancm_config_builder_add_environment_variable_utf16(p_.get(), u16(name), name.size(),
                                                                                 u16(value), value.size(), &e),
                              e);
    }
    [[nodiscard]] Status add_handler_setting(std::u16string_view name, std::u16string_view value) {
        ancm_error *e = nullptr;
        return detail::status(ancm_config_builder_add_handler_setting_utf16(p_.get(), u16(name), name.size(),
                                                                            u16(value), value.size(), &e),
                              e);
    }
    /// A `recycleOnFileChange` file (relative to the site root; see ancm.h).
    [[nodiscard]] Status add_recycle_on_file_change(std::string_view path) {
        ancm_error *e = nullptr;
        return detail::status(
            ancm_config_builder_add_recycle_on_file_change(p_.get(), slice(path).ptr, path.size(), &e), e);
    }
    [[nodiscard]] Status add_recycle_on_file_change(std::u16string_view path) {
        ancm_error *e = nullptr;
        return detail::status(
            ancm_config_builder_add_recycle_on_file_change_utf16(p_.get(), u16(path), path.size(), &e), e);
    }
    [[nodiscard]] Status remove_environment_variable(std::string_view name) {
        ancm_error *e = nullptr;
        return detail::status(
            ancm_config_builder_remove_environment_variable(p_.get(), slice(name).ptr, name.size(), &e), e);
    }
    [[nodiscard]] Status remove_handler_setting(std::string_view name) {
        ancm_error *e = nullptr;
        return detail::status(ancm_config_builder_remove_handler_setting(p_.get(), slice(name).ptr, name.size(), &e),
                              e);
    }
    [[nodiscard]] Status remove_environment_variable(std::u16string_view name) {
        ancm_error *e = nullptr;
        return detail::status(
            ancm_config_builder_remove_environment_variable_utf16(p_.get(), u16(name), name.size(), &e), e);
    }
    [[nodiscard]] Status remove_handler_setting(std::u16string_view name) {
        ancm_error *e = nullptr;
        return detail::status(ancm_config_builder_remove_handler_setting_utf16(p_.get(), u16(name), name.size(), &e),
                              e);
    }
    [[nodiscard]] Status clear_environment_variables() {
        return Status(ancm_config_builder_clear_environment_variables(p_.get()));
    }
    [[nodiscard]] Status clear_handler_settings() { return Status(ancm_config_builder_clear_handler_settings(p_.get())); }
    /// Validates the settings; always consumes the builder.
    [[nodiscard]] Status build(Config &out) {
        ancm_config *c = nullptr;
        ancm_error *e = nullptr;
        ancm_result r = ancm_config_builder_build(p_.release(), &c, &e);
        if (r == ANCM_RESULT_OK) out.p_.reset(c);
        return detail::status(r, e);
    }

private:
    static const uint16_t *u16(std::u16string_view s) noexcept { return detail::u16(s); }
    std::unique_ptr<ancm_config_builder, detail::BuilderFree> p_;
};

/// An application (owns an ancm_app). Thread-safe.
class App {
public:
    App() = default;
    [[nodiscard]] static Status create(const Config &config, const ancm_host_info &host, App &out) {
        ancm_app *a = nullptr;
        ancm_result r = ancm_app_new(config.get(), &host, &a);
        if (r == ANCM_RESULT_OK) out.p_.reset(a);
        return Status(r);
    }
    [[nodiscard]] Status status(ancm_app_status &out) const { return Status(ancm_app_get_status(p_.get(), &out)); }
    /// The app's running processes (pid, port), for diagnostics pages.
    [[nodiscard]] Status processes(std::vector<ancm_process_info> &out) const {
        size_t count = 0;
        out.clear();
        for (;;) {
            ancm_result r = ancm_app_processes(p_.get(), out.empty() ? nullptr : out.data(), out.size(), &count);
            if (r != ANCM_RESULT_OK) {
                out.clear();
                return Status(r);
            }
            // A process may start between two calls: ask again with room for it.
            if (count <= out.size()) {
                out.resize(count);
                return Status();
            }
            out.resize(count);
        }
    }
    /// Graceful stop; blocks; never from a callback.
    [[nodiscard]] Status stop() const { return Status(ancm_app_stop(p_.get())); }
    [[nodiscard]] const ancm_app *get() const noexcept { return p_.get(); }

private:
    std::unique_ptr<ancm_app, detail::AppFree> p_;
};

/// A request's callbacks as callables (the first four required; `ws_fragment` only for
/// Request::websocket_fragments()). They run on core threads, never two at once for one
/// request, and must not block; the object holding them is freed right after `complete`
/// returns, so what they capture must stay valid until then.
struct Callbacks {
    /// See ancm_body_wanted_callback: answer with supply_body / end_body, now or later.
    std::function<void()> body_wanted;
    /// See ancm_response_head_callback: `head` is valid during the call only.
    std::function<void(const ancm_response_head &head)> response_head;
    /// See ancm_response_body_callback: acknowledge with ack_write; `data` stays valid until then.
    std::function<void(const uint8_t *data, size_t len, bool flush)> response_body;
    /// See ancm_complete_callback: exactly once, last; `message` is valid during the call only.
    std::function<void(ancm_result result, std::string_view message)> complete;
    /// See ancm_ws_fragment_callback: a backend fragment in fragment mode; acknowledge it.
    std::function<void(const ancm_ws_fragment &fragment)> ws_fragment;
    /// See ancm_response_trailers_callback: the response's trailers, valid during the call only
    /// (optional: empty drops them).
    std::function<void(const ancm_header *headers, size_t count)> response_trailers;
};

namespace detail {
// The C trampolines of Callbacks: `userdata` is the heap copy of the callables, freed after
// `complete` (no callback follows it). noexcept: an exception must not unwind into the engine.
inline void body_wanted(void *ud) noexcept { static_cast<Callbacks *>(ud)->body_wanted(); }
inline void response_head(void *ud, const ancm_response_head *h) noexcept {
    static_cast<Callbacks *>(ud)->response_head(*h);
}
inline void response_body(void *ud, const uint8_t *data, size_t len, bool flush) noexcept {
    static_cast<Callbacks *>(ud)->response_body(data, len, flush);
}
inline void complete(void *ud, ancm_result r, const uint8_t *msg, size_t len) noexcept {
    std::unique_ptr<Callbacks> owned(static_cast<Callbacks *>(ud));
    owned->complete(r, len ? std::string_view(reinterpret_cast<const char *>(msg), len) : std::string_view());
}
inline void ws_fragment(void *ud, const ancm_ws_fragment *f) noexcept {
    auto *c = static_cast<Callbacks *>(ud);
    if (c->ws_fragment) c->ws_fragment(*f);
}
inline void response_trailers(void *ud, const ancm_header *headers, size_t count) noexcept {
    auto *c = static_cast<Callbacks *>(ud);
    if (c->response_trailers) c->response_trailers(headers, count);
}
inline const ancm_callbacks &trampolines() noexcept {
    static const ancm_callbacks table = {&body_wanted, &response_head, &response_body, &complete,
                                         &response_trailers};
    return table;
}
} // namespace detail

/// A request handle (owns the host's reference to an ancm_request; freeing it before completion
/// cancels the request, and `complete` still follows).
class Request {
public:
    Request() = default;
    ~Request() { reset(); }
    Request(const Request &) = delete;
    Request &operator=(const Request &) = delete;
    Request(Request &&o) noexcept : p_(o.p_), callables_(o.callables_) { o.p_ = nullptr; }
    Request &operator=(Request &&o) noexcept {
        if (this != &o) {
            reset();
            p_ = o.p_;
            callables_ = o.callables_;
            o.p_ = nullptr;
        }
        return *this;
    }
    /// Starts a request. `out` is filled before any callback runs (the C ABI writes the handle
    /// straight into it), so callbacks may use it through `userdata`. `out` must not hold a
    /// request already. `head` and everything it points at, including a Windows token handle
    /// (`head.windows_token`), are only borrowed for the call: the engine duplicates the token
    /// if it forwards it (docs/c-api.md, "The Windows user").
    [[nodiscard]] static Status start(const App &app, const ancm_request_head &head, const ancm_callbacks &callbacks,
                                      void *userdata, Request &out) {
        out.reset();
        out.callables_ = false;
        return Status(ancm_request_start(app.get(), &head, &callbacks, userdata, &out.p_));
    }
    /// Starts a request whose callbacks are C++ callables (moved to the heap and freed after
    /// `complete`). ANCM_RESULT_MISSING_CALLBACK when one of the four is empty; on any failure
    /// no callable runs.
    [[nodiscard]] static Status start(const App &app, const ancm_request_head &head, Callbacks callbacks,
                                      Request &out) {
        out.reset();
        if (!callbacks.body_wanted || !callbacks.response_head || !callbacks.response_body || !callbacks.complete)
            return Status(ANCM_RESULT_MISSING_CALLBACK);
        out.callables_ = true;
        auto owned = std::make_unique<Callbacks>(std::move(callbacks));
        ancm_result r = ancm_request_start(app.get(), &head, &detail::trampolines(), owned.get(), &out.p_);
        // Started: the engine owns the callables now (freed by the complete trampoline).
        if (r == ANCM_RESULT_OK) (void)owned.release();
        return Status(r);
    }
    [[nodiscard]] Status supply_body(const void *data, size_t len) const {
        return Status(ancm_request_supply_body(p_, static_cast<const uint8_t *>(data), len));
    }
    [[nodiscard]] Status end_body() const { return Status(ancm_request_end_body(p_)); }
    [[nodiscard]] Status ack_write() const { return Status(ancm_request_ack_write(p_)); }
    [[nodiscard]] Status cancel() const { return Status(ancm_request_cancel(p_)); }
    /// Ends the request body with trailers (copied; see ancm_request_supply_trailers).
    [[nodiscard]] Status supply_trailers(const ancm_header *headers, size_t count) const {
        return Status(ancm_request_supply_trailers(p_, headers, count));
    }
    /// Resets the request's stream with HTTP/2 error `code` (see ancm_request_reset).
    [[nodiscard]] Status reset_stream(uint32_t code) const { return Status(ancm_request_reset(p_, code)); }
    /// After `complete` with ANCM_RESULT_STREAM_RESET: the backend's HTTP/2 error code
    /// (ANCM_RESULT_NOT_RESET when the backend did not reset the stream).
    [[nodiscard]] Status reset_code(uint32_t &code) const { return Status(ancm_request_reset_code(p_, &code)); }
    /// Inside the `response_head` callback of a 101: exchange WebSocket message fragments
    /// instead of bytes (see ancm_request_websocket_fragments).
    [[nodiscard]] Status websocket_fragments(ancm_ws_fragment_callback callback) const {
        return Status(ancm_request_websocket_fragments(p_, callback));
    }
    /// The same for a request started with Callbacks: fragments go to `ws_fragment`
    /// (ANCM_RESULT_MISSING_CALLBACK for a request started with a C table).
    [[nodiscard]] Status websocket_fragments() const {
        if (!callables_) return Status(ANCM_RESULT_MISSING_CALLBACK);
        return Status(ancm_request_websocket_fragments(p_, &detail::ws_fragment));
    }
    /// Answers `body_wanted` in fragment mode with the client's next fragment (copied).
    [[nodiscard]] Status supply_ws_fragment(const ancm_ws_fragment &fragment) const {
        return Status(ancm_request_supply_ws_fragment(p_, &fragment));
    }
    [[nodiscard]] const ancm_request *get() const noexcept { return p_; }
    /// Frees the request (cancelling it if it has not completed; `complete` still follows).
    void reset() noexcept {
        if (p_) {
            ancm_request_free(p_);
            p_ = nullptr;
        }
    }

private:
    // A plain pointer, not a unique_ptr: ancm_request_start must write it in place before the
    // first callback can read it from another thread.
    ancm_request *p_ = nullptr;
    bool callables_ = false;
};

/// A log message's receiver: level, Windows Event Log id (0 for none, see ancm_event) and text.
using LogCallback = std::function<void(ancm_log_level level, uint32_t event, std::string_view message)>;

namespace detail {
// A spin lock, not std::mutex: MinGW's win32 thread model (the IIS module's toolchain) has no
// std::mutex, and set_log_callback is called a few times per process at most.
struct LogSlot {
    std::atomic_flag busy = ATOMIC_FLAG_INIT; // serialises set_log_callback calls
    std::unique_ptr<LogCallback> current;
};
struct SpinGuard {
    explicit SpinGuard(std::atomic_flag &f) noexcept : f_(f) {
        while (f_.test_and_set(std::memory_order_acquire)) {
        }
    }
    ~SpinGuard() { f_.clear(std::memory_order_release); }
    SpinGuard(const SpinGuard &) = delete;
    SpinGuard &operator=(const SpinGuard &) = delete;

private:
    std::atomic_flag &f_;
};
inline LogSlot &log_slot() {
    static LogSlot slot; // one per process (inline function: one static across translation units)
    return slot;
}
inline void log_trampoline(void *ud, ancm_log_level level, uint32_t event, const uint8_t *msg, size_t len) noexcept {
    (*static_cast<LogCallback *>(ud))(level, event,
                                      len ? std::string_view(reinterpret_cast<const char *>(msg), len) : std::string_view());
}
} // namespace detail

/// Sends the engine's messages up to `max_level` to `callback` (see ancm_log_set_callback: it may
/// run on any thread, also several at once, and inside any ancm_* call), replacing any earlier
/// one; an empty `callback` stops delivery. The previous callable is destroyed once the engine
/// no longer runs it. Not from inside a log callback.
[[nodiscard]] inline Status set_log_callback(LogCallback callback, ancm_log_level max_level = ANCM_LOG_LEVEL_INFO) {
    detail::LogSlot &slot = detail::log_slot();
    detail::SpinGuard lock(slot.busy);
    std::unique_ptr<LogCallback> next = callback ? std::make_unique<LogCallback>(std::move(callback)) : nullptr;
    ancm_result r = next ? ancm_log_set_callback(&detail::log_trampoline, next.get(), max_level)
                         : ancm_log_set_callback(nullptr, nullptr, ANCM_LOG_LEVEL_OFF);
    if (r == ANCM_RESULT_OK) slot.current = std::move(next); // frees the old one: no longer running
    return Status(r);
}
/// The process-wide shutdown (ancm_shutdown_begin): every app answers 503 and starts no process
/// from now on, and their processes are stopped in the background. Returns at once; any thread.
[[nodiscard]] inline Status shutdown_begin() { return Status(ancm_shutdown_begin()); }

/// Blocks until what shutdown_begin() set going has ended (ancm_shutdown_wait); host threads only.
[[nodiscard]] inline Status shutdown_wait() { return Status(ancm_shutdown_wait()); }

} // namespace ancm

#endif // ANCM_HPP
