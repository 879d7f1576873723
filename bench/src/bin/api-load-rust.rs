//! `api-load-rust`: the Rust side of benchmark case (h), "C ABI vs Rust API".
//!
//! The twin of `bench/c-host/api_load.c`: keeps K small GETs in flight against the app of a
//! web.config (the harness points it at bench-backend), for W warm-up requests and then N
//! measured ones, and prints the process CPU time (`getrusage(RUSAGE_SELF)`: every thread,
//! the runtime's included) of the measured phase. It goes through the engine's Rust API
//! (`App::handle`, as ancm-serve does) on a runtime built exactly like the C ABI's process-wide
//! one (multi-thread, one worker per CPU clamped to 2–16, all drivers on), so the only
//! difference between the two programs is the C boundary.
//!
//! Equal work on both sides: the request head is built from the same bytes with the same
//! parsers the C ABI's `ancm_request_start` uses (as a Rust host parses what it received), and
//! every response is checked the same way (status 200, Content-Length 13, body
//! `Hello, World!`); a bad response makes the exit status non-zero.
//!
//! With `--task-per-request` each request runs in a task of its own, which spawns the slot's
//! next request when it ends (what the C ABI does inside, since a C host cannot await): the
//! difference from the default run is the part of the C ABI's cost that is the task itself.
//!
//! ```text
//! api-load-rust [--task-per-request] <web.config> <in flight K> <warm-up W> <requests N>
//! prints: requests=N in_flight=K cpu_s=.. user_s=.. sys_s=.. wall_s=.. bad=0 warm_bad=0
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ancm_bench::SMALL_BODY;
use ancm_core::{App, ClientInfo, Config, HostInfo, RequestBody};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body_util::BodyExt;

/// The request head, as bytes: the same as api_load.c sends.
const METHOD: &[u8] = b"GET";
const TARGET: &[u8] = b"/small";
const HEADERS: [(&[u8], &[u8]); 3] = [
    (b"Host", b"127.0.0.1"),
    (b"User-Agent", b"api-load"),
    (b"Accept", b"*/*"),
];

fn fail(msg: &str) -> ! {
    eprintln!("api-load-rust: {msg}");
    std::process::exit(2)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let per_task = args.first().is_some_and(|a| a == "--task-per-request");
    if per_task {
        args.remove(0);
    }
    let [config_path, k, warm, n] = args.as_slice() else {
        fail("usage: api-load-rust [--task-per-request] <web.config> <in flight K> <warm-up W> <requests N>")
    };
    let num = |s: &str, what: &str| -> u64 {
        s.parse()
            .ok()
            .filter(|v| *v > 0)
            .unwrap_or_else(|| fail(&format!("{what} must be a positive number, not {s}")))
    };
    let (k, warm, n) = (num(k, "K"), num(warm, "W"), num(n, "N"));
    let config_path = Path::new(config_path);
    let config = Config::from_web_config_file(config_path).unwrap_or_else(|e| fail(&e.to_string()));
    // The site root is the web.config's folder, as ancm-serve and api_load.c take it.
    let site = config_path
        .parent()
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| fail("give the web.config as an absolute path"));

    // The C ABI's runtime (rust-core/src/ffi/runtime.rs), built the same way.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("ancm-core")
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start the runtime: {e}")));
    let app = App::new(config, HostInfo::new(site), rt.handle().clone());

    let bad = Arc::new(AtomicU64::new(0));
    // Warm-up: starts the app's process and fills the connection pool.
    phase(&rt, &app, k, warm, &bad, per_task);
    let warm_bad = bad.load(Ordering::Relaxed);

    let before = rusage();
    let t0 = Instant::now();
    phase(&rt, &app, k, n, &bad, per_task);
    let wall = t0.elapsed().as_secs_f64();
    let after = rusage();

    let (user, sys) = (after.0 - before.0, after.1 - before.1);
    let nbad = bad.load(Ordering::Relaxed);
    println!(
        "requests={n} in_flight={k} cpu_s={:.6} user_s={user:.6} sys_s={sys:.6} wall_s={wall:.6} bad={} warm_bad={warm_bad}",
        user + sys,
        nbad - warm_bad
    );
    rt.block_on(app.shutdown());
    std::process::exit(if nbad == 0 { 0 } else { 1 });
}

/// Runs `n` requests with `k` in flight (k tasks, each taking the next request until none is
/// left, as a connection task of ancm-serve awaits one request after another) and waits for all.
fn phase(
    rt: &tokio::runtime::Runtime,
    app: &App,
    k: u64,
    n: u64,
    bad: &Arc<AtomicU64>,
    per_task: bool,
) {
    let left = Arc::new(AtomicI64::new(n as i64));
    if per_task {
        let chain = Arc::new(Chain {
            app: app.clone(),
            left,
            done: AtomicU64::new(0),
            n,
            bad: bad.clone(),
            finished: (std::sync::Mutex::new(false), std::sync::Condvar::new()),
        });
        for i in 0..k.min(n) {
            if chain.left.fetch_sub(1, Ordering::Relaxed) > 0 {
                rt.spawn(chain.clone().request(i));
            }
        }
        let (m, cv) = &chain.finished;
        let mut fin = m.lock().unwrap_or_else(|p| p.into_inner());
        while !*fin {
            fin = cv.wait(fin).unwrap_or_else(|p| p.into_inner());
        }
        return;
    }
    let tasks: Vec<_> = (0..k.min(n))
        .map(|i| {
            let (app, left, bad) = (app.clone(), left.clone(), bad.clone());
            rt.spawn(async move {
                let client = ClientInfo::http(SocketAddr::from(([127, 0, 0, 1], 40000 + i as u16)));
                while left.fetch_sub(1, Ordering::Relaxed) > 0 {
                    if let Err(e) = one(&app, &client).await {
                        if bad.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("api-load-rust: bad response: {e}");
                        }
                    }
                }
            })
        })
        .collect();
    rt.block_on(async {
        for t in tasks {
            if let Err(e) = t.await {
                fail(&format!("a load task failed: {e}"));
            }
        }
    });
}

/// The `--task-per-request` mode's shared state.
struct Chain {
    app: App,
    left: Arc<AtomicI64>,
    done: AtomicU64,
    n: u64,
    bad: Arc<AtomicU64>,
    finished: (std::sync::Mutex<bool>, std::sync::Condvar),
}

impl Chain {
    /// One request in its own task; at its end it spawns the slot's next one, as api_load.c's
    /// `complete` callback starts the next request.
    fn request(
        self: Arc<Self>,
        slot: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let client = ClientInfo::http(SocketAddr::from(([127, 0, 0, 1], 40000 + slot as u16)));
            if let Err(e) = one(&self.app, &client).await {
                if self.bad.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("api-load-rust: bad response: {e}");
                }
            }
            if self.left.fetch_sub(1, Ordering::Relaxed) > 0 {
                tokio::spawn(self.clone().request(slot));
            }
            if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
                let (m, cv) = &self.finished;
                *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
                cv.notify_one();
            }
        })
    }
}

/// One request: the head parsed from bytes (what `ancm_request_start` does with a C head),
/// handled, and the response checked as api_load.c checks it.
async fn one(app: &App, client: &ClientInfo) -> Result<(), String> {
    // The head's bytes as a host receives them: at run time. Seen as constants, the parsers were
    // specialised for them at compile time (HeaderName::from_bytes took a third of the
    // instructions it takes on bytes from a socket or from ancm_request_start's C head).
    let (method, target, header_list) = std::hint::black_box((METHOD, TARGET, &HEADERS));
    let method = Method::from_bytes(method).map_err(|e| e.to_string())?;
    let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(target)).map_err(|e| e.to_string())?;
    let mut headers = HeaderMap::with_capacity(header_list.len());
    for &(name, value) in header_list {
        headers.append(
            HeaderName::from_bytes(name).map_err(|e| e.to_string())?,
            HeaderValue::from_bytes(value).map_err(|e| e.to_string())?,
        );
    }
    let mut req = Request::new(RequestBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;

    let resp = app.handle(req, client).await;
    let status = resp.status();
    let length_ok = resp
        .headers()
        .iter()
        .any(|(n, v)| n == CONTENT_LENGTH && v.as_bytes() == b"13");
    let mut body = resp.into_body();
    let mut got = 0usize;
    let mut body_ok = true;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the body failed: {e}"))?;
        if let Ok(data) = frame.into_data() {
            let end = got + data.len();
            if end > SMALL_BODY.len() || SMALL_BODY[got..end] != data[..] {
                body_ok = false;
            }
            got = end;
        }
    }
    if status == StatusCode::OK && length_ok && body_ok && got == SMALL_BODY.len() {
        Ok(())
    } else {
        Err(format!(
            "status {status}, Content-Length 13: {length_ok}, {got} body bytes, as sent: {body_ok}"
        ))
    }
}

/// User and system CPU seconds of the whole process so far.
fn rusage() -> (f64, f64) {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        fail("getrusage failed");
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}
