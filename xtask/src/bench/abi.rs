//! Case (h): the cost of the C ABI. Two drivers do the same work against the same bench-backend,
//! which the engine starts from the same web.config: `api-load-c` (bench/c-host/api_load.c,
//! through include/ancm.h, linked against the release static library) and `api-load-rust`
//! (bench/src/bin/api-load-rust.rs, through `App::handle` on a runtime built like the C ABI's).
//! Each keeps 64 small GETs in flight, checks every response, and reports its own CPU time
//! (getrusage, runtime threads included) over N requests after a warm-up. The drivers alternate
//! within each round (C, Rust, Rust with a task per request, C, …) and the ratios are taken per
//! round. Under callgrind each
//! runs twice with different N, and the difference of the instruction totals divided by the
//! difference of N is the instructions per request (start-up and warm-up cancel out).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{fmt_stat, kv, output_bounded, stat, web_config, Opts};
use crate::sh::{root, run as sh_run, Result};

/// Requests kept in flight, as case (a)'s 64 connections.
const IN_FLIGHT: u64 = 64;
/// Warm-up requests before each measured phase: the backend starts, the pool fills.
const WARM_UP: u64 = 2000;

/// What case (h) measured.
#[derive(Default)]
pub(super) struct AbiReport {
    /// Driver → samples (CPU µs per request, requests per second).
    pub samples: BTreeMap<&'static str, Vec<(f64, f64)>>,
    /// CPU per request, C ÷ Rust, per round.
    pub ratios: Vec<f64>,
    /// CPU per request, Rust with a task per request ÷ Rust, per round.
    pub task_ratios: Vec<f64>,
    /// Driver → user-space instructions per request (callgrind).
    pub instr: BTreeMap<&'static str, f64>,
    /// Requests per measured phase.
    pub requests: u64,
}

const C_NAME: &str = "C ABI";
const RUST_NAME: &str = "Rust API";
/// The Rust driver with `--task-per-request`: a reference for what a task spawned per request
/// costs (the C ABI did that before it reused driver tasks; docs/decisions.md).
const TASK_NAME: &str = "Rust API, a task per request";
/// The C driver as IIS drives the engine (issue 20): every request started from the host's own
/// thread, never from inside `complete`, against bench-backend's `/small-real` (Kestrel's head).
const HOST_NAME: &str = "C ABI, started from a host thread, Kestrel's head";

/// Compiles the C driver against the release static library (built by the caller with
/// `cargo build --release -p ancm-capi`) into `bin_dir/api-load-c`.
pub(super) fn build_c_driver(bin_dir: &Path) -> Result<PathBuf> {
    let root = root();
    let out = bin_dir.join("api-load-c");
    sh_run(
        Command::new("cc")
            .current_dir(&root)
            .args([
                "-std=c11",
                "-O2",
                "-g",
                "-Wall",
                "-Wextra",
                "-Wpedantic",
                "-Werror",
            ])
            .arg("-Iinclude")
            .arg("bench/c-host/api_load.c")
            .arg(bin_dir.join("libancm.a"))
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&out),
    )?;
    Ok(out)
}

/// Runs case (h); failures go to `fail`.
pub(super) fn case_abi(
    opts: &Opts,
    c_driver: &Path,
    rust_driver: &Path,
    backend: &Path,
    tmp: &Path,
    commands: &mut Vec<String>,
    fail: &mut dyn FnMut(&str, String),
) -> AbiReport {
    let mut rep = AbiReport {
        requests: 10_000 * opts.secs,
        ..Default::default()
    };
    let n = rep.requests;
    let (n1, n2) = if opts.quick {
        (1000, 5000)
    } else {
        (2000, 12000)
    };
    commands.push(format!(
        "(h) api-load-c web.config {IN_FLIGHT} {WARM_UP} {n}; api-load-c --host-thread --target /small-real \
         web.config {IN_FLIGHT} {WARM_UP} {n}; api-load-rust web.config {IN_FLIGHT} {WARM_UP} {n}; \
         api-load-rust --task-per-request web.config {IN_FLIGHT} {WARM_UP} {n} (alternating; CPU = \
         getrusage(RUSAGE_SELF) of the measured {n} requests); instructions: valgrind --tool=callgrind \
         DRIVER web.config {IN_FLIGHT} {WARM_UP} N for N = {n1} and {n2}, Δinstructions / ΔN"
    ));
    let site = tmp.join("site-abi");
    let config = site.join("web.config");
    let written = std::fs::create_dir_all(&site).and_then(|()| {
        std::fs::write(
            &config,
            web_config(backend, &[("BENCH_BACKEND_THREADS", "1".into())]),
        )
    });
    if let Err(e) = written {
        fail("(h) web.config", e.to_string());
        return rep;
    }
    let drivers: [(&'static str, &Path, &[&str]); 4] = [
        (C_NAME, c_driver, &[]),
        (
            HOST_NAME,
            c_driver,
            &["--host-thread", "--target", "/small-real"],
        ),
        (RUST_NAME, rust_driver, &[]),
        (TASK_NAME, rust_driver, &["--task-per-request"]),
    ];
    for round in 0..opts.rounds {
        let mut this: BTreeMap<&str, f64> = BTreeMap::new();
        for (name, bin, flags) in drivers {
            match drive(bin, flags, &config, n, Duration::from_secs(120 + n / 500)) {
                Ok((cpu_s, wall_s)) => {
                    let us = cpu_s / n as f64 * 1e6;
                    let rps = n as f64 / wall_s;
                    eprintln!(
                        "bench: (h) round {} {name}: {us:.2} µs CPU per request, {rps:.0} req/s, load {}",
                        round + 1,
                        super::loadavg()
                    );
                    rep.samples.entry(name).or_default().push((us, rps));
                    this.insert(name, us);
                }
                Err(e) => fail(&format!("(h) round {} {name}", round + 1), e),
            }
        }
        if let (Some(c), Some(r)) = (this.get(C_NAME), this.get(RUST_NAME)) {
            rep.ratios.push(c / r);
        }
        if let (Some(t), Some(r)) = (this.get(TASK_NAME), this.get(RUST_NAME)) {
            rep.task_ratios.push(t / r);
        }
    }
    for (name, bin, flags) in drivers {
        match instructions(
            bin,
            flags,
            &config,
            n1,
            n2,
            &tmp.join("callgrind-abi"),
            name,
        ) {
            Ok(v) => {
                eprintln!("bench: (h) {name}: {v:.0} instructions per request");
                rep.instr.insert(name, v);
            }
            Err(e) => fail(&format!("(h) callgrind {name}"), e),
        }
    }
    rep
}

/// Runs one driver for `n` measured requests; returns (CPU seconds, wall seconds).
fn drive(bin: &Path, flags: &[&str], config: &Path, n: u64, limit: Duration) -> Result<(f64, f64)> {
    let (out, err) = output_bounded(
        Command::new(bin)
            .args(flags)
            .arg(config)
            .args([IN_FLIGHT, WARM_UP, n].map(|v| v.to_string()))
            .env("RUST_LOG", "warn"),
        limit,
    )?;
    check_line(&out, &err, n)?;
    match (kv(&out, "cpu_s"), kv(&out, "wall_s")) {
        (Some(c), Some(w)) if c > 0.0 && w > 0.0 => Ok((c, w)),
        _ => Err(format!("{} printed {out:?}", bin.display())),
    }
}

/// The driver's line must say it completed `n` requests, all checked good.
fn check_line(out: &str, err: &str, n: u64) -> Result {
    let good = kv(out, "requests") == Some(n as f64)
        && kv(out, "bad") == Some(0.0)
        && kv(out, "warm_bad") == Some(0.0);
    if good {
        Ok(())
    } else {
        Err(format!(
            "bad responses or a short run: {out:?} {}",
            err.trim()
        ))
    }
}

/// Instructions per request of one driver: two runs under callgrind with `n1` and `n2` measured
/// requests; start-up, warm-up and shutdown are the same in both and cancel out.
fn instructions(
    bin: &Path,
    flags: &[&str],
    config: &Path,
    n1: u64,
    n2: u64,
    dir: &Path,
    name: &str,
) -> Result<f64> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut totals = Vec::new();
    for n in [n1, n2] {
        let tag: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let out_file = dir.join(format!("{tag}-{n}.cg"));
        let _ = std::fs::remove_file(&out_file);
        let (out, err) = output_bounded(
            Command::new("valgrind")
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out_file.display()))
                .arg(bin)
                .args(flags)
                .arg(config)
                .args([IN_FLIGHT, WARM_UP, n].map(|v| v.to_string()))
                .env("RUST_LOG", "warn"),
            Duration::from_secs(600),
        )?;
        check_line(&out, &err, n)?;
        let text = std::fs::read_to_string(&out_file)
            .map_err(|e| format!("{}: {e}", out_file.display()))?;
        let total = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .ok_or_else(|| format!("no total in {}", out_file.display()))?;
        totals.push(total);
    }
    Ok((totals[1] - totals[0]) / (n2 - n1) as f64)
}

/// The report's section for case (h).
pub(super) fn write_section(md: &mut String, rep: &AbiReport) {
    let _ = writeln!(
        md,
        "\n### (h) C ABI vs Rust API, small GET, {IN_FLIGHT} in flight\n\n\
         Both drivers run in-process against the same bench-backend, started by the engine from the same \
         web.config; CPU is the driver process's own (host thread + the engine's runtime threads), over {} \
         requests after {WARM_UP} warm-up ones. The backend's CPU is not included.\n\n\
         | driver | CPU µs / request | requests/s | instructions / request (callgrind) |\n|---|---|---|---|",
        rep.requests
    );
    for name in [C_NAME, HOST_NAME, RUST_NAME, TASK_NAME] {
        let v = rep.samples.get(name).cloned().unwrap_or_default();
        let us: Vec<f64> = v.iter().map(|x| x.0).collect();
        let rps: Vec<f64> = v.iter().map(|x| x.1).collect();
        let instr = rep
            .instr
            .get(name)
            .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"));
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {instr} |",
            fmt_stat(stat(&us), 2),
            fmt_stat(stat(&rps), 0)
        );
    }
    let _ = writeln!(
        md,
        "\nCPU per request, C ABI ÷ Rust API, per round: {}",
        fmt_stat(stat(&rep.ratios), 3)
    );
    if let Some(r) = instr_ratio(rep) {
        let _ = writeln!(md, "\nInstructions per request, C ABI ÷ Rust API: {r:.3}");
    }
    if let (Some(c), Some(r), Some(t)) = (
        rep.instr.get(C_NAME),
        rep.instr.get(RUST_NAME),
        rep.instr.get(TASK_NAME),
    ) {
        let _ = writeln!(
            md,
            "\nThe C ABI costs {:.0} instructions per request {} than the Rust API (its plain requests take \
             the engine's own HTTP/1.1 path, the Rust API's `App::handle` goes through hyper). For scale, \
             spawning a task per request (\"{TASK_NAME}\", which the C ABI avoids by reusing driver tasks) \
             costs {:.0} (CPU ratio per round {}).",
            (c - r).abs(),
            if c > r { "more" } else { "less" },
            t - r,
            fmt_stat(stat(&rep.task_ratios), 3),
        );
    }
}

/// Instructions per request, C ÷ Rust.
pub(super) fn instr_ratio(rep: &AbiReport) -> Option<f64> {
    Some(rep.instr.get(C_NAME)? / rep.instr.get(RUST_NAME)?)
}
