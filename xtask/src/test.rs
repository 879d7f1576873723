//! `cargo xtask test`: what CI runs. Installs the system packages the suites need, then runs
//! every suite, stopping at the first failure.

use crate::sh::{ensure_packages, ensure_python_modules, root, run as sh_run, Result};
use std::process::Command;

/// Runs every test suite of the project.
pub fn run(_args: &[String]) -> Result {
    ensure_packages(&[
        ("python3", "python3"),
        ("curl", "curl"),
        ("make", "make"),
        ("h2load", "nghttp2-client"),
    ])?;
    ensure_python_modules(&[
        ("websockets", "websockets"),
        ("grpc", "grpcio"),
        ("h2", "h2"),
    ])?;
    let root = root();
    sh_run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--check"]),
    )?;
    sh_run(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    sh_run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["test", "--workspace", "--locked"]),
    )?;
    // The standalone host's suites again with every request on the general path (hyper's
    // server and client), which plain requests otherwise skip.
    sh_run(
        Command::new("cargo")
            .current_dir(&root)
            .env("ANCM_SERVE_TEST_ARGS", "--hyper-only")
            .args(["test", "-p", "ancm-serve", "--locked", "--tests"]),
    )?;
    crate::ctests::run(&[])?;
    crate::workflows::run_cmd()?;
    crate::glue_msvc::run_cmd()?;
    crate::iis::vtable_check()?;
    crate::iis_emu::run()?;
    crate::msi::ci()?;
    crate::fuzz::run(&[])?;
    Ok(())
}
