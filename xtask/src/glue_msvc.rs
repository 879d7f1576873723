//! `cargo xtask glue-msvc`: keeps g++-only spellings out of the IIS glue, which the Windows
//! workflow builds with MSVC (cl.exe) while this machine builds it with mingw g++.
//!
//! What is checked, on every `iis-glue/src/glue/*.cpp` (and through them the clean-room IIS
//! headers and `include/ancm.hpp`):
//! - clang++ for the mingw target with `-std=c++17 -pedantic-errors -Wgnu -Werror
//!   -fms-extensions`: every GNU language extension in the project's own code is an error
//!   (statement expressions, `?:` without a middle operand, case ranges, variable-length and
//!   zero-length arrays, designated initializers before C++20, …), which g++ accepts silently
//!   and cl.exe rejects. System headers are exempt (-isystem), as they are MSVC's on Windows.
//!   Also `-Wconversion -Wno-sign-conversion -Wshadow-all -Wunreachable-code`: the nearest
//!   clang has to cl.exe's /W4 warnings that build.rs turns into errors (C4244/C4267
//!   narrowing, C4456–C4459 hiding, C4702 unreachable code), which g++ -Wall -Wextra does not
//!   report.
//! - a scan for GNU-only spellings clang accepts without a warning: `__attribute__`,
//!   `__builtin_*`, `__extension__`, `typeof`, `__int128`, `#include_next`, `#warning`, inline
//!   `asm`, `__thread`, `__PRETTY_FUNCTION__`, `__restrict__`.
//!
//! What it cannot check: clang's MSVC target (`--target=x86_64-pc-windows-msvc
//! -fms-compatibility`) needs MSVC's own C++ library and SDK headers; with mingw-w64's headers
//! and libstdc++ in that mode (no `__GNUC__`) it fails inside those headers (mingw defines
//! `__attribute__` away, which breaks clang's intrinsics; libstdc++'s <tuple> does not parse),
//! so MSVC's own diagnostics, its `/permissive-` two-phase lookup, its warnings at /W4 and its
//! vtable layout are only seen by the Windows workflow (vtable slots: `cargo xtask iis-slots`).

use crate::sh::{ensure_packages, have, root, run, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const CLANG: &str = "clang++";
const MINGW_GXX: &str = "x86_64-w64-mingw32-g++";

/// Words the glue must not contain (matched as whole identifiers, or as directives).
const GNU_ONLY: &[&str] = &[
    "__attribute__",
    "__extension__",
    "typeof",
    "__typeof__",
    "__int128",
    "__thread",
    "__PRETTY_FUNCTION__",
    "__restrict__",
    "asm",
    "__asm__",
];
const GNU_ONLY_PREFIXES: &[&str] = &["__builtin_"];
const GNU_ONLY_DIRECTIVES: &[&str] = &["include_next", "warning"];

/// A statement expression: the check must reject it, or its flags are not biting.
const KNOWN_BAD: &str = "int f(int n) { return ({ int y = n; y; }); }\n";

/// Runs both checks; prints a loud `SKIPPED:` line and succeeds when clang or mingw-w64 is
/// missing and cannot be installed.
pub fn run_cmd() -> Result {
    if let Err(e) = ensure_packages(&[(CLANG, "clang"), (MINGW_GXX, "mingw-w64")]) {
        return skipped(&e);
    }
    if !have(CLANG) || !have(MINGW_GXX) {
        return skipped(&format!(
            "{CLANG} or {MINGW_GXX} still missing after installing"
        ));
    }
    let root = root();
    let cxx_dirs = mingw_cxx_include_dirs()?;
    let glue = root.join("iis-glue").join("src").join("glue");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&glue)
        .map_err(|e| format!("cannot list {}: {e}", glue.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cpp"))
        .collect();
    sources.sort();

    // The flags must bite: a known GNU extension has to fail.
    let probe_dir = root.join("target").join("glue-msvc");
    std::fs::create_dir_all(&probe_dir)
        .map_err(|e| format!("cannot create {}: {e}", probe_dir.display()))?;
    let probe = probe_dir.join("known_bad.cpp");
    std::fs::write(&probe, KNOWN_BAD)
        .map_err(|e| format!("cannot write {}: {e}", probe.display()))?;
    let status = clang(&root, &cxx_dirs, &probe)
        .output()
        .map_err(|e| format!("cannot run {CLANG}: {e}"))?
        .status;
    if status.success() {
        return Err(format!(
            "{CLANG} accepted a GNU statement expression ({}): the check's flags do not work",
            probe.display()
        ));
    }

    for src in &sources {
        run(&mut clang(&root, &cxx_dirs, src))?;
    }
    let mut scanned = sources.clone();
    for dir in [root.join("iis-glue").join("src").join("iis"), glue.clone()] {
        for e in std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "h") {
                scanned.push(e.path());
            }
        }
    }
    scanned.push(root.join("include").join("ancm.hpp"));
    let mut found = Vec::new();
    for file in &scanned {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        found.extend(
            gnu_only_spellings(&text)
                .into_iter()
                .map(|(line, word)| format!("{}:{line}: {word}", file.display())),
        );
    }
    if !found.is_empty() {
        return Err(format!(
            "g++-only spellings MSVC would reject:\n  {}",
            found.join("\n  ")
        ));
    }
    println!(
        "glue-msvc: {} glue sources pass clang -pedantic-errors -Wgnu; {} files free of g++-only spellings",
        sources.len(),
        scanned.len()
    );
    Ok(())
}

/// clang++ with the glue's build flags (iis-glue/build.rs) plus the GNU-extension errors.
fn clang(root: &Path, cxx_dirs: &[PathBuf], src: &Path) -> Command {
    let mut cmd = Command::new(CLANG);
    cmd.args([
        "--target=x86_64-w64-windows-gnu",
        "-fsyntax-only",
        "-fms-extensions",
        "-std=c++17",
        "-pedantic-errors",
        "-Wall",
        "-Wextra",
        "-Wgnu",
        // What cl.exe /W4 /WX (iis-glue/build.rs) also rejects and g++ -Wall -Wextra lets
        // through: narrowing conversions (C4244, C4267), a name hiding another (C4456–C4459),
        // unreachable code (C4702). Not sign conversions in general: cl.exe's C4365 is off at
        // /W4, and the check must not be stricter than the compiler it stands for.
        "-Wconversion",
        "-Wno-sign-conversion",
        "-Wshadow-all",
        "-Wunreachable-code",
        "-Werror",
        "-nostdinc++",
        "-D_WIN32_WINNT=0x0A00",
        "-DWIN32_LEAN_AND_MEAN",
        "-DUNICODE",
        "-D_UNICODE",
    ]);
    for dir in cxx_dirs {
        cmd.arg("-isystem").arg(dir);
    }
    cmd.arg("-I")
        .arg(root.join("iis-glue").join("src"))
        .arg("-I")
        .arg(root.join("include"))
        .arg(src);
    cmd
}

/// libstdc++'s include directories as mingw g++ searches them (clang's mingw driver does not
/// find Debian's `…/12-win32/include/c++` layout by itself).
fn mingw_cxx_include_dirs() -> Result<Vec<PathBuf>> {
    let out = Command::new(MINGW_GXX)
        .args(["-x", "c++", "-E", "-v", "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {MINGW_GXX}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr);
    let dirs: Vec<PathBuf> = text
        .lines()
        .skip_while(|l| !l.starts_with("#include <...> search starts here:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .map(|l| PathBuf::from(l.trim()))
        .filter(|p| p.components().any(|c| c.as_os_str() == "c++"))
        .collect();
    if dirs.is_empty() {
        Err(format!("{MINGW_GXX} -v names no C++ include directory"))
    } else {
        Ok(dirs)
    }
}

/// (line, spelling) of each GNU-only word, prefix or directive in `text`.
fn gnu_only_spellings(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(directive) = trimmed.strip_prefix('#') {
            let name = directive.split_whitespace().next().unwrap_or("");
            if GNU_ONLY_DIRECTIVES.contains(&name) {
                found.push((n + 1, format!("#{name}")));
            }
        }
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if GNU_ONLY.contains(&word) || GNU_ONLY_PREFIXES.iter().any(|p| word.starts_with(p)) {
                found.push((n + 1, word.to_owned()));
            }
        }
    }
    found
}

fn skipped(why: &str) -> Result {
    eprintln!();
    eprintln!("==================================================================");
    eprintln!("SKIPPED: MSVC-compatibility check of the IIS glue (needs {CLANG}): {why}");
    eprintln!("==================================================================");
    eprintln!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::gnu_only_spellings;

    #[test]
    fn finds_gnu_only_spellings_not_lookalikes() {
        let text = "int a __attribute__((unused));\n#include_next <x.h>\n  #  warning hi\n\
                    int b = __builtin_expect(c, 1);\nint asmx; int my__attribute__;\n#pragma warning(disable: 4100)\n";
        let found: Vec<String> = gnu_only_spellings(text)
            .into_iter()
            .map(|(l, w)| format!("{l}:{w}"))
            .collect();
        assert_eq!(
            found,
            [
                "1:__attribute__",
                "2:#include_next",
                "3:#warning",
                "4:__builtin_expect"
            ]
        );
    }
}
