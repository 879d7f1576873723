//! W3C trace context and the access log, end to end: real ancm-serve, the real env_dump.py
//! backend (which answers with the request fields it received), real sockets. The suite runs on
//! the engine's own HTTP/1.1 path and, with ANCM_SERVE_TEST_ARGS=--hyper-only, on the general
//! path; a chunked upload takes the general path in either run.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

/// A site running env_dump.py, with `settings` as handlerSettings.
fn site(name: &str, settings: &[(&str, &str)]) -> std::path::PathBuf {
    let site = temp_site(name);
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\"",
        backend("env_dump.py")
    );
    let mut inner = String::from("<handlerSettings>");
    for (k, v) in settings {
        inner.push_str(&format!("<handlerSetting name=\"{k}\" value=\"{v}\"/>"));
    }
    inner.push_str("</handlerSettings>");
    std::fs::write(site.join("web.config"), web_config(&attrs, &inner)).unwrap();
    site
}

/// The lowercase-hex check of a `traceparent` ancm-serve generated: `00-<32>-<16>-01`, ids
/// not all zero. Returns the trace id.
fn generated_trace_id(v: &str) -> String {
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "{v}");
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && s.bytes().any(|b| b != b'0')
    };
    assert_eq!(parts[0], "00", "{v}");
    assert!(hex(parts[1], 32) && hex(parts[2], 16), "{v}");
    assert_eq!(parts[3], "01", "{v}");
    parts[1].to_owned()
}

/// Sends a request and returns the traceparent/tracestate values the app received.
fn sent(
    serve: &Serve,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Vec<String>, Vec<String>) {
    let r = serve.request(method, "/t?x=1", headers, body);
    assert_eq!(r.status, 200, "{}", r.text());
    (r.echoed("traceparent"), r.echoed("tracestate"))
}

fn chunked() -> [(&'static str, &'static str); 1] {
    [("Transfer-Encoding", "chunked")]
}

#[test]
fn a_request_without_traceparent_gets_a_new_trace_and_a_valid_one_passes_byte_for_byte() {
    let s = Serve::start(&site("trace-gen", &[]));
    let (a, state) = sent(&s, "GET", &[], b"");
    assert_eq!((a.len(), state.len()), (1, 0), "{a:?} {state:?}");
    let (b, _) = sent(&s, "GET", &[], b"");
    let (c, _) = sent(&s, "POST", &chunked(), b"general path");
    let ids: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|v| generated_trace_id(&v[0]))
        .collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    // Kept exactly, tracestate too (odd spacing and case in the name included), on both paths.
    let state_value = "congo=t61rcWkgMzE,  rojo=00f067aa0ba902b7";
    for (method, extra) in [("GET", &[][..]), ("POST", &chunked()[..])] {
        let mut h = vec![("TraceParent", GOOD), ("tracestate", state_value)];
        h.extend_from_slice(extra);
        let (tp, ts) = sent(&s, method, &h, b"x");
        assert_eq!(tp, vec![GOOD.to_owned()], "{method}");
        assert_eq!(ts, vec![state_value.to_owned()], "{method}");
    }
}

#[test]
fn an_invalid_traceparent_is_replaced_and_its_tracestate_dropped() {
    let s = Serve::start(&site("trace-invalid", &[]));
    let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let upper = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    for bad in ["junk", zero, upper] {
        for (method, extra) in [("GET", &[][..]), ("POST", &chunked()[..])] {
            let mut h = vec![("traceparent", bad), ("tracestate", "a=1")];
            h.extend_from_slice(extra);
            let (tp, ts) = sent(&s, method, &h, b"x");
            assert_eq!(tp.len(), 1, "{bad} {method}: {tp:?}");
            generated_trace_id(&tp[0]);
            assert!(ts.is_empty(), "{bad} {method}: {ts:?}");
        }
    }
    // Two traceparent fields are one invalid value.
    let (tp, _) = sent(
        &s,
        "GET",
        &[("traceparent", GOOD), ("traceparent", GOOD)],
        b"",
    );
    assert_eq!(tp.len(), 1, "{tp:?}");
    assert_ne!(tp[0], GOOD);
}

#[test]
fn with_generation_off_requests_pass_untouched() {
    let site = site("trace-off", &[("traceparentGeneration", "false")]);
    let log = site.join("access.log");
    let s = Serve::start_args(&site, &["--access-log", log.to_str().unwrap()]);
    for (method, extra) in [("GET", &[][..]), ("POST", &chunked()[..])] {
        let (tp, ts) = sent(&s, method, extra, b"x");
        assert!(tp.is_empty() && ts.is_empty(), "{method}: {tp:?} {ts:?}");
        let mut h = vec![("traceparent", "junk"), ("tracestate", "a=1")];
        h.extend_from_slice(extra);
        let (tp, ts) = sent(&s, method, &h, b"x");
        assert_eq!(
            (tp, ts),
            (vec!["junk".to_owned()], vec!["a=1".to_owned()]),
            "{method}"
        );
        let mut h = vec![("traceparent", GOOD)];
        h.extend_from_slice(extra);
        assert_eq!(sent(&s, method, &h, b"x").0, vec![GOOD.to_owned()]);
    }
    // A kept trace is still logged; the untouched requests have none.
    let lines = lines_of(|| std::fs::read_to_string(&log).unwrap_or_default(), 6);
    let mut traces: Vec<String> = lines.iter().map(|l| text_fields(l).0).collect();
    traces.sort();
    let kept = GOOD.split('-').nth(1).unwrap();
    assert_eq!(traces, ["-", "-", "-", "-", kept, kept], "{lines:?}");
}

#[test]
fn a_bad_traceparent_generation_value_is_a_one_line_error() {
    let site = site("trace-badcfg", &[("traceparentGeneration", "maybe")]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ancm-serve"))
        .args(["--listen", "127.0.0.1:0"])
        .arg(site.join("web.config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ancm-serve started with traceparentGeneration=maybe");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("handlerSetting[@name='traceparentGeneration']/@value = \"maybe\": must be true or false"),
        "{err}"
    );
}

/// Waits until `read()` holds `n` lines.
fn lines_of(read: impl Fn() -> String, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all: Vec<String> = read().lines().map(str::to_owned).collect();
        if all.len() >= n {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} lines: {all:?}",
            all.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The requests the access log tests send: two plain GETs (the engine's path unless
/// --hyper-only), one kept traceparent, one chunked POST (the general path). Returns the trace
/// ids the app saw, in order.
fn traffic(s: &Serve) -> Vec<String> {
    let mut ids = Vec::new();
    ids.push(generated_trace_id(&sent(s, "GET", &[], b"").0[0]));
    let (tp, _) = sent(s, "GET", &[("traceparent", GOOD)], b"");
    ids.push(tp[0].split('-').nth(1).unwrap().to_owned());
    ids.push(generated_trace_id(
        &sent(s, "POST", &chunked(), b"body").0[0],
    ));
    ids
}

/// `trace_id=… duration=… pid=…` of a text line, and its status.
fn text_fields(line: &str) -> (String, u16, f64, u32) {
    // `pid=-` reads as 0.
    let field = |k: &str| {
        line.split(' ')
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {line}"))
            .to_owned()
    };
    let after_request = line.split('"').nth(2).unwrap_or_else(|| panic!("{line}"));
    let status = after_request
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (
        field("trace_id="),
        status,
        field("duration=").parse().unwrap(),
        field("pid=").parse().unwrap_or(0),
    )
}

#[test]
fn the_text_access_log_file_has_the_trace_id_the_app_saw() {
    let site = site("access-text", &[]);
    let log = site.join("access.log");
    let s = Serve::start_args(&site, &["--access-log", log.to_str().unwrap()]);
    let ids = traffic(&s);
    let lines = lines_of(|| std::fs::read_to_string(&log).unwrap_or_default(), 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    // Each line is written when its response ends, so they need not come in request order.
    let mut seen: Vec<String> = lines.iter().map(|l| text_fields(l).0).collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "{lines:?}");
    for line in &lines {
        let (_, status, duration, pid) = text_fields(line);
        assert!(!line.ends_with("aborted"), "{line}");
        assert_eq!(status, 200, "{line}");
        assert!(duration > 0.0 && pid > 0, "{line}");
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.contains("\"GET /t?x=1 HTTP/1.1\"") || line.contains("\"POST /t?x=1 HTTP/1.1\""),
            "{line}"
        );
    }
}

/// ancm-serve with its standard output read into a string (the access log at `-`).
fn start_with_stdout(
    site: &Path,
    extra: &[&str],
) -> (
    std::process::Child,
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ancm-serve"))
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .args(
            std::env::var("ANCM_SERVE_TEST_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .arg(site.join("web.config"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = out.clone();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(m) = v["message"].as_str() {
                if let Some(a) = m.split("listening on http://").nth(1) {
                    let _ = tx.send(a.trim().to_owned());
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("ancm-serve listening");
    (child, addr.parse().unwrap(), out)
}

#[test]
fn the_json_access_log_on_stdout_has_the_trace_id_status_and_duration() {
    let site = site("access-json", &[]);
    let (mut child, addr, out) =
        start_with_stdout(&site, &["--log-format", "json", "--access-log", "-"]);
    let s = Serve {
        child: Command::new("true").spawn().unwrap(),
        addr,
        site: site.clone(),
        log: Default::default(),
    };
    let ids = traffic(&s);
    let lines = lines_of(|| out.lock().unwrap().clone(), 3);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let mut seen: Vec<String> = parsed
        .iter()
        .map(|v| v["trace_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "{lines:?}");
    for (line, v) in lines.iter().zip(&parsed) {
        assert_eq!(v["target"], "ancm::access", "{line}");
        assert_eq!(v["aborted"], false, "{line}");
        assert_eq!(v["level"], "INFO", "{line}");
        assert_eq!(v["status"], 200, "{line}");
        assert_eq!(v["path"], "/t?x=1", "{line}");
        assert!(v["duration"].as_f64().is_some_and(|d| d > 0.0), "{line}");
        assert!(v["pid"].as_u64().is_some_and(|p| p > 0), "{line}");
        assert!(v["bytes"].as_u64().is_some_and(|b| b > 0), "{line}");
        assert!(
            v["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(
            v["app"].as_str().is_some_and(|a| a.ends_with("web.config")),
            "{line}"
        );
        assert!(
            ["GET", "POST"].contains(&v["method"].as_str().unwrap_or("")),
            "{line}"
        );
    }
}
