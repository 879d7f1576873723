//! `cargo xtask header [--check]`: generates include/ancm.h from rust-core/src/ffi with the
//! pinned cbindgen (a dependency of xtask, so every machine generates the same bytes), or checks
//! that the committed header is what it would generate.

use crate::sh::{root, Result};

/// Generates the header text: cbindgen's output plus version macros from Cargo.toml (xtask
/// shares the workspace version with ancm-core).
pub fn generate() -> Result<String> {
    let root = root();
    let crate_dir = root.join("rust-core");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .map_err(|e| format!("rust-core/cbindgen.toml: {e}"))?;
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    let mut next = || parts.next().unwrap_or("0").to_owned();
    let (major, minor, patch) = (next(), next(), next());
    let mut config = config;
    config.after_includes = Some(format!(
        "\n/** The version of ancm-core this header belongs to (see ancm_version()). */\n\
         #define ANCM_VERSION \"{version}\"\n\
         #define ANCM_VERSION_MAJOR {major}\n\
         #define ANCM_VERSION_MINOR {minor}\n\
         #define ANCM_VERSION_PATCH {patch}\n"
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .map_err(|e| format!("cbindgen: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).map_err(|e| format!("cbindgen wrote invalid UTF-8: {e}"))
}

/// Writes include/ancm.h, or with `--check` fails if it differs from what would be written.
pub fn run(args: &[String]) -> Result {
    let check = match args {
        [] => false,
        [a] if a == "--check" => true,
        _ => return Err("usage: cargo xtask header [--check]".to_owned()),
    };
    let path = root().join("include/ancm.h");
    let text = generate()?;
    if check {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            return Err(
                "include/ancm.h is out of date: run `cargo xtask header` and commit it".to_owned(),
            );
        }
        eprintln!("include/ancm.h is up to date");
        return Ok(());
    }
    std::fs::create_dir_all(root().join("include")).map_err(|e| format!("include/: {e}"))?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
