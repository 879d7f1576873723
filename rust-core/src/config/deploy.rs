//! The deploy settings (handlerSettings, ANCM's names where ANCM has them): shadow copies,
//! change detection, warm-up, health checks and drain. A web.config using them stays valid
//! under Microsoft's module, which ignores handlerSetting names it does not know (and uses
//! `enableShadowCopy`/`shadowCopyDirectory` for in-process hosting only).

use std::time::Duration;

use super::error::{ConfigError, ConfigErrorKind};
use super::Dialect;

/// How a new generation of the app is deployed and kept healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    /// `enableShadowCopy`: each generation runs from its own copy of the site.
    pub shadow_copy: bool,
    /// `shadowCopyDirectory` as written (relative to the site root, or absolute); `None`: the
    /// default, `<site root>/../<site folder name>_ancm_shadow`.
    pub shadow_copy_directory: Option<String>,
    /// `fileChangeDebounceMilliseconds`: how long the site must be quiet after a change before
    /// a new generation starts.
    pub debounce: Duration,
    /// `preload`: start the processes when the app is loaded, and restart a crashed one at once.
    pub preload: bool,
    /// `healthCheckPath`: a GET of it must answer 2xx before a process takes traffic.
    pub health_check_path: Option<String>,
    /// `healthCheckIntervalSeconds`: how often a running process is probed (0 = only at start).
    pub health_check_interval: Duration,
    /// `healthCheckFailures`: probes failed in a row that get a running process replaced.
    pub health_check_failures: u32,
    /// `webSocketDrainSeconds`: how long a draining process's WebSocket sessions are left open.
    pub websocket_drain: Duration,
    /// `<recycleOnFileChange><file path/>`: without shadow copies, the files (relative to the
    /// site root) whose change starts a new generation.
    pub recycle_on_file_change: Vec<String>,
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            shadow_copy: false,
            shadow_copy_directory: None,
            debounce: Duration::from_millis(1000),
            preload: false,
            health_check_path: None,
            health_check_interval: Duration::ZERO,
            health_check_failures: 3,
            websocket_drain: Duration::from_secs(5),
            recycle_on_file_change: Vec::new(),
        }
    }
}

impl Deploy {
    /// Whether the engine watches the site for deploys (shadow copies or recycleOnFileChange).
    pub fn watches_changes(&self) -> bool {
        self.shadow_copy || !self.recycle_on_file_change.is_empty()
    }
}

/// Whole-number keys with their range.
const UINT_KEYS: [(&str, u64, u64); 4] = [
    ("fileChangeDebounceMilliseconds", 0, 600_000),
    ("healthCheckIntervalSeconds", 0, 3600),
    ("healthCheckFailures", 1, 100),
    ("webSocketDrainSeconds", 0, 3600),
];

/// Reads the deploy settings out of the handler settings (keys match case-insensitively).
pub fn parse(
    settings: &[(String, String)],
    source: &str,
    dialect: Dialect,
) -> Result<Deploy, ConfigError> {
    let mut d = Deploy::default();
    for (name, value) in settings {
        let err = |kind, rule: String| {
            ConfigError::new(
                kind,
                source,
                format!(
                    "{}/handlerSettings/handlerSetting[@name='{name}']/@value",
                    dialect.section_name()
                ),
                Some(value),
                rule,
            )
        };
        let is = |k: &str| k.eq_ignore_ascii_case(name);
        if let Some((key, min, max)) = UINT_KEYS.iter().find(|(k, _, _)| is(k)) {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(
                    ConfigErrorKind::InvalidValue,
                    format!("must be a whole number, {min}–{max}"),
                ));
            }
            let n = match value.parse::<u64>() {
                Ok(n) if (*min..=*max).contains(&n) => n,
                _ => {
                    return Err(err(
                        ConfigErrorKind::OutOfRange,
                        format!("must be {min}–{max}"),
                    ))
                }
            };
            match *key {
                "fileChangeDebounceMilliseconds" => d.debounce = Duration::from_millis(n),
                "healthCheckIntervalSeconds" => d.health_check_interval = Duration::from_secs(n),
                "healthCheckFailures" => d.health_check_failures = n as u32,
                _ => d.websocket_drain = Duration::from_secs(n),
            }
        } else if is("enableShadowCopy") || is("preload") {
            let on = match value.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(err(
                        ConfigErrorKind::InvalidValue,
                        "must be true or false".to_owned(),
                    ))
                }
            };
            if is("preload") {
                d.preload = on;
            } else {
                d.shadow_copy = on;
            }
        } else if is("shadowCopyDirectory") {
            d.shadow_copy_directory = (!value.is_empty()).then(|| value.clone());
        } else if is("healthCheckPath") {
            if value.is_empty() {
                continue;
            }
            if !value.starts_with('/') || value.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(err(
                    ConfigErrorKind::InvalidValue,
                    "must be a path starting with '/', without spaces or control characters"
                        .to_owned(),
                ));
            }
            d.health_check_path = Some(value.clone());
        }
    }
    Ok(d)
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

    fn p(pairs: &[(&str, &str)]) -> Result<Deploy, ConfigError> {
        parse(&s(pairs), "web.config", Dialect::AspNetCore)
    }

    #[test]
    fn values_and_defaults() {
        assert_eq!(p(&[]).unwrap(), Deploy::default());
        let d = p(&[
            ("EnableShadowCopy", "TRUE"),
            ("shadowCopyDirectory", "../copies"),
            ("preload", "true"),
            ("healthCheckPath", "/healthz?deep=1"),
            ("healthCheckIntervalSeconds", "5"),
            ("healthCheckFailures", "2"),
            ("webSocketDrainSeconds", "0"),
            ("fileChangeDebounceMilliseconds", "250"),
        ])
        .unwrap();
        assert!(d.shadow_copy && d.preload && d.watches_changes());
        assert_eq!(d.shadow_copy_directory.as_deref(), Some("../copies"));
        assert_eq!(d.health_check_path.as_deref(), Some("/healthz?deep=1"));
        assert_eq!(d.health_check_interval, Duration::from_secs(5));
        assert_eq!(d.health_check_failures, 2);
        assert_eq!(d.websocket_drain, Duration::ZERO);
        assert_eq!(d.debounce, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_name_the_setting_and_rule() {
        let cases = [
            ("enableShadowCopy", "yes", "must be true or false"),
            ("preload", "1", "must be true or false"),
            ("healthCheckFailures", "0", "must be 1–100"),
            (
                "healthCheckIntervalSeconds",
                "-1",
                "must be a whole number, 0–3600",
            ),
            ("webSocketDrainSeconds", "3601", "must be 0–3600"),
            (
                "healthCheckPath",
                "health",
                "must be a path starting with '/', without spaces or control characters",
            ),
        ];
        for (k, v, rule) in cases {
            let e = p(&[(k, v)]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "web.config: aspNetCore/handlerSettings/handlerSetting[@name='{k}']/@value = \"{v}\": {rule}"
                )
            );
        }
    }
}
