//! Shadow copies: where they go, copying the site into one, and cleaning the ones a crashed
//! host left behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::changes::Exclusions;

/// Appended to the site folder's name for the default shadow folder beside it.
pub const DEFAULT_SUFFIX: &str = "_ancm_shadow";

/// The folder the generations' copies go in: `shadowCopyDirectory` (relative to the site root,
/// or absolute), else `<site root>/../<site folder>_ancm_shadow`, outside the site so that the
/// copies are neither watched nor served.
pub fn base_dir(site_root: &Path, configured: Option<&str>) -> PathBuf {
    match configured {
        Some(c) => site_root.join(crate::process::launch::native_path(c)),
        None => {
            let name = site_root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "site".to_owned());
            let parent = site_root.parent().unwrap_or(site_root);
            parent.join(format!("{name}{DEFAULT_SUFFIX}"))
        }
    }
}

/// Applications created in this host process, so that two apps (a reload keeps the old one
/// while the new one starts) never share a generation folder.
static APPS: AtomicU64 = AtomicU64::new(0);

/// The prefix of this host process's generation folders.
fn own_prefix() -> String {
    format!("g{}-", std::process::id())
}

/// A prefix unique to one application of this host process: its folders are
/// `<prefix><generation>`.
pub fn app_prefix() -> String {
    format!("{}{}-", own_prefix(), APPS.fetch_add(1, Ordering::Relaxed))
}

/// Removes generation folders in `base` left by host processes that are gone (a crash, a
/// kill): every `g<pid>-…` folder whose pid is not this process's. Two hosts serving one
/// site with one shadow folder is not supported.
pub fn clean_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let own = own_prefix();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('g') || name.starts_with(&own) {
            continue;
        }
        match std::fs::remove_dir_all(e.path()) {
            Ok(()) => log::info!("removed the stale shadow copy {}", e.path().display()),
            Err(err) => log::warn!(
                "could not remove the stale shadow copy {}: {err}",
                e.path().display()
            ),
        }
    }
}

/// Copies the tree at `from` to `to` (created; must not exist), leaving out what `excl`
/// excludes. Returns the number of files copied. Symbolic links are copied as what they point
/// to (a deploy's files, not its links, are what the app runs).
pub fn copy_tree(from: &Path, to: &Path, excl: &Exclusions) -> std::io::Result<u64> {
    std::fs::create_dir_all(to.parent().unwrap_or(to))?;
    std::fs::create_dir(to)?;
    let mut n = 0;
    let mut stack = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((src, dst)) = stack.pop() {
        for e in std::fs::read_dir(&src)? {
            let e = e?;
            let path = e.path();
            if excl.skips(&path) {
                continue;
            }
            let target = dst.join(e.file_name());
            let meta = std::fs::metadata(&path)?;
            if meta.is_dir() {
                std::fs::create_dir(&target)?;
                stack.push((path, target));
            } else {
                std::fs::copy(&path, &target)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_all_but_the_exclusions() {
        let t = std::env::temp_dir().join(format!("ancm-shadow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let site = t.join("site");
        std::fs::create_dir_all(site.join("bin/sub")).unwrap();
        std::fs::create_dir_all(site.join("logs")).unwrap();
        std::fs::write(site.join("app.py"), "v1").unwrap();
        std::fs::write(site.join("bin/sub/x.dll"), "x").unwrap();
        std::fs::write(site.join("app_offline.htm"), "off").unwrap();
        std::fs::write(site.join("logs/stdout_1.log"), "log").unwrap();
        std::fs::create_dir_all(site.join("shadow/g1")).unwrap();
        let excl = Exclusions::new(&site, vec![site.join("shadow")])
            .with_stdout_log(&site, &site.join("./logs/stdout"));
        let copy = t.join("copy");
        assert_eq!(copy_tree(&site, &copy, &excl).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(copy.join("app.py")).unwrap(), "v1");
        assert!(copy.join("bin/sub/x.dll").is_file());
        assert!(!copy.join("app_offline.htm").exists());
        assert!(!copy.join("logs").exists());
        assert!(!copy.join("shadow").exists());
        assert_eq!(
            base_dir(&site, None),
            t.join(format!("site{DEFAULT_SUFFIX}"))
        );
        assert_eq!(base_dir(&site, Some("shadow")), site.join("shadow"));
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn stale_folders_of_other_processes_go() {
        let t = std::env::temp_dir().join(format!("ancm-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let mine = t.join(format!("{}0-1", own_prefix()));
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::create_dir_all(t.join("g1-0-1/x")).unwrap();
        std::fs::create_dir_all(t.join("keep")).unwrap();
        clean_stale(&t);
        assert!(mine.is_dir());
        assert!(!t.join("g1-0-1").exists());
        assert!(t.join("keep").is_dir());
        std::fs::remove_dir_all(&t).unwrap();
    }
}
