// The ancm-rs IIS glue: shared declarations.
//
// Thin by design (DESIGN.md, "Hosts: IIS glue"): translation between IIS's interfaces and the
// engine's C ABI (include/ancm.h, through ancm.hpp), no forwarding or process logic. Every
// entry point IIS calls catches all C++ exceptions, because an exception crossing into IIS
// would take the worker process down.
//
// The glue's namespace is `iisglue`, not `ancm`: ancm.hpp owns `ancm::` (ancm::App,
// ancm::Request …).
#pragma once

#include "iis/httpserv_min.h"

#include "ancm.hpp" // include/ (the C ABI and its C++ wrapper)

#include <memory>
#include <string>

namespace iisglue {

// Set once by RegisterModule, read afterwards (IIS passes both for the life of the process).
extern HTTP_MODULE_ID g_moduleId;
extern IHttpServer *g_server;

// Owners for the engine handles the glue creates through the C API directly. ancm.hpp's
// ancm::Config / ancm::App cannot adopt a handle, and its ConfigBuilder has neither the UTF-16
// collection calls nor the error kind the glue needs, so configuration and apps use ancm.h
// with these deleters (the request path does too: see request.cpp).
struct ConfigFree {
    void operator()(ancm_config *p) const noexcept { ancm_config_free(p); }
};
struct AppFree {
    void operator()(ancm_app *p) const noexcept { ancm_app_free(p); }
};
using ConfigPtr = std::unique_ptr<ancm_config, ConfigFree>;
using AppPtr = std::unique_ptr<ancm_app, AppFree>;

// One IIS application's engine app, or the configuration error that prevented it. Created on
// the application's first request, shared by its requests (std::shared_ptr: a request may
// still be starting while a notification drops the application from the cache), stopped and
// freed on GL_APPLICATION_STOP / GL_CONFIGURATION_CHANGE / GL_STOP_LISTENING / Terminate.
struct AppEntry {
    std::wstring appId;      // IHttpApplication::GetApplicationId, the cache key
    std::wstring configPath; // IHttpApplication::GetAppConfigPath
    AppPtr app;              // non-null when error is empty
    std::string error;       // the one-line configuration error (UTF-8), else empty
};

// The app of the request's application, created on its first request (which also tells
// whether IIS's WebSocket module serves it). Never throws; nullptr only when out of memory.
// Reads the configuration through IIS's admin manager (no engine call blocks).
std::shared_ptr<AppEntry> GetApp(IHttpContext *ctx) noexcept;

// Stops (ancm_app_stop: blocks until the app's processes have exited) and frees apps. Call on
// IIS notification threads only, never on a core thread (the engine refuses that anyway).
void StopApp(PCWSTR appId) noexcept;
void StopAppsUnder(PCWSTR configPathPrefix) noexcept;
void StopAllApps() noexcept;

// Builds the engine configuration from IIS's system.webServer/aspNetCore section at
// `configPath`, key by key as UTF-16. On failure `error` holds the one-line message.
bool BuildConfig(PCWSTR configPath, ConfigPtr &out, std::string &error) noexcept;

// ASPNETCORE_IIS_HTTPAUTH: "windows;", "basic;", "anonymous;" for the authentication
// sections enabled at `configPath` (ANCM's order). Never throws.
std::string ReadHttpAuth(PCWSTR configPath) noexcept;

// ASPNETCORE_ANCM_HTTPS_PORT: the port of the https bindings of the site that `configPath`
// belongs to (system.applicationHost/sites), as ANCM picks it: 0 when the site has none, or
// when its https bindings use different ports. Never throws.
uint16_t ReadHttpsPort(PCWSTR configPath) noexcept;

// UTF-16 to UTF-8; invalid input becomes U+FFFD. May throw bad_alloc.
std::string ToUtf8(const wchar_t *s, size_t n);
inline std::string ToUtf8(const std::wstring &s) { return ToUtf8(s.data(), s.size()); }

// Diagnostics: OutputDebugString (DebugView, a debugger, or WINEDEBUG=+debugstr under Wine).
// Every engine message and glue error goes there; Event Log events go to the Event Log too.
// Never throw.
void Trace(PCWSTR message) noexcept;
void TraceUtf8(const char *message, size_t len) noexcept;

// ---- Event Log (eventlog.cpp) ----

// The event source the module writes under, in the Application log (docs/iis.md lists the
// event ids).
constexpr const wchar_t *kEventSource = L"AspNetCoreModuleRs";

// Registers the event source (RegisterModule calls it once). Never throws.
void StartEventLog() noexcept;

// Writes one event: `event` is an ancm_event id (ANCM_EVENT_NONE: nothing is written), the
// entry type follows `level` (error, warning, else information), `message` is UTF-8. Any
// thread. Never throws.
void WriteEvent(ancm_log_level level, uint32_t event, const char *message, size_t len) noexcept;

} // namespace iisglue
