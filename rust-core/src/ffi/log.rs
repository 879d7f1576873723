//! Routing the engine's `log` records to a host callback.

use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::{OnceLock, RwLock};

use super::panic::guard;
use super::result::ancm_result;

/// Severity of a log message (as the `log` crate's levels).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ancm_log_level {
    /// Logging off (only as a maximum level).
    Off = 0,
    /// Something failed.
    Error = 1,
    /// Something unexpected that the engine coped with.
    Warn = 2,
    /// Lifecycle events (a process started, stopped).
    Info = 3,
    /// Detail for diagnosing problems.
    Debug = 4,
    /// Very detailed tracing.
    Trace = 5,
}

/// Receives one log message: `message` is `len` bytes of UTF-8, NUL-terminated as well for
/// convenience, valid only during the call. `event` is an `ancm_event`: the Windows Event Log
/// event id when the message reports one of the events listed there (a process started, a
/// start failed …), else 0 (`ANCM_EVENT_NONE`). Called from any thread (core threads, and host
/// threads inside `ancm_*` calls), possibly from several at once; must not block and must not
/// call `ancm_log_set_callback`.
pub type ancm_log_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: ancm_log_level,
        event: u32,
        message: *const u8,
        len: usize,
    ),
>;

struct Sink {
    cb: unsafe extern "C" fn(*mut c_void, ancm_log_level, u32, *const u8, usize),
    userdata: *mut c_void,
}

// SAFETY: the host promises (ancm_log_set_callback's contract) that the callback and its
// userdata may be used from any thread.
unsafe impl Send for Sink {}
unsafe impl Sync for Sink {}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// The host's own level, below which records go only to the debug log (`log::max_level` is the
/// more detailed of it and the debug log's).
static HOST_LEVEL: AtomicLevel = AtomicLevel::new();

use crate::debug_log::AtomicLevel;

struct CallbackLogger;

impl ::log::Log for CallbackLogger {
    fn enabled(&self, _: &::log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &::log::Record) {
        // (a record with key-values is not UnwindSafe; nothing of it is used after a panic)
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::debug_log::write(record);
            if record.level() > HOST_LEVEL.load(Ordering::Relaxed) {
                return;
            }
            let Ok(sink) = SINK.read() else { return };
            let Some(sink) = sink.as_ref() else { return };
            let level = match record.level() {
                ::log::Level::Error => ancm_log_level::Error,
                ::log::Level::Warn => ancm_log_level::Warn,
                ::log::Level::Info => ancm_log_level::Info,
                ::log::Level::Debug => ancm_log_level::Debug,
                ::log::Level::Trace => ancm_log_level::Trace,
            };
            let mut event = crate::event::of(record);
            if event == 0 && crate::debug_log::to_event_log(record.level()) {
                // debugLevel's EVENTLOG: the line as ANCM's debug-log event.
                event = crate::event::Event::DebugLog as u32;
            }
            let mut text = record.args().to_string();
            let len = text.len();
            text.push('\0');
            // SAFETY: the host's callback, with a message valid for the duration of the call.
            unsafe { (sink.cb)(sink.userdata, level, event, text.as_ptr(), len) };
        }));
    }

    fn flush(&self) {}
}

static LOGGER: CallbackLogger = CallbackLogger;

/// Installs the engine's logger for a host that set no log callback, so that the debug log
/// (`debugLevel`) is written by C hosts too. Returns false when another logger is installed.
pub(crate) fn install() -> bool {
    *INSTALLED.get_or_init(|| ::log::set_logger(&LOGGER).is_ok())
}

/// Sends the engine's log messages at `max_level` and more severe to `callback` (replacing any
/// earlier callback); a NULL `callback` stops delivery. `max_level` is an `ancm_log_level`.
///
/// The first call installs ancm-core's logger as the process's `log` logger; if another Rust
/// logger is already installed it returns `ANCM_RESULT_LOGGER_ALREADY_SET` and changes nothing.
/// When this returns, the previous callback is no longer running on any thread, so its
/// `userdata` may be freed; `userdata` stays owned by the host. Callable from any thread except
/// from inside the log callback itself (that would deadlock). No request callback runs during it.
#[no_mangle]
pub extern "C" fn ancm_log_set_callback(
    callback: ancm_log_callback,
    userdata: *mut c_void,
    max_level: u32,
) -> ancm_result {
    guard(|| {
        let filter = match max_level {
            0 => ::log::LevelFilter::Off,
            1 => ::log::LevelFilter::Error,
            2 => ::log::LevelFilter::Warn,
            3 => ::log::LevelFilter::Info,
            4 => ::log::LevelFilter::Debug,
            5 => ::log::LevelFilter::Trace,
            _ => return ancm_result::InvalidArgument,
        };
        if !install() {
            return ancm_result::LoggerAlreadySet;
        }
        let mut sink = match SINK.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        *sink = callback.map(|cb| Sink { cb, userdata });
        let host = if sink.is_some() {
            filter
        } else {
            ::log::LevelFilter::Off
        };
        HOST_LEVEL.store(host);
        ::log::set_max_level(host.max(crate::debug_log::level()));
        ancm_result::Ok
    })
}
