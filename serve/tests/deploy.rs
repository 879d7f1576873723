//! Deploys without downtime, end to end: the real ancm-serve, real Python backends run from
//! shadow copies, real HTTP clients over real sockets. A deploy here is what xcopy or a CI
//! pipeline does: the app's files in the site folder are overwritten while it serves.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

fn handler_settings(pairs: &[(&str, &str)]) -> String {
    let mut s = String::from("<handlerSettings>");
    for (k, v) in pairs {
        s.push_str(&format!("<handlerSetting name=\"{k}\" value=\"{v}\" />"));
    }
    s + "</handlerSettings>"
}

/// Writes (overwrites) the versioned app into `site`: its code, 40 payload files and, last,
/// its version.
fn write_app(site: &Path, version: &str) {
    for f in ["versioned.py", "common.py"] {
        let code = std::fs::read(repo().join("tests/backends").join(f)).unwrap();
        let name = if f == "versioned.py" { "app.py" } else { f };
        std::fs::write(site.join(name), code).unwrap();
    }
    std::fs::create_dir_all(site.join("wwwroot")).unwrap();
    for i in 0..40 {
        let body = format!("{version}:{i}:").repeat(200);
        std::fs::write(site.join(format!("wwwroot/asset{i}.txt")), body).unwrap();
    }
    std::fs::write(site.join("version.txt"), version).unwrap();
}

/// A site serving the versioned app with `settings`.
fn versioned_site(name: &str, attrs: &str, settings: &[(&str, &str)]) -> PathBuf {
    let site = temp_site(name);
    write_app(&site, "1");
    let attrs = format!("processPath=\"python3\" arguments=\"app.py\" {attrs}");
    std::fs::write(
        site.join("web.config"),
        web_config(&attrs, &handler_settings(settings)),
    )
    .unwrap();
    site
}

/// The default shadow folder of `site` (beside it).
fn shadow_base(site: &Path) -> PathBuf {
    let name = site.file_name().unwrap().to_string_lossy().into_owned();
    site.parent().unwrap().join(format!("{name}_ancm_shadow"))
}

fn generation_folders(site: &Path) -> Vec<String> {
    std::fs::read_dir(shadow_base(site))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `(version, pid)` of a `/version` answer.
fn version_of(r: &Response) -> Option<(u32, u32)> {
    let text = r.text();
    let (v, p) = text.split_once(' ')?;
    Some((v.parse().ok()?, p.parse().ok()?))
}

fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One client request: when it started and ended, and what came back.
struct Seen {
    start: Instant,
    end: Instant,
    status: u16,
    version: Option<(u32, u32)>,
}

#[test]
fn deploy_under_load_switches_versions_without_a_failed_request() {
    let site = versioned_site(
        "deploy-load",
        "startupTimeLimit=\"20\" shutdownTimeLimit=\"10\"",
        &[
            ("enableShadowCopy", "true"),
            ("fileChangeDebounceMilliseconds", "200"),
            ("healthCheckPath", "/health"),
        ],
    );
    let serve = Arc::new(Serve::start(&site));
    assert_eq!(version_of(&serve.get("/version")).map(|v| v.0), Some(1));

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (serve, stop, seen) = (serve.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let r = serve.get("/version");
                    mine.push(Seen {
                        start,
                        end: Instant::now(),
                        status: r.status,
                        version: version_of(&r),
                    });
                }
                seen.lock().unwrap().extend(mine);
            })
        })
        .collect();

    // 20 deploys of versions 2..=21, and a broken one (its process exits at start) after the
    // 10th: the old version must keep serving through it.
    let mut version = 1;
    for n in 1..=21 {
        if n == 11 {
            let failed_before = serve.log().matches("keeps serving").count();
            write_app(&site, "broken");
            assert!(
                wait_until(30, || serve.log().matches("keeps serving").count()
                    > failed_before),
                "the broken deploy was never tried:\n{}",
                serve.log()
            );
            assert_eq!(
                version_of(&serve.get("/version")).map(|v| v.0),
                Some(version),
                "the broken deploy did not leave version {version} serving"
            );
            continue;
        }
        version += 1;
        write_app(&site, &version.to_string());
        assert!(
            wait_until(30, || version_of(&serve.get("/version")).map(|v| v.0)
                == Some(version)),
            "version {version} never served:\n{}",
            serve.log()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }

    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    let failed: Vec<_> = seen
        .iter()
        .filter(|s| s.status != 200 || s.version.is_none())
        .map(|s| s.status)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        seen.len()
    );
    // After each switch, requests that start later get the new version: no request gets an
    // older version than one that had already been answered before it started.
    seen.sort_by_key(|s| s.end);
    let mut ends: Vec<(Instant, u32)> = Vec::new();
    let mut newest = 0;
    for s in &seen {
        newest = newest.max(s.version.unwrap().0);
        ends.push((s.end, newest));
    }
    for s in &seen {
        let before = ends.partition_point(|(end, _)| *end < s.start);
        let answered = if before == 0 { 0 } else { ends[before - 1].1 };
        assert!(
            s.version.unwrap().0 >= answered,
            "a request got version {} after version {answered} had been served",
            s.version.unwrap().0
        );
    }
    let versions: std::collections::BTreeSet<u32> =
        seen.iter().map(|s| s.version.unwrap().0).collect();
    assert!(
        versions.len() > 10,
        "the load saw too few versions: {versions:?}"
    );

    // No orphan process, no leftover generation folder: only the current one runs, and its
    // copy is the one folder left; after the stop, none.
    let (_, current) = version_of(&serve.get("/version")).unwrap();
    let pids: std::collections::BTreeSet<u32> = seen.iter().map(|s| s.version.unwrap().1).collect();
    for pid in pids.iter().filter(|p| **p != current) {
        assert!(
            wait_gone(*pid, 20),
            "process {pid} of an old generation still runs"
        );
    }
    assert!(
        wait_until(20, || generation_folders(&site).len() == 1),
        "generation folders left: {:?}",
        generation_folders(&site)
    );
    let serve = Arc::try_unwrap(serve).ok().unwrap();
    assert_eq!(serve.stop(), 0);
    assert!(wait_gone(current, 10));
    assert_eq!(generation_folders(&site), Vec::<String>::new());
    assert!(
        !shadow_base(&site).exists(),
        "the empty shadow folder was left"
    );
}

#[test]
fn shadow_copies_run_the_copy_and_stale_ones_are_cleaned_at_start() {
    let site = versioned_site(
        "deploy-shadow",
        r#"stdoutLogFile=".\logs\stdout""#,
        &[
            ("enableShadowCopy", "true"),
            ("shadowCopyDirectory", "../deploy-shadow-copies"),
        ],
    );
    let base = site.parent().unwrap().join("deploy-shadow-copies");
    // A generation folder a crashed host (pid 1 is never ours) left behind.
    std::fs::create_dir_all(base.join("g1-0-7/bin")).unwrap();
    // The stdout log folder (stdoutLogFile, .\logs\stdout here) is not copied.
    std::fs::create_dir_all(site.join("logs")).unwrap();
    std::fs::write(site.join("logs/stdout_1.log"), "old log").unwrap();
    let serve = Serve::start(&site);
    let r = serve.get("/json");
    let env = &r.json()["env"];
    // The physical path stays the site root; the process runs from the copy.
    assert_eq!(
        env["ASPNETCORE_IIS_PHYSICAL_PATH"].as_str(),
        Some(site.to_str().unwrap())
    );
    let (_, pid) = version_of(&serve.get("/version")).unwrap();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert!(cwd.starts_with(&base), "runs from {}", cwd.display());
    assert!(cwd.join("app.py").is_file() && cwd.join("wwwroot/asset39.txt").is_file());
    assert!(!cwd.join("logs").exists(), "the log folder was copied");
    assert!(
        !base.join("g1-0-7").exists(),
        "the stale copy was not removed"
    );
    // The site's own files are free to be overwritten and deleted while it runs.
    std::fs::remove_file(site.join("app.py")).unwrap();
    assert_eq!(serve.get("/version").status, 200);
    assert_eq!(serve.stop(), 0);
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn preload_starts_the_process_at_load_and_after_a_crash() {
    let site = temp_site("deploy-preload");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\"",
        backend("crash_on_request.py")
    );
    std::fs::write(
        site.join("web.config"),
        web_config(&attrs, &handler_settings(&[("preload", "true")])),
    )
    .unwrap();
    let serve = Serve::start(&site);
    // Started with no request made.
    serve.wait_log("started and is listening", 20);
    let first = serve.get("/pid").text().parse::<u32>().unwrap();
    assert!(serve
        .log()
        .contains(&format!("process {first} of generation 1 started")));
    let _ = serve.get("/crash");
    assert!(wait_gone(first, 10));
    // Restarted at once, not by the next request.
    assert!(
        wait_until(20, || serve
            .log()
            .matches("started and is listening")
            .count()
            >= 2),
        "no restart after the crash:\n{}",
        serve.log()
    );
    let second = serve.get("/pid").text().parse::<u32>().unwrap();
    assert_ne!(first, second);
    assert!(serve
        .log()
        .contains(&format!("process {second} of generation 1 started")));
}

#[test]
fn a_hung_process_is_replaced_by_the_health_check() {
    let site = versioned_site(
        "deploy-health",
        "shutdownTimeLimit=\"2\"",
        &[
            ("healthCheckPath", "/health"),
            ("healthCheckIntervalSeconds", "1"),
            ("healthCheckFailures", "2"),
        ],
    );
    let serve = Serve::start(&site);
    let (_, hung) = version_of(&serve.get("/version")).unwrap();
    assert_eq!(serve.get("/hang").status, 200);
    serve.wait_log("failed 2 health checks in a row", 20);
    let replaced = wait_until(20, || {
        version_of(&serve.get("/version")).is_some_and(|(_, pid)| pid != hung)
    });
    assert!(
        replaced,
        "the hung process was not replaced:\n{}",
        serve.log()
    );
    assert!(wait_gone(hung, 15), "the hung process {hung} still runs");
}

#[test]
fn a_process_that_fails_its_health_check_at_start_is_a_failed_start() {
    // The sample app answers 404 for an unknown path: it never becomes healthy.
    let site = temp_site("deploy-unhealthy");
    let app = repo().join("examples/hello/app.py");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\" startupTimeLimit=\"2\"",
        app.display()
    );
    std::fs::write(
        site.join("web.config"),
        web_config(&attrs, &handler_settings(&[("healthCheckPath", "/ready")])),
    )
    .unwrap();
    let serve = Serve::start(&site);
    let r = serve.get("/");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-ancm-status"), Some("502.5"));
    assert!(r.text().contains("healthCheckPath"), "{}", r.text());
}

#[test]
fn recycle_on_file_change_restarts_without_shadow_copies() {
    let site = temp_site("deploy-recycle-files");
    write_app(&site, "1");
    std::fs::write(
        site.join("web.config"),
        web_config(
            "processPath=\"python3\" arguments=\"app.py\"",
            "<recycleOnFileChange><file path=\"version.txt\"/></recycleOnFileChange>\
             <handlerSettings><handlerSetting name=\"fileChangeDebounceMilliseconds\" value=\"100\"/></handlerSettings>",
        ),
    )
    .unwrap();
    let serve = Serve::start(&site);
    assert_eq!(version_of(&serve.get("/version")).map(|v| v.0), Some(1));
    // A file not listed changes nothing; the listed one starts a new generation.
    std::fs::write(site.join("other.txt"), "x").unwrap();
    std::fs::write(site.join("version.txt"), "2").unwrap();
    assert!(
        wait_until(20, || version_of(&serve.get("/version")).map(|v| v.0)
            == Some(2)),
        "{}",
        serve.log()
    );
}

#[test]
fn a_request_in_flight_at_the_switch_finishes_on_the_old_process() {
    let site = versioned_site(
        "deploy-drain",
        "shutdownTimeLimit=\"20\"",
        &[
            ("enableShadowCopy", "true"),
            ("fileChangeDebounceMilliseconds", "100"),
        ],
    );
    let serve = Arc::new(Serve::start(&site));
    let (_, old) = version_of(&serve.get("/version")).unwrap();
    let slow = {
        let serve = serve.clone();
        std::thread::spawn(move || serve.get("/sleep?s=3"))
    };
    std::thread::sleep(Duration::from_millis(300));
    write_app(&site, "2");
    assert!(wait_until(20, || version_of(&serve.get("/version"))
        .map(|v| v.0)
        == Some(2)));
    // The old process takes no new request but is not stopped under the one it is serving:
    // no shutdown event before that request is done.
    assert!(alive(old));
    std::thread::sleep(Duration::from_millis(300));
    let shutdown = format!("sent the shutdown event to process {old}");
    assert!(!serve.log().contains(&shutdown), "{}", serve.log());
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slept 3\n"));
    serve.wait_log(&shutdown, 10);
    assert!(wait_gone(old, 20));
    serve.wait_log(&format!("process {old} drained"), 5);
    drop(serve);
    let _ = std::fs::remove_dir_all(shadow_base(&site));
}

#[test]
fn websocket_sessions_of_a_draining_process_get_going_away_on_both_sides() {
    let site = temp_site("deploy-ws");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\" shutdownTimeLimit=\"10\"",
        backend("ws_echo.py")
    );
    std::fs::write(
        site.join("web.config"),
        web_config(
            &attrs,
            "<recycleOnFileChange><file path=\"restart.txt\"/></recycleOnFileChange>\
             <handlerSettings><handlerSetting name=\"fileChangeDebounceMilliseconds\" value=\"100\"/>\
             <handlerSetting name=\"webSocketDrainSeconds\" value=\"1\"/></handlerSettings>",
        ),
    )
    .unwrap();
    let serve = Serve::start(&site);
    let mut client = std::process::Command::new("python3")
        .arg(repo().join("tests/ws/ws_drain.py"))
        .arg(format!("ws://{}", serve.addr))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "open", "{}", serve.log());
    std::fs::write(site.join("restart.txt"), "now").unwrap();
    serve.wait_log("generation 2: switched", 20);
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "closed 1001", "{}", serve.log());
    assert!(client.wait().unwrap().success());
    // The backend was told by the proxy (it did not start the close itself).
    serve.wait_log("the client closed first, with code 1001", 10);
    serve.wait_log("generation 1: drained", 20);
}

#[test]
fn the_stdout_log_written_into_the_site_is_not_a_change() {
    // stdoutLogFile's default (.\aspnetcore-stdout) puts the log files in the site root itself.
    let site = versioned_site(
        "deploy-stdout",
        r#"stdoutLogEnabled="true""#,
        &[
            ("enableShadowCopy", "true"),
            ("fileChangeDebounceMilliseconds", "100"),
        ],
    );
    let serve = Serve::start(&site);
    for _ in 0..20 {
        let r = serve.get("/version");
        assert_eq!(r.status, 200, "{}\n{}", r.text(), serve.log());
    }
    let logs = || {
        std::fs::read_dir(&site)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("aspnetcore-stdout")
            })
            .count()
    };
    assert!(wait_until(10, || logs() > 0), "no stdout log in the site");
    // Several poll and debounce intervals: the log's growth starts no generation.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!serve.log().contains("generation 2"), "{}", serve.log());
    assert_eq!(serve.stop(), 0);
}

#[test]
fn a_deploy_during_a_start_does_not_pull_the_files_from_under_it() {
    let site = temp_site("deploy-during-start");
    write_app(&site, "1");
    std::fs::write(
        site.join("web.config"),
        web_config(
            "processPath=\"python3\" arguments=\"app.py\"",
            "<environmentVariables><environmentVariable name=\"VERSIONED_START_DELAY\" value=\"1\"/></environmentVariables>\
             <handlerSettings><handlerSetting name=\"enableShadowCopy\" value=\"true\"/>\
             <handlerSetting name=\"fileChangeDebounceMilliseconds\" value=\"100\"/></handlerSettings>",
        ),
    )
    .unwrap();
    let serve = Arc::new(Serve::start(&site));
    // The first request starts version 1, which reads its files a second later; the deploy of
    // version 2 lands meanwhile.
    let first = {
        let serve = serve.clone();
        std::thread::spawn(move || serve.get("/version"))
    };
    serve.wait_log("started process", 10);
    write_app(&site, "2");
    let r = first.join().unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), serve.log());
    assert!(
        wait_until(20, || version_of(&serve.get("/version")).map(|v| v.0)
            == Some(2)),
        "{}",
        serve.log()
    );
    drop(serve);
    let _ = std::fs::remove_dir_all(shadow_base(&site));
}
