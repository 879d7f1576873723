// ancm.hpp: a header-only C++17 RAII wrapper over ancm.h (the C ABI of ancm-core).
//
// Owners are std::unique_ptr with the matching ancm_*_free as deleter, so every handle is freed
// exactly once; fallible calls return an ancm::Status marked [[nodiscard]]. Nothing here throws.
// The threading and callback rules are those of ancm.h (docs/c-api.md).
#ifndef ANCM_HPP
#define ANCM_HPP

#include "ancm.h"

#include <memory>
#include <string>
#include <string_view>

namespace ancm {

/// The result of a call: a result code, plus the configuration error's message when there is one.
class [[nodiscard]] Status {
public:
    Status(ancm_result code = ANCM_RESULT_OK, std::string detail = {}) : code_(code), detail_(std::move(detail)) {}
    [[nodiscard]] bool ok() const noexcept { return code_ == ANCM_RESULT_OK; }
    explicit operator bool() const noexcept { return ok(); }
    [[nodiscard]] ancm_result code() const noexcept { return code_; }
    /// The configuration error's one-line message, or the code's description.
    [[nodiscard]] std::string message() const { return detail_.empty() ? ancm_result_message(code_) : detail_; }

private:
    ancm_result code_;
    std::string detail_;
};

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
    return Status(r, owned ? std::string(ancm_error_message(owned.get())) : std::string());
}
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
    static const uint16_t *u16(std::u16string_view s) noexcept { return reinterpret_cast<const uint16_t *>(s.data()); }
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
    /// Graceful stop; blocks; never from a callback.
    [[nodiscard]] Status stop() const { return Status(ancm_app_stop(p_.get())); }
    [[nodiscard]] const ancm_app *get() const noexcept { return p_.get(); }

private:
    std::unique_ptr<ancm_app, detail::AppFree> p_;
};

/// A request handle (owns the host's reference to an ancm_request; freeing it before completion
/// cancels the request, and `complete` still follows).
class Request {
public:
    Request() = default;
    ~Request() { reset(); }
    Request(const Request &) = delete;
    Request &operator=(const Request &) = delete;
    Request(Request &&o) noexcept : p_(o.p_) { o.p_ = nullptr; }
    Request &operator=(Request &&o) noexcept {
        if (this != &o) {
            reset();
            p_ = o.p_;
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
        return Status(ancm_request_start(app.get(), &head, &callbacks, userdata, &out.p_));
    }
    [[nodiscard]] Status supply_body(const void *data, size_t len) const {
        return Status(ancm_request_supply_body(p_, static_cast<const uint8_t *>(data), len));
    }
    [[nodiscard]] Status end_body() const { return Status(ancm_request_end_body(p_)); }
    [[nodiscard]] Status ack_write() const { return Status(ancm_request_ack_write(p_)); }
    [[nodiscard]] Status cancel() const { return Status(ancm_request_cancel(p_)); }
    /// Inside the `response_head` callback of a 101: exchange WebSocket message fragments
    /// instead of bytes (see ancm_request_websocket_fragments).
    [[nodiscard]] Status websocket_fragments(ancm_ws_fragment_callback callback) const {
        return Status(ancm_request_websocket_fragments(p_, callback));
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
};

/// The process-wide shutdown (ancm_shutdown_begin): every app answers 503 and starts no process
/// from now on, and their processes are stopped in the background. Returns at once; any thread.
[[nodiscard]] inline Status shutdown_begin() { return Status(ancm_shutdown_begin()); }

/// Blocks until what shutdown_begin() set going has ended (ancm_shutdown_wait); host threads only.
[[nodiscard]] inline Status shutdown_wait() { return Status(ancm_shutdown_wait()); }

} // namespace ancm

#endif // ANCM_HPP
