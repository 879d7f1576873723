//! ANCM's own diagnostic log (`handlerSettings` `debugFile` and `debugLevel`): the engine's log
//! records at the chosen level written to a file, to the console, or (IIS) to the Event Log,
//! besides whatever the host does with them. Every host's logger hands its records here
//! ([`write`], [`Tee`]), so the same settings mean the same log under IIS, ancm-serve and C hosts.
//!
//! As in ANCM the log is one per process: the last application whose settings name a level or a
//! file sets it, and an application without them changes nothing (ANCM's
//! `DebugInitializeFromConfig`: flags are added, the file switched only when one is named).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use log::{Level, LevelFilter};

use crate::config::DebugSettings;

struct Active {
    level: LevelFilter,
    file: Option<(PathBuf, std::fs::File)>,
    console: bool,
    eventlog: bool,
}

static ACTIVE: Mutex<Option<Active>> = Mutex::new(None);

/// [`level`], read without the lock on every log call.
static LEVEL: AtomicLevel = AtomicLevel::new();

/// The most detailed level the debug log writes now (`Off` when none is configured): hosts keep
/// `log::max_level` at least this, so the records reach their logger.
pub fn level() -> LevelFilter {
    LEVEL.load(Ordering::Relaxed)
}

/// A `LevelFilter` that threads read and set without a lock.
pub struct AtomicLevel(AtomicUsize);

impl AtomicLevel {
    /// `Off`.
    pub const fn new() -> Self {
        AtomicLevel(AtomicUsize::new(0))
    }

    /// Sets the level.
    pub fn store(&self, level: LevelFilter) {
        self.0.store(level as usize, Ordering::Relaxed);
    }

    /// The level last stored.
    pub fn load(&self, order: Ordering) -> LevelFilter {
        match self.0.load(order) {
            0 => LevelFilter::Off,
            1 => LevelFilter::Error,
            2 => LevelFilter::Warn,
            3 => LevelFilter::Info,
            4 => LevelFilter::Debug,
            _ => LevelFilter::Trace,
        }
    }
}

impl Default for AtomicLevel {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes `settings` the process's debug log (when they ask for anything), the file resolved
/// against `site_root`, folders created. Raises `log::max_level` to the debug level. A file that
/// cannot be opened is reported through the log (the app still runs, as ANCM).
pub fn apply(settings: &DebugSettings, site_root: &Path) {
    if !settings.is_set() {
        return;
    }
    let file = settings.file.as_ref().and_then(|f| {
        let path = site_root.join(crate::process::launch::native_path(f));
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(handle) => Some((path, handle)),
            Err(e) => {
                log::warn!("could not open the debug log {}: {e}", path.display());
                None
            }
        }
    });
    let switched = {
        let Ok(mut active) = ACTIVE.lock() else {
            return;
        };
        let old = active.take();
        let old_path = old
            .as_ref()
            .and_then(|a| a.file.as_ref().map(|f| f.0.clone()));
        let (file, switched) = match (file, old.and_then(|a| a.file)) {
            (Some(new), _) => {
                let switched = old_path.as_ref() != Some(&new.0);
                (Some(new), switched)
            }
            (None, kept) => (kept, false),
        };
        LEVEL.store(settings.level);
        *active = Some(Active {
            level: settings.level,
            file,
            console: settings.console,
            eventlog: settings.eventlog,
        });
        switched.then(|| {
            active
                .as_ref()
                .and_then(|a| a.file.as_ref().map(|f| f.0.clone()))
        })
    };
    if log::max_level() < settings.level {
        log::set_max_level(settings.level);
    }
    if let Some(Some(path)) = switched {
        log::info!(
            "ancm-rs {} debug log: level {}, file {}",
            env!("CARGO_PKG_VERSION"),
            settings.level,
            path.display()
        );
    }
}

/// Whether a record at `level` goes to the Event Log as a debug-log entry (EVENTLOG).
pub fn to_event_log(level: Level) -> bool {
    if level > self::level() {
        return false;
    }
    ACTIVE
        .lock()
        .ok()
        .and_then(|a| a.as_ref().map(|a| a.eventlog && level <= a.level))
        .unwrap_or(false)
}

/// Writes one record to the debug log's file and console when its level is enabled, as a line
/// `[<UTC time>, PID: <pid>] [<level>] <message>`.
pub fn write(record: &log::Record<'_>) {
    if record.level() > level() {
        return;
    }
    let Ok(mut guard) = ACTIVE.lock() else {
        return;
    };
    let Some(active) = guard.as_mut() else {
        return;
    };
    if record.level() > active.level || (active.file.is_none() && !active.console) {
        return;
    }
    let line = format!(
        "[{}, PID: {}] [{}] {}{}",
        crate::utc::rfc3339_millis(std::time::SystemTime::now()),
        std::process::id(),
        record.level(),
        record.args(),
        if cfg!(windows) { "\r\n" } else { "\n" }
    );
    if let Some((_, f)) = active.file.as_mut() {
        // One write per line, flushed, so a crash loses nothing that was logged.
        let _ = f.write_all(line.as_bytes());
        let _ = f.flush();
    }
    if active.console {
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// A host's logger with the debug log beside it: every record goes to the debug log (when its
/// level is on there) and to the host's logger (when that one wants it).
pub struct Tee<L>(pub L);

impl<L: log::Log> log::Log for Tee<L> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata) || metadata.level() <= level()
    }

    fn log(&self, record: &log::Record<'_>) {
        write(record);
        if self.0.enabled(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}
