//! `cargo xtask bench [--quick] [--rounds N] [--secs S] [--out FILE] [--only abcdefghij] [--serve BIN]
//! [--no-build]`: the benchmark harness of
//! issue 8. Builds the release binaries, installs wrk and nginx if missing, and measures on
//! loopback, alternating the contenders within each round (direct, ancm-serve, nginx, …):
//!
//! - (a) small GET, 64 keep-alive connections: req/s, p99, proxy CPU seconds per 100k requests;
//! - (b) cold start: first response minus the backend's own listen time (fresh ancm-serve);
//! - (c) idle RSS of ancm-serve with the app running, and per idle keep-alive connection;
//! - (d) 1 MiB downloads and uploads at 16 connections (nginx buffering on and off);
//! - (e) peak RSS of ancm-serve during one 1 GiB upload and one 1 GiB download;
//! - (f) WebSocket echo, 64-byte messages, 64 connections;
//! - (g) user-space instructions per small GET under callgrind, ancm-serve and nginx (repeatable
//!   on a busy machine);
//! - (h) the C ABI's cost: CPU and instructions per small GET of a C host through include/ancm.h
//!   vs the same work through the engine's Rust API ([`abi`]);
//! - (i) deploys under load: 20 overwrites of a shadow-copied app's files, the time from the last
//!   file written to the first response of the new version, and the requests failed ([`deploy`]);
//! - (j) HTTP/2 and gRPC: unary gRPC calls/s and p99 and small h2c GET req/s, direct and through
//!   ancm-serve with `backendProtocol="h2c"` ([`grpc`]).
//!
//! Writes docs/benchmarks.md (keeping the hand-written part below [`KEEP_MARKER`]) and SVG charts
//! under docs/bench/; `--quick` (one short round) writes under target/bench/ instead. Exits
//! non-zero when something could not be measured. Nothing here asserts a timing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::sh::{ensure_packages, root, run as sh_run, Result};

mod abi;
mod deploy;
mod grpc;

/// Everything in docs/benchmarks.md after this line is hand-written and kept across runs.
const KEEP_MARKER: &str =
    "<!-- Everything below this line is hand-written; `cargo xtask bench` keeps it. -->";

struct Opts {
    quick: bool,
    rounds: usize,
    /// Seconds per wrk sample of case (a).
    secs: u64,
    /// Seconds per sample of cases (d) and (f).
    secs_bulk: u64,
    cold_samples: usize,
    out: PathBuf,
    build: bool,
    /// Another ancm-serve binary to measure (A/B of an engine change).
    serve: Option<PathBuf>,
    /// Which cases to run (letters a–i).
    only: String,
}

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        quick: false,
        rounds: 3,
        secs: 10,
        secs_bulk: 5,
        cold_samples: 12,
        out: root().join("docs/benchmarks.md"),
        build: true,
        serve: None,
        only: "abcdefghij".into(),
    };
    let mut out_given = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> Result<u64> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{what} needs a number"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--rounds" => o.rounds = num("--rounds")?.max(1) as usize,
            "--secs" => o.secs = num("--secs")?.max(1),
            "--no-build" => o.build = false,
            "--serve" => o.serve = Some(PathBuf::from(it.next().ok_or("--serve needs a binary")?)),
            "--only" => {
                o.only = it
                    .next()
                    .ok_or("--only needs case letters, e.g. ab")?
                    .clone()
            }
            "--out" => {
                o.out = PathBuf::from(it.next().ok_or("--out needs a file")?);
                out_given = true;
            }
            other => {
                return Err(format!(
                    "bench: unknown option {other:?} (see xtask/src/bench.rs)"
                ))
            }
        }
    }
    if o.quick {
        o.rounds = 1;
        o.secs = 2;
        o.secs_bulk = 2;
        o.cold_samples = 3;
        if !out_given {
            o.out = root().join("target/bench/benchmarks-quick.md");
        }
    }
    Ok(o)
}

/// Runs the benchmarks and writes the report.
pub fn run(args: &[String]) -> Result {
    let opts = parse_opts(args)?;
    ensure_packages(&[("wrk", "wrk"), ("/usr/sbin/nginx", "nginx")])?;
    if opts.only.contains('g') || opts.only.contains('h') {
        ensure_packages(&[("valgrind", "valgrind"), ("callgrind_control", "valgrind")])?;
    }
    if opts.only.contains('h') {
        ensure_packages(&[("cc", "gcc")])?;
    }
    if opts.only.contains('j') {
        ensure_packages(&[("h2load", "nghttp2-client"), ("python3", "python3")])?;
        crate::sh::ensure_python_modules(&[("grpc", "grpcio"), ("h2", "h2")])?;
    }
    let root = root();
    if opts.build {
        sh_run(Command::new("cargo").current_dir(&root).args([
            "build",
            "--release",
            "-p",
            "ancm-serve",
            "-p",
            "ancm-bench",
            "-p",
            "ancm-capi",
        ]))?;
    }
    let bin = target_dir(&root).join("release");
    let bins = Bins {
        serve: opts.serve.clone().unwrap_or_else(|| bin.join("ancm-serve")),
        backend: bin.join("bench-backend"),
        load: bin.join("bench-load"),
        api_rust: bin.join("api-load-rust"),
        api_c: if opts.only.contains('h') {
            abi::build_c_driver(&bin)?
        } else {
            bin.join("api-load-c")
        },
    };
    let mut needed = Vec::new();
    if "abcdefgh".chars().any(|c| opts.only.contains(c)) {
        needed.push(&bins.backend);
    }
    if "abcdefg".chars().any(|c| opts.only.contains(c)) {
        needed.extend([&bins.serve, &bins.load]);
    }
    if opts.only.contains('i') || opts.only.contains('j') {
        needed.push(&bins.serve);
    }
    if opts.only.contains('h') {
        needed.push(&bins.api_rust);
    }
    for b in needed {
        if !b.is_file() {
            return Err(format!(
                "{} is missing (build with cargo build --release -p ancm-serve -p ancm-bench)",
                b.display()
            ));
        }
    }
    let tmp = std::env::temp_dir().join(format!("ancm-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let result = measure_all(&opts, &bins, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    let report = result?;
    let failures = report.failures.clone();
    write_report(&opts, &report)?;
    eprintln!("bench: wrote {}", opts.out.display());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "could not measure everything:\n  {}",
            failures.join("\n  ")
        ))
    }
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Chart data: groups of (series name, statistic).
type Groups = Vec<(String, Vec<(String, Option<Stat>)>)>;
/// A contender of case (a): name, port, and the process (with its children?) whose CPU counts.
type Contender = (&'static str, u16, Option<(u32, bool)>);

struct Bins {
    serve: PathBuf,
    backend: PathBuf,
    load: PathBuf,
    /// Case (h)'s drivers: through the Rust API, and through the C ABI (compiled by xtask).
    api_rust: PathBuf,
    api_c: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// Processes: every one we start is killed when its guard drops, and every wait is bounded.

struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Result<Proc> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "bench: {} did not stop within {grace:?}; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// Runs a command to completion within `limit`, returning its stdout and stderr.
fn output_bounded(cmd: &mut Command, limit: Duration) -> Result<(String, String)> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let mut so = child.stdout.take().ok_or("no stdout pipe")?;
    let mut se = child.stderr.take().ok_or("no stderr pipe")?;
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} did not finish within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = t_out.join().unwrap_or_default();
    let err = t_err.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "{what} failed ({status}): {}{}",
            err.trim(),
            out.trim()
        ));
    }
    Ok((out, err))
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn wait_listening(port: u16, limit: Duration) -> Result {
    let deadline = Instant::now() + limit;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(format!(
        "nothing listened on 127.0.0.1:{port} within {limit:?}"
    ))
}

/// One `GET path` with `Connection: close`; returns the status code.
fn http_get(port: u16, path: &str, limit: Duration) -> Result<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("GET {path}: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("GET {path} on port {port}: {e}"))?;
    let head = String::from_utf8_lossy(&resp[..resp.len().min(64)]).into_owned();
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path} on port {port}: not an HTTP response: {head:?}"))
}

fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// utime + stime of a process and, with `children`, of its live child processes (nginx's
/// workers), in clock ticks.
fn cpu_ticks(pid: u32, children: bool) -> Result<u64> {
    let read = |pid: u32| -> Option<(u64, u32)> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let ut: u64 = f.get(11)?.parse().ok()?;
        let st: u64 = f.get(12)?.parse().ok()?;
        Some((ut + st, ppid))
    };
    let (mut total, _) = read(pid).ok_or_else(|| format!("cannot read /proc/{pid}/stat"))?;
    if children {
        for e in std::fs::read_dir("/proc")
            .map_err(|e| e.to_string())?
            .flatten()
        {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some((t, ppid)) = read(p) {
                    if ppid == pid {
                        total += t;
                    }
                }
            }
        }
    }
    Ok(total)
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    s.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))
}

fn reset_hwm(pid: u32) -> Result {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .map_err(|e| format!("cannot reset VmHWM of {pid}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Statistics.

#[derive(Clone, Copy, Debug)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stat(v: &[f64]) -> Option<Stat> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stat {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

fn fmt_stat(s: Option<Stat>, digits: usize) -> String {
    match s {
        None => "n/a".into(),
        Some(s) if s.n == 1 => format!("{:.*}", digits, s.median),
        Some(s) => format!(
            "{:.*} ({:.*}–{:.*})",
            digits, s.median, digits, s.min, digits, s.max
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// wrk.

#[derive(Debug, Clone, Default)]
struct Wrk {
    rps: f64,
    p99_ms: f64,
    requests: u64,
    errors: String,
}

fn parse_latency_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

fn parse_wrk(out: &str) -> Result<Wrk> {
    let mut w = Wrk::default();
    let mut have_rps = false;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            w.rps = v
                .trim()
                .parse()
                .map_err(|_| format!("wrk: bad Requests/sec line {t:?}"))?;
            have_rps = true;
        } else if let Some(v) = t.strip_prefix("99%") {
            w.p99_ms = parse_latency_ms(v).ok_or_else(|| format!("wrk: bad 99% line {t:?}"))?;
        } else if t.contains(" requests in ") {
            w.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if t.starts_with("Non-2xx") || t.starts_with("Socket errors") {
            if !w.errors.is_empty() {
                w.errors.push_str("; ");
            }
            w.errors.push_str(t);
        }
    }
    if !have_rps || w.requests == 0 {
        return Err(format!("wrk produced no result:\n{out}"));
    }
    Ok(w)
}

fn wrk(conns: u32, secs: u64, url: &str, script: Option<&Path>) -> Result<Wrk> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--timeout",
        "5s",
        "--latency",
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url);
    let (out, _) = output_bounded(&mut cmd, Duration::from_secs(secs + 30))?;
    let w = parse_wrk(&out)?;
    // Non-2xx answers mean the proxy failed requests: not a measurement of forwarding.
    if w.errors.contains("Non-2xx") {
        return Err(format!("wrk {url}: {}", w.errors));
    }
    Ok(w)
}

// ---------------------------------------------------------------------------------------------
// The setup: one backend started by ancm-serve on a fixed port, and nginx in front of it too.

const WEB_CONFIG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <handlers>
      <add name="aspNetCore" path="*" verb="*" modules="AspNetCoreModuleV2" resourceType="Unspecified" />
    </handlers>
    <aspNetCore processPath="{backend}" arguments="" stdoutLogEnabled="false" hostingModel="outofprocess">
      <environmentVariables>
{env}      </environmentVariables>
    </aspNetCore>
  </system.webServer>
</configuration>
"#;

fn web_config(backend: &Path, env: &[(&str, String)]) -> String {
    let mut vars = String::new();
    for (k, v) in env {
        let _ = writeln!(
            vars,
            "        <environmentVariable name=\"{k}\" value=\"{}\" />",
            xml_escape(v)
        );
    }
    WEB_CONFIG
        .replace("{backend}", &xml_escape(&backend.display().to_string()))
        .replace("{env}", &vars)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nginx_conf(
    dir: &Path,
    workers: usize,
    backend: u16,
    buffered: u16,
    unbuffered: u16,
    user: Option<&str>,
) -> String {
    let d = dir.display();
    let user = user.map(|u| format!("user {u};\n")).unwrap_or_default();
    let location = |buffering: &str| {
        format!(
            "        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering {buffering};
            proxy_request_buffering {buffering};
        }}
        location /ws {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection \"upgrade\";
            proxy_read_timeout 60s;
        }}
"
        )
    };
    format!(
        "{user}worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 0;
    keepalive_requests 1000000;
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{buffered};
{on}    }}
    server {{
        listen 127.0.0.1:{unbuffered};
{off}    }}
}}
",
        on = location("on"),
        off = location("off"),
    )
}

struct Setup {
    serve: Proc,
    nginx: Proc,
    backend_port: u16,
    serve_port: u16,
    nginx_port: u16,
    nginx_unbuffered_port: u16,
    backend_pid: u32,
}

fn serve_cmd(bins: &Bins, port: u16, config: &Path, log: &Path) -> Result<Command> {
    let log =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut cmd = Command::new(&bins.serve);
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    Ok(cmd)
}

/// Creates `site` with a web.config that starts bench-backend with `env`; returns its path.
fn write_site(bins: &Bins, site: &Path, env: &[(&str, String)]) -> Result<PathBuf> {
    std::fs::create_dir_all(site).map_err(|e| e.to_string())?;
    let config = site.join("web.config");
    std::fs::write(&config, web_config(&bins.backend, env)).map_err(|e| e.to_string())?;
    Ok(config)
}

/// Starts ancm-serve for `config` on a free port, logging to `log`, once it listens.
fn start_serve(bins: &Bins, config: &Path, log: &Path) -> Result<(Proc, u16)> {
    let port = free_port()?;
    let p = Proc::spawn("ancm-serve", &mut serve_cmd(bins, port, config, log)?)?;
    wait_listening(port, Duration::from_secs(10))?;
    Ok((p, port))
}

fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn setup(bins: &Bins, tmp: &Path) -> Result<Setup> {
    let backend_port = free_port()?;
    let config = write_site(
        bins,
        &tmp.join("site"),
        &[
            ("ASPNETCORE_PORT", backend_port.to_string()),
            ("BENCH_BACKEND_THREADS", "1".into()),
        ],
    )?;
    let (serve, serve_port) = start_serve(bins, &config, &tmp.join("ancm-serve.log"))?;
    let status = http_get(serve_port, "/small", Duration::from_secs(10))?;
    if status != 200 {
        return Err(format!(
            "ancm-serve answered the first request with {status}; see {}/ancm-serve.log",
            tmp.display()
        ));
    }
    let backend_pid = find_child(serve.pid()).ok_or("ancm-serve started no backend process")?;

    let ngx = tmp.join("nginx");
    std::fs::create_dir_all(&ngx).map_err(|e| e.to_string())?;
    let nginx_port = free_port()?;
    let nginx_unbuffered_port = free_port()?;
    let user = current_user();
    let conf = nginx_conf(
        &ngx,
        workers(),
        backend_port,
        nginx_port,
        nginx_unbuffered_port,
        if is_root() { user.as_deref() } else { None },
    );
    std::fs::write(ngx.join("nginx.conf"), conf).map_err(|e| e.to_string())?;
    let nginx = Proc::spawn(
        "nginx",
        Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(&ngx)
            .arg("-c")
            .arg(ngx.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    wait_listening(nginx_port, Duration::from_secs(10))
        .map_err(|e| format!("nginx: {e}; see {}/nginx-error.log", ngx.display()))?;
    wait_listening(nginx_unbuffered_port, Duration::from_secs(10))?;
    for p in [backend_port, nginx_port, nginx_unbuffered_port] {
        let s = http_get(p, "/small", Duration::from_secs(5))?;
        if s != 200 {
            return Err(format!("GET /small on port {p} answered {s}"));
        }
    }
    Ok(Setup {
        serve,
        nginx,
        backend_port,
        serve_port,
        nginx_port,
        nginx_unbuffered_port,
        backend_pid,
    })
}

fn find_child(parent: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some(i) = s.rfind(')') else { continue };
            if s[i + 2..]
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
                == Some(parent)
            {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn current_user() -> Option<String> {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

// ---------------------------------------------------------------------------------------------
// The measurements.

#[derive(Default)]
struct Report {
    machine: Vec<(String, String)>,
    commands: Vec<String>,
    /// Case (a): contender → samples (rps, p99 ms, cpu s per 100k, loadavg).
    small: BTreeMap<&'static str, Vec<(f64, f64, f64, String)>>,
    /// Case (a) ratios per round: name → values.
    small_ratios: BTreeMap<&'static str, Vec<f64>>,
    /// Case (b): (first response − backend listen) ms; (first response − request sent) ms.
    cold: Vec<(f64, f64)>,
    /// Case (c): idle RSS KiB samples; per-connection KiB samples.
    idle_rss_kib: Vec<f64>,
    per_conn_kib: Vec<f64>,
    /// Case (d): "download"/"upload" → contender → MiB/s samples.
    bulk: BTreeMap<&'static str, BTreeMap<&'static str, Vec<f64>>>,
    bulk_ratios: BTreeMap<String, Vec<f64>>,
    /// Case (e): (what, VmHWM KiB, MiB/s, VmRSS KiB just before).
    peak: Vec<(&'static str, f64, f64, f64)>,
    /// Case (f): contender → (msgs/s, p99 µs) samples.
    ws: BTreeMap<&'static str, Vec<(f64, f64)>>,
    ws_ratios: Vec<f64>,
    /// Case (g): contender → user-space instructions per request.
    instr: BTreeMap<&'static str, f64>,
    /// Case (h).
    abi: abi::AbiReport,
    /// Case (i).
    deploy: deploy::DeployReport,
    /// Case (j).
    grpc: grpc::GrpcReport,
    failures: Vec<String>,
    loads: Vec<String>,
}

impl Report {
    fn fail(&mut self, what: &str, e: impl std::fmt::Display) {
        let m = format!("{what}: {e}");
        eprintln!("bench: FAILED {m}");
        self.failures.push(m);
    }
}

fn measure_all(opts: &Opts, bins: &Bins, tmp: &Path) -> Result<Report> {
    let mut r = Report {
        machine: machine_facts(),
        ..Default::default()
    };
    if let Some(p) = &opts.serve {
        r.machine.push((
            "ancm-serve binary (--serve)".into(),
            p.display().to_string(),
        ));
    }
    r.loads.push(format!("start: {}", loadavg()));
    if opts.only.contains('h') {
        let mut failures = Vec::new();
        r.abi = abi::case_abi(
            opts,
            &bins.api_c,
            &bins.api_rust,
            &bins.backend,
            tmp,
            &mut r.commands,
            &mut |what, e| failures.push((what.to_owned(), e)),
        );
        for (what, e) in failures {
            r.fail(&what, e);
        }
        r.loads.push(format!("after (h): {}", loadavg()));
    }
    // Cases (a), (d), (e) and (f) share one ancm-serve and nginx in front of one backend.
    if !"adef".chars().any(|c| opts.only.contains(c)) {
        return finish_rest(opts, bins, tmp, r);
    }
    let s = setup(bins, tmp)?;
    eprintln!(
        "bench: backend :{} (pid {}), ancm-serve :{} (pid {}), nginx :{} / :{} (unbuffered)",
        s.backend_port,
        s.backend_pid,
        s.serve_port,
        s.serve.pid(),
        s.nginx_port,
        s.nginx_unbuffered_port
    );
    if opts.only.contains('a') {
        case_small(opts, &s, &mut r);
    }
    r.loads.push(format!("after (a): {}", loadavg()));
    if opts.only.contains('d') {
        case_bulk(opts, tmp, &s, &mut r);
    }
    r.loads.push(format!("after (d): {}", loadavg()));
    if opts.only.contains('e') {
        case_peak(bins, &s, &mut r);
    }
    if opts.only.contains('f') {
        case_ws(opts, bins, &s, &mut r);
    }
    r.loads.push(format!("after (f): {}", loadavg()));
    drop(s);
    finish_rest(opts, bins, tmp, r)
}

/// The cases that start their own processes: (b), (c), (g), (i), (j).
fn finish_rest(opts: &Opts, bins: &Bins, tmp: &Path, mut r: Report) -> Result<Report> {
    if opts.only.contains('b') {
        case_cold(opts, bins, tmp, &mut r);
    }
    if opts.only.contains('c') {
        case_idle(opts, bins, tmp, &mut r);
    }
    if opts.only.contains('g') {
        case_instr(opts, bins, tmp, &mut r);
    }
    if opts.only.contains('i') {
        match deploy::case_deploy(&bins.serve, &root(), tmp, &mut r.commands) {
            Ok(d) => {
                if d.failed > 0 {
                    r.fail(
                        "(i) deploys under load",
                        format!("{} of {} requests failed", d.failed, d.requests),
                    );
                }
                r.deploy = d;
            }
            Err(e) => r.fail("(i) deploys under load", e),
        }
    }
    if opts.only.contains('j') {
        match grpc::case_grpc(
            &bins.serve,
            &root(),
            tmp,
            opts.rounds as u32,
            &mut r.commands,
        ) {
            Ok(g) => r.grpc = g,
            Err(e) => r.fail("(j) HTTP/2 and gRPC", e),
        }
    }
    r.loads.push(format!("end: {}", loadavg()));
    Ok(r)
}

fn case_small(opts: &Opts, s: &Setup, r: &mut Report) {
    let tck = clk_tck();
    let contenders: [Contender; 3] = [
        ("direct", s.backend_port, None),
        ("ancm-serve", s.serve_port, Some((s.serve.pid(), false))),
        ("nginx", s.nginx_port, Some((s.nginx.pid(), true))),
    ];
    r.commands.push(format!(
        "(a) wrk -t1 -c64 -d{}s --timeout 5s --latency http://127.0.0.1:PORT/small",
        opts.secs
    ));
    // Warm-up: pools filled, caches warm.
    for (name, port, _) in &contenders {
        if let Err(e) = wrk(64, 1, &format!("http://127.0.0.1:{port}/small"), None) {
            r.fail(&format!("(a) warm-up {name}"), e);
        }
    }
    for round in 0..opts.rounds {
        let mut this: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
        for (name, port, cpu) in &contenders {
            let before = cpu.map(|(pid, ch)| cpu_ticks(pid, ch));
            let load = loadavg();
            let res = wrk(
                64,
                opts.secs,
                &format!("http://127.0.0.1:{port}/small"),
                None,
            );
            let after = cpu.map(|(pid, ch)| cpu_ticks(pid, ch));
            match res {
                Ok(w) => {
                    let cpu100k = match (before, after) {
                        (Some(Ok(b)), Some(Ok(a))) => {
                            (a.saturating_sub(b)) as f64 / tck / w.requests as f64 * 100_000.0
                        }
                        _ => f64::NAN,
                    };
                    eprintln!(
                        "bench: (a) round {} {name}: {:.0} req/s, p99 {:.2} ms, cpu/100k {:.3} s, load {load} {}",
                        round + 1,
                        w.rps,
                        w.p99_ms,
                        cpu100k,
                        w.errors
                    );
                    r.small
                        .entry(name)
                        .or_default()
                        .push((w.rps, w.p99_ms, cpu100k, load));
                    this.insert(name, (w.rps, w.p99_ms, cpu100k));
                }
                Err(e) => r.fail(&format!("(a) round {} {name}", round + 1), e),
            }
        }
        if let (Some(a), Some(n), Some(d)) = (
            this.get("ancm-serve"),
            this.get("nginx"),
            this.get("direct"),
        ) {
            r.small_ratios
                .entry("rps ancm/nginx")
                .or_default()
                .push(a.0 / n.0);
            r.small_ratios
                .entry("rps ancm/direct")
                .or_default()
                .push(a.0 / d.0);
            r.small_ratios
                .entry("rps nginx/direct")
                .or_default()
                .push(n.0 / d.0);
            r.small_ratios
                .entry("p99 ancm/nginx")
                .or_default()
                .push(a.1 / n.1);
            r.small_ratios
                .entry("cpu ancm/nginx")
                .or_default()
                .push(a.2 / n.2);
        }
    }
}

fn case_bulk(opts: &Opts, tmp: &Path, s: &Setup, r: &mut Report) {
    let script = tmp.join("upload.lua");
    if let Err(e) = std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", 1048576)\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n",
    ) {
        r.fail("(d) upload script", e);
        return;
    }
    let contenders: [(&'static str, u16); 4] = [
        ("direct", s.backend_port),
        ("ancm-serve", s.serve_port),
        ("nginx buffering on", s.nginx_port),
        ("nginx buffering off", s.nginx_unbuffered_port),
    ];
    r.commands.push(format!(
        "(d) wrk -t1 -c16 -d{}s --timeout 5s --latency http://127.0.0.1:PORT/bytes?n=1048576; uploads: the same with -s upload.lua (POST /upload, 1 MiB body) ",
        opts.secs_bulk
    ));
    for (kind, path, script) in [
        ("download", "/bytes?n=1048576", None),
        ("upload", "/upload", Some(script.as_path())),
    ] {
        for round in 0..opts.rounds {
            let mut this: BTreeMap<&str, f64> = BTreeMap::new();
            for (name, port) in &contenders {
                match wrk(
                    16,
                    opts.secs_bulk,
                    &format!("http://127.0.0.1:{port}{path}"),
                    script,
                ) {
                    Ok(w) => {
                        // Each request moves 1 MiB: MiB/s = requests/s.
                        eprintln!(
                            "bench: (d) {kind} round {} {name}: {:.0} MiB/s, load {}",
                            round + 1,
                            w.rps,
                            loadavg()
                        );
                        r.bulk
                            .entry(kind)
                            .or_default()
                            .entry(name)
                            .or_default()
                            .push(w.rps);
                        this.insert(name, w.rps);
                    }
                    Err(e) => r.fail(&format!("(d) {kind} round {} {name}", round + 1), e),
                }
            }
            if let Some(a) = this.get("ancm-serve") {
                for n in ["nginx buffering on", "nginx buffering off", "direct"] {
                    if let Some(v) = this.get(n) {
                        r.bulk_ratios
                            .entry(format!("{kind} ancm/{n}"))
                            .or_default()
                            .push(a / v);
                    }
                }
            }
        }
    }
}

fn case_peak(bins: &Bins, s: &Setup, r: &mut Report) {
    const GIB: u64 = 1 << 30;
    let addr = format!("127.0.0.1:{}", s.serve_port);
    let n = GIB.to_string();
    let path = format!("/bytes?n={GIB}");
    r.commands.push(format!(
        "(e) bench-load upload 127.0.0.1:PORT /upload {GIB}; bench-load download 127.0.0.1:PORT '/bytes?n={GIB}' (VmHWM of ancm-serve reset before each through /proc/PID/clear_refs)"
    ));
    for (what, args) in [
        (
            "1 GiB upload",
            vec!["upload", addr.as_str(), "/upload", n.as_str()],
        ),
        (
            "1 GiB download",
            vec!["download", addr.as_str(), path.as_str()],
        ),
    ] {
        let res = reset_hwm(s.serve.pid())
            .and_then(|()| status_kib(s.serve.pid(), "VmRSS"))
            .and_then(|before| {
                let (out, _) = output_bounded(
                    Command::new(&bins.load).args(&args),
                    Duration::from_secs(120),
                )?;
                let mibs =
                    kv(&out, "mib_per_s").ok_or_else(|| format!("bench-load printed {out:?}"))?;
                Ok((status_kib(s.serve.pid(), "VmHWM")?, mibs, before))
            });
        match res {
            Ok((hwm, mibs, before)) => {
                eprintln!(
                    "bench: (e) {what}: VmHWM {:.1} MiB (VmRSS before {:.1} MiB), {mibs:.0} MiB/s",
                    hwm as f64 / 1024.0,
                    before as f64 / 1024.0
                );
                r.peak.push((what, hwm as f64, mibs, before as f64));
            }
            Err(e) => r.fail(&format!("(e) {what}"), e),
        }
    }
}

fn kv(out: &str, key: &str) -> Option<f64> {
    out.split_whitespace()
        .find_map(|p| p.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn case_ws(opts: &Opts, bins: &Bins, s: &Setup, r: &mut Report) {
    let contenders: [(&'static str, u16); 3] = [
        ("direct", s.backend_port),
        ("ancm-serve", s.serve_port),
        ("nginx", s.nginx_port),
    ];
    r.commands.push(format!(
        "(f) bench-load ws 127.0.0.1:PORT /ws 64 {} 64",
        opts.secs_bulk
    ));
    let secs = opts.secs_bulk.to_string();
    for round in 0..opts.rounds {
        let mut this: BTreeMap<&str, f64> = BTreeMap::new();
        for (name, port) in &contenders {
            let addr = format!("127.0.0.1:{port}");
            let res = output_bounded(
                Command::new(&bins.load).args(["ws", &addr, "/ws", "64", &secs, "64"]),
                Duration::from_secs(opts.secs_bulk + 30),
            )
            .and_then(
                |(out, _)| match (kv(&out, "msgs_per_s"), kv(&out, "p99_us")) {
                    (Some(m), Some(p)) => Ok((m, p)),
                    _ => Err(format!("bench-load printed {out:?}")),
                },
            );
            match res {
                Ok((m, p)) => {
                    eprintln!(
                        "bench: (f) round {} {name}: {m:.0} msg/s, p99 {p} µs",
                        round + 1
                    );
                    r.ws.entry(name).or_default().push((m, p));
                    this.insert(name, m);
                }
                Err(e) => r.fail(&format!("(f) WebSocket round {} {name}", round + 1), e),
            }
        }
        if let (Some(a), Some(d)) = (this.get("ancm-serve"), this.get("direct")) {
            r.ws_ratios.push(a / d);
        }
    }
}

/// A fresh ancm-serve in front of a fresh backend on a random port, the backend logging its
/// listen time to `listen_log`.
fn fresh_serve(bins: &Bins, tmp: &Path, tag: &str) -> Result<(Proc, u16, PathBuf)> {
    let site = tmp.join(format!("site-{tag}"));
    let listen_log = site.join("listen.log");
    let _ = std::fs::remove_file(&listen_log);
    let config = write_site(
        bins,
        &site,
        &[
            ("BENCH_LISTEN_LOG", listen_log.display().to_string()),
            ("BENCH_BACKEND_THREADS", "1".into()),
        ],
    )?;
    let (p, port) = start_serve(bins, &config, &site.join("ancm-serve.log"))?;
    Ok((p, port, listen_log))
}

fn case_cold(opts: &Opts, bins: &Bins, tmp: &Path, r: &mut Report) {
    r.commands.push(format!(
        "(b) {} times: a fresh ancm-serve --listen 127.0.0.1:PORT web.config (backend on a random port); once it listens, one GET /small; \
         first response time − the backend's 'listening … wall_ns=' time; RSS of ancm-serve 300 ms later (case c)",
        opts.cold_samples
    ));
    for i in 0..opts.cold_samples {
        let res = (|| -> Result<(f64, f64, u64)> {
            let (mut p, port, log) = fresh_serve(bins, tmp, &format!("cold{i}"))?;
            let t0 = wall_ns();
            let status = http_get(port, "/small", Duration::from_secs(10))?;
            let t1 = wall_ns();
            if status != 200 {
                return Err(format!("first request answered {status}"));
            }
            let text =
                std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
            let listened: u128 = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("wall_ns=")?.parse().ok())
                .ok_or_else(|| format!("no wall_ns= in {text:?}"))?;
            std::thread::sleep(Duration::from_millis(300));
            let rss = status_kib(p.pid(), "VmRSS")?;
            p.stop(Duration::from_secs(10));
            Ok((
                t1.saturating_sub(listened) as f64 / 1e6,
                t1.saturating_sub(t0) as f64 / 1e6,
                rss,
            ))
        })();
        match res {
            Ok((cold, total, rss)) => {
                eprintln!("bench: (b) sample {}: {cold:.2} ms after listen, {total:.2} ms in all; idle RSS {rss} KiB", i + 1);
                r.cold.push((cold, total));
                r.idle_rss_kib.push(rss as f64);
            }
            Err(e) => r.fail(&format!("(b) cold start sample {}", i + 1), e),
        }
    }
}

fn case_idle(opts: &Opts, bins: &Bins, tmp: &Path, r: &mut Report) {
    const CONNS: usize = 1000;
    let samples = if opts.quick { 1 } else { 3 };
    r.commands.push(format!(
        "(c) fresh ancm-serve, one GET, then bench-load idle 127.0.0.1:PORT /small {CONNS} (opens {CONNS} keep-alive connections, one GET each, holds them); (VmRSS with them − VmRSS before) / {CONNS}"
    ));
    for i in 0..samples {
        let res = (|| -> Result<f64> {
            let (_p, port, _) = fresh_serve(bins, tmp, &format!("idle{i}"))?;
            let pid = _p.pid();
            if http_get(port, "/small", Duration::from_secs(10))? != 200 {
                return Err("first request failed".into());
            }
            std::thread::sleep(Duration::from_millis(300));
            let before = status_kib(pid, "VmRSS")?;
            let mut load = Proc::spawn(
                "bench-load idle",
                Command::new(&bins.load)
                    .args([
                        "idle",
                        &format!("127.0.0.1:{port}"),
                        "/small",
                        &CONNS.to_string(),
                    ])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit()),
            )?;
            let stdout = load.child.stdout.take().ok_or("no stdout pipe")?;
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .map_err(|_| "bench-load idle did not get ready in 60 s")?;
            if !line.starts_with("ready") {
                return Err(format!("bench-load idle: {line:?}"));
            }
            std::thread::sleep(Duration::from_millis(300));
            let with = status_kib(pid, "VmRSS")?;
            drop(load.child.stdin.take());
            load.stop(Duration::from_secs(5));
            Ok((with as f64 - before as f64) / CONNS as f64)
        })();
        match res {
            Ok(kib) => {
                eprintln!(
                    "bench: (c) sample {}: {kib:.2} KiB per idle connection",
                    i + 1
                );
                r.per_conn_kib.push(kib);
            }
            Err(e) => r.fail(&format!("(c) idle connections sample {}", i + 1), e),
        }
    }
}

/// Case (g): user-space instructions per request under callgrind, for ancm-serve and a
/// one-process nginx: repeatable whatever else the machine is doing, so engine changes can be
/// compared on a shared machine.
fn case_instr(opts: &Opts, bins: &Bins, tmp: &Path, r: &mut Report) {
    let secs = if opts.quick { 3 } else { 10 };
    r.commands.push(format!(
        "(g) valgrind --tool=callgrind PROXY …; one GET, wrk -t1 -c64 -d2s (warm-up), callgrind_control -z, \
         wrk -t1 -c64 -d{secs}s http://127.0.0.1:PORT/small, callgrind_control -d; instructions / requests. \
         nginx with master_process off and 1 worker, in front of a bench-backend of its own"
    ));
    let dir = tmp.join("callgrind");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        r.fail("(g) callgrind", e);
        return;
    }
    // ancm-serve, starting its backend from a web.config.
    let res = (|| -> Result<f64> {
        let config = write_site(
            bins,
            &dir.join("site"),
            &[("BENCH_BACKEND_THREADS", "1".into())],
        )?;
        let port = free_port()?;
        let out = dir.join("ancm-serve.cg");
        let log = std::fs::File::create(dir.join("ancm-serve.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(&bins.serve)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        instructions_per_request("ancm-serve", &mut cmd, port, &out, secs)
    })();
    match res {
        Ok(v) => {
            eprintln!("bench: (g) ancm-serve: {v:.0} instructions per request");
            r.instr.insert("ancm-serve", v);
        }
        Err(e) => r.fail("(g) callgrind ancm-serve", e),
    }
    // nginx, one process, in front of its own backend.
    let res = (|| -> Result<f64> {
        let backend_port = free_port()?;
        let _backend = Proc::spawn(
            "bench-backend",
            Command::new(&bins.backend)
                .args(["--port", &backend_port.to_string(), "--threads", "1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        wait_listening(backend_port, Duration::from_secs(10))?;
        let ngx = dir.join("nginx");
        std::fs::create_dir_all(&ngx).map_err(|e| e.to_string())?;
        let port = free_port()?;
        let other = free_port()?;
        let user = current_user();
        let conf = format!(
            "master_process off;\n{}",
            nginx_conf(
                &ngx,
                1,
                backend_port,
                port,
                other,
                if is_root() { user.as_deref() } else { None }
            )
        );
        std::fs::write(ngx.join("nginx.conf"), conf).map_err(|e| e.to_string())?;
        let out = dir.join("nginx.cg");
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg("/usr/sbin/nginx")
            .arg("-p")
            .arg(&ngx)
            .arg("-c")
            .arg(ngx.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        instructions_per_request("nginx", &mut cmd, port, &out, secs)
    })();
    match res {
        Ok(v) => {
            eprintln!("bench: (g) nginx: {v:.0} instructions per request");
            r.instr.insert("nginx", v);
        }
        Err(e) => r.fail("(g) callgrind nginx", e),
    }
}

/// Starts `cmd` (a proxy under callgrind listening on `port`), loads it, and returns the
/// instructions counted between zeroing and dumping, per request wrk completed meanwhile.
fn instructions_per_request(
    name: &str,
    cmd: &mut Command,
    port: u16,
    out: &Path,
    secs: u64,
) -> Result<f64> {
    let mut p = Proc::spawn(name, cmd)?;
    wait_listening(port, Duration::from_secs(60))?;
    let status = http_get(port, "/small", Duration::from_secs(30))?;
    if status != 200 {
        return Err(format!("{name} under callgrind answered {status}"));
    }
    let url = format!("http://127.0.0.1:{port}/small");
    wrk(64, 2, &url, None)?;
    let pid = p.pid().to_string();
    output_bounded(
        Command::new("callgrind_control").args(["-z", &pid]),
        Duration::from_secs(30),
    )?;
    let w = wrk(64, secs, &url, None)?;
    output_bounded(
        Command::new("callgrind_control").args(["-d", &pid]),
        Duration::from_secs(30),
    )?;
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let total = loop {
        let text = std::fs::read_to_string(&dump).unwrap_or_default();
        if let Some(v) = text
            .lines()
            .find_map(|l| l.strip_prefix("summary:")?.trim().parse::<f64>().ok())
        {
            break v;
        }
        if Instant::now() > deadline {
            return Err(format!("no callgrind dump at {}", dump.display()));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    p.stop(Duration::from_secs(30));
    Ok(total / w.requests as f64)
}

fn machine_facts() -> Vec<(String, String)> {
    let first_line = |cmd: &mut Command| -> String {
        cmd.output()
            .map(|o| {
                let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
                s.push_str(&String::from_utf8_lossy(&o.stderr));
                s.lines().next().unwrap_or("").trim().to_owned()
            })
            .unwrap_or_else(|e| format!("unknown ({e})"))
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    vec![
        ("cores".into(), format!("{} ({cpu})", workers())),
        (
            "kernel".into(),
            first_line(Command::new("uname").args(["-sr"])),
        ),
        ("rustc".into(), first_line(Command::new("rustc").arg("-V"))),
        (
            "nginx".into(),
            first_line(Command::new("/usr/sbin/nginx").arg("-v")),
        ),
        ("wrk".into(), first_line(Command::new("wrk").arg("-v"))),
        (
            "ancm-serve".into(),
            format!(
                "{} worker threads (one per core); git {}",
                workers(),
                first_line(Command::new("git").args(["rev-parse", "--short", "HEAD"]))
            ),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The report.

fn write_report(opts: &Opts, r: &Report) -> Result {
    let svg_dir = opts.out.parent().unwrap_or(Path::new(".")).join("bench");
    std::fs::create_dir_all(&svg_dir)
        .map_err(|e| format!("cannot create {}: {e}", svg_dir.display()))?;
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `cargo xtask bench{}` (issue 8). All processes on loopback on one machine; the contenders \
         alternate within each round (direct, ancm-serve, nginx, …), {} round(s). Numbers are medians with min–max; \
         ratios are taken pair by pair within a round, then summarised the same way.\n",
        if opts.quick { " --quick" } else { "" },
        opts.rounds
    );
    let _ = writeln!(md, "## Machine\n");
    for (k, v) in &r.machine {
        let _ = writeln!(md, "- {k}: {v}");
    }
    let _ = writeln!(
        md,
        "- load average (1/5/15 min) during the run: {}",
        r.loads.join("; ")
    );
    let _ = writeln!(
        md,
        "\nThe backend is `bench-backend` (hyper, one current-thread runtime), started by ancm-serve from a web.config \
         with a fixed ASPNETCORE_PORT, so direct, ancm-serve and nginx all reach the same process. nginx: \
         `worker_processes {w}` (= ancm-serve's worker threads), upstream `keepalive 64`, `proxy_http_version 1.1`, \
         `proxy_set_header Connection \"\"`, `access_log off`. No CPU pinning: with 2 cores and three busy processes \
         (load generator, proxy, backend) any split gives one of them less than a core and measures the split; \
         instead all contenders share the same machine state and alternate.\n",
        w = workers()
    );
    let _ = writeln!(md, "## Commands\n");
    for c in &r.commands {
        let _ = writeln!(md, "- `{c}`");
    }

    // (a)
    let _ = writeln!(
        md,
        "\n## Results\n\n### (a) Small GET (13-byte body), 64 keep-alive connections\n"
    );
    let _ = writeln!(
        md,
        "| contender | req/s | p99 ms | proxy CPU s / 100k req |\n|---|---|---|---|"
    );
    for name in ["direct", "ancm-serve", "nginx"] {
        let v = r.small.get(name).cloned().unwrap_or_default();
        let col = |f: fn(&(f64, f64, f64, String)) -> f64| v.iter().map(f).collect::<Vec<f64>>();
        let cpu = if name == "direct" {
            "—".to_owned()
        } else {
            fmt_stat(stat(&col(|x| x.2)), 3)
        };
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {cpu} |",
            fmt_stat(stat(&col(|x| x.0)), 0),
            fmt_stat(stat(&col(|x| x.1)), 2)
        );
    }
    let _ = writeln!(md, "\n| ratio (per round) | median (min–max) |\n|---|---|");
    for (k, v) in &r.small_ratios {
        let _ = writeln!(md, "| {k} | {} |", fmt_stat(stat(v), 2));
    }
    let _ = writeln!(md, "\n![small GET req/s](bench/small-get.svg)\n");

    // (b), (c)
    let cold: Vec<f64> = r.cold.iter().map(|c| c.0).collect();
    let total: Vec<f64> = r.cold.iter().map(|c| c.1).collect();
    let _ = writeln!(md, "### (b) Cold start\n");
    let _ = writeln!(
        md,
        "| measure | ms, median (min–max), {} samples |\n|---|---|",
        cold.len()
    );
    let _ = writeln!(
        md,
        "| first response − backend's listen time | {} |",
        fmt_stat(stat(&cold), 2)
    );
    let _ = writeln!(md, "| first response − request sent (includes process creation and the backend's own start) | {} |", fmt_stat(stat(&total), 2));
    let rss_mib: Vec<f64> = r.idle_rss_kib.iter().map(|k| k / 1024.0).collect();
    let _ = writeln!(
        md,
        "\n### (c) Idle memory\n\n| measure | median (min–max) |\n|---|---|"
    );
    let _ = writeln!(
        md,
        "| RSS of ancm-serve with the app running, after one request (MiB) | {} |",
        fmt_stat(stat(&rss_mib), 2)
    );
    let _ = writeln!(
        md,
        "| RSS per idle keep-alive client connection (KiB, 1000 connections) | {} |",
        fmt_stat(stat(&r.per_conn_kib), 2)
    );

    // (d)
    let _ = writeln!(md, "\n### (d) 1 MiB bodies, 16 connections (MiB/s)\n");
    let _ = writeln!(md, "| contender | downloads | uploads |\n|---|---|---|");
    let bulk_names = [
        "direct",
        "ancm-serve",
        "nginx buffering on",
        "nginx buffering off",
    ];
    for name in bulk_names {
        let get = |kind: &str| {
            r.bulk
                .get(kind)
                .and_then(|m| m.get(name))
                .map(|v| fmt_stat(stat(v), 0))
                .unwrap_or_else(|| "n/a".into())
        };
        let _ = writeln!(md, "| {name} | {} | {} |", get("download"), get("upload"));
    }
    let _ = writeln!(md, "\n| ratio (per round) | median (min–max) |\n|---|---|");
    for (k, v) in &r.bulk_ratios {
        let _ = writeln!(md, "| {k} | {} |", fmt_stat(stat(v), 2));
    }
    let _ = writeln!(
        md,
        "\n(nginx \"buffering off\" sets both `proxy_buffering off` and `proxy_request_buffering off`; \"on\" is nginx's default for both, so its uploads are spooled to a temp file first.)\n\n![1 MiB bodies](bench/bulk.svg)\n"
    );

    // (e)
    let _ = writeln!(
        md,
        "### (e) Peak RSS of ancm-serve during one 1 GiB body\n\nOn the ancm-serve instance of (a) and (d) (so its heap already holds what 64 connections left), VmHWM reset first.\n\n| transfer | VmRSS before, MiB | VmHWM during, MiB | MiB/s |\n|---|---|---|---|"
    );
    for (what, hwm, mibs, before) in &r.peak {
        let _ = writeln!(
            md,
            "| {what} | {:.1} | {:.1} | {mibs:.0} |",
            before / 1024.0,
            hwm / 1024.0
        );
    }

    // (f)
    let _ = writeln!(md, "\n### (f) WebSocket echo, 64-byte messages, 64 connections\n\n| contender | messages/s | p99 µs |\n|---|---|---|");
    for name in ["direct", "ancm-serve", "nginx"] {
        let v = r.ws.get(name).cloned().unwrap_or_default();
        let m: Vec<f64> = v.iter().map(|x| x.0).collect();
        let p: Vec<f64> = v.iter().map(|x| x.1).collect();
        let _ = writeln!(
            md,
            "| {name} | {} | {} |",
            fmt_stat(stat(&m), 0),
            fmt_stat(stat(&p), 0)
        );
    }
    let _ = writeln!(
        md,
        "\nancm-serve / direct messages/s, per round: {}",
        fmt_stat(stat(&r.ws_ratios), 2)
    );
    let _ = writeln!(
        md,
        "\n### (g) User-space instructions per small GET (callgrind; repeatable on a busy machine)\n\n| proxy | instructions / request |\n|---|---|"
    );
    for (name, v) in &r.instr {
        let _ = writeln!(md, "| {name} | {v:.0} |");
    }
    if let (Some(a), Some(n)) = (r.instr.get("ancm-serve"), r.instr.get("nginx")) {
        let _ = writeln!(md, "\nancm-serve / nginx: {:.2}×", a / n);
    }
    abi::write_section(&mut md, &r.abi);
    let _ = writeln!(md);
    deploy::write_section(&mut md, &r.deploy);
    grpc::write_section(&mut md, &r.grpc);

    // Bars.
    let _ = writeln!(
        md,
        "## Bars of issue 8\n\n| bar | measured (median) | |\n|---|---|---|"
    );
    let med = |v: Option<&Vec<f64>>| v.and_then(|v| stat(v)).map(|s| s.median);
    let mut bar = |name: &str,
                   value: Option<f64>,
                   shown: &dyn Fn(f64) -> String,
                   ok: &dyn Fn(f64) -> bool| {
        let (m, verdict) = match value {
            Some(v) => (shown(v), if ok(v) { "met" } else { "**missed**" }),
            None => ("not measured".into(), "**not measured**"),
        };
        let _ = writeln!(md, "| {name} | {m} | {verdict} |");
    };
    bar(
        "req/s ≥ 1.0× nginx",
        med(r.small_ratios.get("rps ancm/nginx")),
        &|v| format!("{v:.2}×"),
        &|v| v >= 1.0,
    );
    bar(
        "p99 ≤ nginx's",
        med(r.small_ratios.get("p99 ancm/nginx")),
        &|v| format!("{v:.2}×"),
        &|v| v <= 1.0,
    );
    bar(
        "CPU per request ≤ 1.0× nginx",
        med(r.small_ratios.get("cpu ancm/nginx")),
        &|v| format!("{v:.2}×"),
        &|v| v <= 1.0,
    );
    for kind in ["download", "upload"] {
        for n in ["nginx buffering on", "nginx buffering off"] {
            bar(
                &format!("1 MiB {kind}s ≥ 1.0× {n}"),
                med(r.bulk_ratios.get(&format!("{kind} ancm/{n}"))),
                &|v| format!("{v:.2}×"),
                &|v| v >= 1.0,
            );
        }
    }
    for what in ["1 GiB upload", "1 GiB download"] {
        let v = r.peak.iter().find(|p| p.0 == what).map(|p| p.1 / 1024.0);
        bar(
            &format!("peak RSS during one {what} ≤ 64 MiB"),
            v,
            &|v| format!("{v:.1} MiB"),
            &|v| v <= 64.0,
        );
    }
    bar(
        "cold start ≤ 10 ms",
        stat(&cold).map(|s| s.median),
        &|v| format!("{v:.2} ms"),
        &|v| v <= 10.0,
    );
    bar(
        "idle RSS ≤ 15 MiB",
        stat(&rss_mib).map(|s| s.median),
        &|v| format!("{v:.2} MiB"),
        &|v| v <= 15.0,
    );
    bar(
        "≤ 16 KiB per idle connection",
        stat(&r.per_conn_kib).map(|s| s.median),
        &|v| format!("{v:.2} KiB"),
        &|v| v <= 16.0,
    );
    bar(
        "C ABI ≤ 1.05× the Rust API (CPU per request)",
        med(Some(&r.abi.ratios)),
        &|v| format!("{v:.3}×"),
        &|v| v <= 1.05,
    );
    bar(
        "C ABI ≤ 1.05× the Rust API (instructions per request)",
        abi::instr_ratio(&r.abi),
        &|v| format!("{v:.3}×"),
        &|v| v <= 1.05,
    );
    let _ = writeln!(
        md,
        "| WebSocket echo: report vs direct | {} | report |",
        med(Some(&r.ws_ratios))
            .map(|v| format!("{v:.2}× direct"))
            .unwrap_or_else(|| "not measured".into())
    );
    if !r.failures.is_empty() {
        let _ = writeln!(md, "\n## Could not measure\n");
        for f in &r.failures {
            let _ = writeln!(md, "- {}", f.replace('\n', " "));
        }
    }

    // Charts.
    let small_groups: Groups = vec![(
        "small GET, 64 connections".into(),
        ["direct", "ancm-serve", "nginx"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    r.small
                        .get(n)
                        .and_then(|v| stat(&v.iter().map(|x| x.0).collect::<Vec<_>>())),
                )
            })
            .collect(),
    )];
    write_svg(
        &svg_dir.join("small-get.svg"),
        &bar_chart(
            "Small GET, 64 keep-alive connections",
            "requests/s",
            &small_groups,
        ),
    )?;
    let bulk_groups: Groups = ["download", "upload"]
        .iter()
        .map(|k| {
            (
                format!("1 MiB {k}s"),
                bulk_names
                    .iter()
                    .map(|n| {
                        (
                            n.to_string(),
                            r.bulk.get(k).and_then(|m| m.get(n)).and_then(|v| stat(v)),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    write_svg(
        &svg_dir.join("bulk.svg"),
        &bar_chart("1 MiB bodies, 16 connections", "MiB/s", &bulk_groups),
    )?;

    // Keep the hand-written part.
    let kept = std::fs::read_to_string(&opts.out)
        .ok()
        .and_then(|old| old.find(KEEP_MARKER).map(|i| old[i..].to_owned()))
        .unwrap_or_else(|| format!("{KEEP_MARKER}\n"));
    let _ = writeln!(md);
    md.push_str(&kept);
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&opts.out, md).map_err(|e| format!("cannot write {}: {e}", opts.out.display()))
}

fn write_svg(path: &Path, svg: &str) -> Result {
    std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A grouped bar chart with min–max whiskers, as hand-written SVG (no plotting crate: it would
/// add a minute of build time to xtask for two charts).
fn bar_chart(title: &str, unit: &str, groups: &Groups) -> String {
    const COLORS: [&str; 4] = ["#7f7f7f", "#d62728", "#1f77b4", "#9ecae1"];
    let (w, h, left, top, bottom) = (760.0, 380.0, 80.0, 40.0, 70.0);
    let plot_h = h - top - bottom;
    let max = groups
        .iter()
        .flat_map(|g| g.1.iter().filter_map(|s| s.1.map(|s| s.max)))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let group_w = (w - left - 20.0) / groups.len().max(1) as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        xml_escape(title)
    );
    let y = |v: f64| top + plot_h - v / max * plot_h;
    for i in 0..=5 {
        let v = max / 5.0 * i as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}</text>",
            w - 20.0,
            left - 6.0,
            y(v) + 4.0,
            v,
            yy = y(v)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">{}</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        xml_escape(unit)
    );
    for (gi, (gname, series)) in groups.iter().enumerate() {
        let gx = left + gi as f64 * group_w;
        let bar_w = (group_w * 0.8) / series.len().max(1) as f64;
        for (si, (sname, st)) in series.iter().enumerate() {
            let x = gx + group_w * 0.1 + si as f64 * bar_w;
            let color = COLORS[si % COLORS.len()];
            if let Some(st) = st {
                let _ = writeln!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\n\
                     <line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
                     <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{:.0}</text>",
                    y(st.median),
                    bar_w * 0.9,
                    top + plot_h - y(st.median),
                    y(st.min),
                    y(st.max),
                    y(st.max) - 4.0,
                    st.median,
                    cx = x + bar_w * 0.45
                );
            }
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                x + bar_w * 0.45,
                top + plot_h + 14.0,
                xml_escape(sname)
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>",
            gx + group_w / 2.0,
            top + plot_h + 36.0,
            xml_escape(gname)
        );
    }
    let _ = writeln!(s, "<text x=\"{left}\" y=\"{}\" font-size=\"10\" fill=\"#555\">bars: median; whiskers: min–max over rounds</text>", h - 8.0);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 2s test @ http://127.0.0.1:1/small\n  1 threads and 64 connections\n  Latency Distribution\n     50%  255.00us\n     99%    1.20ms\n  123456 requests in 2.00s, 10.00MB read\n  Socket errors: connect 0, read 1, write 0, timeout 0\nRequests/sec:  61728.00\nTransfer/sec:      5.00MB\n";
        let w = parse_wrk(out).expect("parses");
        assert_eq!(w.requests, 123456);
        assert!((w.rps - 61728.0).abs() < 1e-6);
        assert!((w.p99_ms - 1.2).abs() < 1e-9);
        assert!(w.errors.contains("read 1"));
        assert_eq!(parse_latency_ms("850.00us"), Some(0.85));
        assert_eq!(parse_latency_ms("1.50s"), Some(1500.0));
    }

    #[test]
    fn stats_are_median_min_max() {
        let s = stat(&[3.0, 1.0, 2.0, 10.0]).expect("some");
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert!(stat(&[]).is_none());
    }
}
