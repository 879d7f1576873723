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
            // ANCM's schema: `<file path/>` items (its in-process handler's); here they name the
            // files whose change starts a new generation (docs/configuration.md).
            "recycleOnFileChange" if dialect == Dialect::AspNetCore => {
                let path = format!("{section_name}/recycleOnFileChange");
                check_attributes(&child, &[], &path, source)?;
                for file in child.children().filter(Node::is_element) {
                    let item = format!("{path}/{}", file.tag_name().name());
                    if file.tag_name().name() != "file" {
                        return Err(ConfigError::new(
                            ConfigErrorKind::UnknownElement,
                            source,
                            item,
                            None,
                            "Unrecognized element; this collection takes <file path=\"...\" />",
                        ));
                    }
                    check_attributes(&file, &["path"], &item, source)?;
                    builder.add_recycle_on_file_change(file.attribute("path").unwrap_or(""))?;
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_web_config_str_with_env(text, "web.config", &no_env)
    }

    fn wrap(section: &str) -> String {
        format!("<configuration><system.webServer>{section}</system.webServer></configuration>")
    }

    /// What `dotnet publish` writes.
    const PUBLISHED: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <location path="." inheritInChildApplications="false">
    <system.webServer>
      <handlers>
        <add name="aspNetCore" path="*" verb="*" modules="AspNetCoreModuleV2" resourceType="Unspecified" />
      </handlers>
      <aspNetCore processPath="dotnet" arguments=".\MyApp.dll" stdoutLogEnabled="false" stdoutLogFile=".\logs\stdout" hostingModel="inprocess" />
    </system.webServer>
  </location>
</configuration>
<!--ProjectGuid: 00000000-0000-0000-0000-000000000000-->"#;

    #[test]
    fn published_location_wrapper() {
        let c = parse(PUBLISHED).unwrap();
        assert_eq!(c.dialect, Dialect::AspNetCore);
        assert_eq!(c.process_path, "dotnet");
        assert_eq!(c.arguments, ".\\MyApp.dll");
        assert_eq!(c.stdout_log_file, ".\\logs\\stdout");
        assert_eq!(c.hosting_model, crate::config::HostingModel::InProcess);
        assert_eq!(c.source, "web.config");
    }

    #[test]
    fn location_without_path_applies_other_paths_do_not() {
        let t = r#"<configuration><location><system.webServer>
            <aspNetCore processPath="a" /></system.webServer></location></configuration>"#;
        assert_eq!(parse(t).unwrap().process_path, "a");
        let t = r#"<configuration>
            <location path="sub"><system.webServer><aspNetCore processPath="sub" /></system.webServer></location>
            <system.webServer><aspNetCore processPath="root" /></system.webServer></configuration>"#;
        assert_eq!(parse(t).unwrap().process_path, "root");
        let t = r#"<configuration><location path="sub"><system.webServer>
            <aspNetCore processPath="a" /></system.webServer></location></configuration>"#;
        assert_eq!(parse(t).unwrap_err().kind, ConfigErrorKind::MissingSection);
    }

    #[test]
    fn issue_example_through_web_config() {
        let e = parse(&wrap(
            r#"<aspNetCore processPath="a" startupTimeLimit="9999"/>"#,
        ))
        .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::OutOfRange);
        assert_eq!(
            e.to_string(),
            "web.config: aspNetCore/@startupTimeLimit = \"9999\": must be 0–3600 seconds"
        );
    }

    #[test]
    fn missing_section() {
        for t in [
            "<configuration/>",
            "<configuration><system.webServer><handlers/></system.webServer></configuration>",
            "<configuration><aspNetCore processPath='misplaced'/></configuration>",
        ] {
            let e = parse(t).unwrap_err();
            assert_eq!(e.kind, ConfigErrorKind::MissingSection, "{t}");
            assert_eq!(e.attribute, "system.webServer/aspNetCore");
            assert!(e
                .to_string()
                .starts_with("web.config: system.webServer/aspNetCore: "));
        }
        let e = parse("<settings/>").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::MissingSection);
        assert!(e.rule.contains("<settings>"), "{}", e.rule);
    }

    #[test]
    fn malformed_xml_has_line_and_column() {
        let e = parse("<configuration>\n  <system.webServer>\n</configuration>").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::MalformedXml);
        let s = e.to_string();
        assert!(s.starts_with("web.config: malformed XML: "), "{s}");
        assert!(s.contains(" at 3:"), "{s}");
        assert_eq!(parse("").unwrap_err().kind, ConfigErrorKind::MalformedXml);
        // No DTDs: no entity-expansion tricks.
        let dtd = "<!DOCTYPE c [<!ENTITY e 'x'>]><configuration/>";
        assert_eq!(parse(dtd).unwrap_err().kind, ConfigErrorKind::MalformedXml);
    }

    #[test]
    fn namespaced_configuration_root_is_fine() {
        let t = r#"<configuration xmlns="http://schemas.microsoft.com/.NetConfiguration/v2.0">
            <system.webServer><aspNetCore processPath="a"/></system.webServer></configuration>"#;
        assert_eq!(parse(t).unwrap().process_path, "a");
    }

    #[test]
    fn httpplatform_dialect() {
        let c = parse(&wrap(
            r#"<httpPlatform processPath="node.exe" arguments="app.js --port %HTTP_PLATFORM_PORT%"
                 startupRetryCount="3">
                 <environmentVariables><environmentVariable name="NODE_ENV" value="production"/></environmentVariables>
               </httpPlatform>"#,
        ))
        .unwrap();
        assert_eq!(c.dialect, Dialect::HttpPlatform);
        assert_eq!(c.arguments, "app.js --port %HTTP_PLATFORM_PORT%");
        assert_eq!(c.startup_attempts, 3);
        assert_eq!(c.startup_time_limit, Duration::from_secs(10));
        assert!(!c.forward_windows_auth_token);
        assert_eq!(c.stdout_log_file, ".\\httpplatform-stdout");
        assert_eq!(c.environment_variable("node_env"), Some("production"));

        let e = parse(&wrap(
            r#"<httpPlatform processPath="a"><handlerSettings/></httpPlatform>"#,
        ))
        .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownElement);
        assert_eq!(e.attribute, "httpPlatform/handlerSettings");
        let e = parse(&wrap(
            r#"<httpPlatform processPath="a"><recycleOnFileChange/></httpPlatform>"#,
        ))
        .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownElement);
    }

    #[test]
    fn aspnetcore_wins_over_httpplatform() {
        let c = parse(&wrap(
            r#"<httpPlatform processPath="old"/><aspNetCore processPath="new"/>"#,
        ))
        .unwrap();
        assert_eq!(
            (c.dialect, c.process_path.as_str()),
            (Dialect::AspNetCore, "new")
        );
    }

    #[test]
    fn duplicate_section() {
        let t = r#"<configuration>
            <system.webServer><aspNetCore processPath="a"/></system.webServer>
            <location path="."><system.webServer><aspNetCore processPath="b"/></system.webServer></location>
            </configuration>"#;
        let e = parse(t).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::DuplicateSection);
        assert_eq!(
            e.to_string(),
            "web.config: system.webServer/aspNetCore: There is a duplicate \
             'system.webServer/aspNetCore' section defined"
        );
    }

    #[test]
    fn unknown_attributes_and_elements() {
        let e = parse(&wrap(
            r#"<aspNetCore processPath="a" startuptimelimit="1"/>"#,
        ))
        .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownAttribute);
        assert_eq!(e.attribute, "aspNetCore/@startuptimelimit");
        let e = parse(&wrap(
            r#"<aspNetCore xmlns:xdt="urn:x" processPath="a" xdt:Transform="x"/>"#,
        ))
        .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownAttribute);
        assert_eq!(e.attribute, "aspNetCore/@{urn:x}Transform");
        let e = parse(&wrap(r#"<aspNetCore processPath="a"><foo/></aspNetCore>"#)).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownElement);
        assert_eq!(
            e.to_string(),
            "web.config: aspNetCore/foo: Unrecognized element 'foo'"
        );
        let e = parse(&wrap(
            r#"<aspNetCore processPath="a"><environmentVariables><add name="A" value="1"/></environmentVariables></aspNetCore>"#,
        ))
        .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownElement);
        assert_eq!(e.attribute, "aspNetCore/environmentVariables/add");
        assert!(e.rule.contains("<environmentVariable name="), "{}", e.rule);
        let e = parse(&wrap(
            r#"<aspNetCore processPath="a"><handlerSettings><handlerSetting name="A" value="1" extra="x"/></handlerSettings></aspNetCore>"#,
        ))
        .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownAttribute);
        assert_eq!(
            e.attribute,
            "aspNetCore/handlerSettings/handlerSetting/@extra"
        );
    }

    #[test]
    fn accepted_and_ignored() {
        let c = parse(&wrap(
            r#"<aspNetCore processPath="a" lockAttributes="processPath">
                 <!-- a comment -->
                 <recycleOnFileChange><file path="x.dll"/></recycleOnFileChange>
                 <environmentVariables lockItem="true"/>
               </aspNetCore>"#,
        ))
        .unwrap();
        assert_eq!(c.process_path, "a");
        assert_eq!(c.deploy.recycle_on_file_change, ["x.dll"]);
        let e = parse(&wrap(
            r#"<aspNetCore processPath="a"><recycleOnFileChange><dir path="x"/></recycleOnFileChange></aspNetCore>"#,
        ))
        .unwrap_err();
        assert_eq!(e.attribute, "aspNetCore/recycleOnFileChange/dir");
    }

    #[test]
    fn collections_in_document_order() {
        let c = Config::from_web_config_str_with_env(
            &wrap(
                r#"<aspNetCore processPath="a">
                  <environmentVariables>
                    <environmentVariable name="GONE" value="1"/>
                    <clear/>
                    <environmentVariable name="A" value="%TestVariable%;Hello"/>
                    <environmentVariable name="B" value="2"/>
                    <remove name="b"/>
                    <environmentVariable name="ASPNETCORE_PORT" value="5000"/>
                  </environmentVariables>
                  <handlerSettings>
                    <handlerSetting name="debugLevel" value="FILE,TRACE"/>
                  </handlerSettings>
                </aspNetCore>"#,
            ),
            "web.config",
            &|n| (n == "TestVariable").then(|| "World".to_owned()),
        )
        .unwrap();
        assert_eq!(
            c.environment_variables,
            vec![
                ("A".to_owned(), "World;Hello".to_owned()),
                ("ASPNETCORE_PORT".to_owned(), "5000".to_owned())
            ]
        );
        assert_eq!(c.handler_setting("debuglevel"), Some("FILE,TRACE"));
        assert_eq!(c.configured_port(), Some(Ok(5000)));
    }

    #[test]
    fn collection_entry_errors() {
        let env = |items: &str| {
            parse(&wrap(&format!(
                r#"<aspNetCore processPath="a"><environmentVariables>{items}</environmentVariables></aspNetCore>"#
            )))
            .unwrap_err()
        };
        let e = env(r#"<environmentVariable value="1"/>"#);
        assert_eq!(e.kind, ConfigErrorKind::Required);
        assert_eq!(
            e.to_string(),
            "web.config: aspNetCore/environmentVariables/environmentVariable/@name: Attribute 'name' is required."
        );
        let e = env(r#"<environmentVariable name="X"/>"#);
        assert_eq!(e.kind, ConfigErrorKind::Required);
        assert_eq!(
            e.attribute,
            "aspNetCore/environmentVariables/environmentVariable[@name='X']/@value"
        );
        let e = env(
            r#"<environmentVariable name="X" value="1"/><environmentVariable name="x" value="2"/>"#,
        );
        assert_eq!(e.kind, ConfigErrorKind::DuplicateEntry);
        let e = env(r#"<remove/>"#);
        assert_eq!(e.kind, ConfigErrorKind::Required);
        // An empty value is a value.
        let c = parse(&wrap(
            r#"<aspNetCore processPath="a"><environmentVariables><environmentVariable name="E" value=""/></environmentVariables></aspNetCore>"#,
        ))
        .unwrap();
        assert_eq!(c.environment_variable("E"), Some(""));
    }

    #[test]
    fn attribute_value_errors_keep_their_kind() {
        let one = |attr: &str| {
            parse(&wrap(&format!(r#"<aspNetCore processPath="a" {attr}/>"#))).unwrap_err()
        };
        assert_eq!(
            one(r#"stdoutLogEnabled="yes""#).kind,
            ConfigErrorKind::InvalidValue
        );
        assert_eq!(
            one(r#"shutdownTimeLimit="x""#).kind,
            ConfigErrorKind::InvalidValue
        );
        assert_eq!(
            one(r#"requestTimeout="120""#).kind,
            ConfigErrorKind::InvalidValue
        );
        assert_eq!(
            one(r#"hostingModel="both""#).kind,
            ConfigErrorKind::InvalidValue
        );
        assert_eq!(
            one(r#"processesPerApplication="0""#).kind,
            ConfigErrorKind::OutOfRange
        );
        let e = parse(&wrap(r#"<aspNetCore arguments="x"/>"#)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "web.config: aspNetCore/@processPath: Attribute 'processPath' is required."
        );
    }

    #[test]
    fn entities_are_decoded() {
        let c = parse(&wrap(
            r#"<aspNetCore processPath="a" arguments="&quot;x y&quot; &amp; z"/>"#,
        ))
        .unwrap();
        assert_eq!(c.arguments, "\"x y\" & z");
    }

    fn encodings_of(text: &str) -> Vec<Vec<u8>> {
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        vec![
            text.as_bytes().to_vec(),
            [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat(),
            [&[0xFF, 0xFE][..], &le].concat(),
            [&[0xFE, 0xFF][..], &be].concat(),
            le,
            be,
        ]
    }

    #[test]
    fn file_encodings() {
        let text = wrap(r#"<aspNetCore processPath="C:\Apps\Café\app.exe"/>"#);
        for bytes in encodings_of(&text) {
            let decoded = decode(&bytes, "web.config").unwrap();
            assert_eq!(
                parse(&decoded).unwrap().process_path,
                "C:\\Apps\\Café\\app.exe"
            );
        }
        // A BOM left in a string is tolerated too.
        assert!(parse(&format!("\u{feff}{text}")).is_ok());
    }

    #[test]
    fn bad_encodings_are_errors() {
        let e = decode(b"<configuration>\xff</configuration>", "web.config").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidEncoding);
        assert_eq!(
            e.to_string(),
            "web.config: not valid UTF-8: invalid byte at offset 15; save the file as UTF-8"
        );
        let e = decode(&[0xFF, 0xFE, b'<', 0, 0], "web.config").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidEncoding);
        let e = decode(&[0xFF, 0xFE, 0x00, 0xD8, b'<', 0], "web.config").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidEncoding);
        assert!(e.rule.contains("offset 2"), "{}", e.rule);
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ancm-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn from_file() {
        let dir = temp_dir("file");
        let path = dir.join("web.config");
        std::fs::write(&path, encodings_of(PUBLISHED).swap_remove(2)).unwrap();
        let c = Config::from_web_config_file_with_env(&path, &no_env).unwrap();
        assert_eq!(c.process_path, "dotnet");
        assert_eq!(c.source, path.display().to_string());

        std::fs::write(
            &path,
            wrap(r#"<aspNetCore processPath="a" requestTimeout="x"/>"#),
        )
        .unwrap();
        let e = Config::from_web_config_file(&path).unwrap_err();
        assert!(e
            .to_string()
            .starts_with(&format!("{}: aspNetCore/@requestTimeout", path.display())));

        std::fs::write(&path, b"\xc3\x28").unwrap();
        let e = Config::from_web_config_file(&path).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidEncoding);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_file_is_io_error() {
        let path = Path::new("no/such/dir/web.config");
        let e = Config::from_web_config_file(path).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::Io);
        let s = e.to_string();
        assert!(
            s.starts_with("no/such/dir/web.config: cannot read the file: "),
            "{s}"
        );
        assert_eq!(s.lines().count(), 1);
    }
}
