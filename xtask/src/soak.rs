//! `cargo xtask soak [--minutes N] [--clients C] [--kill-every S]`: runs a release ancm-serve
//! against examples/hello for N minutes (default 60; not part of CI) under C keep-alive clients
//! (default 8), SIGKILLing the backend every S seconds (default 20), and samples ancm-serve's
//! resident memory and open descriptors every minute (every 10 s when N < 10).
//!
//! Traffic mix per client: mostly `GET /pid`, some 1 MiB downloads (`/bytes`) and some requests
//! that outlive requestTimeout (`/sleep?s=3` with requestTimeout = 2 s, answered 502.3), so the
//! success, timeout and crash paths all run for the whole soak.
//!
//! Fails if a request hangs (no answer in 60 s), if a backend outlives ancm-serve, or if the
//! mean of the last third of the samples exceeds the mean of the first third (the first sample,
//! taken before warm-up, is left out) by more than the tolerances below.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sh::{root, run as sh_run, Result};

/// RSS may grow by this much plus [`RSS_TOLERANCE_RATIO`] of the first third's mean: allocator
/// arenas and hyper's pools settle at a level that depends on the peak concurrency seen.
const RSS_TOLERANCE_KIB: f64 = 8.0 * 1024.0;
const RSS_TOLERANCE_RATIO: f64 = 0.10;
/// Descriptors are sampled under load, so in-flight client and backend sockets come and go
/// (two per client at most); a leak shows as a steady climb well past this.
const FD_TOLERANCE: f64 = 16.0;

pub fn run(args: &[String]) -> Result {
    let mut minutes: u64 = 60;
    let mut clients: usize = 8;
    let mut kill_every: u64 = 20;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(|| format!("{a} needs a number"))?;
        let n: u64 = v
            .parse()
            .map_err(|_| format!("{v:?} is not a whole number"))?;
        match a.as_str() {
            "--minutes" => minutes = n,
            "--clients" => clients = n.max(1) as usize,
            "--kill-every" => kill_every = n.max(1),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let interval = if minutes < 10 { 10 } else { 60 };
    let root = root();
    sh_run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "ancm-serve",
    ]))?;

    // A copy of examples/hello's site with a short requestTimeout and a marker variable, so the
    // backends can be found (and counted after the end) wherever they were re-parented.
    let site = std::env::temp_dir().join(format!("ancm-soak-{}", std::process::id()));
    std::fs::create_dir_all(&site).map_err(|e| format!("{}: {e}", site.display()))?;
    let marker = format!("soak-{}", std::process::id());
    let app = root.join("examples/hello/app.py");
    let config = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration><system.webServer>\n<aspNetCore processPath=\"python3\" arguments=\"{}\" requestTimeout=\"00:00:02\">\n<environmentVariables><environmentVariable name=\"ANCM_SOAK\" value=\"{marker}\" /></environmentVariables>\n</aspNetCore></system.webServer></configuration>\n",
        app.display()
    );
    std::fs::write(site.join("web.config"), config).map_err(|e| e.to_string())?;

    let mut serve = Command::new(root.join("target/release/ancm-serve"))
        .args(["--listen", "127.0.0.1:0"])
        .arg(site.join("web.config"))
        .env("RUST_LOG", "warn,ancm_serve=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start ancm-serve: {e}"))?;
    let host = serve.id();
    let stderr = serve.stderr.take().ok_or("no stderr pipe")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let log_lines = Arc::new(Mutex::new(0usize));
    let counter = log_lines.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
            if let Ok(mut n) = counter.lock() {
                *n += 1;
            }
        }
    });
    let addr: SocketAddr = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "ancm-serve did not start".to_owned())?
        .parse()
        .map_err(|e| format!("bad listen address: {e}"))?;
    println!("soak: {minutes} min, {clients} clients, backend killed every {kill_every} s, sampling every {interval} s, ancm-serve pid {host} on {addr}");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::spawn(move || client(addr, i, &stop, &tally))
        })
        .collect();

    let started = Instant::now();
    let total = Duration::from_secs(minutes * 60);
    let mut samples: Vec<(u64, u64, usize)> = vec![(0, rss_kib(host), fd_count(host))];
    print_sample(&samples[0], &tally);
    let mut next_sample = Duration::from_secs(interval);
    let mut next_kill = Duration::from_secs(kill_every);
    let mut kills = 0u64;
    while started.elapsed() < total {
        std::thread::sleep(Duration::from_millis(200));
        let t = started.elapsed();
        if t >= next_kill {
            next_kill += Duration::from_secs(kill_every);
            for pid in children(host) {
                // kill(1) by pid, and only this ancm-serve's own children.
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                kills += 1;
            }
        }
        if t >= next_sample {
            next_sample += Duration::from_secs(interval);
            let s = (t.as_secs(), rss_kib(host), fd_count(host));
            print_sample(&s, &tally);
            samples.push(s);
        }
        if let Ok(Some(status)) = serve.try_wait() {
            stop.store(true, Ordering::Relaxed);
            return Err(format!("ancm-serve exited during the soak: {status}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let _ = Command::new("kill")
        .args(["-TERM", &host.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while serve.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let exited = serve.try_wait().ok().flatten();
    if exited.is_none() {
        let _ = serve.kill();
        let _ = serve.wait();
    }
    std::thread::sleep(Duration::from_secs(1));
    let left = marked(&marker);
    let _ = std::fs::remove_dir_all(&site);

    let tally = tally.lock().map(|t| t.clone()).unwrap_or_default();
    let sent: u64 = tally.values().sum();
    println!(
        "soak: requests={sent} {} kills={kills} log_lines={} ancm-serve exit={exited:?} backends_left={}",
        fmt_tally(&tally),
        log_lines.lock().map(|n| *n).unwrap_or(0),
        left.len()
    );
    println!(
        "soak: rss_kib series {:?}",
        samples.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    println!(
        "soak: fds series {:?}",
        samples.iter().map(|s| s.2).collect::<Vec<_>>()
    );

    let mut problems = Vec::new();
    if tally.get("hung").copied().unwrap_or(0) > 0 {
        problems.push("requests hung".to_owned());
    }
    if !left.is_empty() {
        problems.push(format!("backends outlived ancm-serve: {left:?}"));
    }
    let body = &samples[1..];
    if body.len() >= 3 {
        let third = body.len() / 3;
        let mean = |s: &[(u64, u64, usize)]| {
            let n = s.len() as f64;
            (
                s.iter().map(|x| x.1 as f64).sum::<f64>() / n,
                s.iter().map(|x| x.2 as f64).sum::<f64>() / n,
            )
        };
        let (rss0, fd0) = mean(&body[..third]);
        let (rss1, fd1) = mean(&body[body.len() - third..]);
        println!(
            "soak: first third mean rss={rss0:.0} KiB fds={fd0:.1}; last third mean rss={rss1:.0} KiB fds={fd1:.1}"
        );
        if rss1 > rss0 * (1.0 + RSS_TOLERANCE_RATIO) + RSS_TOLERANCE_KIB {
            problems.push(format!("RSS grew from {rss0:.0} to {rss1:.0} KiB"));
        }
        if fd1 > fd0 + FD_TOLERANCE {
            problems.push(format!("descriptors grew from {fd0:.1} to {fd1:.1}"));
        }
    } else {
        println!("soak: too few samples to compare (run at least a minute)");
    }
    if problems.is_empty() {
        println!("soak: ok");
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn print_sample(s: &(u64, u64, usize), tally: &Mutex<BTreeMap<String, u64>>) {
    let t = tally.lock().map(|t| t.clone()).unwrap_or_default();
    println!(
        "soak: t={:>5}s rss={:>7} KiB fds={:>4} {}",
        s.0,
        s.1,
        s.2,
        fmt_tally(&t)
    );
}

fn fmt_tally(t: &BTreeMap<String, u64>) -> String {
    t.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One keep-alive client: a fixed mix of requests until `stop`, reconnecting whenever the
/// connection closes or fails. Counts each outcome by status (or `x-ancm-status`).
fn client(addr: SocketAddr, seed: usize, stop: &AtomicBool, tally: &Mutex<BTreeMap<String, u64>>) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut n = seed;
    while !stop.load(Ordering::Relaxed) {
        n = n.wrapping_add(1);
        let path = match n % 40 {
            0 => "/bytes?n=1048576",
            1 => "/sleep?s=3",
            _ => "/pid",
        };
        if conn.is_none() {
            conn = TcpStream::connect(addr).ok().map(|s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                BufReader::new(s)
            });
        }
        let Some(c) = conn.as_mut() else {
            record(tally, "connect-error");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n");
        let outcome = c
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| e.kind())
            .and_then(|()| read_response(c).map_err(|e| e.kind()));
        match outcome {
            Ok((class, keep)) => {
                record(tally, &class);
                if !keep {
                    conn = None;
                }
            }
            Err(kind) => {
                let class = match kind {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "hung",
                    // A backend killed while its response body was on the way aborts the
                    // client connection, as it must: counted, not a failure.
                    _ => "aborted",
                };
                record(tally, class);
                conn = None;
            }
        }
    }
}

fn record(tally: &Mutex<BTreeMap<String, u64>>, class: &str) {
    if let Ok(mut t) = tally.lock() {
        *t.entry(class.to_owned()).or_default() += 1;
    }
}

/// Reads one response; returns its class and whether the connection stays open.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(String, bool)> {
    let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(eof());
    }
    let status = line.split(' ').nth(1).unwrap_or("?").to_owned();
    let (mut length, mut chunked, mut close, mut sub) = (None, false, false, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(eof());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.to_ascii_lowercase().as_str() {
            "content-length" => length = v.parse::<u64>().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            "connection" => close = v.eq_ignore_ascii_case("close"),
            "x-ancm-status" => sub = Some(v.to_owned()),
            _ => {}
        }
    }
    if chunked {
        loop {
            let mut size = String::new();
            if r.read_line(&mut size)? == 0 {
                return Err(eof());
            }
            let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "chunk size"))?;
            skip(r, n + 2)?;
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        skip(r, n)?;
    } else {
        let mut sink = Vec::new();
        r.read_to_end(&mut sink)?;
        close = true;
    }
    Ok((sub.unwrap_or(status), !close))
}

fn skip(r: &mut BufReader<TcpStream>, n: u64) -> std::io::Result<()> {
    let copied = std::io::copy(&mut r.by_ref().take(n), &mut std::io::sink())?;
    if copied == n {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "body cut short",
        ))
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Live processes whose parent is `pid` (from /proc/*/stat).
fn children(pid: u32) -> Vec<u32> {
    procs()
        .into_iter()
        .filter(|(_, ppid)| *ppid == pid)
        .map(|(p, _)| p)
        .collect()
}

/// Live processes carrying `ANCM_SOAK=<marker>` in their environment.
fn marked(marker: &str) -> Vec<u32> {
    let needle = format!("ANCM_SOAK={marker}");
    procs()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .map(|e| e.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn procs() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let f: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            (f.len() > 1 && f[0] != "Z").then(|| Some((pid, f[1].parse().ok()?)))?
        })
        .collect()
}
