//! `cargo xtask dll`: builds the IIS module `aspnetcore_rs.dll` (crate ancm-iis, iis-glue/)
//! for x86_64-pc-windows-gnu in release, and checks with objdump that it exports
//! `RegisterModule` and imports only DLLs every Windows has (no libstdc++-6.dll,
//! libgcc_s_*.dll, libwinpthread-1.dll: IIS would fail to load the module with error 126).

use crate::sh::{have, root, run, Result};
use std::path::PathBuf;
use std::process::Command;

pub const TARGET: &str = "x86_64-pc-windows-gnu";
const OBJDUMP: &str = "x86_64-w64-mingw32-objdump";
const GXX: &str = "x86_64-w64-mingw32-g++";

/// DLLs the module may import: part of every supported Windows (lower case).
const SYSTEM_DLLS: &[&str] = &[
    "kernel32.dll",
    "ntdll.dll",
    "msvcrt.dll",
    "advapi32.dll",
    "oleaut32.dll",
    "ole32.dll",
    "userenv.dll",
    "ws2_32.dll",
    "bcrypt.dll",
    "bcryptprimitives.dll",
    "secur32.dll",
    "crypt32.dll",
    "ncrypt.dll",
    "iphlpapi.dll",
    "user32.dll",
    "shell32.dll",
];

/// Whether the Windows target and the mingw-w64 tools are there; Err(why) otherwise.
pub fn available() -> Result {
    if !have(GXX) || !have(OBJDUMP) {
        return Err(format!(
            "{GXX} / {OBJDUMP} not installed (Debian: mingw-w64)"
        ));
    }
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) =>
        {
            Ok(())
        }
        Ok(_) => {
            // Try once to add it; offline machines cannot, and that is a skip, not a failure.
            let added = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if added {
                Ok(())
            } else {
                Err(format!(
                    "rust target {TARGET} unavailable (rustup target add failed)"
                ))
            }
        }
        Err(e) => Err(format!("cannot run rustup: {e}")),
    }
}

/// `cargo xtask dll`.
pub fn run_cmd() -> Result {
    let dll = build()?;
    println!("{}", dll.display());
    Ok(())
}

/// Builds the DLL and checks its exports and imports; returns its path.
pub fn build() -> Result<PathBuf> {
    available()?;
    let root = root();
    run(Command::new("cargo").current_dir(&root).args([
        "build",
        "-p",
        "ancm-iis",
        "--release",
        "--target",
        TARGET,
    ]))?;
    let dll = root
        .join("target")
        .join(TARGET)
        .join("release")
        .join("aspnetcore_rs.dll");
    check(&dll)?;
    Ok(dll)
}

fn check(dll: &std::path::Path) -> Result {
    let out = Command::new(OBJDUMP)
        .arg("-p")
        .arg(dll)
        .output()
        .map_err(|e| format!("cannot run {OBJDUMP}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{OBJDUMP} -p {} failed", dll.display()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let imports: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DLL Name:"))
        .map(|n| n.trim().to_owned())
        .collect();
    // The export name table: lines like "[   0] RegisterModule" after "[Ordinal/Name Pointer]".
    let exports: Vec<&str> = text
        .split("[Ordinal/Name Pointer] Table")
        .nth(1)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.trim().strip_prefix('['))
        .filter_map(|l| l.split_once(']').map(|(_, name)| name.trim()))
        .collect();
    println!("{}: imports {}", dll.display(), imports.join(", "));
    println!("{}: exports {}", dll.display(), exports.join(", "));

    let mut problems = Vec::new();
    if !exports.contains(&"RegisterModule") {
        problems.push("RegisterModule is not exported (undecorated)".to_owned());
    }
    for dll_name in &imports {
        let lower = dll_name.to_ascii_lowercase();
        // api-ms-win-* are API sets resolved by the Windows loader itself.
        if !(SYSTEM_DLLS.contains(&lower.as_str()) || lower.starts_with("api-ms-win-")) {
            problems.push(format!("imports non-system DLL {dll_name}"));
        }
    }
    if problems.is_empty() {
        println!("dll check: RegisterModule exported, only system DLLs imported");
        Ok(())
    } else {
        Err(format!("{}: {}", dll.display(), problems.join("; ")))
    }
}
