//! The stdout log file of one process, bounded when the app asks for it: at
//! `stdoutLogMaxSizeKB` the file is closed and the next one of the same process opened
//! (`<prefix>_<stamp>_<pid>_<n>.log`), and at most `stdoutLogMaxFiles` files of the prefix are
//! kept, the oldest deleted first. Without either setting it is today's single append-only file.
//!
//! A file still open for writing, by this process or another of the engine's, is never deleted:
//! on Unix the writer would go on into an unlinked file and the output would be lost, on Windows
//! the delete fails. So with more running processes than `stdoutLogMaxFiles`, one file per
//! running process is kept.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::io::AsyncWriteExt;

/// The limits of the stdout log files (from handlerSettings; `None` = no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// A file is rotated before it would grow past this many bytes.
    pub max_bytes: Option<u64>,
    /// At most this many files of the prefix are kept (at least 1).
    pub max_files: Option<u32>,
}

/// The log files open for writing in this process, never pruned (one per running backend
/// process with a stdout log: a short list).
static OPEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn mark_open(path: &Path, open: bool) {
    if let Ok(mut list) = OPEN.lock() {
        if open {
            list.push(path.to_path_buf());
        } else if let Some(i) = list.iter().position(|p| p == path) {
            list.swap_remove(i);
        }
    }
}

fn is_open(path: &Path) -> bool {
    OPEN.lock()
        .map(|l| l.iter().any(|p| p == path))
        .unwrap_or(true)
}

/// The stdout log of one process: the current file and what is needed to open the next one.
#[derive(Debug)]
pub struct LogWriter {
    /// `<prefix>_<stamp>_<pid>`: every file of this process starts with it.
    base: PathBuf,
    limits: Limits,
    file: Option<tokio::fs::File>,
    path: PathBuf,
    written: u64,
    /// The segment number of the current file (0: the first, named without a number).
    segment: u32,
}

impl LogWriter {
    /// Opens the first file, `<base>.log`, creating missing folders. An error is for the
    /// caller to log: the app still starts without its log (as ANCM does).
    pub async fn open(base: PathBuf, limits: Limits) -> std::io::Result<LogWriter> {
        let path = segment_path(&base, 0);
        let file = open_append(&path).await?;
        let written = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        mark_open(&path, true);
        let writer = LogWriter {
            base,
            limits,
            file: Some(file),
            path,
            written,
            segment: 0,
        };
        writer.prune();
        Ok(writer)
    }

    /// Appends `bytes`, rotating first whenever the current file would pass the size limit (a
    /// chunk is split, at its last line end that fits where it has one). Write errors (a full
    /// disk) are returned; the caller keeps draining the child so the app never blocks.
    pub async fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let room = match self.limits.max_bytes {
                Some(max) => max.saturating_sub(self.written),
                None => u64::MAX,
            };
            if room == 0 {
                self.rotate().await?;
                continue;
            }
            let take = if (bytes.len() as u64) <= room {
                bytes.len()
            } else {
                let fits = &bytes[..room as usize];
                match fits.iter().rposition(|&b| b == b'\n') {
                    // A line end that fits, unless the file is empty (then a line longer than
                    // the limit is cut at the limit rather than never written).
                    Some(i) if self.written > 0 || i > 0 => i + 1,
                    _ if self.written > 0 => {
                        self.rotate().await?;
                        continue;
                    }
                    _ => fits.len(),
                }
            };
            let Some(file) = self.file.as_mut() else {
                return Err(std::io::Error::other("stdout log closed"));
            };
            file.write_all(&bytes[..take]).await?;
            self.written += take as u64;
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Flushes the current file.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush().await,
            None => Ok(()),
        }
    }

    async fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut old) = self.file.take() {
            let _ = old.flush().await;
        }
        mark_open(&self.path, false);
        self.segment += 1;
        let path = segment_path(&self.base, self.segment);
        let file = open_append(&path).await?;
        mark_open(&path, true);
        self.file = Some(file);
        self.path = path;
        self.written = 0;
        self.prune();
        Ok(())
    }

    /// Deletes the oldest files of the prefix beyond `max_files`, never an open one.
    fn prune(&self) {
        let Some(max) = self.limits.max_files else {
            return;
        };
        let mut files = files_of_prefix(&self.base);
        if files.len() <= max as usize {
            return;
        }
        // Oldest first: by modification time, then by name (a stamp in the name breaks ties).
        files.sort();
        let excess = files.len() - max as usize;
        for (_, path) in files.into_iter().filter(|(_, p)| !is_open(p)).take(excess) {
            if let Err(e) = std::fs::remove_file(&path) {
                log::warn!(
                    "could not delete the old stdout log {}: {e}",
                    path.display()
                );
            }
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        mark_open(&self.path, false);
    }
}

/// The first file of a process's log: `<base>.log`.
pub fn first_file(base: &Path) -> PathBuf {
    segment_path(base, 0)
}

/// `<base>.log` for the first file, `<base>_<n>.log` after it.
fn segment_path(base: &Path, segment: u32) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    if segment > 0 {
        name.push(format!("_{segment}"));
    }
    name.push(".log");
    PathBuf::from(name)
}

async fn open_append(path: &Path) -> std::io::Result<tokio::fs::File> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
}

/// Every stdout log of the prefix that `base` (`<prefix>_<stamp>_<pid>`) was made from, with
/// its modification time: `<prefix>_<14 digits>_<digits>[_<digits>].log`, so that other files
/// in the folder are never touched.
fn files_of_prefix(base: &Path) -> Vec<(std::time::SystemTime, PathBuf)> {
    let (Some(dir), Some(name)) = (base.parent(), base.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    // Strip `_<stamp>_<pid>` to get the prefix's own file name.
    let mut parts = name.rsplitn(3, '_');
    let (Some(_pid), Some(_stamp), Some(prefix)) = (parts.next(), parts.next(), parts.next())
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        if !is_log_of(n, prefix) {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        out.push((modified, dir.join(n)));
    }
    out
}

/// Whether `name` is `<prefix>_<14 digits>_<digits>[_<digits>].log`.
fn is_log_of(name: &str, prefix: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .and_then(|r| r.strip_suffix(".log"))
    else {
        return false;
    };
    let fields: Vec<&str> = rest.split('_').collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(fields.len(), 2 | 3) && fields[0].len() == 14 && fields.iter().all(|f| digits(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ancm-stdout-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn listing(d: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn names_of_the_prefix_only() {
        assert!(is_log_of("stdout_20240101000000_42.log", "stdout"));
        assert!(is_log_of("stdout_20240101000000_42_3.log", "stdout"));
        assert!(!is_log_of("stdout_2024_42.log", "stdout"));
        assert!(!is_log_of("stdout_20240101000000_42.txt", "stdout"));
        assert!(!is_log_of("other_20240101000000_42.log", "stdout"));
        assert!(!is_log_of("stdout_20240101000000_42_x.log", "stdout"));
        assert!(!is_log_of("stdout_x_20240101000000_42.log", "stdout"));
    }

    #[tokio::test]
    async fn rotates_at_the_size_on_line_ends_and_keeps_every_byte() {
        let d = dir("rotate");
        let limits = Limits {
            max_bytes: Some(10),
            max_files: None,
        };
        let mut w = LogWriter::open(d.join("stdout_20240101000000_7"), limits)
            .await
            .unwrap();
        w.write(b"abc\ndefg\nhijklmnopqrstu\nv").await.unwrap();
        w.flush().await.unwrap();
        let files = listing(&d);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "stdout_20240101000000_7.log",
                "stdout_20240101000000_7_1.log",
                "stdout_20240101000000_7_2.log",
            ]
        );
        let sizes_ok = files.iter().all(|(_, b)| b.len() <= 10);
        assert!(sizes_ok, "{files:?}");
        assert_eq!(files[0].1, b"abc\ndefg\n");
        // A line longer than the limit is cut at it rather than lost.
        assert_eq!(files[1].1, b"hijklmnopq");
        let all: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(all, b"abc\ndefg\nhijklmnopqrstu\nv");
        // Closed first: Windows deletes no open file.
        drop(w);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn keeps_at_most_max_files_and_never_an_open_one() {
        let d = dir("prune");
        // Someone else's file in the folder is never touched.
        std::fs::write(d.join("notes.txt"), b"keep").unwrap();
        std::fs::write(d.join("stdout_20200101000000_1.log"), b"old").unwrap();
        let limits = Limits {
            max_bytes: Some(4),
            max_files: Some(2),
        };
        let other = LogWriter::open(d.join("stdout_20240101000000_8"), limits)
            .await
            .unwrap();
        // Two logs of the prefix, cap 2: nothing goes.
        assert_eq!(listing(&d).len(), 3);
        let mut w = LogWriter::open(d.join("stdout_20240101000000_9"), limits)
            .await
            .unwrap();
        // Three logs of the prefix, cap 2: the closed old one goes, both open ones stay.
        let names: Vec<String> = listing(&d).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "notes.txt",
                "stdout_20240101000000_8.log",
                "stdout_20240101000000_9.log"
            ]
        );
        w.write(b"1234abcdWXYZ").await.unwrap();
        w.flush().await.unwrap();
        let names: Vec<String> = listing(&d).into_iter().map(|(n, _)| n).collect();
        // Process 9's first two files were closed and pruned; process 8's open file stays.
        assert_eq!(
            names,
            [
                "notes.txt",
                "stdout_20240101000000_8.log",
                "stdout_20240101000000_9_2.log"
            ]
        );
        drop(other);
        drop(w);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
