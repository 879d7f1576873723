//! Connections to one backend process for the engine's own path: a stack of idle keep-alive
//! sockets per worker (as `forward::pool` keeps hyper's), and one exchange on them: send the
//! request, wait for the final response head within requestTimeout while watching the client.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::io::{Watch, Watched};
use super::response::{self, Head, HeadOut};
use crate::forward::{ForwardError, MAX_RESPONSE_HEAD};
use crate::process::Backend;

/// Idle connections kept per backend, at most.
const MAX_IDLE: usize = 256;

/// The idle sockets to one backend, one stack per worker plus one for other threads
/// ([`crate::worker::Stacks`]): a socket is registered with the reactor of the worker that opened
/// it, so it is only reused there.
#[derive(Debug, Default)]
pub struct Idle {
    stacks: crate::worker::Stacks<TcpStream>,
}

impl Idle {
    /// An idle socket the backend has not closed (nor sent anything on since).
    fn take(&self) -> Option<TcpStream> {
        self.stacks.pop_usable(|s| {
            // No system call unless the reactor saw the socket readable: a close, or bytes no
            // request asked for. Either way it is not reused.
            let mut probe = [0u8; 1];
            matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        })
    }

    /// Keeps a socket whose last response ended exactly where it said.
    pub fn put(&self, s: TcpStream) {
        self.stacks.push(s, MAX_IDLE);
    }

    /// Idle sockets held now, over all workers.
    pub fn idle_count(&self) -> usize {
        self.stacks.len()
    }
}

/// Why an exchange gave no response head.
#[derive(Debug)]
pub enum Failed {
    /// The backend failed; answered by the engine's page (or sent again).
    Forward(ForwardError),
    /// The client closed its connection while it waited.
    ClientGone,
}

/// Sends `request` to `backend` and waits for the final response head, whose fields have then
/// gone to `out` and whose bytes start `buf`, watching the client with `watch` meanwhile. A request that a pooled
/// socket refuses unsent goes to the next (or a new) one; a socket lost after the request went
/// out is returned like any failure, for the app's own retry rule (sent once more at most, as
/// on the general path: the backend may have seen it).
pub async fn exchange(
    backend: &Backend,
    request: &[u8],
    buf: &mut Vec<u8>,
    out: &mut impl HeadOut,
    watch: &mut impl Watch,
    head_method: bool,
    timeout: Duration,
) -> Result<(TcpStream, Head), Failed> {
    loop {
        let (mut conn, fresh) = match backend.idle.take() {
            Some(s) => (s, false),
            None => (connect(backend.port, timeout).await?, true),
        };
        if let Err(e) = conn.write_all(request).await {
            if fresh {
                return Err(Failed::Forward(ForwardError::ConnectionLost(e.to_string())));
            }
            // A pooled socket the backend had closed: nothing of the request was taken.
            continue;
        }
        buf.clear();
        return head(&mut conn, buf, out, watch, head_method, timeout)
            .await
            .map(|h| (conn, h));
    }
}

/// Opens a socket to 127.0.0.1:`port` (a zero timeout waits as long as the system does).
async fn connect(port: u16, timeout: Duration) -> Result<TcpStream, Failed> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let connecting = TcpStream::connect(addr);
    let r = if timeout.is_zero() {
        connecting.await
    } else {
        match tokio::time::timeout(timeout, connecting).await {
            Ok(r) => r,
            Err(_) => {
                return Err(Failed::Forward(ForwardError::Unreachable(format!(
                    "connecting to {addr} timed out"
                ))))
            }
        }
    };
    let s = r.map_err(|e| {
        Failed::Forward(ForwardError::Unreachable(format!(
            "cannot connect to {addr}: {e}"
        )))
    })?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Reads the final response head, skipping informational ones.
async fn head(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    out: &mut impl HeadOut,
    watch: &mut impl Watch,
    head_method: bool,
    timeout: Duration,
) -> Result<Head, Failed> {
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    loop {
        match response::parse(buf, head_method, out) {
            Ok(response::Parsed::Final(h)) => return Ok(h),
            Ok(response::Parsed::Informational(n)) => {
                buf.drain(..n);
                continue;
            }
            Ok(response::Parsed::Partial) if buf.len() <= MAX_RESPONSE_HEAD => {}
            Ok(response::Parsed::Partial) => {
                return Err(Failed::Forward(ForwardError::InvalidResponse(format!(
                    "its response headers exceed {} KiB",
                    MAX_RESPONSE_HEAD / 1024
                ))))
            }
            Err(e) => return Err(Failed::Forward(e)),
        }
        match watch.read(conn, buf, deadline).await {
            Ok(0) => {
                return Err(Failed::Forward(ForwardError::ConnectionLost(
                    "the connection closed before the response head".into(),
                )))
            }
            Ok(_) => {}
            Err(Watched::Backend(e)) => {
                return Err(Failed::Forward(ForwardError::ConnectionLost(e.to_string())))
            }
            Err(Watched::Client(_)) => return Err(Failed::ClientGone),
            Err(Watched::TimedOut) => return Err(Failed::Forward(ForwardError::Timeout(timeout))),
        }
    }
}
