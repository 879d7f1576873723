//! The registration edits on realistic applicationHost.config files: the one IIS writes on a fresh
//! install, and the same after Microsoft's ASP.NET Core Hosting Bundle registered ANCM V2.

use ancm_register::{edit, install, uninstall, ErrorKind, Paths, SCHEMA_FILE};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const IIS_DEFAULT: &str = include_str!("data/iis-default.config");
const IIS_WITH_MICROSOFT: &str = include_str!("data/iis-with-microsoft-ancm.config");

/// The schema file the MSI ships.
fn schema_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/aspnetcore_rs_schema.xml")
}

/// A fresh directory per test, holding a copy of the configuration and an IIS schema directory
/// (with Microsoft's schema file when the configuration registers Microsoft's ANCM).
fn scratch(test: &str, content: &str) -> Paths {
    let dir = std::env::temp_dir().join(format!("ancm-register-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("schema")).unwrap();
    let config = dir.join("applicationHost.config");
    fs::write(&config, content).unwrap();
    if content.contains("AspNetCoreModuleV2") {
        fs::write(dir.join("schema").join(MS_SCHEMA), "<configSchema />").unwrap();
    }
    let mut paths = Paths::beside(config);
    paths.schema_source = Some(schema_source());
    paths
}

const MS_SCHEMA: &str = "aspnetcore_schema_v2.xml";

/// The schema directory's file names, sorted.
fn schema_files(paths: &Paths) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(&paths.schema_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

const GLOBAL: &str = r#"<add name="AspNetCoreModuleRs" image="%windir%\System32\inetsrv\aspnetcore_rs.dll" preCondition="bitness64" />"#;
const MODULE: &str = r#"<add name="AspNetCoreModuleRs" preCondition="bitness64" />"#;
const SECTION: &str = r#"<section name="aspNetCore" overrideModeDefault="Allow" />"#;

#[test]
fn install_adds_the_three_entries_where_iis_keeps_them() {
    let paths = scratch("adds", IIS_DEFAULT);
    let report = install(&paths, edit::DEFAULT_IMAGE, None).unwrap();
    assert!(report.changed);
    assert_eq!(report.changes.len(), 4, "{:?}", report.changes);
    assert_eq!(
        fs::read(paths.schema_dir.join(SCHEMA_FILE)).unwrap(),
        fs::read(schema_source()).unwrap()
    );
    let text = read(&paths.config);
    // Each entry on its own CRLF line, indented like its siblings.
    assert_eq!(count(&text, &format!("\r\n            {SECTION}\r\n")), 1);
    assert_eq!(
        count(
            &text,
            &format!("\r\n            {GLOBAL}\r\n        </globalModules>")
        ),
        1
    );
    assert_eq!(
        count(
            &text,
            &format!("\r\n                {MODULE}\r\n            </modules>")
        ),
        1
    );
    // The section is a direct child of the system.webServer group, not of a nested one.
    let doc = roxmltree::Document::parse(&text).unwrap();
    let section = doc
        .descendants()
        .find(|n| n.has_tag_name("section") && n.attribute("name") == Some("aspNetCore"))
        .unwrap();
    assert_eq!(
        section.parent().unwrap().attribute("name"),
        Some("system.webServer")
    );
    // Nothing else changed: removing the inserted lines gives the original back.
    let stripped = text
        .replace(&format!("\r\n            {SECTION}"), "")
        .replace(&format!("\r\n            {GLOBAL}"), "")
        .replace(&format!("\r\n                {MODULE}"), "");
    assert_eq!(stripped, IIS_DEFAULT);
    assert_eq!(
        read(&paths.backup),
        IIS_DEFAULT,
        "backup is the file before the write"
    );
    assert!(!paths.temp.exists(), "no temporary file left behind");
    assert!(read(&paths.state).contains("section_added=true"));
    assert!(read(&paths.state).contains("schema_added=true"));
}

#[test]
fn install_then_uninstall_is_byte_identical() {
    let bom = format!("\u{feff}{IIS_DEFAULT}");
    let lf = IIS_DEFAULT.replace("\r\n", "\n");
    for (name, original) in [
        ("default", IIS_DEFAULT),
        ("microsoft", IIS_WITH_MICROSOFT),
        ("bom", bom.as_str()),
        ("lf", lf.as_str()),
    ] {
        let paths = scratch(&format!("roundtrip-{name}"), original);
        install(&paths, edit::DEFAULT_IMAGE, None).unwrap();
        assert_ne!(read(&paths.config), original, "{name}");
        let report = uninstall(&paths, None).unwrap();
        assert!(report.changed, "{name}");
        assert_eq!(
            fs::read(&paths.config).unwrap(),
            original.as_bytes(),
            "{name}"
        );
        assert!(!paths.state.exists(), "{name}: state file removed");
    }
}

#[test]
fn installing_twice_is_installing_once() {
    let paths = scratch("twice", IIS_DEFAULT);
    install(&paths, edit::DEFAULT_IMAGE, None).unwrap();
    let once = read(&paths.config);
    let report = install(&paths, edit::DEFAULT_IMAGE, None).unwrap();
    assert!(!report.changed);
    assert!(report.changes.is_empty());
    assert_eq!(read(&paths.config), once);
    // The second run must not forget that the section is ours.
    assert!(read(&paths.state).contains("section_added=true"));
    uninstall(&paths, None).unwrap();
    assert_eq!(read(&paths.config), IIS_DEFAULT);
}

#[test]
fn uninstall_when_not_installed_changes_nothing() {
    for (name, original) in [("default", IIS_DEFAULT), ("microsoft", IIS_WITH_MICROSOFT)] {
        let paths = scratch(&format!("not-installed-{name}"), original);
        let report = uninstall(&paths, None).unwrap();
        assert!(!report.changed, "{name}");
        assert!(report.changes.is_empty(), "{name}");
        assert_eq!(read(&paths.config), original, "{name}");
        assert!(!paths.backup.exists(), "{name}: no write, no backup");
        // And twice after an install.
        install(&paths, edit::DEFAULT_IMAGE, None).unwrap();
        uninstall(&paths, None).unwrap();
        assert!(!uninstall(&paths, None).unwrap().changed, "{name}");
        assert_eq!(read(&paths.config), original, "{name}");
    }
}

#[test]
fn microsofts_section_is_used_and_left_alone() {
    let paths = scratch("microsoft", IIS_WITH_MICROSOFT);
    let report = install(&paths, edit::DEFAULT_IMAGE, None).unwrap();
    assert_eq!(report.changes.len(), 2, "{:?}", report.changes);
    assert!(
        report.notes[0].contains("already declared"),
        "{:?}",
        report.notes
    );
    let text = read(&paths.config);
    assert_eq!(count(&text, r#"<section name="aspNetCore""#), 1);
    assert_eq!(
        count(&text, "AspNetCoreModuleV2"),
        2,
        "Microsoft's module untouched"
    );
    assert!(read(&paths.state).contains("section_added=false"));
    uninstall(&paths, None).unwrap();
    assert_eq!(read(&paths.config), IIS_WITH_MICROSOFT);
    assert_eq!(schema_files(&paths), [MS_SCHEMA]);
}

#[test]
fn reinstall_after_microsofts_hosting_bundle_removes_our_schema() {
    let paths = scratch("microsoft-schema-later", IIS_DEFAULT);
    install(&paths, edit::DEFAULT_IMAGE, None).unwrap();
    assert_eq!(schema_files(&paths), [SCHEMA_FILE]);
    fs::write(paths.schema_dir.join(MS_SCHEMA), "<configSchema />").unwrap();
    // What an MSI repair does: run install again.
    let report = install(&paths, edit::DEFAULT_IMAGE, None).unwrap();
    assert!(
        report.notes.iter().any(|n| n.contains("removed")),
        "{:?}",
        report.notes
    );
    assert_eq!(schema_files(&paths), [MS_SCHEMA]);
    assert!(read(&paths.state).contains("schema_added=false"));
    uninstall(&paths, None).unwrap();
    assert_eq!(
        schema_files(&paths),
        [MS_SCHEMA],
        "Microsoft's schema is not ours to remove"
    );
}

#[test]
fn our_section_stays_when_microsoft_registered_after_us() {
    let paths = scratch("microsoft-later", IIS_DEFAULT);
    install(&paths, edit::DEFAULT_IMAGE, None).unwrap();
    // Microsoft's installer then finds the section declared and adds only its module.
    let ms_global = r#"<add name="AspNetCoreModuleV2" image="%ProgramFiles%\IIS\Asp.Net Core Module\V2\aspnetcorev2.dll" />"#;
    let text = read(&paths.config).replacen(
        "        </globalModules>",
        &format!("            {ms_global}\r\n        </globalModules>"),
        1,
    );
    fs::write(&paths.config, &text).unwrap();
    let report = uninstall(&paths, None).unwrap();
    assert!(report.notes[0].contains("kept"), "{:?}", report.notes);
    let after = read(&paths.config);
    assert_eq!(
        count(&after, SECTION),
        1,
        "Microsoft's ANCM still needs the section"
    );
    assert_eq!(count(&after, "AspNetCoreModuleRs"), 0);
    assert_eq!(count(&after, "AspNetCoreModuleV2"), 1);
}

#[test]
fn install_repoints_an_existing_global_module() {
    let paths = scratch("repoint", IIS_DEFAULT);
    install(&paths, r"D:\old\aspnetcore_rs.dll", None).unwrap();
    let report = install(&paths, r"C:\new & improved\aspnetcore_rs.dll", None).unwrap();
    assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
    let text = read(&paths.config);
    assert!(text.contains(r#"image="C:\new &amp; improved\aspnetcore_rs.dll""#));
    assert!(!text.contains(r"D:\old"));
    uninstall(&paths, None).unwrap();
    assert_eq!(read(&paths.config), IIS_DEFAULT);
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let paths = scratch(
        "malformed",
        "<configuration><configSections></configuration>",
    );
    let e = install(&paths, edit::DEFAULT_IMAGE, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Content);
    assert!(e
        .to_string()
        .starts_with(&paths.config.display().to_string()));
    assert!(e.message.contains("malformed XML"), "{e}");

    let paths = scratch(
        "not-iis",
        "<configuration>\r\n  <appSettings />\r\n</configuration>",
    );
    let e = install(&paths, edit::DEFAULT_IMAGE, None).unwrap_err();
    assert!(e.message.contains("no <configSections>"), "{e}");
    // Nothing is written when the edit fails.
    assert!(!paths.backup.exists());
    assert!(!paths.state.exists());

    let no_modules = IIS_DEFAULT
        .replace("<modules>", "<mods>")
        .replace("</modules>", "</mods>");
    let paths = scratch("no-modules", &no_modules);
    let e = install(&paths, edit::DEFAULT_IMAGE, None).unwrap_err();
    assert!(e.message.contains("no <modules>"), "{e}");
    assert_eq!(read(&paths.config), no_modules);

    let paths = Paths::beside(PathBuf::from("/nonexistent/applicationHost.config"));
    let e = uninstall(&paths, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/applicationHost.config: cannot read"),
        "{e}"
    );

    let paths = scratch("utf16", "");
    fs::write(&paths.config, b"\xff\xfe<\x00c\x00").unwrap();
    let e = install(&paths, edit::DEFAULT_IMAGE, None).unwrap_err();
    assert!(e.message.contains("not UTF-8"), "{e}");
}

#[test]
fn command_line_exit_codes_and_messages() {
    let exe = env!("CARGO_BIN_EXE_ancm-register");
    let paths = scratch("cli", IIS_DEFAULT);
    let run = |args: &[&str]| Command::new(exe).args(args).output().unwrap();
    let config = paths.config.to_str().unwrap();

    let schema = schema_source();
    let schema = schema.to_str().unwrap();
    let out = run(&["install", "--config", config, "--schema", schema]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("ancm-register install: "), "{stdout}");
    assert!(
        stdout.contains("globalModules/add AspNetCoreModuleRs"),
        "{stdout}"
    );
    let out = run(&["install", "--config", config, "--schema", schema]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already registered"));
    // Without --schema the file next to the program is used; there is none next to the test build.
    let out = run(&["install", "--config", config]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(SCHEMA_FILE));
    let out = run(&["uninstall", "--config", config]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(read(&paths.config), IIS_DEFAULT);

    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&["install", "--config"]).status.code(), Some(2));
    assert_eq!(
        run(&["uninstall", "--dll", "x", "--config", config])
            .status
            .code(),
        Some(2)
    );
    let out = run(&["install", "--config", "/nonexistent/applicationHost.config"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("/nonexistent/applicationHost.config: cannot read"),
        "{stderr}"
    );
    fs::write(&paths.config, "not xml").unwrap();
    let out = run(&["install", "--config", config, "--schema", schema]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn an_old_versions_uninstall_leaves_the_new_versions_registration() {
    const OLD: &str = "{11111111-1111-1111-1111-111111111111}";
    const NEW: &str = "{22222222-2222-2222-2222-222222222222}";
    // Upgrade with the old version removed last (Wine's order, or a late RemoveExistingProducts).
    let paths = scratch("upgrade-late-removal", IIS_DEFAULT);
    install(&paths, edit::DEFAULT_IMAGE, Some(OLD)).unwrap();
    let registered = read(&paths.config);
    install(&paths, edit::DEFAULT_IMAGE, Some(NEW)).unwrap();
    let report = uninstall(&paths, Some(OLD)).unwrap();
    assert!(!report.changed);
    assert!(report.notes[0].contains(NEW), "{:?}", report.notes);
    assert_eq!(read(&paths.config), registered);
    assert!(paths.schema_dir.join(SCHEMA_FILE).exists());
    // The new version's own uninstall (any case of the GUID) restores the original.
    uninstall(&paths, Some(&NEW.to_lowercase())).unwrap();
    assert_eq!(read(&paths.config), IIS_DEFAULT);

    // Upgrade with the old version removed first (Windows' default schedule).
    let paths = scratch("upgrade-early-removal", IIS_DEFAULT);
    install(&paths, edit::DEFAULT_IMAGE, Some(OLD)).unwrap();
    uninstall(&paths, Some(OLD)).unwrap();
    assert_eq!(read(&paths.config), IIS_DEFAULT);
    install(&paths, edit::DEFAULT_IMAGE, Some(NEW)).unwrap();
    assert_eq!(read(&paths.config), registered);
    // A manual re-run without a product keeps the owner.
    install(&paths, edit::DEFAULT_IMAGE, None).unwrap();
    assert!(read(&paths.state).contains(&format!("owner={NEW}")));
}
