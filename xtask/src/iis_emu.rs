//! `cargo xtask iis-emu`: builds aspnetcore_rs.dll (`cargo xtask dll`), the emulated IIS
//! (tests/iis-emu/emu.cpp) and the bcryptprimitives shim with mingw-w64, then runs the
//! emulator under Wine in a fresh prefix under target/ and checks what it reports. Prints a
//! loud `SKIPPED:` line and succeeds when the Windows target, mingw-w64 or Wine is missing.

use crate::sh::{have, root, run as sh_run, Result};
use std::path::Path;
use std::process::Command;

const GXX: &str = "x86_64-w64-mingw32-g++";
const GCC: &str = "x86_64-w64-mingw32-gcc";
const WINE: &str = "/usr/lib/wine/wine64";

pub fn run() -> Result {
    if let Err(why) = crate::dll::available() {
        return skipped(&why);
    }
    if !have(WINE) || !have(GCC) {
        return skipped(&format!(
            "{WINE} or {GCC} not installed (Debian: wine64, mingw-w64)"
        ));
    }
    let dll = crate::dll::build()?;

    let root = root();
    let emu_src = root.join("tests").join("iis-emu");
    let out = root.join("target").join("iis-emu");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    // The emulator: same flags as the glue; -static so Wine needs no mingw runtime DLLs.
    let exe = out.join("iis-emu.exe");
    sh_run(
        Command::new(GXX)
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-static"])
            .args(["-D_WIN32_WINNT=0x0A00", "-DUNICODE", "-D_UNICODE", "-I"])
            .arg(root.join("iis-glue").join("src"))
            .arg(emu_src.join("emu.cpp"))
            .arg("-o")
            .arg(&exe)
            .args(["-loleaut32", "-luuid"]),
    )?;
    // Wine 8 has no bcryptprimitives.dll, which Rust's std imports (ProcessPrng): a test-only
    // shim placed next to the executable (see tests/iis-emu/bcryptprimitives.c).
    sh_run(
        Command::new(GCC)
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-o"])
            .arg(out.join("bcryptprimitives.dll"))
            .arg(emu_src.join("bcryptprimitives.c"))
            .arg(emu_src.join("bcryptprimitives.def"))
            .arg("-ladvapi32"),
    )?;
    let local_dll = out.join("aspnetcore_rs.dll");
    std::fs::copy(&dll, &local_dll).map_err(|e| format!("cannot copy the DLL: {e}"))?;
    let config = out.join("web.config");
    std::fs::copy(emu_src.join("web.config"), &config)
        .map_err(|e| format!("cannot copy web.config: {e}"))?;

    // A fresh prefix per run: no state carried between runs.
    let prefix = out.join("wineprefix");
    let _ = std::fs::remove_dir_all(&prefix);
    let output = wine(&exe, &prefix)
        .arg("aspnetcore_rs.dll")
        .arg("web.config")
        .current_dir(&out)
        .output()
        .map_err(|e| format!("cannot run {WINE}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");

    // Checked here as well as by the emulator itself, so a silently broken emulator (one that
    // stops printing its checks) cannot pass.
    let mut failures = Vec::new();
    for needle in [
        "HTTP/1.1 200.0 OK",
        "Content-Type: text/plain; charset=utf-8",
        "X-Ancm-Rs: placeholder",
        "processPath: .\\backend.exe",
    ] {
        if !stdout.contains(needle) {
            failures.push(format!("missing {needle:?} in the output"));
        }
    }
    let last = stdout.lines().last().unwrap_or("").trim();
    if !output.status.success() || !last.ends_with(" passed, 0 failed") {
        failures.push(format!(
            "emulator exit {}; last line {last:?}",
            output.status
        ));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        Err(format!("emulated IIS: {}", failures.join("; ")))
    }
}

fn wine(exe: &Path, prefix: &Path) -> Command {
    let mut cmd = Command::new(WINE);
    cmd.arg(exe)
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        // No Mono/Gecko install prompts when the prefix is created.
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
    eprintln!("+ {cmd:?}");
    cmd
}

fn skipped(why: &str) -> Result {
    eprintln!();
    eprintln!("==================================================================");
    eprintln!("SKIPPED: emulated IIS test (aspnetcore_rs.dll under Wine): {why}");
    eprintln!("==================================================================");
    eprintln!();
    Ok(())
}
