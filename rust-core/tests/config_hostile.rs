//! Hostile configuration input (issue 9): `..` paths, megabyte values, non-UTF-8 files,
//! recursive `%VAR%` expansions, huge collections, deep nesting. Each must end in a clear answer
//! (a config or an error naming the rule), never a hang, a panic or a stack overflow.
//!
//! No test asserts a duration. Those that could hang run on a thread with the default 2 MiB
//! stack (smaller than the main thread's, so recursion shows sooner) and fail if not done in
//! 60 s, so a regression fails the test instead of sticking the suite.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use ancm_core::config::{ConfigBuilder, ConfigErrorKind, Dialect};
use ancm_core::process::launch::resolve_program;
use ancm_core::{Config, ConfigError};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread; fails the test if it is not done within [`LIMIT`].
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn");
    match rx.recv_timeout(LIMIT) {
        Ok(v) => {
            let _ = handle.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("{what}: no result and no panic"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: not done within {LIMIT:?}"),
    }
}

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| (*v).to_owned())
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// A web.config with `attrs` on `<aspNetCore>` and `inner` inside it.
fn web_config(attrs: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration><system.webServer>\
         <aspNetCore {attrs}>{inner}</aspNetCore></system.webServer></configuration>"
    )
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_web_config_str_with_env(text, "web.config", &no_env)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ancm-config-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---- `..` in paths -------------------------------------------------------------------------

/// The web.config's author is the site's administrator, who may start any program and log
/// anywhere the worker's identity may write; ANCM takes processPath and stdoutLogFile as given,
/// `..` included. So does the engine: accepted verbatim (never normalised away), and resolved
/// against the site root like any relative path.
#[test]
fn dotdot_paths_are_accepted_verbatim() {
    let c = parse(&web_config(
        r#"processPath="..\..\tools\app.exe" arguments="..\x.dll" stdoutLogEnabled="true" stdoutLogFile="..\..\logs\stdout""#,
        "",
    ))
    .unwrap();
    assert_eq!(c.process_path, r"..\..\tools\app.exe");
    assert_eq!(c.arguments, r"..\x.dll");
    assert_eq!(c.stdout_log_file, r"..\..\logs\stdout");

    for p in ["../../../../../../bin/sh", "/usr/../bin/env", "%A%/../x"] {
        let mut b = ConfigBuilder::new("settings", Dialect::AspNetCore);
        b.set("processPath", p).unwrap();
        b.set("stdoutLogFile", p).unwrap();
        let c = b.build_with_env(&env(&[("A", "/opt/app")])).unwrap();
        let expanded = p.replace("%A%", "/opt/app");
        assert_eq!(c.process_path, expanded);
        assert_eq!(c.stdout_log_file, expanded);
    }
}

/// A relative processPath with `..` is tried under the site root (and used when that file
/// exists), exactly as a path without `..`; the `..` is left for the OS to resolve.
#[test]
fn dotdot_process_path_resolves_under_the_site_root_like_any_relative_path() {
    let base = temp_dir("dotdot");
    let site = base.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::create_dir_all(base.join("bin")).unwrap();
    std::fs::write(base.join("bin").join("app"), "").unwrap();
    assert_eq!(
        resolve_program(r"..\bin\app", &site),
        site.join("../bin/app")
    );
    assert_eq!(
        resolve_program("../bin/app", &site),
        site.join("../bin/app")
    );
    // Not there under the root: handed to process creation unchanged.
    assert_eq!(
        resolve_program("../nope/app", &site),
        Path::new("../nope/app")
    );
    let _ = std::fs::remove_dir_all(&base);
}

// ---- very long values ----------------------------------------------------------------------

const MIB: usize = 1 << 20;

/// 1 MiB attribute values: string attributes are accepted as they are (no length rule in ANCM's
/// schema either); typed attributes get their ordinary error.
#[test]
fn megabyte_values_are_accepted_or_refused_clearly() {
    bounded("megabyte values", || {
        let long = "a".repeat(MIB);
        let c = parse(&web_config(
            &format!(
                r#"processPath="{long}" arguments="{long}" stdoutLogFile="{long}""#
            ),
            &format!(
                r#"<environmentVariables><environmentVariable name="{long}" value="{long}" /></environmentVariables>
                   <handlerSettings><handlerSetting name="{long}" value="{long}" /></handlerSettings>"#
            ),
        ))
        .unwrap();
        assert_eq!(c.process_path.len(), MIB);
        assert_eq!(c.arguments.len(), MIB);
        assert_eq!(c.stdout_log_file.len(), MIB);
        assert_eq!(c.environment_variables[0].0.len(), MIB);
        assert_eq!(c.environment_variables[0].1.len(), MIB);
        assert_eq!(c.handler_settings[0].1.len(), MIB);

        // Typed attributes: their ordinary error, naming the attribute.
        let digits = "9".repeat(MIB);
        for attr in [
            "startupTimeLimit",
            "rapidFailsPerMinute",
            "requestTimeout",
            "stdoutLogEnabled",
            "hostingModel",
        ] {
            let e = parse(&web_config(
                &format!(r#"processPath="a" {attr}="{digits}""#),
                "",
            ))
            .unwrap_err();
            assert_eq!(e.attribute, format!("aspNetCore/@{attr}"), "{attr}");
            assert!(
                matches!(
                    e.kind,
                    ConfigErrorKind::InvalidValue | ConfigErrorKind::OutOfRange
                ),
                "{attr}: {:?}: {}",
                e.kind,
                e.rule
            );
            assert!(!e.rule.is_empty());
        }

        // A 1 MiB value made only of %VAR% references: one linear pass (5.6 MB out).
        let refs = "%K%".repeat(MIB / 3);
        let mut b = ConfigBuilder::new("settings", Dialect::AspNetCore);
        b.set("processPath", "a").unwrap();
        b.set("arguments", &refs).unwrap();
        let c = b
            .build_with_env(&|n: &str| (n == "K").then(|| "k".repeat(16)))
            .unwrap();
        assert_eq!(c.arguments.len(), (MIB / 3) * 16);
    });
}

// ---- non-UTF-8 bytes -----------------------------------------------------------------------

fn from_bytes(name: &str, bytes: &[u8]) -> Result<Config, ConfigError> {
    let dir = temp_dir(name);
    let path = dir.join("web.config");
    std::fs::write(&path, bytes).unwrap();
    let r = Config::from_web_config_file_with_env(&path, &no_env);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Bytes that are not UTF-8 anywhere in the file (in a value, a name, a comment, at the very
/// end) are refused with InvalidEncoding naming the offset of the first bad byte.
#[test]
fn non_utf8_file_is_invalid_encoding_at_the_offset() {
    let good = web_config(r#"processPath="app""#, "");
    let at = good.find("app\"").unwrap() + 1;
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        // A Latin-1 é inside processPath.
        ("latin1", splice(&good, at, b"\xe9"), at),
        // An overlong encoding of '/'.
        ("overlong", splice(&good, at, b"\xc0\xaf"), at),
        // A UTF-16 surrogate encoded in UTF-8 (CESU-8).
        ("surrogate", splice(&good, at, b"\xed\xa0\x80"), at),
        // A lone continuation byte at offset 0.
        (
            "continuation",
            [b"\x80".as_slice(), good.as_bytes()].concat(),
            0,
        ),
        // A multi-byte sequence cut by the end of the file.
        (
            "truncated",
            [good.as_bytes(), b"\xe2\x82"].concat(),
            good.len(),
        ),
        // 0xFF 0xFF is no BOM and no UTF-8.
        ("ff", [b"\xff\xff".as_slice(), good.as_bytes()].concat(), 0),
    ];
    for (name, bytes, offset) in cases {
        let e = from_bytes(name, &bytes).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidEncoding, "{name}: {e}");
        assert!(
            e.rule.contains(&format!("offset {offset};")),
            "{name}: wanted offset {offset}: {e}"
        );
    }
    // After a UTF-8 BOM the offset still counts from the start of the file.
    let bytes = [b"\xef\xbb\xbf".as_slice(), b"<x\xfe"].concat();
    let e = from_bytes("bom", &bytes).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::InvalidEncoding);
    assert!(e.rule.contains("offset 5;"), "{e}");
    // UTF-16 with an unpaired surrogate: the same kind, with its byte offset.
    let mut utf16: Vec<u8> = vec![0xFF, 0xFE];
    for u in "<configuration/>".encode_utf16().chain([0xD800]) {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let e = from_bytes("utf16", &utf16).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::InvalidEncoding);
    assert!(e.rule.contains("byte offset 34;"), "{e}");
}

fn splice(text: &str, at: usize, bytes: &[u8]) -> Vec<u8> {
    [&text.as_bytes()[..at], bytes, &text.as_bytes()[at..]].concat()
}

// ---- recursive %VAR% -----------------------------------------------------------------------

/// `A=%B%`, `B=%A%`, `S=%S%`: one left-to-right pass, as ExpandEnvironmentStrings does; a
/// substituted value is never rescanned, so nothing recurses or hangs.
#[test]
fn recursive_and_self_referential_expansions_are_single_pass() {
    bounded("recursive expansion", || {
        let lookup = env(&[("A", "%B%"), ("B", "%A%"), ("S", "%S%"), ("E", "")]);
        let c = Config::from_web_config_str_with_env(
            &web_config(
                r#"processPath="%A%" arguments="%A%%B%%S% %E%x" stdoutLogFile="%S%%S%""#,
                r#"<environmentVariables>
                     <environmentVariable name="A" value="%A%" />
                     <environmentVariable name="SELF" value="%SELF%;%B%" />
                   </environmentVariables>"#,
            ),
            "web.config",
            &lookup,
        )
        .unwrap();
        assert_eq!(c.process_path, "%B%");
        assert_eq!(c.arguments, "%B%%A%%S% x");
        assert_eq!(c.stdout_log_file, "%S%%S%");
        // Environment values expand against the host's environment, not against each other.
        assert_eq!(c.environment_variables[0], ("A".into(), "%B%".into()));
        assert_eq!(
            c.environment_variables[1],
            ("SELF".into(), "%SELF%;%A%".into())
        );

        // Many references to a recursive pair: output linear in the references.
        let mut b = ConfigBuilder::new("settings", Dialect::AspNetCore);
        b.set("processPath", &"%A%".repeat(100_000)).unwrap();
        let c = b.build_with_env(&lookup).unwrap();
        assert_eq!(c.process_path, "%B%".repeat(100_000));
    });
}

// ---- huge collections ----------------------------------------------------------------------

const ENTRIES: usize = 100_000;

/// 100,000 `<environmentVariable>` entries, through the web.config reader and the key-by-key
/// builder: all kept in order; a duplicate at the very end still found, with IIS's message.
#[test]
fn hundred_thousand_environment_variables() {
    bounded("huge collection", || {
        let mut inner = String::from("<environmentVariables>");
        for i in 0..ENTRIES {
            inner.push_str(&format!(
                r#"<environmentVariable name="Var_{i}" value="{i}" />"#
            ));
        }
        let closed = format!("{inner}</environmentVariables>");
        let c = parse(&web_config(r#"processPath="a""#, &closed)).unwrap();
        assert_eq!(c.environment_variables.len(), ENTRIES);
        assert_eq!(c.environment_variables[0], ("Var_0".into(), "0".into()));
        assert_eq!(
            c.environment_variables[ENTRIES - 1].1,
            (ENTRIES - 1).to_string()
        );

        // The duplicate differs only in case, after 100,000 others.
        let dup = format!(
            r#"{inner}<environmentVariable name="VAR_0" value="x" /></environmentVariables>"#
        );
        let e = parse(&web_config(r#"processPath="a""#, &dup)).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::DuplicateEntry);
        assert_eq!(
            e.to_string(),
            "web.config: aspNetCore/environmentVariables/environmentVariable[@name='VAR_0']: \
             Cannot add duplicate collection entry of type 'environmentVariable' with unique key \
             attribute 'name' set to 'VAR_0'"
        );

        // Key by key: add all, remove every other one, re-add the removed ones, then handler
        // settings too; order and the remove/re-add semantics hold.
        let mut b = ConfigBuilder::new("settings", Dialect::AspNetCore);
        b.set("processPath", "a").unwrap();
        for i in 0..ENTRIES {
            b.add_environment_variable(&format!("v{i}"), "1").unwrap();
            b.add_handler_setting(&format!("h{i}"), "1").unwrap();
        }
        for i in (0..ENTRIES).step_by(2) {
            b.remove_environment_variable(&format!("V{i}")).unwrap();
        }
        for i in (0..ENTRIES).step_by(2) {
            b.add_environment_variable(&format!("v{i}"), "2").unwrap();
        }
        let e = b.add_environment_variable("V1", "x").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::DuplicateEntry);
        let c = b.build_with_env(&no_env).unwrap();
        assert_eq!(c.environment_variables.len(), ENTRIES);
        assert_eq!(c.environment_variables[0], ("v1".into(), "1".into()));
        assert_eq!(
            c.environment_variables[ENTRIES / 2],
            ("v0".into(), "2".into())
        );
        assert_eq!(c.handler_settings.len(), ENTRIES);
    });
}

// ---- deep nesting --------------------------------------------------------------------------

const DEPTH: usize = 100_000;

fn nested(depth: usize) -> String {
    let mut s = String::with_capacity(depth * 7);
    for _ in 0..depth {
        s.push_str("<x>");
    }
    for _ in 0..depth {
        s.push_str("</x>");
    }
    s
}

/// 100,000 nested elements inside aspNetCore, inside a collection, and around the section.
/// roxmltree parses without recursion (it has no element depth limit, only an entity depth
/// limit), so the document is read; the reader then refuses the first unknown element.
/// Nothing recurses per level, so no stack overflow on a 2 MiB thread.
#[test]
fn deeply_nested_elements_are_refused_without_stack_overflow() {
    bounded("deep nesting", || {
        let deep = nested(DEPTH);
        let e = parse(&web_config(r#"processPath="a""#, &deep)).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownElement, "{e}");
        assert_eq!(e.attribute, "aspNetCore/x", "{e}");

        let e = parse(&web_config(
            r#"processPath="a""#,
            &format!("<environmentVariables>{deep}</environmentVariables>"),
        ))
        .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownElement, "{e}");

        // Outside the section: ignored, as IIS ignores other sections.
        let text = format!(
            "<configuration>{deep}<system.webServer><aspNetCore processPath=\"a\" />\
             </system.webServer></configuration>"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.process_path, "a");

        // Unclosed: malformed XML with a position, not a crash.
        let unclosed = web_config(r#"processPath="a""#, &"<x>".repeat(DEPTH));
        let e = parse(&unclosed).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::MalformedXml, "{e}");
        assert!(e.rule.starts_with("malformed XML: "), "{e}");
    });
}
