//! The application's settings: the `system.webServer/aspNetCore` section of a web.config (or
//! HttpPlatformHandler's `system.webServer/httpPlatform`), validated once into a [`Config`].
//!
//! Two ways in, one validation path: a host either hands a web.config file to
//! [`Config::from_web_config_file`], or feeds the settings key by key (UTF-8 or UTF-16, as IIS's
//! configuration system returns them) into a [`ConfigBuilder`]. The web.config reader itself only
//! feeds a `ConfigBuilder`, so both paths apply exactly the same rules.

mod builder;
mod debug;
mod deploy;
mod error;
mod expand;
mod extensions;
mod schema;
mod timespan;
mod webconfig;

use std::time::Duration;

pub use builder::ConfigBuilder;
pub use debug::DebugSettings;
pub use deploy::Deploy;
pub use error::{ConfigError, ConfigErrorKind};
pub use expand::expand_env;
pub use extensions::{BackendProtocol, Extensions};
pub use schema::{attributes, AttributeKind, AttributeSpec};

/// Which configuration section the settings came from. Both run through the same engine; the
/// dialect only changes defaults and a few HttpPlatformHandler-specific behaviours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `system.webServer/aspNetCore` (ASP.NET Core Module).
    AspNetCore,
    /// `system.webServer/httpPlatform` (HttpPlatformHandler).
    HttpPlatform,
}

/// `hostingModel` as ANCM accepts it (case-insensitive). `InProcess` is served out of process by
/// this project, with a logged warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostingModel {
    /// `outofprocess`, or the attribute absent.
    OutOfProcess,
    /// `inprocess`: accepted for compatibility, served out of process.
    InProcess,
}

/// A validated application configuration. Strings are already `%VAR%`-expanded where ANCM expands
/// them (processPath, arguments, stdoutLogFile, environment values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the settings came from (a file name for messages, e.g. `web.config`).
    pub source: String,
    /// Which section they came from.
    pub dialect: Dialect,
    /// The program to start (required).
    pub process_path: String,
    /// Its command line arguments, as one string (Windows command-line syntax).
    pub arguments: String,
    /// How long one start attempt may take to listen (0 = one readiness check).
    pub startup_time_limit: Duration,
    /// How long a graceful shutdown may take before the process is killed.
    pub shutdown_time_limit: Duration,
    /// Process exits tolerated in a 60 s window before the app is disabled for its rest.
    pub rapid_fails_per_minute: u32,
    /// Per-operation timeout of a forwarded request (connect, send, each receive).
    pub request_timeout: Duration,
    /// Whether the child's stdout/stderr go to a log file.
    pub stdout_log_enabled: bool,
    /// The log file's path prefix (see ancm-behaviour.md §4).
    pub stdout_log_file: String,
    /// How many processes serve the app (1–100).
    pub processes_per_application: u32,
    /// Whether the Windows user token is forwarded to the backend.
    pub forward_windows_auth_token: bool,
    /// Whether a start failure answers a plain 502 instead of the 502.5 page.
    pub disable_startup_error_page: bool,
    /// The hosting model asked for.
    pub hosting_model: HostingModel,
    /// HttpPlatformHandler's startupRetryCount (attempts per start); 2 for the aspNetCore dialect.
    pub startup_attempts: u32,
    /// `environmentVariables`, after `<add>`/`<remove>`/`<clear>`, in order, names unique
    /// (case-insensitively), values expanded.
    pub environment_variables: Vec<(String, String)>,
    /// `handlerSettings`, after `<add>`/`<remove>`/`<clear>`, in order, names unique
    /// (case-insensitively). Unknown names are kept (and ignored by the engine).
    pub handler_settings: Vec<(String, String)>,
    /// This project's own settings, read from `handlerSettings` (recycle limits).
    pub extensions: Extensions,
    /// The deploy settings (shadow copies, change detection, preload, health checks, drain).
    pub deploy: Deploy,
}

impl Config {
    /// Looks up a handler setting by name (case-insensitive).
    pub fn handler_setting(&self, name: &str) -> Option<&str> {
        self.handler_settings
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Looks up a configured environment variable by name (case-insensitive).
    pub fn environment_variable(&self, name: &str) -> Option<&str> {
        self.environment_variables
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The port asked for with `ASPNETCORE_PORT` in `environmentVariables`, checked as ANCM checks
    /// it (a decimal integer in 1025–48000): `None` when not set (the engine picks a random port),
    /// `Some(Err(message))` when invalid. Not a build-time error, because ANCM loads such a
    /// configuration and answers each request with 502 instead.
    ///
    /// Always `None` in the httpPlatform dialect: HttpPlatformHandler has no such rule, and there
    /// `ASPNETCORE_PORT` is just another variable for the application.
    pub fn configured_port(&self) -> Option<Result<u16, String>> {
        if self.dialect != Dialect::AspNetCore {
            return None;
        }
        let raw = self.environment_variable("ASPNETCORE_PORT")?;
        let port = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            raw.parse::<u32>()
                .ok()
                .filter(|p| (1025..=48000).contains(p))
        } else {
            None
        };
        Some(port.and_then(|p| u16::try_from(p).ok()).ok_or_else(|| {
            format!(
                "{}: {}/environmentVariables/environmentVariable[@name='ASPNETCORE_PORT']/@value = \"{}\": must be a whole number in 1025–48000",
                self.source,
                self.dialect.section_name(),
                raw
            )
        }))
    }

    /// Things that are accepted but don't do what the file says, for the host to log once at
    /// startup; returned rather than logged so the host chooses the channel (event log, file).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.hosting_model == HostingModel::InProcess {
            warnings.push(format!(
                "{}: {}/@hostingModel = \"inprocess\": this module always hosts out of process; \
                 the application is started as a separate process",
                self.source,
                self.dialect.section_name()
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(dialect: Dialect, name: &str, value: &str) -> Config {
        let mut b = ConfigBuilder::new("web.config", dialect);
        b.set("processPath", "a").unwrap();
        b.add_environment_variable(name, value).unwrap();
        b.build_with_env(&|_| None).unwrap()
    }

    #[test]
    fn configured_port() {
        let port = |v: &str| with_env(Dialect::AspNetCore, "aspnetcore_port", v).configured_port();
        assert_eq!(port("1025"), Some(Ok(1025)));
        assert_eq!(port("48000"), Some(Ok(48000)));
        for bad in [
            "1024",
            "48001",
            "noninteger",
            "",
            " 5000",
            "-5000",
            "99999999999",
        ] {
            let e = port(bad).unwrap().unwrap_err();
            assert_eq!(
                e,
                format!(
                    "web.config: aspNetCore/environmentVariables/environmentVariable\
                     [@name='ASPNETCORE_PORT']/@value = \"{bad}\": must be a whole number in 1025–48000"
                )
            );
        }
        assert_eq!(
            with_env(Dialect::AspNetCore, "OTHER", "1").configured_port(),
            None
        );
        assert_eq!(
            with_env(Dialect::HttpPlatform, "ASPNETCORE_PORT", "1").configured_port(),
            None
        );
    }

    #[test]
    fn inprocess_warning() {
        let mut b = ConfigBuilder::new("web.config", Dialect::AspNetCore);
        b.set("processPath", "a").unwrap();
        assert!(b
            .clone()
            .build_with_env(&|_| None)
            .unwrap()
            .warnings()
            .is_empty());
        b.set("hostingModel", "InProcess").unwrap();
        let w = b.build_with_env(&|_| None).unwrap().warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("out of process"), "{}", w[0]);
    }
}
