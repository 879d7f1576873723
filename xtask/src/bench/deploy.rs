//! Case (i): deploys under load. ancm-serve serves tests/backends/versioned.py from a site with
//! shadow copies on; 32 client threads request `/version` in a loop while the site's files are
//! overwritten 20 times with a new version. Measured: the time from the last file written to
//! the first response naming the new version, and the requests that failed (must be 0).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{free_port, wait_listening, Proc};

/// What case (i) measured.
#[derive(Default)]
pub struct DeployReport {
    /// Per deploy: ms from the last file written to the first response of the new version.
    pub switch_ms: Vec<f64>,
    /// Requests answered, and those that failed or were not 200.
    pub requests: u64,
    pub failed: u64,
}

const DEPLOYS: u32 = 20;
const CLIENTS: usize = 32;

/// One GET of `/version` on a new connection: the status and body.
fn get_version(port: u16) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn write_app(repo: &Path, site: &Path, version: u32) -> std::io::Result<()> {
    for (from, to) in [("versioned.py", "app.py"), ("common.py", "common.py")] {
        std::fs::copy(repo.join("tests/backends").join(from), site.join(to))?;
    }
    std::fs::create_dir_all(site.join("wwwroot"))?;
    for i in 0..40 {
        std::fs::write(
            site.join(format!("wwwroot/asset{i}.txt")),
            format!("{version}:{i}:").repeat(200),
        )?;
    }
    std::fs::write(site.join("version.txt"), version.to_string())
}

/// Runs case (i) with the ancm-serve binary `serve`.
pub fn case_deploy(
    serve: &Path,
    repo: &Path,
    tmp: &Path,
    commands: &mut Vec<String>,
) -> Result<DeployReport, String> {
    commands.push(format!(
        "(i) tests/backends/versioned.py behind ancm-serve with enableShadowCopy, healthCheckPath=/health, \
         the default 1 s debounce; {CLIENTS} threads GET /version (new connection each) in a loop; {DEPLOYS} times \
         the app's 42 files are overwritten with the next version; time from the last file written to the first \
         response naming it"
    ));
    let site = tmp.join("site-deploy");
    std::fs::create_dir_all(&site).map_err(|e| e.to_string())?;
    write_app(repo, &site, 1).map_err(|e| e.to_string())?;
    std::fs::write(
        site.join("web.config"),
        "<configuration><system.webServer><aspNetCore processPath=\"python3\" arguments=\"app.py\">\
         <handlerSettings><handlerSetting name=\"enableShadowCopy\" value=\"true\"/>\
         <handlerSetting name=\"healthCheckPath\" value=\"/health\"/></handlerSettings>\
         </aspNetCore></system.webServer></configuration>",
    )
    .map_err(|e| e.to_string())?;
    let port = free_port()?;
    let log = std::fs::File::create(site.join("ancm-serve.log")).map_err(|e| e.to_string())?;
    let mut p = Proc::spawn(
        "ancm-serve",
        Command::new(serve)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg(site.join("web.config"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
    )?;
    wait_listening(port, Duration::from_secs(10))?;
    let version = |port| {
        get_version(port).and_then(|(s, b)| {
            (s == 200).then(|| b.split_whitespace().next()?.parse::<u32>().ok())?
        })
    };
    if version(port) != Some(1) {
        return Err("the first version did not answer".into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (requests, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, requests, failed) = (stop.clone(), requests.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    requests.fetch_add(1, Ordering::Relaxed);
                    if !matches!(get_version(port), Some((200, _))) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut report = DeployReport::default();
    let mut result = Ok(());
    for v in 2..=DEPLOYS + 1 {
        if let Err(e) = write_app(repo, &site, v) {
            result = Err(e.to_string());
            break;
        }
        let written = Instant::now();
        let deadline = written + Duration::from_secs(60);
        while version(port) != Some(v) {
            if Instant::now() > deadline {
                result = Err(format!("version {v} was not served within 60 s"));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if result.is_err() {
            break;
        }
        let ms = written.elapsed().as_secs_f64() * 1000.0;
        eprintln!("bench: (i) deploy {}: new version after {ms:.0} ms", v - 1);
        report.switch_ms.push(ms);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    report.requests = requests.load(Ordering::Relaxed);
    report.failed = failed.load(Ordering::Relaxed);
    p.stop(Duration::from_secs(20));
    result.map(|()| report)
}

/// The report's section for case (i).
pub fn write_section(md: &mut String, r: &DeployReport) {
    use std::fmt::Write as _;
    let Some(s) = super::stat(&r.switch_ms) else {
        return;
    };
    let _ = writeln!(
        md,
        "### (i) Deploys under load\n\n| deploys | last file written → first response of the new version (ms), median / min / max | requests | failed |\n|---|---|---|---|\n| {} | {:.0} / {:.0} / {:.0} | {} | {} |\n",
        r.switch_ms.len(),
        s.median,
        s.min,
        s.max,
        r.requests,
        r.failed
    );
}
