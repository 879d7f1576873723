//! `cargo xtask workflows`: checks every file in `.github/workflows/` against GitHub's workflow
//! schema with `action-validator` (npm `@action-validator/cli`, pinned by
//! `xtask/npm/package-lock.json` and installed into `target/npm-tools/`, not globally), and
//! byte-compiles the Python scripts the Windows workflow runs (`tests/iis-real/*.py`), which
//! cannot run here: they need a real IIS.

use crate::sh::{ensure_packages, have, root, run, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Installs the validator if needed, then validates each workflow and compiles each script.
pub fn run_cmd() -> Result {
    ensure_packages(&[("npm", "npm"), ("node", "nodejs"), ("python3", "python3")])?;
    if !have("npm") || !have("node") {
        return Err("npm / node still missing after installing".into());
    }
    let validator = install_validator()?;
    let root = root();
    let dir = root.join(".github").join("workflows");
    let workflows = files_with(&dir, &["yml", "yaml"])?;
    if workflows.is_empty() {
        return Err(format!("{}: no workflow files", dir.display()));
    }
    for wf in &workflows {
        // action-validator prints the failing path and rule as JSON and exits 1.
        run(Command::new("node").arg(&validator).arg(wf))
            .map_err(|e| format!("{}: not a valid GitHub workflow ({e})", wf.display()))?;
        println!("workflow schema: {} valid", wf.display());
    }
    let scripts = files_with(&root.join("tests").join("iis-real"), &["py"])?;
    let pyc = root.join("target").join("py_compile.pyc");
    for script in &scripts {
        // Compiled into target/, not a __pycache__ beside the script.
        run(Command::new("python3")
            .args([
                "-c",
                "import sys, py_compile; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
            ])
            .arg(script)
            .arg(&pyc))?;
        println!("python: {} compiles", script.display());
    }
    Ok(())
}

/// `npm ci` of xtask/npm into target/npm-tools when the lock file changed; returns the
/// validator's entry script.
fn install_validator() -> Result<PathBuf> {
    let root = root();
    let src = root.join("xtask").join("npm");
    let dest = root.join("target").join("npm-tools");
    fs::create_dir_all(&dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let lock = read(&src.join("package-lock.json"))?;
    let installed = fs::read(dest.join("package-lock.json")).ok();
    let entry = dest
        .join("node_modules")
        .join("@action-validator")
        .join("cli")
        .join("cli.mjs");
    if installed.as_deref() != Some(&lock[..]) || !entry.is_file() {
        for name in ["package.json", "package-lock.json"] {
            fs::copy(src.join(name), dest.join(name))
                .map_err(|e| format!("cannot copy {name} to {}: {e}", dest.display()))?;
        }
        run(Command::new("npm").current_dir(&dest).args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]))?;
    }
    if entry.is_file() {
        Ok(entry)
    } else {
        Err(format!("{}: missing after npm ci", entry.display()))
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The files in `dir` (not recursive) whose extension is one of `exts`, sorted.
fn files_with(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| exts.contains(&x))
        })
        .collect();
    files.sort();
    Ok(files)
}
