// The ancm-rs IIS glue: shared declarations.
//
// Thin by design (DESIGN.md, "Hosts: IIS glue"): translation between IIS's interfaces and the
// engine, no forwarding or process logic. Every entry point IIS calls catches all C++
// exceptions, because an exception crossing into IIS would take the worker process down.
#pragma once

#include "iis/httpserv_min.h"

#include <string>

namespace ancm {

// The system.webServer/aspNetCore settings of one IIS application, as the glue reads them.
// Only the attributes this slice uses; the engine will take every key (as UTF-16) through
// the C ABI.
struct AppSettings {
    std::wstring processPath;
    std::wstring arguments;
};

// Reads the app's settings through IHttpServer::GetAdminManager()->GetAdminSection(
// L"system.webServer/aspNetCore", appConfigPath). Never throws.
HRESULT ReadAppSettings(IHttpServer *server, PCWSTR appConfigPath, AppSettings &out) noexcept;

// Settings per application config path, read once and dropped on GL_CONFIGURATION_CHANGE
// (for the changed path and below) and GL_APPLICATION_STOP. Thread-safe (IIS calls from
// many threads). Functions never throw.
HRESULT GetCachedAppSettings(IHttpServer *server, PCWSTR appConfigPath, AppSettings &out) noexcept;
void ForgetAppSettingsUnder(PCWSTR configPathPrefix) noexcept;
void ForgetAppSettings(PCWSTR appConfigPath) noexcept;

// UTF-16 to UTF-8 (for response text); invalid input becomes U+FFFD. May throw bad_alloc.
std::string ToUtf8(const std::wstring &s);

// Diagnostics until the event-log writer exists: OutputDebugString (visible in DebugView or
// a debugger). Never throws.
void Trace(PCWSTR message) noexcept;

} // namespace ancm
