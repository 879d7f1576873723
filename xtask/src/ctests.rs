//! `cargo xtask c-tests [--quick]`: proves the C ABI from C and C++. Builds the C library
//! (crate ancm-capi, `libancm.a`), checks include/ancm.h is what cbindgen generates, compiles
//! tests/c with strict warnings (C11 and C++17), runs the C host test plain, under AddressSanitizer and under
//! valgrind, runs the C++ test and the documented example (and checks docs/c-api.md quotes it
//! verbatim), then lays out the package (`cargo xtask c-package --debug`) and builds the
//! documented consumers from it: the CMake project `tests/c/CMakeLists.txt` (find_package(ancm))
//! and the plain `cc` lines of docs/c-api.md (which must quote them verbatim). Prints
//! `N passed, M failed`; fails if any step failed. `--quick` shrinks the transfer sizes (the
//! valgrind run always uses them).

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
        ("cmake", "cmake"),
        ("pkg-config", "pkg-config"),
        ("readelf", "binutils"),
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

    let grpc = bin("grpc_test_asan");
    let built = compile(
        "cc",
        C_FLAGS,
        &[&src("grpc_test.c")],
        &grpc,
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
        Some(&lib),
    );
    let ok = built.is_ok();
    t.record("grpc_test.c compiles with AddressSanitizer", built);
    if ok {
        t.record(
            "grpc_test under AddressSanitizer: gRPC calls, trailers and resets through the C ABI",
            run_program(
                Command::new(&grpc)
                    .arg(&root_arg)
                    .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0"),
            ),
        );
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

    let sig = bin("sigchld_asan");
    let built = compile(
        "cc",
        C_FLAGS,
        &[&src("sigchld.c")],
        &sig,
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
        Some(&lib),
    );
    let ok = built.is_ok();
    t.record("sigchld.c compiles with AddressSanitizer", built);
    if ok {
        for mode in ["default", "ignore"] {
            t.record(
                &format!("sigchld {mode}: a killed process is noticed, reaped and replaced"),
                run_program(
                    Command::new(&sig)
                        .arg(&root_arg)
                        .arg(mode)
                        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0"),
                ),
            );
        }
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

    consumers(&root, &out, &mut t);

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

/// The plain compiler lines of docs/c-api.md ("Building and linking"), run by `consumers` in a
/// directory holding example.c, with `ANCM` set to the package and `PKG_CONFIG_PATH` to its
/// pkgconfig directory, as the docs say to.
const PLAIN_LINES: &[(&str, &str)] = &[
    (
        "example_plain",
        "cc -std=c11 -I$ANCM/include example.c $ANCM/lib/libancm.a -lpthread -ldl -lm -o example_plain",
    ),
    (
        "example_pc",
        "cc -std=c11 example.c $(pkg-config --cflags --libs ancm) -Wl,-rpath,$ANCM/lib -o example_pc",
    ),
];

/// Builds and runs the documented consumers against the laid-out package.
fn consumers(root: &Path, out: &Path, t: &mut Tally) {
    let prefix = crate::package::default_prefix(false);
    let made = crate::package::make(false, &prefix);
    let ok = made.is_ok();
    t.record("cargo xtask c-package --debug lays out the package", made);
    if !ok {
        return;
    }
    let site = root.join("examples/hello");
    let run_example = |exe: &Path| run_program(Command::new(exe).arg(&site));

    // The CMake project, configured from scratch each time.
    let build = out.join("cmake-build");
    let _ = std::fs::remove_dir_all(&build);
    let configured = sh_run(
        Command::new("cmake")
            .arg("-S")
            .arg(root.join("tests/c"))
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())),
    )
    .and_then(|()| sh_run(Command::new("cmake").arg("--build").arg(&build)));
    let ok = configured.is_ok();
    t.record(
        "tests/c/CMakeLists.txt: find_package(ancm) configures and builds (ancm::ancm, ancm::ancm_shared)",
        configured,
    );
    if ok {
        t.record(
            "CMake-built example (static ancm::ancm) runs",
            run_example(&build.join("example")),
        );
        t.record(
            "CMake-built example_shared (ancm::ancm_shared) runs and needs the SONAME",
            run_example(&build.join("example_shared"))
                .and_then(|()| needs_soname(&build.join("example_shared"))),
        );
        t.record(
            "CMake-built cpp_test (C++, ancm.hpp) runs",
            run_program(Command::new(build.join("cpp_test")).arg(root)),
        );
    }

    // The plain lines, in a directory of their own.
    let dir = out.join("plain");
    let _ = std::fs::remove_dir_all(&dir);
    let staged = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::copy(root.join("tests/c/example.c"), dir.join("example.c")))
        .map_err(|e| format!("{}: {e}", dir.display()));
    if let Err(e) = staged {
        t.record("stage example.c for the plain lines", Err(e));
        return;
    }
    for (exe, line) in PLAIN_LINES {
        let built = sh_run(
            Command::new("sh")
                .arg("-c")
                .arg(line)
                .current_dir(&dir)
                .env("ANCM", &prefix)
                .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")),
        )
        .and_then(|()| run_example(&dir.join(exe)));
        t.record(&format!("documented line builds and runs: {line}"), built);
    }
    t.record(
        "the pkg-config-linked example needs the SONAME",
        needs_soname(&dir.join("example_pc")),
    );
    t.record(
        "docs/c-api.md quotes tests/c/CMakeLists.txt and the plain lines verbatim",
        doc_quotes_consumers(root),
    );
}

/// The program records the library's SONAME (`package::soname`) as what it needs.
fn needs_soname(exe: &Path) -> Result {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(exe)
        .output()
        .map_err(|e| format!("readelf: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("[{}]", crate::package::soname());
    if text
        .lines()
        .any(|l| l.contains("(NEEDED)") && l.contains(&want))
    {
        Ok(())
    } else {
        Err(format!("{} does not need {want}:\n{text}", exe.display()))
    }
}

fn doc_quotes_consumers(root: &Path) -> Result {
    let cmake = std::fs::read_to_string(root.join("tests/c/CMakeLists.txt"))
        .map_err(|e| format!("tests/c/CMakeLists.txt: {e}"))?;
    let doc = std::fs::read_to_string(root.join("docs/c-api.md"))
        .map_err(|e| format!("docs/c-api.md: {e}"))?;
    if !doc.contains(&format!("```cmake\n{cmake}```")) {
        return Err(
            "docs/c-api.md must contain tests/c/CMakeLists.txt verbatim in a ```cmake block"
                .to_owned(),
        );
    }
    for (_, line) in PLAIN_LINES {
        if !doc.contains(line) {
            return Err(format!("docs/c-api.md must show the line {line:?}"));
        }
    }
    Ok(())
}
