//! `cargo xtask dll`: builds the IIS module `aspnetcore_rs.dll` (crate ancm-iis, iis-glue/) in
//! release and checks that it exports `RegisterModule` and imports only DLLs every Windows has
//! (no libstdc++-6.dll, libgcc_s_*.dll, libwinpthread-1.dll: IIS would fail to load the module
//! with error 126).
//!
//! On Linux it cross-builds for x86_64-pc-windows-gnu (mingw-w64) and ships the DLL stripped:
//! the DWARF and the symbol table go to `aspnetcore_rs.dll.debug` beside it, which the DLL names
//! in a `.gnu_debuglink` section. On Windows (`cargo xtask dll` in the Windows workflow) it builds
//! for x86_64-pc-windows-msvc, whose linker writes the debug information to `aspnetcore_rs.pdb`
//! beside the DLL anyway. The tables are read with the `object` crate, so the check needs no
//! platform tool.

use crate::sh::{have, root, run, Result};
use object::{Object, ObjectSection};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target `cargo xtask dll` builds for on Linux (and what the MSI build on Linux uses).
pub const TARGET: &str = "x86_64-pc-windows-gnu";
/// The target on a Windows host: the one IIS's own modules are built with.
pub const MSVC_TARGET: &str = "x86_64-pc-windows-msvc";
const OBJCOPY: &str = "x86_64-w64-mingw32-objcopy";
const GXX: &str = "x86_64-w64-mingw32-g++";
const DLL_NAME: &str = "aspnetcore_rs.dll";
/// The separate debug file of a mingw build, beside the DLL.
pub const DEBUG_NAME: &str = "aspnetcore_rs.dll.debug";

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

/// The target this host builds the DLL for.
fn host_target() -> &'static str {
    if cfg!(windows) {
        MSVC_TARGET
    } else {
        TARGET
    }
}

/// Whether the Windows target (and, off Windows, the mingw-w64 tools) are there; Err(why)
/// otherwise.
pub fn available() -> Result {
    let target = host_target();
    if target == TARGET && (!have(GXX) || !have(OBJCOPY)) {
        return Err(format!(
            "{GXX} / {OBJCOPY} not installed (Debian: mingw-w64)"
        ));
    }
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == target) =>
        {
            Ok(())
        }
        Ok(_) => {
            // Try once to add it; offline machines cannot, and that is a skip, not a failure.
            let added = Command::new("rustup")
                .args(["target", "add", target])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if added {
                Ok(())
            } else {
                Err(format!(
                    "rust target {target} unavailable (rustup target add failed)"
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

/// Builds the DLL (stripped, with its debug information beside it) and checks its exports and
/// imports; returns its path.
pub fn build() -> Result<PathBuf> {
    available()?;
    let root = root();
    let target = host_target();
    run(Command::new("cargo").current_dir(&root).args([
        "build",
        "-p",
        "ancm-iis",
        "--release",
        "--locked",
        "--target",
        target,
    ]))?;
    let dir = root.join("target").join(target).join("release");
    let dll = dir.join(DLL_NAME);
    if target == TARGET {
        split_debug(&dll, &dir.join(DEBUG_NAME))?;
    } else {
        let pdb = dir.join("aspnetcore_rs.pdb");
        if !pdb.is_file() {
            return Err(format!(
                "{}: the MSVC linker wrote no PDB beside the DLL",
                pdb.display()
            ));
        }
        println!("debug information: {}", pdb.display());
    }
    check(&dll)?;
    Ok(dll)
}

/// Moves the DWARF sections and the symbol table of a mingw-built DLL into `debug`, and names
/// that file in the DLL (`.gnu_debuglink`, with its CRC), so debuggers that read DWARF find it.
/// Idempotent: cargo leaves an up-to-date DLL alone, so a DLL stripped by an earlier run (no
/// `.debug_*` section, a debug link, the debug file present) is left as it is.
fn split_debug(dll: &Path, debug: &Path) -> Result {
    let sections = section_names(dll)?;
    let has_dwarf = sections.iter().any(|s| s.starts_with(".debug_"));
    let has_link = sections.iter().any(|s| s == ".gnu_debuglink");
    if !has_dwarf {
        if has_link && debug.is_file() {
            println!("{}: already stripped", dll.display());
            return Ok(());
        }
        return Err(format!(
            "{}: no DWARF sections to split off (is [profile.release] debug off?) and no {} from an earlier run",
            dll.display(),
            debug.display()
        ));
    }
    let before = file_size(dll)?;
    run(Command::new(OBJCOPY)
        .arg("--only-keep-debug")
        .arg(dll)
        .arg(debug))?;
    // --strip-all: the COFF symbol table is in the debug file too; exports (.edata) and base
    // relocations (.reloc) are sections and stay.
    run(Command::new(OBJCOPY).arg("--strip-all").arg(dll))?;
    // objcopy records the link's file name only; run from the DLL's folder so that it finds
    // the debug file by that name to compute the CRC.
    let dir = dll
        .parent()
        .ok_or_else(|| format!("{}: no parent folder", dll.display()))?;
    run(Command::new(OBJCOPY)
        .current_dir(dir)
        .arg(format!("--add-gnu-debuglink={DEBUG_NAME}"))
        .arg(DLL_NAME))?;
    println!(
        "{}: stripped {} → {} bytes; debug information in {} ({} bytes)",
        dll.display(),
        before,
        file_size(dll)?,
        debug.display(),
        file_size(debug)?
    );
    Ok(())
}

/// Fails unless the DLL carries no DWARF section (what the MSI must ship: the debug
/// information stays in the build output).
pub fn check_stripped(dll: &Path) -> Result {
    let dwarf: Vec<String> = section_names(dll)?
        .into_iter()
        .filter(|s| s.starts_with(".debug_"))
        .collect();
    if dwarf.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: not stripped: carries {}",
            dll.display(),
            dwarf.join(", ")
        ))
    }
}

fn file_size(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn read_pe(dll: &Path) -> Result<Vec<u8>> {
    std::fs::read(dll).map_err(|e| format!("cannot read {}: {e}", dll.display()))
}

fn section_names(dll: &Path) -> Result<Vec<String>> {
    let data = read_pe(dll)?;
    let file = object::File::parse(&*data)
        .map_err(|e| format!("{}: not a PE file: {e}", dll.display()))?;
    Ok(file
        .sections()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect())
}

/// The DLL's imported DLL names and exported function names, from its own tables.
fn imports_exports(dll: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let data = read_pe(dll)?;
    let file = object::File::parse(&*data)
        .map_err(|e| format!("{}: not a PE file: {e}", dll.display()))?;
    let mut imports: Vec<String> = file
        .imports()
        .map_err(|e| format!("{}: import table: {e}", dll.display()))?
        .iter()
        .map(|i| String::from_utf8_lossy(i.library()).into_owned())
        .collect();
    imports.sort_unstable_by_key(|n| n.to_ascii_lowercase());
    imports.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    let exports = file
        .exports()
        .map_err(|e| format!("{}: export table: {e}", dll.display()))?
        .iter()
        .map(|e| String::from_utf8_lossy(e.name()).into_owned())
        .collect();
    Ok((imports, exports))
}

fn check(dll: &Path) -> Result {
    let (imports, exports) = imports_exports(dll)?;
    println!("{}: imports {}", dll.display(), imports.join(", "));
    println!("{}: exports {}", dll.display(), exports.join(", "));

    let mut problems = Vec::new();
    if !exports.iter().any(|e| e == "RegisterModule") {
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
