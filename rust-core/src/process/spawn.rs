//! Creating the OS process so that it never outlives the host, and signalling it.
//!
//! Linux: the child gets its own process group and a parent-death signal (SIGKILL). That
//! signal fires when the *thread* that forked the child exits, and tokio's blocking-pool threads
//! do exit when idle, so every child is forked from one dedicated spawner thread that lives as
//! long as the host process.
//!
//! Windows: the child gets a new process group (for Ctrl-Break), no console window, and is
//! placed in a job object that kills it when the host's handle to the job closes, i.e. when the
//! host process ends for any reason. It is created suspended and joins the job before its
//! first instruction runs, so nothing it starts can escape the job.

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
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
    };
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
        SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    };
    use windows_sys::Win32::System::Threading::{
        OpenThread, ResumeThread, CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW, CREATE_SUSPENDED,
        THREAD_SUSPEND_RESUME,
    };

    /// New process group: Ctrl-Break can be sent to the child alone. No window: the host
    /// (IIS) has no desktop, and a console window per app would be wrong anyway.
    pub(super) const FLAGS: u32 = CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW;

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

    fn assign(job: HANDLE, child: &Child) {
        let Some(process) = child.raw_handle() else {
            return;
        };
        // SAFETY: both handles are valid and owned for the duration of the call.
        if unsafe { AssignProcessToJobObject(job, process as HANDLE) } == 0 {
            log::warn!(
                "could not put process {:?} in the kill-on-close job: {}",
                child.id(),
                io::Error::last_os_error()
            );
        }
    }

    /// Closes a Win32 handle when dropped.
    struct Owned(HANDLE);
    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: the handle was returned open by a Win32 call and is closed once.
            unsafe {
                CloseHandle(self.0);
            }
        }
    }

    /// Resumes the threads of a process created with CREATE_SUSPENDED. std and tokio keep
    /// the main thread's handle to themselves, so the thread is found through a Toolhelp
    /// snapshot. Returns how many threads were resumed; zero is an error (nothing would run).
    pub(super) fn resume_threads(pid: u32) -> io::Result<usize> {
        // SAFETY: plain Win32 calls; the snapshot and thread handles are closed by `Owned`,
        // and the entry is a properly sized, zeroed THREADENTRY32.
        unsafe {
            let snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
            if snap == INVALID_HANDLE_VALUE || snap.is_null() {
                return Err(io::Error::last_os_error());
            }
            let snap = Owned(snap);
            let mut entry: THREADENTRY32 = std::mem::zeroed();
            entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
            let mut resumed = 0;
            let mut more = Thread32First(snap.0, &mut entry) != 0;
            while more {
                if entry.th32OwnerProcessID == pid {
                    let thread = OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID);
                    if thread.is_null() {
                        return Err(io::Error::last_os_error());
                    }
                    let thread = Owned(thread);
                    if ResumeThread(thread.0) == u32::MAX {
                        return Err(io::Error::last_os_error());
                    }
                    resumed += 1;
                }
                more = Thread32Next(snap.0, &mut entry) != 0;
            }
            if resumed == 0 {
                return Err(io::Error::other(format!(
                    "no thread of process {pid} in the Toolhelp snapshot"
                )));
            }
            Ok(resumed)
        }
    }

    /// Starts the child suspended, puts it in the kill-on-close job, then lets it run, so
    /// that it cannot start grandchildren outside the job (or outlive a host that dies
    /// meanwhile). Should resuming fail, the suspended child (which ran no code) is killed
    /// and started again normally, then assigned: a small window, logged, instead of no app.
    pub async fn spawn(spec: LaunchSpec, rt: Handle) -> io::Result<Child> {
        let _enter = rt.enter();
        let mut cmd = command(spec);
        let Some(job) = job() else {
            log::warn!("no kill-on-close job object: children may outlive the host");
            cmd.creation_flags(FLAGS);
            return cmd.spawn();
        };
        cmd.creation_flags(FLAGS | CREATE_SUSPENDED);
        let mut child = cmd.spawn()?;
        assign(job, &child);
        let pid = child.id().unwrap_or(0);
        match resume_threads(pid) {
            Ok(_) => Ok(child),
            Err(e) => {
                log::warn!(
                    "cannot resume suspended process {pid} ({e}); starting it again \
                     unsuspended and assigning it to the job after start"
                );
                let _ = child.start_kill();
                drop(child);
                cmd.creation_flags(FLAGS);
                let child = cmd.spawn()?;
                assign(job, &child);
                Ok(child)
            }
        }
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

#[cfg(all(test, windows))]
mod tests {
    use super::*;
    use windows_sys::Win32::System::JobObjects::IsProcessInJob;

    /// Windows only (run under Wine 8 by `cargo xtask iis-emu`, the cross-built test executable
    /// with the bcryptprimitives shim of tests/iis-emu beside it): the child starts through the suspended → job → resume path, is in a job, and runs to its
    /// exit code.
    #[tokio::test]
    async fn child_runs_inside_the_job() {
        let mut child = spawn(LaunchSpec::cmd("/c exit 7"), Handle::current())
            .await
            .expect("spawn");
        let process = child.raw_handle().expect("handle");
        let mut in_job = 0;
        // SAFETY: a valid process handle; a null job handle means "any job".
        let ok = unsafe { IsProcessInJob(process as _, std::ptr::null_mut(), &mut in_job) };
        assert_ne!(ok, 0, "IsProcessInJob failed");
        assert_ne!(in_job, 0, "the child is not in the kill-on-close job");
        let status = child.wait().await.expect("wait");
        assert_eq!(status.code(), Some(7));
    }

    /// The Toolhelp path itself (not its fallback): a suspended child's one thread is found
    /// and resumed. Checked under Wine 8, which implements TH32CS_SNAPTHREAD.
    #[tokio::test]
    async fn suspended_child_is_resumed_through_toolhelp() {
        let mut cmd = Command::new(crate::process::launch::system_cmd_exe());
        cmd.raw_arg("/c exit 3")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .creation_flags(imp::FLAGS | windows_sys::Win32::System::Threading::CREATE_SUSPENDED);
        let mut child = cmd.spawn().expect("spawn");
        let resumed = imp::resume_threads(child.id().expect("pid")).expect("resume");
        assert_eq!(resumed, 1);
        assert_eq!(child.wait().await.expect("wait").code(), Some(3));
    }
}
