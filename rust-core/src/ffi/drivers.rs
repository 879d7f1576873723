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
        // Taken before any await: after one, the task may go on on another thread.
        let next = NEXT.take();
        // A host may start each next request from `complete`, and requests can complete without
        // waiting for anything (app_offline's 503): yield to the runtime when this task has used
        // its budget, or tasks waiting on this worker would wait for the whole chain.
        tokio::task::coop::consume_budget().await;
        if let Some(next) = next {
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

#[cfg(test)]
mod tests {
    //! The drivers through the C ABI itself, as a C host uses them.

    use std::ffi::c_void;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};

    use crate::ffi::app::{ancm_app, ancm_app_free, ancm_app_get_status, ancm_app_new};
    use crate::ffi::app::{ancm_app_status, ancm_host_info};
    use crate::ffi::config::{ancm_config, ancm_config_free, ancm_config_from_file};
    use crate::ffi::handle::ancm_slice;
    use crate::ffi::request::{
        ancm_callbacks, ancm_request, ancm_request_ack_write, ancm_request_end_body,
        ancm_request_free, ancm_request_head, ancm_request_start, ancm_response_head,
    };
    use crate::ffi::result::ancm_result;

    /// How many follow-on requests the chain may run before it gives up on the spawned task.
    const LIMIT: usize = 20_000;

    /// The chain's state: the app, how many requests completed, whether the task spawned from
    /// the first `complete` ran, and the chain's end.
    struct Chain {
        app: *const ancm_app,
        req: Mutex<*mut ancm_request>,
        done: AtomicUsize,
        spawned_ran: &'static AtomicBool,
        status_ok: AtomicBool,
        end: (Mutex<bool>, Condvar),
    }

    static SPAWNED_RAN: AtomicBool = AtomicBool::new(false);

    fn head() -> ancm_request_head {
        ancm_request_head {
            method: ancm_slice::of(b"GET"),
            target: ancm_slice::of(b"/"),
            headers: std::ptr::null(),
            header_count: 0,
            content_length: 0,
            client_address: ancm_slice::of(b"127.0.0.1"),
            client_port: 40000,
            https: false,
            client_cert_der: ancm_slice::of(b""),
            auth_type: ancm_slice::of(b""),
            windows_token: std::ptr::null_mut(),
            serialize_io: false,
        }
    }

    const CALLBACKS: ancm_callbacks = ancm_callbacks {
        body_wanted: Some(body_wanted),
        response_head: Some(response_head),
        response_body: Some(response_body),
        complete: Some(complete),
        response_trailers: None,
    };

    unsafe fn chain<'a>(ud: *mut c_void) -> &'a Chain {
        unsafe { &*(ud as *const Chain) }
    }

    unsafe extern "C" fn body_wanted(ud: *mut c_void) {
        let c = unsafe { chain(ud) };
        unsafe { ancm_request_end_body(*c.req.lock().unwrap()) };
    }

    unsafe extern "C" fn response_head(ud: *mut c_void, head: *const ancm_response_head) {
        let c = unsafe { chain(ud) };
        if unsafe { (*head).status } != 503 {
            c.status_ok.store(false, Ordering::Relaxed);
        }
    }

    unsafe extern "C" fn response_body(ud: *mut c_void, _: *const u8, _: usize, _: bool) {
        let c = unsafe { chain(ud) };
        unsafe { ancm_request_ack_write(*c.req.lock().unwrap()) };
    }

    /// Starts the next request of the chain from inside `complete` until the task spawned from
    /// the first one has run, or LIMIT requests.
    unsafe extern "C" fn complete(ud: *mut c_void, result: ancm_result, _: *const u8, _: usize) {
        let c = unsafe { chain(ud) };
        if result != ancm_result::Ok {
            c.status_ok.store(false, Ordering::Relaxed);
        }
        let mut req = c.req.lock().unwrap();
        unsafe { ancm_request_free(*req) };
        let n = c.done.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 {
            // On a core thread: the task goes to this worker's own next-task slot, which no
            // other worker takes from; it runs only when this driver yields.
            let ran = c.spawned_ran;
            tokio::spawn(async move { ran.store(true, Ordering::Release) });
        }
        if n < LIMIT && !c.spawned_ran.load(Ordering::Acquire) {
            let r = unsafe { ancm_request_start(c.app, &head(), &CALLBACKS, ud, &mut *req) };
            if r == ancm_result::Ok {
                return;
            }
            c.status_ok.store(false, Ordering::Relaxed);
        }
        let (m, cv) = &c.end;
        *m.lock().unwrap() = true;
        cv.notify_all();
    }

    /// A host that starts every next request from inside `complete`, on requests that complete
    /// without waiting for anything (503 pages while app_offline.htm is present), must not keep
    /// its driver from ever yielding: a task that waits on that worker must get to run.
    #[test]
    fn a_chain_started_from_complete_yields_to_other_tasks() {
        let dir = std::env::temp_dir().join(format!("ancm-drivers-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("web.config"),
            r#"<configuration><system.webServer><aspNetCore processPath="./no-such-app" /></system.webServer></configuration>"#,
        )
        .unwrap();
        std::fs::write(dir.join("app_offline.htm"), "offline").unwrap();
        let path = dir.join("web.config");
        let path = path.to_str().unwrap().as_bytes();
        let site = dir.to_str().unwrap().as_bytes();
        unsafe {
            let mut config: *mut ancm_config = std::ptr::null_mut();
            let mut error = std::ptr::null_mut();
            let r = ancm_config_from_file(path.as_ptr(), path.len(), &mut config, &mut error);
            assert_eq!(r, ancm_result::Ok);
            let host = ancm_host_info {
                site_root: ancm_slice::of(site),
                app_path: ancm_slice::of(b"/"),
                http_auth: ancm_slice::of(b""),
                https_port: 0,
                websockets_supported: false,
            };
            let mut app: *mut ancm_app = std::ptr::null_mut();
            assert_eq!(ancm_app_new(config, &host, &mut app), ancm_result::Ok);
            ancm_config_free(config);
            let mut status = ancm_app_status::default();
            assert_eq!(ancm_app_get_status(app, &mut status), ancm_result::Ok);
            assert!(status.offline, "app_offline.htm is not seen");

            let c = Box::new(Chain {
                app,
                req: Mutex::new(std::ptr::null_mut()),
                done: AtomicUsize::new(0),
                spawned_ran: &SPAWNED_RAN,
                status_ok: AtomicBool::new(true),
                end: (Mutex::new(false), Condvar::new()),
            });
            let ud = &*c as *const Chain as *mut c_void;
            {
                let mut req = c.req.lock().unwrap();
                let r = ancm_request_start(app, &head(), &CALLBACKS, ud, &mut *req);
                assert_eq!(r, ancm_result::Ok);
            }
            let (m, cv) = &c.end;
            let mut end = m.lock().unwrap();
            while !*end {
                end = cv.wait(end).unwrap();
            }
            drop(end);
            let done = c.done.load(Ordering::Relaxed);
            assert!(
                c.status_ok.load(Ordering::Relaxed),
                "a request did not get its 503"
            );
            assert!(
                SPAWNED_RAN.load(Ordering::Acquire) && done < LIMIT,
                "the task spawned from the first complete never ran during {done} follow-on requests"
            );
            ancm_app_free(app);
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
