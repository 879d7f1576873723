//! Connections to one backend process: a small stack of idle keep-alive connections kept by
//! the backend itself, and hyper's connection-level client on each.
//!
//! Chosen over hyper-util's pooled `Client` after measuring (docs/benchmarks.md, Profile): that
//! client keys one global pool by (scheme, authority) with SipHash and rebuilds absolute URIs,
//! which cost about a fifth of ancm-serve's instructions per request. A backend's own stack is
//! one short mutex hold per checkout and return, and requests go out in origin form as
//! received.
//!
//! When the host runs one runtime per worker thread ([`crate::worker`]), each worker has its own
//! stack: a connection's I/O is driven by the runtime that opened it, so it is only ever reused
//! from that worker (a request never waits on another thread), and workers never touch each
//! other's lock. Other threads share one more stack.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;

use super::progress::OutgoingBody;
use super::ForwardError;

/// A connection's sending half, and how the connection ended once it has.
#[derive(Debug)]
pub struct Sender {
    send: SendRequest<OutgoingBody>,
    ended: Arc<AtomicU8>,
}

/// What a connection's task saw when the connection ended ([`Sender::after_response`]).
const RUNNING: u8 = 0;
const CLOSED: u8 = 1;
const EXTRA_BYTES: u8 = 2;

impl Sender {
    fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    /// Once a response has been read to its end: `Ready(Ok)` when the connection is ready for
    /// another request or was closed (by either side, or failed), `Ready(Err)` when the backend
    /// sent bytes after the response. Pending only while hyper's connection task has not yet
    /// looked at what follows the response, which it does in the same pass that delivers the
    /// response's last bytes.
    pub fn after_response(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        match self.send.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => match self.ended.load(Ordering::Acquire) {
                EXTRA_BYTES => Poll::Ready(Err(())),
                CLOSED => Poll::Ready(Ok(())),
                _ => {
                    // The task is between closing the channel and recording why: a few
                    // instructions away on another thread.
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            },
        }
    }
}

/// Idle connections kept per backend, at most (more are closed when they come back).
const MAX_IDLE: usize = 256;
/// The most response header fields accepted (hyper's default of 100 is too few for apps that
/// set many cookies).
const MAX_RESPONSE_HEADERS: usize = 1024;

/// The idle connections to one backend, one stack per worker plus one shared by other
/// threads ([`crate::worker::Stacks`]); most recently used on top (warm in cache, and the ones at
/// the bottom are left to time out at the backend).
#[derive(Debug, Default)]
pub struct Pool {
    stacks: crate::worker::Stacks<Sender>,
    /// The backend's HTTP/2 connections, when the app's `backendProtocol` is `h2c`.
    pub h2: super::h2::Conns,
}

impl Pool {
    /// An idle connection that is still open, if there is one.
    fn take(&self) -> Option<Sender> {
        self.stacks.pop_usable(|s| !s.is_closed())
    }

    /// Returns a connection whose last response was read to the end.
    pub fn put(&self, s: Sender) {
        if !s.is_closed() {
            self.stacks.push(s, MAX_IDLE);
        }
    }

    /// Idle connections held now, over all workers (for tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        self.stacks.len()
    }
}

/// A TCP connection to the backend at 127.0.0.1:`port`, Nagle off (a zero timeout means none);
/// a failure is `Unreachable` (the request was never sent), whichever protocol follows.
pub(crate) async fn connect_loopback(
    port: u16,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, ForwardError> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let connecting = tokio::net::TcpStream::connect(addr);
    let stream = if timeout.is_zero() {
        connecting.await
    } else {
        tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ForwardError::Unreachable(format!("connecting to {addr} timed out")))?
    }
    .map_err(|e| ForwardError::Unreachable(format!("cannot connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens a new HTTP/1.1 connection to 127.0.0.1:`port` (a zero timeout means none).
async fn connect(port: u16, timeout: Duration) -> Result<Sender, ForwardError> {
    let stream = connect_loopback(port, timeout).await?;
    let (sender, conn) = Builder::new()
        .preserve_header_case(true)
        .max_headers(MAX_RESPONSE_HEADERS)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ForwardError::Unreachable(super::describe(&e)))?;
    let ended = Arc::new(AtomicU8::new(RUNNING));
    let ended_here = ended.clone();
    tokio::spawn(async move {
        // Ends when the connection closes; errors reach the request that was on it. Why it
        // ended is recorded before the connection (and the channel its senders watch) is
        // dropped; the guard, declared after the connection and so dropped before it, records
        // a plain close if the task itself is dropped (runtime shut down), so that
        // `after_response` never waits on a reason that will not come.
        let mut conn = std::pin::pin!(conn.with_upgrades());
        let guard = EndedOnDrop(ended_here);
        let r = std::future::poll_fn(|cx| conn.as_mut().poll(cx)).await;
        let why = match r {
            Err(e) if is_extra_bytes(&e) => EXTRA_BYTES,
            _ => CLOSED,
        };
        guard.0.store(why, Ordering::Release);
    });
    Ok(Sender {
        send: sender,
        ended,
    })
}

/// Records [`CLOSED`] when dropped, unless a reason was recorded first.
struct EndedOnDrop(Arc<AtomicU8>);

impl Drop for EndedOnDrop {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(RUNNING, CLOSED, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// hyper's client fails an idle connection that receives bytes no request asked for; it has
/// no predicate for that error, only its message (pinned by the forwarding tests).
fn is_extra_bytes(e: &hyper::Error) -> bool {
    e.to_string().contains("unexpected message")
}

/// Sends `req` on an idle connection of `pool`, or a new one. A request that an idle
/// connection hands back unsent (the backend had closed it) goes to the next one.
pub async fn send(
    pool: &Pool,
    port: u16,
    connect_timeout: Duration,
    mut req: http::Request<OutgoingBody>,
) -> Result<(http::Response<hyper::body::Incoming>, Sender), ForwardError> {
    loop {
        let (mut sender, fresh) = match pool.take() {
            Some(s) => (s, false),
            None => (connect(port, connect_timeout).await?, true),
        };
        if let Err(e) = sender.send.ready().await {
            if fresh {
                return Err(ForwardError::Unreachable(super::describe(&e)));
            }
            continue;
        }
        match sender.send.try_send_request(req).await {
            Ok(resp) => return Ok((resp, sender)),
            Err(mut e) => match e.take_message() {
                Some(unsent) if !fresh => req = unsent,
                Some(_) => return Err(ForwardError::Unreachable(super::describe(e.error()))),
                None => return Err(super::classify(e.error())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection put back by worker 0 is found by worker 0 only: other workers open their
    /// own, and threads that are not workers use the shared stack.
    #[tokio::test]
    async fn idle_connections_stay_with_the_worker_that_returned_them() {
        crate::worker::configure(2);
        assert_eq!(crate::worker::count(), 2);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pool = Pool::default();
        let first = connect(port, Duration::from_secs(5)).await.unwrap();
        let second = connect(port, Duration::from_secs(5)).await.unwrap();

        crate::worker::enter(0);
        pool.put(first);
        assert_eq!(pool.idle_count(), 1);
        std::thread::scope(|s| {
            s.spawn(|| {
                crate::worker::enter(1);
                assert!(pool.take().is_none(), "worker 1 took worker 0's connection");
            });
            s.spawn(|| {
                assert!(
                    pool.take().is_none(),
                    "a non-worker took worker 0's connection"
                );
                pool.put(second);
            });
        });
        assert_eq!(pool.idle_count(), 2);
        assert!(pool.take().is_some());
        assert!(
            pool.take().is_none(),
            "worker 0 took the shared stack's connection"
        );
        std::thread::scope(|s| {
            s.spawn(|| assert!(pool.take().is_some()));
        });
        assert_eq!(pool.idle_count(), 0);
    }
}
