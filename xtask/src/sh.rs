//! Small helpers to run commands and install system packages.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The error type of every xtask command: a message for the user.
pub type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (the parent of xtask/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Runs a command to completion, echoing it first; a non-zero exit is an error naming it.
pub fn run(cmd: &mut Command) -> Result {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

/// Whether a program is on PATH (or is an existing path).
pub fn have(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Makes sure the Debian packages providing `needed` programs are installed: installs the
/// missing ones when running as root, otherwise names them and the command to run.
/// `needed` pairs a program (or absolute path) with the package that provides it.
pub fn ensure_packages(needed: &[(&str, &str)]) -> Result {
    let mut missing: Vec<&str> = needed
        .iter()
        .filter(|(prog, _)| !have(prog))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        return Err(format!(
            "missing system packages: {list}; install them with: sudo apt-get update && sudo apt-get install -y {list}"
        ));
    }
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure python3 can import each of `modules` (pairs of import name and PyPI package),
/// installing the missing ones with pip.
pub fn ensure_python_modules(modules: &[(&str, &str)]) -> Result {
    for (module, package) in modules {
        let present = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !present {
            run(Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                package,
            ]))?;
        }
    }
    Ok(())
}

/// Wine's 64-bit loader as Debian's wine64 installs it (not on PATH).
pub const WINE: &str = "/usr/lib/wine/wine64";

/// A Wine command in its own prefix: quiet, and without the Mono/Gecko install prompts a new
/// prefix would otherwise show.
pub fn wine_command(prefix: &Path) -> Command {
    let mut cmd = Command::new(WINE);
    cmd.env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
    cmd
}
