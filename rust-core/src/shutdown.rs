//! The process-wide shutdown: the host's process is going away (IIS's stop listening: a
//! recycle or the app pool's end), so from [`begin`] on every app in the process answers 503,
//! starts no process (also an app created afterwards), and is stopped in the background, all
//! at once, each process bounded by its app's shutdownTimeLimit. The host returns to its
//! caller at once and, before the process exits, [`wait`]s for the stops to end.
//!
//! Why process-wide and in the background: IIS keeps handing requests to a worker while its
//! stop-listening notification runs (ANCM's globalmodule.h, StartShutdown), so stopping apps one
//! after another inside it blocks IIS and lets those requests start fresh backends in a
//! dying worker. The state lives here, in the engine, so every path ([`crate::App::handle`],
//! the engine's HTTP/1.1 path, the C ABI) obeys one rule.
//!
//! Once begun the state never ends: the process is on its way out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

static BEGUN: AtomicBool = AtomicBool::new(false);
/// Every app created in the process (weakly: an app freed by its host drops out).
static APPS: Mutex<Vec<Weak<dyn Stoppable>>> = Mutex::new(Vec::new());
/// Work the shutdown waits for: background stops, and process starts under way.
static WORK: Mutex<usize> = Mutex::new(0);
static WORK_DONE: Condvar = Condvar::new();

/// An app as the shutdown sees it.
pub(crate) trait Stoppable: Send + Sync {
    /// Stops every process of the app on its own runtime, without blocking the caller; `work`
    /// is dropped when the stop has ended.
    fn stop_in_background(self: Arc<Self>, work: Work);
}

/// One piece of work [`wait`] waits for; its end is its drop.
pub(crate) struct Work(());

impl Work {
    /// Counts a piece of work from now until the token is dropped.
    pub(crate) fn start() -> Work {
        *lock(&WORK) += 1;
        Work(())
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let mut n = lock(&WORK);
        *n = n.saturating_sub(1);
        if *n == 0 {
            WORK_DONE.notify_all();
        }
    }
}

/// A poisoned lock still holds a usable count or list (nothing here panics while holding it).
fn lock<T>(m: &'static Mutex<T>) -> std::sync::MutexGuard<'static, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the process-wide shutdown has begun.
pub fn begun() -> bool {
    BEGUN.load(Ordering::SeqCst)
}

/// Makes `app` known to a later [`begin`]. An app registered after it began is never stopped
/// here, but it has nothing to stop: it answers 503 and starts no process ([`begun`]).
pub(crate) fn register(app: Weak<dyn Stoppable>) {
    let mut apps = lock(&APPS);
    apps.retain(|a| a.strong_count() > 0);
    apps.push(app);
}

/// Begins the shutdown: from now on every app answers 503 and starts no process, and every
/// live app's processes are being stopped in the background (in parallel). Returns at once;
/// true on the first call, false when it had begun already.
pub fn begin() -> bool {
    // The flag first: a start that counts itself after this sees it and gives up; one that
    // counted itself before is waited for (`Work`).
    if BEGUN.swap(true, Ordering::SeqCst) {
        return false;
    }
    let live: Vec<Arc<dyn Stoppable>> = lock(&APPS).iter().filter_map(Weak::upgrade).collect();
    log::info!(
        "the process is shutting down: stopping {} application(s)",
        live.len()
    );
    for app in live {
        app.stop_in_background(Work::start());
    }
    true
}

/// Blocks until the work begun by [`begin`] has ended (every stop, and every process start
/// that was under way), or `timeout` passed; returns whether it ended. Never call it on a
/// runtime thread: the stops run there.
pub fn wait(timeout: Option<Duration>) -> bool {
    let n = lock(&WORK);
    match timeout {
        None => {
            let _n = WORK_DONE
                .wait_while(n, |n| *n > 0)
                .unwrap_or_else(|e| e.into_inner());
            true
        }
        Some(t) => {
            let (n, _) = WORK_DONE
                .wait_timeout_while(n, t, |n| *n > 0)
                .unwrap_or_else(|e| e.into_inner());
            *n == 0
        }
    }
}
