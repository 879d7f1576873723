//! Reading the section from a web.config file, the way IIS would find it.
//!
//! The reader only walks the XML and feeds a [`ConfigBuilder`]; every value rule lives there.

use std::path::Path;

use roxmltree::{Document, Node};

use super::error::{ConfigError, ConfigErrorKind};
use super::{Config, ConfigBuilder, Dialect};

/// IIS's generic locking attributes, valid on any element; they only matter for configuration
/// inheritance, which a single web.config doesn't have, so they are accepted and ignored.
const LOCK_ATTRIBUTES: [&str; 5] = [
    "lockAttributes",
    "lockAllAttributesExcept",
    "lockElements",
    "lockAllElementsExcept",
    "lockItem",
];

impl Config {
    /// Reads the application's web.config, expanding `%VAR%` against this process's environment.
    /// Errors name the file by `path` as given (e.g. `examples/hello/web.config`).
    pub fn from_web_config_file(path: &Path) -> Result<Config, ConfigError> {
        Self::from_web_config_file_with_env(path, &|name| std::env::var(name).ok())
    }

    /// [`from_web_config_file`](Self::from_web_config_file) with an explicit environment.
    pub fn from_web_config_file_with_env(
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let source = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::Io,
                &source,
                "",
                None,
                format!("cannot read the file: {e}"),
            )
        })?;
        let text = decode(&bytes, &source)?;
        Self::from_web_config_str_with_env(&text, &source, lookup)
    }

    /// Parses web.config text; `source` names it in errors. Expands against this process's
    /// environment.
    pub fn from_web_config_str(text: &str, source: &str) -> Result<Config, ConfigError> {
        Self::from_web_config_str_with_env(text, source, &|name| std::env::var(name).ok())
    }

    /// Parses web.config text with an explicit environment for `%VAR%` expansion.
    ///
    /// The section is looked for in `configuration/system.webServer`, directly or inside
    /// `configuration/location` elements whose `path` is absent, empty or `.` (the form
    /// `dotnet publish` writes); locations for other paths configure sub-applications and are
    /// skipped. `aspNetCore` wins over `httpPlatform` when both are present, because a site
    /// converted to ANCM often keeps its old section; the ignored one is logged as a warning.
    /// A section present twice is an error, as in IIS.
    pub fn from_web_config_str_with_env(
        text: &str,
        source: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let doc = Document::parse(text).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::MalformedXml,
                source,
                "",
                None,
                format!("malformed XML: {e}"),
            )
        })?;
        let (dialect, section) = find_section(&doc, source)?;
        let mut builder = ConfigBuilder::new(source, dialect);
        read_section(&mut builder, section, source)?;
        builder.build_with_env(lookup)
    }
}

/// Decodes a web.config file's bytes: UTF-8 (with or without BOM), or UTF-16 (LE/BE, detected by
/// BOM or by a leading `<` byte pair), since IIS accepts UTF-16 files and some editors write them.
/// Anything else is refused with the offset of the first bad byte rather than guessed at.
pub(crate) fn decode(bytes: &[u8], source: &str) -> Result<String, ConfigError> {
    let encoding_error =
        |rule: String| ConfigError::new(ConfigErrorKind::InvalidEncoding, source, "", None, rule);
    let utf16 = |body: &[u8], little_endian: bool, offset: usize| {
        if body.len() % 2 != 0 {
            return Err(encoding_error(
                "not valid UTF-16: odd number of bytes; save the file as UTF-8".into(),
            ));
        }
        let units = body.chunks_exact(2).map(|p| {
            if little_endian {
                u16::from_le_bytes([p[0], p[1]])
            } else {
                u16::from_be_bytes([p[0], p[1]])
            }
        });
        let mut text = String::with_capacity(body.len() / 2);
        for (i, c) in char::decode_utf16(units).enumerate() {
            match c {
                Ok(c) => text.push(c),
                Err(_) => {
                    return Err(encoding_error(format!(
                        "not valid UTF-16: unpaired surrogate at byte offset {}; save the file as UTF-8",
                        offset + 2 * i
                    )))
                }
            }
        }
        Ok(text)
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest, 3, source),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true, 2),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false, 2),
        [b'<', 0, ..] => utf16(bytes, true, 0),
        [0, b'<', ..] => utf16(bytes, false, 0),
        _ => utf8(bytes, 0, source),
    }
}

fn utf8(bytes: &[u8], offset: usize, source: &str) -> Result<String, ConfigError> {
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| {
        ConfigError::new(
            ConfigErrorKind::InvalidEncoding,
            source,
            "",
            None,
            format!(
                "not valid UTF-8: invalid byte at offset {}; save the file as UTF-8",
                offset + e.valid_up_to()
            ),
        )
    })
}

/// Finds the one section that configures this application.
fn find_section<'a, 'input>(
    doc: &'a Document<'input>,
    source: &str,
) -> Result<(Dialect, Node<'a, 'input>), ConfigError> {
    let root = doc.root_element();
    let missing = |rule: String| {
        ConfigError::new(
            ConfigErrorKind::MissingSection,
            source,
            "system.webServer/aspNetCore",
            None,
            rule,
        )
    };
    // Names are matched without namespaces: old Visual Studio templates put
    // xmlns="http://schemas.microsoft.com/.NetConfiguration/v2.0" on <configuration>.
    if root.tag_name().name() != "configuration" {
        return Err(missing(format!(
            "the root element is <{}>, not <configuration>",
            root.tag_name().name()
        )));
    }
    let applies_here = |location: &Node| {
        matches!(
            location.attribute("path").map(str::trim),
            None | Some("" | ".")
        )
    };
    let web_servers = root.children().filter(Node::is_element).flat_map(|child| {
        let name = child.tag_name().name();
        let direct = (name == "system.webServer").then_some(child);
        let in_location = (name == "location" && applies_here(&child))
            .then(|| {
                child
                    .children()
                    .filter(|n| n.is_element() && n.tag_name().name() == "system.webServer")
            })
            .into_iter()
            .flatten();
        direct.into_iter().chain(in_location)
    });
    let mut aspnetcore = Vec::new();
    let mut httpplatform = Vec::new();
    for web_server in web_servers {
        for section in web_server.children().filter(Node::is_element) {
            match section.tag_name().name() {
                "aspNetCore" => aspnetcore.push(section),
                "httpPlatform" => httpplatform.push(section),
                _ => {}
            }
        }
    }
    let (dialect, sections) = match (aspnetcore.is_empty(), httpplatform.is_empty()) {
        (true, true) => {
            return Err(missing(
                "section not found (nor system.webServer/httpPlatform): add \
                 <aspNetCore processPath=\"...\" /> inside <configuration><system.webServer>"
                    .into(),
            ))
        }
        (false, ignored_httpplatform) => {
            if !ignored_httpplatform {
                log::warn!(
                    "{source}: both system.webServer/aspNetCore and system.webServer/httpPlatform \
                     are present; using aspNetCore and ignoring httpPlatform"
                );
            }
            (Dialect::AspNetCore, aspnetcore)
        }
        (true, false) => (Dialect::HttpPlatform, httpplatform),
    };
    match sections.as_slice() {
        [one] => Ok((dialect, *one)),
        _ => {
            let name = format!("system.webServer/{}", dialect.section_name());
            Err(ConfigError::new(
                ConfigErrorKind::DuplicateSection,
                source,
                name.clone(),
                None,
                format!("There is a duplicate '{name}' section defined"),
            ))
        }
    }
}

/// Feeds the section's attributes and child collections to the builder, in document order.
fn read_section(
    builder: &mut ConfigBuilder,
    section: Node,
    source: &str,
) -> Result<(), ConfigError> {
    let dialect = builder.dialect();
    let section_name = dialect.section_name();
    for attr in section.attributes() {
        if LOCK_ATTRIBUTES.contains(&attr.name()) && attr.namespace().is_none() {
            continue;
        }
        builder.set(&qualified(&attr), attr.value())?;
    }
    for child in section.children().filter(Node::is_element) {
        let name = child.tag_name().name();
        match name {
            "environmentVariables" => read_collection(builder, child, source)?,
            "handlerSettings" if dialect.has_handler_settings() => {
                read_collection(builder, child, source)?
            }
            // In ANCM's schema, but only the in-process handler uses it.
            "recycleOnFileChange" if dialect == Dialect::AspNetCore => {}
            _ => {
                return Err(ConfigError::new(
                    ConfigErrorKind::UnknownElement,
                    source,
                    format!("{section_name}/{name}"),
                    None,
                    format!("Unrecognized element '{name}'"),
                ))
            }
        }
    }
    Ok(())
}

/// One collection: `<item name value/>` adds, `<remove name/>` removes, `<clear/>` clears.
fn read_collection(
    builder: &mut ConfigBuilder,
    collection: Node,
    source: &str,
) -> Result<(), ConfigError> {
    let section_name = builder.dialect().section_name();
    let collection_name = collection.tag_name().name();
    let env = collection_name == "environmentVariables";
    let item_name = if env {
        "environmentVariable"
    } else {
        "handlerSetting"
    };
    let path = format!("{section_name}/{collection_name}");
    check_attributes(&collection, &[], &path, source)?;

    for item in collection.children().filter(Node::is_element) {
        let tag = item.tag_name().name();
        let item_path = format!("{path}/{tag}");
        if tag == item_name {
            check_attributes(&item, &["name", "value"], &item_path, source)?;
            let name = item.attribute("name").unwrap_or("");
            let Some(value) = item.attribute("value") else {
                let at = if name.is_empty() {
                    format!("{item_path}/@value")
                } else {
                    format!("{item_path}[@name='{name}']/@value")
                };
                return Err(ConfigError::new(
                    ConfigErrorKind::Required,
                    source,
                    at,
                    None,
                    "Attribute 'value' is required.",
                ));
            };
            if env {
                builder.add_environment_variable(name, value)?;
            } else {
                builder.add_handler_setting(name, value)?;
            }
        } else if tag == "remove" {
            check_attributes(&item, &["name"], &item_path, source)?;
            let name = item.attribute("name").unwrap_or("");
            if env {
                builder.remove_environment_variable(name)?;
            } else {
                builder.remove_handler_setting(name)?;
            }
        } else if tag == "clear" {
            check_attributes(&item, &[], &item_path, source)?;
            if env {
                builder.clear_environment_variables()?;
            } else {
                builder.clear_handler_settings()?;
            }
        } else {
            return Err(ConfigError::new(
                ConfigErrorKind::UnknownElement,
                source,
                item_path,
                None,
                format!(
                    "Unrecognized element '{tag}'; this collection takes \
                     <{item_name} name=\"...\" value=\"...\" />, <remove name=\"...\" /> and <clear />"
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses attributes outside `allowed` (and the lock attributes), as IIS does.
fn check_attributes(
    element: &Node,
    allowed: &[&str],
    path: &str,
    source: &str,
) -> Result<(), ConfigError> {
    for attr in element.attributes() {
        let name = attr.name();
        let plain = attr.namespace().is_none();
        if plain && (allowed.contains(&name) || LOCK_ATTRIBUTES.contains(&name)) {
            continue;
        }
        let name = qualified(&attr);
        return Err(ConfigError::new(
            ConfigErrorKind::UnknownAttribute,
            source,
            format!("{path}/@{name}"),
            None,
            format!(
                "Unrecognized attribute '{name}'. Note that attribute names are case-sensitive."
            ),
        ));
    }
    Ok(())
}

/// The attribute's name with its namespace in braces when it has one, so that e.g. an
/// `xdt:Transform` left in a file is reported (and never mistaken for a schema attribute).
fn qualified(attr: &roxmltree::Attribute) -> String {
    match attr.namespace() {
        Some(ns) => format!("{{{ns}}}{}", attr.name()),
        None => attr.name().to_owned(),
    }
}
