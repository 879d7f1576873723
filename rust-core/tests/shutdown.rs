//! The process-wide shutdown (ancm_shutdown_begin / ancm_shutdown_wait) with real backend
//! processes. Its own test binary: the shutdown is process-wide and cannot be undone, so no
//! other test may share its process.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ancm_core::ffi::result::ancm_result;
use ancm_core::ffi::shutdown::{ancm_shutdown_begin, ancm_shutdown_wait};
use ancm_core::{App, ClientInfo, Config, HostInfo, RequestBody};
use http_body_util::BodyExt;

fn backend(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/backends")
        .join(name)
        .display()
        .to_string()
}

fn site(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ancm-shutdown-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// An app whose process runs `script args` in its own site folder.
fn app(rt: &tokio::runtime::Runtime, name: &str, script: &str, args: &str) -> (App, PathBuf) {
    let dir = site(name);
    let xml = format!(
        "<configuration><system.webServer><aspNetCore processPath=\"python3\" \
         arguments=\"{} {args}\" shutdownTimeLimit=\"1\" startupTimeLimit=\"30\"/>\
         </system.webServer></configuration>",
        backend(script)
    );
    let config = Config::from_web_config_str(&xml, name).unwrap();
    let app = App::new(config, HostInfo::new(&dir), rt.handle().clone());
    (app, dir)
}

async fn get(app: &App, path: &str) -> (u16, String) {
    let req = http::Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(RequestBody::Empty)
        .unwrap();
    let client = ClientInfo::http("127.0.0.1:40000".parse().unwrap());
    let resp = app.handle(req, &client).await;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The processes whose working directory is `dir` (the engine starts an app's processes in
/// its site folder; a `python3` shim such as pyenv's may run helpers there too).
fn processes_in(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd == dir) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn shutdown_answers_503_starts_nothing_and_stops_every_process() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // One app serving (its process ignores the shutdown event and SIGTERM: only the kill
    // after shutdownTimeLimit stops it), one whose process is still starting when the shutdown
    // begins, one that never had a request.
    let (serving, serving_dir) = app(&rt, "serving", "ignore_shutdown.py", "");
    let (starting, starting_dir) = app(&rt, "starting", "slow_start.py", "2");
    let (idle, idle_dir) = app(&rt, "idle", "ignore_shutdown.py", "");

    let (status, pid) = rt.block_on(get(&serving, "/pid"));
    assert_eq!(status, 200, "{pid}");
    assert!(!processes_in(&serving_dir).is_empty());
    let slow = {
        let starting = starting.clone();
        rt.spawn(async move { get(&starting, "/pid").await })
    };
    // Until its process exists: the start is under way.
    let t0 = std::time::Instant::now();
    while processes_in(&starting_dir).is_empty() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !processes_in(&starting_dir).is_empty(),
        "the slow start began"
    );

    assert_eq!(ancm_shutdown_begin(), ancm_result::Ok);
    assert_eq!(
        ancm_shutdown_begin(),
        ancm_result::Ok,
        "a second call does nothing"
    );

    // Every request now gets the 503 page, and no process starts: neither for the app that
    // never had one, nor for an app created after the shutdown began.
    let (status, body) = rt.block_on(get(&serving, "/pid"));
    assert_eq!(status, 503, "{body}");
    let (status, _) = rt.block_on(get(&idle, "/pid"));
    assert_eq!(status, 503);
    let (late, late_dir) = app(&rt, "late", "ignore_shutdown.py", "");
    let (status, _) = rt.block_on(get(&late, "/pid"));
    assert_eq!(status, 503);
    assert!(late.status().shutting_down && idle.status().shutting_down);
    // The request waiting for the start gets the 503 too: the started process is stopped.
    let (status, _) = rt.block_on(slow).unwrap();
    assert_eq!(status, 503);

    // Waiting is refused on a core thread (the stops run there).
    assert_eq!(
        rt.block_on(async { ancm_shutdown_wait() }),
        ancm_result::WrongThread
    );
    assert_eq!(ancm_shutdown_wait(), ancm_result::Ok);
    for dir in [&serving_dir, &starting_dir, &idle_dir, &late_dir] {
        assert!(
            processes_in(dir).is_empty(),
            "a process of {} outlived the shutdown",
            dir.display()
        );
    }
    for dir in [serving_dir, starting_dir, idle_dir, late_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
