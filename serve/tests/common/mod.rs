//! Test harness: runs the real `ancm-serve` binary against real backends in a temporary site
//! folder, and talks to it with a small raw HTTP/1.1 client over real sockets (raw, so tests
//! see exactly the bytes on the wire).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fresh, empty folder for one test.
pub fn temp_site(name: &str) -> PathBuf {
    remove_stale_sites(name);
    let dir = std::env::temp_dir().join(format!("ancm-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the sites of earlier runs of this test whose test process is gone. A run keeps its
/// own site (a failed test's logs stay there to read) until the next run of that test.
fn remove_stale_sites(name: &str) {
    let prefix = format!("ancm-test-{name}-");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let gone = pid
            .parse::<u32>()
            .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists());
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A web.config with an aspNetCore section made of `attrs` and an optional inner XML.
pub fn web_config(attrs: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration><location path=\".\" inheritInChildApplications=\"false\"><system.webServer>\n<aspNetCore {attrs}>{inner}</aspNetCore>\n</system.webServer></location></configuration>\n"
    )
}

/// The path of a test backend script.
pub fn backend(name: &str) -> String {
    repo()
        .join("tests/backends")
        .join(name)
        .display()
        .to_string()
}

/// A running ancm-serve.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    pub site: PathBuf,
    pub log: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts ancm-serve on an ephemeral port for `site/web.config`, waiting until it listens.
    pub fn start(site: &Path) -> Serve {
        Self::start_args(site, &[])
    }

    pub fn start_args(site: &Path, extra: &[&str]) -> Serve {
        Self::start_logging(site, extra, "info")
    }

    /// As [`Serve::start_args`], with `RUST_LOG` set to `filter`.
    pub fn start_logging(site: &Path, extra: &[&str], filter: &str) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ancm-serve"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            // `cargo xtask test` runs the suites again with `--hyper-only` here, so that the
            // general path is tested whole as well as the engine's own HTTP/1.1 path.
            .args(
                std::env::var("ANCM_SERVE_TEST_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .arg(site.join("web.config"))
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ancm-serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    if let Some(tx) = tx.take() {
                        // The address alone (a JSON log line goes on after it).
                        let addr: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
                            .collect();
                        let _ = tx.send(addr);
                    }
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("ancm-serve did not start: {}", log.lock().unwrap()));
        Serve {
            child,
            addr: addr.parse().unwrap(),
            site: site.to_path_buf(),
            log,
        }
    }

    /// Everything ancm-serve logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (or panics after `secs`).
    pub fn wait_log(&self, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("log never contained {needle:?}:\n{}", self.log());
    }

    /// One request on a new connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut c = Conn::open(self.addr);
        c.send(method, path, headers, body);
        c.read_response(method == "HEAD")
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn stop(mut self) -> i32 {
        signal(self.child.id(), libc_sigterm());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "ancm-serve did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn libc_sigterm() -> &'static str {
    "TERM"
}

/// Sends a signal by name with kill(1), so the tests need no libc binding.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Whether a process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits until `pid` is gone; false if it still runs after `secs`.
pub fn wait_gone(pid: u32, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (the sample app's /json route).
    /// The request header fields env_dump.py reports it received, as (name, value), in order.
    pub fn echoed_headers(&self) -> Vec<(String, String)> {
        self.json()["headers"]
            .as_array()
            .expect("an env_dump.py response")
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap_or_default().to_owned(),
                    h[1].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The values env_dump.py reports for request header `name` (any case).
    pub fn echoed(&self, name: &str) -> Vec<String> {
        self.echoed_headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One client connection.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Conn {
            reader: BufReader::new(s),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str("Host: test\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        if !chunked
            && !body.is_empty()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let s = self.stream();
        s.write_all(head.as_bytes()).unwrap();
        if chunked {
            for piece in body.chunks(1 << 20) {
                s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .unwrap();
                s.write_all(piece).unwrap();
                s.write_all(b"\r\n").unwrap();
            }
            s.write_all(b"0\r\n\r\n").unwrap();
        } else {
            s.write_all(body).unwrap();
        }
    }

    /// Reads the status line and headers.
    pub fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.to_owned(), v.trim().to_owned()));
        }
        (status, headers)
    }

    /// Reads one chunk of a chunked body (None at the end).
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let mut size = String::new();
        self.reader.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf).unwrap();
        let mut crlf = [0; 2];
        self.reader.read_exact(&mut crlf).unwrap();
        if n == 0 {
            None
        } else {
            Some(buf)
        }
    }

    pub fn read_response(&mut self, head_only: bool) -> Response {
        let (status, headers) = self.read_head();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if !head_only && status != 204 && status != 304 {
            if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                while let Some(c) = self.read_chunk() {
                    body.extend(c);
                }
            } else if let Some(n) = get("content-length") {
                body = vec![0; n.parse().unwrap()];
                self.reader.read_exact(&mut body).unwrap();
            } else {
                self.reader.read_to_end(&mut body).unwrap();
            }
        }
        Response {
            status,
            headers,
            body,
        }
    }
}

/// SHA-256 of `data` as lowercase hex (via python3, which the backends need anyway).
pub fn sha256_hex(data: &[u8]) -> String {
    let mut p = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = p.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Deterministic test data.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// ancm-serve serving `tests/backends/env_dump.py` (which answers with what it received, as JSON)
/// from a fresh site named `name`.
pub fn env_dump_serve(name: &str) -> Serve {
    let site = temp_site(name);
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\"",
        backend("env_dump.py")
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, "")).unwrap();
    Serve::start(&site)
}

/// A site whose app is `tests/backends/raw.py` (a backend that answers with the bytes a test
/// writes, and logs what it received), with extra aspNetCore attributes. Returns the site and
/// the folder shared with the backend.
pub fn raw_site(name: &str, attrs: &str) -> (PathBuf, PathBuf) {
    let site = temp_site(name);
    let dir = site.join("raw");
    std::fs::create_dir_all(&dir).unwrap();
    let attrs = format!(
        "processPath=\"python3\" arguments=\"{}\" {attrs}",
        backend("raw.py")
    );
    let env = format!(
        "<environmentVariables><environmentVariable name=\"RAW_DIR\" value=\"{}\" /></environmentVariables>",
        dir.display()
    );
    std::fs::write(site.join("web.config"), web_config(&attrs, &env)).unwrap();
    (site, dir)
}
