//! `cargo xtask fuzz [--runs N] [--seconds S] [--target NAME]`: runs the cargo-fuzz targets of
//! `fuzz/` (libFuzzer), each from its seed corpus (`fuzz/seeds/<target>`, committed) plus the
//! corpus it grew before (`fuzz/corpus/<target>`, not committed).
//!
//! Without `--seconds` each target runs a fixed number of inputs (`-runs`, 20,000 by default):
//! that is what CI runs, short and repeatable. `--seconds S` runs each target for S seconds
//! instead, for the long runs done by hand.
//!
//! Only stable Rust exists on the project's machines. cargo-fuzz needs nightly-only flags
//! (`-Zsanitizer`, coverage instrumentation); `RUSTC_BOOTSTRAP=1` lets the stable compiler accept
//! them, which is fine for a test-only build that ships nowhere.
//! If cargo-fuzz is missing and cannot be installed, the command says so loudly and succeeds:
//! fuzzing is an extra check, and a machine without it must still run every other suite.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::sh::{root, Result};

/// The targets, as named in fuzz/Cargo.toml.
const TARGETS: [&str; 5] = [
    "web_config",
    "headers",
    "config_builder",
    "c_request_head",
    "h1_heads",
];

/// Inputs per target in CI mode: enough to run every seed and a few mutation rounds in about a
/// second each, so the build dominates the time.
const CI_RUNS: u64 = 20_000;

pub fn run(args: &[String]) -> Result {
    let mut runs = CI_RUNS;
    let mut seconds: Option<u64> = None;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs {what}"))
        };
        match a.as_str() {
            "--runs" => runs = parse(&value("a number")?)?,
            "--seconds" => seconds = Some(parse(&value("a number")?)?),
            "--target" => only = Some(value("a target name")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(t) = &only {
        if !TARGETS.contains(&t.as_str()) {
            return Err(format!(
                "unknown target {t:?}; targets: {}",
                TARGETS.join(", ")
            ));
        }
    }

    if !have_cargo_fuzz() {
        eprintln!("+ cargo install cargo-fuzz --locked");
        let installed = Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !installed || !have_cargo_fuzz() {
            println!("SKIPPED: fuzzing: cargo-fuzz is not installed and `cargo install cargo-fuzz` failed");
            return Ok(());
        }
    }

    let dir = root().join("fuzz");
    let started = Instant::now();
    // One build for all targets; `cargo fuzz run` then finds it up to date. Debug assertions on,
    // so integer overflow and debug_assert! count as crashes too.
    crate::sh::run(fuzz_cmd(&dir).args(["build", "-a"]))?;
    let built = started.elapsed();

    let mut failures = Vec::new();
    for target in TARGETS
        .iter()
        .filter(|t| only.as_deref().is_none_or(|o| o == **t))
    {
        let corpus = dir.join("corpus").join(target);
        let seeds = dir.join("seeds").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let mut cmd = fuzz_cmd(&dir);
        cmd.args(["run", "-a", target]).arg(&corpus);
        if seeds.is_dir() {
            // libFuzzer reads every directory given but writes new inputs only to the first.
            cmd.arg(&seeds);
        }
        cmd.arg("--");
        match seconds {
            Some(s) => cmd.arg(format!("-max_total_time={s}")),
            None => cmd.arg(format!("-runs={runs}")),
        };
        // A single input taking 10 s is a hang; 2 GiB of memory a leak or a blow-up.
        cmd.args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"]);
        let t = Instant::now();
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let done = log
            .lines()
            .rev()
            .find(|l| l.starts_with("Done "))
            .unwrap_or("(no summary)")
            .to_owned();
        let execs = log
            .lines()
            .rev()
            .find(|l| l.starts_with("stat::number_of_executed_units:"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("?")
            .to_owned();
        if out.status.success() {
            println!(
                "fuzz {target}: ok, {execs} inputs, {:.1} s ({done})",
                t.elapsed().as_secs_f64()
            );
        } else {
            // Show the end of libFuzzer's report: the panic message, backtrace and the path of
            // the crashing input it saved under fuzz/artifacts/.
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            println!("fuzz {target}: FAILED ({})", out.status);
            failures.push(*target);
        }
    }
    println!(
        "fuzz: build {:.0} s, total {:.0} s",
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz targets failed: {} (crashing inputs are in fuzz/artifacts/)",
            failures.join(", ")
        ))
    }
}

fn fuzz_cmd(dir: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(dir).arg("fuzz").env("RUSTC_BOOTSTRAP", "1");
    c
}

fn have_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn parse(s: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a whole number"))
}
