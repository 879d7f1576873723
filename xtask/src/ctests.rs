//! `cargo xtask c-tests [--quick]`: proves the C ABI from C and C++. Builds the C library
//! (crate ancm-capi, `libancm.a`), checks include/ancm.h is what cbindgen generates, compiles
//! tests/c with strict warnings (C11 and C++17), runs the C host test plain, under AddressSanitizer and under
//! valgrind, runs the C++ test and the documented example (and checks docs/c-api.md quotes it
//! verbatim). Prints `N passed, M failed`; fails if any step failed. `--quick` shrinks the
//! transfer sizes (the valgrind run always uses them).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sh::{ensure_packages, ensure_python_modules, root, run as sh_run, Result};

const C_FLAGS: &[&str] = &[
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wpedantic",
    "-Werror",
    "-g",
];
const CXX_FLAGS: &[&str] = &[
    "-std=c++17",
    "-Wall",
    "-Wextra",
    "-Wpedantic",
    "-Werror",
    "-g",
];
const LIBS: &[&str] = &["-lpthread", "-ldl", "-lm"];

struct Tally {
    passed: usize,
    failed: Vec<String>,
}

impl Tally {
    fn record(&mut self, name: &str, r: Result) {
        match r {
            Ok(()) => {
                println!("c-tests: ok - {name}");
                self.passed += 1;
            }
            Err(e) => {
                println!("c-tests: FAILED - {name}: {e}");
                self.failed.push(name.to_owned());
            }
        }
    }
}

fn compile(
    cc: &str,
    flags: &[&str],
    sources: &[&Path],
    out: &Path,
    extra: &[&str],
    lib: Option<&Path>,
) -> Result {
    let root = root();
    let mut cmd = Command::new(cc);
    cmd.current_dir(&root)
        .args(flags)
        .args(extra)
        .arg("-Iinclude")
        .arg("-Itests/c")
        .arg("-o")
        .arg(out);
    cmd.args(sources);
    if let Some(lib) = lib {
        cmd.arg(lib).args(LIBS);
    }
    sh_run(&mut cmd)
}

/// Runs a test program; a non-zero exit (its failure count) fails the step.
fn run_program(cmd: &mut Command) -> Result {
    sh_run(cmd)
}

/// Runs every C ABI test.
pub fn run(args: &[String]) -> Result {
    let quick = args.iter().any(|a| a == "--quick");
    ensure_packages(&[
        ("cc", "gcc"),
        ("g++", "g++"),
        ("valgrind", "valgrind"),
        ("python3", "python3"),
    ])?;
    ensure_python_modules(&[("websockets", "websockets")])?;
    let root = root();
    sh_run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "-p", "ancm-capi", "--lib"]),
    )?;
    let lib = root.join("target/debug/libancm.a");
    let out = root.join("target/c-tests");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let bin = |n: &str| -> PathBuf { out.join(n) };
    let src = |n: &str| -> PathBuf { root.join("tests/c").join(n) };
    let root_arg = root.display().to_string();
    let mut t = Tally {
        passed: 0,
        failed: Vec::new(),
    };

    t.record(
        "include/ancm.h is what the pinned cbindgen generates",
        crate::header::run(&["--check".to_owned()]),
    );
    t.record(
        "header hygiene: ancm.h twice, as C11",
        compile(
            "cc",
            C_FLAGS,
            &[&src("hygiene.c")],
            &bin("hygiene_c"),
            &[],
            None,
        ),
    );
    t.record(
        "header hygiene: ancm.h twice, as C++17",
        compile(
            "g++",
            CXX_FLAGS,
            &[&src("hygiene.c")],
            &bin("hygiene_c_as_cpp"),
            &["-x", "c++"],
            None,
        ),
    );
    t.record(
        "header hygiene: ancm.hpp twice, C++17",
        compile(
            "g++",
            CXX_FLAGS,
            &[&src("hygiene.cpp")],
            &bin("hygiene_cpp"),
            &[],
            None,
        ),
    );

    let host = bin("host_test");
    let built = compile(
        "cc",
        C_FLAGS,
        &[&src("host_test.c")],
        &host,
        &[],
        Some(&lib),
    );
    let ok = built.is_ok();
    t.record(
        "host_test.c compiles (C11, -Wall -Wextra -Wpedantic -Werror)",
        built,
    );
    if ok {
        let mut cmd = Command::new(&host);
        cmd.arg(&root_arg);
        if quick {
            cmd.arg("--quick");
        }
        t.record(
            "host_test: real requests through the C ABI",
            run_program(&mut cmd),
        );
        let valgrind = Command::new("valgrind")
            .args([
                "--error-exitcode=1",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--show-leak-kinds=definite",
                "--quiet",
            ])
            .arg(&host)
            .arg(&root_arg)
            .arg("--quick")
            .status();
        t.record(
            "host_test under valgrind (no invalid access, nothing definitely lost)",
            match valgrind {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("valgrind: {s}")),
                Err(e) => Err(format!("cannot run valgrind: {e}")),
            },
        );
    }

    let asan = bin("host_test_asan");
    let built = compile(
        "cc",
        C_FLAGS,
        &[&src("host_test.c")],
        &asan,
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
        Some(&lib),
    );
    let ok = built.is_ok();
    t.record("host_test.c compiles with AddressSanitizer", built);
    if ok {
        let mut cmd = Command::new(&asan);
        cmd.arg(&root_arg)
            .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0");
        if quick {
            cmd.arg("--quick");
        }
        t.record("host_test under AddressSanitizer", run_program(&mut cmd));
    }

    let rules = bin("abi_rules_asan");
    let built = compile(
        "cc",
        C_FLAGS,
        &[&src("abi_rules.c")],
        &rules,
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
        Some(&lib),
    );
    let ok = built.is_ok();
    t.record("abi_rules.c compiles with AddressSanitizer", built);
    if ok {
        t.record(
            "abi_rules under AddressSanitizer: what a host gets for each broken rule",
            run_program(
                Command::new(&rules)
                    .arg(&root_arg)
                    .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0"),
            ),
        );
    }

    let cpp = bin("cpp_test");
    let built = compile(
        "g++",
        CXX_FLAGS,
        &[&src("cpp_test.cpp")],
        &cpp,
        &[],
        Some(&lib),
    );
    let ok = built.is_ok();
    t.record(
        "cpp_test.cpp compiles (C++17, -Wall -Wextra -Wpedantic -Werror)",
        built,
    );
    if ok {
        t.record(
            "cpp_test: the main path through ancm.hpp",
            run_program(Command::new(&cpp).arg(&root_arg)),
        );
    }

    let api = bin("cpp_api_test_asan");
    let built = compile(
        "g++",
        CXX_FLAGS,
        &[&src("cpp_api_test.cpp")],
        &api,
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
        Some(&lib),
    );
    let ok = built.is_ok();
    t.record(
        "cpp_api_test.cpp compiles with AddressSanitizer (C++17, strict warnings)",
        built,
    );
    if ok {
        t.record(
            "cpp_api_test under AddressSanitizer: all of ancm.hpp (callables, log, processes, fragments)",
            run_program(
                Command::new(&api)
                    .arg(&root_arg)
                    .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0"),
            ),
        );
    }

    let example = bin("example");
    let built = compile(
        "cc",
        C_FLAGS,
        &[&src("example.c")],
        &example,
        &[],
        Some(&lib),
    );
    let ok = built.is_ok();
    t.record("the documented example compiles", built);
    if ok {
        t.record(
            "the documented example runs",
            run_program(Command::new(&example).arg(root.join("examples/hello"))),
        );
    }
    t.record(
        "docs/c-api.md quotes tests/c/example.c verbatim",
        doc_quotes_example(&root),
    );

    println!("c-tests: {} passed, {} failed", t.passed, t.failed.len());
    if t.failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", t.failed.join("; ")))
    }
}

fn doc_quotes_example(root: &Path) -> Result {
    let example = std::fs::read_to_string(root.join("tests/c/example.c"))
        .map_err(|e| format!("example.c: {e}"))?;
    let doc = std::fs::read_to_string(root.join("docs/c-api.md"))
        .map_err(|e| format!("docs/c-api.md: {e}"))?;
    let block = format!("```c\n{example}```");
    if doc.contains(&block) {
        Ok(())
    } else {
        Err("docs/c-api.md must contain tests/c/example.c verbatim in a ```c block".to_owned())
    }
}
