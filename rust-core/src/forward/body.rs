//! The body types that cross the engine: what a host hands in (the client's request body) and
//! what it gets back (the backend's response body, or a page the engine made).
//!
//! Enums rather than boxed trait objects, so the common cases (a hyper body in, a hyper body
//! out) cost no allocation and no dynamic dispatch per request.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::process::InFlight;

/// A boxed error, the error type of bodies that come from elsewhere.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body handed to the engine by a host.
pub enum RequestBody {
    /// No body.
    Empty,
    /// A body received by a hyper server (the standalone host).
    Incoming(Incoming),
    /// A complete body in memory.
    Full(Option<Bytes>),
    /// Any other streaming body (the C ABI's host-fed body).
    Stream(Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>),
}

impl From<Incoming> for RequestBody {
    fn from(b: Incoming) -> Self {
        RequestBody::Incoming(b)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            RequestBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            RequestBody::Stream(b) => b.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Incoming(b) => b.is_end_stream(),
            RequestBody::Full(b) => b.is_none(),
            RequestBody::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Incoming(b) => b.size_hint(),
            RequestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |d| d.len() as u64)),
            RequestBody::Stream(b) => b.size_hint(),
        }
    }
}

/// Why a response body stopped early. The host must then abort the client connection, since
/// the status line has already gone out.
#[derive(Debug)]
pub enum BodyError {
    /// The backend connection failed or the backend sent a malformed body.
    Backend(hyper::Error),
    /// The backend sent bytes after the end of its response (e.g. a body longer than its
    /// Content-Length), so what the client got may not be what the app meant.
    ExtraBytes,
    /// No data arrived within requestTimeout.
    Timeout(Duration),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Backend(e) => write!(f, "the backend response body failed: {e}"),
            BodyError::ExtraBytes => f.write_str(
                "the backend sent bytes after the end of its response (a body longer than its Content-Length?)",
            ),
            BodyError::Timeout(d) => write!(
                f,
                "the backend sent no data for {} s (requestTimeout)",
                d.as_secs()
            ),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Backend(e) => Some(e),
            BodyError::Timeout(_) | BodyError::ExtraBytes => None,
        }
    }
}

/// A response body as the engine returns it.
pub enum ResponseBody {
    /// Streamed from the backend, each chunk as it arrives.
    Backend(BackendBody),
    /// A page made by the engine.
    Full(Option<Bytes>),
}

impl ResponseBody {
    /// A body with these bytes.
    pub fn full(b: impl Into<Bytes>) -> Self {
        ResponseBody::Full(Some(b.into()))
    }

    /// An empty body.
    pub fn empty() -> Self {
        ResponseBody::Full(None)
    }
}

/// The backend connection a response came on, kept with its body.
#[derive(Debug)]
pub enum Hop {
    /// An HTTP/1.1 connection, returned to the pool when the body was read to its end.
    H1(super::pool::Sender),
    /// A stream of a shared HTTP/2 connection, counted until the body is done with.
    H2(super::h2::StreamSlot),
}

/// The backend's body, with requestTimeout applied to each wait for the next chunk, and the
/// request counted against its backend until the body ends.
pub struct BackendBody {
    inner: Incoming,
    timeout: Duration,
    /// Created at the first wait: a body that arrives with its head never needs a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    in_flight: InFlight,
    /// The connection, returned to the backend's pool when the body was read to its end (a
    /// body dropped early closes its connection, which the backend sees as a cancel).
    sender: Option<super::pool::Sender>,
    /// The HTTP/2 stream it came on, counted against its connection until the body ends
    /// (dropping the body before its end resets the stream: CANCEL).
    stream: Option<super::h2::StreamSlot>,
    /// The body has been read to its end and is held back (its last data frame, if any) until
    /// the connection shows nothing followed it.
    ending: Option<Option<Frame<Bytes>>>,
    /// The end has been handed on.
    done: bool,
}

impl BackendBody {
    /// Wraps `inner`; `timeout` of zero means no timeout.
    pub fn new(inner: Incoming, timeout: Duration, in_flight: InFlight, hop: Hop) -> Self {
        let (sender, stream) = match hop {
            Hop::H1(s) => (Some(s), None),
            Hop::H2(s) => (None, Some(s)),
        };
        BackendBody {
            inner,
            timeout,
            sleep: None,
            armed: false,
            in_flight,
            sender,
            stream,
            ending: None,
            done: false,
        }
    }

    /// Holds back the end of the body (its last frame, or the end itself) until the backend
    /// connection is seen ready for another request or closed; bytes after the response fail
    /// the body instead, so the host aborts the client connection rather than complete a
    /// response the backend framed wrongly.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(s) = self.sender.as_mut() {
            if ready!(s.after_response(cx)).is_err() {
                self.ending = None;
                self.sender = None;
                return Poll::Ready(Some(Err(BodyError::ExtraBytes)));
            }
        }
        self.done = true;
        // The backend ended the stream: its slot is free now, before the host has even written
        // the end to the client (who may send the next request as soon as it sees it).
        self.stream = None;
        Poll::Ready(self.ending.take().flatten().map(Ok))
    }
}

impl Drop for BackendBody {
    fn drop(&mut self) {
        if let Some(s) = self.sender.take() {
            // `done` covers chunked bodies, whose `Incoming` never reports its end itself.
            if self.done || self.inner.is_end_stream() {
                self.in_flight.backend().pool.put(s);
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            ResponseBody::Backend(b) => loop {
                if b.ending.is_some() {
                    return b.poll_end(cx);
                }
                if b.done {
                    return Poll::Ready(None);
                }
                match Pin::new(&mut b.inner).poll_frame(cx) {
                    // Trailers are handed on like data (the last frame): the host sends them
                    // where its client side can carry them (HTTP/2) and drops them where it
                    // cannot (HTTP/1.1 without a `Trailer` field, the C ABI).
                    Poll::Ready(Some(Ok(frame))) => {
                        b.armed = false;
                        if !b.inner.is_end_stream() {
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        b.ending = Some(Some(frame));
                    }
                    Poll::Ready(None) => {
                        b.armed = false;
                        b.ending = Some(None);
                    }
                    Poll::Ready(Some(Err(e))) => {
                        b.armed = false;
                        return Poll::Ready(Some(Err(BodyError::Backend(e))));
                    }
                    Poll::Pending => {
                        if b.timeout.is_zero() {
                            return Poll::Pending;
                        }
                        let dur = b.timeout;
                        // The timer is armed when a wait begins, so a steady stream of chunks
                        // costs no timer work at all.
                        let sleep = b
                            .sleep
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(dur)));
                        if !b.armed {
                            sleep.as_mut().reset(Instant::now() + dur);
                            b.armed = true;
                        }
                        ready!(sleep.as_mut().poll(cx));
                        return Poll::Ready(Some(Err(BodyError::Timeout(dur))));
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Backend(b) => b.done || (b.ending.is_none() && b.inner.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |d| d.len() as u64)),
            ResponseBody::Backend(b) => {
                let held = match &b.ending {
                    Some(Some(f)) => f.data_ref().map_or(0, |d| d.len() as u64),
                    _ => 0,
                };
                let inner = b.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + held);
                if let Some(u) = inner.upper() {
                    hint.set_upper(u + held);
                }
                hint
            }
        }
    }
}

use std::future::Future;
