//! `cargo xtask c-package [--debug] [--prefix DIR]`: lays out the C library the way C and C++
//! build systems look for it, in one relocatable prefix (default `target/release/ancm`, or
//! `target/debug/ancm` with `--debug`):
//!
//! ```text
//! include/ancm.h, include/ancm.hpp
//! lib/libancm.a
//! lib/libancm.so.0.<minor>     (its SONAME; libancm.so.<major> from 1.0), lib/libancm.so -> it
//! lib/pkgconfig/ancm.pc        (pkg-config ancm)
//! lib/cmake/ancm/ancmConfig.cmake, ancmConfigVersion.cmake   (find_package(ancm))
//! ```
//!
//! Both description files find the prefix from their own location, so the directory can be
//! copied anywhere (for example to /usr/local). Linux only: that is where the shared library
//! has a SONAME and the system libraries are `-lpthread -ldl -lm`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sh::{root, run as sh_run, Result};

/// The system libraries a program linking the static library needs (docs/c-api.md).
pub const SYSTEM_LIBS: &[&str] = &["pthread", "dl", "m"];

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The shared library's file and SONAME: `libancm.so.<major>`, or `libancm.so.0.<minor>` while
/// the major version is 0 (as capi/build.rs sets it).
pub fn soname() -> String {
    let (major, minor) = (
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
    );
    if major == "0" {
        format!("libancm.so.0.{minor}")
    } else {
        format!("libancm.so.{major}")
    }
}

fn pc_file() -> String {
    let private: Vec<String> = SYSTEM_LIBS.iter().map(|l| format!("-l{l}")).collect();
    format!(
        "# pkg-config description of libancm, the ancm-rs engine's C ABI (docs/c-api.md).\n\
         # `pkg-config --cflags --libs ancm` links the shared library; add --static for libancm.a.\n\
         prefix=${{pcfiledir}}/../..\n\
         includedir=${{prefix}}/include\n\
         libdir=${{prefix}}/lib\n\
         \n\
         Name: ancm\n\
         Description: ancm-rs engine (ASP.NET Core Module replacement) as a C library\n\
         Version: {VERSION}\n\
         Cflags: -I${{includedir}}\n\
         Libs: -L${{libdir}} -lancm\n\
         Libs.private: {}\n",
        private.join(" ")
    )
}

fn cmake_config() -> String {
    let libs: Vec<String> = SYSTEM_LIBS
        .iter()
        .map(|l| match *l {
            "pthread" => "Threads::Threads".to_owned(),
            "dl" => "${CMAKE_DL_LIBS}".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    format!(
        r#"# CMake package of libancm, the ancm-rs engine's C ABI (docs/c-api.md).
#
#   find_package(ancm {VERSION} REQUIRED)
#   target_link_libraries(app PRIVATE ancm::ancm)         # static: libancm.a
#   target_link_libraries(app PRIVATE ancm::ancm_shared)  # shared: {soname}
#
# Both imported targets carry the include directory (ancm.h, ancm.hpp); the static one also the
# system libraries it needs. The prefix is found from this file's location (relocatable).
include(CMakeFindDependencyMacro)
find_dependency(Threads)

get_filename_component(_ancm_prefix "${{CMAKE_CURRENT_LIST_DIR}}/../../.." ABSOLUTE)

if(NOT TARGET ancm::ancm)
  add_library(ancm::ancm STATIC IMPORTED)
  set_target_properties(ancm::ancm PROPERTIES
    IMPORTED_LOCATION "${{_ancm_prefix}}/lib/libancm.a"
    INTERFACE_INCLUDE_DIRECTORIES "${{_ancm_prefix}}/include"
    INTERFACE_LINK_LIBRARIES "{libs}")
endif()

if(NOT TARGET ancm::ancm_shared)
  add_library(ancm::ancm_shared SHARED IMPORTED)
  set_target_properties(ancm::ancm_shared PROPERTIES
    IMPORTED_LOCATION "${{_ancm_prefix}}/lib/{soname}"
    IMPORTED_SONAME "{soname}"
    INTERFACE_INCLUDE_DIRECTORIES "${{_ancm_prefix}}/include")
endif()

set(ancm_VERSION "{VERSION}")
unset(_ancm_prefix)
"#,
        libs = libs.join(";"),
        soname = soname()
    )
}

/// Same major version (for 0.x: same minor), and not older than asked for.
fn cmake_version() -> String {
    format!(
        r#"# Version check of the ancm CMake package: compatible within one major version (0.x: one
# minor version), as the C ABI promises.
set(PACKAGE_VERSION "{VERSION}")
set(PACKAGE_VERSION_COMPATIBLE FALSE)
if(NOT PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  string(REGEX MATCH "^[0-9]+" _have_major "${{PACKAGE_VERSION}}")
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _have_minor "${{PACKAGE_VERSION}}")
  if(PACKAGE_FIND_VERSION_MAJOR STREQUAL _have_major AND
     (NOT _have_major STREQUAL "0" OR
      "${{PACKAGE_FIND_VERSION_MAJOR}}.${{PACKAGE_FIND_VERSION_MINOR}}" STREQUAL _have_minor))
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
endif()
if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
  set(PACKAGE_VERSION_EXACT TRUE)
endif()
"#
    )
}

fn write(path: &Path, text: &str) -> Result {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // Replace rather than overwrite: a program may have the old library mapped.
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))
}

/// Builds ancm-capi (`release` or not) and lays the package out under `prefix`.
pub fn make(release: bool, prefix: &Path) -> Result {
    if !cfg!(target_os = "linux") {
        return Err("c-package lays out the Linux library (libancm.a / libancm.so); on Windows link ancm.dll from cargo build -p ancm-capi".to_owned());
    }
    let root = root();
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(&root)
        .args(["build", "-p", "ancm-capi", "--lib"]);
    if release {
        cargo.arg("--release");
    }
    sh_run(&mut cargo)?;
    let built = root
        .join("target")
        .join(if release { "release" } else { "debug" });
    for h in ["ancm.h", "ancm.hpp"] {
        copy(
            &root.join("include").join(h),
            &prefix.join("include").join(h),
        )?;
    }
    let lib = prefix.join("lib");
    // A shared library left from another version would be found by name; only this one stays.
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("libancm.so") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    copy(&built.join("libancm.a"), &lib.join("libancm.a"))?;
    let soname = soname();
    copy(&built.join("libancm.so"), &lib.join(&soname))?;
    let link = lib.join("libancm.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&soname, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    write(&lib.join("pkgconfig/ancm.pc"), &pc_file())?;
    write(&lib.join("cmake/ancm/ancmConfig.cmake"), &cmake_config())?;
    write(
        &lib.join("cmake/ancm/ancmConfigVersion.cmake"),
        &cmake_version(),
    )?;
    println!("c-package: {}", prefix.display());
    Ok(())
}

/// The default prefix for a profile.
pub fn default_prefix(release: bool) -> PathBuf {
    root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("ancm")
}

/// `cargo xtask c-package [--debug] [--prefix DIR]`.
pub fn run(args: &[String]) -> Result {
    let release = !args.iter().any(|a| a == "--debug");
    let mut prefix = default_prefix(release);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--debug" => {}
            "--prefix" => {
                let dir = it.next().ok_or("--prefix needs a directory")?;
                prefix = std::env::current_dir()
                    .map_err(|e| format!("current directory: {e}"))?
                    .join(dir);
            }
            other => return Err(format!("c-package: unknown argument {other:?}")),
        }
    }
    make(release, &prefix)
}
