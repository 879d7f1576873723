//! Key-by-key construction of a [`Config`]: the single validation path behind every way in.

use std::collections::HashMap;
use std::time::Duration;

use widestring::U16Str;

use super::error::{ConfigError, ConfigErrorKind};
use super::expand::expand_env;
use super::schema::{self, AttributeKind, AttributeSpec};
use super::timespan;
use super::{Config, Dialect, HostingModel};

/// One of the two name/value collections of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CollectionKind {
    EnvironmentVariables,
    HandlerSettings,
}

impl CollectionKind {
    /// (collection element, item element) as IIS's schema names them.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            CollectionKind::EnvironmentVariables => ("environmentVariables", "environmentVariable"),
            CollectionKind::HandlerSettings => ("handlerSettings", "handlerSetting"),
        }
    }
}

/// Accumulates a section's settings as a host reads them, then validates them all at once.
///
/// Attribute *names* are checked by [`set`](Self::set) (an unknown name is a mistake in the caller's
/// table, best reported where it happens); attribute *values* are checked by
/// [`build`](Self::build), in schema order, so the first error reported does not depend on the
/// order in which a host happened to set them. Setting an attribute twice keeps the last value.
///
/// Collection operations follow IIS's semantics and are checked at once, because their meaning
/// depends on their order: `add` of a name already present (compared case-insensitively) is a
/// [`ConfigErrorKind::DuplicateEntry`], `remove` drops a name (absent names are ignored, as IIS
/// does for inherited entries), `clear` drops everything added before it.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    source: String,
    dialect: Dialect,
    /// Raw values, parallel to `schema::attributes(dialect)`; `None` = not set (default applies).
    values: Vec<Option<String>>,
    environment_variables: Collection,
    handler_settings: Collection,
    /// `<recycleOnFileChange><file path/>` entries, in order.
    recycle_on_file_change: Vec<String>,
}

/// A collection's entries in order, names unique case-insensitively (ASCII case, as IIS
/// compares them), with `add`, `remove` and the duplicate check in constant time, so a host
/// feeding 100,000 entries does not take quadratic time.
#[derive(Debug, Clone, Default)]
struct Collection {
    /// Entries in the order added; `None` where one was removed.
    slots: Vec<Option<(String, String)>>,
    /// ASCII-lowercased name → index in `slots` of its live entry.
    index: HashMap<String, usize>,
}

impl Collection {
    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(&name.to_ascii_lowercase())
    }

    /// Appends an entry whose name is not present (the caller checked).
    fn push(&mut self, name: &str, value: &str) {
        self.index
            .insert(name.to_ascii_lowercase(), self.slots.len());
        self.slots.push(Some((name.to_owned(), value.to_owned())));
    }

    fn remove(&mut self, name: &str) {
        if let Some(i) = self.index.remove(&name.to_ascii_lowercase()) {
            self.slots[i] = None;
            // Compact once removed slots dominate, so add/remove cycles stay bounded in memory.
            if self.slots.len() > 64 && self.index.len() < self.slots.len() / 2 {
                self.slots.retain(Option::is_some);
                for (i, (k, _)) in self.slots.iter().flatten().enumerate() {
                    self.index.insert(k.to_ascii_lowercase(), i);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
    }

    fn into_vec(self) -> Vec<(String, String)> {
        self.slots.into_iter().flatten().collect()
    }
}

impl ConfigBuilder {
    /// Starts an empty section; `source` names the input in error messages (a file name, or
    /// `settings` for a host's key-by-key input).
    pub fn new(source: &str, dialect: Dialect) -> Self {
        ConfigBuilder {
            source: source.to_owned(),
            dialect,
            values: vec![None; schema::attributes(dialect).len()],
            environment_variables: Collection::default(),
            handler_settings: Collection::default(),
            recycle_on_file_change: Vec::new(),
        }
    }

    /// The dialect this builder validates against.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Sets an attribute by its exact (case-sensitive) schema name. Fails at once for a name the
    /// section doesn't have, or a value containing NUL (which no Windows API could carry); the
    /// value itself is validated by [`build`](Self::build).
    pub fn set(&mut self, attribute: &str, value: &str) -> Result<(), ConfigError> {
        let Some((index, spec)) = schema::find(self.dialect, attribute) else {
            return Err(self.error(
                ConfigErrorKind::UnknownAttribute,
                self.attribute_path(attribute),
                None,
                format!(
                    "Unrecognized attribute '{attribute}'. Note that attribute names are case-sensitive."
                ),
            ));
        };
        self.check_no_nul(self.attribute_path(spec.name), value)?;
        self.values[index] = Some(value.to_owned());
        Ok(())
    }

    /// [`set`](Self::set) for UTF-16 input as IIS's configuration API returns it (without the
    /// terminating NUL). Invalid UTF-16 is an [`ConfigErrorKind::InvalidEncoding`] error.
    pub fn set_utf16(&mut self, attribute: &[u16], value: &[u16]) -> Result<(), ConfigError> {
        let attribute = self.utf16_name(attribute, self.dialect.section_name())?;
        let value = self.utf16_value(value, self.attribute_path(&attribute))?;
        self.set(&attribute, &value)
    }

    /// `<environmentVariable name value>`: the variable is set for the application's process.
    pub fn add_environment_variable(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        self.add(CollectionKind::EnvironmentVariables, name, value)
    }

    /// `<remove name>` in `environmentVariables`.
    pub fn remove_environment_variable(&mut self, name: &str) -> Result<(), ConfigError> {
        self.remove(CollectionKind::EnvironmentVariables, name)
    }

    /// `<clear/>` in `environmentVariables`.
    pub fn clear_environment_variables(&mut self) -> Result<(), ConfigError> {
        self.clear(CollectionKind::EnvironmentVariables)
    }

    /// [`add_environment_variable`](Self::add_environment_variable) for UTF-16 input.
    pub fn add_environment_variable_utf16(
        &mut self,
        name: &[u16],
        value: &[u16],
    ) -> Result<(), ConfigError> {
        self.add_utf16(CollectionKind::EnvironmentVariables, name, value)
    }

    /// [`remove_environment_variable`](Self::remove_environment_variable) for UTF-16 input.
    pub fn remove_environment_variable_utf16(&mut self, name: &[u16]) -> Result<(), ConfigError> {
        self.remove_utf16(CollectionKind::EnvironmentVariables, name)
    }

    /// `<handlerSetting name value>`; aspNetCore only (HttpPlatformHandler has no such collection).
    pub fn add_handler_setting(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        self.add(CollectionKind::HandlerSettings, name, value)
    }

    /// `<remove name>` in `handlerSettings`.
    pub fn remove_handler_setting(&mut self, name: &str) -> Result<(), ConfigError> {
        self.remove(CollectionKind::HandlerSettings, name)
    }

    /// `<recycleOnFileChange><file path/>`: a file (relative to the site root) whose change
    /// starts a new generation of the app when shadow copies are off. An empty path is
    /// ignored; httpPlatform has no such collection (an error naming it).
    pub fn add_recycle_on_file_change(&mut self, path: &str) -> Result<(), ConfigError> {
        if self.dialect != Dialect::AspNetCore {
            let section = self.dialect.section_name();
            return Err(self.error(
                ConfigErrorKind::UnknownElement,
                format!("{section}/recycleOnFileChange"),
                None,
                format!(
                    "Unrecognized element 'recycleOnFileChange': {section} has no such collection"
                ),
            ));
        }
        if !path.is_empty() {
            self.recycle_on_file_change.push(path.to_owned());
        }
        Ok(())
    }

    /// [`add_recycle_on_file_change`](Self::add_recycle_on_file_change) for UTF-16 input.
    pub fn add_recycle_on_file_change_utf16(&mut self, path: &[u16]) -> Result<(), ConfigError> {
        let where_ = format!(
            "{}/recycleOnFileChange/file/@path",
            self.dialect.section_name()
        );
        let path = self.utf16_value(path, where_)?;
        self.add_recycle_on_file_change(&path)
    }

    /// `<clear/>` in `handlerSettings`.
    pub fn clear_handler_settings(&mut self) -> Result<(), ConfigError> {
        self.clear(CollectionKind::HandlerSettings)
    }

    /// [`add_handler_setting`](Self::add_handler_setting) for UTF-16 input.
    pub fn add_handler_setting_utf16(
        &mut self,
        name: &[u16],
        value: &[u16],
    ) -> Result<(), ConfigError> {
        self.add_utf16(CollectionKind::HandlerSettings, name, value)
    }

    /// [`remove_handler_setting`](Self::remove_handler_setting) for UTF-16 input.
    pub fn remove_handler_setting_utf16(&mut self, name: &[u16]) -> Result<(), ConfigError> {
        self.remove_utf16(CollectionKind::HandlerSettings, name)
    }

    /// Validates everything and expands `%VAR%` against this process's environment (on Windows
    /// [`std::env::var`] compares names case-insensitively, as `ExpandEnvironmentStrings` does;
    /// variables whose value is not Unicode are treated as unset).
    pub fn build(self) -> Result<Config, ConfigError> {
        self.build_with_env(&|name| std::env::var(name).ok())
    }

    /// [`build`](Self::build) with an explicit environment, so tests and hosts with their own
    /// environment block get deterministic expansion.
    ///
    /// In the httpPlatform dialect `%HTTP_PLATFORM_PORT%` is never expanded here: it is the port
    /// HttpPlatformHandler substitutes when it starts the process, unknown until then.
    pub fn build_with_env(
        self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let dialect = self.dialect;
        let hide_port = |name: &str| {
            if dialect == Dialect::HttpPlatform && name.eq_ignore_ascii_case("HTTP_PLATFORM_PORT") {
                None
            } else {
                lookup(name)
            }
        };
        let expand = |s: &str| expand_env(s, &hide_port);

        // Attributes a dialect lacks keep these values (HttpPlatformHandler's fixed behaviour).
        let mut config = Config {
            source: self.source.clone(),
            dialect,
            process_path: String::new(),
            arguments: String::new(),
            startup_time_limit: Duration::ZERO,
            shutdown_time_limit: Duration::from_secs(10),
            rapid_fails_per_minute: 0,
            request_timeout: Duration::ZERO,
            stdout_log_enabled: false,
            stdout_log_file: String::new(),
            processes_per_application: 1,
            forward_windows_auth_token: false,
            disable_startup_error_page: false,
            hosting_model: HostingModel::OutOfProcess,
            startup_attempts: 2,
            environment_variables: Vec::new(),
            handler_settings: Vec::new(),
            extensions: Default::default(),
            deploy: Default::default(),
        };

        for (spec, raw) in schema::attributes(dialect).iter().zip(&self.values) {
            let value = match (raw.as_deref(), spec.default) {
                (Some(v), _) | (None, Some(v)) => self.parse(spec, v, &expand)?,
                (None, None) => return Err(self.required(spec.name)),
            };
            if spec.default.is_none() && matches!(&value, Value::Str(s) if s.is_empty()) {
                return Err(self.required(spec.name));
            }
            apply(&mut config, spec.name, value);
        }

        config.environment_variables = self
            .environment_variables
            .into_vec()
            .into_iter()
            .map(|(name, value)| {
                let value = expand(&value);
                (name, value)
            })
            .collect();
        let handler_settings = self.handler_settings.into_vec();
        config.extensions = super::extensions::parse(&handler_settings, &self.source, dialect)?;
        config.deploy = super::deploy::parse(&handler_settings, &self.source, dialect)?;
        config.deploy.recycle_on_file_change = self.recycle_on_file_change;
        config.handler_settings = handler_settings;
        Ok(config)
    }

    fn parse(
        &self,
        spec: &AttributeSpec,
        raw: &str,
        expand: &dyn Fn(&str) -> String,
    ) -> Result<Value, ConfigError> {
        let bad = |kind, rule: String| {
            Err(self.error(kind, self.attribute_path(spec.name), Some(raw), rule))
        };
        match spec.kind {
            AttributeKind::String => Ok(Value::Str(raw.to_owned())),
            AttributeKind::ExpandedString => Ok(Value::Str(expand(raw))),
            AttributeKind::Bool => {
                if raw.eq_ignore_ascii_case("true") {
                    Ok(Value::Bool(true))
                } else if raw.eq_ignore_ascii_case("false") {
                    Ok(Value::Bool(false))
                } else {
                    bad(
                        ConfigErrorKind::InvalidValue,
                        "must be true or false".into(),
                    )
                }
            }
            AttributeKind::UInt { min, max, unit } => match parse_decimal(raw) {
                Some(n) if n >= u64::from(min) && n <= u64::from(max) => {
                    // In range, so it fits: max is a u32.
                    Ok(Value::UInt(u32::try_from(n).unwrap_or(max)))
                }
                Some(_) => bad(
                    ConfigErrorKind::OutOfRange,
                    format!("must be {min}–{max}{unit}"),
                ),
                None => bad(
                    ConfigErrorKind::InvalidValue,
                    format!("must be a whole number, {min}–{max}{unit}"),
                ),
            },
            AttributeKind::TimeSpan { max_seconds } => {
                let range = format!(
                    "{}–{} ({} hours) in whole seconds",
                    timespan::format_seconds(0),
                    timespan::format_seconds(max_seconds),
                    max_seconds / 3600
                );
                match timespan::parse_ticks(raw) {
                    Ok(ticks)
                        if timespan::is_whole_seconds(ticks)
                            && ticks / 10_000_000 <= max_seconds =>
                    {
                        Ok(Value::Duration(timespan::ticks_to_duration(ticks)))
                    }
                    Ok(_)
                    | Err(timespan::TimeSpanError::Negative | timespan::TimeSpanError::TooLarge) => {
                        bad(ConfigErrorKind::OutOfRange, format!("must be {range}"))
                    }
                    Err(timespan::TimeSpanError::Syntax) => bad(
                        ConfigErrorKind::InvalidValue,
                        format!("must be a timeSpan such as 00:02:00 ([d.]hh:mm:ss), {range}"),
                    ),
                }
            }
            AttributeKind::HostingModel => {
                if raw.is_empty() || raw.eq_ignore_ascii_case("outofprocess") {
                    Ok(Value::Hosting(HostingModel::OutOfProcess))
                } else if raw.eq_ignore_ascii_case("inprocess") {
                    Ok(Value::Hosting(HostingModel::InProcess))
                } else {
                    bad(
                        ConfigErrorKind::InvalidValue,
                        format!(
                            "Unknown hosting model '{}'. Please specify either \
                             hostingModel=\"inprocess\" or hostingModel=\"outofprocess\"",
                            super::error::shorten(raw)
                        ),
                    )
                }
            }
        }
    }

    fn add(&mut self, kind: CollectionKind, name: &str, value: &str) -> Result<(), ConfigError> {
        self.check_collection(kind)?;
        self.check_name(kind, name)?;
        self.check_no_nul(self.entry_path(kind, name, "/@value"), value)?;
        if self.entries(kind).contains(name) {
            let (_, item) = kind.names();
            return Err(self.error(
                ConfigErrorKind::DuplicateEntry,
                self.entry_path(kind, name, ""),
                None,
                format!(
                    "Cannot add duplicate collection entry of type '{item}' with unique key \
                     attribute 'name' set to '{name}'"
                ),
            ));
        }
        self.entries_mut(kind).push(name, value);
        Ok(())
    }

    fn remove(&mut self, kind: CollectionKind, name: &str) -> Result<(), ConfigError> {
        self.check_collection(kind)?;
        self.check_name(kind, name)?;
        self.entries_mut(kind).remove(name);
        Ok(())
    }

    fn clear(&mut self, kind: CollectionKind) -> Result<(), ConfigError> {
        self.check_collection(kind)?;
        self.entries_mut(kind).clear();
        Ok(())
    }

    fn add_utf16(
        &mut self,
        kind: CollectionKind,
        name: &[u16],
        value: &[u16],
    ) -> Result<(), ConfigError> {
        let (collection, item) = kind.names();
        let context = format!("{}/{collection}/{item}", self.dialect.section_name());
        let name = self.utf16_name(name, &context)?;
        let value = self.utf16_value(value, self.entry_path(kind, &name, "/@value"))?;
        self.add(kind, &name, &value)
    }

    fn remove_utf16(&mut self, kind: CollectionKind, name: &[u16]) -> Result<(), ConfigError> {
        let (collection, _) = kind.names();
        let context = format!("{}/{collection}/remove", self.dialect.section_name());
        let name = self.utf16_name(name, &context)?;
        self.remove(kind, &name)
    }

    fn utf16_name(&self, name: &[u16], context: &str) -> Result<String, ConfigError> {
        U16Str::from_slice(name).to_string().map_err(|_| {
            self.error(
                ConfigErrorKind::InvalidEncoding,
                context.to_owned(),
                Some(&U16Str::from_slice(name).to_string_lossy()),
                "a name is not valid UTF-16",
            )
        })
    }

    fn utf16_value(&self, value: &[u16], path: String) -> Result<String, ConfigError> {
        U16Str::from_slice(value).to_string().map_err(|_| {
            self.error(
                ConfigErrorKind::InvalidEncoding,
                path,
                Some(&U16Str::from_slice(value).to_string_lossy()),
                "is not valid UTF-16",
            )
        })
    }

    fn check_collection(&self, kind: CollectionKind) -> Result<(), ConfigError> {
        if kind == CollectionKind::HandlerSettings && !self.dialect.has_handler_settings() {
            let (collection, _) = kind.names();
            let section = self.dialect.section_name();
            return Err(self.error(
                ConfigErrorKind::UnknownElement,
                format!("{section}/{collection}"),
                None,
                format!("Unrecognized element '{collection}': {section} has no such collection"),
            ));
        }
        Ok(())
    }

    fn check_name(&self, kind: CollectionKind, name: &str) -> Result<(), ConfigError> {
        let (collection, item) = kind.names();
        let path = format!("{}/{collection}/{item}/@name", self.dialect.section_name());
        if name.is_empty() {
            return Err(self.error(
                ConfigErrorKind::Required,
                path,
                None,
                "Attribute 'name' is required.",
            ));
        }
        self.check_no_nul(path.clone(), name)?;
        // A `=` would split the name inside the Windows environment block ("NAME=VALUE\0").
        if kind == CollectionKind::EnvironmentVariables && name.contains('=') {
            return Err(self.error(
                ConfigErrorKind::InvalidValue,
                path,
                Some(name),
                "an environment variable name must not contain '='",
            ));
        }
        Ok(())
    }

    fn check_no_nul(&self, path: String, value: &str) -> Result<(), ConfigError> {
        if value.contains('\0') {
            return Err(self.error(
                ConfigErrorKind::InvalidValue,
                path,
                Some(value),
                "must not contain NUL characters",
            ));
        }
        Ok(())
    }

    fn entries(&self, kind: CollectionKind) -> &Collection {
        match kind {
            CollectionKind::EnvironmentVariables => &self.environment_variables,
            CollectionKind::HandlerSettings => &self.handler_settings,
        }
    }

    fn entries_mut(&mut self, kind: CollectionKind) -> &mut Collection {
        match kind {
            CollectionKind::EnvironmentVariables => &mut self.environment_variables,
            CollectionKind::HandlerSettings => &mut self.handler_settings,
        }
    }

    fn attribute_path(&self, name: &str) -> String {
        format!("{}/@{name}", self.dialect.section_name())
    }

    /// `aspNetCore/environmentVariables/environmentVariable[@name='X']` + `suffix`.
    fn entry_path(&self, kind: CollectionKind, name: &str, suffix: &str) -> String {
        let (collection, item) = kind.names();
        format!(
            "{}/{collection}/{item}[@name='{name}']{suffix}",
            self.dialect.section_name()
        )
    }

    fn required(&self, name: &str) -> ConfigError {
        self.error(
            ConfigErrorKind::Required,
            self.attribute_path(name),
            None,
            format!("Attribute '{name}' is required."),
        )
    }

    fn error(
        &self,
        kind: ConfigErrorKind,
        attribute: String,
        value: Option<&str>,
        rule: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(kind, &self.source, attribute, value, rule)
    }
}

/// A parsed attribute value, before it lands in its `Config` field.
enum Value {
    Str(String),
    UInt(u32),
    Bool(bool),
    Duration(Duration),
    Hosting(HostingModel),
}

/// Stores a parsed value in its field. The schema table and this match are kept in step by the
/// tests that check every attribute's default and every range.
fn apply(config: &mut Config, name: &str, value: Value) {
    match (name, value) {
        ("processPath", Value::Str(s)) => config.process_path = s,
        ("arguments", Value::Str(s)) => config.arguments = s,
        ("stdoutLogFile", Value::Str(s)) => config.stdout_log_file = s,
        ("startupTimeLimit", Value::UInt(n)) => {
            config.startup_time_limit = Duration::from_secs(n.into())
        }
        ("shutdownTimeLimit", Value::UInt(n)) => {
            config.shutdown_time_limit = Duration::from_secs(n.into())
        }
        ("rapidFailsPerMinute", Value::UInt(n)) => config.rapid_fails_per_minute = n,
        ("processesPerApplication", Value::UInt(n)) => config.processes_per_application = n,
        // HttpPlatformHandler's docs call it the number of launch attempts; 0 would mean never
        // starting at all, so at least one attempt is made.
        ("startupRetryCount", Value::UInt(n)) => config.startup_attempts = n.max(1),
        ("requestTimeout", Value::Duration(d)) => config.request_timeout = d,
        ("stdoutLogEnabled", Value::Bool(b)) => config.stdout_log_enabled = b,
        ("forwardWindowsAuthToken", Value::Bool(b)) => config.forward_windows_auth_token = b,
        ("disableStartUpErrorPage", Value::Bool(b)) => config.disable_startup_error_page = b,
        ("hostingModel", Value::Hosting(h)) => config.hosting_model = h,
        (other, _) => debug_assert!(false, "schema attribute {other} has no Config field"),
    }
}

/// Whether `s` is one or more ASCII digits and nothing else (no sign, no whitespace).
fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A decimal number, or `None` if `s` isn't one; values beyond `u64` saturate, which is
/// out of every range, so huge inputs give OutOfRange rather than a parse failure.
fn parse_decimal(s: &str) -> Option<u64> {
    if !is_decimal(s) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn builder(dialect: Dialect) -> ConfigBuilder {
        let mut b = ConfigBuilder::new("settings", dialect);
        b.set("processPath", "app.exe").unwrap();
        b
    }

    fn build_one(dialect: Dialect, attribute: &str, value: &str) -> Result<Config, ConfigError> {
        let mut b = builder(dialect);
        b.set(attribute, value).unwrap();
        b.build_with_env(&no_env)
    }

    #[test]
    fn aspnetcore_defaults() {
        let c = builder(Dialect::AspNetCore)
            .build_with_env(&no_env)
            .unwrap();
        assert_eq!(c.source, "settings");
        assert_eq!(c.dialect, Dialect::AspNetCore);
        assert_eq!(c.process_path, "app.exe");
        assert_eq!(c.arguments, "");
        assert_eq!(c.startup_time_limit, Duration::from_secs(120));
        assert_eq!(c.shutdown_time_limit, Duration::from_secs(10));
        assert_eq!(c.rapid_fails_per_minute, 10);
        assert_eq!(c.request_timeout, Duration::from_secs(120));
        assert!(!c.stdout_log_enabled);
        assert_eq!(c.stdout_log_file, ".\\aspnetcore-stdout");
        assert_eq!(c.processes_per_application, 1);
        assert!(c.forward_windows_auth_token);
        assert!(!c.disable_startup_error_page);
        assert_eq!(c.hosting_model, HostingModel::OutOfProcess);
        assert_eq!(c.startup_attempts, 2);
        assert!(c.environment_variables.is_empty());
        assert!(c.handler_settings.is_empty());
    }

    #[test]
    fn httpplatform_defaults() {
        let c = builder(Dialect::HttpPlatform)
            .build_with_env(&no_env)
            .unwrap();
        assert_eq!(c.dialect, Dialect::HttpPlatform);
        assert_eq!(c.arguments, "");
        assert_eq!(c.startup_time_limit, Duration::from_secs(10));
        assert_eq!(c.startup_attempts, 10);
        assert_eq!(c.shutdown_time_limit, Duration::from_secs(10));
        assert_eq!(c.rapid_fails_per_minute, 10);
        assert_eq!(c.request_timeout, Duration::from_secs(120));
        assert!(!c.stdout_log_enabled);
        assert_eq!(c.stdout_log_file, ".\\httpplatform-stdout");
        assert_eq!(c.processes_per_application, 1);
        assert!(!c.forward_windows_auth_token);
        assert!(!c.disable_startup_error_page);
        assert_eq!(c.hosting_model, HostingModel::OutOfProcess);
    }

    #[test]
    fn every_attribute_is_applied() {
        let mut b = ConfigBuilder::new("settings", Dialect::AspNetCore);
        for (k, v) in [
            ("processPath", "p"),
            ("arguments", "a b"),
            ("startupTimeLimit", "1"),
            ("shutdownTimeLimit", "2"),
            ("rapidFailsPerMinute", "3"),
            ("requestTimeout", "00:00:04"),
            ("stdoutLogEnabled", "TRUE"),
            ("stdoutLogFile", "log"),
            ("processesPerApplication", "5"),
            ("forwardWindowsAuthToken", "False"),
            ("disableStartUpErrorPage", "true"),
            ("hostingModel", "InProcess"),
        ] {
            b.set(k, v).unwrap();
        }
        let c = b.build_with_env(&no_env).unwrap();
        assert_eq!(
            (
                c.process_path.as_str(),
                c.arguments.as_str(),
                c.stdout_log_file.as_str()
            ),
            ("p", "a b", "log")
        );
        assert_eq!(c.startup_time_limit, Duration::from_secs(1));
        assert_eq!(c.shutdown_time_limit, Duration::from_secs(2));
        assert_eq!(c.rapid_fails_per_minute, 3);
        assert_eq!(c.request_timeout, Duration::from_secs(4));
        assert!(c.stdout_log_enabled);
        assert_eq!(c.processes_per_application, 5);
        assert!(!c.forward_windows_auth_token);
        assert!(c.disable_startup_error_page);
        assert_eq!(c.hosting_model, HostingModel::InProcess);

        let c = build_one(Dialect::HttpPlatform, "startupRetryCount", "3").unwrap();
        assert_eq!(c.startup_attempts, 3);
        let c = build_one(Dialect::HttpPlatform, "startupRetryCount", "0").unwrap();
        assert_eq!(c.startup_attempts, 1, "at least one attempt");
    }

    #[test]
    fn uint_range_boundaries() {
        let cases: &[(Dialect, &str, u32, u32, &str)] = &[
            (Dialect::AspNetCore, "startupTimeLimit", 0, 3600, " seconds"),
            (Dialect::AspNetCore, "shutdownTimeLimit", 0, 600, " seconds"),
            (Dialect::AspNetCore, "rapidFailsPerMinute", 0, 100, ""),
            (Dialect::AspNetCore, "processesPerApplication", 1, 100, ""),
            (
                Dialect::HttpPlatform,
                "startupTimeLimit",
                0,
                3600,
                " seconds",
            ),
            (Dialect::HttpPlatform, "startupRetryCount", 0, 100, ""),
            (Dialect::HttpPlatform, "rapidFailsPerMinute", 0, 100, ""),
            (Dialect::HttpPlatform, "processesPerApplication", 1, 100, ""),
        ];
        for &(dialect, name, min, max, unit) in cases {
            assert!(build_one(dialect, name, &min.to_string()).is_ok(), "{name}");
            assert!(build_one(dialect, name, &max.to_string()).is_ok(), "{name}");
            let over = (max + 1).to_string();
            let e = build_one(dialect, name, &over).unwrap_err();
            assert_eq!(e.kind, ConfigErrorKind::OutOfRange, "{name}");
            assert_eq!(e.value.as_deref(), Some(over.as_str()));
            assert_eq!(e.rule, format!("must be {min}–{max}{unit}"));
            assert_eq!(e.attribute, format!("{}/@{name}", dialect.section_name()));
            if min > 0 {
                let e = build_one(dialect, name, &(min - 1).to_string()).unwrap_err();
                assert_eq!(e.kind, ConfigErrorKind::OutOfRange, "{name}");
            }
        }
    }

    #[test]
    fn issue_example_message() {
        let e = build_one(Dialect::AspNetCore, "startupTimeLimit", "9999").unwrap_err();
        assert_eq!(
            e.to_string(),
            "settings: aspNetCore/@startupTimeLimit = \"9999\": must be 0–3600 seconds"
        );
    }

    #[test]
    fn bad_numbers() {
        for bad in ["", "abc", "-1", "+1", " 1", "1 ", "1.0", "0x10", "１"] {
            let e = build_one(Dialect::AspNetCore, "startupTimeLimit", bad).unwrap_err();
            assert_eq!(e.kind, ConfigErrorKind::InvalidValue, "{bad:?}");
            assert_eq!(e.rule, "must be a whole number, 0–3600 seconds");
        }
        for huge in ["4294967296", "99999999999999999999999999999"] {
            let e = build_one(Dialect::AspNetCore, "startupTimeLimit", huge).unwrap_err();
            assert_eq!(e.kind, ConfigErrorKind::OutOfRange, "{huge}");
        }
        let c = build_one(Dialect::AspNetCore, "startupTimeLimit", "0007").unwrap();
        assert_eq!(c.startup_time_limit, Duration::from_secs(7));
    }

    #[test]
    fn bad_bool() {
        for bad in ["yes", "1", "", " true", "truee"] {
            let e = build_one(Dialect::AspNetCore, "stdoutLogEnabled", bad).unwrap_err();
            assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
            assert_eq!(
                e.to_string(),
                format!(
                    "settings: aspNetCore/@stdoutLogEnabled = \"{bad}\": must be true or false"
                )
            );
        }
    }

    #[test]
    fn request_timeout_range() {
        let ok = |v: &str| {
            build_one(Dialect::AspNetCore, "requestTimeout", v)
                .unwrap()
                .request_timeout
        };
        assert_eq!(ok("00:00:00"), Duration::ZERO);
        assert_eq!(ok("15.00:00:00"), Duration::from_secs(360 * 3600));
        assert_eq!(ok("14.23:59:59"), Duration::from_secs(360 * 3600 - 1));
        let range = "00:00:00–15.00:00:00 (360 hours) in whole seconds";
        let rule = format!("must be {range}");
        for out in [
            "15.00:00:01",
            "-00:00:01",
            "00:00:01.5",
            "99999999.00:00:00",
        ] {
            let e = build_one(Dialect::AspNetCore, "requestTimeout", out).unwrap_err();
            assert_eq!(e.kind, ConfigErrorKind::OutOfRange, "{out}");
            assert_eq!(e.rule, rule);
        }
        let e = build_one(Dialect::HttpPlatform, "requestTimeout", "2 minutes").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
        assert_eq!(
            e.to_string(),
            format!(
                "settings: httpPlatform/@requestTimeout = \"2 minutes\": must be a timeSpan such \
                 as 00:02:00 ([d.]hh:mm:ss), {range}"
            )
        );
    }

    #[test]
    fn hosting_model() {
        for (v, want) in [
            ("inprocess", HostingModel::InProcess),
            ("INPROCESS", HostingModel::InProcess),
            ("OutOfProcess", HostingModel::OutOfProcess),
            ("", HostingModel::OutOfProcess),
        ] {
            let c = build_one(Dialect::AspNetCore, "hostingModel", v).unwrap();
            assert_eq!(c.hosting_model, want, "{v}");
        }
        let e = build_one(Dialect::AspNetCore, "hostingModel", "x").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
        assert_eq!(
            e.to_string(),
            "settings: aspNetCore/@hostingModel = \"x\": Unknown hosting model 'x'. Please \
             specify either hostingModel=\"inprocess\" or hostingModel=\"outofprocess\""
        );
    }

    #[test]
    fn process_path_required() {
        let expected = "settings: aspNetCore/@processPath: Attribute 'processPath' is required.";
        let e = ConfigBuilder::new("settings", Dialect::AspNetCore)
            .build_with_env(&no_env)
            .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::Required);
        assert_eq!(e.to_string(), expected);
        let e = build_one(Dialect::AspNetCore, "processPath", "").unwrap_err();
        assert_eq!(e.to_string(), expected);
        // Empty after expansion counts as empty, as ANCM checks the expanded value.
        let mut b = ConfigBuilder::new("settings", Dialect::AspNetCore);
        b.set("processPath", "%EMPTY%").unwrap();
        let e = b
            .build_with_env(&|n| (n == "EMPTY").then(String::new))
            .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::Required);
    }

    #[test]
    fn errors_come_in_schema_order() {
        let mut b = ConfigBuilder::new("settings", Dialect::AspNetCore);
        b.set("hostingModel", "bad").unwrap();
        b.set("startupTimeLimit", "bad").unwrap();
        let e = b.build_with_env(&no_env).unwrap_err();
        assert_eq!(e.attribute, "aspNetCore/@processPath");
        let mut b = builder(Dialect::AspNetCore);
        b.set("hostingModel", "bad").unwrap();
        b.set("startupTimeLimit", "bad").unwrap();
        let e = b.build_with_env(&no_env).unwrap_err();
        assert_eq!(e.attribute, "aspNetCore/@startupTimeLimit");
    }

    #[test]
    fn unknown_and_miscased_attributes() {
        let mut b = ConfigBuilder::new("settings", Dialect::AspNetCore);
        for name in ["processpath", "startupRetryCount", "foo"] {
            let e = b.set(name, "1").unwrap_err();
            assert_eq!(e.kind, ConfigErrorKind::UnknownAttribute);
            assert_eq!(e.attribute, format!("aspNetCore/@{name}"));
        }
        let mut b = ConfigBuilder::new("settings", Dialect::HttpPlatform);
        for name in [
            "hostingModel",
            "shutdownTimeLimit",
            "disableStartUpErrorPage",
        ] {
            assert_eq!(
                b.set(name, "1").unwrap_err().kind,
                ConfigErrorKind::UnknownAttribute
            );
        }
    }

    #[test]
    fn last_set_wins() {
        let mut b = builder(Dialect::AspNetCore);
        b.set("startupTimeLimit", "9999").unwrap();
        b.set("startupTimeLimit", "5").unwrap();
        let c = b.build_with_env(&no_env).unwrap();
        assert_eq!(c.startup_time_limit, Duration::from_secs(5));
    }

    #[test]
    fn nul_is_refused() {
        let mut b = builder(Dialect::AspNetCore);
        let e = b.set("arguments", "a\0b").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
        let e = b.add_environment_variable("A\0", "x").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
        let e = b.add_handler_setting("a", "x\0").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
    }

    #[test]
    fn expansion_of_expanded_attributes_and_env_values_only() {
        let env = |n: &str| match n {
            "ROOT" => Some("C:\\app".to_owned()),
            "TestVariable" => Some("World".to_owned()),
            _ => None,
        };
        let mut b = ConfigBuilder::new("settings", Dialect::AspNetCore);
        b.set("processPath", "%ROOT%\\app.exe").unwrap();
        b.set("arguments", "--x %ROOT% %UNSET%").unwrap();
        b.set("stdoutLogFile", "%ROOT%\\logs\\out").unwrap();
        b.add_environment_variable("%ROOT%", "%TestVariable%;Hello")
            .unwrap();
        b.add_handler_setting("debugFile", "%ROOT%\\debug.log")
            .unwrap();
        let c = b.build_with_env(&env).unwrap();
        assert_eq!(c.process_path, "C:\\app\\app.exe");
        assert_eq!(c.arguments, "--x C:\\app %UNSET%");
        assert_eq!(c.stdout_log_file, "C:\\app\\logs\\out");
        assert_eq!(
            c.environment_variables,
            vec![("%ROOT%".to_owned(), "World;Hello".to_owned())]
        );
        assert_eq!(c.handler_setting("DEBUGFILE"), Some("%ROOT%\\debug.log"));
    }

    #[test]
    fn http_platform_port_is_left_for_the_engine() {
        let env = |n: &str| (n == "HTTP_PLATFORM_PORT" || n == "X").then(|| "1".to_owned());
        let mut b = builder(Dialect::HttpPlatform);
        b.set("arguments", "--port %HTTP_PLATFORM_PORT% %X%")
            .unwrap();
        let c = b.build_with_env(&env).unwrap();
        assert_eq!(c.arguments, "--port %HTTP_PLATFORM_PORT% 1");
        let mut b = builder(Dialect::AspNetCore);
        b.set("arguments", "%HTTP_PLATFORM_PORT%").unwrap();
        assert_eq!(b.build_with_env(&env).unwrap().arguments, "1");
    }

    #[test]
    fn collection_add_remove_clear() {
        let mut b = builder(Dialect::AspNetCore);
        b.add_environment_variable("A", "1").unwrap();
        b.add_environment_variable("B", "2").unwrap();
        b.add_environment_variable("C", "3").unwrap();
        b.remove_environment_variable("b").unwrap();
        b.remove_environment_variable("NOT_THERE").unwrap();
        b.add_environment_variable("b", "again").unwrap();
        b.add_handler_setting("x", "1").unwrap();
        b.clear_handler_settings().unwrap();
        b.add_handler_setting("debugLevel", "TRACE").unwrap();
        let c = b.clone().build_with_env(&no_env).unwrap();
        let pairs = |v: &[(String, String)]| {
            v.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&c.environment_variables), ["A=1", "C=3", "b=again"]);
        assert_eq!(pairs(&c.handler_settings), ["debugLevel=TRACE"]);
        assert_eq!(c.environment_variable("B"), Some("again"));
        b.clear_environment_variables().unwrap();
        b.add_environment_variable("A", "new").unwrap();
        let c = b.build_with_env(&no_env).unwrap();
        assert_eq!(pairs(&c.environment_variables), ["A=new"]);
    }

    #[test]
    fn collection_stays_ordered_and_unique_through_compaction() {
        let mut b = builder(Dialect::AspNetCore);
        for i in 0..200 {
            b.add_environment_variable(&format!("N{i}"), &i.to_string())
                .unwrap();
        }
        // Removing 150 of 200 compacts the slots; names, order and uniqueness survive it.
        for i in (0..200).filter(|i| i % 4 != 0) {
            b.remove_environment_variable(&format!("n{i}")).unwrap();
        }
        b.remove_environment_variable("never-added").unwrap();
        let e = b.add_environment_variable("n196", "x").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::DuplicateEntry);
        b.add_environment_variable("N1", "again").unwrap();
        let c = b.clone().build_with_env(&no_env).unwrap();
        let names: Vec<String> = c
            .environment_variables
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        let mut want: Vec<String> = (0..200).step_by(4).map(|i| format!("N{i}")).collect();
        want.push("N1".into());
        assert_eq!(names, want);
        b.clear_environment_variables().unwrap();
        b.add_environment_variable("N0", "fresh").unwrap();
        let c = b.build_with_env(&no_env).unwrap();
        assert_eq!(c.environment_variables, [("N0".into(), "fresh".into())]);
    }

    #[test]
    fn duplicate_add_is_an_error() {
        let mut b = builder(Dialect::AspNetCore);
        b.add_environment_variable("Path_X", "1").unwrap();
        let e = b.add_environment_variable("PATH_x", "2").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::DuplicateEntry);
        assert_eq!(
            e.to_string(),
            "settings: aspNetCore/environmentVariables/environmentVariable[@name='PATH_x']: \
             Cannot add duplicate collection entry of type 'environmentVariable' with unique key \
             attribute 'name' set to 'PATH_x'"
        );
        b.add_handler_setting("k", "1").unwrap();
        let e = b.add_handler_setting("K", "1").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::DuplicateEntry);
        assert!(e
            .attribute
            .starts_with("aspNetCore/handlerSettings/handlerSetting["));
    }

    #[test]
    fn bad_collection_names() {
        let mut b = builder(Dialect::AspNetCore);
        let e = b.add_environment_variable("", "1").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::Required);
        assert_eq!(
            e.to_string(),
            "settings: aspNetCore/environmentVariables/environmentVariable/@name: Attribute 'name' is required."
        );
        let e = b.add_environment_variable("A=B", "1").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidValue);
        // `=` is fine in a handler setting's name: it never reaches an environment block.
        b.add_handler_setting("a=b", "1").unwrap();
    }

    #[test]
    fn httpplatform_has_no_handler_settings() {
        let mut b = builder(Dialect::HttpPlatform);
        let e = b.add_handler_setting("a", "b").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownElement);
        assert_eq!(e.attribute, "httpPlatform/handlerSettings");
        assert!(b.clear_handler_settings().is_err());
        b.add_environment_variable("A", "1").unwrap();
    }

    fn w(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn utf16_path_gives_the_same_config() {
        let settings = [
            ("processPath", "C:\\Программы\\app.exe"),
            ("arguments", "--name 名前 %V%"),
            ("startupTimeLimit", "30"),
            ("requestTimeout", "1.00:00:00"),
            ("hostingModel", "inprocess"),
            ("stdoutLogEnabled", "true"),
        ];
        let env = |n: &str| (n == "V").then(|| "😀".to_owned());
        let mut a = ConfigBuilder::new("settings", Dialect::AspNetCore);
        let mut b = ConfigBuilder::new("settings", Dialect::AspNetCore);
        for (k, v) in settings {
            a.set(k, v).unwrap();
            b.set_utf16(&w(k), &w(v)).unwrap();
        }
        a.add_environment_variable("X", "1").unwrap();
        b.add_environment_variable_utf16(&w("X"), &w("1")).unwrap();
        a.add_environment_variable("Y", "é").unwrap();
        b.add_environment_variable_utf16(&w("Y"), &w("é")).unwrap();
        a.remove_environment_variable("x").unwrap();
        b.remove_environment_variable_utf16(&w("x")).unwrap();
        a.add_handler_setting("debugLevel", "FILE").unwrap();
        b.add_handler_setting_utf16(&w("debugLevel"), &w("FILE"))
            .unwrap();
        a.add_handler_setting("gone", "1").unwrap();
        b.add_handler_setting_utf16(&w("gone"), &w("1")).unwrap();
        a.remove_handler_setting("gone").unwrap();
        b.remove_handler_setting_utf16(&w("gone")).unwrap();
        let a = a.build_with_env(&env).unwrap();
        let b = b.build_with_env(&env).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.arguments, "--name 名前 😀");
    }

    #[test]
    fn invalid_utf16_is_an_error_not_a_panic() {
        let lone_surrogate = [0x61, 0xD800, 0x62];
        let mut b = builder(Dialect::AspNetCore);
        let e = b.set_utf16(&w("arguments"), &lone_surrogate).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidEncoding);
        assert_eq!(e.attribute, "aspNetCore/@arguments");
        let e = b.set_utf16(&lone_surrogate, &w("x")).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidEncoding);
        let e = b
            .add_environment_variable_utf16(&w("A"), &[0xDC00])
            .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidEncoding);
        assert!(b.add_handler_setting_utf16(&[0xDFFF], &w("v")).is_err());
        assert!(b.remove_environment_variable_utf16(&[0xD800]).is_err());
        assert!(e.to_string().lines().count() == 1);
    }
}
