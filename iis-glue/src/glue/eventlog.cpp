// Writing Event Log events: the engine tags the log messages that are Event Log events with
// ANCM's event ids (ancm_event, include/ancm.h; the one table is rust-core/src/event.rs), and
// the glue hands those to ReportEventW in the Application log under its own event source. The
// glue decides nothing here but the entry type from the message's level.

#include "glue.h"

#include <string>

namespace iisglue {
namespace {

// Registered once, when IIS loads the module; never deregistered (IIS never unloads a module,
// the handle goes with the worker process). nullptr: no Event Log (messages still reach the
// debugger output).
HANDLE g_eventSource = nullptr;

// ReportEventW takes at most 31,839 characters per string.
const size_t kMaxEventChars = 31839;

} // namespace

void StartEventLog() noexcept
{
    if (g_eventSource == nullptr) {
        g_eventSource = RegisterEventSourceW(nullptr, kEventSource);
        if (g_eventSource == nullptr) {
            Trace(L"cannot register the Event Log source; events go to the debugger output only");
        }
    }
}

void WriteEvent(ancm_log_level level, uint32_t event, const char *message, size_t len) noexcept
{
    if (g_eventSource == nullptr || event == ANCM_EVENT_NONE) {
        return;
    }
    try {
        const WORD type = level == ANCM_LOG_LEVEL_ERROR  ? EVENTLOG_ERROR_TYPE
                          : level == ANCM_LOG_LEVEL_WARN ? EVENTLOG_WARNING_TYPE
                                                         : EVENTLOG_INFORMATION_TYPE;
        std::wstring text;
        if (len > 0) {
            const int n = MultiByteToWideChar(CP_UTF8, 0, message, static_cast<int>(len), nullptr, 0);
            if (n > 0) {
                text.resize(static_cast<size_t>(n));
                MultiByteToWideChar(CP_UTF8, 0, message, static_cast<int>(len), &text[0], n);
            }
        }
        if (text.size() > kMaxEventChars) {
            text.resize(kMaxEventChars);
        }
        LPCWSTR strings[1] = {text.c_str()};
        if (!ReportEventW(g_eventSource, type, 0, event, nullptr, 1, 0, strings, nullptr)) {
            Trace(L"ReportEventW failed");
        }
    } catch (...) {
        // Out of memory: the message already went to the debugger output.
    }
}

} // namespace iisglue
