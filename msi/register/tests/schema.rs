//! The IIS schema file the MSI installs must declare the `aspNetCore` section exactly as the engine
//! reads it: every attribute of the engine's table (`ancm_core::config::attributes`), with the same
//! type, default and range, and no attribute the engine would reject as unrecognized.

use ancm_core::config::{attributes, AttributeKind, Dialect};
use roxmltree::{Document, Node};

const SCHEMA: &str = include_str!("../../schema/aspnetcore_rs_schema.xml");

fn section<'a, 'i>(doc: &'a Document<'i>) -> Node<'a, 'i> {
    assert_eq!(doc.root_element().tag_name().name(), "configSchema");
    let sections: Vec<_> = doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("sectionSchema"))
        .collect();
    assert_eq!(sections.len(), 1);
    assert_eq!(
        sections[0].attribute("name"),
        Some("system.webServer/aspNetCore")
    );
    sections[0]
}

#[test]
fn schema_declares_every_attribute_the_engine_reads() {
    let doc = Document::parse(SCHEMA).expect("the schema parses as XML");
    let section = section(&doc);
    let declared: Vec<Node<'_, '_>> = section
        .children()
        .filter(|n| n.has_tag_name("attribute"))
        .collect();
    let engine = attributes(Dialect::AspNetCore);

    for spec in engine {
        let found: Vec<_> = declared
            .iter()
            .filter(|n| n.attribute("name") == Some(spec.name))
            .collect();
        assert_eq!(found.len(), 1, "{} declared once", spec.name);
        let a = found[0];
        let ty = a.attribute("type");
        let validation = (
            a.attribute("validationType"),
            a.attribute("validationParameter"),
        );
        let expanded = a.attribute("expanded") == Some("true");
        match spec.kind {
            AttributeKind::String | AttributeKind::HostingModel => {
                assert_eq!(ty, Some("string"), "{}", spec.name);
                assert!(!expanded, "{}", spec.name);
            }
            AttributeKind::ExpandedString => {
                assert_eq!(ty, Some("string"), "{}", spec.name);
                assert!(expanded, "{} is %VAR%-expanded", spec.name);
            }
            AttributeKind::UInt { min, max, .. } => {
                assert_eq!(ty, Some("uint"), "{}", spec.name);
                let range = format!("{min},{max}");
                assert_eq!(
                    validation,
                    (Some("integerRange"), Some(range.as_str())),
                    "{}",
                    spec.name
                );
            }
            AttributeKind::Bool => assert_eq!(ty, Some("bool"), "{}", spec.name),
            AttributeKind::TimeSpan { max_seconds } => {
                assert_eq!(ty, Some("timeSpan"), "{}", spec.name);
                let range = format!("0,{max_seconds},1");
                assert_eq!(
                    validation,
                    (Some("timeSpanRange"), Some(range.as_str())),
                    "{}",
                    spec.name
                );
            }
        }
        // IIS's implicit default of a string is "", so an absent defaultValue equals "".
        let default = a.attribute("defaultValue");
        match spec.default {
            None => assert_eq!(default, None, "{} is required, no default", spec.name),
            Some("") => assert!(matches!(default, None | Some("")), "{}", spec.name),
            Some(value) => assert_eq!(default, Some(value), "{}", spec.name),
        }
    }
    for a in &declared {
        let name = a.attribute("name").unwrap_or_default();
        assert!(
            engine.iter().any(|spec| spec.name == name),
            "schema declares {name}, which the engine would reject as unrecognized"
        );
    }
}

#[test]
fn schema_declares_the_collections() {
    let doc = Document::parse(SCHEMA).unwrap();
    let section = section(&doc);
    for (element, add, keyed) in [
        ("environmentVariables", "environmentVariable", true),
        ("handlerSettings", "handlerSetting", true),
        ("recycleOnFileChange", "file", false),
    ] {
        let el = section
            .children()
            .find(|n| n.has_tag_name("element") && n.attribute("name") == Some(element))
            .unwrap_or_else(|| panic!("element {element}"));
        let collection = el
            .children()
            .find(|n| n.has_tag_name("collection"))
            .unwrap_or_else(|| panic!("{element} collection"));
        assert_eq!(collection.attribute("addElement"), Some(add));
        assert_eq!(collection.attribute("clearElement"), Some("clear"));
        let attrs: Vec<_> = collection
            .children()
            .filter(|n| n.has_tag_name("attribute"))
            .collect();
        if keyed {
            assert_eq!(collection.attribute("removeElement"), Some("remove"));
            let name = attrs
                .iter()
                .find(|n| n.attribute("name") == Some("name"))
                .unwrap();
            assert_eq!(name.attribute("isUniqueKey"), Some("true"), "{element}");
            assert_eq!(name.attribute("required"), Some("true"), "{element}");
            let value = attrs
                .iter()
                .find(|n| n.attribute("name") == Some("value"))
                .unwrap();
            assert_eq!(value.attribute("required"), Some("true"), "{element}");
        } else {
            assert_eq!(attrs[0].attribute("name"), Some("path"));
        }
    }
}
