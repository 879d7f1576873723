//! The attribute table of both sections, in one place: names, types, defaults and ranges drive
//! parsing, validation, error messages and documentation alike, so they cannot drift apart.
//!
//! Public because a native host that reads IIS's configuration system key by key needs the list of
//! attribute names to ask for.

use super::Dialect;

/// How an attribute's text is read and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeKind {
    /// Taken as written.
    String,
    /// `%VAR%`-expanded against the environment (IIS schema `expanded="true"`).
    ExpandedString,
    /// A decimal `uint` within `min..=max`; `unit` (e.g. `" seconds"`) only phrases messages.
    UInt {
        /// Smallest accepted value.
        min: u32,
        /// Largest accepted value.
        max: u32,
        /// Suffix for messages, including its leading space, or empty.
        unit: &'static str,
    },
    /// `true` / `false`, case-insensitive.
    Bool,
    /// A .NET timeSpan from 0 to `max_seconds`, in whole seconds.
    TimeSpan {
        /// Largest accepted value, in seconds.
        max_seconds: u64,
    },
    /// `inprocess` / `outofprocess`, case-insensitive; empty means out of process.
    HostingModel,
}

/// One attribute of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeSpec {
    /// The exact (case-sensitive) attribute name, as IIS's schema spells it.
    pub name: &'static str,
    /// How its value is read.
    pub kind: AttributeKind,
    /// The text used when the attribute is absent; `None` means it is required.
    pub default: Option<&'static str>,
}

const fn attr(name: &'static str, kind: AttributeKind, default: &'static str) -> AttributeSpec {
    AttributeSpec {
        name,
        kind,
        default: Some(default),
    }
}

const fn uint(min: u32, max: u32, unit: &'static str) -> AttributeKind {
    AttributeKind::UInt { min, max, unit }
}

/// 360 hours: the `timeSpanRange` upper bound of `requestTimeout` in both schemas.
const REQUEST_TIMEOUT_MAX_SECONDS: u64 = 360 * 3600;

const PROCESS_PATH: AttributeSpec = AttributeSpec {
    name: "processPath",
    kind: AttributeKind::ExpandedString,
    default: None,
};

/// `system.webServer/aspNetCore`, from ANCM V2's `aspnetcore_schema_v2.xml`.
static ASPNETCORE: [AttributeSpec; 12] = [
    PROCESS_PATH,
    attr("arguments", AttributeKind::ExpandedString, ""),
    attr("startupTimeLimit", uint(0, 3600, " seconds"), "120"),
    attr("shutdownTimeLimit", uint(0, 600, " seconds"), "10"),
    attr("rapidFailsPerMinute", uint(0, 100, ""), "10"),
    attr(
        "requestTimeout",
        AttributeKind::TimeSpan {
            max_seconds: REQUEST_TIMEOUT_MAX_SECONDS,
        },
        "00:02:00",
    ),
    attr("stdoutLogEnabled", AttributeKind::Bool, "false"),
    attr(
        "stdoutLogFile",
        AttributeKind::ExpandedString,
        ".\\aspnetcore-stdout",
    ),
    attr("processesPerApplication", uint(1, 100, ""), "1"),
    attr("forwardWindowsAuthToken", AttributeKind::Bool, "true"),
    attr("disableStartUpErrorPage", AttributeKind::Bool, "false"),
    attr("hostingModel", AttributeKind::HostingModel, ""),
];

/// `system.webServer/httpPlatform`, from HttpPlatformHandler v1.2's schema. It has no
/// shutdownTimeLimit, disableStartUpErrorPage or hostingModel; `startupRetryCount` is its own.
static HTTPPLATFORM: [AttributeSpec; 10] = [
    PROCESS_PATH,
    attr("arguments", AttributeKind::ExpandedString, ""),
    attr("startupTimeLimit", uint(0, 3600, " seconds"), "10"),
    attr("startupRetryCount", uint(0, 100, ""), "10"),
    attr("rapidFailsPerMinute", uint(0, 100, ""), "10"),
    attr(
        "requestTimeout",
        AttributeKind::TimeSpan {
            max_seconds: REQUEST_TIMEOUT_MAX_SECONDS,
        },
        "00:02:00",
    ),
    attr("stdoutLogEnabled", AttributeKind::Bool, "false"),
    attr(
        "stdoutLogFile",
        AttributeKind::ExpandedString,
        ".\\httpplatform-stdout",
    ),
    attr("processesPerApplication", uint(1, 100, ""), "1"),
    attr("forwardWindowsAuthToken", AttributeKind::Bool, "false"),
];

/// Every attribute of the dialect's section, in the order they are validated (and so the order in
/// which errors are found).
pub fn attributes(dialect: Dialect) -> &'static [AttributeSpec] {
    match dialect {
        Dialect::AspNetCore => &ASPNETCORE,
        Dialect::HttpPlatform => &HTTPPLATFORM,
    }
}

/// The attribute called exactly `name` (names are case-sensitive in IIS's schema).
pub(crate) fn find(dialect: Dialect, name: &str) -> Option<(usize, &'static AttributeSpec)> {
    attributes(dialect)
        .iter()
        .enumerate()
        .find(|(_, spec)| spec.name == name)
}

impl Dialect {
    /// The section's element name under `system.webServer`, also the first step of error paths.
    pub fn section_name(self) -> &'static str {
        match self {
            Dialect::AspNetCore => "aspNetCore",
            Dialect::HttpPlatform => "httpPlatform",
        }
    }

    /// Whether the section has a `handlerSettings` collection (HttpPlatformHandler has none).
    pub fn has_handler_settings(self) -> bool {
        matches!(self, Dialect::AspNetCore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unique_and_process_path_required_in_both() {
        for dialect in [Dialect::AspNetCore, Dialect::HttpPlatform] {
            let attrs = attributes(dialect);
            for (i, a) in attrs.iter().enumerate() {
                assert!(
                    attrs[i + 1..].iter().all(|b| b.name != a.name),
                    "{}",
                    a.name
                );
                assert_eq!(a.default.is_none(), a.name == "processPath");
            }
        }
    }

    #[test]
    fn lookup_is_exact() {
        assert!(find(Dialect::AspNetCore, "startupTimeLimit").is_some());
        assert!(find(Dialect::AspNetCore, "StartupTimeLimit").is_none());
        assert!(find(Dialect::AspNetCore, "startupRetryCount").is_none());
        assert!(find(Dialect::HttpPlatform, "startupRetryCount").is_some());
        assert!(find(Dialect::HttpPlatform, "hostingModel").is_none());
        assert!(find(Dialect::HttpPlatform, "shutdownTimeLimit").is_none());
    }
}
