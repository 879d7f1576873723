//! Change detection: a fingerprint of the site's files (path, size, modification time), taken
//! by a stat walk. The application polls it and starts a new generation once it changed and
//! then stayed the same for the debounce interval (docs/decisions.md: why a poll, not OS
//! notifications).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// What a shadow copy and the change watch leave out: `app_offline.htm` in the site root (it
/// has its own meaning), whole folders (the shadow folder, the stdout log folder) and the
/// stdout log files (`<prefix>_…`, when they are written into a folder of the app's own files,
/// as with the default `.\aspnetcore-stdout`).
#[derive(Debug, Clone)]
pub struct Exclusions {
    offline: PathBuf,
    folders: Vec<PathBuf>,
    /// The stdout log files' folder and the start of their names.
    log_files: Option<(PathBuf, String)>,
}

impl Exclusions {
    /// The exclusions for a site at `site_root` with the excluded `folders`.
    pub fn new(site_root: &Path, folders: Vec<PathBuf>) -> Exclusions {
        Exclusions {
            offline: normalize(&site_root.join("app_offline.htm")),
            folders: folders.into_iter().map(|f| normalize(&f)).collect(),
            log_files: None,
        }
    }

    /// Also leaves out the stdout log: the files starting with `prefix` (a path under the site
    /// root, as stdoutLogFile names it), and their whole folder unless it is the site root.
    pub fn with_stdout_log(mut self, site_root: &Path, prefix: &Path) -> Exclusions {
        let prefix = normalize(prefix);
        let (Some(dir), Some(name)) = (prefix.parent(), prefix.file_name()) else {
            return self;
        };
        if dir != normalize(site_root) && dir.starts_with(normalize(site_root)) {
            self.folders.push(dir.to_path_buf());
        }
        self.log_files = Some((dir.to_path_buf(), name.to_string_lossy().into_owned()));
        self
    }

    /// Whether `path` (under the site root) is left out.
    pub fn skips(&self, path: &Path) -> bool {
        let p = normalize(path);
        if p == self.offline || self.folders.contains(&p) {
            return true;
        }
        match (&self.log_files, p.parent(), p.file_name()) {
            (Some((dir, start)), Some(parent), Some(name)) => {
                parent == dir && name.to_string_lossy().starts_with(start.as_str())
            }
            _ => false,
        }
    }
}

/// `a/./b/../c` → `a/c`, lexically (the excluded folders may not exist yet).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// What the watch sees of the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    hash: u64,
    /// Files seen (for the log and the poll's pacing).
    pub files: u64,
}

/// The fingerprint of the tree at `root` minus `excl`: every file's relative path, size and
/// modification time. Unreadable entries count as absent (a file being replaced mid-walk shows
/// up in the next one).
pub fn tree(root: &Path, excl: &Exclusions) -> Fingerprint {
    let mut h = DefaultHasher::new();
    let mut files = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        // Sorted, so that the order the OS lists entries in does not change the hash.
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if excl.skips(&path) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            stamp(&mut h, root, &path, &meta);
        }
    }
    Fingerprint {
        hash: h.finish(),
        files,
    }
}

/// The fingerprint of the listed files (`recycleOnFileChange`), relative to `root`; a missing
/// file is part of the state (its appearance is a change).
pub fn files(root: &Path, list: &[String]) -> Fingerprint {
    let mut h = DefaultHasher::new();
    for f in list {
        let path = root.join(crate::process::launch::native_path(f));
        match std::fs::metadata(&path) {
            Ok(meta) => stamp(&mut h, root, &path, &meta),
            Err(_) => (f, "absent").hash(&mut h),
        }
    }
    Fingerprint {
        hash: h.finish(),
        files: list.len() as u64,
    }
}

fn stamp(h: &mut DefaultHasher, root: &Path, path: &Path, meta: &std::fs::Metadata) {
    path.strip_prefix(root).unwrap_or(path).hash(h);
    meta.len().hash(h);
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .hash(h);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_seen_and_exclusions_are_not() {
        let t = std::env::temp_dir().join(format!("ancm-changes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(t.join("bin")).unwrap();
        std::fs::create_dir_all(t.join("logs")).unwrap();
        std::fs::write(t.join("bin/a.dll"), "1").unwrap();
        let excl = Exclusions::new(&t, vec![t.join("./logs")]);
        let first = tree(&t, &excl);
        assert_eq!(first.files, 1);
        std::fs::write(t.join("logs/x.log"), "log").unwrap();
        std::fs::write(t.join("app_offline.htm"), "off").unwrap();
        assert_eq!(tree(&t, &excl), first);
        std::fs::write(t.join("bin/a.dll"), "22").unwrap();
        assert_ne!(tree(&t, &excl), first);
        // The default stdout log (.\\aspnetcore-stdout) writes into the site root itself.
        let excl = excl.with_stdout_log(&t, &t.join("./aspnetcore-stdout"));
        let before = tree(&t, &excl);
        std::fs::write(t.join("aspnetcore-stdout_20260101_1.log"), "out").unwrap();
        assert_eq!(tree(&t, &excl), before);
        let listed = files(&t, &["bin\\a.dll".to_owned(), "b.dll".to_owned()]);
        std::fs::write(t.join("b.dll"), "new").unwrap();
        assert_ne!(
            files(&t, &["bin\\a.dll".to_owned(), "b.dll".to_owned()]),
            listed
        );
        std::fs::remove_dir_all(&t).unwrap();
    }
}
