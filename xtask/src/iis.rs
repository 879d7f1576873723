//! The IIS ABI check: compiles `iis-glue/tests/vtable_slots.cpp` with mingw-w64 g++ and runs it
//! under Wine. It proves that every method declared in the clean-room IIS headers
//! (`iis-glue/src/iis/`) sits at Microsoft's vtable slot.

use crate::sh::{ensure_packages, have, root, wine_command, Result, WINE};
use std::path::Path;
use std::process::Command;

const GXX: &str = "x86_64-w64-mingw32-g++";

/// Builds and runs the vtable-slot test. Prints a loud `SKIPPED:` line and succeeds when the
/// mingw-w64 compiler or Wine is missing and cannot be installed.
pub fn vtable_check() -> Result {
    if let Err(e) = ensure_packages(&[(GXX, "mingw-w64"), (WINE, "wine64")]) {
        return skipped(&e);
    }
    if !have(GXX) || !have(WINE) {
        return skipped(&format!("{GXX} or {WINE} still missing after installing"));
    }

    let root = root();
    let out_dir = root.join("target").join("iis-tests");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let exe = out_dir.join("vtable_slots.exe");

    // -static: the test must not need libstdc++/libgcc DLLs, which Wine would not find.
    crate::sh::run(
        Command::new(GXX)
            .current_dir(&root)
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-static", "-I"])
            .arg(root.join("iis-glue").join("src"))
            .arg(root.join("iis-glue").join("tests").join("vtable_slots.cpp"))
            .arg("-o")
            .arg(&exe),
    )?;

    run_under_wine(&exe, &out_dir.join("wineprefix"))
}

/// Runs the test executable under Wine, echoing its output; fails unless it exits 0 and its
/// last line reports no failure.
fn run_under_wine(exe: &Path, prefix: &Path) -> Result {
    let mut cmd = wine_command(prefix);
    cmd.arg(exe);
    eprintln!("+ {cmd:?}");
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {WINE}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    let last = stdout.lines().last().unwrap_or("").trim();
    if output.status.success() && last.ends_with(" passed, 0 failed") {
        Ok(())
    } else {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        Err(format!(
            "IIS vtable slot check failed ({}); last line: {last:?}",
            output.status
        ))
    }
}

fn skipped(why: &str) -> Result {
    eprintln!();
    eprintln!("==================================================================");
    eprintln!("SKIPPED: IIS vtable slot check (needs {GXX} and {WINE}): {why}");
    eprintln!("==================================================================");
    eprintln!();
    Ok(())
}
