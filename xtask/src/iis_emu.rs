//! `cargo xtask iis-emu`: builds aspnetcore_rs.dll (`cargo xtask dll`), the emulated IIS
//! (tests/iis-emu/emu.cpp), the test backend (tests/iis-emu/backend.cpp, a Windows HTTP server
//! the engine starts under Wine) and the bcryptprimitives shim with mingw-w64, then runs the
//! emulator under Wine in a fresh prefix under target/ and checks what it reports. Prints a
//! loud `SKIPPED:` line and succeeds when the Windows target, mingw-w64 or Wine is missing.

use crate::sh::{have, root, run as sh_run, Result, WINE};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GXX: &str = "x86_64-w64-mingw32-g++";
const GCC: &str = "x86_64-w64-mingw32-gcc";
/// The whole emulator run (Wine prefix creation included) must end within this.
const DEADLINE: Duration = Duration::from_secs(240);

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
            .args(["-loleaut32", "-luuid", "-lws2_32", "-ladvapi32"]),
    )?;
    // The backend the engine starts (a test fixture, not a product).
    let backend = out.join("backend.exe");
    sh_run(
        Command::new(GXX)
            .args([
                "-std=c++17",
                "-O2",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-static",
            ])
            .arg(emu_src.join("backend.cpp"))
            .arg("-o")
            .arg(&backend)
            .args(["-lws2_32", "-ladvapi32"]),
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
    let _ = std::fs::remove_dir_all(out.join("apps"));

    // A fresh prefix per run: no state carried between runs.
    let prefix = out.join("wineprefix");
    let _ = std::fs::remove_dir_all(&prefix);
    let started = Instant::now();
    let mut child = wine(&exe, &prefix)
        .arg("aspnetcore_rs.dll")
        .arg("backend.exe")
        .current_dir(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {WINE}: {e}"))?;
    // Read both pipes on threads so that a chatty Wine cannot block the emulator.
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let so_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut so, &mut v);
        v
    });
    let se_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut se, &mut v);
        v
    });
    let status = loop {
        if let Some(st) = child
            .try_wait()
            .map_err(|e| format!("waiting for Wine: {e}"))?
        {
            break Some(st);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // The backends the engine started live in the same Wine prefix: end its wineserver (and so
    // any process a failed run left behind) before reading the pipes to their end.
    let _ = Command::new("wineserver")
        .arg("-k")
        .env("WINEPREFIX", &prefix)
        .status();
    let stdout_bytes = so_thread.join().unwrap_or_default();
    let stderr_bytes = se_thread.join().unwrap_or_default();
    let stdout = String::from_utf8_lossy(&stdout_bytes);
    print!("{stdout}");
    eprintln!(
        "iis-emu: {:.1} s under Wine",
        started.elapsed().as_secs_f64()
    );

    // Checked here as well as by the emulator itself, so a silently broken emulator (one that
    // stops printing its checks) cannot pass.
    let mut failures = Vec::new();
    for needle in [
        "ok: first request: status 200",
        "ok: the raw URL reached the backend (%2F kept)",
        "ok: the backend checked MS-ASPNETCORE-TOKEN",
        "ok: 20 MiB upload arrived intact",
        "ok: 20 MiB download intact",
        "ok: client disconnect cancelled the response",
        "ok: startup failure gives 502.5",
        "ok: app_offline.htm gives 503",
        "ok: GL_APPLICATION_STOP stopped the backend process",
        "ok: 200 text echoes through the DLL, intact (200)",
        "ok: a 200 KiB binary message in 3 fragments came back intact (204800 bytes)",
        "ok: client-initiated close: the backend's close (1000 \"done\") reached the client",
        "ok: backend-initiated close: its close (4001 \"server bye\") reached the client",
        "ok: backend killed mid-stream: the client's connection ended (no hang)",
    ] {
        if !stdout.contains(needle) {
            failures.push(format!("missing {needle:?} in the output"));
        }
    }
    let last = stdout.lines().last().unwrap_or("").trim();
    match status {
        None => failures.push(format!(
            "the emulator did not finish within {} s",
            DEADLINE.as_secs()
        )),
        Some(st) if !st.success() || !last.ends_with(" passed, 0 failed") => {
            failures.push(format!("emulator exit {st}; last line {last:?}"))
        }
        Some(_) => {}
    }
    if failures.is_empty() {
        Ok(())
    } else {
        eprint!("{}", String::from_utf8_lossy(&stderr_bytes));
        Err(format!("emulated IIS: {}", failures.join("; ")))
    }
}

fn wine(exe: &Path, prefix: &Path) -> Command {
    let mut cmd = crate::sh::wine_command(prefix);
    cmd.arg(exe);
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
