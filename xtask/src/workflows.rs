//! `cargo xtask workflows`: checks every file in `.github/workflows/` against GitHub's workflow
//! schema with `action-validator` (npm `@action-validator/cli`, pinned by
//! `xtask/npm/package-lock.json` and installed into `target/npm-tools/`, not globally), and
//! byte-compiles the Python scripts the Windows workflow runs (`tests/iis-real/*.py`). Then it
//! runs the acceptance script's checks that do not need IIS (`--standin`) against ancm-serve
//! hosting `tests/iis-real/standin/app.py`, a Python stand-in of the ASP.NET Core test app, so
//! that the script's own logic has run before it meets a real IIS.

use crate::sh::{ensure_packages, ensure_python_modules, have, root, run, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Installs the validator if needed, then validates each workflow and compiles each script.
pub fn run_cmd() -> Result {
    ensure_packages(&[("npm", "npm"), ("node", "nodejs"), ("python3", "python3")])?;
    ensure_python_modules(&[("websockets", "websockets")])?;
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
    standin_run()
}

/// ancm-serve with the stand-in app in a fresh site folder under target/, then
/// `acceptance.py --standin` against it.
fn standin_run() -> Result {
    let root = root();
    run(Command::new("cargo")
        .current_dir(&root)
        .args(["build", "--locked", "-p", "ancm-serve"]))?;
    let serve = root.join("target").join("debug").join("ancm-serve");
    let site = root.join("target").join("iis-real-standin");
    let _ = fs::remove_dir_all(&site);
    fs::create_dir_all(&site).map_err(|e| format!("cannot create {}: {e}", site.display()))?;
    let app = root
        .join("tests")
        .join("iis-real")
        .join("standin")
        .join("app.py");
    // The same shape as tests/iis-real/app/web.config: acceptance.py rewrites ANCMTEST_CONFIG.
    let config = format!(
        "<configuration>\n  <system.webServer>\n    <aspNetCore processPath=\"python3\" arguments=\"{}\" stdoutLogEnabled=\"false\">\n      <environmentVariables>\n        <environmentVariable name=\"ANCMTEST_CONFIG\" value=\"1\" />\n      </environmentVariables>\n    </aspNetCore>\n  </system.webServer>\n</configuration>\n",
        app.display()
    );
    let web_config = site.join("web.config");
    fs::write(&web_config, config)
        .map_err(|e| format!("cannot write {}: {e}", web_config.display()))?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    eprintln!(
        "+ {} --listen {listen} {}",
        serve.display(),
        web_config.display()
    );
    let mut child = Command::new(&serve)
        .args(["--listen", &listen])
        .arg(&web_config)
        .env("RUST_LOG", "warn")
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", serve.display()))?;
    let result = wait_listening(port).and_then(|()| {
        run(Command::new("python3")
            .arg(root.join("tests").join("iis-real").join("acceptance.py"))
            .args(["--standin", "--port", &port.to_string(), "--site-dir"])
            .arg(&site))
    });
    stop(&mut child);
    result
}

/// A port nobody listens on now (the OS picks it; released before ancm-serve binds it).
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

fn wait_listening(port: u16) -> Result {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "ancm-serve did not listen on 127.0.0.1:{port} within 30 s"
    ))
}

/// SIGTERM (ancm-serve stops the app gracefully), SIGKILL if it has not exited in 30 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
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
