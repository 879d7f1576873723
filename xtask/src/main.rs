//! `cargo xtask <command>`: the one entry point for CI, header generation, cross builds, the MSI
//! and benchmarks. Each command lives in its own module; this file only dispatches.

mod bench;
mod ctests;
mod dll;
mod fuzz;
mod glue_msvc;
mod header;
mod iis;
mod iis_emu;
mod msi;
mod package;
mod sh;
mod soak;
mod test;
mod workflows;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test      install what the tests need (as root) and run every test suite (what CI runs)
  fuzz      run the cargo-fuzz targets: [--runs N] (default 20000 each) or [--seconds S]
  soak      run ancm-serve under load with backend kills, sampling RSS/fds: [--minutes N] (default 60)
  iis-slots check the IIS interface declarations' vtable slots (mingw g++ + Wine)
  dll       build the IIS module aspnetcore_rs.dll (x86_64-pc-windows-gnu, stripped, debug file
            beside it; x86_64-pc-windows-msvc on Windows) and check its imports
  glue-msvc check the IIS glue for g++-only spellings (clang -pedantic-errors -Wgnu, a scan)
  iis-emu   build the DLL and drive it under Wine with the emulated IIS (tests/iis-emu)
  header    regenerate include/ancm.h with the pinned cbindgen (--check: fail if it differs)
  c-tests   build the C ABI's C/C++ test programs and run them (also under ASan and valgrind)
  c-package lay out libancm for C/C++ build systems (CMake package, pkg-config) in target/release/ancm
            ([--debug]: target/debug/ancm; [--prefix DIR])
  msi       build target/msi/ancm-rs-<version>-x64.msi (wixl) and check its tables
  msi-test  msi, then install/upgrade/uninstall it and the registration helper under Wine
  workflows check .github/workflows/* against GitHub's schema (npm action-validator) and
            byte-compile the Windows workflow's Python scripts (tests/iis-real)
  bench     benchmarks vs direct and nginx, writes docs/benchmarks.md (--quick: one short round)
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
        "dll" => dll::run_cmd(),
        "glue-msvc" => glue_msvc::run_cmd(),
        "workflows" => workflows::run_cmd(),
        "iis-emu" => iis_emu::run(),
        "header" => header::run(rest),
        "c-tests" => ctests::run(rest),
        "c-package" => package::run(rest),
        "msi" => msi::build_command(rest),
        "msi-test" => msi::test_command(rest),
        "fuzz" => fuzz::run(rest),
        "soak" => soak::run(rest),
        "bench" => bench::run(rest),
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
