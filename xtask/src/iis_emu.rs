//! `cargo xtask iis-emu`: builds aspnetcore_rs.dll (`cargo xtask dll`), the emulated IIS
//! (tests/iis-emu/emu.cpp), the test backend (tests/iis-emu/backend.cpp, a Windows HTTP server
//! the engine starts under Wine) and the bcryptprimitives shim with mingw-w64, then runs the
//! emulator under Wine in a fresh prefix under target/ and checks what it reports; then runs the
//! engine's Windows-only unit tests under Wine. Prints a loud `SKIPPED:` line and succeeds when
//! the Windows target, mingw-w64 or Wine is missing.

use crate::sh::{have, root, run as sh_run, Result, WINE};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GXX: &str = "x86_64-w64-mingw32-g++";
const GCC: &str = "x86_64-w64-mingw32-gcc";
/// The lifecycle cases' checks (tests/iis-emu/lifecycle_emu.h, issue 16 items 2, 3, 4, 7) and the
/// deploy cases' (tests/iis-emu/deploy_emu.h, issue 18).
const LIFECYCLE_CHECKS: [&str; 9] = [
    "ok: no WebSocket module (no WEBSOCKET_VERSION): the app was told ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED=false",
    "ok: no WebSocket module: an upgrade request was answered normally",
    "ok: GL_CONFIGURATION_CHANGE at MACHINE and MACHINE/WEBROOT stopped nothing",
    "ok: a close without a status reached the client as a close without a body",
    "ok: a ReadFragment whose cancellation never completes: the module reset the connection and the request finished",
    "ok: OnGlobalStopListening returned CONTINUE at once",
    "ok: requests after stop listening got 503",
    "ok: ws drain: after webSocketDrainSeconds the client got a close with 1001 (going away)",
    "ok: recycleOnFileChange from IIS's configuration: the file's change started a new generation",
];
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
    // The HTTP/2 cases' app (tests/iis-emu/http2_emu.h), outside Wine: the engine's backend.exe
    // relays to it. Killed when this function returns.
    let h2 = H2App::start(&root, &out, "h2_raw.py")?;
    let grpc = H2App::start(&root, &out, "grpc_server.py")?;
    let started = Instant::now();
    let mut child = wine(&exe, &prefix)
        .arg("aspnetcore_rs.dll")
        .arg("backend.exe")
        .env("EMU_H2_PORT", h2.port.to_string())
        .env("EMU_GRPC_PORT", grpc.port.to_string())
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
    let status = wait_then_end_prefix(&mut child, started, &prefix)?;
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
        "ok: Negotiate: the handle is a token in the backend's process",
        "ok: NTLM: the second process",
        "ok: no MS-ASPNETCORE-WINAUTHTOKEN with forwardWindowsAuthToken=false",
        "ok: ASPNETCORE_ANCM_HTTPS_PORT=44300",
        "ok: no ASPNETCORE_ANCM_HTTPS_PORT for a site without an https binding",
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
    for needle in REQUEST_PATH_CHECKS
        .iter()
        .chain(LIFECYCLE_CHECKS.iter())
        .chain(HTTP2_CHECKS.iter())
    {
        if !stdout.contains(needle) {
            failures.push(format!("missing {needle:?} in the output"));
        }
    }
    let stderr = String::from_utf8_lossy(&stderr_bytes);
    failures.extend(event_log_failures(&stderr));
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
    if !failures.is_empty() {
        eprint!("{stderr}");
        return Err(format!("emulated IIS: {}", failures.join("; ")));
    }
    engine_windows_tests(&out.join("bcryptprimitives.dll"), &out)
}

/// The HTTP/2 cases' checks (tests/iis-emu/http2_emu.h, issue 19).
const HTTP2_CHECKS: [&str; 8] = [
    "ok: grpcio app in the emulated IIS: unary call answered, grpc-status 0 through SetTrailer",
    "ok: grpcio app in the emulated IIS: server stream of 3 messages, then grpc-status 0",
    "ok: HTTP/2: the h2c app's trailers went out through IHttpResponse4::SetTrailer",
    "ok: HTTP/2: the body without Content-Length, the pairing token and TE: trailers reached the app",
    "ok: HTTP/2: the app's RST_STREAM (ENHANCE_YOUR_CALM) went out through IHttpResponse4::ResetStream(11)",
    "ok: HTTP/1.1 client of an h2c app: answered, no SetTrailer",
    "ok: no IHttpResponse4: a gRPC call gets 502 naming IHttpResponse4",
    "ok: no IHttpResponse4: a plain HTTP/2 request is still forwarded",
];

/// An h2c app of tests/backends (h2_raw.py, grpc_server.py) on a free loopback port, for the
/// emulator's HTTP/2 cases.
struct H2App {
    child: std::process::Child,
    port: u16,
}

impl H2App {
    fn start(root: &Path, out: &Path, script: &str) -> std::result::Result<H2App, String> {
        crate::sh::ensure_python_modules(&[("h2", "h2"), ("grpc", "grpcio")])?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for {script}: {e}"))?
            .port();
        let dir = out.join(format!("h2-app-{}", script.trim_end_matches(".py")));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let child = Command::new("python3")
            .arg(root.join("tests/backends").join(script))
            .env("ASPNETCORE_PORT", port.to_string())
            .env("ANCM_TEST_ANY_TOKEN", "1")
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {script}: {e}"))?;
        let app = H2App { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("{script} did not listen on {port}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(app)
    }
}

impl Drop for H2App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The emulator's checks of the request path as a real IIS shapes it (issue 16: the URL after
/// a rewrite, a warm-up request, a client already gone, response headers, the last write's
/// buffer, the impersonation token).
const REQUEST_PATH_CHECKS: [&str; 13] = [
    "ok: URL Rewrite: the rewritten URL reached the backend, escaped",
    "ok: a warm-up request without pRawUrl was forwarded with its cooked URL",
    "ok: a pRawUrl whose length counts a trailing NUL is forwarded without it",
    "ok: <, \", non-UTF-8 in the raw URL arrive escaped, %2F and %41 unchanged",
    "ok: a client gone at the start got 400 and the backend never saw the request",
    "ok: a disconnect notified before the request attached was remembered",
    "ok: the backend's Server header replaced IIS's",
    "ok: both Set-Cookie values arrived as separate headers",
    "ok: the backend's mixed-case name reached SetHeader in its case",
    "ok: no Server header when the backend sends none",
    "ok: every SetHeader value was NUL-terminated at its length",
    "ok: the last async write's bytes were intact when the request ended",
    "ok: no primary token: the impersonation token reached the backend",
];

/// The engine's Windows-only unit tests (`#[cfg(all(test, windows))]`: the kill-on-close job,
/// the Toolhelp resume, the user token's duplicate into a child and its reclaim), cross-built
/// and run under Wine with the bcryptprimitives shim beside them.
fn engine_windows_tests(shim: &Path, out: &Path) -> Result {
    let build = Command::new("cargo")
        .args([
            "test",
            "-p",
            "ancm-core",
            "--lib",
            "--no-run",
            "--message-format=json",
        ])
        .args(["--target", "x86_64-pc-windows-gnu"])
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !build.status.success() {
        return Err("building the engine's unit tests for Windows failed".into());
    }
    let json = String::from_utf8_lossy(&build.stdout);
    let exe = json
        .lines()
        .filter_map(|l| l.split_once("\"executable\":\"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('"').map(|(path, _)| path.to_owned()))
        .next_back()
        .ok_or("cargo named no unit-test executable")?;
    let exe = Path::new(&exe);
    let dir = exe.parent().ok_or("the test executable has no directory")?;
    std::fs::copy(shim, dir.join("bcryptprimitives.dll"))
        .map_err(|e| format!("cannot copy the bcryptprimitives shim: {e}"))?;
    let prefix = out.join("wineprefix-unit");
    let _ = std::fs::remove_dir_all(&prefix);
    let mut child = crate::sh::wine_command(&prefix)
        .arg(exe)
        .current_dir(dir)
        .spawn()
        .map_err(|e| format!("cannot run {WINE}: {e}"))?;
    let started = Instant::now();
    let status = wait_then_end_prefix(&mut child, started, &prefix)?;
    match status {
        Some(st) if st.success() => Ok(()),
        Some(st) => Err(format!("the engine's unit tests under Wine: {st}")),
        None => Err(format!(
            "the engine's unit tests under Wine did not finish within {} s",
            DEADLINE.as_secs()
        )),
    }
}

/// One `ReportEventW` call as Wine 8 traces it: its `fixme:advapi` line gives the entry type
/// and event id, the `eventlog` line that follows on the same thread gives the string.
#[derive(Debug, PartialEq)]
struct Reported {
    kind: u32,
    id: u32,
    text: String,
}

/// The Event Log entries the module wrote, read from Wine's debug output (WINEDEBUG
/// `+eventlog,fixme+advapi`): Wine has no Event Log that stores them, but its advapi32 traces
/// every `ReportEventW` with its arguments.
/// Waits for a program under Wine until [`DEADLINE`] (then kills it: `None`), then ends the
/// prefix's wineserver, and with it any process the run left behind (the backends the engine
/// started live in the same prefix), so that the program's pipes can be read to their end.
fn wait_then_end_prefix(
    child: &mut std::process::Child,
    started: Instant,
    prefix: &Path,
) -> std::result::Result<Option<std::process::ExitStatus>, String> {
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
    let _ = Command::new("wineserver")
        .arg("-k")
        .env("WINEPREFIX", prefix)
        .status();
    Ok(status)
}

fn reported_events(stderr: &str) -> Vec<Reported> {
    let mut pending: std::collections::HashMap<&str, (u32, u32)> = Default::default();
    let mut out = Vec::new();
    for line in stderr.lines() {
        let Some((thread, rest)) = line.split_once(':') else {
            continue;
        };
        if let Some(args) = rest.strip_prefix("fixme:advapi:ReportEventW (") {
            let f: Vec<&str> = args.split(',').collect();
            let hex = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            if let (Some(kind), Some(id)) =
                (f.get(1).and_then(|s| hex(s)), f.get(3).and_then(|s| hex(s)))
            {
                pending.insert(thread, (kind, id));
            }
        } else if let Some(pos) = rest.find(":eventlog:ReportEventW L\"") {
            if let Some((kind, id)) = pending.remove(thread) {
                let text = &rest[pos + ":eventlog:ReportEventW L\"".len()..];
                let text = text.strip_suffix('"').unwrap_or(text);
                out.push(Reported {
                    kind,
                    id,
                    text: text.to_owned(),
                });
            }
        }
    }
    out
}

/// What the emulator's run must have written to the Event Log: the event source, a start
/// (1001), the failed attempts and the start failure of the broken app (1000, 1020), the
/// configuration error (1034), the shutdown event (1006), a crash (1030) over the rapid-fail
/// limit (1003) and a stdout log that could not be created (1004), each with its entry type
/// and text.
fn event_log_failures(stderr: &str) -> Vec<String> {
    const INFO: u32 = 4;
    const WARNING: u32 = 2;
    const ERROR: u32 = 1;
    let site = "MACHINE/WEBROOT/APPHOST/Default Web Site";
    let events = reported_events(stderr);
    let mut failures = Vec::new();
    if !stderr.contains("RegisterEventSourceW ((null),L\"AspNetCoreModuleRs\")") {
        failures.push("the module did not register the event source AspNetCoreModuleRs".into());
    }
    let wanted: [(u32, u32, &[&str]); 8] = [
        (
            INFO,
            1001,
            &[&format!("{site}/app: process "), "listening on port"],
        ),
        (
            WARNING,
            1000,
            &[&format!("{site}/broken: start attempt 1/2 failed")],
        ),
        (
            ERROR,
            1020,
            &[&format!("{site}/broken: could not start the application")],
        ),
        (
            ERROR,
            1034,
            &[&format!("{site}/badconfig"), "startupTimeLimit", "9999"],
        ),
        (INFO, 1006, &["sent the shutdown event to process"]),
        (
            WARNING,
            1030,
            &[&format!("{site}/crashy: process "), "exited with code 5"],
        ),
        (
            ERROR,
            1003,
            &[&format!("{site}/crashy: "), "rapidFailsPerMinute (0)"],
        ),
        (
            WARNING,
            1004,
            &["could not create the stdout log file", "stdout"],
        ),
    ];
    for (kind, id, parts) in wanted {
        let found = events
            .iter()
            .any(|e| e.kind == kind && e.id == id && parts.iter().all(|p| e.text.contains(p)));
        if found {
            println!("ok: Event Log entry {id} (type {kind}) with {parts:?}");
        } else {
            failures.push(format!(
                "no Event Log entry {id} of type {kind} containing {parts:?} (saw {} entries)",
                events.len()
            ));
        }
    }
    failures
}

fn wine(exe: &Path, prefix: &Path) -> Command {
    let mut cmd = crate::sh::wine_command(prefix);
    // Wine traces ReportEventW (its arguments and its string): the Event Log's observable.
    cmd.env("WINEDEBUG", "-all,+eventlog,fixme+advapi");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wine_traces_pair_up_by_thread() {
        let stderr = "0024:fixme:advapi:ReportEventW (00000000CAFE4242,0x0004,0x0000,0x000003e9,0000000000000000,0x0001,0x00000000,000000000021FD28,0000000000000000): stub\n\
                      0030:fixme:advapi:ReportEventW (00000000CAFE4242,0x0001,0x0000,0x000003fc,0000000000000000,0x0001,0x00000000,000000000021FD28,0000000000000000): stub\n\
                      0024:trace:eventlog:ReportEventW L\"started \\00e9\"\n\
                      0030:err:eventlog:ReportEventW L\"failed\"\n";
        assert_eq!(
            reported_events(stderr),
            [
                Reported {
                    kind: 4,
                    id: 1001,
                    text: "started \\00e9".into()
                },
                Reported {
                    kind: 1,
                    id: 1020,
                    text: "failed".into()
                },
            ]
        );
    }
}
