//! Compiles the C++ glue (src/glue/*.cpp) into the DLL when the target is Windows; does
//! nothing otherwise, so the crate builds (empty) on Linux.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/glue");
    println!("cargo:rerun-if-changed=src/iis");
    println!("cargo:rerun-if-changed=../include");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    let gnu = env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .include("src")
        // include/ancm.h and ancm.hpp: the engine's C ABI, linked in through ancm-core.
        .include("../include")
        // Windows 10 APIs; the IIS headers need at least Vista's HTTP_REQUEST_V2.
        .define("_WIN32_WINNT", "0x0A00")
        .define("WIN32_LEAN_AND_MEAN", None)
        .define("UNICODE", None)
        .define("_UNICODE", None)
        .warnings_into_errors(true);
    if build.get_compiler().is_like_msvc() {
        build.flag("/std:c++17").flag("/W4").flag("/EHsc");
    } else {
        build.flag("-std=c++17").flag("-Wall").flag("-Wextra");
    }
    let glue = Path::new("src/glue");
    let mut sources: Vec<_> = std::fs::read_dir(glue)
        .expect("src/glue exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cpp"))
        .collect();
    sources.sort();
    build.files(&sources);
    if gnu {
        // Link libstdc++ and libgcc statically: IIS would not find libstdc++-6.dll or
        // libgcc_s_seh-1.dll, and the module would fail to load with error 126.
        build.cpp_link_stdlib(None);
    }
    build.compile("ancm_glue");
    if gnu {
        // rustc resolves static libraries itself, so it needs the compiler's library dir.
        let compiler = build.get_compiler();
        let out = std::process::Command::new(compiler.path())
            .arg("-print-file-name=libstdc++.a")
            .output()
            .expect("the C++ compiler runs");
        let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        match Path::new(&found).parent() {
            Some(dir) if Path::new(&found).is_absolute() => {
                println!("cargo:rustc-link-search=native={}", dir.display());
            }
            _ => panic!(
                "{} does not know where libstdc++.a is",
                compiler.path().display()
            ),
        }
        println!("cargo:rustc-link-lib=static:+verbatim=libstdc++.a");
        println!("cargo:rustc-link-arg=-static-libgcc");
    }
    // BSTR and VARIANT helpers for the configuration (IAppHostAdminManager) calls.
    println!("cargo:rustc-link-lib=oleaut32");
    // RegisterEventSourceW / ReportEventW (the Event Log, eventlog.cpp).
    println!("cargo:rustc-link-lib=advapi32");
}
