//! The child's stdout and stderr: always drained (a chatty app must never block on a full
//! pipe), the first 30,000 characters kept for the startup-failure page, and everything written
//! to the stdout log file when stdoutLogEnabled is on (bounded by `stdout_log`), else passed to
//! the host's log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::stdout_log::LogWriter;

/// How much of the child's output a failure report shows (ANCM's limit).
pub const CAPTURE_LIMIT_CHARS: usize = 30_000;

/// The first [`CAPTURE_LIMIT_CHARS`] characters the child wrote, stdout and stderr
/// interleaved in arrival order.
#[derive(Debug, Default)]
pub struct Captured {
    /// The text and its length in characters (kept so a chatty child costs no recount).
    text: Mutex<(String, usize)>,
}

impl Captured {
    /// A copy of what was captured so far.
    pub fn snapshot(&self) -> String {
        self.text.lock().map(|t| t.0.clone()).unwrap_or_default()
    }

    fn push(&self, bytes: &[u8]) {
        let Ok(mut guard) = self.text.lock() else {
            return;
        };
        let (text, count) = &mut *guard;
        if *count >= CAPTURE_LIMIT_CHARS {
            return;
        }
        let chunk = String::from_utf8_lossy(bytes);
        for c in chunk.chars().take(CAPTURE_LIMIT_CHARS - *count) {
            text.push(c);
            *count += 1;
        }
    }
}

/// The name every log file of a process with id `pid` starts with:
/// `<prefix>_<yyyyMMddHHmmss UTC>_<pid>` (the first file adds `.log`, rotated ones `_<n>.log`),
/// with a relative prefix taken from the site root.
pub fn log_file_base(prefix: &str, site_root: &Path, pid: u32, now: SystemTime) -> PathBuf {
    let native = super::launch::native_path(prefix);
    let base = site_root.join(native);
    let mut name = base.into_os_string();
    name.push(format!("_{}_{pid}", crate::utc::stamp(now)));
    PathBuf::from(name)
}

/// Drains one output stream of process `pid` until it closes.
pub async fn drain(
    mut stream: impl AsyncRead + Unpin,
    captured: Arc<Captured>,
    log: Option<Arc<tokio::sync::Mutex<LogWriter>>>,
    pid: u32,
) {
    let mut buf = vec![0u8; 8192];
    let mut pending_line: Vec<u8> = Vec::new();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        captured.push(chunk);
        match &log {
            Some(file) => {
                let mut f = file.lock().await;
                if f.write(chunk).await.is_err() {
                    // A full disk must not stop the app; keep draining.
                }
            }
            None => log_lines(&mut pending_line, chunk, pid),
        }
    }
    if !pending_line.is_empty() {
        log::info!(target: "ancm::app", "[{pid}] {}", String::from_utf8_lossy(&pending_line));
    }
    if let Some(file) = &log {
        let _ = file.lock().await.flush().await;
    }
}

/// Passes complete lines to the host's log; a partial line waits for its end (bounded, so a
/// child that never writes a newline cannot grow it without limit).
fn log_lines(pending: &mut Vec<u8>, chunk: &[u8], pid: u32) {
    pending.extend_from_slice(chunk);
    while let Some(i) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=i).collect();
        let text = String::from_utf8_lossy(&line);
        log::info!(target: "ancm::app", "[{pid}] {}", text.trim_end_matches(['\r', '\n']));
    }
    if pending.len() > 4096 {
        log::info!(target: "ancm::app", "[{pid}] {}", String::from_utf8_lossy(pending));
        pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[cfg(unix)]
    #[test]
    fn log_path_has_prefix_stamp_and_pid() {
        let p = log_file_base(r".\logs\stdout", Path::new("/srv/app"), 42, UNIX_EPOCH);
        assert_eq!(p, PathBuf::from("/srv/app/./logs/stdout_19700101000000_42"));
    }

    #[test]
    fn capture_keeps_the_first_30000_characters() {
        let c = Captured::default();
        c.push("é".repeat(20_000).as_bytes());
        c.push("x".repeat(20_000).as_bytes());
        let s = c.snapshot();
        assert_eq!(s.chars().count(), CAPTURE_LIMIT_CHARS);
        assert!(s.starts_with('é') && s.ends_with('x'));
    }
}
