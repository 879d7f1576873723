//! Upgraded WebSockets as message fragments, for hosts whose client side is message-level.
//!
//! IIS's WebSocket module owns the client's framing: a module reads and writes fragments
//! (`IWebSocketContext::ReadFragment` / `WriteFragment`: payload bytes flagged UTF-8, final,
//! close). A host like that calls [`ancm_request_websocket_fragments`] from the `response_head`
//! callback of a 101; the engine then frames the host's fragments for the backend and unframes
//! the backend's ([`crate::forward::websocket`]), answers the backend's pings itself, and hands
//! the host one fragment at a time. Without the call the upgraded request stays a byte stream.

use std::ffi::c_void;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{both_ways, lock, store_waker, wake_all, write_with, Outcome, Read, Shared};
use crate::ffi::handle::{ancm_slice, arc_ref};
use crate::ffi::panic::guard;
use crate::ffi::result::ancm_result;
use crate::forward::going_away;
use crate::forward::websocket::{self as ws, Decoder, Encoder, Event};
use crate::process::Session;

/// One WebSocket message fragment crossing the C ABI, in either direction. Everything it
/// points at is borrowed: from the engine until `ancm_request_ack_write`, from the host for the
/// duration of `ancm_request_supply_ws_fragment`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ancm_ws_fragment {
    /// The payload bytes; for a close, the reason (UTF-8, may be empty).
    pub data: ancm_slice,
    /// The message is text (UTF-8) rather than binary; the same on every fragment of it.
    pub utf8: bool,
    /// This fragment ends its message.
    pub final_fragment: bool,
    /// This is a close (not data): `close_status` and the reason in `data`.
    pub close: bool,
    /// The close status (e.g. 1000); 1005 or 0 when the close carried none. Only for a close.
    pub close_status: u16,
}

/// A WebSocket fragment from the backend for the client: write it (`WriteFragment`, or for a
/// close `SendConnectionClose`), then call `ancm_request_ack_write`; the next fragment comes
/// only after that. `fragment` is valid during the call, the bytes it points at until the
/// acknowledgement (or `ancm_request_free`). Runs on a core thread; must not block.
pub type ancm_ws_fragment_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, fragment: *const ancm_ws_fragment)>;

type Callback = unsafe extern "C" fn(*mut c_void, *const ancm_ws_fragment);

/// A fragment the host supplied, copied.
#[derive(Debug)]
pub(super) struct Supplied {
    data: Bytes,
    utf8: bool,
    fin: bool,
    close: Option<u16>,
}

/// What the host chose for an upgraded request, and what it may still change.
#[derive(Debug, Default)]
pub(super) struct HostMode {
    /// The 101's `response_head` callback is running: the choice can be made now.
    pub(super) in_head: bool,
    /// The tunnel has started: the choice is final.
    fixed: bool,
    callback: Option<Callback>,
    /// A client fragment supplied and not yet sent on.
    supplied: Option<Supplied>,
}

impl HostMode {
    /// Makes the choice final; returns the fragment callback when the host chose fragments.
    pub(super) fn fix(&mut self) -> Option<Callback> {
        self.fixed = true;
        self.in_head = false;
        self.callback
    }
}

fn failed(e: impl std::fmt::Display) -> Outcome {
    Outcome(ancm_result::UpgradeFailed, e.to_string())
}

fn mask_key() -> Result<[u8; 4], Outcome> {
    let mut k = [0u8; 4];
    getrandom::fill(&mut k).map_err(failed)?;
    Ok(k)
}

/// Hands one fragment to the host and waits for its acknowledgement.
async fn deliver(
    shared: &Arc<Shared>,
    callback: Callback,
    data: Bytes,
    utf8: bool,
    fin: bool,
    close: Option<u16>,
) -> Result<(), Outcome> {
    write_with(shared, data, |_, ud, ptr, len| {
        let f = ancm_ws_fragment {
            data: ancm_slice { ptr, len },
            utf8,
            final_fragment: fin || close.is_some(),
            close: close.is_some(),
            close_status: close.unwrap_or(0),
        };
        // SAFETY: the host's callback; `f` outlives the call, its bytes live in `state.write`.
        unsafe { callback(ud, &f) }
    })
    .await
}

/// The next fragment of the client: `None` when the host ended the stream (the client's
/// connection went away without a close).
async fn next_fragment(shared: &Arc<Shared>) -> Result<Option<Supplied>, Outcome> {
    poll_fn(|cx| {
        let mut st = shared.state();
        if shared.is_over() {
            return Poll::Ready(Err(shared.stopped()));
        }
        if let Some(f) = st.ws.supplied.take() {
            return Poll::Ready(Ok(Some(f)));
        }
        store_waker(&mut st.body_waker, cx.waker());
        match st.read {
            Read::Ended => Poll::Ready(Ok(None)),
            Read::Asked => Poll::Pending,
            Read::Idle => {
                st.read = Read::Asked;
                drop(st);
                // SAFETY: the host's callback.
                shared.call(|t, ud| unsafe { (t.body_wanted)(ud) });
                Poll::Pending
            }
        }
    })
    .await
}

/// Pumps fragments between the host and the backend's upgraded connection until the backend
/// closes it. The backend's close frame reaches the host as a close fragment; the host's close
/// goes to the backend as a close frame; a client gone without a close half-closes the backend
/// connection. When the backend drains (`session`'s signal, [`going_away::due`]), both sides
/// get a close with [`going_away::GOING_AWAY`] at a frame boundary, what else comes is dropped
/// for [`going_away::CLOSE_WAIT`], and the session ends. Ends with `Ok` when the backend closed
/// after a close frame (or the drain closed it), with `UpgradeFailed` when its connection ended
/// or failed without one.
pub(super) async fn tunnel(
    shared: &Arc<Shared>,
    upgraded: hyper::upgrade::Upgraded,
    callback: Callback,
    session: Option<Session>,
) -> Result<(), Outcome> {
    let (mut from_backend, to_backend) = tokio::io::split(TokioIo::new(upgraded));
    // Both directions write to the backend (the client's frames, and pongs for the backend's
    // pings), each a whole frame at a time.
    let to_backend = tokio::sync::Mutex::new(to_backend);
    let send = |frame: BytesMut| {
        let to_backend = &to_backend;
        async move {
            let mut w = to_backend.lock().await;
            w.write_all(&frame).await.map_err(failed)?;
            w.flush().await.map_err(failed)
        }
    };
    // Set once a close went to the backend (the host's, or the drain's): nothing follows it.
    let closed_up = AtomicBool::new(false);
    let down = async {
        let mut signal = pin!(async {
            match &session {
                Some(s) => going_away::due(s.closing.clone()).await,
                None => std::future::pending().await,
            }
        });
        let mut decoder = Decoder::new();
        let mut saw_close = false;
        let mut draining = false;
        loop {
            while let Some(event) = decoder.next_event().map_err(failed)? {
                match event {
                    Event::Data { payload, text, fin } => {
                        deliver(shared, callback, payload, text, fin, None).await?
                    }
                    Event::Ping(p) => {
                        let mut f = BytesMut::new();
                        ws::encode(&mut f, ws::OP_PONG, true, &p, mask_key()?);
                        send(f).await?;
                    }
                    Event::Pong => {}
                    Event::Close { status, reason } => {
                        saw_close = true;
                        deliver(shared, callback, reason, false, true, Some(status)).await?
                    }
                }
            }
            // A close under way (either side's) ends the session by itself.
            if draining && !saw_close && decoder.buffer_mut().is_empty() {
                return going_away_now(shared, callback, &send, &closed_up, &mut from_backend)
                    .await;
            }
            // Room for a real read: an empty BytesMut would take the bytes 64 at a time.
            decoder.buffer_mut().reserve(16 * 1024);
            let mut read = pin!(from_backend.read_buf(decoder.buffer_mut()));
            let n = shared
                .unless_cancelled(|cx| {
                    if !draining && !saw_close && signal.as_mut().poll(cx).is_ready() {
                        draining = true;
                        // Not at a frame's end yet: the read goes on until it is.
                        return Poll::Ready(Ok(None));
                    }
                    read.as_mut().poll(cx).map(|r| r.map(Some).map_err(failed))
                })
                .await?;
            match n {
                None => continue,
                Some(0) => {
                    // Without a close frame the session broke (the backend died): the host must
                    // abort the client's connection rather than end it as if closed cleanly.
                    return if saw_close {
                        Ok(())
                    } else {
                        Err(failed(
                            "the backend ended the WebSocket connection without a close frame",
                        ))
                    };
                }
                Some(_) => {}
            }
        }
    };
    let up = async {
        let mut encoder = Encoder::new();
        loop {
            let Some(f) = next_fragment(shared).await? else {
                let mut w = to_backend.lock().await;
                return w.shutdown().await.map_err(failed);
            };
            if closed_up.load(Ordering::Acquire) {
                // The drain's close went to the backend: the client's answer ends this side.
                if f.close.is_some() {
                    return Ok(());
                }
                continue;
            }
            let mut frame = BytesMut::new();
            match f.close {
                Some(status) => {
                    let reason = String::from_utf8_lossy(&f.data);
                    let payload = ws::close_payload(status, &reason);
                    ws::encode(&mut frame, ws::OP_CLOSE, true, &payload, mask_key()?);
                    closed_up.store(true, Ordering::Release);
                    send(frame).await?;
                    // Nothing follows a close; the backend ends the connection.
                    return Ok(());
                }
                None => {
                    encoder.data(&mut frame, &f.data, f.utf8, f.fin, mask_key()?);
                    send(frame).await?;
                }
            }
        }
    };
    let r = both_ways(up, down).await;
    drop(session);
    r
}

/// The drain's end of a session, at a frame boundary both ways: a close with 1001 to the
/// backend (unless the host's close went first) and to the host, then the backend's answer
/// and whatever else it sends dropped for [`going_away::CLOSE_WAIT`].
async fn going_away_now<R, S, F>(
    shared: &Arc<Shared>,
    callback: Callback,
    send: &S,
    closed_up: &AtomicBool,
    from_backend: &mut R,
) -> Result<(), Outcome>
where
    R: tokio::io::AsyncRead + Unpin,
    S: Fn(BytesMut) -> F,
    F: Future<Output = Result<(), Outcome>>,
{
    log::info!("the backend drains: closing its WebSocket session with 1001 (going away)");
    if !closed_up.swap(true, Ordering::AcqRel) {
        let mut frame = BytesMut::new();
        let payload = ws::close_payload(going_away::GOING_AWAY, "");
        ws::encode(&mut frame, ws::OP_CLOSE, true, &payload, mask_key()?);
        send(frame).await?;
    }
    deliver(
        shared,
        callback,
        Bytes::new(),
        false,
        true,
        Some(going_away::GOING_AWAY),
    )
    .await?;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(going_away::CLOSE_WAIT, async {
        while let Ok(n) = from_backend.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// Asks for an upgraded WebSocket as message fragments instead of a byte stream. Call it from
/// inside the `response_head` callback of a 101 (`head->upgraded`); from then on
/// `body_wanted` asks for the client's next fragment (answer with
/// `ancm_request_supply_ws_fragment`, or `ancm_request_end_body` when the client's connection
/// ended without a close), and `callback` (instead of `response_body`) carries the backend's
/// fragments, each acknowledged with `ancm_request_ack_write`. Reads and writes are independent
/// after an upgrade (one of each may be outstanding), whatever `serialize_io` said.
///
/// Returns `ANCM_RESULT_INVALID_ARGUMENT` outside that callback, `ANCM_RESULT_MISSING_CALLBACK`
/// for a NULL `callback`. Callable from the `response_head` callback's thread; no callback runs
/// during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_request_websocket_fragments(
    request: *const super::ancm_request,
    callback: ancm_ws_fragment_callback,
) -> ancm_result {
    guard(|| {
        let Some(shared) = (unsafe { arc_ref(request) }) else {
            return ancm_result::NullParameter;
        };
        let Some(callback) = callback else {
            return ancm_result::MissingCallback;
        };
        let mut st = shared.state();
        if !st.ws.in_head || st.ws.fixed {
            return ancm_result::InvalidArgument;
        }
        st.ws.callback = Some(callback);
        ancm_result::Ok
    })
}

/// Answers a `body_wanted` callback of an upgraded WebSocket in fragment mode with the client's
/// next fragment (data, or a close with its status and reason), copied before the call
/// returns. Nothing is read after a close.
///
/// Returns `ANCM_RESULT_BODY_NOT_WANTED` when no `body_wanted` is outstanding. After the
/// request was cancelled or has completed the fragment is ignored and the result is OK.
/// Callable from any thread, also from inside a callback; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_request_supply_ws_fragment(
    request: *const super::ancm_request,
    fragment: *const ancm_ws_fragment,
) -> ancm_result {
    guard(|| {
        let Some(shared) = (unsafe { arc_ref(request) }) else {
            return ancm_result::NullParameter;
        };
        if fragment.is_null() {
            return ancm_result::NullParameter;
        }
        let f = unsafe { *fragment };
        let data = match unsafe { f.data.bytes() } {
            Ok(d) => d,
            Err(e) => return e,
        };
        let wakers = {
            let mut st = lock(&shared.state);
            if shared.is_over() {
                return ancm_result::Ok;
            }
            if st.read != Read::Asked {
                return ancm_result::BodyNotWanted;
            }
            st.ws.supplied = Some(Supplied {
                data: Bytes::copy_from_slice(data),
                utf8: f.utf8,
                fin: f.final_fragment,
                close: f.close.then_some(f.close_status),
            });
            st.read = Read::Idle;
            [st.body_waker.take(), st.driver_waker.clone()]
        };
        wake_all(wakers);
        ancm_result::Ok
    })
}
