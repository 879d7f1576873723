//! The `applicationHost.config` edits as pure text-to-text functions.
//!
//! The file is parsed with roxmltree only to find byte positions; the edit itself splices text into
//! (or cuts text out of) the original string. Every byte outside the spliced ranges is kept, so
//! comments, attribute order, quoting, indentation and line endings written by IIS or by an
//! administrator survive, and `uninstall(install(x)) == x` byte for byte. A serialising XML writer
//! could promise none of that.

use roxmltree::{Document, Node};
use std::fmt;
use std::ops::Range;

/// The module's name in `globalModules` and `modules`; web.config handlers refer to it in
/// `modules="AspNetCoreModuleRs"`. Distinct from Microsoft's `AspNetCoreModuleV2` so both coexist.
pub const MODULE_NAME: &str = "AspNetCoreModuleRs";

/// The configuration section the module reads, under the `system.webServer` section group.
pub const SECTION_NAME: &str = "aspNetCore";

/// The DLL path written into `globalModules` when none is given: where the MSI installs it,
/// written with `%windir%` as IIS writes its own modules' paths.
pub const DEFAULT_IMAGE: &str = r"%windir%\System32\inetsrv\aspnetcore_rs.dll";

/// Global module names of Microsoft's ANCM (V1 and V2). While one is registered, its section
/// declaration is needed by it, so uninstall leaves the `aspNetCore` section in place.
const MICROSOFT_MODULES: [&str; 2] = ["AspNetCoreModuleV2", "AspNetCoreModule"];

/// The file's content could not be understood as an `applicationHost.config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError {
    /// What was wrong, phrased for an administrator (no file name: the caller adds it).
    pub message: String,
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EditError {}

fn err<T>(message: impl Into<String>) -> Result<T, EditError> {
    Err(EditError {
        message: message.into(),
    })
}

/// The result of [`install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOutcome {
    /// The new file content (equal to the input when nothing had to change).
    pub text: String,
    /// What was added or changed, in file order (empty when already installed).
    pub changes: Vec<String>,
    /// Whether this call inserted the `aspNetCore` section declaration. False when it was
    /// already declared (by Microsoft's ANCM, or by an earlier install).
    pub section_added: bool,
}

/// The result of [`uninstall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallOutcome {
    /// The new file content (equal to the input when nothing was registered).
    pub text: String,
    /// What was removed, in file order (empty when nothing of ours was there).
    pub changes: Vec<String>,
    /// True when the section declaration was ours but was kept because Microsoft's ANCM is
    /// registered now and needs it.
    pub section_kept_for_microsoft: bool,
}

/// One splice: replace `range` of the original text with `with`.
struct Edit {
    range: Range<usize>,
    with: String,
}

/// Adds the global module (image `image`), the module entry at the root location and, unless it is
/// already declared, the `aspNetCore` section declaration. Idempotent: entries already present are
/// left alone, except a global module whose image differs, which is re-pointed to `image`.
pub fn install(text: &str, image: &str) -> Result<InstallOutcome, EditError> {
    let (offset, doc) = parse(text)?;
    let root = doc.root_element();
    let nl = newline(text);
    let mut edits = Vec::new();
    let mut changes = Vec::new();

    // configSections/sectionGroup[@name='system.webServer']/section[@name='aspNetCore']
    let group = section_group(root)?;
    let section_added = if named(group, "section", SECTION_NAME).next().is_some() {
        false
    } else {
        let element = format!(r#"<section name="{SECTION_NAME}" overrideModeDefault="Allow" />"#);
        edits.push(append_child(text, offset, group, &element, nl)?);
        changes.push(format!("section system.webServer/{SECTION_NAME}"));
        true
    };

    // system.webServer/globalModules/add[@name='AspNetCoreModuleRs']
    let global = global_modules(root)?;
    let image_attr = escape_attr(image);
    match named(global, "add", MODULE_NAME).next() {
        None => {
            // bitness64: the DLL is x64 only; a 32-bit application pool must not try to load it
            // (it would fail to start every site in that pool).
            let element = format!(
                r#"<add name="{MODULE_NAME}" image="{image_attr}" preCondition="bitness64" />"#
            );
            edits.push(append_child(text, offset, global, &element, nl)?);
            changes.push(format!("globalModules/add {MODULE_NAME} image={image}"));
        }
        Some(existing) => match existing.attribute_node("image") {
            Some(attr) if attr.value() == image => {}
            Some(attr) => {
                edits.push(Edit {
                    range: shift(attr.range_value(), offset),
                    with: image_attr,
                });
                changes.push(format!(
                    "globalModules/add {MODULE_NAME} image {} -> {image}",
                    attr.value()
                ));
            }
            None => {
                return err(format!(
                    "globalModules/add[@name='{MODULE_NAME}'] has no image attribute; remove that entry and install again"
                ))
            }
        },
    }

    // location[@path='']/system.webServer/modules/add[@name='AspNetCoreModuleRs']
    let modules = root_modules(root)?;
    if named(modules, "add", MODULE_NAME).next().is_none() {
        let element = format!(r#"<add name="{MODULE_NAME}" preCondition="bitness64" />"#);
        edits.push(append_child(text, offset, modules, &element, nl)?);
        changes.push(format!("modules/add {MODULE_NAME}"));
    }

    Ok(InstallOutcome {
        text: splice(text, edits),
        changes,
        section_added,
    })
}

/// Removes what [`install`] added: every `globalModules` and root `modules` entry named
/// [`MODULE_NAME`], and the section declaration when `remove_section` says install added it, unless
/// Microsoft's ANCM is registered now (it needs the declaration). Missing entries are not an error:
/// uninstalling twice, or without an install, changes nothing.
pub fn uninstall(text: &str, remove_section: bool) -> Result<UninstallOutcome, EditError> {
    let (offset, doc) = parse(text)?;
    let root = doc.root_element();
    let mut edits = Vec::new();
    let mut changes = Vec::new();
    let mut section_kept_for_microsoft = false;

    if let Ok(group) = section_group(root) {
        if remove_section {
            let microsoft = global_modules(root).ok().is_some_and(|g| {
                MICROSOFT_MODULES
                    .iter()
                    .any(|name| named(g, "add", name).next().is_some())
            });
            for node in named(group, "section", SECTION_NAME) {
                if microsoft {
                    section_kept_for_microsoft = true;
                } else {
                    edits.push(removal(text, offset, node));
                    changes.push(format!("section system.webServer/{SECTION_NAME}"));
                }
            }
        }
    }
    if let Ok(global) = global_modules(root) {
        for node in named(global, "add", MODULE_NAME) {
            edits.push(removal(text, offset, node));
            changes.push(format!("globalModules/add {MODULE_NAME}"));
        }
    }
    // Both places a module list can live, so an entry an administrator moved is removed too.
    for modules in module_lists(root) {
        for node in named(modules, "add", MODULE_NAME) {
            edits.push(removal(text, offset, node));
            changes.push(format!("modules/add {MODULE_NAME}"));
        }
    }

    Ok(UninstallOutcome {
        text: splice(text, edits),
        changes,
        section_kept_for_microsoft,
    })
}

/// Whether the file declares the `aspNetCore` section (with or without us).
pub fn section_declared(text: &str) -> Result<bool, EditError> {
    let (_, doc) = parse(text)?;
    let group = section_group(doc.root_element())?;
    let declared = named(group, "section", SECTION_NAME).next().is_some();
    Ok(declared)
}

/// Parses the text, skipping a UTF-8 byte order mark; returns the BOM's length (to add to every
/// position roxmltree reports) and the document.
fn parse(text: &str) -> Result<(usize, Document<'_>), EditError> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let offset = text.len() - body.len();
    let doc = match Document::parse(body) {
        Ok(doc) => doc,
        Err(e) => return err(format!("malformed XML: {e}")),
    };
    if doc.root_element().tag_name().name() != "configuration" {
        return err(format!(
            "the root element is <{}>, not <configuration>",
            doc.root_element().tag_name().name()
        ));
    }
    Ok((offset, doc))
}

fn section_group<'a, 'i>(root: Node<'a, 'i>) -> Result<Node<'a, 'i>, EditError> {
    let Some(sections) = child(root, "configSections") else {
        return err("no <configSections> under <configuration>");
    };
    match named(sections, "sectionGroup", "system.webServer").next() {
        Some(group) => Ok(group),
        None => err(r#"no <sectionGroup name="system.webServer"> under <configSections>"#),
    }
}

fn global_modules<'a, 'i>(root: Node<'a, 'i>) -> Result<Node<'a, 'i>, EditError> {
    let Some(web) = child(root, "system.webServer") else {
        return err("no <system.webServer> under <configuration>");
    };
    match child(web, "globalModules") {
        Some(global) => Ok(global),
        None => err("no <globalModules> under <configuration><system.webServer>"),
    }
}

/// The module lists that apply to every site: `<location path="">` (where IIS keeps its own
/// modules, so they can be locked) first, then the top-level `system.webServer`.
fn module_lists<'a, 'i>(root: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    let root_locations = root
        .children()
        .filter(|n| n.has_tag_name("location") && n.attribute("path").unwrap_or("").is_empty());
    root_locations
        .chain(std::iter::once(root))
        .filter_map(|n| child(n, "system.webServer"))
        .filter_map(|web| child(web, "modules"))
        .collect()
}

fn root_modules<'a, 'i>(root: Node<'a, 'i>) -> Result<Node<'a, 'i>, EditError> {
    match module_lists(root).into_iter().next() {
        Some(modules) => Ok(modules),
        None => err(
            r#"no <modules> under <location path=""><system.webServer> nor under <configuration><system.webServer>"#,
        ),
    }
}

fn child<'a, 'i>(node: Node<'a, 'i>, tag: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name(tag))
}

/// Element children `<tag name="name">`; names compare case-insensitively, as IIS compares
/// collection keys.
fn named<'a, 'i: 'a>(
    node: Node<'a, 'i>,
    tag: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children().filter(move |n| {
        n.has_tag_name(tag)
            && n.attribute("name")
                .is_some_and(|v| v.eq_ignore_ascii_case(name))
    })
}

/// An edit inserting `element` as the container's last element child, on its own line, indented
/// like the child before it. The inserted text is exactly `newline + indent + element`, which is
/// what [`removal`] takes out again.
fn append_child(
    text: &str,
    offset: usize,
    container: Node<'_, '_>,
    element: &str,
    nl: &str,
) -> Result<Edit, EditError> {
    let Some(last) = container.children().rfind(|n| n.is_element()) else {
        // Real files always list IIS's own sections and modules here; an empty list means the
        // file is not what this tool expects, and guessing its layout would risk the byte-exact
        // uninstall.
        return err(format!(
            "<{}> has no entries; expected IIS's own entries there",
            container.tag_name().name()
        ));
    };
    let last_range = shift(last.range(), offset);
    let indent = match line_indent(text, last_range.start) {
        Some(indent) => indent.to_string(),
        None => {
            let outer = line_indent(text, shift(container.range(), offset).start).unwrap_or("");
            format!("{outer}    ")
        }
    };
    Ok(Edit {
        range: last_range.end..last_range.end,
        with: format!("{nl}{indent}{element}"),
    })
}

/// The range to cut to remove `node`: the element plus, when it starts its own line, the line
/// break and indentation before it.
fn removal(text: &str, offset: usize, node: Node<'_, '_>) -> Edit {
    let range = shift(node.range(), offset);
    let bytes = text.as_bytes();
    let mut start = range.start;
    while start > 0 && matches!(bytes[start - 1], b' ' | b'\t') {
        start -= 1;
    }
    if start > 0 && bytes[start - 1] == b'\n' {
        start -= 1;
        if start > 0 && bytes[start - 1] == b'\r' {
            start -= 1;
        }
    }
    // Otherwise the element shares its line: cut only it and the blanks right before it.
    Edit {
        range: start..range.end,
        with: String::new(),
    }
}

/// The blanks between the start of the line and `pos`, if nothing else precedes `pos` there.
fn line_indent(text: &str, pos: usize) -> Option<&str> {
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let indent = &text[line_start..pos];
    indent
        .bytes()
        .all(|b| b == b' ' || b == b'\t')
        .then_some(indent)
}

/// The file's line ending: IIS writes CRLF; keep LF files LF.
fn newline(text: &str) -> &'static str {
    if text.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

fn shift(range: Range<usize>, offset: usize) -> Range<usize> {
    range.start + offset..range.end + offset
}

/// Applies non-overlapping edits, last first so earlier positions stay valid.
fn splice(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| std::cmp::Reverse(e.range.start));
    let mut out = text.to_string();
    for edit in edits {
        out.replace_range(edit.range, &edit.with);
    }
    out
}

/// Escapes a value for a double-quoted XML attribute.
fn escape_attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_attribute_values() {
        assert_eq!(
            escape_attr(r#"C:\a&b\"x"<y>"#),
            r#"C:\a&amp;b\&quot;x&quot;&lt;y&gt;"#
        );
    }

    #[test]
    fn removal_takes_the_line_break_before() {
        let text = "<configuration>\r\n  <a />\r\n  <b />\r\n</configuration>";
        let doc = Document::parse(text).unwrap();
        let b = doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name("b"))
            .unwrap();
        let edit = removal(text, 0, b);
        assert_eq!(&text[edit.range], "\r\n  <b />");
    }
}
