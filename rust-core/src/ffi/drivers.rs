//! The tasks that run the C ABI's requests.
//!
//! A C host cannot await, so every started request needs a task of the core runtime to drive
//! it. Spawning a task per request cost ≈ 3,200 instructions per small GET (the task's
//! allocation and registration, a boxed forwarding future of ≈ 5 KB, and their undoing; case (h)
//! of `cargo xtask bench`, docs/decisions.md). Instead a driver task that has finished a
//! request waits, idle, for the next one: a new request is handed to the most recently idled
//! driver (LIFO: its memory is warm and it likely runs on this thread), and a driver is spawned
//! only when none is idle. The first request the host starts from inside a `complete` callback
//! goes to the driver delivering it, which runs it as soon as the callback returns, on the same
//! task (any further one goes the usual way). At most [`MAX_IDLE`] wait; the others exit, so a
//! burst of concurrent requests does not leave its drivers behind.

use std::cell::Cell;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use tokio::runtime::Runtime;

use super::request::{drive, Job};

/// How many drivers may wait idle (each holds a few KiB: the forwarding future's space).
pub(crate) const MAX_IDLE: usize = 256;

/// An idle driver: the job handed to it and the waker that gets it going.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    job: Option<Job>,
    waker: Option<Waker>,
}

/// The idle drivers, most recently idled last.
static IDLE: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

thread_local! {
    /// True while a driver delivers `complete` on this thread: the first request the host starts
    /// from inside that callback goes to [`NEXT`] and runs on that driver as soon as the callback
    /// returns, with no lock and no wake-up (through [`IDLE`] and a [`Slot`] that took four
    /// locks, ≈ 120 instructions per request; case (h) of `cargo xtask bench`).
    static OPEN: Cell<bool> = const { Cell::new(false) };
    /// The request started from inside `complete` (see [`OPEN`]).
    static NEXT: Cell<Option<Job>> = const { Cell::new(None) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `job` on the driver whose `complete` callback is running on this thread, else on an idle
/// driver, else on a new one. Never polls anything itself, so no request callback runs inside it.
pub(crate) fn submit(rt: &Runtime, job: Job) {
    // `try_with`: a thread being torn down has no follow-on driver.
    if OPEN.try_with(|open| open.replace(false)).unwrap_or(false) {
        NEXT.set(Some(job));
        return;
    }
    let idle = lock(&IDLE).pop();
    match idle {
        Some(slot) => {
            let waker = {
                let mut st = lock(&slot.state);
                st.job = Some(job);
                st.waker.take()
            };
            // No waker yet: the driver has not polled since it idled, and finds the job when it
            // does.
            if let Some(w) = waker {
                w.wake();
            }
        }
        None => {
            rt.spawn(driver(job));
        }
    }
}

/// One driver: runs its job, then the request the host started from inside its `complete`
/// callback if any, else idles until handed the next (or exits if enough idle).
async fn driver(first: Job) {
    let mut me: Option<Arc<Slot>> = None;
    let mut job = first;
    loop {
        // Open for a follow-on request from just before the host learns the request is over.
        drive(job, || OPEN.set(true)).await;
        OPEN.set(false);
        if let Some(next) = NEXT.take() {
            job = next;
            continue;
        }
        let slot = me.get_or_insert_with(Arc::default);
        {
            let mut idle = lock(&IDLE);
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(slot.clone());
        }
        // Only `submit` takes a slot off the idle list, and it always leaves a job in it, so a
        // wake-up without a job (a stale waker of the last request) just waits again.
        job = poll_fn(|cx| {
            let mut st = lock(&slot.state);
            match st.job.take() {
                Some(j) => Poll::Ready(j),
                None => {
                    if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        st.waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await;
    }
}
