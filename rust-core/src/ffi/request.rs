//! Requests: push-based and completion-driven.
//!
//! The host starts a request with its head and a callback table; one core task per request
//! forwards it and talks back through the callbacks; the host answers later through the
//! `ancm_request_*` calls. Callbacks of one request never run concurrently with each other, and
//! no callback ever runs inside an `ancm_request_*` call, so a host may call any of them from
//! inside a callback.

use std::ffi::c_void;
use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::app::{ancm_app, app_ref};
use super::handle::{
    ancm_slice, arc_ref, bytes, check_null, free_arc, to_arc, try_ffi, write_out, ArcHandle,
};
use super::panic::{guard, guard_void};
use super::result::ancm_result;
use super::runtime::runtime;
use crate::forward::{BackendUpgrade, BoxError};
use crate::{App, ClientInfo, EngineStatus, RequestBody, ResponseBody};

mod plain;
mod trailers;
mod websocket;
pub use trailers::{
    ancm_request_reset, ancm_request_reset_code, ancm_request_supply_trailers,
    ancm_response_trailers_callback,
};
pub use websocket::{
    ancm_request_supply_ws_fragment, ancm_request_websocket_fragments, ancm_ws_fragment,
    ancm_ws_fragment_callback,
};

/// One request in flight. Created by `ancm_request_start`; the host drops its reference with
/// `ancm_request_free` (the core keeps its own until the request completes). Thread-safe: the
/// `ancm_request_*` calls may be made from any thread, concurrently.
pub struct ancm_request {
    _private: [u8; 0],
}

impl ArcHandle for ancm_request {
    type Rust = Shared;
}

/// One header: a name and a value, as bytes (no NUL terminators).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ancm_header {
    /// The header name.
    pub name: ancm_slice,
    /// The header value.
    pub value: ancm_slice,
}

/// The head of a client request. Everything it points at is borrowed for the duration of
/// `ancm_request_start` only (the core copies what it keeps).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ancm_request_head {
    /// The method token, e.g. `GET`.
    pub method: ancm_slice,
    /// The request target exactly as the client sent it (raw, not decoded), e.g. `/a%2Fb?x=1`:
    /// origin-form (starting with `/`), or `*` for OPTIONS; anything else is refused, never
    /// translated.
    pub target: ancm_slice,
    /// The request headers, in order (repeated names allowed); NULL when `header_count` is 0.
    pub headers: *const ancm_header,
    /// How many headers `headers` holds.
    pub header_count: usize,
    /// The body's length: 0 for no body, the length when known (Content-Length), -1 when
    /// unknown (chunked). The core asks for body bytes only when it is not 0. This is the
    /// request's framing: `Content-Length` / `Transfer-Encoding` entries in `headers` may only
    /// repeat it, and supplied bytes must add up to it.
    pub content_length: i64,
    /// The client's IP address as text (`203.0.113.7`, `::1`).
    pub client_address: ancm_slice,
    /// The client's port.
    pub client_port: u16,
    /// Whether the client connection is https.
    pub https: bool,
    /// The client certificate (DER), empty when none.
    pub client_cert_der: ancm_slice,
    /// How the user authenticated, as IIS names it (`IHttpUser::GetAuthenticationType`:
    /// `Negotiate`, `NTLM`, `Basic` …), UTF-8; empty when anonymous or unknown. Only
    /// `Negotiate` and `NTLM` logons have their token forwarded (as ANCM).
    pub auth_type: ancm_slice,
    /// The user's Windows token (a `HANDLE`; IIS: `IHttpUser::GetPrimaryToken`), or NULL.
    /// Borrowed for the duration of `ancm_request_start` only: the caller keeps its handle and
    /// may close it afterwards. When the app's `forwardWindowsAuthToken` is true and
    /// `auth_type` is Negotiate or NTLM, the engine takes its own duplicate during the call and
    /// duplicates it into the backend process that gets the request (per attempt, so a retry on
    /// another process works), sending that process's handle value in hex in
    /// `MS-ASPNETCORE-WINAUTHTOKEN`; the backend owns and closes it. A duplicate whose request
    /// never reached its process is closed there again. Otherwise the token is ignored. On
    /// other platforms than Windows a non-NULL token makes `ancm_request_start` fail with
    /// `ANCM_RESULT_UNSUPPORTED`.
    pub windows_token: *mut c_void,
    /// Serialize the host's I/O: when true the core never asks for body bytes while a response
    /// write is unacknowledged, nor delivers a response chunk while a body read is outstanding
    /// (IIS without full duplex allows one asynchronous operation per request).
    pub serialize_io: bool,
}

/// The head of the response, given to the `response_head` callback. Every pointer in it is
/// valid only during that callback.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ancm_response_head {
    /// The HTTP status.
    pub status: u16,
    /// IIS's substatus for responses the engine made itself (e.g. 5 for 502.5), else 0. Some
    /// engine responses have substatus 0 too (400, 503): `from_engine` tells them apart.
    pub substatus: u16,
    /// The reason phrase (the backend's, or the standard one); may be empty.
    pub reason: ancm_slice,
    /// The response headers, hop-by-hop headers already removed (except `Connection` and
    /// `Upgrade` on a 101). Names are in the backend's case for bodiless requests to an HTTP/1.1
    /// backend (the engine's own HTTP/1.1 path), lowercase otherwise: compare case-insensitively.
    pub headers: *const ancm_header,
    /// How many headers `headers` holds.
    pub header_count: usize,
    /// True for a 101 Switching Protocols: from now on the request is a bidirectional byte
    /// stream: body requests carry the client's bytes to the backend, response body chunks carry
    /// the backend's bytes to the client.
    pub upgraded: bool,
    /// True when the engine made this response itself (every page of the status table in
    /// README.md: 400, 500, 502, 502.3, 502.5, 503 …, including those with substatus 0), false
    /// when it is the backend's.
    pub from_engine: bool,
}

/// The core wants request body bytes: the host answers, now or later, with exactly one
/// `ancm_request_supply_body` or `ancm_request_end_body`. Runs on a core thread; must not block.
pub type ancm_body_wanted_callback = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// The response head is ready. `head` and everything it points at are valid only during the
/// call. Called at most once, before any response body chunk. Runs on a core thread; must not
/// block.
pub type ancm_response_head_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, head: *const ancm_response_head)>;

/// A response body chunk (`len` > 0 bytes) to write to the client; `flush` is true when no more
/// data is ready right now (write it out rather than buffer it). The bytes stay valid until the
/// next `response_body` callback or `ancm_request_free`, whichever comes first (not only until
/// `ancm_request_ack_write`: IIS may still use the memory of the last asynchronous write until
/// the request completes), so they can be written asynchronously by reference; the next chunk
/// comes only after the acknowledgement. Runs on a core thread; must not block.
pub type ancm_response_body_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, data: *const u8, len: usize, flush: bool)>;

/// The request is over: `result` is `ANCM_RESULT_OK` (the response is complete),
/// `ANCM_RESULT_CANCELLED` (the host cancelled), `ANCM_RESULT_RESPONSE_ABORTED`,
/// `ANCM_RESULT_UPGRADE_FAILED` or `ANCM_RESULT_BODY_REFUSED` (abort the client connection) or
/// `ANCM_RESULT_PANIC`;
/// `message` (`len` bytes of UTF-8, valid during the call) says why when it is not OK. Called
/// exactly once per started request, always last: no callback follows it. Runs on a core
/// thread; must not block. The host may call `ancm_request_free` from inside it.
pub type ancm_complete_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        result: ancm_result,
        message: *const u8,
        len: usize,
    ),
>;

/// The callbacks of one request; the first four are required, `response_trailers` is optional
/// (NULL: the response's trailers are dropped). Each gets the `userdata` given to
/// `ancm_request_start`, which must stay valid until `complete` has returned. The table grows
/// only at its end, so a host that initialises it positionally with fewer entries (C's rule:
/// the rest are zero) gets the later ones as NULL (`-Wextra` warns; spell the NULL out).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ancm_callbacks {
    /// See `ancm_body_wanted_callback`.
    pub body_wanted: ancm_body_wanted_callback,
    /// See `ancm_response_head_callback`.
    pub response_head: ancm_response_head_callback,
    /// See `ancm_response_body_callback`.
    pub response_body: ancm_response_body_callback,
    /// See `ancm_complete_callback`.
    pub complete: ancm_complete_callback,
    /// See `ancm_response_trailers_callback`; may be NULL.
    pub response_trailers: ancm_response_trailers_callback,
}

/// The callback table with every entry checked present.
struct Table {
    body_wanted: unsafe extern "C" fn(*mut c_void),
    response_head: unsafe extern "C" fn(*mut c_void, *const ancm_response_head),
    response_body: unsafe extern "C" fn(*mut c_void, *const u8, usize, bool),
    complete: unsafe extern "C" fn(*mut c_void, ancm_result, *const u8, usize),
    response_trailers: ancm_response_trailers_callback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// No body read outstanding.
    Idle,
    /// `body_wanted` was called; a supply or end is awaited.
    Asked,
    /// The host ended the body.
    Ended,
}

struct State {
    read: Read,
    /// Supplied bytes not yet taken by the body stream.
    supplied: Option<Bytes>,
    /// Body bytes supplied so far (checked against `Shared::length`).
    received: u64,
    /// Waker of whoever polls the request body.
    body_waker: Option<Waker>,
    /// The chunk delivered and not yet acknowledged; kept alive for the host until then.
    write: Option<Bytes>,
    /// The last chunk acknowledged, kept alive until the next one is delivered or the host
    /// frees the request: IIS documents that the memory of an asynchronous unbuffered write
    /// must be preserved until the request completes, which is after the acknowledgement of
    /// its last write (docs/decisions.md, "The last response chunk lives until the handle is
    /// freed").
    acked: Option<Bytes>,
    /// Waker of the request's driver task, registered when `drive` first polls the request and
    /// kept until `complete` or `cancel` (others wake a clone: `unless_cancelled` relies on it
    /// staying).
    driver_waker: Option<Waker>,
    /// The driver waits for the acknowledgement of `write` (only then does an ack wake it: an
    /// ack from inside the `response_body` callback finds the driver still running, and waking
    /// it would cost a spurious poll of the whole request).
    awaiting_ack: bool,
    /// After an upgrade: both directions run at once, whatever `serialize`.
    duplex: bool,
    /// The host's choice of message fragments for an upgraded WebSocket (see `websocket`).
    ws: websocket::HostMode,
    /// The request trailers the host supplied with the end of the body, not yet taken.
    trailers: Option<HeaderMap>,
}

/// What an `ancm_request` handle points at, shared by the host and the core task.
pub struct Shared {
    table: Table,
    userdata: *mut c_void,
    serialize: bool,
    state: Mutex<State>,
    /// The host cancelled. Written only with `state` locked (so a waker registered under the
    /// lock is either seen by `cancel` or sees the flag), read without it: the driver checks it
    /// on every poll, and an atomic load is all that check costs. Also set when the engine
    /// refuses a supply (`refusal`).
    cancelled: AtomicBool,
    /// Why the engine stopped the request itself (a `Refusal` as `u8`, 0 when the host
    /// cancelled): stored before `cancelled`, read after it.
    refusal: AtomicU8,
    /// The body's length from the head's `content_length` (`None`: unknown, or no body).
    length: Option<u64>,
    /// `complete` has been (or is being) delivered. Written like `cancelled`.
    finished: AtomicBool,
    /// Held while a callback runs, so callbacks never overlap; `true` once `complete` ran.
    /// Unused when `driver_only`.
    calling: Mutex<bool>,
    /// The HTTP/2 error code the host reset the request with (`trailers::NO_RESET`: none).
    host_reset: AtomicU64,
    /// The HTTP/2 error code the backend reset the response's stream with (`NO_RESET`: none).
    backend_reset: AtomicU64,
    /// Every callback comes from the request's driver task, one after another, `complete` last:
    /// the request has no body, so no body stream polled by the forwarding client's connection
    /// task can ask for one (after an upgrade the driver polls the client's stream itself).
    /// Callbacks then need no `calling` lock (≈ 60 instructions per request, case (h) of
    /// `cargo xtask bench`).
    driver_only: bool,
}

// SAFETY: `userdata` is only handed back to the host's callbacks, which the host promises
// (ancm_request_start's contract) may run on any core thread.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn store_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

/// A waker's identity (what `Waker::will_wake` compares), as plain numbers so that a future
/// holding it stays `Send`.
fn waker_id(w: &Waker) -> (usize, usize) {
    (w.data() as usize, w.vtable() as *const _ as usize)
}

fn wake_all(wakers: [Option<Waker>; 2]) {
    for w in wakers.into_iter().flatten() {
        w.wake();
    }
}

/// Why a request ended early.
struct Outcome(ancm_result, String);

/// A body supply the engine refused, which fails the request: its `complete` then gets
/// `ANCM_RESULT_BODY_REFUSED` with this message, never a success with a body that differs from
/// what the head announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Refusal {
    /// More bytes than `content_length`.
    TooLong = 1,
    /// `end_body` before `content_length` bytes.
    TooShort = 2,
    /// A zero-length supply (the end of a body is `end_body`).
    Empty = 3,
}

impl Refusal {
    fn from_u8(v: u8) -> Option<Refusal> {
        [Refusal::TooLong, Refusal::TooShort, Refusal::Empty]
            .into_iter()
            .find(|r| *r as u8 == v)
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::TooLong => "the host supplied more request body bytes than content_length",
            Refusal::TooShort => {
                "the host ended the request body before content_length bytes were supplied"
            }
            Refusal::Empty => {
                "the host supplied zero body bytes (the end of a body is ancm_request_end_body)"
            }
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Whether the host cancelled the request.
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Whether the request was cancelled or has completed: nothing more is expected of the host.
    fn is_over(&self) -> bool {
        self.is_cancelled() || self.finished.load(Ordering::Acquire)
    }

    /// The `calling` lock, held while a callback runs; `None` when `driver_only` (the driver is
    /// then the only caller, and it calls nothing after `complete`).
    fn calling(&self) -> Option<MutexGuard<'_, bool>> {
        (!self.driver_only).then(|| lock(&self.calling))
    }

    /// Runs a callback unless `complete` has already run.
    fn call(&self, f: impl FnOnce(&Table, *mut c_void)) {
        let done = self.calling();
        if done.as_deref() != Some(&true) {
            f(&self.table, self.userdata);
        }
    }

    /// Delivers `complete` (once); afterwards no callback runs and the body stream fails. Called
    /// by the request's driver task only.
    fn complete(&self, result: ancm_result, message: &str) {
        let body_waker = {
            let mut st = self.state();
            self.finished.store(true, Ordering::Release);
            // The driver is the caller: waking it would only cost it a useless poll.
            st.driver_waker = None;
            st.body_waker.take()
        };
        if let Some(w) = body_waker {
            w.wake();
        }
        let mut done = self.calling();
        if let Some(done) = done.as_deref_mut() {
            if *done {
                return;
            }
            *done = true;
        }
        // SAFETY: the host's callback, with a message valid for the call.
        unsafe { (self.table.complete)(self.userdata, result, message.as_ptr(), message.len()) };
    }

    /// Registers `waker` as the driver's.
    fn register_driver(&self, waker: &Waker) {
        store_waker(&mut self.state().driver_waker, waker);
    }

    /// Polls `poll` to completion unless the host cancels the request first (then
    /// `Err(cancelled)`); while it waits, a cancel wakes the driver. The check takes no lock:
    /// `drive` registered the driver's waker before it first polled the request.
    async fn unless_cancelled<T>(
        &self,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<Result<T, Outcome>>,
    ) -> Result<T, Outcome> {
        poll_fn(|cx| {
            if self.is_cancelled() {
                return Poll::Ready(Err(self.stopped()));
            }
            poll(cx)
        })
        .await
    }

    fn cancel(&self) {
        let wakers = self.stop(&mut self.state(), None);
        wake_all(wakers);
    }

    /// Stops the request (with `state` locked): the host cancelled (`None`), or the engine
    /// refused what the host supplied. Returns the wakers to wake once the lock is released.
    fn stop(&self, st: &mut State, refusal: Option<Refusal>) -> [Option<Waker>; 2] {
        if let Some(r) = refusal {
            if !self.is_cancelled() {
                self.refusal.store(r as u8, Ordering::Relaxed);
            }
        }
        self.cancelled.store(true, Ordering::Release);
        [st.body_waker.take(), st.driver_waker.take()]
    }

    /// How a stopped request ends: cancelled by the host, or failed by a refused supply.
    fn stopped(&self) -> Outcome {
        match Refusal::from_u8(self.refusal.load(Ordering::Relaxed)) {
            Some(r) => Outcome(ancm_result::BodyRefused, r.message().to_owned()),
            None => match self.host_reset.load(Ordering::Relaxed) {
                trailers::NO_RESET => Outcome(
                    ancm_result::Cancelled,
                    "the request was cancelled by the host".to_owned(),
                ),
                code => Outcome(
                    ancm_result::Cancelled,
                    format!("the host reset the request's stream (HTTP/2 error code {code})"),
                ),
            },
        }
    }
}

/// The request body as the host feeds it.
struct HostBody {
    shared: Arc<Shared>,
    length: Option<u64>,
}

impl Body for HostBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let shared = &self.shared;
        let mut st = shared.state();
        if let Some(e) = trailers::host_reset_error(shared, &mut st) {
            return Poll::Ready(Some(Err(e)));
        }
        if shared.is_over() {
            return Poll::Ready(Some(Err("the request was cancelled".into())));
        }
        if let Some(b) = st.supplied.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        // All of a known length supplied: the body is complete without an `end_body` (the host
        // may still have ended it with trailers).
        if self.length.is_some_and(|n| st.received == n) {
            return Poll::Ready(st.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        match st.read {
            Read::Ended => Poll::Ready(st.trailers.take().map(|t| Ok(Frame::trailers(t)))),
            Read::Asked => {
                store_waker(&mut st.body_waker, cx.waker());
                Poll::Pending
            }
            Read::Idle => {
                store_waker(&mut st.body_waker, cx.waker());
                if shared.serialize && !st.duplex && st.write.is_some() {
                    return Poll::Pending;
                }
                st.read = Read::Asked;
                drop(st);
                // SAFETY: the host's callback.
                shared.call(|t, ud| unsafe { (t.body_wanted)(ud) });
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let st = self.shared.state();
        st.supplied.is_none()
            && st.trailers.is_none()
            && (st.read == Read::Ended || self.length.is_some_and(|n| st.received == n))
    }

    fn size_hint(&self) -> SizeHint {
        self.length
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// A started request, waiting for or run by a driver task ([`super::drivers`]).
pub(crate) struct Job {
    shared: Arc<Shared>,
    app: App,
    work: Work,
}

/// Which path a request takes.
enum Work {
    /// `App::handle` (hyper's client), for everything the plain path does not take. Boxed: the
    /// job travels through the idle-driver slot, and a small one moves cheaply (the plain path's
    /// requests pay no copy of this variant's 344 bytes).
    General(Box<(Request<RequestBody>, ClientInfo)>),
    /// The engine's own HTTP/1.1 machinery ([`plain`]).
    Plain(plain::Plain),
}

/// Runs one request on a driver task: forward, deliver, complete. A panic inside is caught,
/// reported to the host as `ANCM_RESULT_PANIC`, and the driver goes on with its next request.
/// `finishing` runs just before the `complete` callback (the driver offers itself for the next
/// request then, so that a request the host starts from inside `complete` continues on this task).
pub(crate) async fn drive(job: Job, finishing: impl FnOnce()) {
    let Job { shared, app, work } = job;
    // Pinned in the driver's own state: drivers are long-lived, so this costs no allocation per
    // request (boxing it in a task per request did; case (h) of `cargo xtask bench`).
    let mut work = pin!(run(&shared, app, work));
    // The driver's waker, registered with the request at the first poll (and again should the
    // task's waker ever change), so that checking for a cancel needs no lock.
    let mut registered = None;
    let outcome = poll_fn(|cx| {
        let id = waker_id(cx.waker());
        if registered != Some(id) {
            shared.register_driver(cx.waker());
            registered = Some(id);
        }
        let work = work.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    })
    .await;
    let Outcome(code, msg) = match outcome {
        Ok(Ok(())) => Outcome(ancm_result::Ok, String::new()),
        Ok(Err(o)) => o,
        Err(()) => {
            ::log::error!("ancm-core: a request task panicked");
            Outcome(
                ancm_result::Panic,
                "internal error: the request task panicked".to_owned(),
            )
        }
    };
    finishing();
    shared.complete(code, &msg);
}

async fn run(shared: &Arc<Shared>, app: App, work: Work) -> Result<(), Outcome> {
    let (req, client) = match work {
        Work::General(general) => *general,
        Work::Plain(p) => return plain::run(shared, &app, p).await,
    };
    let mut handle = pin!(app.handle(req, &client));
    let mut resp = shared
        .unless_cancelled(|cx| handle.as_mut().poll(cx).map(Ok))
        .await?;
    // A 101 carries the backend's connection (the engine only answers 101 to an upgrade).
    let upgrade = (resp.status() == http::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| resp.extensions_mut().remove::<BackendUpgrade>());
    deliver_head(shared, &resp, upgrade.is_some());
    match upgrade {
        Some(Some(backend)) => match backend.take() {
            Some(on) => tunnel(shared, on, backend.session()).await,
            None => Err(Outcome(
                ancm_result::UpgradeFailed,
                "the backend connection was already taken".into(),
            )),
        },
        Some(None) => Err(Outcome(
            ancm_result::UpgradeFailed,
            "101 without a backend connection".into(),
        )),
        None => pump(shared, resp.into_body()).await,
    }
}

/// How many response headers `deliver_head` passes without allocating.
const INLINE_HEADERS: usize = 16;

fn deliver_head(shared: &Shared, resp: &Response<ResponseBody>, upgraded: bool) {
    let engine = resp.extensions().get::<EngineStatus>();
    let substatus = engine.map_or(0, |e| e.substatus);
    let from_engine = engine.is_some();
    let reason: &[u8] = match resp.extensions().get::<hyper::ext::ReasonPhrase>() {
        Some(r) => r.as_bytes(),
        None => resp.status().canonical_reason().unwrap_or("").as_bytes(),
    };
    let view = |(n, v): (&HeaderName, &HeaderValue)| ancm_header {
        name: ancm_slice::of(n.as_str().as_bytes()),
        value: ancm_slice::of(v.as_bytes()),
    };
    // Most responses have a few headers: those go in an array on the stack, not a heap Vec
    // (left uninitialised: only the slots written are read).
    let mut inline = [MaybeUninit::<ancm_header>::uninit(); INLINE_HEADERS];
    let spilled: Vec<ancm_header>;
    let headers: &[ancm_header] = if resp.headers().len() <= INLINE_HEADERS {
        let mut n = 0;
        for (slot, h) in inline.iter_mut().zip(resp.headers()) {
            slot.write(view(h));
            n += 1;
        }
        // SAFETY: the first `n` slots were written just above.
        unsafe { std::slice::from_raw_parts(inline.as_ptr().cast::<ancm_header>(), n) }
    } else {
        spilled = resp.headers().iter().map(view).collect();
        &spilled
    };
    let head = ancm_response_head {
        status: resp.status().as_u16(),
        substatus,
        reason: ancm_slice::of(reason),
        headers: headers.as_ptr(),
        header_count: headers.len(),
        upgraded,
        from_engine,
    };
    // Only during a 101's head may the host choose WebSocket fragments (`in_head` is false
    // otherwise, so other responses need not lock for it).
    if upgraded {
        shared.state().ws.in_head = true;
    }
    // SAFETY: the host's callback; `head` and what it points at outlive the call.
    shared.call(|t, ud| unsafe { (t.response_head)(ud, &head) });
    if upgraded {
        shared.state().ws.in_head = false;
    }
}

type BodyFrame = Option<Result<Frame<Bytes>, crate::forward::BodyError>>;

/// Streams the response body to the host, one acknowledged chunk at a time.
async fn pump(shared: &Arc<Shared>, body: ResponseBody) -> Result<(), Outcome> {
    let mut body = pin!(body);
    let mut next: Option<BodyFrame> = None;
    loop {
        let frame = match next.take() {
            Some(f) => f,
            None => {
                shared
                    .unless_cancelled(|cx| body.as_mut().poll_frame(cx).map(Ok))
                    .await?
            }
        };
        let Some(frame) = frame else { return Ok(()) };
        let frame = frame.map_err(|e| trailers::body_failed(shared, &e))?;
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers::deliver(shared, &t);
                }
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        // Look one frame ahead: flush when nothing more is ready now (trailers are the end).
        let flush = match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Pending => true,
            Poll::Ready(f) => {
                let last = f
                    .as_ref()
                    .is_none_or(|f| f.as_ref().is_ok_and(|f| f.is_trailers()));
                next = Some(f);
                last
            }
        };
        write(shared, data, flush).await?;
    }
}

/// Delivers one chunk and waits for its acknowledgement.
async fn write(shared: &Arc<Shared>, data: Bytes, flush: bool) -> Result<(), Outcome> {
    // SAFETY: the host's callback; the bytes stay alive in `state.write` until acknowledged.
    write_with(shared, data, |t, ud, ptr, len| unsafe {
        (t.response_body)(ud, ptr, len, flush)
    })
    .await
}

/// Hands `data` to the host through `deliver` (a callback call) and waits for the host's
/// acknowledgement; the bytes stay alive in `state.write` until then.
async fn write_with(
    shared: &Arc<Shared>,
    data: Bytes,
    deliver: impl FnOnce(&Table, *mut c_void, *const u8, usize),
) -> Result<(), Outcome> {
    // An address, not a pointer, so the future stays Send; the bytes do not move (Bytes).
    let (addr, len) = (data.as_ptr() as usize, data.len());
    let mut data = Some(data);
    poll_fn(|cx| {
        let mut st = shared.state();
        if shared.is_cancelled() {
            return Poll::Ready(Err(shared.stopped()));
        }
        if shared.serialize && !st.duplex && st.read == Read::Asked {
            store_waker(&mut st.driver_waker, cx.waker());
            return Poll::Pending;
        }
        st.write = data.take();
        st.acked = None; // the host has moved on from it: the next write is under way
        Poll::Ready(Ok(()))
    })
    .await?;
    shared.call(|t, ud| deliver(t, ud, addr as *const u8, len));
    poll_fn(|cx| {
        let mut st = shared.state();
        if shared.is_cancelled() {
            return Poll::Ready(Err(shared.stopped()));
        }
        if st.write.is_none() {
            return Poll::Ready(Ok(()));
        }
        store_waker(&mut st.driver_waker, cx.waker());
        st.awaiting_ack = true;
        Poll::Pending
    })
    .await
}

/// Runs both directions of an upgraded connection until the backend-to-client one (`down`)
/// ends. The client-to-backend one (`up`) may finish first (a client's half close); only its
/// error stops both.
async fn both_ways<T>(
    up: impl Future<Output = Result<(), Outcome>>,
    down: impl Future<Output = Result<T, Outcome>>,
) -> Result<T, Outcome> {
    let mut up = pin!(up);
    let mut down = pin!(down);
    let mut up_done = false;
    poll_fn(|cx| {
        if !up_done {
            if let Poll::Ready(r) = up.as_mut().poll(cx) {
                r?;
                up_done = true;
            }
        }
        down.as_mut().poll(cx)
    })
    .await
}

/// Pipes an upgraded connection: client bytes (supplied body) to the backend, backend bytes to
/// the client (response chunks). Ends when the backend closes its side. In fragment mode the
/// backend's drain (`session`) ends the WebSocket with 1001 (see `websocket`).
async fn tunnel(
    shared: &Arc<Shared>,
    on: hyper::upgrade::OnUpgrade,
    session: Option<crate::process::Session>,
) -> Result<(), Outcome> {
    let mut on = pin!(on);
    let upgraded = shared
        .unless_cancelled(|cx| {
            on.as_mut().poll(cx).map(|r| {
                r.map_err(|e| Outcome(ancm_result::UpgradeFailed, crate::forward::describe(&e)))
            })
        })
        .await?;
    let fragments = {
        let mut st = shared.state();
        if st.read == Read::Ended {
            st.read = Read::Idle;
        }
        // An upgraded stream flows both ways at once; a host tunnelling upgrades allows that
        // (IIS: IWebSocketContext reads and writes are independent).
        st.duplex = true;
        st.ws.fix()
    };
    if let Some(callback) = fragments {
        return websocket::tunnel(shared, upgraded, callback, session).await;
    }
    // A byte stream has no frames the engine could end it at: it is not a drained session.
    drop(session);
    let (mut from_backend, mut to_backend) = tokio::io::split(TokioIo::new(upgraded));
    let failed = |e: std::io::Error| Outcome(ancm_result::UpgradeFailed, e.to_string());
    let down = async {
        loop {
            let mut buf = BytesMut::with_capacity(16 * 1024);
            let mut read = pin!(from_backend.read_buf(&mut buf));
            let n = shared
                .unless_cancelled(|cx| read.as_mut().poll(cx).map(|r| r.map_err(failed)))
                .await?;
            if n == 0 {
                return Ok(());
            }
            write(shared, buf.freeze(), true).await?;
        }
    };
    let up = async {
        let mut body = pin!(HostBody {
            shared: shared.clone(),
            length: None
        });
        loop {
            let frame = poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
            match frame {
                None => return to_backend.shutdown().await.map_err(failed),
                Some(Err(_)) => return Err(shared.stopped()),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        to_backend.write_all(&data).await.map_err(failed)?;
                    }
                }
            }
        }
    };
    both_ways(up, down).await
}

/// How the request body arrives, from the head's `content_length`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (`content_length` 0).
    Empty,
    /// A body of unknown length (`content_length` -1, chunked).
    Unknown,
    /// A body of exactly this many bytes.
    Length(u64),
}

/// A request head checked and copied out of an `ancm_request_head`.
#[doc(hidden)]
#[derive(Debug)]
pub struct ParsedHead {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The headers, in order.
    pub headers: HeaderMap,
    /// The client's address, scheme and certificate (the Windows token is taken by
    /// `ancm_request_start`, see `windows_token`).
    pub client: ClientInfo,
    /// How the body arrives.
    pub body: BodyKind,
    /// The host's token handle, when one was given for a Negotiate/NTLM logon (as an address:
    /// the handle is only borrowed).
    pub windows_token: Option<usize>,
}

/// Validates the C head and copies what the engine keeps: the request-head parser of
/// `ancm_request_start`, with no app, runtime or callbacks involved (the fuzz target
/// `c_request_head` calls it directly). Checks in this order, returning the first failure:
/// method, target (origin-form, or `*` for OPTIONS: `check_origin_form`), header list, each
/// header's name then value, client address, certificate, authentication type, Windows token,
/// content length, and last whether the list's `Content-Length` / `Transfer-Encoding` headers
/// agree with `content_length` (`ANCM_RESULT_FRAMING_HEADER` when they do not).
///
/// # Safety
/// Every slice in `head` (and `headers`, for `header_count` entries) is NULL with a zero length
/// or points at that many readable bytes, unchanged during the call.
#[doc(hidden)]
pub unsafe fn parse_head(head: &ancm_request_head) -> Result<ParsedHead, ancm_result> {
    let method = Method::from_bytes(unsafe { head.method.bytes()? })
        .map_err(|_| ancm_result::InvalidMethod)?;
    let target = unsafe { head.target.bytes()? };
    crate::forward::target::check_origin_form(&method, target)
        .map_err(|_| ancm_result::InvalidTarget)?;
    let list: &[ancm_header] = if head.header_count == 0 {
        &[]
    } else if head.headers.is_null() {
        return Err(ancm_result::NullParameter);
    } else {
        unsafe { std::slice::from_raw_parts(head.headers, head.header_count) }
    };
    // The target and every value are copied into one buffer, and each is a view of it: one
    // allocation per request instead of one per value (case (h) of `cargo xtask bench`).
    let mut total = target.len();
    for h in list {
        total += unsafe { h.value.bytes()? }.len();
    }
    let mut copy = bytes::BytesMut::with_capacity(total);
    copy.extend_from_slice(target);
    for h in list {
        copy.extend_from_slice(unsafe { h.value.bytes()? });
    }
    let mut copy = copy.freeze();
    let uri = Uri::from_maybe_shared(copy.split_to(target.len()))
        .map_err(|_| ancm_result::InvalidTarget)?;
    let mut headers = HeaderMap::with_capacity(list.len());
    let mut framing = crate::forward::framing::Fields::default();
    for h in list {
        let name = HeaderName::from_bytes(unsafe { h.name.bytes()? })
            .map_err(|_| ancm_result::InvalidHeader)?;
        let raw = unsafe { h.value.bytes()? };
        let value = HeaderValue::from_maybe_shared(copy.split_to(raw.len()))
            .map_err(|_| ancm_result::InvalidHeader)?;
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            framing.feed(name.as_str().as_bytes(), raw);
        }
        headers.append(name, value);
    }
    let ip = client_ip(
        unsafe { head.client_address.bytes() }.map_err(|_| ancm_result::InvalidClientAddress)?,
    )?;
    let cert = unsafe { head.client_cert_der.bytes()? };
    let auth_type = unsafe { head.auth_type.str()? };
    if !head.windows_token.is_null() && !cfg!(windows) {
        return Err(ancm_result::Unsupported);
    }
    let windows_token = (!head.windows_token.is_null()
        && crate::process::forwards_token_of(auth_type))
    .then_some(head.windows_token as usize);
    let client = ClientInfo {
        addr: SocketAddr::new(ip, head.client_port),
        https: head.https,
        client_cert_der: (!cert.is_empty()).then(|| Bytes::copy_from_slice(cert)),
        windows_token: None,
    };
    let body = match head.content_length {
        0 => BodyKind::Empty,
        -1 => BodyKind::Unknown,
        n if n > 0 => BodyKind::Length(n as u64),
        _ => return Err(ancm_result::InvalidArgument),
    };
    // `content_length` is the framing; framing headers in the list may only repeat it.
    use crate::forward::framing::Framing;
    let agrees = match framing.finish() {
        Ok(Framing::Unframed) => true,
        Ok(Framing::Length(n)) => {
            body == if n == 0 {
                BodyKind::Empty
            } else {
                BodyKind::Length(n)
            }
        }
        Ok(Framing::Chunked) => body == BodyKind::Unknown,
        Err(_) => false,
    };
    if !agrees {
        return Err(ancm_result::FramingHeader);
    }
    Ok(ParsedHead {
        method,
        uri,
        headers,
        client,
        body,
        windows_token,
    })
}

/// The client's address from its text: plain dotted-quad IPv4 (what IIS gives for most clients)
/// directly from the bytes, anything else through the standard parser, which decides what is
/// valid (the direct path accepts only what it accepts, with the same result; ≈ 100 instructions
/// less per request, case (h) of `cargo xtask bench`).
fn client_ip(text: &[u8]) -> Result<IpAddr, ancm_result> {
    if let Some(v4) = plain_ipv4(text) {
        return Ok(IpAddr::V4(v4));
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(ancm_result::InvalidClientAddress)
}

/// Four dot-separated decimal octets of 1–3 digits, no leading zero, each ≤ 255; `None` for
/// anything else (left to the standard parser). One pass over the bytes (splitting into parts
/// first cost ≈ 35 instructions more for `127.0.0.1`).
fn plain_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    // Octets done, the current one's value, and its digits.
    let (mut done, mut value, mut digits) = (0usize, 0u16, 0u8);
    for &c in text {
        match c {
            b'0'..=b'9' => {
                // A fourth digit, or a digit after a leading zero, is not plain.
                if digits == 3 || (digits == 1 && value == 0) {
                    return None;
                }
                value = value * 10 + u16::from(c - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && done < 3 => {
                octets[done] = u8::try_from(value).ok()?;
                (done, value, digits) = (done + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if done != 3 || digits == 0 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Builds the engine request from the C head; takes the engine's own duplicate of the Windows
/// token when `app` forwards it.
unsafe fn build_request(
    head: &ancm_request_head,
    shared: &Arc<Shared>,
    app: &App,
) -> Result<(Request<RequestBody>, ClientInfo), ancm_result> {
    let mut parsed = unsafe { parse_head(head)? };
    if let Some(raw) = parsed.windows_token {
        if app.config().forward_windows_auth_token {
            parsed.client.windows_token = Some(Arc::new(unsafe { take_token(raw)? }));
        }
    }
    let stream = |length| {
        RequestBody::Stream(Box::pin(HostBody {
            shared: shared.clone(),
            length,
        }))
    };
    let body = match parsed.body {
        BodyKind::Empty => RequestBody::Empty,
        BodyKind::Unknown => stream(None),
        BodyKind::Length(n) => stream(Some(n)),
    };
    let mut req = Request::new(body);
    *req.method_mut() = parsed.method;
    *req.uri_mut() = parsed.uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = parsed.headers;
    // The head says neither the client's HTTP version nor its size: the host's own HTTP server
    // (IIS: HTTP.sys) has applied the rules that need them (docs/forwarding.md).
    req.extensions_mut()
        .insert(crate::forward::admission::HostParsed);
    Ok((req, parsed.client))
}

/// The engine's own duplicate of the host's token handle (the host keeps its handle).
#[cfg(windows)]
unsafe fn take_token(raw: usize) -> Result<crate::process::UserToken, ancm_result> {
    // SAFETY: the host lends an open handle for the duration of ancm_request_start.
    unsafe { crate::process::UserToken::duplicate_from_host(raw as *mut c_void) }.map_err(|e| {
        ::log::warn!("the request's Windows token cannot be duplicated: {e}");
        ancm_result::InvalidWindowsToken
    })
}

/// Unreachable: `parse_head` refuses a token outside Windows.
#[cfg(not(windows))]
unsafe fn take_token(_raw: usize) -> Result<crate::process::UserToken, ancm_result> {
    Err(ancm_result::Unsupported)
}

/// Starts forwarding a request to `app`.
///
/// `head` and `callbacks` are read during the call only. `userdata` is passed to every callback
/// and stays owned by the host; it must remain valid until the `complete` callback has returned.
/// On success writes a new request handle to `*request_out` before any callback can run (so a
/// callback may read it when `request_out` points into `userdata`); the host drops it with
/// `ancm_request_free`, at any time (before completion that also cancels). Callbacks may start
/// on core threads before this function returns; none runs inside it, and on failure none runs
/// at all. `complete` is delivered exactly once for every started request. Callable from any
/// thread, also from inside a callback.
///
/// The head is refused, with nothing started, when the target is not origin-form (`*` only with
/// OPTIONS): `ANCM_RESULT_INVALID_TARGET`; or when a `Content-Length` or `Transfer-Encoding`
/// entry in `headers` disagrees with `content_length`, which is the framing:
/// `ANCM_RESULT_FRAMING_HEADER` (docs/c-api.md, "What a host gets when it breaks a rule").
#[no_mangle]
pub unsafe extern "C" fn ancm_request_start(
    app: *const ancm_app,
    head: *const ancm_request_head,
    callbacks: *const ancm_callbacks,
    userdata: *mut c_void,
    request_out: *mut *mut ancm_request,
) -> ancm_result {
    guard(|| {
        check_null!(head, callbacks, request_out);
        let Some(app) = (unsafe { app_ref(app) }) else {
            return ancm_result::NullParameter;
        };
        let cbs = unsafe { *callbacks };
        let (Some(body_wanted), Some(response_head), Some(response_body), Some(complete)) = (
            cbs.body_wanted,
            cbs.response_head,
            cbs.response_body,
            cbs.complete,
        ) else {
            return ancm_result::MissingCallback;
        };
        let response_trailers = cbs.response_trailers;
        let head = unsafe { &*head };
        let shared = Arc::new(Shared {
            table: Table {
                body_wanted,
                response_head,
                response_body,
                complete,
                response_trailers,
            },
            userdata,
            serialize: head.serialize_io,
            state: Mutex::new(State {
                read: Read::Idle,
                supplied: None,
                received: 0,
                body_waker: None,
                write: None,
                acked: None,
                driver_waker: None,
                awaiting_ack: false,
                duplex: false,
                ws: websocket::HostMode::default(),
                trailers: None,
            }),
            cancelled: AtomicBool::new(false),
            refusal: AtomicU8::new(0),
            length: u64::try_from(head.content_length).ok().filter(|&n| n > 0),
            finished: AtomicBool::new(false),
            calling: Mutex::new(false),
            host_reset: AtomicU64::new(trailers::NO_RESET),
            backend_reset: AtomicU64::new(trailers::NO_RESET),
            driver_only: head.content_length == 0,
        });
        let work = match unsafe { plain::take(head, app) } {
            Some(p) => Work::Plain(p),
            None => {
                let (req, client) = try_ffi!(unsafe { build_request(head, &shared, app) });
                Work::General(Box::new((req, client)))
            }
        };
        let rt = try_ffi!(runtime());
        unsafe { write_out(request_out, to_arc::<ancm_request>(shared.clone())) };
        let job = Job {
            shared,
            app: app.clone(),
            work,
        };
        super::drivers::submit(rt, job);
        ancm_result::Ok
    })
}

/// Answers a `body_wanted` callback with `len` (> 0) bytes of the client's request body (or,
/// after an upgrade, of the client's stream), copied before the call returns. With a known
/// `content_length`, the body ends by itself once that many bytes were supplied (no further
/// `body_wanted`; `ancm_request_end_body` is then optional).
///
/// Returns `ANCM_RESULT_BODY_NOT_WANTED` when no `body_wanted` is outstanding (nothing changes).
/// A supply the engine refuses fails the request, whose `complete` then follows with
/// `ANCM_RESULT_BODY_REFUSED`: `ANCM_RESULT_INVALID_ARGUMENT` for `len` 0,
/// `ANCM_RESULT_BODY_LENGTH_MISMATCH` for more bytes in all than `content_length`. After the
/// request was cancelled or has completed the bytes are ignored and the result is OK. Callable
/// from any thread, also from inside a callback; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_request_supply_body(
    request: *const ancm_request,
    data: *const u8,
    len: usize,
) -> ancm_result {
    guard(|| {
        let Some(shared) = (unsafe { arc_ref(request) }) else {
            return ancm_result::NullParameter;
        };
        let data = try_ffi!(unsafe { bytes(data, len) });
        let (wakers, result) = {
            let mut st = shared.state();
            if data.is_empty() {
                // Refused in any state; when it answers an outstanding `body_wanted` the request
                // fails too, rather than wait for an answer the host believes it gave.
                if st.read != Read::Asked || shared.is_over() {
                    return ancm_result::InvalidArgument;
                }
                let wakers = shared.stop(&mut st, Some(Refusal::Empty));
                drop(st);
                wake_all(wakers);
                return ancm_result::InvalidArgument;
            }
            if shared.is_over() {
                return ancm_result::Ok;
            }
            if st.read != Read::Asked {
                return ancm_result::BodyNotWanted;
            }
            let received = st.received.saturating_add(data.len() as u64);
            if !st.duplex && shared.length.is_some_and(|n| received > n) {
                (
                    shared.stop(&mut st, Some(Refusal::TooLong)),
                    ancm_result::BodyLengthMismatch,
                )
            } else {
                st.received = received;
                st.supplied = Some(Bytes::copy_from_slice(data));
                st.read = Read::Idle;
                (
                    [st.body_waker.take(), st.driver_waker.clone()],
                    ancm_result::Ok,
                )
            }
        };
        wake_all(wakers);
        result
    })
}

/// Ends the request body (or, after an upgrade, the client's side of the stream): the client
/// sent all of it. Usually the answer to a `body_wanted` callback, but allowed at any time;
/// ending twice is harmless. Before all of a known `content_length` was supplied it returns
/// `ANCM_RESULT_BODY_LENGTH_MISMATCH` and fails the request (`complete` follows with
/// `ANCM_RESULT_BODY_REFUSED`). Callable from any thread, also from inside a callback; no callback
/// runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_request_end_body(request: *const ancm_request) -> ancm_result {
    guard(|| {
        let Some(shared) = (unsafe { arc_ref(request) }) else {
            return ancm_result::NullParameter;
        };
        let (wakers, result) = {
            let mut st = shared.state();
            // Before an upgrade, a known length must have been supplied in full (after one, the
            // stream has no length).
            let short = !st.duplex && shared.length.is_some_and(|n| st.received < n);
            if short && !shared.is_over() {
                (
                    shared.stop(&mut st, Some(Refusal::TooShort)),
                    ancm_result::BodyLengthMismatch,
                )
            } else {
                st.read = Read::Ended;
                (
                    [st.body_waker.take(), st.driver_waker.clone()],
                    ancm_result::Ok,
                )
            }
        };
        wake_all(wakers);
        result
    })
}

/// Acknowledges the chunk of the last `response_body` callback: the host has written it and is
/// ready for the next (its bytes stay valid until that next chunk or `ancm_request_free`). Returns `ANCM_RESULT_NO_WRITE_PENDING`
/// when no chunk is outstanding (OK once the request was cancelled or completed). Callable from
/// any thread, also from inside a callback; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_request_ack_write(request: *const ancm_request) -> ancm_result {
    guard(|| {
        let Some(shared) = (unsafe { arc_ref(request) }) else {
            return ancm_result::NullParameter;
        };
        let (chunk, wakers) = {
            let mut st = shared.state();
            let chunk = st.write.take();
            if chunk.is_none() && !shared.is_over() {
                return ancm_result::NoWritePending;
            }
            // The previous chunk goes (outside the lock); this one stays until the next.
            let chunk = match chunk {
                Some(c) => st.acked.replace(c),
                None => None,
            };
            let driver = if std::mem::take(&mut st.awaiting_ack) {
                st.driver_waker.clone()
            } else {
                None
            };
            (chunk, [st.body_waker.take(), driver])
        };
        drop(chunk);
        wake_all(wakers);
        ancm_result::Ok
    })
}

/// Cancels the request (the client disconnected): the backend request is abandoned and
/// `complete` follows with `ANCM_RESULT_CANCELLED` (unless the request was already completing).
/// Outstanding `body_wanted` / write acknowledgements are no longer expected; a chunk not yet
/// acknowledged stays valid until `ancm_request_free`. Idempotent. Callable from any thread,
/// also from inside a callback; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_request_cancel(request: *const ancm_request) -> ancm_result {
    guard(|| {
        let Some(shared) = (unsafe { arc_ref(request) }) else {
            return ancm_result::NullParameter;
        };
        shared.cancel();
        ancm_result::Ok
    })
}

/// Drops the host's reference to the request. NULL is allowed. Before `complete` this also
/// cancels the request, and `complete` still follows (so `userdata` must stay valid until it
/// has). The handle must not be used afterwards; the chunk bytes it still kept are released.
/// Callable from any thread, also from inside a callback (including `complete`); no callback
/// runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_request_free(request: *mut ancm_request) {
    guard_void(|| {
        if let Some(shared) = unsafe { free_arc(request) } {
            if !shared.finished.load(Ordering::Acquire) {
                shared.cancel();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8]) -> ancm_slice {
        ancm_slice::of(b)
    }

    fn head(headers: &[ancm_header]) -> ancm_request_head {
        ancm_request_head {
            method: s(b"GET"),
            target: s(b"/a?b=1"),
            headers: if headers.is_empty() {
                std::ptr::null()
            } else {
                headers.as_ptr()
            },
            header_count: headers.len(),
            content_length: 0,
            client_address: s(b"203.0.113.7"),
            client_port: 5000,
            https: true,
            client_cert_der: s(b""),
            auth_type: s(b""),
            windows_token: std::ptr::null_mut(),
            serialize_io: false,
        }
    }

    #[test]
    fn parse_head_copies_what_it_was_given() {
        let hs = [
            ancm_header {
                name: s(b"X-A"),
                value: s(b"1"),
            },
            ancm_header {
                name: s(b"x-b"),
                value: s(b"caf\xe9"),
            },
            ancm_header {
                name: s(b"x-a"),
                value: s(b""),
            },
        ];
        let mut h = head(&hs);
        h.content_length = -1;
        h.client_cert_der = s(b"\x30\x00");
        h.auth_type = s(b"Negotiate");
        let p = unsafe { parse_head(&h) }.unwrap();
        assert_eq!(p.method, Method::GET);
        assert_eq!(p.uri, "/a?b=1");
        let xa: Vec<_> = p.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", ""]);
        assert_eq!(p.headers["x-b"].as_bytes(), b"caf\xe9");
        assert_eq!(p.client.addr, "203.0.113.7:5000".parse().unwrap());
        assert!(p.client.https);
        assert_eq!(p.client.client_cert_der.as_deref(), Some(&b"\x30\x00"[..]));
        assert!(p.client.windows_token.is_none() && p.windows_token.is_none());
        assert_eq!(p.body, BodyKind::Unknown);
        h.content_length = 7;
        assert_eq!(unsafe { parse_head(&h) }.unwrap().body, BodyKind::Length(7));
        h.content_length = 0;
        assert_eq!(unsafe { parse_head(&h) }.unwrap().body, BodyKind::Empty);
    }

    /// The head's `content_length` is the framing: a framing header in the list may only
    /// repeat it, every other combination is refused.
    #[test]
    fn framing_headers_must_agree_with_content_length() {
        let check = |pairs: &[(&[u8], &[u8])], content_length: i64| {
            let hs: Vec<ancm_header> = pairs
                .iter()
                .map(|(n, v)| ancm_header {
                    name: s(n),
                    value: s(v),
                })
                .collect();
            let mut h = head(&hs);
            h.content_length = content_length;
            unsafe { parse_head(&h) }.map(|p| p.body)
        };
        let cl: &[u8] = b"Content-Length";
        let te: &[u8] = b"transfer-encoding";
        let bad = Err(ancm_result::FramingHeader);
        for n in [0, 10, -1] {
            assert!(check(&[], n).is_ok(), "{n}");
        }
        assert_eq!(check(&[(cl, b"10")], 10), Ok(BodyKind::Length(10)));
        assert_eq!(
            check(&[(cl, b"10"), (cl, b"10")], 10),
            Ok(BodyKind::Length(10))
        );
        assert_eq!(check(&[(cl, b"0")], 0), Ok(BodyKind::Empty));
        assert_eq!(check(&[(te, b"chunked")], -1), Ok(BodyKind::Unknown));
        assert_eq!(check(&[(cl, b"10")], 5), bad);
        assert_eq!(check(&[(cl, b"10")], 0), bad);
        assert_eq!(check(&[(cl, b"0")], 10), bad);
        assert_eq!(check(&[(cl, b"10")], -1), bad);
        assert_eq!(check(&[(cl, b"10"), (cl, b"11")], 10), bad);
        assert_eq!(check(&[(cl, b"x")], 10), bad);
        assert_eq!(check(&[(te, b"chunked")], 0), bad);
        assert_eq!(check(&[(te, b"chunked")], 10), bad);
        assert_eq!(check(&[(te, b"gzip")], -1), bad);
        assert_eq!(check(&[(te, b"chunked"), (cl, b"10")], -1), bad);
        assert_eq!(check(&[(te, b"chunked"), (cl, b"10")], 10), bad);
    }

    #[test]
    fn targets_must_be_origin_form() {
        let check = |method: &[u8], target: &[u8]| {
            let mut h = head(&[]);
            h.method = s(method);
            h.target = s(target);
            unsafe { parse_head(&h) }.map(|p| p.uri.to_string())
        };
        let bad = Err(ancm_result::InvalidTarget);
        assert_eq!(check(b"OPTIONS", b"*"), Ok("*".to_owned()));
        assert_eq!(check(b"GET", b"/a?b"), Ok("/a?b".to_owned()));
        assert_eq!(check(b"GET", b"*"), bad);
        assert_eq!(check(b"GET", b"foo"), bad);
        assert_eq!(check(b"GET", b"http://example.test/a"), bad);
        assert_eq!(check(b"GET", b""), bad);
    }

    #[test]
    fn plain_ipv4_agrees_with_the_standard_parser() {
        let mut cases: Vec<String> = [
            "203.0.113.7",
            "0.0.0.0",
            "255.255.255.255",
            "127.0.0.1",
            "10.0.0.01",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "1.2.3.0004",
            "00.1.2.3",
            "1.2.3.-4",
            "1.2.3.+4",
            " 1.2.3.4",
            "1.2.3.4 ",
            "1.2.3.a",
            "::1",
            "::ffff:1.2.3.4",
            "",
            "999.1.1.1",
            "1.2.3.1000",
            "01.2.3.4",
            "0.0.0.00",
            "1.2.3.04",
            "1.2.3.2555",
            "1.2.3.4\0",
            "1.2.3..",
            "....",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for a in [
            0u16, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255, 256, 300, 999,
        ] {
            cases.push(format!("{a}.{a}.1.{a}"));
            cases.push(format!("1.0{a}.1.1"));
        }
        for text in &cases {
            let std: Option<IpAddr> = text.parse().ok();
            let fast = plain_ipv4(text.as_bytes());
            if let Some(v4) = fast {
                assert_eq!(std, Some(IpAddr::V4(v4)), "{text:?}");
            } else if let Some(IpAddr::V4(_)) = std {
                panic!("{text:?}: valid dotted-quad IPv4 missed by the direct path");
            }
            assert_eq!(
                client_ip(text.as_bytes()).ok(),
                std,
                "{text:?}: client_ip differs from the standard parser"
            );
        }
        assert_eq!(client_ip(b"\xff"), Err(ancm_result::InvalidClientAddress));
    }

    /// Every text of up to 8 bytes over digits that reach each octet boundary (0, 1, 2, 5, 6, 9)
    /// and dots: the direct path never disagrees with the standard parser and never leaves a
    /// valid dotted quad to it (the hand-picked list above cannot reach every state of the
    /// one-pass scanner).
    #[test]
    fn plain_ipv4_agrees_with_the_standard_parser_on_every_short_text() {
        const ALPHABET: &[u8] = b"012569.";
        let mut text = Vec::with_capacity(8);
        for len in 0..=8u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                let std: Option<Ipv4Addr> = std::str::from_utf8(&text).unwrap().parse().ok();
                assert_eq!(
                    plain_ipv4(&text),
                    std,
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    #[test]
    fn parse_head_errors_in_order() {
        let bad = [ancm_header {
            name: s(b"Bad Name"),
            value: s(b"v"),
        }];
        let broken = ancm_header {
            name: s(b"x"),
            value: s(b"a\r\nb"),
        };
        let check = |h: &ancm_request_head, want: ancm_result| {
            assert_eq!(unsafe { parse_head(h) }.err(), Some(want));
        };
        let mut h = head(&bad);
        h.method = s(b"G T");
        h.content_length = -2;
        check(&h, ancm_result::InvalidMethod);
        h.method = s(b"GET");
        h.target = s(b"/a b");
        check(&h, ancm_result::InvalidTarget);
        h.target = s(b"/");
        check(&h, ancm_result::InvalidHeader);
        let one = [broken];
        h.headers = one.as_ptr();
        check(&h, ancm_result::InvalidHeader);
        h.headers = std::ptr::null();
        check(&h, ancm_result::NullParameter);
        h.header_count = 0;
        h.client_address = s(b"localhost");
        check(&h, ancm_result::InvalidClientAddress);
        h.client_address = s(b"\xff");
        check(&h, ancm_result::InvalidClientAddress);
        h.client_address = s(b"::1");
        h.auth_type = s(b"\xff");
        check(&h, ancm_result::InvalidUtf8);
        h.auth_type = s(b"NTLM");
        #[cfg(not(windows))]
        {
            // No Windows tokens elsewhere: refused, never silently dropped.
            let mut handle = 0u8;
            h.windows_token = (&mut handle as *mut u8).cast();
            check(&h, ancm_result::Unsupported);
            h.windows_token = std::ptr::null_mut();
        }
        check(&h, ancm_result::InvalidArgument);
        h.content_length = i64::MIN;
        check(&h, ancm_result::InvalidArgument);
        h.content_length = i64::MAX;
        assert_eq!(
            unsafe { parse_head(&h) }.unwrap().body,
            BodyKind::Length(i64::MAX as u64)
        );
    }

    /// Chunk bytes whose release is observable.
    struct Tracked(&'static AtomicBool);
    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            b"the last chunk"
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    unsafe extern "C" fn no_body(_: *mut c_void) {}
    unsafe extern "C" fn no_head(_: *mut c_void, _: *const ancm_response_head) {}
    unsafe extern "C" fn no_chunk(_: *mut c_void, _: *const u8, _: usize, _: bool) {}
    unsafe extern "C" fn no_complete(_: *mut c_void, _: ancm_result, _: *const u8, _: usize) {}

    /// IIS may still use the memory of a request's last asynchronous write after its
    /// completion: the acknowledged chunk stays alive until the host frees the handle.
    #[test]
    fn an_acknowledged_chunk_lives_until_the_handle_is_freed() {
        static RELEASED: AtomicBool = AtomicBool::new(false);
        let shared = Arc::new(Shared {
            table: Table {
                body_wanted: no_body,
                response_head: no_head,
                response_body: no_chunk,
                complete: no_complete,
                response_trailers: None,
            },
            userdata: std::ptr::null_mut(),
            serialize: true,
            state: Mutex::new(State {
                read: Read::Idle,
                supplied: None,
                received: 0,
                body_waker: None,
                write: Some(Bytes::from_owner(Tracked(&RELEASED))),
                acked: None,
                driver_waker: None,
                awaiting_ack: true,
                duplex: false,
                ws: websocket::HostMode::default(),
                trailers: None,
            }),
            cancelled: AtomicBool::new(false),
            refusal: AtomicU8::new(0),
            length: None,
            finished: AtomicBool::new(false),
            calling: Mutex::new(false),
            host_reset: AtomicU64::new(trailers::NO_RESET),
            backend_reset: AtomicU64::new(trailers::NO_RESET),
            driver_only: false,
        });
        let handle = to_arc::<ancm_request>(shared.clone());
        assert_eq!(unsafe { ancm_request_ack_write(handle) }, ancm_result::Ok);
        assert!(
            !RELEASED.load(Ordering::SeqCst),
            "released at the acknowledgement"
        );
        assert_eq!(
            unsafe { ancm_request_ack_write(handle) },
            ancm_result::NoWritePending
        );
        shared.finished.store(true, Ordering::Release);
        unsafe { ancm_request_free(handle) };
        drop(shared); // the core's reference
        assert!(RELEASED.load(Ordering::SeqCst), "never released");
    }
}
