//! The one error type of configuration loading.

use std::fmt;

/// What went wrong, so that hosts and tests can react without parsing the message (for example
/// answer HTTP 500 for any of them, but report an `Io` error differently from a bad value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// Neither `system.webServer/aspNetCore` nor `system.webServer/httpPlatform` was found.
    MissingSection,
    /// The section appears more than once for the application (IIS rejects that too).
    DuplicateSection,
    /// The file is not well-formed XML (the rule carries roxmltree's line:column).
    MalformedXml,
    /// The file's bytes are not valid UTF-8 / UTF-16, or a UTF-16 value from a host is invalid.
    InvalidEncoding,
    /// An attribute the schema doesn't define (IIS rejects unrecognized attributes).
    UnknownAttribute,
    /// A child element the schema doesn't define.
    UnknownElement,
    /// A required attribute is missing or empty.
    Required,
    /// A number or timeSpan that parsed but lies outside its allowed range.
    OutOfRange,
    /// A value that doesn't parse: bad bool, number, timeSpan, hostingModel, or a forbidden character.
    InvalidValue,
    /// A collection `<add>` whose key is already present (IIS: "Cannot add duplicate collection entry").
    DuplicateEntry,
    /// The file couldn't be read.
    Io,
}

/// A configuration error, precise enough to fix the file without guessing: which file, which
/// attribute (as an XPath-like path), which value, and the rule it broke.
///
/// Displays as one line, because it ends up in the Windows event log, an HTTP 500 page and test
/// output: `web.config: aspNetCore/@startupTimeLimit = "9999": must be 0–3600 seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// What kind of rule was broken.
    pub kind: ConfigErrorKind,
    /// The file as the user named it (e.g. `web.config`), or `settings` for key-by-key input.
    pub source: String,
    /// Where: e.g. `aspNetCore/@startupTimeLimit`, `system.webServer/aspNetCore`, or empty when the
    /// error concerns the whole file (I/O, encoding, malformed XML).
    pub attribute: String,
    /// The offending value, when there is one.
    pub value: Option<String>,
    /// The rule, phrased for the user: e.g. `must be 0–3600 seconds`.
    pub rule: String,
}

impl ConfigError {
    /// Builds an error; kept crate-private so every error goes through the same constructors.
    pub(crate) fn new(
        kind: ConfigErrorKind,
        source: &str,
        attribute: impl Into<String>,
        value: Option<&str>,
        rule: impl Into<String>,
    ) -> Self {
        ConfigError {
            kind,
            source: source.to_owned(),
            attribute: attribute.into(),
            value: value.map(str::to_owned),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if !self.attribute.is_empty() {
            write!(f, ": {}", self.attribute)?;
        }
        if let Some(value) = &self.value {
            // Debug-escape only what would break the one-line promise; keep the rest readable.
            write!(f, " = \"{}\"", one_line(&shorten(value)))?;
        }
        write!(f, ": {}", one_line(&self.rule))
    }
}

/// The most characters of an offending value a message repeats: enough to recognise it, short
/// enough that a 1 MiB value does not make a 1 MiB message in the event log or an error page.
pub(crate) const VALUE_SHOWN: usize = 200;

/// `value`, or its first [`VALUE_SHOWN`] characters and how long it really is.
pub(crate) fn shorten(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(VALUE_SHOWN) {
        None => value.into(),
        Some((cut, _)) => format!(
            "{}… ({} characters in all)",
            &value[..cut],
            value.chars().count()
        )
        .into(),
    }
}

/// Escapes line breaks and other control characters so a message stays on one line.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_shown_shortened() {
        let long = "x".repeat(1 << 20);
        let e = ConfigError::new(
            ConfigErrorKind::OutOfRange,
            "web.config",
            "aspNetCore/@startupTimeLimit",
            Some(&long),
            "must be 0–3600 seconds",
        );
        let shown = e.to_string();
        assert!(shown.len() < 400, "{} bytes", shown.len());
        assert!(shown.contains("… (1048576 characters in all)"), "{shown}");
        assert_eq!(
            e.value.as_deref().map(str::len),
            Some(1 << 20),
            "the error keeps the whole value"
        );
    }

    #[test]
    fn display_with_value() {
        let e = ConfigError::new(
            ConfigErrorKind::OutOfRange,
            "web.config",
            "aspNetCore/@startupTimeLimit",
            Some("9999"),
            "must be 0–3600 seconds",
        );
        assert_eq!(
            e.to_string(),
            "web.config: aspNetCore/@startupTimeLimit = \"9999\": must be 0–3600 seconds"
        );
    }

    #[test]
    fn display_without_value_or_attribute() {
        let e = ConfigError::new(
            ConfigErrorKind::MissingSection,
            "web.config",
            "system.webServer/aspNetCore",
            None,
            "section not found",
        );
        assert_eq!(
            e.to_string(),
            "web.config: system.webServer/aspNetCore: section not found"
        );
        let e = ConfigError::new(ConfigErrorKind::Io, "x/web.config", "", None, "gone");
        assert_eq!(e.to_string(), "x/web.config: gone");
    }

    #[test]
    fn display_stays_on_one_line() {
        let e = ConfigError::new(
            ConfigErrorKind::InvalidValue,
            "settings",
            "aspNetCore/@stdoutLogEnabled",
            Some("tr\nue\u{0}"),
            "must be true or false",
        );
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains("tr\\nue\\u{0}"), "{s}");
    }
}
