//! Case (j): HTTP/2 and gRPC. The apps are the test suite's own: tests/backends/grpc_server.py
//! (grpcio, generic handlers) and tests/backends/h2_raw.py (the h2 library), each once started
//! directly and once behind ancm-serve with `backendProtocol="h2c"`; rounds alternate direct and
//! proxied. Measured: unary gRPC calls/s and p50/p99 of sequential calls from a grpcio client
//! (bench/grpc_latency.py), unary calls/s under h2load (4 connections × 16 streams), and small
//! h2c GET req/s under h2load against the h2 app.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, output_bounded, wait_listening, Proc};

/// One contender's numbers in one round.
#[derive(Default, Clone)]
pub struct GrpcRound {
    /// Sequential unary calls per second (one grpcio channel).
    pub seq_calls_per_s: f64,
    /// Their median and 99th-percentile latency in ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Unary calls per second under h2load.
    pub h2load_calls_per_s: f64,
    /// Small h2c GETs per second under h2load.
    pub h2c_get_per_s: f64,
}

/// What case (j) measured: per round, direct then through ancm-serve.
#[derive(Default)]
pub struct GrpcReport {
    pub rounds: Vec<(GrpcRound, GrpcRound)>,
}

const SEQ_CALLS: u32 = 2_000;
const H2LOAD_REQUESTS: u32 = 20_000;

/// A site folder whose web.config starts `script` with `backendProtocol="h2c"`.
fn site(repo: &Path, tmp: &Path, name: &str, script: &str) -> Result<std::path::PathBuf, String> {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let script = repo.join("tests/backends").join(script);
    std::fs::write(
        dir.join("web.config"),
        format!(
            "<configuration><system.webServer><aspNetCore processPath=\"python3\" arguments=\"{}\">\
             <handlerSettings><handlerSetting name=\"backendProtocol\" value=\"h2c\"/></handlerSettings>\
             </aspNetCore></system.webServer></configuration>",
            super::xml_escape(&script.display().to_string())
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(dir)
}

/// `script` started directly on a free port (its working directory `dir`).
fn direct(repo: &Path, dir: &Path, script: &str) -> Result<(Proc, u16), String> {
    let port = free_port()?;
    let p = Proc::spawn(
        script,
        Command::new("python3")
            .arg(repo.join("tests/backends").join(script))
            .current_dir(dir)
            .env("ASPNETCORE_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    wait_listening(port, Duration::from_secs(20))?;
    Ok((p, port))
}

/// ancm-serve in front of the site `dir`, its app started by a first call.
fn proxied(serve: &Path, dir: &Path) -> Result<(Proc, u16), String> {
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("ancm-serve.log")).map_err(|e| e.to_string())?;
    let p = Proc::spawn(
        "ancm-serve",
        Command::new(serve)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir.join("web.config"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
    )?;
    wait_listening(port, Duration::from_secs(10))?;
    Ok((p, port))
}

/// `key=value` of a grpc_latency.py line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn latency(repo: &Path, port: u16, r: &mut GrpcRound) -> Result<(), String> {
    let (out, err) = output_bounded(
        Command::new("python3")
            .arg(repo.join("bench/grpc_latency.py"))
            .arg(port.to_string())
            .arg(SEQ_CALLS.to_string()),
        Duration::from_secs(120),
    )?;
    let line = out.lines().last().unwrap_or_default();
    match (
        field(line, "calls_per_s"),
        field(line, "p50_ms"),
        field(line, "p99_ms"),
    ) {
        (Some(c), Some(p50), Some(p99)) => {
            r.seq_calls_per_s = c;
            r.p50_ms = p50;
            r.p99_ms = p99;
            Ok(())
        }
        _ => Err(format!("grpc_latency.py: {out}{err}")),
    }
}

/// req/s of an h2load run; every request must have succeeded with a 2xx.
fn h2load(url: &str, extra: &[&str]) -> Result<f64, String> {
    let n = H2LOAD_REQUESTS.to_string();
    let (out, err) = output_bounded(
        Command::new("h2load")
            .args(["-n", &n, "-c", "4", "-m", "16"])
            .args(extra)
            .arg(url),
        Duration::from_secs(180),
    )?;
    let ok = out.contains(&format!("{n} succeeded")) && out.contains(&format!("{n} 2xx"));
    let rate = out
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| {
            l.split(", ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
    match rate {
        Some(r) if ok => Ok(r),
        _ => Err(format!(
            "h2load {url}: not every request succeeded:\n{out}{err}"
        )),
    }
}

/// Runs case (j) for `rounds` rounds with the ancm-serve binary `serve`.
pub fn case_grpc(
    serve: &Path,
    repo: &Path,
    tmp: &Path,
    rounds: u32,
    commands: &mut Vec<String>,
) -> Result<GrpcReport, String> {
    commands.push(format!(
        "(j) tests/backends/grpc_server.py and tests/backends/h2_raw.py, direct and behind ancm-serve \
         (backendProtocol=h2c), alternating: python3 bench/grpc_latency.py PORT {SEQ_CALLS} (sequential \
         unary calls, one grpcio channel); h2load -n {H2LOAD_REQUESTS} -c 4 -m 16 -d <5-byte-framed \"hi\"> \
         -H content-type:application/grpc -H te:trailers http://127.0.0.1:PORT/test.Echo/Unary; \
         h2load -n {H2LOAD_REQUESTS} -c 4 -m 16 http://127.0.0.1:PORT/ (the h2 app)"
    ));
    let grpc_site = site(repo, tmp, "site-grpc", "grpc_server.py")?;
    let h2_site = site(repo, tmp, "site-h2", "h2_raw.py")?;
    let body = tmp.join("grpc-unary.bin");
    // A gRPC message: not compressed, 2 bytes, "hi".
    std::fs::write(&body, [0, 0, 0, 0, 2, b'h', b'i']).map_err(|e| e.to_string())?;
    let body = body.display().to_string();
    let unary_args = [
        "-d",
        body.as_str(),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
    ];
    let (_direct_grpc, grpc_port) = direct(repo, &grpc_site, "grpc_server.py")?;
    let (_direct_h2, h2_port) = direct(repo, &h2_site, "h2_raw.py")?;
    let (mut proxy_grpc, proxy_grpc_port) = proxied(serve, &grpc_site)?;
    let (mut proxy_h2, proxy_h2_port) = proxied(serve, &h2_site)?;
    let mut report = GrpcReport::default();
    for round in 0..rounds.max(1) {
        let mut pair = (GrpcRound::default(), GrpcRound::default());
        for (which, grpc, h2) in [(0, grpc_port, h2_port), (1, proxy_grpc_port, proxy_h2_port)] {
            let r = if which == 0 { &mut pair.0 } else { &mut pair.1 };
            latency(repo, grpc, r)?;
            r.h2load_calls_per_s = h2load(
                &format!("http://127.0.0.1:{grpc}/test.Echo/Unary"),
                &unary_args,
            )?;
            r.h2c_get_per_s = h2load(&format!("http://127.0.0.1:{h2}/"), &[])?;
        }
        eprintln!(
            "bench: (j) round {}: unary {:.0} vs {:.0} calls/s (p99 {:.2} vs {:.2} ms), h2load unary {:.0} vs {:.0}, h2c GET {:.0} vs {:.0} req/s",
            round + 1,
            pair.0.seq_calls_per_s,
            pair.1.seq_calls_per_s,
            pair.0.p99_ms,
            pair.1.p99_ms,
            pair.0.h2load_calls_per_s,
            pair.1.h2load_calls_per_s,
            pair.0.h2c_get_per_s,
            pair.1.h2c_get_per_s
        );
        report.rounds.push(pair);
    }
    proxy_grpc.stop(Duration::from_secs(20));
    proxy_h2.stop(Duration::from_secs(20));
    Ok(report)
}

/// One number of a round.
type Measure = fn(&GrpcRound) -> f64;

/// The report's section for case (j): medians over the rounds, and the proxied ÷ direct ratio.
pub fn write_section(md: &mut String, r: &GrpcReport) {
    use std::fmt::Write as _;
    if r.rounds.is_empty() {
        return;
    }
    let med = |f: Measure, proxied: bool| {
        let v: Vec<f64> = r
            .rounds
            .iter()
            .map(|(d, p)| f(if proxied { p } else { d }))
            .collect();
        super::stat(&v).map(|s| s.median).unwrap_or(0.0)
    };
    let _ = writeln!(
        md,
        "### (j) HTTP/2 and gRPC ({} rounds, medians)\n\n| measure | direct | through ancm-serve | ratio |\n|---|---|---|---|",
        r.rounds.len()
    );
    let rows: [(&str, Measure); 5] = [
        ("unary gRPC calls/s, sequential (grpcio)", |g| {
            g.seq_calls_per_s
        }),
        ("unary gRPC p50 ms, sequential", |g| g.p50_ms),
        ("unary gRPC p99 ms, sequential", |g| g.p99_ms),
        ("unary gRPC calls/s, h2load 4×16", |g| g.h2load_calls_per_s),
        ("small h2c GET req/s, h2load 4×16", |g| g.h2c_get_per_s),
    ];
    for (name, f) in rows {
        let (d, p) = (med(f, false), med(f, true));
        let ratio = if d > 0.0 { p / d } else { 0.0 };
        let _ = writeln!(md, "| {name} | {d:.2} | {p:.2} | {ratio:.2}× |");
    }
    let _ = writeln!(md);
}
