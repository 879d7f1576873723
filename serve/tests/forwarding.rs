//! Forwarding fidelity against a backend that sends exactly the bytes each case needs: request
//! smuggling shapes refused, invalid responses mapped to 502.3, timeouts, exact forwarding.

mod common;

use common::*;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Raw {
    serve: Serve,
    dir: PathBuf,
}

impl Raw {
    fn start(name: &str, attrs: &str) -> Raw {
        Self::start_args(name, attrs, &[])
    }

    fn start_args(name: &str, attrs: &str, extra: &[&str]) -> Raw {
        let (site, dir) = raw_site(name, attrs);
        let serve = Serve::start_args(&site, extra);
        // Start the backend so cases do not measure the start.
        assert_eq!(serve.get("/").status, 200);
        Raw { serve, dir }
    }

    fn case(&self, name: &str, response: &[u8], close: bool) {
        std::fs::write(self.dir.join(format!("{name}.bin")), response).unwrap();
        if close {
            std::fs::write(self.dir.join(format!("{name}.close")), b"").unwrap();
        }
    }

    fn received(&self) -> Vec<String> {
        read_lines(&self.dir.join("received.log"))
    }

    /// Sends raw bytes on a fresh connection and reads one response.
    fn raw(&self, bytes: &[u8]) -> Response {
        let mut c = Conn::open(self.serve.addr);
        c.stream().write_all(bytes).unwrap();
        c.read_response(false)
    }

    fn assert_healthy(&self) {
        let r = self.serve.get("/after");
        assert_eq!(
            r.status, 200,
            "the next request on a fresh connection failed"
        );
        assert_eq!(r.text(), "ok");
    }
}

/// Connections the raw backend has accepted so far.
fn accepted(raw: &Raw) -> usize {
    read_lines(&raw.dir.join("connections.log")).len()
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn request_smuggling_shapes_are_refused_and_never_forwarded() {
    let raw = Raw::start("smuggle", "");
    let before = raw.received().len();
    let cases: &[(&str, &[u8])] = &[
        ("differing CL", b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("CL list", b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!"),
        ("chunked not last", b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        ("TE without chunked", b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
        ("a coding under chunked", b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("chunked twice", b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("obs-fold", b"GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n"),
        ("NUL in value", b"GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n"),
        ("CR in value", b"GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n"),
        ("space before colon", b"GET /x HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n"),
        ("bad chunk size", b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    ];
    let mut wrong = Vec::new();
    for (name, bytes) in cases {
        let r = raw.raw(bytes);
        if r.status != 400 {
            wrong.push(format!("{name}: {}", r.status));
        }
        raw.assert_healthy();
    }
    assert!(wrong.is_empty(), "not refused: {wrong:?}");
    let got = raw.received();
    // Only the health checks reached the backend: exactly one backend request per client request.
    let forwarded: Vec<&String> = got[before..]
        .iter()
        .filter(|l| !l.ends_with("/after"))
        .collect();
    assert!(
        forwarded.is_empty(),
        "smuggled requests reached the backend: {forwarded:?}"
    );
    assert_eq!(got[before..].len(), cases.len());
}

/// Content-Length together with Transfer-Encoding, in either order and any case, is refused with
/// 400 and nothing of it reaches the backend: on its own connection, pipelined after a valid
/// request (which is still answered, in order), and written one byte at a time so the head
/// arrives over many reads. The connection closes after the 400, so what followed is never read.
#[test]
fn content_length_with_transfer_encoding_is_refused_with_400() {
    let raw = Raw::start("clte", "");
    let before = raw.received().len();
    let shapes: [&[u8]; 3] = [
        b"POST /clte HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /clte HTTP/1.1\r\nHost: t\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /clte HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nX-A: b\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n",
    ];
    let valid: &[u8] = b"POST /first HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody";
    for (i, shape) in shapes.iter().enumerate() {
        for mode in ["alone", "pipelined", "byte by byte"] {
            let mut c = Conn::open(raw.serve.addr);
            let mut bytes = Vec::new();
            if mode == "pipelined" {
                bytes.extend_from_slice(valid);
            }
            bytes.extend_from_slice(shape);
            if mode == "byte by byte" {
                c.stream().set_nodelay(true).unwrap();
                // The server closes after its 400, so the bytes after the refused head may
                // not be taken.
                for b in &bytes {
                    if c.stream().write_all(std::slice::from_ref(b)).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            } else {
                c.stream().write_all(&bytes).unwrap();
            }
            if mode == "pipelined" {
                let first = c.read_response(false);
                assert_eq!(
                    first.status, 200,
                    "shape {i}, {mode}: the valid request before it"
                );
            }
            let r = c.read_response(false);
            assert_eq!(r.status, 400, "shape {i}, {mode}");
            let mut rest = Vec::new();
            let _ = c.reader.read_to_end(&mut rest);
            assert!(
                rest.is_empty(),
                "shape {i}, {mode}: more came after the 400: {:?}",
                String::from_utf8_lossy(&rest)
            );
            raw.assert_healthy();
        }
    }
    let got = raw.received();
    let forwarded: Vec<&String> = got[before..]
        .iter()
        .filter(|l| !l.ends_with("/after") && !l.ends_with("/first"))
        .collect();
    assert!(forwarded.is_empty(), "reached the backend: {forwarded:?}");
    let firsts = got[before..]
        .iter()
        .filter(|l| l.ends_with("/first"))
        .count();
    assert_eq!(firsts, shapes.len(), "{got:?}");
}

/// The tracker that finds those heads follows message boundaries exactly: bodies that contain
/// header-like bytes (Content-Length and chunked, pipelined, written in small pieces) arrive intact
/// and are answered in order.
#[test]
fn bodies_that_look_like_heads_pass_intact() {
    let raw = Raw::start("lookalike", "");
    let body = b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut bytes = Vec::new();
    bytes.extend_from_slice(
        format!(
            "POST /one HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(
        format!(
            "POST /two HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(b"\r\n0\r\n\r\nGET /three HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut c = Conn::open(raw.serve.addr);
    c.stream().set_nodelay(true).unwrap();
    for piece in bytes.chunks(7) {
        c.stream().write_all(piece).unwrap();
        std::thread::sleep(Duration::from_micros(300));
    }
    for _ in 0..3 {
        assert_eq!(c.read_response(false).status, 200);
    }
    let got = raw.received();
    for p in ["/one", "/two", "/three"] {
        assert!(got.iter().any(|l| l.ends_with(p)), "{p} missing: {got:?}");
    }
    let bodies = read_lines(&raw.dir.join("bodies.log"));
    let want = sha256_hex(body);
    assert_eq!(
        bodies,
        vec![format!("/one {want}"), format!("/two {want}")],
        "bodies changed on the way"
    );
}

#[test]
fn invalid_backend_responses_give_502_3_before_the_head() {
    let raw = Raw::start("badresp", "");
    let big = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
        "a".repeat(70 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad status line", b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok".to_vec()),
        ("not http", b"hello there\r\n\r\n".to_vec()),
        ("CL+TE", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()),
        ("differing CL", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok".to_vec()),
        ("a coding under chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec()),
        ("head over 64 KiB", big.into_bytes()),
        ("closed before answering", Vec::new()),
        ("101 without upgrade", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec()),
    ];
    for (i, (name, bytes)) in cases.iter().enumerate() {
        let case = format!("bad{i}");
        raw.case(&case, bytes, true);
        let r = raw.serve.get(&format!("/raw/{case}"));
        assert_eq!(r.status, 502, "{name}: {}", r.text());
        assert_eq!(r.header("x-ancm-status"), Some("502.3"), "{name}");
        raw.assert_healthy();
    }
}

#[test]
fn a_body_shorter_than_its_content_length_aborts_the_client_connection() {
    let raw = Raw::start("short", "");
    raw.case(
        "short",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-this",
        true,
    );
    let mut c = Conn::open(raw.serve.addr);
    c.send("GET", "/raw/short", &[], b"");
    let (status, headers) = c.read_head();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-length") && v == "100"));
    let mut got = Vec::new();
    let _ = c.reader.read_to_end(&mut got);
    assert!(
        got.len() < 100,
        "the client got a complete body from a truncated response"
    );
    raw.assert_healthy();
}

/// A backend that sends bytes after the end of its response (a body longer than its
/// Content-Length, or anything after the last chunk) has framed it wrongly: the status line is
/// already out, so the client connection is aborted before the response completes, the extra
/// bytes never reach any client, and the connection that carried them is not reused.
#[test]
fn bytes_after_the_response_abort_the_client_connection() {
    let raw = Raw::start("long", "");
    raw.case(
        "long",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED",
        false,
    );
    raw.case(
        "longchunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED",
        false,
    );
    for i in 0..10 {
        for (case, complete) in [("long", &b"ok"[..]), ("longchunked", b"0\r\n\r\n")] {
            let mut c = Conn::open(raw.serve.addr);
            c.send("GET", &format!("/raw/{case}"), &[], b"");
            // Whether the head got out before the abort depends on hyper's write buffering;
            // the response must not complete either way.
            let mut got = Vec::new();
            let _ = c.reader.read_to_end(&mut got);
            assert!(
                got.is_empty() || got.starts_with(b"HTTP/1.1 200 OK\r\n"),
                "{case}, round {i}: {:?}",
                String::from_utf8_lossy(&got)
            );
            let got = match got.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(p) => got[p + 4..].to_vec(),
                None => Vec::new(),
            };
            assert!(
                !got.windows(complete.len()).any(|w| w == complete),
                "{case}, round {i}: the response completed: {:?}",
                String::from_utf8_lossy(&got)
            );
            assert!(
                !got.windows(8).any(|w| w == b"SMUGGLED"),
                "{case}, round {i}"
            );
            raw.assert_healthy();
        }
    }
}

/// Responses that end exactly where they say keep their connection: the same backend
/// connection serves the next request (no needless reconnects from the end-of-response check).
#[test]
fn well_framed_responses_keep_their_backend_connection() {
    let raw = Raw::start("exact", "");
    raw.case(
        "exact",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nexact",
        false,
    );
    raw.case(
        "exactchunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nexact\r\n0\r\n\r\n",
        false,
    );
    let mut c = Conn::open(raw.serve.addr);
    // The first request may open a backend connection: idle connections are kept per worker
    // thread, and this client connection may be served by another worker than the start's.
    let mut conns_before = 0;
    for i in 0..50 {
        let case = if i % 2 == 0 { "exact" } else { "exactchunked" };
        c.send("GET", &format!("/raw/{case}"), &[], b"");
        let r = c.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "exact"), "round {i}");
        if i == 0 {
            conns_before = accepted(&raw);
        }
    }
    assert_eq!(
        accepted(&raw) - conns_before,
        0,
        "the backend connection was not reused"
    );
}

#[test]
fn response_headers_pass_exactly() {
    let raw = Raw::start("resphdrs", "");
    raw.case(
        "cookies",
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Obs: caf\xe9\r\nServer: raw-backend\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nX-Dup: 1\r\nX-Dup: 2\r\nContent-Length: 2\r\n\r\nok",
        false,
    );
    let mut c = Conn::open(raw.serve.addr);
    c.send("GET", "/raw/cookies", &[], b"");
    // Read the head as bytes: obs-text is not UTF-8.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        c.reader.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).to_lowercase();
    assert!(
        text.contains("set-cookie: a=1\r\nset-cookie: b=2\r\n"),
        "{text}"
    );
    assert!(text.contains("x-dup: 1\r\nx-dup: 2\r\n"), "{text}");
    assert!(
        head.windows(4).any(|w| w == b"caf\xe9"),
        "obs-text was altered"
    );
    assert!(text.contains("server: raw-backend"), "{text}");
    assert!(
        !text.contains("2001"),
        "the backend's Date was forwarded: {text}"
    );
}

#[test]
fn request_timeout_gives_502_3_and_the_stalled_backend_is_released() {
    let raw = Raw::start("stall", "requestTimeout=\"00:00:02\"");
    let r = raw.serve.get("/stall");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-ancm-status"), Some("502.3"));
    assert!(r.text().contains("requestTimeout"), "{}", r.text());
    raw.assert_healthy();
}

#[test]
fn expect_100_continue_head_and_bodiless_statuses() {
    let site = temp_site("expect");
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
    let mut c = Conn::open(serve.addr);
    c.stream()
        .write_all(
            b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let (status, _) = c.read_head();
    assert_eq!(status, 100, "no 100 Continue before the body was sent");
    c.stream().write_all(b"hello").unwrap();
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 5);

    let r = serve.request("HEAD", "/bytes?n=100", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100"));
    for code in ["204", "304"] {
        let mut c = Conn::open(serve.addr);
        c.send("GET", &format!("/status?code={code}"), &[], b"");
        let r = c.read_response(false);
        assert_eq!(r.status.to_string(), code);
        assert!(r.body.is_empty());
        // The connection is still in sync: a second request on it works.
        c.send("GET", "/pid", &[], b"");
        assert_eq!(c.read_response(false).status, 200);
    }
    let _ = Duration::ZERO;
}

#[test]
fn client_disconnects_reach_the_backend_and_nothing_leaks() {
    let raw = Raw::start("abort", "");
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", raw.serve.child.id()))
            .unwrap()
            .count()
    };
    // Warm up the pool, then take the baseline.
    raw.assert_healthy();
    let baseline = fds();
    const N: usize = 1000;
    for i in 0..N {
        let mut c = Conn::open(raw.serve.addr);
        c.send("GET", &format!("/stall?{i}"), &[], b"");
        // Wait until the backend has the request, then leave.
        let needle = format!("GET /stall?{i}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !raw.received().contains(&needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "request {i} never reached the backend"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(c);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let closed = raw
            .received()
            .iter()
            .filter(|l| l.starts_with("CLOSED /stall"))
            .count();
        if closed == N {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {closed} of {N} backend requests were cancelled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    raw.assert_healthy();
    let after = fds();
    assert!(
        after <= baseline + 4,
        "file descriptors grew from {baseline} to {after}"
    );
}

#[test]
fn slow_uploads_do_not_hit_request_timeout_while_they_progress() {
    let raw = Raw::start("slowup", "requestTimeout=\"00:00:01\"");
    let mut c = Conn::open(raw.serve.addr);
    c.stream()
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 30\r\n\r\n")
        .unwrap();
    // 3 s of upload in 10 pieces: longer than requestTimeout, but never idle for that long.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        c.stream().write_all(b"abc").unwrap();
    }
    let r = c.read_response(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "ok");
}

#[test]
fn header_name_case_is_preserved() {
    let serve = env_dump_serve("case");
    let r = serve.request(
        "GET",
        "/",
        &[("X-CamelCase-Header", "v"), ("x-lower", "w")],
        b"",
    );
    let names: Vec<String> = r.echoed_headers().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"X-CamelCase-Header".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"x-lower".to_owned()), "{names:?}");
}

/// A backend that closes its connections after each response: when it says so
/// (`Connection: close`) nothing is reused; when it does not, a reused connection may fail, and
/// bodiless idempotent requests are then sent again (docs/forwarding.md).
#[test]
fn connections_the_backend_closes_between_requests_are_not_reused() {
    let raw = Raw::start("closer", "");
    raw.case(
        "polite",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        true,
    );
    raw.case(
        "silent",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        true,
    );
    for i in 0..20 {
        let r = raw.serve.request("POST", "/raw/polite", &[], b"x");
        assert_eq!(r.status, 200, "POST {i}: {}", r.text());
    }
    // A silent close races with the reuse of the connection (as in any HTTP/1.1 proxy): only
    // requests that may be sent again are safe from it, so only those follow.
    for i in 0..20 {
        let r = raw.serve.get("/raw/silent");
        assert_eq!(r.status, 200, "GET {i}: {}", r.text());
        assert_eq!(r.text(), "ok");
    }
}

/// Requests sent back to back on one connection are answered in order, also when one in the
/// middle is of a shape the engine's own HTTP/1.1 path hands to the general path (a chunked
/// upload): the bytes already read are not lost, and the connection goes on.
#[test]
fn pipelined_requests_and_a_handover_mid_connection_answer_in_order() {
    let raw = Raw::start("pipeline", "");
    raw.case(
        "a",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\naaa",
        false,
    );
    raw.case(
        "b",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbbb",
        false,
    );
    let mut c = Conn::open(raw.serve.addr);
    c.stream()
        .write_all(
            b"GET /raw/a HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /raw/b HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /one HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
              GET /raw/a HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    for want in ["aaa", "bbb", "ok", "aaa"] {
        let r = c.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (200, want));
    }
    c.send("PUT", "/two", &[], b"small body");
    let r = c.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let bodies = read_lines(&raw.dir.join("bodies.log"));
    for (target, body) in [("/one", &b"hello"[..]), ("/two", b"small body")] {
        let line = format!("{target} {}", sha256_hex(body));
        assert!(bodies.contains(&line), "{line} not in {bodies:?}");
    }
}

/// A response delimited by the backend's close reaches the client chunked, on a connection that
/// stays open; informational heads (103) are not forwarded; `Connection: close` from the client
/// is answered in kind, and the connection then ends.
#[test]
fn close_delimited_and_informational_responses_and_client_close() {
    let raw = Raw::start("reframe", "");
    raw.case(
        "untilclose",
        b"HTTP/1.1 200 OK\r\nX-Kind: until-close\r\n\r\nstreamed until the backend closed",
        true,
    );
    raw.case(
        "hints",
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
    );
    let mut c = Conn::open(raw.serve.addr);
    c.send("GET", "/raw/untilclose", &[], b"");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("x-kind"), Some("until-close"));
    assert_eq!(r.text(), "streamed until the backend closed");
    c.send("GET", "/raw/hints", &[("Connection", "close")], b"");
    let r = c.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = Vec::new();
    c.reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

/// A backend that drops the connection of one request without answering (an app that aborts
/// it) sees a bodiless idempotent request at most twice, whichever connection it arrived on
/// (docs/forwarding.md, "Sent once more"); a POST once. Both are then answered 502.3.
#[test]
fn a_request_whose_connection_the_backend_drops_is_sent_at_most_twice() {
    let raw = Raw::start("dropped", "");
    raw.case("drop", b"", true);
    for method in ["GET", "POST"] {
        let mut c = Conn::open(raw.serve.addr);
        // Leaves an idle backend connection with this client connection's worker.
        c.send("GET", "/", &[], b"");
        assert_eq!(c.read_response(false).status, 200);
        let target = format!("/raw/drop?{method}");
        c.send(method, &target, &[], b"");
        let r = c.read_response(false);
        assert_eq!(r.status, 502, "{method}: {}", r.text());
        assert_eq!(r.header("x-ancm-status"), Some("502.3"), "{method}");
        let sent = raw
            .received()
            .iter()
            .filter(|l| **l == format!("{method} {target}"))
            .count();
        let most = if method == "GET" { 2 } else { 1 };
        assert!(
            (1..=most).contains(&sent),
            "{method} reached the backend {sent} times"
        );
    }
    raw.assert_healthy();
}

/// `Connection: close` from the client is answered in kind also when the engine answers itself
/// (here the 502.3 page for a backend that dropped the request), and the connection then ends.
#[test]
fn engine_pages_say_connection_close_when_the_client_asked_for_it() {
    let raw = Raw::start("pageclose", "");
    raw.case("drop", b"", true);
    let mut c = Conn::open(raw.serve.addr);
    c.send("POST", "/raw/drop", &[("Connection", "close")], b"x");
    let r = c.read_response(false);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    let mut rest = Vec::new();
    c.reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

/// The name the httpPlatform dialect gives the Windows token is the engine's too: a client's
/// `X-IIS-WindowsAuthToken` (a handle value the app would use as the user's token) never
/// reaches the app, like `MS-ASPNETCORE-*`.
#[test]
fn a_clients_windows_token_headers_never_reach_the_app() {
    let serve = env_dump_serve("forgedtoken");
    for body in [&b""[..], b"with a body"] {
        let r = serve.request(
            "POST",
            "/",
            &[
                ("X-IIS-WindowsAuthToken", "4a8"),
                ("MS-ASPNETCORE-WINAUTHTOKEN", "4a8"),
                ("X-Kept", "1"),
            ],
            body,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let names: Vec<String> = r
            .echoed_headers()
            .into_iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        assert!(names.contains(&"x-kept".to_owned()), "{names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n == "x-iis-windowsauthtoken" || n == "ms-aspnetcore-winauthtoken"),
            "a forged token arrived: {names:?}"
        );
    }
}

/// A client that leaves while the response body is still coming (a long poll, server-sent
/// events between two events) cancels the backend request at once, as when it leaves before the
/// head: the backend sees its connection close, well before requestTimeout.
#[test]
fn a_client_leaving_during_the_response_body_cancels_the_backend_request() {
    let raw = Raw::start("bodyabort", "");
    for (name, response) in [
        (
            "lengthpoll",
            &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst"[..],
        ),
        (
            "chunkedpoll",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
        ),
        ("closepoll", b"HTTP/1.1 200 OK\r\n\r\nfirst"),
    ] {
        raw.case(name, response, false);
        std::fs::write(raw.dir.join(format!("{name}.stall")), b"").unwrap();
        let mut c = Conn::open(raw.serve.addr);
        c.send("GET", &format!("/raw/{name}"), &[], b"");
        let (status, _) = c.read_head();
        assert_eq!(status, 200, "{name}");
        drop(c);
        let needle = format!("CLOSED /raw/{name}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !raw.received().contains(&needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: the backend request was not cancelled: {:?}",
                raw.received()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    raw.assert_healthy();
}

/// Without a header timeout (`--header-timeout 0`) an upload that stops half way is still
/// bounded: the backend has the request and requestTimeout runs out (502.3), as for any
/// upload that stops making progress.
#[test]
fn an_upload_that_stalls_without_a_header_timeout_gets_502_3() {
    let (site, _dir) = raw_site("stalledup", "requestTimeout=\"00:00:01\"");
    let serve = Serve::start_args(&site, &["--header-timeout", "0"]);
    assert_eq!(serve.get("/").status, 200);
    let mut c = Conn::open(serve.addr);
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    c.stream()
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhalf")
        .unwrap();
    let r = c.read_response(false);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-ancm-status"), Some("502.3"));
}

/// A client's `X-Forwarded-For` / `X-Forwarded-Proto` values are extended byte for byte, obs-text
/// included (as every other field's value), not re-encoded.
#[test]
fn forwarded_lists_keep_the_clients_bytes() {
    let serve = env_dump_serve("xffobs");
    let mut c = Conn::open(serve.addr);
    c.stream()
        .write_all(
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 1.1.1.1, caf\xe9\r\nX-Forwarded-Proto: caf\xe9\r\n\r\n",
        )
        .unwrap();
    let r = c.read_response(false);
    assert_eq!(r.status, 200, "{}", r.text());
    let get = |name: &str| r.echoed(name);
    // The backend reads field values as Latin-1: \xe9 is "é".
    let local = c.stream().local_addr().unwrap().to_string();
    assert_eq!(
        get("x-forwarded-for"),
        vec![format!("1.1.1.1, caf\u{e9}, {local}")]
    );
    assert_eq!(get("x-forwarded-proto"), vec!["caf\u{e9}, http".to_owned()]);
}

/// A repeated, identical `Content-Length` (RFC 9110 §8.6: a duplicate made upstream) goes on as
/// one field, both ways: backends such as Kestrel refuse a request with two. A 204 or 304
/// response carries none to the client (RFC 9110 §8.6 forbids it in a 204).
#[test]
fn content_length_goes_on_once_and_not_with_204_or_304() {
    let serve = env_dump_serve("onecl");
    let mut c = Conn::open(serve.addr);
    c.stream()
        .write_all(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok",
        )
        .unwrap();
    let r = c.read_response(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echoed("content-length"), vec!["2".to_owned()]);

    let raw = Raw::start("onecl-resp", "");
    raw.case(
        "twice",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok",
        false,
    );
    raw.case(
        "r204",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n",
        false,
    );
    raw.case(
        "r304",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n",
        false,
    );
    let mut c = Conn::open(raw.serve.addr);
    for (case, want) in [("twice", 1), ("r204", 0), ("r304", 0)] {
        c.send("GET", &format!("/raw/{case}"), &[], b"");
        let r = c.read_response(false);
        let n = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .count();
        assert_eq!(n, want, "{case}: {:?}", r.headers);
    }
    // Still in step.
    c.send("GET", "/", &[], b"");
    assert_eq!(c.read_response(false).text(), "ok");
}

/// A client that leaves while its request waits for the app's process to start is not
/// forwarded once the process is up: nobody waits for the answer (and a POST would act for no
/// one).
#[test]
fn a_request_whose_client_left_during_the_start_is_not_sent() {
    let (site, dir) = raw_site("leftearly", "");
    let config = std::fs::read_to_string(site.join("web.config")).unwrap();
    let config = config.replace(
        "</environmentVariables>",
        "<environmentVariable name=\"RAW_START_DELAY\" value=\"2\" /></environmentVariables>",
    );
    std::fs::write(site.join("web.config"), config).unwrap();
    let serve = Serve::start(&site);
    let mut c = Conn::open(serve.addr);
    c.send("POST", "/gone", &[], b"x");
    drop(c);
    // Waits for the same start; then one more round trip, after which the POST would have
    // arrived long before.
    assert_eq!(serve.get("/after").status, 200);
    assert_eq!(serve.get("/last").status, 200);
    let got = read_lines(&dir.join("received.log"));
    assert!(got.contains(&"GET /last".to_owned()), "{got:?}");
    assert!(
        !got.contains(&"POST /gone".to_owned()),
        "the abandoned request was sent: {got:?}"
    );
}

/// ancm-serve's two paths, each in its own ancm-serve: the one the run tests (the engine's own
/// HTTP/1.1 path first, unless the run is `--hyper-only`) and, in a run that is not, one with
/// `--hyper-only`, so that one run compares both. `start(suffix, extra args)` starts one.
fn on_both_paths<T>(start: impl Fn(&str, &[&str]) -> T) -> Vec<(&'static str, T)> {
    let hyper_run = std::env::var("ANCM_SERVE_TEST_ARGS")
        .unwrap_or_default()
        .contains("--hyper-only");
    if hyper_run {
        vec![("--hyper-only", start("hyper", &[]))]
    } else {
        vec![
            ("engine path", start("engine", &[])),
            ("--hyper-only", start("hyper", &["--hyper-only"])),
        ]
    }
}

/// Request heads a server must refuse (RFC 9112 §3.2, §3.2.3–4), `CONNECT` (a reverse proxy opens
/// no tunnels) and heads over the size limits (HTTP.sys's defaults) get the same status on both
/// of ancm-serve's paths, the connection closes after it, and none of them reaches the app.
/// Shapes that are fine (`OPTIONS *`, HTTP/1.0 without `Host`, a head just under the limit) are
/// still forwarded.
#[test]
fn malformed_heads_get_one_answer_on_both_paths_and_never_reach_the_app() {
    let just_under = {
        // "GET /under HTTP/1.1\r\n" + "Host: t\r\n" + "Cookie: …\r\n" = 16,384 bytes.
        let fixed = "GET /under HTTP/1.1\r\n".len() + "Host: t\r\n".len() + "Cookie: \r\n".len();
        format!(
            "GET /under HTTP/1.1\r\nHost: t\r\nCookie: {}\r\n\r\n",
            "c".repeat(16_384 - fixed)
        )
    };
    let refused: Vec<(&str, Vec<u8>, u16)> = vec![
        ("no Host", b"GET /nohost HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            "no Host, with a body",
            b"POST /nohost-body HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
            400,
        ),
        (
            "two Host fields",
            b"GET /twohosts HTTP/1.1\r\nHost: t\r\nhost: evil.example\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two Host fields, chunked",
            b"POST /twohosts-chunked HTTP/1.1\r\nHost: t\r\nHost: u\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "Host with userinfo",
            b"GET /badhost HTTP/1.1\r\nHost: user@t\r\n\r\n".to_vec(),
            400,
        ),
        (
            "CONNECT",
            b"CONNECT backend.example:443 HTTP/1.1\r\nHost: backend.example:443\r\n\r\n".to_vec(),
            501,
        ),
        ("GET *", b"GET * HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
        (
            "authority-form GET",
            b"GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            400,
        ),
        (
            "target over 16 KiB",
            format!("GET /long?{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(16_384)).into_bytes(),
            414,
        ),
        (
            "head over 16 KiB",
            format!(
                "GET /bighead HTTP/1.1\r\nHost: t\r\nCookie: {}\r\n\r\n",
                "c".repeat(16_384)
            )
            .into_bytes(),
            431,
        ),
        (
            "head over 16 KiB in many fields",
            format!(
                "GET /manyfields HTTP/1.1\r\nHost: t\r\n{}\r\n",
                (0..50)
                    .map(|i| format!("X-F{i}: {}\r\n", "v".repeat(400)))
                    .collect::<String>()
            )
            .into_bytes(),
            431,
        ),
        (
            "head over 64 KiB",
            format!(
                "GET /hugehead HTTP/1.1\r\nHost: t\r\nCookie: {}\r\n\r\n",
                "c".repeat(70 * 1024)
            )
            .into_bytes(),
            431,
        ),
    ];
    let forwarded: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "OPTIONS *",
            b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "OPTIONS *",
        ),
        (
            "HTTP/1.0 without Host",
            b"GET /http10 HTTP/1.0\r\n\r\n".to_vec(),
            "GET /http10",
        ),
        (
            "a head of exactly 16 KiB",
            just_under.into_bytes(),
            "GET /under",
        ),
    ];
    let mut answers: Vec<(&str, Vec<u16>)> = Vec::new();
    for (path, raw) in
        on_both_paths(|suffix, extra| Raw::start_args(&format!("refuse-{suffix}"), "", extra))
    {
        let mut got = Vec::new();
        let mut wrong = Vec::new();
        for (name, bytes, want) in &refused {
            let before = raw.received().len();
            let mut c = Conn::open(raw.serve.addr);
            // A bound for a connection left open (a tunnel), so that a failure is reported
            // rather than waited for: the refusal closes it at once.
            c.stream()
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let _ = c.stream().write_all(bytes);
            let status = match c.reader.fill_buf() {
                Ok(b) if !b.is_empty() => c.read_response(false).status,
                _ => 0,
            };
            got.push(status);
            if status != *want {
                wrong.push(format!("{name}: {status} instead of {want}"));
            }
            // Nothing more on this connection: it is closed after the refusal.
            let mut rest = Vec::new();
            if status != 0 && (c.reader.read_to_end(&mut rest).is_err() || !rest.is_empty()) {
                wrong.push(format!("{name}: the connection stayed open or sent more"));
            }
            raw.assert_healthy();
            let received = raw.received();
            let reached: Vec<String> = received[before..]
                .iter()
                .filter(|l| !l.ends_with("/after"))
                .map(|l| l.chars().take(60).collect())
                .collect();
            if !reached.is_empty() {
                wrong.push(format!("{name}: reached the app as {reached:?}"));
            }
        }
        assert!(wrong.is_empty(), "{path}:\n{}", wrong.join("\n"));
        for (name, bytes, line) in &forwarded {
            let mut c = Conn::open(raw.serve.addr);
            c.stream().write_all(bytes).unwrap();
            let r = c.read_response(false);
            assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{path}, {name}");
            assert!(
                raw.received().iter().any(|l| l == line),
                "{path}, {name}: {line:?} did not reach the app"
            );
        }
        answers.push((path, got));
    }
    for w in answers.windows(2) {
        assert_eq!(
            w[0].1, w[1].1,
            "{} and {} answer differently",
            w[0].0, w[1].0
        );
    }
}

/// Request fields whose name holds an underscore never reach the app by default, on either
/// path: a CGI- or WSGI-style app folds `_` into `-`, so `X_Forwarded_For` would pass for the
/// proxy's own field there. With `forwardHeadersWithUnderscores` they do, except the twins of the
/// fields the proxy sets or strips itself.
#[test]
fn underscored_header_fields_are_dropped_and_their_twins_always() {
    let fields = [
        ("X_Forwarded_For", "6.6.6.6"),
        ("MS_ASPNETCORE_TOKEN", "forged"),
        ("Transfer_Encoding", "chunked"),
        ("Content_Length", "3"),
        ("X_IIS_WindowsAuthToken", "4a8"),
        ("X_App_Key", "k"),
        ("X-Kept", "1"),
    ];
    for forward in [false, true] {
        let settings = if forward {
            "<handlerSettings><handlerSetting name=\"forwardHeadersWithUnderscores\" value=\"true\" /></handlerSettings>"
        } else {
            ""
        };
        for (path, serve) in on_both_paths(|suffix, extra| {
            let site = temp_site(&format!("underscore-{forward}-{suffix}"));
            let attrs = format!(
                "processPath=\"python3\" arguments=\"{}\"",
                backend("env_dump.py")
            );
            std::fs::write(site.join("web.config"), web_config(&attrs, settings)).unwrap();
            Serve::start_args(&site, extra)
        }) {
            // Bodiless, with a small body, and chunked (the general path on either).
            for (kind, extra, body) in [
                ("bodiless", None, &b""[..]),
                ("with a body", None, b"abc"),
                ("chunked", Some(("Transfer-Encoding", "chunked")), b"abc"),
            ] {
                let mut c = Conn::open(serve.addr);
                let mut headers = fields.to_vec();
                headers.extend(extra);
                c.send("POST", "/", &headers, body);
                let r = c.read_response(false);
                assert_eq!(r.status, 200, "{path}, {kind}: {}", r.text());
                let names: Vec<String> = r.echoed_headers().into_iter().map(|(n, _)| n).collect();
                let underscored: Vec<&String> = names.iter().filter(|n| n.contains('_')).collect();
                let want: Vec<&str> = if forward { vec!["X_App_Key"] } else { vec![] };
                assert_eq!(underscored, want, "{path}, {kind}, forward={forward}");
                assert!(
                    names.contains(&"X-Kept".to_owned()),
                    "{path}, {kind}: {names:?}"
                );
                let local = c.stream().local_addr().unwrap().to_string();
                assert_eq!(r.echoed("x-forwarded-for"), vec![local], "{path}, {kind}");
            }
        }
    }
}
