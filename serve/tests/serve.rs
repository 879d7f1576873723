//! End-to-end tests of ancm-serve with real backend processes and real sockets.

mod common;

use common::*;
use std::time::Duration;

fn hello_site(name: &str, extra_attrs: &str, inner: &str) -> std::path::PathBuf {
    let site = temp_site(name);
    let app = repo().join("examples/hello/app.py");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\" {extra_attrs}",
        app.display()
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, inner)).unwrap();
    site
}

fn header_values<'a>(json: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

#[test]
fn first_request_starts_the_app_and_later_requests_reuse_it() {
    let site = hello_site(
        "basic",
        "",
        "<environmentVariables><environmentVariable name=\"HELLO_GREETING\" value=\"hi %HOME%\" /></environmentVariables>",
    );
    let serve = Serve::start(&site);
    let r = serve.get("/json");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let pid = j["pid"].as_u64().unwrap();
    let env = &j["env"];
    assert_eq!(env["ASPNETCORE_APPL_PATH"], "/");
    assert_eq!(env["ASPNETCORE_IIS_HTTPAUTH"], "anonymous;");
    assert_eq!(
        env["ASPNETCORE_IIS_PHYSICAL_PATH"],
        site.canonicalize().unwrap().display().to_string()
    );
    let port: u16 = env["ASPNETCORE_PORT"].as_str().unwrap().parse().unwrap();
    assert!((10000..=48000).contains(&port));
    let home = std::env::var("HOME").unwrap();
    assert_eq!(env["HELLO_GREETING"], format!("hi {home}"));
    // The app answers 400 on a wrong token, so 200 proves the right one arrived; exactly one.
    assert_eq!(header_values(&j, "ms-aspnetcore-token").len(), 1);
    for _ in 0..5 {
        let again = serve.get("/json").json();
        assert_eq!(
            again["pid"].as_u64().unwrap(),
            pid,
            "a second process was started"
        );
    }
    assert_eq!(serve.log().matches("started process").count(), 1);
}

#[test]
fn twenty_concurrent_first_requests_start_exactly_one_process() {
    let site = hello_site("concurrent", "", "");
    let serve = std::sync::Arc::new(Serve::start(&site));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let s = serve.clone();
            std::thread::spawn(move || s.get("/json"))
        })
        .collect();
    let pids: std::collections::HashSet<u64> = threads
        .into_iter()
        .map(|t| {
            let r = t.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["pid"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 1, "requests were served by {pids:?}");
    assert_eq!(
        serve.log().matches("started process").count(),
        1,
        "{}",
        serve.log()
    );
}

#[test]
fn token_and_forwarded_headers_and_no_forged_ms_aspnetcore_headers() {
    let site = temp_site("headers");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\"",
        backend("env_dump.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    let serve = Serve::start(&site);
    let mut c = Conn::open(serve.addr);
    let local = c.stream().local_addr().unwrap();
    c.send(
        "GET",
        "/a%2Fb/../c?x=%3F&y=1",
        &[
            ("MS-ASPNETCORE-TOKEN", "forged"),
            ("MS-ASPNETCORE-EVENT", "shutdown"),
            ("X-Forwarded-For", "203.0.113.9:1234"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "must-not-pass"),
            ("Keep-Alive", "timeout=5"),
            ("X-Custom", "v1"),
            ("X-Custom", "v2"),
            ("Host", "example.test:8080"),
        ],
        b"",
    );
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    let j = r.json();
    let token = j["env"]["ASPNETCORE_TOKEN"].as_str().unwrap();
    assert_eq!(token.len(), 32);
    assert_eq!(header_values(&j, "ms-aspnetcore-token"), vec![token]);
    assert!(header_values(&j, "ms-aspnetcore-event").is_empty());
    assert_eq!(
        header_values(&j, "x-forwarded-for"),
        vec![format!("203.0.113.9:1234, 127.0.0.1:{}", local.port()).as_str()]
    );
    assert_eq!(header_values(&j, "x-forwarded-proto"), vec!["http"]);
    assert!(header_values(&j, "x-hop").is_empty());
    assert!(header_values(&j, "keep-alive").is_empty());
    assert!(header_values(&j, "connection").is_empty());
    assert_eq!(header_values(&j, "x-custom"), vec!["v1", "v2"]);
    assert_eq!(header_values(&j, "host"), vec!["example.test:8080"]);
    assert_eq!(j["path"], "/a%2Fb/../c?x=%3F&y=1");
    // The token is never logged.
    assert!(!serve.log().contains(token));
}

#[test]
fn fifty_mib_uploads_arrive_byte_exact() {
    let site = hello_site("upload", "", "");
    let serve = Serve::start(&site);
    let data = pattern(50 << 20);
    let want = sha256_hex(&data);
    for chunked in [false, true] {
        let headers: &[(&str, &str)] = if chunked {
            &[("Transfer-Encoding", "chunked")]
        } else {
            &[]
        };
        let r = serve.request("POST", "/json", headers, &data);
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(
            j["body_len"].as_u64().unwrap(),
            data.len() as u64,
            "chunked={chunked}"
        );
        assert_eq!(j["body_sha256"], want.as_str(), "chunked={chunked}");
    }
    let r = serve.get("/bytes?n=20000000");
    assert_eq!(r.body.len(), 20_000_000);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 256) as u8));
}

#[test]
fn streamed_chunks_reach_the_client_before_the_backend_finishes() {
    let site = hello_site("stream", "", "");
    let serve = Serve::start(&site);
    let mut c = Conn::open(serve.addr);
    // The backend waits 30 s between chunks; the first must arrive long before that.
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    c.send("GET", "/stream?n=2&delay=30", &[], b"");
    let (status, _) = c.read_head();
    assert_eq!(status, 200);
    assert_eq!(c.read_chunk().unwrap(), b"chunk 0\n");
}

#[test]
fn startup_failure_gives_the_502_5_page_with_the_output() {
    let site = temp_site("startfail");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{} 7\" startupTimeLimit=\"10\"",
        backend("crash_at_startup.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    let serve = Serve::start(&site);
    let r = serve.get("/");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-ancm-status"), Some("502.5"));
    let page = r.text();
    assert!(page.contains("502.5"), "{page}");
    assert!(page.contains("exited with code 7"), "{page}");
    assert!(
        page.contains("crash_at_startup"),
        "the child's output is missing: {page}"
    );
    // Two attempts, as ANCM.
    assert_eq!(
        serve.log().matches("started process").count(),
        2,
        "{}",
        serve.log()
    );
}

#[test]
fn missing_program_gives_502_5_naming_it_and_disabled_page_is_plain() {
    let site = temp_site("notfound");
    std::fs::write(
        site.join("web.config"),
        web_config("processPath=\"no-such-program-xyz\"", ""),
    )
    .unwrap();
    let serve = Serve::start(&site);
    let r = serve.get("/");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("no-such-program-xyz"), "{}", r.text());
    assert!(r.text().contains("was not found"), "{}", r.text());
    drop(serve);

    std::fs::write(
        site.join("web.config"),
        web_config(
            "processPath=\"no-such-program-xyz\" disableStartUpErrorPage=\"true\"",
            "",
        ),
    )
    .unwrap();
    let serve = Serve::start(&site);
    let r = serve.get("/");
    assert_eq!(r.status, 502);
    assert!(!r.text().contains("no-such-program-xyz"));
}

#[test]
fn invalid_aspnetcore_port_gives_plain_502() {
    let site = hello_site(
        "badport",
        "",
        "<environmentVariables><environmentVariable name=\"ASPNETCORE_PORT\" value=\"1024\" /></environmentVariables>",
    );
    let serve = Serve::start(&site);
    let r = serve.get("/");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-ancm-status"), Some("502"));
    serve.wait_log("1025–48000", 5);
}

#[test]
fn invalid_configs_exit_2_with_one_line_naming_the_rule() {
    let site = temp_site("badconfig");
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ancm-serve"))
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cfg = site.join("web.config");
    std::fs::write(
        &cfg,
        web_config("processPath=\"python3\" startupTimeLimit=\"9999\"", ""),
    )
    .unwrap();
    let (code, err) = run(&[cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("aspNetCore/@startupTimeLimit = \"9999\": must be 0–3600 seconds"),
        "{err}"
    );

    std::fs::write(
        &cfg,
        "<configuration><system.webServer></system.webServer></configuration>",
    )
    .unwrap();
    let (code, err) = run(&[cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("system.webServer/aspNetCore"), "{err}");

    std::fs::write(&cfg, "<configuration><system.webServer>").unwrap();
    let (code, _) = run(&[cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2));

    let (code, err) = run(&[site.join("missing.config").to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("missing.config"), "{err}");

    let (code, _) = run(&["--listen", "not-an-address", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    std::fs::write(&cfg, web_config("processPath=\"python3\"", "")).unwrap();
    let (code, err) = run(&["--app-path", "sub", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--app-path"), "{err}");
}

/// Each worker listens on its own `SO_REUSEPORT` socket, which another process could join
/// silently; a second ancm-serve on a taken address must still fail as a plain bind does, and
/// the first keeps answering.
#[test]
fn an_address_already_served_is_refused_to_a_second_instance() {
    let site = hello_site("twice", "", "");
    let serve = Serve::start(&site);
    assert_eq!(serve.get("/").status, 200);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ancm-serve"))
        .args(["--listen", &serve.addr.to_string()])
        .arg(site.join("web.config"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
    for _ in 0..8 {
        assert_eq!(serve.get("/").status, 200);
    }
}

#[test]
fn sigterm_stops_the_app_gracefully_and_exits_0() {
    let site = hello_site("sigterm", "", "");
    let serve = Serve::start_args(&site, &["--app-path", "/sub"]);
    let j = serve.get("/sub/json").json();
    assert_eq!(j["env"]["ASPNETCORE_APPL_PATH"], "/sub");
    let pid = j["pid"].as_u64().unwrap() as u32;
    assert!(alive(pid));
    let log = serve.log.clone();
    assert_eq!(serve.stop(), 0);
    assert!(wait_gone(pid, 10), "the backend outlived ancm-serve");
    assert!(
        log.lock().unwrap().contains("sent the shutdown event"),
        "{}",
        log.lock().unwrap()
    );
}

#[test]
fn backend_dies_with_the_host_even_on_sigkill() {
    let site = hello_site("sigkill", "", "");
    let serve = Serve::start(&site);
    let pid = serve.get("/pid").text().parse::<u32>().unwrap();
    signal(serve.child.id(), "KILL");
    assert!(
        wait_gone(pid, 10),
        "the backend outlived a SIGKILLed ancm-serve"
    );
}

#[test]
fn app_offline_htm_answers_503_with_its_bytes_then_the_app_comes_back() {
    let site = hello_site("offline", "", "");
    let serve = Serve::start(&site);
    let pid = serve.get("/pid").text().parse::<u32>().unwrap();
    std::fs::write(site.join("app_offline.htm"), "<p>down for maintenance</p>").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = serve.get("/pid");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.text(), "<p>down for maintenance</p>");
    assert!(
        wait_gone(pid, 15),
        "the app was not stopped when app_offline.htm appeared"
    );
    std::fs::remove_file(site.join("app_offline.htm")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = serve.get("/pid");
    assert_eq!(r.status, 200);
    assert_ne!(r.text().parse::<u32>().unwrap(), pid);
}

/// A POST in flight when its process dies gets 502.3 (ANCM's behaviour); a GET would be tried
/// once more on a new process (see docs/forwarding.md), which the next test shows.
#[test]
fn a_crashed_backend_is_restarted_by_the_next_request() {
    let site = temp_site("crash");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\"",
        backend("crash_on_request.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    let serve = Serve::start(&site);
    let pid1 = serve.get("/pid").text().parse::<u32>().unwrap();
    let r = serve.request("POST", "/crash", &[], b"");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-ancm-status"), Some("502.3"));
    assert!(wait_gone(pid1, 10));
    serve.wait_log(&format!("process {pid1} exited with code 3"), 5);
    let pid2 = serve.get("/pid").text().parse::<u32>().unwrap();
    assert_ne!(pid1, pid2);
}

fn ws_site(name: &str) -> std::path::PathBuf {
    let site = temp_site(name);
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\"",
        backend("ws_echo.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    site
}

#[test]
fn websockets_are_tunnelled_with_echoes_large_frames_and_closes() {
    let serve = Serve::start(&ws_site("ws"));
    let out = std::process::Command::new("python3")
        .arg(repo().join("tests/ws/ws_client.py"))
        .arg(format!("ws://{}", serve.addr))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        serve.log()
    );
    assert!(text.contains("5 passed, 0 failed"), "{text}");
}

#[test]
fn upgrade_is_refused_for_http10_and_requests_with_a_body() {
    // env_dump answers anything with the headers it received: an ordinary request must arrive,
    // without the Upgrade header.
    let site = temp_site("ws-refused");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\"",
        backend("env_dump.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    let serve = Serve::start(&site);
    let ws = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for raw in [
        format!("POST /echo HTTP/1.1\r\nHost: t\r\n{ws}Content-Length: 4\r\n\r\nbody"),
        format!("GET /echo HTTP/1.0\r\nHost: t\r\n{ws}\r\n"),
    ] {
        let mut c = Conn::open(serve.addr);
        use std::io::Write;
        c.stream().write_all(raw.as_bytes()).unwrap();
        let r = c.read_response(false);
        assert_eq!(r.status, 200, "{raw}: {}", r.text());
        let names: Vec<String> = r.json()["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap().to_lowercase())
            .collect();
        assert!(!names.contains(&"upgrade".to_owned()), "{raw}: {names:?}");
        assert!(
            !names.contains(&"connection".to_owned()),
            "{raw}: {names:?}"
        );
    }
}

#[test]
fn websocket_backend_killed_mid_stream_closes_the_client() {
    let serve = Serve::start(&ws_site("ws-kill"));
    let pid = {
        // The plain route answers without an upgrade; its pid comes from the process list.
        let r = serve.get("/");
        assert_eq!(r.status, 200);
        serve
            .log()
            .split("started process ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let mut c = Conn::open(serve.addr);
    c.send(
        "GET",
        "/echo",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    );
    let (status, headers) = c.read_head();
    assert_eq!(status, 101);
    assert!(headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("upgrade") && v.eq_ignore_ascii_case("websocket")));
    signal(pid, "KILL");
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    use std::io::Read;
    let n = c
        .reader
        .read(&mut buf)
        .expect("the client connection was not closed");
    assert_eq!(n, 0, "expected EOF after the backend died");
}

#[test]
fn an_app_that_never_listens_gives_every_waiting_request_the_502_5_page() {
    let site = temp_site("neverlistens");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\" startupTimeLimit=\"1\"",
        backend("never_listens.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    let serve = std::sync::Arc::new(Serve::start(&site));
    let threads: Vec<_> = (0..5)
        .map(|_| {
            let s = serve.clone();
            std::thread::spawn(move || s.get("/"))
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 502);
        assert_eq!(r.header("x-ancm-status"), Some("502.5"));
        assert!(r.text().contains("did not listen on port"), "{}", r.text());
        assert!(r.text().contains("within 1 s"), "{}", r.text());
    }
    // One start of two attempts served all five requests.
    assert_eq!(
        serve.log().matches("started process").count(),
        2,
        "{}",
        serve.log()
    );
}

#[test]
fn an_idempotent_request_whose_process_died_is_sent_once_more() {
    let site = temp_site("crash-get");
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\"",
        backend("crash_on_request.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    let serve = Serve::start(&site);
    let pid1 = serve.get("/pid").text().parse::<u32>().unwrap();
    // The GET crashes its process, is tried once more, and crashes the second one too: a
    // poison request is sent at most twice, then answered 502.3.
    let r = serve.get("/crash");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-ancm-status"), Some("502.3"));
    serve.wait_log("trying once more", 5);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while serve.log().matches("exited with code 3").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", serve.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        serve.log().matches("exited with code 3").count(),
        2,
        "{}",
        serve.log()
    );
    let pid3 = serve.get("/pid").text().parse::<u32>().unwrap();
    assert_ne!(pid1, pid3);
}

/// Reads until the server closes the connection (or the 60 s read timeout panics the test);
/// returns what arrived.
fn read_until_closed(c: &mut Conn) -> Vec<u8> {
    use std::io::Read;
    let mut got = Vec::new();
    c.reader
        .read_to_end(&mut got)
        .expect("the connection was closed, not timed out");
    got
}

#[test]
fn header_timeout_closes_slow_heads_and_idle_keep_alive_connections() {
    use std::io::Write;
    let site = hello_site("header-timeout", "", "");
    let serve = Serve::start_args(&site, &["--header-timeout", "1"]);
    assert_eq!(serve.get("/").status, 200);

    // A head that never ends: the connection is closed without forwarding anything.
    let mut slow = Conn::open(serve.addr);
    slow.stream()
        .write_all(b"GET /json HTTP/1.1\r\nHost: test\r\nX-Slow: 1\r\n")
        .unwrap();
    // An idle keep-alive connection, after one answered request.
    let mut idle = Conn::open(serve.addr);
    idle.send("GET", "/", &[], b"");
    assert_eq!(idle.read_response(false).status, 200);
    // A client that keeps sending requests is not affected meanwhile.
    let mut busy = Conn::open(serve.addr);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        busy.send("GET", "/", &[], b"");
        assert_eq!(busy.read_response(false).status, 200);
        std::thread::sleep(Duration::from_millis(200));
    }

    let slow_got = read_until_closed(&mut slow);
    assert!(
        slow_got.is_empty() || slow_got.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&slow_got)
    );
    assert!(read_until_closed(&mut idle).is_empty());
}

#[test]
fn header_timeout_zero_turns_the_limit_off() {
    let site = hello_site("header-timeout-off", "", "");
    let serve = Serve::start_args(&site, &["--header-timeout", "0"]);
    let mut idle = Conn::open(serve.addr);
    idle.send("GET", "/", &[], b"");
    assert_eq!(idle.read_response(false).status, 200);
    // Well past what a 1 s limit (plus its 1 s granularity) would allow.
    std::thread::sleep(Duration::from_secs(3));
    idle.send("GET", "/", &[], b"");
    assert_eq!(idle.read_response(false).status, 200);
}

#[test]
fn client_connections_are_spread_evenly_over_the_workers() {
    let site = hello_site("balance", "", "");
    let serve = Serve::start_logging(&site, &[], "info,ancm_serve=debug");
    // Opened one after another and kept open: whatever worker the kernel hands each to, the one
    // serving fewer connections gets it, so no worker serves more than one more than another.
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut c = Conn::open(serve.addr);
        c.send("GET", "/", &[], b"");
        assert_eq!(c.read_response(false).status, 200);
        held.push(c);
    }
    let log = serve.log();
    let workers: usize = log
        .lines()
        .find_map(|l| {
            l.split(" workers, each with")
                .next()
                .filter(|_| l.contains("workers, each with"))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no worker count in the log:\n{log}"));
    let mut served = vec![0usize; workers];
    for l in log.lines() {
        if let Some(w) = l.split("served by worker ").nth(1) {
            served[w.trim().parse::<usize>().unwrap()] += 1;
        }
    }
    assert_eq!(served.iter().sum::<usize>(), 40, "{served:?}\n{log}");
    let (min, max) = (served.iter().min().unwrap(), served.iter().max().unwrap());
    assert!(max - min <= 1, "uneven: {served:?}");
}

#[test]
fn json_log_format_writes_one_object_a_line_with_the_event_id() {
    let site = hello_site("jsonlog", "", "");
    let serve = Serve::start_args(&site, &["--log-format", "json"]);
    let pid = serve.get("/pid").text();
    serve.wait_log("started and is listening", 5);
    let log = serve.log();
    let mut started = None;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        for key in ["time", "level", "target", "message"] {
            assert!(v[key].is_string(), "no {key}: {line}");
        }
        if v["message"].as_str().is_some_and(|m| {
            m.contains(&format!("process {pid} ")) && m.contains("started and is listening")
        }) {
            started = Some(v);
        }
    }
    let started = started.expect("no start line");
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["event"], 1001, "{started}");
    assert!(started["time"].as_str().unwrap().ends_with('Z'));
}
