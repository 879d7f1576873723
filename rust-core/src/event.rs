//! What the engine reports to the Windows Event Log, with ANCM's event ids: the one table of
//! them. The engine knows what happened, so it tags the log record of each such event with its
//! id (the `log` key `event`); hosts receive the id with the message (`ancm_log_callback`'s
//! `event`) and the IIS module writes those records with `ReportEventW`. Every other log
//! message has no id (0) and goes only to the host's ordinary log.
//!
//! The ids are ANCM V2's (aspnetcore_msg.mc, "IIS AspNetCore Module V2"), so that existing
//! Event Log filters and runbooks keep working; docs/iis.md lists them with their meaning.

/// An Event Log event id (C: `ancm_event`). Passed to C as `uint32_t`.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ancm_event {
    /// Not an Event Log event: an ordinary log message.
    None = 0,
    /// One attempt to start the app's process failed; another may follow (warning).
    ProcessStartError = 1000,
    /// The app's process started and listens on its port (information).
    ProcessStartSuccess = 1001,
    /// The app's processes crashed more than rapidFailsPerMinute times within a minute;
    /// requests get 502.5 until the minute is over (error).
    RapidFailCountExceeded = 1003,
    /// The stdout log file could not be created; the app runs without it (warning; ANCM files
    /// this under its configuration-error id, 1004).
    StdoutLogUnavailable = 1004,
    /// A process did not stop within shutdownTimeLimit and was killed (warning).
    GracefulShutdownFailure = 1005,
    /// The shutdown event was sent to a process (information).
    SentShutdownRequest = 1006,
    /// app_offline.htm appeared: the app's processes are being stopped (information).
    RecycleAppOffline = 1012,
    /// The app could not be started, after every attempt; the message carries the cause and
    /// the process's first output (error).
    ProcessStartFailure = 1020,
    /// A process exited without being asked to (warning).
    ProcessExited = 1030,
    /// The app's configuration is invalid; the message names the attribute (error). Raised by
    /// hosts, which see configuration errors first.
    ConfigurationLoadError = 1034,
    /// A line of the module's own debug log, with `debugLevel` EVENTLOG (ANCM's
    /// ASPNETCORE_EVENT_DEBUG_LOG; the type follows the line's level).
    DebugLog = 1036,
}

pub use self::ancm_event as Event;

/// The `log` key that carries an event id.
pub const KEY: &str = "event";

/// The event id a log record carries (0 when none).
pub fn of(record: &log::Record<'_>) -> u32 {
    record
        .key_values()
        .get(log::kv::Key::from_str(KEY))
        .and_then(|v| v.to_u64())
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_record_yields_its_id_and_others_none() {
        let id = Event::ProcessStartSuccess as u32;
        let args = format_args!("started");
        let kvs = [(KEY, log::kv::Value::from(id))];
        let tagged = log::Record::builder().args(args).key_values(&kvs).build();
        assert_eq!(of(&tagged), 1001);
        let plain = log::Record::builder().args(format_args!("plain")).build();
        assert_eq!(of(&plain), 0);
    }
}
