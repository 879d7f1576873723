//! An application: its configuration, its process slots, the forwarding client and the
//! app_offline state. Hosts hand it requests; it answers each one, starting processes as
//! needed.

mod generations;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http::{Request, Response};
use tokio::runtime::Handle;

use crate::config::Config;
use crate::deploy::Generation;
use crate::event::Event;
use crate::forward::{self, pages, ClientInfo, RequestBody, ResponseBody};
use crate::host::HostInfo;
use crate::process::{self, Backend, ExitHook, Slot, StartFailure, StartResult};
use crate::shutdown;

/// How often the site root is checked for app_offline.htm (ANCM re-checks at most every
/// 200 ms; half that keeps us inside its promise).
const OFFLINE_POLL: Duration = Duration::from_millis(100);
/// The rapid-fail window.
const RAPID_FAIL_WINDOW: Duration = Duration::from_secs(60);
const APP_OFFLINE: &str = "app_offline.htm";

/// A served application. Cheap to clone (a reference to the shared state).
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    host: HostInfo,
    rt: Handle,
    slots: Box<[Arc<Slot>]>,
    next: AtomicUsize,
    control: reqwest::Client,
    rapid: Mutex<RapidFails>,
    offline: ArcSwapOption<Bytes>,
    shutting_down: AtomicBool,
    /// The generation new processes start in (its files: the site root or a shadow copy).
    generation: ArcSwap<Generation>,
    next_generation: AtomicU64,
    /// Which generation each running process belongs to (pid → id).
    members: Mutex<std::collections::HashMap<u32, u64>>,
    /// Held by a generation switch or a health-check restart: one at a time.
    deploying: tokio::sync::Mutex<()>,
    plan: generations::Plan,
}

/// Crashes (exits the engine did not ask for): counted in ANCM's fixed window, and as a run
/// of consecutive short-lived crashes for the back-off between restarts.
struct RapidFails {
    window_start: Instant,
    count: u32,
    consecutive: u32,
    last_exit: Option<Instant>,
}

/// A process that ran at least this long before crashing ends a crash loop.
const CRASH_LOOP_RESET: Duration = Duration::from_secs(30);
/// The first back-off and its cap: 0, 0.25, 0.5, 1, 2, 4, 8, 8, … seconds before the 1st, 2nd,
/// 3rd, … restart of a crash loop.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// How long to wait before restarting after `consecutive` crashes in a row.
fn crash_backoff(consecutive: u32) -> Duration {
    if consecutive < 2 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (consecutive - 2).min(16);
    BACKOFF_FIRST.saturating_mul(factor).min(BACKOFF_MAX)
}

/// A snapshot of an app's state, for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStatus {
    /// Processes running, as (pid, port).
    pub processes: Vec<(u32, u16)>,
    /// Whether app_offline.htm is present.
    pub offline: bool,
    /// Whether the app is shutting down (its own stop, or the process-wide shutdown).
    pub shutting_down: bool,
}

impl App {
    /// Creates the application on the runtime `rt` (processes are started lazily, by the first
    /// request). `rt` runs the app's watchers and the supervision of its processes, so it must be
    /// driven for the app's whole life (a multi-thread runtime, or a current-thread one whose
    /// thread stays in `block_on`, as ancm-serve's control runtime). Requests may come from any
    /// runtime.
    pub fn new(config: Config, host: HostInfo, rt: Handle) -> App {
        crate::debug_log::apply(&config.extensions.debug, &host.site_root);
        for w in config.warnings() {
            log::warn!("{w}");
        }
        let n = config.processes_per_application.clamp(1, 100) as usize;
        let (plan, first) = generations::Plan::new(&config, &host);
        let inner = Arc::new(Inner {
            generation: ArcSwap::from_pointee(first),
            next_generation: AtomicU64::new(2),
            members: Mutex::new(Default::default()),
            deploying: tokio::sync::Mutex::new(()),
            plan,
            control: process::control_client(),
            slots: (0..n).map(|_| Arc::new(Slot::default())).collect(),
            next: AtomicUsize::new(0),
            rapid: Mutex::new(RapidFails {
                window_start: Instant::now(),
                count: 0,
                consecutive: 0,
                last_exit: None,
            }),
            offline: ArcSwapOption::new(
                read_offline(&host.site_root.join(APP_OFFLINE)).map(Arc::new),
            ),
            shutting_down: AtomicBool::new(false),
            config,
            host,
            rt: rt.clone(),
        });
        let weak: Weak<dyn shutdown::Stoppable> = Arc::downgrade(&inner) as _;
        shutdown::register(weak);
        rt.spawn(watch_offline(Arc::downgrade(&inner)));
        if inner.config.extensions.recycles() {
            rt.spawn(watch_recycle(Arc::downgrade(&inner)));
        }
        let deploy = &inner.config.deploy;
        if deploy.watches_changes() {
            rt.spawn(generations::watch_changes(Arc::downgrade(&inner)));
        }
        if deploy.health_check_path.is_some() && !deploy.health_check_interval.is_zero() {
            rt.spawn(generations::watch_health(Arc::downgrade(&inner)));
        }
        if deploy.preload {
            let _guard = rt.enter();
            inner.preload();
        }
        App { inner }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The host facts it runs with.
    pub fn host(&self) -> &HostInfo {
        &self.inner.host
    }

    /// Answers one request: a head the admission rules or the framing checks refuse gets its
    /// status (400, 414, 431, 501; never forwarded); 503 while offline or shutting down; otherwise
    /// a backend (started if needed) answers, or the failure is mapped to its status (502.5,
    /// 502.3, …).
    pub async fn handle(
        &self,
        mut req: Request<RequestBody>,
        client: &ClientInfo,
    ) -> Response<ResponseBody> {
        let inner = &self.inner;
        if let Err(r) = forward::admission::check_request(&req) {
            log::debug!("request refused with {}: {}", r.status, r.cause);
            return pages::refused(r);
        }
        if let Err(rule) = forward::framing::check(req.headers()) {
            return pages::bad_request(rule);
        }
        if let Some(page) = inner.unavailable_page() {
            return page;
        }
        // Once, before any attempt: a retry carries the same trace.
        let trace_id = forward::trace::apply(
            req.headers_mut(),
            inner.config.extensions.traceparent_generation.on(),
        );
        let mut resp = self.forward_with_retry(req, client).await;
        match resp.extensions_mut().get_mut::<crate::report::Served>() {
            Some(s) => s.trace_id = trace_id,
            None => {
                resp.extensions_mut().insert(crate::report::Served {
                    trace_id,
                    pid: None,
                });
            }
        }
        resp
    }

    /// Forwards `req`, sending it once more where the retry rule allows.
    async fn forward_with_retry(
        &self,
        req: Request<RequestBody>,
        client: &ClientInfo,
    ) -> Response<ResponseBody> {
        let inner = &self.inner;
        // A bodiless request that finds its process just gone can go to a restarted (or another)
        // process: always when it was never sent, and when it is idempotent if the connection
        // was lost before any answer. Only bodiless requests keep a copy of their head for it.
        let retry = http_body::Body::is_end_stream(req.body()).then(|| {
            let mut copy = Request::new(());
            *copy.method_mut() = req.method().clone();
            *copy.uri_mut() = req.uri().clone();
            *copy.version_mut() = req.version();
            *copy.headers_mut() = req.headers().clone();
            copy
        });
        match (inner.forward_once(req, client).await, retry) {
            (Ok(r), _) => r,
            (Err(Failure::Forward(backend, e)), Some(head)) => {
                if !self
                    .retry_after(&backend, &e, head.method().is_idempotent())
                    .await
                {
                    return inner.failure_response(Failure::Forward(backend, e));
                }
                let req = head.map(|()| RequestBody::Empty);
                match inner.forward_once(req, client).await {
                    Ok(r) => r,
                    Err(f) => inner.failure_response(f),
                }
            }
            (Err(f), _) => inner.failure_response(f),
        }
    }

    /// Starts the first process now instead of on the first request, and waits until it listens
    /// (or failed to). Used to warm a replacement app before switching traffic to it.
    pub async fn start(&self) -> Result<(), String> {
        let inner = &self.inner;
        inner.slots[0]
            .acquire(|| Inner::start_future(inner.clone()))
            .await
            .map(|_| ())
            .map_err(|f| f.cause.clone())
    }

    /// Stops every process gracefully (shutdown event, interrupt, kill after
    /// shutdownTimeLimit); requests arriving meanwhile get 503. Returns when all have exited.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.stop_all().await;
        // A switch under way finishes (and retires what it started) before the copy goes.
        let _one = self.inner.deploying.lock().await;
        self.inner.stop_all().await;
        let current = self.inner.generation.load_full();
        let _ = tokio::task::spawn_blocking(move || current.remove()).await;
    }

    /// Stops the app after its requests are done, for a host that replaced it with another
    /// (ancm-serve's web.config reload): its processes keep answering the requests already
    /// sent to them (and any that read the old app just before the swap), drained by the same
    /// rule as a generation switch, then get the shutdown event as in [`App::shutdown`].
    pub async fn retire(&self) {
        let inner = &self.inner;
        let running: Vec<Arc<Backend>> = inner.slots.iter().filter_map(|s| s.running()).collect();
        let mut set = tokio::task::JoinSet::new();
        for b in running {
            let inner = inner.clone();
            set.spawn(async move { inner.drain(&b).await });
        }
        while set.join_next().await.is_some() {}
        self.shutdown().await;
    }

    /// What is running now.
    pub fn status(&self) -> AppStatus {
        AppStatus {
            processes: self
                .inner
                .slots
                .iter()
                .filter_map(|s| s.running())
                .map(|b| (b.child.pid(), b.port))
                .collect(),
            offline: self.inner.offline.load().is_some(),
            shutting_down: self.inner.stopping(),
        }
    }
}

/// What becomes of a request on the engine's own HTTP/1.1 path ([`crate::h1`]).
pub(crate) enum Admission {
    /// The engine answers it itself (offline, shutting down, the app could not start). Boxed:
    /// the common variant is a pointer.
    Page(Box<Response<ResponseBody>>),
    /// It goes to this backend.
    Backend(Arc<Backend>),
}

/// The steps of [`App::handle`], for the engine's own HTTP/1.1 path, which forwards head bytes
/// rather than an `http::Request` but follows the same rules.
impl App {
    /// The page for a request while the app cannot take any, else its backend (started if
    /// needed).
    pub(crate) async fn admit(&self) -> Admission {
        let inner = &self.inner;
        if let Some(page) = inner.unavailable_page() {
            return Admission::Page(Box::new(page));
        }
        match inner.backend().await {
            Ok(b) => Admission::Backend(b),
            Err(f) => Admission::Page(Box::new(inner.failure_response(f))),
        }
    }

    /// The page for a request `backend` did not answer.
    pub(crate) fn failure_page(
        &self,
        backend: Arc<Backend>,
        e: forward::ForwardError,
    ) -> Response<ResponseBody> {
        self.inner.failure_response(Failure::Forward(backend, e))
    }

    /// Whether a request that failed with `e` is sent once more ([`App::handle`]'s rule); if so,
    /// returns after giving a dying process a moment to be seen dead.
    pub(crate) async fn retry_after(
        &self,
        backend: &Backend,
        e: &forward::ForwardError,
        idempotent: bool,
    ) -> bool {
        if !may_resend(e, idempotent) {
            return false;
        }
        log::info!("{e} (process {}); trying once more", backend.child.pid());
        // Give the reaper a moment to notice a death, so the retry starts a new process.
        let _ = tokio::time::timeout(UNREACHABLE_GRACE, backend.child.wait()).await;
        true
    }

    /// How long a backend may take to start answering (requestTimeout; zero: no limit).
    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.config.request_timeout
    }
}

/// Why a request got no answer from the application.
enum Failure {
    /// No process could be started.
    Start(Arc<StartFailure>),
    /// Forwarding to this process failed.
    Forward(Arc<Backend>, forward::ForwardError),
}

/// Whether a request that failed with `e` may be sent again, its method being `idempotent` or
/// not (RFC 9110 §9.2.2).
fn may_resend(e: &forward::ForwardError, idempotent: bool) -> bool {
    match e {
        forward::ForwardError::Unreachable(_) => true,
        forward::ForwardError::ConnectionLost(_) => idempotent,
        _ => false,
    }
}

/// How long a retry waits for an unreachable process to be seen dead.
const UNREACHABLE_GRACE: Duration = Duration::from_millis(200);

impl Inner {
    /// Whether the app is stopping: its own stop, or the process-wide shutdown.
    fn stopping(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire) || shutdown::begun()
    }

    /// The page for any request while the app takes none: shutting down, or app_offline.htm.
    fn unavailable_page(&self) -> Option<Response<ResponseBody>> {
        if self.stopping() {
            return Some(pages::shutting_down());
        }
        self.offline
            .load_full()
            .map(|page| pages::app_offline((*page).clone()))
    }

    /// A running backend of a slot picked for the next request, started if needed.
    async fn backend(self: &Arc<Self>) -> Result<Arc<Backend>, Failure> {
        self.pick_slot()
            .acquire(|| Inner::start_future(self.clone()))
            .await
            .map_err(Failure::Start)
    }

    /// Picks a process (starting one if needed) and forwards `req` to it.
    async fn forward_once(
        self: &Arc<Self>,
        req: Request<RequestBody>,
        client: &ClientInfo,
    ) -> Result<Response<ResponseBody>, Failure> {
        let backend = self.backend().await?;
        let timeout = self.config.request_timeout;
        forward::forward(
            backend.begin_request(),
            req,
            client,
            timeout,
            self.config.dialect,
            self.config.extensions.backend_protocol,
            forward::headers::Underscores::forward_if(
                self.config.extensions.forward_headers_with_underscores,
            ),
        )
        .await
        .map(|mut r| {
            r.extensions_mut().insert(crate::report::Served {
                trace_id: None,
                pid: Some(backend.child.pid()),
            });
            r
        })
        .map_err(|e| Failure::Forward(backend, e))
    }

    /// The response for a request that got no answer from the application.
    fn failure_response(&self, f: Failure) -> Response<ResponseBody> {
        let (backend, e) = match f {
            // A start refused or undone because the app began stopping meanwhile.
            Failure::Start(_) if self.stopping() => return pages::shutting_down(),
            Failure::Start(f) => return self.start_failure_response(&f),
            Failure::Forward(b, e) => (b, e),
        };
        if let forward::ForwardError::BadRequestBody(_) = e {
            return pages::bad_request(&e.to_string());
        }
        log::warn!("request to process {} failed: {e}", backend.child.pid());
        let mut page = pages::forward_failure(&e.to_string());
        if e.closes_connection() {
            page.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        page
    }

    /// Least outstanding requests, scanning from a rotating start so that idle slots are
    /// started in turn (as ANCM's round robin does) and ties spread evenly.
    fn pick_slot(&self) -> &Arc<Slot> {
        if self.slots.len() == 1 {
            return &self.slots[0];
        }
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = start;
        let mut best_load = usize::MAX;
        for i in 0..n {
            let idx = (start + i) % n;
            let slot = &self.slots[idx];
            let load = match slot.running() {
                Some(b) => b.in_flight(),
                None if slot.is_starting() => usize::MAX - 1,
                None => 0,
            };
            if load < best_load {
                best = idx;
                best_load = load;
                if load == 0 {
                    break;
                }
            }
        }
        &self.slots[best]
    }

    async fn start_future(self: Arc<Self>) -> StartResult {
        // Counted before the check, so that a shutdown beginning now either is seen here or
        // waits for this start (and the stop of what it started).
        let _work = shutdown::Work::start();
        if self.stopping() {
            return Err(Arc::new(Self::stopping_failure()));
        }
        if let Some(f) = self.rapid_fail_block() {
            return Err(Arc::new(f));
        }
        if let Some(at) = self.restart_not_before() {
            log::debug!(
                "waiting {} ms (crash back-off) before restarting",
                at.saturating_duration_since(Instant::now()).as_millis()
            );
            tokio::time::sleep_until(at.into()).await;
        }
        let started = self.start_backend().await.map_err(Arc::new)?;
        if self.stopping() {
            // The stop took the slots before this process was in one: stop it here, or it
            // would outlive the app.
            process::stop(
                &started,
                &self.host.app_path,
                self.config.shutdown_time_limit,
                &self.control,
            )
            .await;
            return Err(Arc::new(Self::stopping_failure()));
        }
        Ok(Arc::new(started))
    }

    /// Why no process starts while the app is stopping (the request gets the 503 page).
    fn stopping_failure() -> StartFailure {
        StartFailure {
            cause: "the application is shutting down".into(),
            output: String::new(),
            plain_502: false,
        }
    }

    /// Starts one process in the current generation.
    async fn start_backend(self: &Arc<Self>) -> Result<Backend, StartFailure> {
        let generation = self.generation.load_full();
        self.start_in(&generation).await
    }

    /// Starts one process with this app's settings from `generation`'s files, ready once it
    /// listens and passes its health check; its exit is reported to `on_exit`.
    async fn start_in(self: &Arc<Self>, generation: &Generation) -> Result<Backend, StartFailure> {
        let root = generation.root().await.map_err(|cause| StartFailure {
            cause,
            output: String::new(),
            plain_502: false,
        })?;
        let weak = Arc::downgrade(self);
        let hook: ExitHook = Arc::new(move |pid, info| {
            if let Some(inner) = weak.upgrade() {
                inner.on_exit(pid, info);
            }
        });
        let mut started = process::start_in(&self.config, &self.host, &root, &self.rt, hook).await;
        if let Ok(b) = &started {
            if let Err(f) = self.health_gate(b).await {
                started = Err(f);
            }
        }
        match &started {
            Ok(b) => {
                if let Ok(mut m) = self.members.lock() {
                    m.insert(b.child.pid(), generation.id);
                }
                log::info!(
                    event = Event::ProcessStartSuccess as u32;
                    "{}: process {} of generation {} started and is listening on port {}",
                    self.config.source,
                    b.child.pid(),
                    generation.id,
                    b.port
                )
            }
            Err(f) if f.output.is_empty() => log::error!(
                event = Event::ProcessStartFailure as u32;
                "{}: could not start the application: {}",
                self.config.source,
                f.cause
            ),
            Err(f) => log::error!(
                event = Event::ProcessStartFailure as u32;
                "{}: could not start the application: {}\nIts first output:\n{}",
                self.config.source,
                f.cause,
                f.output
            ),
        }
        started
    }

    /// Replaces the backend of slot `idx` without a gap: the new process starts first, takes new
    /// requests once it listens, and the old one drains and stops. If the new one cannot start,
    /// the old one keeps serving.
    async fn recycle(self: &Arc<Self>, idx: usize, old_pid: u32, reason: &str) {
        // One at a time with generation switches, so neither puts a process of the other's
        // generation back into a slot.
        let _one = self.deploying.lock().await;
        log::info!("recycling process {old_pid}: {reason}");
        match self.start_backend().await {
            Ok(next) => {
                if let Some(prev) = self.slots[idx].replace(Arc::new(next)) {
                    self.drain_and_stop(prev).await;
                }
            }
            Err(f) => log::error!(
                "process {old_pid} keeps serving: its replacement did not start: {}",
                f.cause
            ),
        }
    }

    /// Why the backend in a slot should be recycled now, if it should.
    fn recycle_reason(&self, b: &Backend) -> Option<String> {
        let ext = &self.config.extensions;
        if let Some(n) = ext.recycle_after_requests.filter(|n| b.served() >= *n) {
            return Some(format!(
                "it served {} requests (recycleAfterRequests = {n})",
                b.served()
            ));
        }
        if let Some(age) = ext.recycle_after.filter(|a| b.child.age() >= *a) {
            return Some(format!(
                "it is older than recycleAfterMinutes = {}",
                age.as_secs() / 60
            ));
        }
        let limit = ext.recycle_above_memory_bytes?;
        let rss = process::resident_bytes(b.child.pid())?;
        (rss > limit).then(|| {
            format!(
                "it uses {} MiB, above recycleAboveMemoryMB = {}",
                rss >> 20,
                limit >> 20
            )
        })
    }

    fn rapid_fail_block(&self) -> Option<StartFailure> {
        let rapid = self.rapid.lock().ok()?;
        let elapsed = rapid.window_start.elapsed();
        if elapsed < RAPID_FAIL_WINDOW && rapid.count > self.config.rapid_fails_per_minute {
            let retry = (RAPID_FAIL_WINDOW - elapsed).as_secs() + 1;
            return Some(StartFailure {
                cause: format!(
                    "the application's processes exited {} times within a minute, more than \
                     rapidFailsPerMinute ({}); it will be started again in {retry} s",
                    rapid.count, self.config.rapid_fails_per_minute
                ),
                output: String::new(),
                plain_502: false,
            });
        }
        None
    }

    fn on_exit(self: &Arc<Self>, pid: u32, info: &process::ExitInfo) {
        if let Ok(mut m) = self.members.lock() {
            m.remove(&pid);
        }
        if self.config.deploy.preload && !info.requested && !self.stopping() {
            // Warm-up: a crashed process is restarted now, not by the next request.
            self.preload();
        }
        if info.requested || self.stopping() {
            log::info!("process {pid} {}", info.description);
            return;
        }
        // Count first, log after: whoever reads the log line must find the count updated.
        let mut backoff = Duration::ZERO;
        let mut consecutive = 0;
        if let Ok(mut rapid) = self.rapid.lock() {
            if rapid.window_start.elapsed() >= RAPID_FAIL_WINDOW {
                rapid.window_start = Instant::now();
                rapid.count = 0;
            }
            rapid.count += 1;
            if rapid.count == self.config.rapid_fails_per_minute.saturating_add(1) {
                log::error!(
                    event = Event::RapidFailCountExceeded as u32;
                    "{}: the application's processes exited {} times within a minute, more than \
                     rapidFailsPerMinute ({}); requests get 502.5 until the minute is over",
                    self.config.source,
                    rapid.count,
                    self.config.rapid_fails_per_minute
                );
            }
            rapid.consecutive = if info.lifetime >= CRASH_LOOP_RESET {
                1
            } else {
                rapid.consecutive.saturating_add(1)
            };
            rapid.last_exit = Some(Instant::now());
            consecutive = rapid.consecutive;
            backoff = crash_backoff(consecutive);
        }
        log::warn!(
            event = Event::ProcessExited as u32;
            "{}: process {pid} {}",
            self.config.source,
            info.description
        );
        if !backoff.is_zero() {
            log::info!(
                "the application crashed {consecutive} times in a row: restart back-off {} ms",
                backoff.as_millis()
            );
        }
    }

    /// When the next start may happen, if a crash loop asks us to wait.
    fn restart_not_before(&self) -> Option<Instant> {
        let rapid = self.rapid.lock().ok()?;
        let wait = crash_backoff(rapid.consecutive);
        let at = rapid.last_exit? + wait;
        (!wait.is_zero() && at > Instant::now()).then_some(at)
    }

    fn start_failure_response(&self, f: &StartFailure) -> Response<ResponseBody> {
        if f.plain_502 {
            log::error!("{}: {}", self.config.source, f.cause);
            return pages::plain_bad_gateway();
        }
        pages::startup_failure(&f.cause, &f.output, self.config.disable_startup_error_page)
    }

    async fn stop_all(&self) {
        let backends: Vec<Arc<Backend>> = self.slots.iter().filter_map(|s| s.take()).collect();
        let mut set = tokio::task::JoinSet::new();
        for b in backends {
            let client = self.control.clone();
            let app_path = self.host.app_path.clone();
            let limit = self.config.shutdown_time_limit;
            set.spawn(async move { process::stop(&b, &app_path, limit, &client).await });
        }
        while set.join_next().await.is_some() {}
    }
}

impl shutdown::Stoppable for Inner {
    fn stop_in_background(self: Arc<Self>, work: shutdown::Work) {
        let rt = self.rt.clone();
        rt.spawn(async move {
            App { inner: self }.shutdown().await;
            drop(work);
        });
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // An app dropped without shutdown(): its processes must not outlive it.
        for s in self.slots.iter() {
            if let Some(b) = s.take() {
                b.child.kill();
            }
        }
        self.generation.load().remove();
    }
}

fn read_offline(path: &std::path::Path) -> Option<Bytes> {
    match std::fs::read(path) {
        Ok(b) => Some(Bytes::from(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        // Present but unreadable (locked, no permission): an empty 503, as ANCM.
        Err(_) => path.exists().then(Bytes::new),
    }
}

/// How often the recycle limits are checked.
const RECYCLE_POLL: Duration = Duration::from_millis(250);

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Watches the recycle limits of every running process (handlerSettings of this project), and
/// recycles one slot at a time, so that the others keep serving meanwhile.
async fn watch_recycle(weak: Weak<Inner>) {
    let trigger = weak.upgrade().and_then(|i| {
        let f = i.config.extensions.recycle_trigger_file.as_deref()?;
        Some(i.host.site_root.join(process::launch::native_path(f)))
    });
    let mut trigger_seen = trigger.as_deref().and_then(modified);
    loop {
        tokio::time::sleep(RECYCLE_POLL).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopping() {
            return;
        }
        let trigger_now = trigger.as_deref().and_then(modified);
        let triggered = trigger_now.is_some() && trigger_now != trigger_seen;
        trigger_seen = trigger_now;
        for idx in 0..inner.slots.len() {
            let Some(b) = inner.slots[idx].running() else {
                continue;
            };
            let reason = if triggered {
                Some("recycleTriggerFile was touched".to_owned())
            } else {
                inner.recycle_reason(&b)
            };
            if let Some(reason) = reason {
                inner.recycle(idx, b.child.pid(), &reason).await;
            }
        }
    }
}

/// Watches for app_offline.htm: while present, its bytes are the answer; when it appears,
/// the running processes are stopped gracefully.
async fn watch_offline(weak: Weak<Inner>) {
    let mut seen: Option<(std::time::SystemTime, u64)> = None;
    loop {
        tokio::time::sleep(OFFLINE_POLL).await;
        let Some(inner) = weak.upgrade() else { return };
        let path = inner.host.site_root.join(APP_OFFLINE);
        let meta = tokio::fs::metadata(&path).await.ok();
        let stamp = meta.map(|m| (m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len()));
        if stamp == seen {
            continue;
        }
        let was_offline = inner.offline.load().is_some();
        let page = match stamp {
            Some(_) => Some(
                tokio::fs::read(&path)
                    .await
                    .map(Bytes::from)
                    .unwrap_or_default(),
            ),
            None => None,
        };
        seen = stamp;
        let now_offline = page.is_some();
        inner.offline.store(page.map(Arc::new));
        if now_offline && !was_offline {
            log::info!(
                event = Event::RecycleAppOffline as u32;
                "{} appeared: stopping the application's processes",
                path.display()
            );
            inner.stop_all().await;
        } else if !now_offline && was_offline {
            log::info!(
                "{} was removed: the next request starts the application",
                path.display()
            );
            if inner.config.deploy.preload {
                inner.preload();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_backoff_schedule() {
        let ms: Vec<u128> = (0..9).map(|n| crash_backoff(n).as_millis()).collect();
        assert_eq!(ms, vec![0, 0, 250, 500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(crash_backoff(u32::MAX), BACKOFF_MAX);
    }
}
