//! Process lifecycle through ancm-serve: configuration changes, rapid fails, stdout logs, output
//! capture, ungraceful shutdowns, several processes per application.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn hello_config(greeting: &str, attrs: &str) -> String {
    let app = repo().join("examples/hello/app.py");
    web_config(
        &format!("processPath=\"python3\" arguments=\"{}\" {attrs}", app.display()),
        &format!(
            "<environmentVariables><environmentVariable name=\"HELLO_GREETING\" value=\"{greeting}\" /></environmentVariables>"
        ),
    )
}

#[test]
fn web_config_change_recycles_with_no_failed_request_and_bad_config_keeps_serving() {
    let site = temp_site("reload");
    std::fs::write(site.join("web.config"), hello_config("one", "")).unwrap();
    let serve = Arc::new(Serve::start(&site));
    let first = serve.get("/json").json();
    assert_eq!(first["env"]["HELLO_GREETING"], "one");
    let old_pid = first["pid"].as_u64().unwrap() as u32;

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (serve, stop, failures, served) = (
                serve.clone(),
                stop.clone(),
                failures.clone(),
                served.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = serve.get("/pid");
                    if r.status == 200 {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed during recycle: {} {}", r.status, r.text());
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(site.join("web.config"), hello_config("two", "")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let j = serve.get("/json").json();
        if j["env"]["HELLO_GREETING"] == "two" {
            assert_ne!(j["pid"].as_u64().unwrap() as u32, old_pid);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new configuration was never applied"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed across the recycle"
    );
    assert!(served.load(Ordering::Relaxed) > 10);
    assert!(wait_gone(old_pid, 15), "the old process was not stopped");

    // An invalid configuration is logged and ignored.
    std::fs::write(
        site.join("web.config"),
        hello_config("three", "startupTimeLimit=\"-1\""),
    )
    .unwrap();
    serve.wait_log("startupTimeLimit", 10);
    let j = serve.get("/json").json();
    assert_eq!(j["env"]["HELLO_GREETING"], "two");
}

#[test]
fn rapid_fails_disable_the_app_with_a_502_5_saying_when_it_retries() {
    let site = temp_site("rapid");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\" rapidFailsPerMinute=\"2\"",
        backend("crash_on_request.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    let serve = Serve::start(&site);
    for i in 0..3 {
        let pid = serve
            .get("/pid")
            .text()
            .parse::<u32>()
            .unwrap_or_else(|_| panic!("start {i} failed"));
        assert_eq!(serve.request("POST", "/crash", &[], b"").status, 502);
        assert!(wait_gone(pid, 10));
        serve.wait_log(&format!("process {pid} exited with code 3"), 5);
    }
    let r = serve.get("/pid");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-ancm-status"), Some("502.5"));
    let t = r.text();
    assert!(
        t.contains("rapidFailsPerMinute") && t.contains("started again in"),
        "{t}"
    );
}

#[test]
fn stdout_log_file_captures_output_and_missing_folders_are_created() {
    let site = temp_site("stdoutlog");
    std::fs::write(
        site.join("web.config"),
        hello_config(
            "log",
            "stdoutLogEnabled=\"true\" stdoutLogFile=\".\\logs\\deep\\stdout\"",
        ),
    )
    .unwrap();
    let serve = Serve::start(&site);
    let pid = serve.get("/pid").text();
    let dir = site.join("logs/deep");
    let name = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("stdout_") && n.ends_with(&format!("_{pid}.log")))
        .expect("no stdout_<stamp>_<pid>.log");
    assert_eq!(
        name.len(),
        "stdout_".len() + 14 + 1 + pid.len() + 4,
        "{name}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(dir.join(&name))
        .unwrap()
        .contains("listening on")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the app's stderr is not in the log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stdout_logs_rotate_at_the_size_and_keep_at_most_the_file_count() {
    let site = temp_site("stdoutrotate");
    // 1,000 lines of 100 bytes at startup; 8 KiB files hold 81 whole lines each.
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\" stdoutLogEnabled=\"true\" stdoutLogFile=\".\\logs\\out\"",
        backend("chatty_startup.py")
    );
    let settings = "<handlerSettings>\
        <handlerSetting name=\"stdoutLogMaxSizeKB\" value=\"8\" />\
        <handlerSetting name=\"stdoutLogMaxFiles\" value=\"3\" />\
        </handlerSettings>";
    std::fs::write(site.join("web.config"), web_config(&attrs, settings)).unwrap();
    let serve = Serve::start(&site);
    let pid = serve.get("/pid").text();
    let dir = site.join("logs");
    let read_logs = || {
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(e.path()).unwrap())
            })
            .collect();
        // Segment order: `_<pid>.log`, then `_<pid>_<n>.log` by n.
        files.sort_by_key(|(n, _)| {
            let stem = n.trim_end_matches(".log");
            let rest = stem
                .rsplit_once(&format!("_{pid}"))
                .map(|(_, r)| r)
                .unwrap_or("");
            rest.trim_start_matches('_').parse::<u32>().unwrap_or(0)
        });
        files
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let files = loop {
        let files = read_logs();
        if files.iter().any(|(_, t)| t.contains("chatty line 01000 ")) {
            break files;
        }
        assert!(std::time::Instant::now() < deadline, "{files:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        files.len() <= 3,
        "more files than stdoutLogMaxFiles: {files:?}"
    );
    assert!(files.len() >= 2, "no rotation happened: {files:?}");
    for (name, text) in &files {
        assert!(
            name.starts_with("out_") && name.contains(&format!("_{pid}")),
            "{name}"
        );
        assert!(text.len() <= 8 * 1024, "{name} is {} bytes", text.len());
    }
    // What is kept is the end of the output, whole lines in order, nothing lost in between.
    let numbers: Vec<u32> = files
        .iter()
        .flat_map(|(_, t)| t.lines())
        .filter_map(|l| l.strip_prefix("chatty line "))
        .map(|l| l[..5].parse().unwrap())
        .collect();
    assert_eq!(*numbers.last().unwrap(), 1000);
    let first = numbers[0];
    assert!(first > 1, "the oldest files were not deleted");
    assert_eq!(numbers, (first..=1000).collect::<Vec<_>>());
}

/// Runs a site whose process crashes twice (the second restart waits out the crash back-off,
/// logged at DEBUG) with `debugLevel` = `level`, and returns its debug log.
fn debug_log_after_two_crashes(level: &str) -> String {
    let site = temp_site("debuglog");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\"",
        backend("crash_on_request.py")
    );
    let settings = format!(
        "<handlerSettings>\
         <handlerSetting name=\"debugFile\" value=\".\\diag\\debug.log\" />\
         <handlerSetting name=\"debugLevel\" value=\"{level}\" />\
         </handlerSettings>"
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, &settings)).unwrap();
    let serve = Serve::start(&site);
    for _ in 0..2 {
        let pid: u32 = serve.get("/pid").text().parse().unwrap();
        assert_eq!(serve.request("POST", "/crash", &[], b"").status, 502);
        assert!(wait_gone(pid, 10));
        serve.wait_log(&format!("process {pid} exited with code 3"), 5);
    }
    assert_eq!(serve.get("/pid").status, 200);
    drop(serve);
    std::fs::read_to_string(site.join("diag/debug.log")).expect("no debug log")
}

#[test]
fn debug_log_is_written_at_the_configured_level() {
    let lines_at = |text: &str, level: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("] [{level}] ")))
            .count()
    };
    let warn = debug_log_after_two_crashes("FILE,WARNING");
    assert!(lines_at(&warn, "WARN") >= 2, "{warn}");
    assert_eq!(lines_at(&warn, "INFO"), 0, "{warn}");
    let line = warn
        .lines()
        .find(|l| l.contains("exited with code 3"))
        .unwrap();
    // `[<UTC time>, PID: <host pid>] [<level>] <message>`, as ANCM's lines.
    assert!(
        line.starts_with("[20") && line.contains("Z, PID: "),
        "{line}"
    );

    let info = debug_log_after_two_crashes("INFO");
    assert!(
        info.contains("] [INFO] ") && info.contains("started"),
        "{info}"
    );
    assert_eq!(lines_at(&info, "DEBUG"), 0, "{info}");

    let trace = debug_log_after_two_crashes("TRACE,FILE");
    assert!(
        trace.contains("] [DEBUG] ") && trace.contains("crash back-off"),
        "{trace}"
    );
}

#[test]
fn failure_page_shows_the_first_30000_characters_of_output_escaped() {
    let site = temp_site("chatty");
    let code = "import sys; [print('chatty line ' + str(i).zfill(5) + ' ' + chr(60) + 'b' + chr(62) + 'x' * 78) for i in range(1, 1001)]; sys.exit(5)";
    let attrs = format!("processPath=\"python3\" arguments=\"-c &quot;{code}&quot;\"");
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    let serve = Serve::start(&site);
    let r = serve.get("/");
    assert_eq!(r.status, 502);
    let t = r.text();
    assert!(t.contains("exited with code 5"), "{t}");
    assert!(
        t.contains("chatty line 00300 &lt;b&gt;"),
        "line 300 is missing"
    );
    assert!(
        !t.contains("chatty line 00301"),
        "more than 30,000 characters were shown"
    );
    assert!(!t.contains("<b>x"), "output was not escaped");
}

#[test]
fn an_app_ignoring_the_shutdown_event_is_killed_after_shutdown_time_limit() {
    let site = temp_site("ignore");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\" shutdownTimeLimit=\"1\"",
        backend("ignore_shutdown.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    let serve = Serve::start(&site);
    let pid = serve.get("/pid").text().parse::<u32>().unwrap();
    std::fs::write(site.join("app_offline.htm"), "off").unwrap();
    assert!(wait_gone(pid, 10), "not killed after shutdownTimeLimit");
    serve.wait_log(&format!("failed to gracefully shut down process {pid}"), 5);
}

#[test]
fn several_processes_share_the_load_and_a_killed_one_is_avoided() {
    let site = temp_site("multi");
    std::fs::write(
        site.join("web.config"),
        hello_config("multi", "processesPerApplication=\"3\""),
    )
    .unwrap();
    let serve = Arc::new(Serve::start(&site));
    let burst = |n: usize| -> Vec<(u16, u32)> {
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let s = serve.clone();
                std::thread::spawn(move || {
                    let r = s.get("/json?sleep");
                    let pid = if r.status == 200 {
                        r.json()["pid"].as_u64().unwrap() as u32
                    } else {
                        0
                    };
                    (r.status, pid)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    };
    // Sequential requests start the slots one after another, as ANCM's round robin does.
    let pids: std::collections::HashSet<u32> = (0..6)
        .map(|_| serve.get("/json").json()["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 3, "{pids:?}");
    let victim = *pids.iter().next().unwrap();
    signal(victim, "KILL");
    assert!(wait_gone(victim, 10));
    let results = burst(30);
    assert!(
        results.iter().all(|(s, _)| *s == 200),
        "{results:?}\n{}",
        serve.log()
    );
    assert!(!results.iter().any(|(_, p)| *p == victim));
}

/// Keeps 4 threads sending requests while `during` runs; returns (failures, distinct pids).
fn under_load(
    serve: &Arc<Serve>,
    during: impl FnOnce(),
) -> (usize, std::collections::HashSet<u32>) {
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let pids = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (serve, stop, failures, pids) =
                (serve.clone(), stop.clone(), failures.clone(), pids.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = serve.get("/pid");
                    match r.text().parse::<u32>() {
                        Ok(pid) if r.status == 200 => {
                            pids.lock().unwrap().insert(pid);
                        }
                        _ => {
                            eprintln!("failed: {} {}", r.status, r.text());
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    during();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let pids = pids.lock().unwrap().clone();
    (failures.load(Ordering::Relaxed), pids)
}

fn handler_settings(pairs: &[(&str, &str)]) -> String {
    let mut s = String::from("<handlerSettings>");
    for (k, v) in pairs {
        s.push_str(&format!("<handlerSetting name=\"{k}\" value=\"{v}\" />"));
    }
    s + "</handlerSettings>"
}

fn hello_with(name: &str, inner: &str) -> std::path::PathBuf {
    let site = temp_site(name);
    let app = repo().join("examples/hello/app.py");
    let attrs = format!("processPath=\"python3\" arguments=\"{}\"", app.display());
    std::fs::write(site.join("web.config"), web_config(&attrs, inner)).unwrap();
    site
}

#[test]
fn recycle_after_requests_overlaps_with_no_failed_request() {
    let site = hello_with(
        "recycle-n",
        &handler_settings(&[("recycleAfterRequests", "40")]),
    );
    let serve = Arc::new(Serve::start(&site));
    let (failures, pids) = under_load(&serve, || {
        serve.wait_log("recycleAfterRequests = 40", 20);
        serve.wait_log("sent the shutdown event", 20);
        std::thread::sleep(Duration::from_millis(500));
    });
    assert_eq!(failures, 0);
    assert!(pids.len() >= 2, "never recycled: {pids:?}");
    serve.wait_log("recycleAfterRequests = 40", 5);
    for pid in pids
        .iter()
        .filter(|p| **p != serve.get("/pid").text().parse::<u32>().unwrap())
    {
        assert!(
            wait_gone(*pid, 15),
            "recycled process {pid} was not stopped"
        );
    }
}

#[test]
fn recycle_trigger_file_and_memory_limit_recycle_without_app_offline() {
    let site = hello_with(
        "recycle-trigger",
        &handler_settings(&[("recycleTriggerFile", "restart.txt")]),
    );
    let serve = Arc::new(Serve::start(&site));
    let first = serve.get("/pid").text().parse::<u32>().unwrap();
    let (failures, pids) = under_load(&serve, || {
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(site.join("restart.txt"), "now").unwrap();
        serve.wait_log("recycleTriggerFile was touched", 20);
        serve.wait_log("sent the shutdown event", 20);
        std::thread::sleep(Duration::from_millis(500));
    });
    assert_eq!(failures, 0);
    assert!(pids.len() >= 2, "{pids:?}");
    assert!(wait_gone(first, 15));
    drop(serve);

    // Any Python process uses more than 1 MB: recycled as soon as the limit is checked.
    let site = hello_with(
        "recycle-mem",
        &handler_settings(&[("recycleAboveMemoryMB", "1")]),
    );
    let serve = Serve::start(&site);
    let first = serve.get("/pid").text().parse::<u32>().unwrap();
    serve.wait_log("above recycleAboveMemoryMB = 1", 10);
    assert!(wait_gone(first, 15));
    assert_eq!(serve.get("/pid").status, 200);
}

#[test]
fn invalid_project_handler_setting_is_a_config_error() {
    let site = hello_with(
        "recycle-bad",
        &handler_settings(&[("recycleAfterRequests", "many")]),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ancm-serve"))
        .arg(site.join("web.config"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("handlerSetting[@name='recycleAfterRequests']/@value = \"many\""),
        "{err}"
    );
}

#[test]
fn a_crash_loop_backs_off_between_restarts() {
    let site = temp_site("backoff");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\" rapidFailsPerMinute=\"100\"",
        backend("crash_on_request.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    let serve = Serve::start(&site);
    for _ in 0..4 {
        let pid = serve.get("/pid").text().parse::<u32>().unwrap();
        serve.request("POST", "/crash", &[], b"");
        assert!(wait_gone(pid, 10));
        serve.wait_log(&format!("process {pid} exited"), 5);
    }
    assert_eq!(serve.get("/pid").status, 200);
    let log = serve.log();
    for ms in [250, 500, 1000] {
        assert!(
            log.contains(&format!("restart back-off {ms} ms")),
            "no {ms} ms back-off:\n{log}"
        );
    }
}

#[test]
fn http_platform_handler_configs_work_with_their_port_substitution() {
    let site = temp_site("hph");
    let cfg = format!(
        "<configuration><system.webServer><httpPlatform processPath=\"python3\" arguments=\"{} %HTTP_PLATFORM_PORT%\" startupTimeLimit=\"20\" /></system.webServer></configuration>",
        backend("argv_port.py")
    );
    std::fs::write(site.join("web.config"), cfg).unwrap();
    let serve = Serve::start(&site);
    let r = serve.get("/");
    assert_eq!(r.status, 200, "{}", r.text());
    let j: serde_json::Value = r.json();
    let port = j["env"]["HTTP_PLATFORM_PORT"].as_str().unwrap();
    assert_eq!(j["argv"][0], port);
    assert!(port.parse::<u16>().unwrap() >= 10000);
}

#[test]
fn an_uncreatable_stdout_log_is_reported_and_the_app_still_starts() {
    let site = temp_site("badlog");
    // A folder cannot be created below a file: the log cannot exist.
    std::fs::write(
        site.join("web.config"),
        hello_config(
            "log",
            "stdoutLogEnabled=\"true\" stdoutLogFile=\".\\web.config\\logs\\stdout\"",
        ),
    )
    .unwrap();
    let serve = Serve::start(&site);
    let r = serve.get("/pid");
    assert_eq!(r.status, 200, "{}", r.text());
    serve.wait_log("could not create the stdout log file", 5);
}

/// A web.config for tests/backends/versioned.py (common.py's base: the shutdown event or
/// SIGTERM ends it at once, its requests in flight cut off) with `generation` in its
/// environment, so that each change is a real configuration change.
fn abrupt_config(generation: u32) -> String {
    web_config(
        &format!(
            "processPath=\"python3\" arguments=\"{}\" shutdownTimeLimit=\"20\"",
            backend("versioned.py")
        ),
        &format!(
            "<environmentVariables><environmentVariable name=\"HELLO_GENERATION\" value=\"{generation}\" /></environmentVariables>"
        ),
    )
}

#[test]
fn web_config_changes_under_load_fail_no_request_of_an_app_that_exits_at_once() {
    // The old app's requests in flight finish before its process gets the shutdown event
    // (which this app obeys at once, cutting off whatever it still serves).
    let site = temp_site("reload-abrupt");
    std::fs::write(site.join("version.txt"), "v1").unwrap();
    std::fs::write(site.join("web.config"), abrupt_config(0)).unwrap();
    let serve = Arc::new(Serve::start(&site));
    assert_eq!(serve.get("/version").status, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..6)
        .map(|_| {
            let (serve, stop, failures, served) = (
                serve.clone(),
                stop.clone(),
                failures.clone(),
                served.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = serve.get("/sleep?s=0.3");
                    if r.status == 200 {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed during reload: {} {}", r.status, r.text());
                    }
                }
            })
        })
        .collect();
    for generation in 1..=4u32 {
        std::thread::sleep(Duration::from_millis(400));
        std::fs::write(site.join("web.config"), abrupt_config(generation)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let want = generation.to_string();
        while serve.get("/json").json()["env"]["HELLO_GENERATION"].as_str() != Some(want.as_str()) {
            assert!(
                std::time::Instant::now() < deadline,
                "change {generation} was never applied"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed across the web.config changes:\n{}",
        serve.log()
    );
    assert!(served.load(Ordering::Relaxed) > 20);
}
