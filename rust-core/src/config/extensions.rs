//! This project's own settings, carried in `handlerSettings` (ANCM ignores keys it does not
//! know, so a web.config using them still works under Microsoft's module): recycling a process
//! after a number of requests, above a memory ceiling, after an age, or when a trigger file is
//! touched (each recycle is overlapping: the new process starts first and takes new requests
//! once it listens; the old one drains and stops); bounding the stdout log files; the protocol
//! of the hop to the app; whether request fields with an underscore in their name reach the app
//! (`forwardHeadersWithUnderscores`); whether a request without a W3C `traceparent` gets one
//! (`traceparentGeneration`).

use std::time::Duration;

use super::error::{ConfigError, ConfigErrorKind};
use super::Dialect;

/// The project's own settings, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `recycleAfterRequests`: recycle a process after it has served this many requests.
    pub recycle_after_requests: Option<u64>,
    /// `recycleAboveMemoryMB`: recycle a process whose resident memory exceeds this (bytes).
    pub recycle_above_memory_bytes: Option<u64>,
    /// `recycleAfterMinutes`: recycle a process older than this.
    pub recycle_after: Option<Duration>,
    /// `recycleTriggerFile`: a path (relative to the site root) whose modification recycles
    /// every process, without app_offline.htm.
    pub recycle_trigger_file: Option<String>,
    /// `stdoutLogMaxSizeKB`: a stdout log file is rotated before it passes this size (bytes).
    pub stdout_log_max_bytes: Option<u64>,
    /// `stdoutLogMaxFiles`: at most this many stdout log files of the prefix are kept.
    pub stdout_log_max_files: Option<u32>,
    /// `debugLevel` and `debugFile`: ANCM's own diagnostic log.
    pub debug: super::DebugSettings,
    /// `backendProtocol`: how the engine speaks to the app's process.
    pub backend_protocol: BackendProtocol,
    /// `forwardHeadersWithUnderscores`: forward request fields whose name holds `_` (dropped by
    /// default; the twins of the proxy's own fields are dropped either way).
    pub forward_headers_with_underscores: bool,
    /// `traceparentGeneration`: whether a request without a valid `traceparent` gets a new one
    /// (`forward::trace`).
    pub traceparent_generation: TraceparentGeneration,
}

/// Whether the engine starts a trace for a request that carries none (`traceparentGeneration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TraceparentGeneration {
    /// `true` (the default): a new `traceparent` replaces a missing or invalid one.
    #[default]
    On,
    /// `false`: the request's trace fields go as they came.
    Off,
}

impl TraceparentGeneration {
    /// Whether generation is on.
    pub fn on(self) -> bool {
        self == TraceparentGeneration::On
    }
}

/// The protocol of the hop from the engine to the app's process (`backendProtocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendProtocol {
    /// `http1.1` (the default, what ANCM speaks).
    #[default]
    Http1,
    /// `h2c`: HTTP/2 with prior knowledge over cleartext (gRPC servers, Kestrel with
    /// `Protocols=Http2`).
    H2c,
}

impl Extensions {
    /// Whether any recycle condition is set (only then does the engine watch for them).
    pub fn recycles(&self) -> bool {
        self.recycle_after_requests.is_some()
            || self.recycle_above_memory_bytes.is_some()
            || self.recycle_after.is_some()
            || self.recycle_trigger_file.is_some()
    }
}

/// The keys this project reads, with their largest value (0 always means "off").
const UINT_KEYS: [(&str, u64); 5] = [
    ("recycleAfterRequests", 4_000_000_000),
    ("recycleAboveMemoryMB", 1_048_576),
    ("recycleAfterMinutes", 525_600),
    ("stdoutLogMaxSizeKB", 4_194_304),
    ("stdoutLogMaxFiles", 100_000),
];

/// The value of `choices` whose name `value` is (any case), else the error naming the setting
/// (`path`) and `rule`.
fn one_of<T: Copy>(
    value: &str,
    choices: &[(&str, T)],
    rule: &str,
    source: &str,
    path: impl Fn() -> String,
) -> Result<T, ConfigError> {
    choices
        .iter()
        .find(|(name, _)| value.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            ConfigError::new(
                ConfigErrorKind::InvalidValue,
                source,
                path(),
                Some(value),
                rule.to_owned(),
            )
        })
}

/// Reads the project's settings out of the handler settings. Keys match case-insensitively, as
/// the collection's keys do.
pub fn parse(
    settings: &[(String, String)],
    source: &str,
    dialect: Dialect,
) -> Result<Extensions, ConfigError> {
    let mut ext = Extensions::default();
    for (name, value) in settings {
        let path = || {
            format!(
                "{}/handlerSettings/handlerSetting[@name='{name}']/@value",
                dialect.section_name()
            )
        };
        if let Some((key, max)) = UINT_KEYS.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::new(
                    ConfigErrorKind::InvalidValue,
                    source,
                    path(),
                    Some(value),
                    format!("must be a whole number, 0–{max} (0 = off)"),
                ));
            }
            let n = match value.parse::<u64>() {
                Ok(n) if n <= *max => n,
                _ => {
                    return Err(ConfigError::new(
                        ConfigErrorKind::OutOfRange,
                        source,
                        path(),
                        Some(value),
                        format!("must be 0–{max} (0 = off)"),
                    ))
                }
            };
            let n = (n > 0).then_some(n);
            match *key {
                "recycleAfterRequests" => ext.recycle_after_requests = n,
                "recycleAboveMemoryMB" => {
                    ext.recycle_above_memory_bytes = n.map(|m| m * 1024 * 1024)
                }
                "recycleAfterMinutes" => ext.recycle_after = n.map(|m| Duration::from_secs(m * 60)),
                "stdoutLogMaxSizeKB" => ext.stdout_log_max_bytes = n.map(|k| k * 1024),
                _ => ext.stdout_log_max_files = n.and_then(|c| u32::try_from(c).ok()),
            }
        } else if name.eq_ignore_ascii_case("backendProtocol") {
            ext.backend_protocol = one_of(
                value,
                &[
                    ("http1.1", BackendProtocol::Http1),
                    ("h2c", BackendProtocol::H2c),
                ],
                "must be http1.1 or h2c",
                source,
                path,
            )?;
        } else if name.eq_ignore_ascii_case("recycleTriggerFile") {
            ext.recycle_trigger_file = (!value.is_empty()).then(|| value.clone());
        } else if name.eq_ignore_ascii_case("traceparentGeneration") {
            ext.traceparent_generation = one_of(
                value,
                &[
                    ("true", TraceparentGeneration::On),
                    ("false", TraceparentGeneration::Off),
                ],
                "must be true or false",
                source,
                path,
            )?;
        } else if name.eq_ignore_ascii_case("forwardHeadersWithUnderscores") {
            ext.forward_headers_with_underscores = one_of(
                value,
                &[("true", true), ("false", false)],
                "must be true or false",
                source,
                path,
            )?;
        }
    }
    let find = |key: &str| {
        settings
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(key))
            .map(|(n, v)| (n.as_str(), v.as_str()))
    };
    let level = find("debugLevel");
    ext.debug = super::debug::parse(level.map(|l| l.1), find("debugFile").map(|f| f.1)).map_err(
        |rule| {
            let (name, value) = level.unwrap_or(("debugLevel", ""));
            ConfigError::new(
                ConfigErrorKind::InvalidValue,
                source,
                format!(
                    "{}/handlerSettings/handlerSetting[@name='{name}']/@value",
                    dialect.section_name()
                ),
                Some(value),
                rule,
            )
        },
    )?;
    Ok(ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_and_off() {
        let e = parse(
            &s(&[
                ("recycleAfterRequests", "1000"),
                ("RECYCLEABOVEMEMORYMB", "512"),
                ("recycleAfterMinutes", "0"),
                ("recycleTriggerFile", "restart.txt"),
                ("stdoutLogMaxSizeKB", "64"),
                ("stdoutlogmaxfiles", "5"),
                ("BACKENDPROTOCOL", "H2C"),
                ("debugLevel", "TRACE"),
            ]),
            "web.config",
            Dialect::AspNetCore,
        )
        .unwrap();
        assert_eq!(e.recycle_after_requests, Some(1000));
        assert_eq!(e.recycle_above_memory_bytes, Some(512 << 20));
        assert_eq!(e.recycle_after, None);
        assert_eq!(e.recycle_trigger_file.as_deref(), Some("restart.txt"));
        assert_eq!(e.stdout_log_max_bytes, Some(64 * 1024));
        assert_eq!(e.stdout_log_max_files, Some(5));
        assert_eq!(e.debug.level, log::LevelFilter::Trace);
        assert!(e.recycles());
        assert_eq!(e.backend_protocol, BackendProtocol::H2c);
        assert_eq!(
            parse(&[], "web.config", Dialect::AspNetCore)
                .unwrap()
                .backend_protocol,
            BackendProtocol::Http1
        );
        assert!(!parse(&[], "web.config", Dialect::AspNetCore)
            .unwrap()
            .recycles());
    }

    #[test]
    fn forward_headers_with_underscores_is_a_bool_off_by_default() {
        let p = |v: &str| {
            parse(
                &s(&[("ForwardHeadersWithUnderscores", v)]),
                "web.config",
                Dialect::AspNetCore,
            )
        };
        assert!(
            !parse(&[], "web.config", Dialect::AspNetCore)
                .unwrap()
                .forward_headers_with_underscores
        );
        assert!(p("TRUE").unwrap().forward_headers_with_underscores);
        assert!(!p("false").unwrap().forward_headers_with_underscores);
        assert_eq!(
            p("yes").unwrap_err().to_string(),
            "web.config: aspNetCore/handlerSettings/handlerSetting[@name='ForwardHeadersWithUnderscores']/@value = \"yes\": must be true or false"
        );
    }

    #[test]
    fn traceparent_generation_is_a_bool_on_by_default() {
        let p = |v: &str| {
            parse(
                &s(&[("traceparentGeneration", v)]),
                "web.config",
                Dialect::AspNetCore,
            )
        };
        let on = |e: Extensions| e.traceparent_generation.on();
        assert!(on(parse(&[], "web.config", Dialect::AspNetCore).unwrap()));
        assert!(on(p("True").unwrap()));
        assert!(!on(p("FALSE").unwrap()));
        assert_eq!(
            p("off").unwrap_err().to_string(),
            "web.config: aspNetCore/handlerSettings/handlerSetting[@name='traceparentGeneration']/@value = \"off\": must be true or false"
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = parse(
            &s(&[("recycleAfterMinutes", "999999")]),
            "web.config",
            Dialect::AspNetCore,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "web.config: aspNetCore/handlerSettings/handlerSetting[@name='recycleAfterMinutes']/@value = \"999999\": must be 0–525600 (0 = off)"
        );
        let e = parse(
            &s(&[("backendProtocol", "h2")]),
            "web.config",
            Dialect::AspNetCore,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "web.config: aspNetCore/handlerSettings/handlerSetting[@name='backendProtocol']/@value = \"h2\": must be http1.1 or h2c"
        );
        let e = parse(
            &s(&[("recycleAfterRequests", "+5")]),
            "web.config",
            Dialect::AspNetCore,
        )
        .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
        let e = parse(
            &s(&[("debugLevel", "FILE,LOUD")]),
            "web.config",
            Dialect::AspNetCore,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "web.config: aspNetCore/handlerSettings/handlerSetting[@name='debugLevel']/@value = \"FILE,LOUD\": must be"
            ),
            "{e}"
        );
    }
}
