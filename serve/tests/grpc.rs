//! gRPC and HTTP/2 end to end: a real grpcio server (tests/backends/grpc_server.py) started by
//! ancm-serve from a web.config with `backendProtocol=h2c`, real grpcio clients
//! (tests/grpc/client.py) through ancm-serve and directly, and curl speaking HTTP/2 with prior
//! knowledge against HTTP/1.1 and h2c backends.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn h2c_site(name: &str) -> std::path::PathBuf {
    let site = temp_site(name);
    std::fs::write(
        site.join("web.config"),
        web_config(
            &format!(
                "processPath=\"python3\" arguments=\"{}\"",
                backend("grpc_server.py")
            ),
            "<handlerSettings><handlerSetting name=\"backendProtocol\" value=\"h2c\" /></handlerSettings>",
        ),
    )
    .unwrap();
    site
}

/// Runs the grpcio client against `target`, returning its JSON result.
fn client(target: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(repo().join("tests/grpc/client.py"))
        .arg(target)
        .args(extra)
        .output()
        .expect("run python3 tests/grpc/client.py");
    assert!(
        out.status.success(),
        "client.py {target} {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client.py output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn direct_port(site: &Path) -> String {
    std::fs::read_to_string(site.join("grpc_port.txt")).expect("the server wrote its port")
}

/// Every kind of call through ancm-serve returns what the same call returns directly from the
/// server: messages, statuses, details, trailing metadata (binary too), deadlines, a cancel the
/// server sees, 100 concurrent calls on one client connection; then a server killed mid-stream
/// ends the client's call with an error status.
#[test]
fn grpc_through_ancm_serve_equals_direct() {
    let site = h2c_site("grpc");
    let serve = Serve::start(&site);
    let proxied = client(&serve.addr.to_string(), &[]);
    let direct = client(&format!("127.0.0.1:{}", direct_port(&site)), &[]);

    // The forwarding fields reached the app through the proxy only; everything else is equal.
    let meta = &proxied["meta_raw"];
    assert_eq!(
        meta["token_ok"], true,
        "pairing token not forwarded: {meta}"
    );
    assert!(
        meta["xff"]
            .as_str()
            .is_some_and(|v| v.starts_with("127.0.0.1:")),
        "{meta}"
    );
    assert_eq!(meta["xfp"], "http", "{meta}");
    assert_eq!(direct["meta_raw"]["token_ok"], false);
    let strip = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("meta_raw");
        v
    };
    let (mut proxied, direct) = (strip(proxied), strip(direct));
    // The proxy starts a trace for a call without one (docs/forwarding.md, trace context): the one
    // metadata name the app sees through the proxy only.
    if let Some(names) = proxied["meta_names"].as_array_mut() {
        let before = names.len();
        names.retain(|n| n != "traceparent");
        assert_eq!(
            before,
            names.len() + 1,
            "no traceparent reached the app: {names:?}"
        );
    }
    let keys: Vec<&String> = proxied.as_object().unwrap().keys().collect();
    assert_eq!(keys, direct.as_object().unwrap().keys().collect::<Vec<_>>());
    for k in keys {
        assert_eq!(proxied[k], direct[k], "{k}: through ancm-serve ≠ direct");
    }

    // And what they are equal to is right.
    assert_eq!(proxied["unary"], "hello");
    assert_eq!(proxied["server_stream"]["count"], 10000);
    assert_eq!(proxied["server_stream"]["last"], "msg-9999");
    assert!(proxied["client_stream"]
        .as_str()
        .unwrap()
        .starts_with("500 "));
    assert_eq!(proxied["bidi"].as_array().unwrap().len(), 300);
    assert_eq!(
        proxied["big"],
        serde_json::json!({"len": 4 * 1024 * 1024, "equal": true})
    );
    assert_eq!(
        proxied["fail"],
        serde_json::json!({
            "code": "INVALID_ARGUMENT",
            "details": "bad argument: details here",
            "trailers": [["x-detail-bin", "0001feff"], ["x-info", "why"]],
        })
    );
    assert_eq!(proxied["deadline"], "DEADLINE_EXCEEDED");
    assert_eq!(proxied["cancel_seen_by_server"], true);
    assert_eq!(proxied["concurrent"]["ok"], 100);
    assert_eq!(
        proxied["peers_count"], 1,
        "one backend connection for one client's calls"
    );

    // 150 calls in flight on one client connection: one connection from a direct client, two
    // from ancm-serve (100 streams each at most).
    let spill = client(&serve.addr.to_string(), &["spill"]);
    assert_eq!(spill["spill"], serde_json::json!({"ok": 150, "peers": 2}));
    let spill = client(&format!("127.0.0.1:{}", direct_port(&site)), &["spill"]);
    assert_eq!(spill["spill"], serde_json::json!({"ok": 150, "peers": 1}));

    // The server killed mid-stream: the messages before it arrive, then an error status.
    let killed = client(&serve.addr.to_string(), &["kill"]);
    assert_eq!(
        killed["kill"]["messages"],
        serde_json::json!(["msg-0", "msg-1", "msg-2"])
    );
    assert_ne!(killed["kill"]["code"], "OK", "{killed}");
    // A new process answers the next call.
    let again = client(&serve.addr.to_string(), &["kill"]);
    assert_eq!(again["kill"]["messages"].as_array().unwrap().len(), 3);
    serve.stop();
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An HTTP/2 client (curl with prior knowledge) reaches an HTTP/1.1 backend through ancm-serve,
/// and an HTTP/1.1 client on the same listener still works; `:authority` becomes `Host`.
#[test]
fn http2_prior_knowledge_client_to_http1_backend() {
    let site = temp_site("h2c-to-h1");
    let app = repo().join("examples/hello/app.py");
    std::fs::write(
        site.join("web.config"),
        web_config(
            &format!("processPath=\"python3\" arguments=\"{}\"", app.display()),
            "",
        ),
    )
    .unwrap();
    let serve = Serve::start(&site);
    let url = format!("http://{}/json?a=%2F", serve.addr);
    for h2 in [true, false] {
        let mut args = vec!["-o", "-", "-w", "\n%{http_version}", "-d", "hello"];
        if h2 {
            args.push("--http2-prior-knowledge");
        }
        args.push(&url);
        let (out, _) = curl(&args);
        let (body, version) = out.rsplit_once('\n').unwrap();
        assert_eq!(version, if h2 { "2" } else { "1.1" });
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["path"], "/json?a=%2F", "{v}");
        assert_eq!(v["body_len"], 5, "{v}");
        let headers = v["headers"].as_array().unwrap();
        let host = headers
            .iter()
            .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("host"))
            .unwrap_or_else(|| panic!("no Host: {v}"));
        assert_eq!(host[1], serve.addr.to_string());
    }
    serve.stop();
}

/// curl over HTTP/1.1 and over HTTP/2 with prior knowledge to a gRPC (h2c) backend: a request
/// that is not gRPC gets the server's HTTP/2 answer on both (grpcio answers a plain POST with
/// gRPC's own status in its trailers or headers).
#[test]
fn http1_and_http2_clients_to_an_h2c_backend() {
    let site = h2c_site("h1-to-h2c");
    let serve = Serve::start(&site);
    let url = format!("http://{}/test.Echo/Unary", serve.addr);
    // A gRPC frame: not compressed, length 5, "hello".
    let frame = site.join("frame.bin");
    std::fs::write(&frame, b"\0\0\0\0\x05hello").unwrap();
    let data = format!("@{}", frame.display());
    for h2 in [true, false] {
        let mut args = vec![
            "-o",
            "-",
            "-D",
            "-",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--data-binary",
            &data,
        ];
        if h2 {
            args.push("--http2-prior-knowledge");
        }
        args.push(&url);
        let (out, _) = curl(&args);
        assert!(out.contains("hello"), "h2 {h2}: {out}");
        let lower = out.to_ascii_lowercase();
        assert!(lower.contains("200"), "h2 {h2}: {out}");
        if h2 {
            // HTTP/2 carries the trailers: grpc-status 0 reaches the client.
            assert!(lower.contains("grpc-status: 0"), "{out}");
        }
    }
    serve.stop();
}

fn h2_client(target: &str, case: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(repo().join("tests/grpc/h2_client.py"))
        .args([target, case])
        .output()
        .expect("run python3 tests/grpc/h2_client.py");
    assert!(
        out.status.success(),
        "h2_client.py {case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Over HTTP/2 on both hops (an app on the h2 library, tests/backends/h2_raw.py): a request's
/// trailers reach the app and the app's response trailers reach the client; a reset by the app
/// reaches the client with its error code; a client's reset reaches the app as CANCEL.
#[test]
fn http2_trailers_and_resets_both_ways() {
    let site = temp_site("h2-raw");
    std::fs::write(
        site.join("web.config"),
        web_config(
            &format!(
                "processPath=\"python3\" arguments=\"{}\"",
                backend("h2_raw.py")
            ),
            "<handlerSettings><handlerSetting name=\"backendProtocol\" value=\"h2c\" /></handlerSettings>",
        ),
    )
    .unwrap();
    let serve = Serve::start(&site);
    let target = serve.addr.to_string();

    let echo = h2_client(&target, "echo");
    assert_eq!(echo["status"], "200", "{echo}");
    let seen: serde_json::Value = serde_json::from_str(echo["data"].as_str().unwrap()).unwrap();
    assert_eq!(seen["body_len"], 1000);
    assert_eq!(
        seen["trailers"],
        serde_json::json!([["x-req-trailer", "tv"], ["x-other", "2"]]),
        "request trailers lost: {seen}"
    );
    let names: Vec<&str> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap())
        .collect();
    for n in [
        "ms-aspnetcore-token",
        "x-forwarded-for",
        "x-forwarded-proto",
        ":authority",
    ] {
        assert!(names.contains(&n), "{n} missing: {seen}");
    }
    // The client's forged token never passes; the app got only the real one (it answers 400
    // to a wrong token).
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "ms-aspnetcore-token")
            .count(),
        1,
        "{seen}"
    );
    assert_eq!(
        echo["trailers"],
        serde_json::json!([["grpc-status", "0"], ["x-echo-trailer", "done"]]),
        "response trailers lost: {echo}"
    );

    // INTERNAL_ERROR, CANCEL, ENHANCE_YOUR_CALM: the code the app reset with is the client's.
    // (Whether the head and data sent just before the reset get out first is up to timing.)
    for code in [2, 8, 11] {
        let r = h2_client(&target, &format!("reset:{code}"));
        assert_eq!(r["reset"], code, "{r}");
        assert_eq!(r["ended"], false, "{r}");
    }

    let r = h2_client(&target, "hold");
    assert_eq!(r["data"], "holding", "{r}");
    let log = site.join("resets.log");
    let mut got = String::new();
    for _ in 0..100 {
        got = std::fs::read_to_string(&log).unwrap_or_default();
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        got, "8\n",
        "the app did not see the client's reset as CANCEL"
    );
    serve.stop();
}

/// An HTTP/1.1 client to an h2c app: connection-specific fields never reach it (RFC 9113
/// §8.2.2), `TE: trailers` does, `Host` becomes `:authority`.
#[test]
fn http1_client_fields_mapped_for_an_h2c_backend() {
    let site = temp_site("h1-h2-fields");
    std::fs::write(
        site.join("web.config"),
        web_config(
            &format!(
                "processPath=\"python3\" arguments=\"{}\"",
                backend("h2_raw.py")
            ),
            "<handlerSettings><handlerSetting name=\"backendProtocol\" value=\"h2c\" /></handlerSettings>",
        ),
    )
    .unwrap();
    let serve = Serve::start(&site);
    let (out, _) = curl(&[
        "--http1.1",
        "-H",
        "Connection: keep-alive, x-named",
        "-H",
        "x-named: 1",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "Proxy-Connection: keep-alive",
        "-H",
        "TE: trailers",
        "-H",
        "Host: example.test:81",
        "-H",
        "x-kept: yes",
        "--data-binary",
        "abc",
        &format!("http://{}/echo?x=%2F", serve.addr),
    ]);
    let seen: serde_json::Value = serde_json::from_str(&out).unwrap();
    let headers: Vec<(String, String)> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    for gone in [
        "connection",
        "x-named",
        "keep-alive",
        "proxy-connection",
        "host",
        "transfer-encoding",
        "upgrade",
    ] {
        assert_eq!(get(gone), None, "{gone} was sent over HTTP/2: {seen}");
    }
    assert_eq!(get("te"), Some("trailers"), "{seen}");
    assert_eq!(get(":authority"), Some("example.test:81"), "{seen}");
    assert_eq!(get(":path"), Some("/echo?x=%2F"), "{seen}");
    assert_eq!(get(":scheme"), Some("http"), "{seen}");
    assert_eq!(get("x-kept"), Some("yes"), "{seen}");
    assert_eq!(seen["body_len"], 3);
    serve.stop();
}

/// Runs h2load (Debian's nghttp2-client) with many streams in flight per connection and returns
/// its summary lines.
fn h2load(url: &str) -> String {
    let out = Command::new("h2load")
        .args(["-n", "2000", "-c", "4", "-m", "32", "-T", "60", url])
        .output()
        .expect("run h2load (Debian package nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "h2load {url}: {text}");
    text
}

/// h2load, 4 connections with up to 32 streams each, against an HTTP/1.1 app and an h2c app:
/// every request answered 2xx.
#[test]
fn h2load_against_http1_and_h2c_backends() {
    for (name, script, inner) in [
        ("h2load-h1", repo().join("examples/hello/app.py").display().to_string(), ""),
        (
            "h2load-h2c",
            backend("h2_raw.py"),
            "<handlerSettings><handlerSetting name=\"backendProtocol\" value=\"h2c\" /></handlerSettings>",
        ),
    ] {
        let site = temp_site(name);
        std::fs::write(
            site.join("web.config"),
            web_config(&format!("processPath=\"python3\" arguments=\"{script}\""), inner),
        )
        .unwrap();
        let serve = Serve::start(&site);
        // Started before the load, so that h2load's timeout never measures a process start.
        assert_eq!(serve.get("/").status, 200);
        let text = h2load(&format!("http://{}/", serve.addr));
        assert!(
            text.contains("2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed"),
            "{name}: {text}"
        );
        assert!(text.contains("status codes: 2000 2xx"), "{name}: {text}");
        serve.stop();
    }
}

/// An HTTP/2 connection with no open stream for `--header-timeout` is sent GOAWAY and closed,
/// as an idle HTTP/1.1 keep-alive connection is (slowloris protection); one that stays busy
/// longer is not cut.
#[test]
fn idle_http2_connections_go_away_after_the_header_timeout() {
    use std::io::{Read, Write};
    let site = temp_site("h2-idle");
    std::fs::write(
        site.join("web.config"),
        web_config(
            &format!(
                "processPath=\"python3\" arguments=\"{}\"",
                backend("h2_raw.py")
            ),
            "<handlerSettings><handlerSetting name=\"backendProtocol\" value=\"h2c\" /></handlerSettings>",
        ),
    )
    .unwrap();
    let serve = Serve::start_args(&site, &["--header-timeout", "1"]);
    let mut c = std::net::TcpStream::connect(serve.addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // The preface and an empty SETTINGS frame, then nothing.
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got)
        .expect("the idle connection was not closed within 30 s");
    // Frames: 3-byte length, type, flags, stream id; look for a GOAWAY (type 7).
    let mut at = 0;
    let mut goaway = false;
    while at + 9 <= got.len() {
        let len = (got[at] as usize) << 16 | (got[at + 1] as usize) << 8 | got[at + 2] as usize;
        goaway |= got[at + 3] == 7;
        at += 9 + len;
    }
    assert!(goaway, "no GOAWAY before the close: {got:?}");

    // A stream open longer than the timeout keeps its connection.
    let r = h2_client(&serve.addr.to_string(), "linger:3");
    assert_eq!(r["data"], "holding", "{r}");
    assert_eq!(r["gone"], false, "a busy connection was cut: {r}");
    serve.stop();
}

/// An HTTP/1.1 app's chunked trailers reach an HTTP/2 client and are dropped for an HTTP/1.1
/// one (whose response still ends properly); an HTTP/2 client's request trailers to an
/// HTTP/1.1 app are dropped and its body arrives whole.
#[test]
fn trailers_between_http2_clients_and_http1_backends() {
    let (site, dir) = raw_site("h1-trailers", "");
    std::fs::write(
        dir.join("tr.bin"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
    )
    .unwrap();
    let serve = Serve::start(&site);
    let url = format!("http://{}/raw/tr", serve.addr);
    let (h2, _) = curl(&["--http2-prior-knowledge", "-D", "-", &url]);
    assert!(h2.contains("hello"), "{h2}");
    assert!(
        h2.contains("x-t: 1"),
        "trailer lost for an HTTP/2 client: {h2}"
    );
    for _ in 0..2 {
        // Twice: the second on a reused backend connection.
        let (h1, _) = curl(&["--http1.1", "-D", "-", &url]);
        assert!(h1.contains("hello"), "{h1}");
        assert!(!h1.to_ascii_lowercase().contains("x-t"), "{h1}");
    }

    let echo = h2_client(&serve.addr.to_string(), "echo");
    assert_eq!(echo["status"], "200", "{echo}");
    assert_eq!(echo["ended"], true, "{echo}");
    let bodies = std::fs::read_to_string(dir.join("bodies.log")).unwrap();
    // sha256 of the 1,000 bytes h2_client.py sends.
    assert!(
        bodies.contains("/echo 44f8354494a5ba03ba1792a8d3e9c534c47a9181980fde7a3f44b06ef2ae7c7f"),
        "{bodies}"
    );
    serve.stop();
}

/// requestTimeout still bounds an h2c app that stops sending: the client's stream is reset
/// (INTERNAL_ERROR) and the app's stream is cancelled (CANCEL).
#[test]
fn request_timeout_resets_a_silent_http2_stream() {
    let site = temp_site("h2-timeout");
    std::fs::write(
        site.join("web.config"),
        web_config(
            &format!(
                "processPath=\"python3\" arguments=\"{}\" requestTimeout=\"00:00:02\"",
                backend("h2_raw.py")
            ),
            "<handlerSettings><handlerSetting name=\"backendProtocol\" value=\"h2c\" /></handlerSettings>",
        ),
    )
    .unwrap();
    let serve = Serve::start(&site);
    // Waits up to 30 s after the first data for something to happen.
    let r = h2_client(&serve.addr.to_string(), "linger:30");
    assert_eq!(r["data"], "holding", "{r}");
    assert_eq!(r["reset"], 2, "the silent stream was not reset: {r}");
    let log = site.join("resets.log");
    let mut got = String::new();
    for _ in 0..100 {
        got = std::fs::read_to_string(&log).unwrap_or_default();
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(got, "8\n", "the app's stream was not cancelled");
    serve.stop();
}
