//! A started backend process: who it is, whether it still runs, and how to stop it.
//!
//! One reaper task per process owns the OS child handle. It waits for the exit and carries out
//! stop requests, so a signal is only ever sent to a process that has not been reaped yet (a
//! reaped pid may already belong to someone else).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use super::launch::LaunchSpec;
use super::output::{self, Captured};
use super::spawn;
use crate::event::Event;

/// How a process ended, in words for logs and error pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// `exited with code 3`, `killed by signal 9`, …
    pub description: String,
    /// Whether the engine had asked it to stop (a stop is not a crash).
    pub requested: bool,
    /// How long it ran.
    pub lifetime: std::time::Duration,
}

impl ExitInfo {
    /// An exit not (yet) known to be requested, with no lifetime recorded.
    fn new(code: Option<i32>, description: String) -> ExitInfo {
        ExitInfo {
            code,
            description,
            requested: false,
            lifetime: Default::default(),
        }
    }
}

enum Control {
    Interrupt,
    Kill,
}

/// A running (or just exited) backend process.
#[derive(Debug)]
pub struct Child {
    pid: u32,
    started: std::time::Instant,
    stop_requested: Arc<AtomicBool>,
    exited: AtomicBool,
    exit: watch::Receiver<Option<ExitInfo>>,
    control: mpsc::UnboundedSender<Control>,
    captured: Arc<Captured>,
    /// Our own handle to the process (the reaper owns the OS child): for DuplicateHandle into
    /// it (the request's Windows token), valid until this value is dropped, so never a handle
    /// to a later process that reused the id.
    #[cfg(windows)]
    process: Option<std::os::windows::io::OwnedHandle>,
}

/// Where the child's output goes besides the capture buffer.
#[derive(Debug, Clone)]
pub enum OutputSink {
    /// The stdout log file with this path prefix (relative to the site root).
    LogFile {
        prefix: String,
        site_root: std::path::PathBuf,
        /// Rotation size and file count (stdoutLogMaxSizeKB, stdoutLogMaxFiles).
        limits: super::stdout_log::Limits,
    },
    /// The host's log.
    HostLog,
}

impl Child {
    /// Starts the process described by `spec` on the runtime `rt`, draining its output into
    /// `sink`. `on_exit` runs once, on a runtime thread, when the process has exited.
    pub async fn start(
        spec: LaunchSpec,
        rt: &Handle,
        sink: OutputSink,
        on_exit: impl FnOnce(u32, &ExitInfo) + Send + 'static,
    ) -> std::io::Result<Arc<Child>> {
        let mut os_child = spawn::spawn(spec, rt.clone()).await?;
        let pid = os_child.id().unwrap_or(0);
        #[cfg(windows)]
        let process = os_child.raw_handle().and_then(|raw| {
            // SAFETY: the OS child (held above) keeps the handle open during the call.
            let borrowed = unsafe { std::os::windows::io::BorrowedHandle::borrow_raw(raw) };
            borrowed.try_clone_to_owned().ok()
        });
        let captured = Arc::new(Captured::default());
        let log = match sink {
            OutputSink::HostLog => None,
            OutputSink::LogFile {
                prefix,
                site_root,
                limits,
            } => {
                let base =
                    output::log_file_base(&prefix, &site_root, pid, std::time::SystemTime::now());
                let path = super::stdout_log::first_file(&base);
                match super::stdout_log::LogWriter::open(base, limits).await {
                    Ok(w) => Some(Arc::new(tokio::sync::Mutex::new(w))),
                    Err(e) => {
                        log::warn!(
                            event = Event::StdoutLogUnavailable as u32;
                            "could not create the stdout log file {}: {e}; the app starts without it",
                            path.display()
                        );
                        None
                    }
                }
            }
        };
        if let Some(out) = os_child.stdout.take() {
            rt.spawn(output::drain(out, captured.clone(), log.clone(), pid));
        }
        if let Some(err) = os_child.stderr.take() {
            rt.spawn(output::drain(err, captured.clone(), log, pid));
        }
        let (exit_tx, exit_rx) = watch::channel(None);
        let (control_tx, mut control_rx) = mpsc::unbounded_channel();
        let stop_requested = Arc::new(AtomicBool::new(false));
        let started = std::time::Instant::now();
        let child = Arc::new(Child {
            pid,
            started,
            stop_requested: stop_requested.clone(),
            exited: AtomicBool::new(false),
            exit: exit_rx,
            control: control_tx,
            captured,
            #[cfg(windows)]
            process,
        });
        let weak = Arc::downgrade(&child);
        rt.spawn(async move {
            let status = loop {
                tokio::select! {
                    status = os_child.wait() => break status,
                    Some(c) = control_rx.recv() => match c {
                        Control::Interrupt => spawn::interrupt(&os_child),
                        Control::Kill => spawn::kill(&mut os_child),
                    },
                }
            };
            let mut info = match status {
                Ok(s) => describe(s),
                Err(e) => ExitInfo::new(None, format!("could not be waited for: {e}")),
            };
            info.requested = stop_requested.load(Ordering::Acquire);
            info.lifetime = started.elapsed();
            if let Some(c) = weak.upgrade() {
                c.exited.store(true, Ordering::Release);
            }
            let _ = exit_tx.send(Some(info.clone()));
            on_exit(pid, &info);
        });
        Ok(child)
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Our handle to the process (full access, as CreateProcess returned it), if we have one.
    #[cfg(windows)]
    pub fn process_handle(&self) -> Option<std::os::windows::io::RawHandle> {
        use std::os::windows::io::AsRawHandle;
        self.process.as_ref().map(|h| h.as_raw_handle())
    }

    /// Whether the process has exited (cheap: one atomic load, fit for the request path).
    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// How it ended, once it has.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// Waits until the process has exited.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exit.clone();
        loop {
            if let Some(info) = rx.borrow_and_update().clone() {
                return info;
            }
            if rx.changed().await.is_err() {
                return ExitInfo::new(None, "lost track of the process".into());
            }
        }
    }

    /// Notes that the engine is stopping it, so its exit is not counted as a crash.
    pub fn mark_stopping(&self) {
        self.stop_requested.store(true, Ordering::Release);
    }

    /// Asks the process to stop: Ctrl-Break on Windows, SIGTERM to its process group on Unix.
    pub fn interrupt(&self) {
        self.mark_stopping();
        let _ = self.control.send(Control::Interrupt);
    }

    /// Kills the process (and, on Unix, its process group).
    pub fn kill(&self) {
        self.mark_stopping();
        let _ = self.control.send(Control::Kill);
    }

    /// How long it has been running.
    pub fn age(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The first 30,000 characters of its output.
    pub fn output(&self) -> String {
        self.captured.snapshot()
    }
}

fn describe(status: std::process::ExitStatus) -> ExitInfo {
    if let Some(code) = status.code() {
        return ExitInfo::new(Some(code), format!("exited with code {code}"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return ExitInfo::new(None, format!("killed by signal {sig}"));
        }
    }
    ExitInfo::new(None, format!("ended: {status}"))
}
