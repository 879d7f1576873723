//! ANCM's diagnostic-log settings (`handlerSettings` `debugLevel` and `debugFile`), read as
//! ANCM's `SetDebugFlags` and `DebugInitializeFromConfig` read them; `crate::debug_log` writes
//! the log.

use log::LevelFilter;

/// What `debugLevel` and `debugFile` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugSettings {
    /// The most detailed level written (`Off`: the keys were absent).
    pub level: LevelFilter,
    /// The file (as configured: relative to the site root), when FILE or `debugFile` asks for one.
    pub file: Option<String>,
    /// CONSOLE: the host process's standard output.
    pub console: bool,
    /// EVENTLOG: each line also as an Event Log entry (id 1036, as ANCM's debug-log event).
    pub eventlog: bool,
}

impl Default for DebugSettings {
    fn default() -> Self {
        DebugSettings {
            level: LevelFilter::Off,
            file: None,
            console: false,
            eventlog: false,
        }
    }
}

impl DebugSettings {
    /// Whether the settings ask for anything (else they leave the process's log as it is).
    pub fn is_set(&self) -> bool {
        self.level != LevelFilter::Off || self.file.is_some()
    }
}

/// ANCM's default file when FILE is asked for without `debugFile`.
pub const DEFAULT_FILE: &str = r".\aspnetcore-debug.log";

/// Parses `debugLevel` (a comma list of ERROR, WARNING, INFO, TRACE, CONSOLE, FILE, EVENTLOG, any
/// case; or ANCM's older number 1–5) and `debugFile`. `Err` is the rule the value broke.
pub fn parse(level: Option<&str>, file: Option<&str>) -> Result<DebugSettings, String> {
    let mut s = DebugSettings::default();
    let mut wants_file = false;
    if let Some(value) = level.map(str::trim).filter(|v| !v.is_empty()) {
        if value.bytes().all(|b| b.is_ascii_digit()) {
            // ANCM's numeric form: 1 error, 2 +warning, 3 +info, 4 +console, 5 +file.
            let n: u32 = value.parse().map_err(|_| numeric_rule())?;
            if !(1..=5).contains(&n) {
                return Err(numeric_rule());
            }
            s.level = match n {
                1 => LevelFilter::Error,
                2 => LevelFilter::Warn,
                _ => LevelFilter::Info,
            };
            s.console = n >= 4;
            wants_file = n >= 5;
        } else {
            for flag in value.split(',').map(str::trim) {
                let level = match flag.to_ascii_uppercase().as_str() {
                    "ERROR" => LevelFilter::Error,
                    "WARNING" => LevelFilter::Warn,
                    "INFO" => LevelFilter::Info,
                    "TRACE" => LevelFilter::Trace,
                    "CONSOLE" => {
                        s.console = true;
                        continue;
                    }
                    "FILE" => {
                        wants_file = true;
                        continue;
                    }
                    "EVENTLOG" => {
                        s.eventlog = true;
                        continue;
                    }
                    _ => {
                        return Err(format!(
                            "must be a comma-separated list of ERROR, WARNING, INFO, TRACE, \
                             CONSOLE, FILE, EVENTLOG (or 1–5); '{flag}' is none of them"
                        ))
                    }
                };
                s.level = s.level.max(level);
            }
            // ANCM: a destination without a level logs up to INFO.
            if s.level == LevelFilter::Off && (s.console || wants_file || s.eventlog) {
                s.level = LevelFilter::Info;
            }
        }
    }
    match file.map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) => s.file = Some(f.to_owned()),
        None if wants_file => s.file = Some(DEFAULT_FILE.to_owned()),
        None => {}
    }
    Ok(s)
}

fn numeric_rule() -> String {
    "must be 1–5 when a number (1 ERROR, 2 WARNING, 3 INFO, 4 +CONSOLE, 5 +FILE)".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_destinations_as_ancm_reads_them() {
        let s = parse(Some("FILE,TRACE"), None).unwrap();
        assert_eq!(s.level, LevelFilter::Trace);
        assert_eq!(s.file.as_deref(), Some(DEFAULT_FILE));
        let s = parse(Some("warning, console"), Some(r".\logs\d.log")).unwrap();
        assert_eq!(s.level, LevelFilter::Warn);
        assert!(s.console && !s.eventlog);
        assert_eq!(s.file.as_deref(), Some(r".\logs\d.log"));
        // A destination alone logs up to INFO.
        assert_eq!(
            parse(Some("EVENTLOG"), None).unwrap().level,
            LevelFilter::Info
        );
        // ANCM's numbers.
        let s = parse(Some("5"), None).unwrap();
        assert_eq!(s.level, LevelFilter::Info);
        assert!(s.console && s.file.is_some());
        assert_eq!(parse(Some("1"), None).unwrap().level, LevelFilter::Error);
        // A file alone: opened, nothing above Off written (as ANCM).
        let s = parse(None, Some("d.log")).unwrap();
        assert!(s.is_set() && s.level == LevelFilter::Off);
        assert!(!parse(None, None).unwrap().is_set());
    }

    #[test]
    fn bad_values_say_the_rule() {
        let e = parse(Some("FILE,VERBOSE"), None).unwrap_err();
        assert!(e.contains("'VERBOSE' is none of them"), "{e}");
        assert!(parse(Some("9"), None).unwrap_err().contains("1–5"));
        assert!(parse(Some("0"), None).is_err());
    }
}
