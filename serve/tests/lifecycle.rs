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
        assert_eq!(serve.get("/crash").status, 502);
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
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    assert!(!results.iter().any(|(_, p)| *p == victim));
}
