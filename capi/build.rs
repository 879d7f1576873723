//! Gives `libancm.so` a SONAME, so that a program linked against it records that name and the
//! dynamic loader tells ABI-incompatible versions apart: `libancm.so.<major>`, or
//! `libancm.so.0.<minor>` while the major version is 0 (when each minor version may change the
//! ABI). docs/c-api.md, "Building and linking".

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".to_owned());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".to_owned());
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd"
    ) {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libancm.so.{abi}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
