//! `cargo xtask <command>`: the one entry point for CI, header generation, cross builds, the MSI
//! and benchmarks. Each command lives in its own module; this file only dispatches.

mod fuzz;
mod iis;
mod sh;
mod soak;
mod test;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test      install what the tests need (as root) and run every test suite (what CI runs)
  fuzz      run the cargo-fuzz targets: [--runs N] (default 20000 each) or [--seconds S]
  soak      run ancm-serve under load with backend kills, sampling RSS/fds: [--minutes N] (default 60)
  iis-slots check the IIS interface declarations' vtable slots (mingw g++ + Wine)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match cmd.as_str() {
        "test" => test::run(rest),
        "iis-slots" => iis::vtable_check(),
        "fuzz" => fuzz::run(rest),
        "soak" => soak::run(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown command {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
