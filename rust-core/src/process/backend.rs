//! A backend that is ready for requests: its process, port and pairing token, pre-encoded for
//! the request path so that forwarding does no per-request formatting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::uri::Authority;
use http::HeaderValue;

use super::child::Child;
use super::token::Token;

/// A started, listening backend process.
#[derive(Debug)]
pub struct Backend {
    /// Its process.
    pub child: Arc<Child>,
    /// The loopback port it listens on.
    pub port: u16,
    /// Its pairing token.
    pub token: Token,
    /// The token as a header value (marked sensitive so it is never logged).
    pub token_header: HeaderValue,
    /// `127.0.0.1:<port>`, for request URIs.
    pub authority: Authority,
    /// When it became ready.
    pub ready_at: Instant,
    in_flight: AtomicUsize,
    served: std::sync::atomic::AtomicU64,
    /// Its idle keep-alive connections (hyper's, for the general path).
    pub pool: crate::forward::pool::Pool,
    /// Its idle keep-alive sockets for the engine's own HTTP/1.1 path ([`crate::h1`]).
    pub idle: crate::h1::Idle,
    /// When its WebSocket sessions are to be closed (going away), once it drains.
    drain: tokio::sync::watch::Sender<Option<Instant>>,
    sessions: Arc<AtomicUsize>,
}

impl Backend {
    /// Wraps a ready process. Fails only if the token cannot be a header value.
    pub fn new(child: Arc<Child>, port: u16, token: Token) -> Result<Backend, String> {
        let mut token_header = HeaderValue::from_str(token.expose()).map_err(|_| {
            "ASPNETCORE_TOKEN: must be visible ASCII to be sent as a header".to_owned()
        })?;
        token_header.set_sensitive(true);
        let authority = Authority::try_from(format!("127.0.0.1:{port}"))
            .map_err(|e| format!("cannot form the backend address: {e}"))?;
        Ok(Backend {
            child,
            port,
            token,
            token_header,
            authority,
            ready_at: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: std::sync::atomic::AtomicU64::new(0),
            pool: Default::default(),
            idle: Default::default(),
            drain: tokio::sync::watch::Sender::new(None),
            sessions: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Whether it can take requests (its process is still running).
    pub fn is_alive(&self) -> bool {
        !self.child.has_exited()
    }

    /// Requests currently being forwarded to it.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests it was given so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Starts its drain: its WebSocket sessions are to be closed with 1001 at `close_at`.
    pub fn begin_drain(&self, close_at: Instant) {
        self.drain.send_replace(Some(close_at));
    }

    /// Its WebSocket sessions (tunnels) still open.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Counts a WebSocket session until the returned value is dropped, and gives it the drain
    /// signal to watch.
    pub fn begin_session(&self) -> Session {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        Session {
            count: self.sessions.clone(),
            closing: self.drain.subscribe(),
        }
    }

    /// Counts a request as outstanding until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A WebSocket session of a backend: counted while alive, with the backend's drain signal.
#[derive(Debug)]
pub struct Session {
    count: Arc<AtomicUsize>,
    /// When to close the session (set once the backend drains).
    pub closing: tokio::sync::watch::Receiver<Option<Instant>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps a request counted against its backend (for least-outstanding balancing) until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Backend>);

impl InFlight {
    /// The backend the request goes to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
