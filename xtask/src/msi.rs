//! The installer: `cargo xtask msi` builds `target/msi/ancm-rs-<version>-x64.msi` with wixl and
//! checks its tables with msiinfo; `cargo xtask msi-test` also installs, upgrades and uninstalls it
//! under Wine and runs the registration helper against copies of applicationHost.config.
//!
//! The tables are checked because wixl drops or misplaces some WiX constructs without an error
//! (see shared/reference/windows-on-linux.md): an MSI that builds is not yet an MSI that registers
//! the module.

use crate::sh::{ensure_packages, have, root, run, Result, WINE};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WIXL: &str = "wixl";
const MSIINFO: &str = "msiinfo";
/// The module's Event Log source, under HKLM.
const EVENT_SOURCE_KEY: &str =
    r"SYSTEM\CurrentControlSet\Services\EventLog\Application\AspNetCoreModuleRs";
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";
const WINESERVER: &str = "/usr/lib/wine/wineserver";
const TARGET: &str = "x86_64-pc-windows-gnu";
const DLL_NAME: &str = "aspnetcore_rs.dll";
const HELPER_NAME: &str = "ancm-register.exe";
const SCHEMA_NAME: &str = "aspnetcore_rs_schema.xml";
/// When the uninstall action runs: a real uninstall, not the old version's removal in an upgrade.
const UNINSTALL_CONDITION: &str = r#"REMOVE="ALL" AND NOT UPGRADINGPRODUCTCODE"#;
/// Set to any PE file to build an MSI without the real module (for testing the installer only).
const DLL_OVERRIDE_VAR: &str = "ANCM_DLL";

/// `cargo xtask msi`: builds and checks the MSI; prints its path.
pub fn build_command(_args: &[String]) -> Result {
    prerequisites(false)?;
    let msi = build_and_inspect()?;
    println!("{}", msi.display());
    Ok(())
}

/// `cargo xtask msi-test`: builds and checks the MSI, then the Wine checks.
pub fn test_command(_args: &[String]) -> Result {
    prerequisites(true)?;
    let msi = build_and_inspect()?;
    wine_checks(&msi)
}

/// The CI step (`cargo xtask test`): like `msi-test`, but prints a loud `SKIPPED:` line and succeeds
/// when a tool or the module DLL cannot be had on this machine.
pub fn ci() -> Result {
    if let Err(e) = prerequisites(true) {
        return skipped(&e);
    }
    if std::env::var_os(DLL_OVERRIDE_VAR).is_none() && !xtask_has_command("dll") {
        return skipped(
            "xtask has no `dll` command to build the module DLL yet (set ANCM_DLL to a PE file to \
             test the installer alone)",
        );
    }
    let msi = build_and_inspect()?;
    wine_checks(&msi)
}

fn skipped(why: &str) -> Result {
    eprintln!();
    eprintln!("==================================================================");
    eprintln!("SKIPPED: MSI build, table checks and Wine install test: {why}");
    eprintln!("==================================================================");
    eprintln!();
    Ok(())
}

/// wixl and msitools, the mingw linker for the helper, the Windows Rust target, and Wine when
/// `wine` is set; installs what it can.
fn prerequisites(wine: bool) -> Result {
    let mut needed = vec![
        (WIXL, "wixl"),
        (MSIINFO, "msitools"),
        (MINGW_GCC, "mingw-w64"),
    ];
    if wine {
        needed.push((WINE, "wine64"));
    }
    ensure_packages(&needed)?;
    if let Some((prog, _)) = needed.iter().find(|(prog, _)| !have(prog)) {
        return Err(format!("{prog} still missing after installing"));
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == TARGET)
        })
        .unwrap_or(false);
    if !installed {
        run(Command::new("rustup").args(["target", "add", TARGET]))
            .map_err(|e| format!("windows target unavailable: {e}"))?;
    }
    Ok(())
}

/// The workspace version (`[workspace.package] version`), which is the MSI's ProductVersion.
fn workspace_version() -> Result<String> {
    let path = root().join("Cargo.toml");
    let text =
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package {
            if let Some(value) = line.strip_prefix("version") {
                let value = value.trim_start().trim_start_matches('=').trim();
                return Ok(value.trim_matches('"').to_string());
            }
        }
    }
    Err(format!(
        "{}: no [workspace.package] version",
        path.display()
    ))
}

/// Whether this xtask (the running binary, built from the current xtask/src/main.rs) has
/// `command`: the module DLL is built by another branch's `xtask dll`, which may not be merged yet.
fn xtask_has_command(command: &str) -> bool {
    let Ok(me) = std::env::current_exe() else {
        return false;
    };
    Command::new(me)
        .arg("help")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.split_whitespace().next() == Some(command))
        })
        .unwrap_or(false)
}

/// The module DLL: `$ANCM_DLL` if set (loudly: such an MSI is not for shipping), else built by
/// `xtask dll`.
fn module_dll() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(DLL_OVERRIDE_VAR) {
        let path = PathBuf::from(path);
        eprintln!(
            "WARNING: {DLL_OVERRIDE_VAR}={}: the MSI carries this file instead of the real module; do not ship it",
            path.display()
        );
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{DLL_OVERRIDE_VAR}={}: no such file",
                path.display()
            ))
        };
    }
    if !xtask_has_command("dll") {
        return Err(format!(
            "the module DLL is built by `cargo xtask dll`, which this xtask does not have yet; \
             merge the DLL branch, or set {DLL_OVERRIDE_VAR} to a PE file to test the installer alone"
        ));
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot locate xtask: {e}"))?;
    run(Command::new(me).arg("dll").current_dir(root()))?;
    let dll = root()
        .join("target")
        .join(TARGET)
        .join("release")
        .join(DLL_NAME);
    if dll.is_file() {
        Ok(dll)
    } else {
        Err(format!(
            "`cargo xtask dll` succeeded but {} does not exist",
            dll.display()
        ))
    }
}

/// Builds the helper for Windows, stages the three files, runs wixl, checks the tables.
fn build_and_inspect() -> Result<PathBuf> {
    let root = root();
    let version = workspace_version()?;
    let dll = module_dll()?;
    run(Command::new("cargo").current_dir(&root).args([
        "build",
        "-p",
        "ancm-register",
        "--release",
        "--locked",
        "--target",
        TARGET,
    ]))?;
    let helper = root
        .join("target")
        .join(TARGET)
        .join("release")
        .join(HELPER_NAME);

    let out_dir = root.join("target").join("msi");
    let stage = out_dir.join("stage");
    recreate_dir(&stage)?;
    copy(&dll, &stage.join(DLL_NAME))?;
    if std::env::var_os(DLL_OVERRIDE_VAR).is_none() {
        // The MSI ships the stripped DLL; its debug file stays in the build output.
        crate::dll::check_stripped(&stage.join(DLL_NAME))?;
    }
    copy(&helper, &stage.join(HELPER_NAME))?;
    copy(
        &root.join("msi").join("schema").join(SCHEMA_NAME),
        &stage.join(SCHEMA_NAME),
    )?;
    let msi = out_dir.join(format!("ancm-rs-{version}-x64.msi"));
    wixl(&stage, &version, &msi)?;
    inspect(&msi, &version)?;
    Ok(msi)
}

/// Runs wixl in the staging directory (it resolves `Source=` against its working directory).
fn wixl(stage: &Path, version: &str, msi: &Path) -> Result {
    let wxs = root().join("msi").join("ancm-rs.wxs");
    let mut cmd = Command::new(WIXL);
    cmd.current_dir(stage)
        .args(["-a", "x64", "-D"])
        .arg(format!("Version={version}"))
        .arg("-o")
        .arg(msi)
        .arg(&wxs);
    eprintln!("+ {cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {WIXL}: {e}"))?;
    // `Platform` on <Package> is for WiX's candle; wixl warns about it and takes -a x64 instead.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("no property named 'Platform'"))
    {
        eprintln!("wixl: {line}");
    }
    if out.status.success() && msi.is_file() {
        Ok(())
    } else {
        Err(format!(
            "wixl failed ({}) building {}",
            out.status,
            msi.display()
        ))
    }
}

/// One exported MSI table: column names and rows (column name → value).
struct Table {
    name: String,
    rows: Vec<BTreeMap<String, String>>,
    text: String,
}

impl Table {
    fn row(&self, key_column: &str, key: &str) -> Option<&BTreeMap<String, String>> {
        self.rows
            .iter()
            .find(|r| r.get(key_column).map(String::as_str) == Some(key))
    }
}

fn msiinfo(args: &[&OsStr]) -> Result<String> {
    let out = Command::new(MSIINFO)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {MSIINFO}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{MSIINFO} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"))
}

/// `msiinfo export`: line 1 column names, line 2 column types, line 3 table name and keys, then
/// tab-separated rows.
fn export(msi: &Path, table: &str) -> Result<Table> {
    let text = msiinfo(&[OsStr::new("export"), msi.as_os_str(), OsStr::new(table)])?;
    let mut lines = text.lines();
    let columns: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let rows = lines
        .skip(2)
        .filter(|l| !l.is_empty())
        .map(|l| {
            columns
                .iter()
                .zip(l.split('\t'))
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    Ok(Table {
        name: table.to_string(),
        rows,
        text,
    })
}

/// Tallies named checks and prints each, ending with `N passed, M failed`.
#[derive(Default)]
struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
            println!("ok: {name}");
        } else {
            let detail = detail();
            println!("FAIL: {name}: {detail}");
            self.failed.push(name.to_string());
        }
    }

    fn finish(self, what: &str) -> Result {
        println!(
            "{what}: {} passed, {} failed",
            self.passed,
            self.failed.len()
        );
        if self.failed.is_empty() {
            Ok(())
        } else {
            Err(format!("{what} failed: {}", self.failed.join("; ")))
        }
    }
}

/// Checks the built MSI's tables: what wixl silently got wrong would show here.
fn inspect(msi: &Path, version: &str) -> Result {
    let tables = msiinfo(&[OsStr::new("tables"), msi.as_os_str()])?;
    let mut c = Checks::default();
    for t in [
        "File",
        "Component",
        "Directory",
        "CustomAction",
        "InstallExecuteSequence",
        "Upgrade",
        "Registry",
    ] {
        c.check(
            &format!("table {t} present"),
            tables.lines().any(|l| l.trim() == t),
            || tables.replace('\n', " "),
        );
    }
    let suminfo = msiinfo(&[OsStr::new("suminfo"), msi.as_os_str()])?;
    c.check(
        "summary Template is x64",
        suminfo.lines().any(|l| l.starts_with("Template: x64;")),
        || suminfo.clone(),
    );

    let file = export(msi, "File")?;
    let component = export(msi, "Component")?;
    let directory = export(msi, "Directory")?;
    let action = export(msi, "CustomAction")?;
    let sequence = export(msi, "InstallExecuteSequence")?;
    let upgrade = export(msi, "Upgrade")?;
    let registry = export(msi, "Registry")?;
    // The Event Log source, written and removed with the DLL's component (HKLM = root 2).
    let source_value = |name: &str| {
        registry.rows.iter().find(|r| {
            r.get("Root").map(String::as_str) == Some("2")
                && r.get("Key").map(|k| k.trim_end_matches('\\')) == Some(EVENT_SOURCE_KEY)
                && r.get("Name").map(String::as_str) == Some(name)
                && r.get("Component_").map(String::as_str) == Some("ModuleDll")
        })
    };
    c.check(
        "Registry: the Event Log source AspNetCoreModuleRs with .NET's EventLogMessages.dll",
        source_value("EventMessageFile")
            .and_then(|r| r.get("Value"))
            .map(String::as_str)
            == Some(r"[WindowsFolder]Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll")
            && source_value("TypesSupported")
                .and_then(|r| r.get("Value"))
                .map(String::as_str)
                == Some("#7"),
        || registry.text.clone(),
    );
    let property = export(msi, "Property")?;
    for t in [&file, &component, &directory, &action, &upgrade] {
        println!("--- {} ---\n{}", t.name, t.text.trim_end());
    }
    let seq = |a: &str| -> Option<i64> { sequence.row("Action", a)?.get("Sequence")?.parse().ok() };
    println!(
        "--- InstallExecuteSequence (excerpt) ---\n{}",
        sequence
            .text
            .lines()
            .filter(
                |l| ["Module", "Files", "InstallInitialize", "InstallFinalize"]
                    .iter()
                    .any(|k| l.contains(k))
            )
            .collect::<Vec<_>>()
            .join("\n")
    );

    // File → Component → Directory, for each of the three files.
    for (file_name, component_id, dir_id, dir_parent, dir_name) in [
        (
            DLL_NAME,
            "ModuleDll",
            "INETSRV",
            "System64Folder",
            "inetsrv",
        ),
        (
            HELPER_NAME,
            "RegisterHelper",
            "INSTALLDIR",
            "ProgramFiles64Folder",
            "ancm-rs",
        ),
        (
            SCHEMA_NAME,
            "Schema",
            "INSTALLDIR",
            "ProgramFiles64Folder",
            "ancm-rs",
        ),
    ] {
        let row = file.rows.iter().find(|r| {
            r.get("FileName")
                .is_some_and(|n| n.rsplit('|').next() == Some(file_name))
        });
        c.check(
            &format!("File {file_name} in component {component_id}"),
            row.and_then(|r| r.get("Component_")).map(String::as_str) == Some(component_id),
            || format!("{row:?}"),
        );
        let comp = component.row("Component", component_id);
        let attributes: i64 = comp
            .and_then(|r| r.get("Attributes")?.parse().ok())
            .unwrap_or(0);
        c.check(
            &format!("Component {component_id} is 64-bit in {dir_id}"),
            comp.and_then(|r| r.get("Directory_")).map(String::as_str) == Some(dir_id)
                && attributes & 256 != 0
                && comp
                    .and_then(|r| r.get("Condition"))
                    .is_none_or(|v| v.is_empty()),
            || format!("{comp:?}"),
        );
        let dir = directory.row("Directory", dir_id);
        c.check(
            &format!("Directory {dir_id} = [{dir_parent}]{dir_name}"),
            dir.and_then(|r| r.get("Directory_Parent"))
                .map(String::as_str)
                == Some(dir_parent)
                && dir
                    .and_then(|r| r.get("DefaultDir"))
                    .is_some_and(|d| d.rsplit('|').next() == Some(dir_name)),
            || format!("{dir:?}"),
        );
    }
    for (parent, grandparent) in [
        ("System64Folder", "TARGETDIR"),
        ("ProgramFiles64Folder", "TARGETDIR"),
    ] {
        c.check(
            &format!("Directory {parent} under {grandparent}"),
            directory
                .row("Directory", parent)
                .and_then(|r| r.get("Directory_Parent"))
                .map(String::as_str)
                == Some(grandparent),
            || directory.text.clone(),
        );
    }

    // 3090 = 18 (EXE in an installed file) + 1024 (deferred) + 2048 (no impersonation).
    c.check(
        "CustomAction table not empty",
        !action.rows.is_empty(),
        || action.text.clone(),
    );
    let helper_file = file
        .rows
        .iter()
        .find(|r| r.get("Component_").map(String::as_str) == Some("RegisterHelper"))
        .and_then(|r| r.get("File").cloned())
        .unwrap_or_default();
    for (id, target) in [
        ("RegisterModule", "install --product [ProductCode]"),
        ("UnregisterModule", "uninstall --product [ProductCode]"),
    ] {
        let row = action.row("Action", id);
        c.check(
            &format!("CustomAction {id}: type 3090, runs `{HELPER_NAME} {target}`"),
            row.and_then(|r| r.get("Type")).map(String::as_str) == Some("3090")
                && row.and_then(|r| r.get("Source")) == Some(&helper_file)
                && row.and_then(|r| r.get("Target")).map(String::as_str) == Some(target),
            || format!("{row:?}"),
        );
    }

    let (install_files, remove_files) = (seq("InstallFiles"), seq("RemoveFiles"));
    let (initialize, finalize) = (seq("InstallInitialize"), seq("InstallFinalize"));
    let register = seq("RegisterModule");
    let unregister = seq("UnregisterModule");
    let cond = |a: &str| {
        sequence
            .row("Action", a)
            .and_then(|r| r.get("Condition").cloned())
    };
    c.check(
        "RegisterModule after InstallFiles, before InstallFinalize, if NOT REMOVE",
        matches!((install_files, register, finalize), (Some(f), Some(r), Some(z)) if f < r && r < z)
            && cond("RegisterModule").as_deref() == Some("NOT REMOVE"),
        || format!("InstallFiles {install_files:?}, RegisterModule {register:?}, InstallFinalize {finalize:?}, condition {:?}", cond("RegisterModule")),
    );
    c.check(
        "UnregisterModule after InstallInitialize, before RemoveFiles, if uninstalling (not upgrading)",
        matches!((initialize, unregister, remove_files), (Some(i), Some(u), Some(f)) if i < u && u < f)
            && cond("UnregisterModule").as_deref() == Some(UNINSTALL_CONDITION),
        || format!("InstallInitialize {initialize:?}, UnregisterModule {unregister:?}, RemoveFiles {remove_files:?}, condition {:?}", cond("UnregisterModule")),
    );
    c.check(
        "RemoveExistingProducts scheduled (major upgrade)",
        seq("RemoveExistingProducts").is_some(),
        || sequence.text.clone(),
    );

    let upgrade_code = property
        .row("Property", "UpgradeCode")
        .and_then(|r| r.get("Value").cloned())
        .unwrap_or_default();
    c.check(
        "Upgrade table: older versions of this UpgradeCode are removed",
        upgrade.rows.iter().any(|r| {
            r.get("UpgradeCode") == Some(&upgrade_code)
                && r.get("VersionMax").map(String::as_str) == Some(version)
                && r.get("ActionProperty").map(String::as_str) == Some("WIX_UPGRADE_DETECTED")
        }),
        || format!("UpgradeCode {upgrade_code}\n{}", upgrade.text),
    );
    c.check(
        "ProductVersion is the workspace version",
        property
            .row("Property", "ProductVersion")
            .and_then(|r| r.get("Value"))
            .map(String::as_str)
            == Some(version),
        || property.text.clone(),
    );
    c.check(
        "per-machine (ALLUSERS=1)",
        property
            .row("Property", "ALLUSERS")
            .and_then(|r| r.get("Value"))
            .map(String::as_str)
            == Some("1"),
        || property.text.clone(),
    );
    c.finish(&format!("MSI table checks ({})", msi.display()))
}

fn recreate_dir(dir: &Path) -> Result {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn copy(from: &Path, to: &Path) -> Result {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_default()
}

fn count(haystack: &[u8], needle: &str) -> usize {
    String::from_utf8_lossy(haystack).matches(needle).count()
}

/// A Linux path as Wine's Z: drive shows it.
fn wine_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// Runs a Windows program under Wine in `prefix`, echoing its output.
fn wine(prefix: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = crate::sh::wine_command(prefix);
    cmd.args(args);
    eprintln!("+ wine {}", args.join(" "));
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {WINE}: {e}"))?;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| !l.trim().is_empty())
    {
        eprintln!("  | {line}");
    }
    Ok(out)
}

/// Stops the wineserver of `prefix` (started by this harness), so the prefix can be deleted.
fn stop_wineserver(prefix: &Path) {
    let _ = Command::new(WINESERVER)
        .arg("-k")
        .env("WINEPREFIX", prefix)
        .output();
}

/// Test-harness shim: Wine 8 lacks `bcryptprimitives.dll`, whose `ProcessPrng` Rust's std may
/// import. Placed in the test prefix's system32 only; never shipped.
const SHIM_C: &str = r#"#include <windows.h>
#include <ntsecapi.h>
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
"#;
const SHIM_DEF: &str = "LIBRARY bcryptprimitives.dll\nEXPORTS\n    ProcessPrng\n";

fn build_shim(dir: &Path) -> Result<PathBuf> {
    let (c, def, dll) = (
        dir.join("bcryptprimitives.c"),
        dir.join("bcryptprimitives.def"),
        dir.join("bcryptprimitives.dll"),
    );
    fs::write(&c, SHIM_C).map_err(|e| format!("cannot write {}: {e}", c.display()))?;
    fs::write(&def, SHIM_DEF).map_err(|e| format!("cannot write {}: {e}", def.display()))?;
    run(Command::new(MINGW_GCC)
        .args(["-shared", "-O2", "-o"])
        .arg(&dll)
        .arg(&c)
        .arg(&def)
        .arg("-ladvapi32"))?;
    Ok(dll)
}

/// Install → check → uninstall under Wine: the helper alone against copies of the sample
/// applicationHost.config files, then the MSI itself with msiexec (install, major upgrade,
/// uninstall) against a copy placed where IIS keeps it.
fn wine_checks(msi: &Path) -> Result {
    let root = root();
    let work = root.join("target").join("msi-test");
    let prefix = work.join("wineprefix");
    stop_wineserver(&prefix);
    recreate_dir(&work)?;
    let shim = build_shim(&work)?;
    let fixtures = root.join("msi").join("register").join("tests").join("data");
    let default_config = read(&fixtures.join("iis-default.config"));
    let microsoft_config = read(&fixtures.join("iis-with-microsoft-ancm.config"));
    if default_config.is_empty() || microsoft_config.is_empty() {
        return Err(format!(
            "sample configurations missing in {}",
            fixtures.display()
        ));
    }

    // The first start creates the prefix; then the shim goes into its system32.
    wine(&prefix, &["cmd", "/c", "exit", "0"])?;
    let system32 = prefix.join("drive_c").join("windows").join("system32");
    copy(&shim, &system32.join("bcryptprimitives.dll"))?;

    let mut c = Checks::default();
    helper_checks(&mut c, &work, &prefix, &default_config, &microsoft_config)?;
    msiexec_checks(&mut c, msi, &work, &prefix, &system32, &default_config)?;
    stop_wineserver(&prefix);
    c.finish("Wine install/uninstall checks")
}

/// The helper as the MSI lays it out (schema next to it), run with `--config`.
fn helper_checks(
    c: &mut Checks,
    work: &Path,
    prefix: &Path,
    default_config: &[u8],
    microsoft_config: &[u8],
) -> Result {
    let helper_dir = work.join("helper");
    fs::create_dir_all(&helper_dir).map_err(|e| format!("{}: {e}", helper_dir.display()))?;
    copy(
        &root()
            .join("target")
            .join("msi")
            .join("stage")
            .join(HELPER_NAME),
        &helper_dir.join(HELPER_NAME),
    )?;
    copy(
        &root().join("msi").join("schema").join(SCHEMA_NAME),
        &helper_dir.join(SCHEMA_NAME),
    )?;
    let exe = wine_path(&helper_dir.join(HELPER_NAME));

    for (case, original, microsoft) in [
        ("default", default_config, false),
        ("microsoft", microsoft_config, true),
    ] {
        let dir = work.join(format!("config-{case}"));
        let schema_dir = dir.join("schema");
        fs::create_dir_all(&schema_dir).map_err(|e| format!("{}: {e}", schema_dir.display()))?;
        if microsoft {
            fs::write(
                schema_dir.join("aspnetcore_schema_v2.xml"),
                "<configSchema />",
            )
            .map_err(|e| format!("{}: {e}", schema_dir.display()))?;
        }
        let config = dir.join("applicationHost.config");
        fs::write(&config, original).map_err(|e| format!("{}: {e}", config.display()))?;
        let config_arg = wine_path(&config);
        let ours = schema_dir.join(SCHEMA_NAME);

        let out = wine(prefix, &[&exe, "install", "--config", &config_arg])?;
        let installed = read(&config);
        c.check(
            &format!("{case}: install exits 0 and registers the module"),
            out.status.success() && count(&installed, "AspNetCoreModuleRs") == 2,
            || format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        );
        c.check(
            &format!("{case}: schema installed only without Microsoft's"),
            ours.exists() != microsoft,
            || format!("{} exists: {}", ours.display(), ours.exists()),
        );
        let out = wine(prefix, &[&exe, "install", "--config", &config_arg])?;
        c.check(
            &format!("{case}: installing twice = once"),
            out.status.success() && read(&config) == installed,
            || format!("{}", out.status),
        );
        let out = wine(prefix, &[&exe, "uninstall", "--config", &config_arg])?;
        c.check(
            &format!("{case}: install then uninstall leaves the file byte-identical"),
            out.status.success() && read(&config) == original,
            || format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        );
        c.check(
            &format!("{case}: uninstall removes our schema only"),
            !ours.exists() && (schema_dir.join("aspnetcore_schema_v2.xml").exists() == microsoft),
            || format!("{} exists: {}", ours.display(), ours.exists()),
        );
        let out = wine(prefix, &[&exe, "uninstall", "--config", &config_arg])?;
        c.check(
            &format!("{case}: uninstall when not installed changes nothing"),
            out.status.success() && read(&config) == original,
            || format!("{}", out.status),
        );
    }

    let bad = work.join("bad.config");
    fs::write(&bad, "<configuration>").map_err(|e| format!("{}: {e}", bad.display()))?;
    let bad_arg = wine_path(&bad);
    let out = wine(prefix, &[&exe, "install", "--config", &bad_arg])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    c.check(
        "malformed config: exit 3, one line naming the file",
        out.status.code() == Some(3)
            && stderr.trim().lines().count() == 1
            && stderr.contains(&bad_arg),
        || format!("{}: {stderr}", out.status),
    );
    Ok(())
}

/// The MSI under Wine's msiexec, with the helper's defaults (no arguments), as on a server.
fn msiexec_checks(
    c: &mut Checks,
    msi: &Path,
    work: &Path,
    prefix: &Path,
    system32: &Path,
    original: &[u8],
) -> Result {
    let inetsrv = system32.join("inetsrv");
    let config_dir = inetsrv.join("config");
    let schema_dir = config_dir.join("schema");
    fs::create_dir_all(&schema_dir).map_err(|e| format!("{}: {e}", schema_dir.display()))?;
    let config = config_dir.join("applicationHost.config");
    fs::write(&config, original).map_err(|e| format!("{}: {e}", config.display()))?;
    let program_dir = prefix.join("drive_c").join("Program Files").join("ancm-rs");

    let msi_arg = wine_path(msi);
    let log = |name: &str| wine_path(&work.join(name));
    let out = wine(
        prefix,
        &[
            "msiexec",
            "/i",
            &msi_arg,
            "/qn",
            "/l*v",
            &log("install.log"),
        ],
    )?;
    let installed = read(&config);
    c.check(
        "msiexec /i: exit 0, files installed, module registered by the custom action",
        out.status.success()
            && inetsrv.join(DLL_NAME).is_file()
            && program_dir.join(HELPER_NAME).is_file()
            && count(
                &installed,
                r#"image="%windir%\System32\inetsrv\aspnetcore_rs.dll""#,
            ) == 1
            && count(&installed, "AspNetCoreModuleRs") == 2,
        || format!("{}; see {}", out.status, work.join("install.log").display()),
    );
    let source = wine(
        prefix,
        &[
            "reg",
            "query",
            &format!(r"HKLM\{EVENT_SOURCE_KEY}"),
            "/v",
            "EventMessageFile",
        ],
    )?;
    c.check(
        "msiexec /i: Event Log source registered (EventMessageFile under the Windows folder)",
        source.status.success()
            && String::from_utf8_lossy(&source.stdout)
                .contains(r"C:\windows\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll"),
        || String::from_utf8_lossy(&source.stdout).into_owned(),
    );
    c.check(
        "msiexec /i: schema installed into inetsrv\\config\\schema",
        schema_dir.join(SCHEMA_NAME).is_file(),
        || format!("{} missing", schema_dir.join(SCHEMA_NAME).display()),
    );

    // A major upgrade: the same sources with the next patch version.
    let version = workspace_version()?;
    let next = next_version(&version)?;
    let upgrade_msi = work.join(format!("ancm-rs-{next}-x64.msi"));
    wixl(
        &root().join("target").join("msi").join("stage"),
        &next,
        &upgrade_msi,
    )?;
    let out = wine(
        prefix,
        &[
            "msiexec",
            "/i",
            &wine_path(&upgrade_msi),
            "/qn",
            "/l*v",
            &log("upgrade.log"),
        ],
    )?;
    let upgraded = read(&config);
    c.check(
        &format!("msiexec upgrade {version} -> {next}: registered once, in place"),
        out.status.success() && upgraded == installed && inetsrv.join(DLL_NAME).is_file(),
        || format!("{}; see {}", out.status, work.join("upgrade.log").display()),
    );

    let out = wine(
        prefix,
        &[
            "msiexec",
            "/x",
            &wine_path(&upgrade_msi),
            "/qn",
            "/l*v",
            &log("uninstall.log"),
        ],
    )?;
    c.check(
        "msiexec /x: applicationHost.config byte-identical to before the install",
        out.status.success() && read(&config) == original,
        || {
            format!(
                "{}; see {}",
                out.status,
                work.join("uninstall.log").display()
            )
        },
    );
    let source = wine(
        prefix,
        &["reg", "query", &format!(r"HKLM\{EVENT_SOURCE_KEY}")],
    )?;
    c.check(
        "msiexec /x: Event Log source removed",
        !source.status.success(),
        || String::from_utf8_lossy(&source.stdout).into_owned(),
    );
    c.check(
        "msiexec /x: DLL, helper and schema removed",
        !inetsrv.join(DLL_NAME).exists()
            && !program_dir.join(HELPER_NAME).exists()
            && !schema_dir.join(SCHEMA_NAME).exists(),
        || "files left behind".to_string(),
    );
    Ok(())
}

/// `a.b.c` → `a.b.(c+1)`.
fn next_version(version: &str) -> Result<String> {
    let (head, patch) = version
        .rsplit_once('.')
        .ok_or_else(|| format!("version {version:?} is not a.b.c"))?;
    let patch: u32 = patch
        .parse()
        .map_err(|_| format!("version {version:?} is not a.b.c"))?;
    Ok(format!("{head}.{}", patch + 1))
}
