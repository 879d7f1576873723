//! Creating the OS process so that it never outlives the host, and signalling it.
//!
//! Linux: the child gets its own process group and a parent-death signal (SIGKILL). That
//! signal fires when the *thread* that forked the child exits, and tokio's blocking-pool threads
//! do exit when idle, so every child is forked from one dedicated spawner thread that lives as
//! long as the host process.
//!
//! Windows: the child gets a new process group (for Ctrl-Break), no console window, and is
//! placed in a job object that kills it when the host's handle to the job closes, i.e. when the
//! host process ends for any reason.

use std::io;
use std::process::Stdio;

use tokio::process::{Child, Command};
use tokio::runtime::Handle;

use super::launch::{Args, LaunchSpec};

fn command(spec: LaunchSpec) -> Command {
    let mut cmd = Command::new(&spec.program);
    match spec.args {
        Args::Split(args) => {
            cmd.args(args);
        }
        #[cfg(windows)]
        Args::Raw(raw) => {
            if !raw.is_empty() {
                cmd.raw_arg(raw);
            }
        }
        #[cfg(not(windows))]
        Args::Raw(raw) => {
            cmd.args(super::cmdline::split_windows(&raw));
        }
    }
    cmd.env_clear()
        .envs(spec.env)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    cmd
}

#[cfg(unix)]
mod imp {
    use super::*;
    use std::sync::mpsc;
    use std::sync::{Mutex, OnceLock};

    type Job = Box<dyn FnOnce() + Send>;

    /// The one thread that forks every child (see the module doc for why).
    fn spawner() -> io::Result<mpsc::Sender<Job>> {
        static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
        let cell = SPAWNER.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let started = std::thread::Builder::new()
                .name("ancm-spawner".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                });
            if let Err(e) = started {
                log::error!("cannot start the process-spawner thread: {e}");
            }
            Mutex::new(tx)
        });
        cell.lock()
            .map(|tx| tx.clone())
            .map_err(|_| io::Error::other("the process-spawner thread is gone"))
    }

    pub async fn spawn(spec: LaunchSpec, rt: Handle) -> io::Result<Child> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _enter = rt.enter();
            let mut cmd = command(spec);
            // SAFETY: getpid has no preconditions.
            let parent = unsafe { libc::getpid() };
            // SAFETY: the closure runs in the forked child before exec and calls only
            // async-signal-safe functions (setpgid, prctl, getppid, raise).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setpgid(0, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    #[cfg(target_os = "linux")]
                    {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
                        {
                            return Err(io::Error::last_os_error());
                        }
                        // The host may have died between fork and prctl.
                        if libc::getppid() != parent {
                            libc::raise(libc::SIGKILL);
                        }
                    }
                    let _ = parent;
                    Ok(())
                });
            }
            let _ = tx.send(cmd.spawn());
        });
        spawner()?
            .send(job)
            .map_err(|_| io::Error::other("the process-spawner thread is gone"))?;
        rx.await
            .map_err(|_| io::Error::other("the process-spawner thread dropped the request"))?
    }

    pub fn interrupt(child: &Child) {
        if let Some(pid) = child.id() {
            // SAFETY: the child is not reaped yet (the caller owns its handle), so the
            // group id is still ours.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGTERM);
            }
        }
    }

    pub fn kill(child: &mut Child) {
        if let Some(pid) = child.id() {
            // SAFETY: as in `interrupt`.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
        let _ = child.start_kill();
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use std::sync::OnceLock;
    use windows_sys::Win32::Foundation::HANDLE;
    use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
        SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    };
    use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW};

    /// The job every child joins; its handle is never closed, so the OS closes it (and kills
    /// the children) when the host process ends.
    fn job() -> Option<HANDLE> {
        static JOB: OnceLock<usize> = OnceLock::new();
        let h = *JOB.get_or_init(|| {
            // SAFETY: plain Win32 calls with valid arguments; a failure yields a null handle.
            unsafe {
                let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
                if job.is_null() {
                    return 0;
                }
                let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
                info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
                SetInformationJobObject(
                    job,
                    JobObjectExtendedLimitInformation,
                    &info as *const _ as *const core::ffi::c_void,
                    std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                );
                job as usize
            }
        });
        (h != 0).then_some(h as HANDLE)
    }

    pub async fn spawn(spec: LaunchSpec, rt: Handle) -> io::Result<Child> {
        let _enter = rt.enter();
        let mut cmd = command(spec);
        cmd.creation_flags(CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
        let child = cmd.spawn()?;
        match (job(), child.raw_handle()) {
            // SAFETY: both handles are valid and owned for the duration of the call.
            (Some(job), Some(process)) => unsafe {
                if AssignProcessToJobObject(job, process as HANDLE) == 0 {
                    log::warn!(
                        "could not put process {:?} in the kill-on-close job: {}",
                        child.id(),
                        io::Error::last_os_error()
                    );
                }
            },
            _ => log::warn!("no kill-on-close job object: children may outlive the host"),
        }
        Ok(child)
    }

    pub fn interrupt(child: &Child) {
        if let Some(pid) = child.id() {
            // SAFETY: plain Win32 call; it fails harmlessly if the child has no console.
            unsafe {
                GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid);
            }
        }
    }

    pub fn kill(child: &mut Child) {
        let _ = child.start_kill();
    }
}

pub use imp::{interrupt, kill, spawn};
