//! Gives `libancm.so` a SONAME (`libancm.so.<major>`), so that a program linked against it
//! records that name and the dynamic loader can tell ABI-incompatible versions apart
//! (docs/c-api.md, "Building and linking").

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".to_owned());
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd"
    ) {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libancm.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
