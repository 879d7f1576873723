//! The backend hop over HTTP/2 with prior knowledge (`backendProtocol="h2c"`): a few
//! multiplexed connections per backend instead of a stack of idle HTTP/1.1 ones.
//!
//! Each worker ([`crate::worker`]) keeps its own connections to a backend, for the reason the
//! HTTP/1.1 pool does: a connection's I/O is driven by the runtime that opened it. A request
//! takes the first open connection with fewer than [`MAX_STREAMS`] streams in flight, and
//! opens another only when none has room; requests that find none while one is being opened
//! wait for that one instead of each opening their own. hyper's HTTP/2 client does the rest:
//! flow control both ways, the connection preface and settings, pseudo-headers from the URI,
//! and RST_STREAM(CANCEL) when a request's response future or body is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::progress::OutgoingBody;
use super::ForwardError;

/// Streams in flight on one connection before another is opened: Kestrel's default
/// `MaxStreamsPerConnection`, and the limit most HTTP/2 servers advertise. A server that
/// advertises fewer makes hyper queue the excess on the connection, which still works.
pub const MAX_STREAMS: usize = 100;

/// The most response header bytes accepted ([`super::MAX_RESPONSE_HEAD`], as on HTTP/1.1).
const MAX_HEADER_LIST: u32 = super::MAX_RESPONSE_HEAD as u32;

/// One HTTP/2 connection and how many of its streams are in use.
#[derive(Debug, Clone)]
struct Conn {
    send: SendRequest<OutgoingBody>,
    active: Arc<AtomicUsize>,
}

/// A stream counted against its connection until the response (body included) is done with.
#[derive(Debug)]
pub struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The HTTP/2 connections to one backend, per worker plus one set shared by other threads.
#[derive(Debug)]
pub struct Conns {
    slots: Box<[tokio::sync::Mutex<Vec<Conn>>]>,
}

impl Default for Conns {
    fn default() -> Self {
        Conns {
            slots: crate::worker::per_worker(|| tokio::sync::Mutex::new(Vec::new())),
        }
    }
}

impl Conns {
    /// A connection with room for one more stream (opened if needed), and the stream's slot.
    async fn take(&self, port: u16, timeout: Duration) -> Result<(Conn, StreamSlot), ForwardError> {
        let i = crate::worker::slot(self.slots.len());
        // Held across a connect on purpose: requests arriving meanwhile use that connection.
        let mut conns = self.slots[i].lock().await;
        conns.retain(|c| !c.send.is_closed());
        let found = conns
            .iter()
            .find(|c| c.active.load(Ordering::Acquire) < MAX_STREAMS)
            .cloned();
        let conn = match found {
            Some(c) => c,
            None => {
                let c = connect(port, timeout).await?;
                conns.push(c.clone());
                c
            }
        };
        conn.active.fetch_add(1, Ordering::AcqRel);
        let slot = StreamSlot(conn.active.clone());
        Ok((conn, slot))
    }

    /// Connections open now, over all workers (for tests and diagnostics).
    pub fn open_count(&self) -> usize {
        self.slots
            .iter()
            .map(|s| {
                s.try_lock()
                    .map_or(0, |v| v.iter().filter(|c| !c.send.is_closed()).count())
            })
            .sum()
    }
}

/// Opens an HTTP/2 connection to 127.0.0.1:`port` (a zero timeout means none).
async fn connect(port: u16, timeout: Duration) -> Result<Conn, ForwardError> {
    let stream = super::pool::connect_loopback(port, timeout).await?;
    let (send, conn) = Builder::new(TokioExecutor::new())
        .max_header_list_size(MAX_HEADER_LIST)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ForwardError::Unreachable(super::describe(&e)))?;
    tokio::spawn(async move {
        // Ends when the connection closes; its errors reach the streams that were on it.
        if let Err(e) = conn.await {
            log::debug!("HTTP/2 connection to 127.0.0.1:{port}: {e}");
        }
    });
    Ok(Conn {
        send,
        active: Arc::new(AtomicUsize::new(0)),
    })
}

/// Sends `req` (an absolute URI: hyper takes `:scheme` and `:authority` from it) on a
/// connection of `conns` with room for it.
pub async fn send(
    conns: &Conns,
    port: u16,
    connect_timeout: Duration,
    req: http::Request<OutgoingBody>,
) -> Result<(http::Response<hyper::body::Incoming>, StreamSlot), ForwardError> {
    let (mut conn, slot) = conns.take(port, connect_timeout).await?;
    if let Err(e) = conn.send.ready().await {
        return Err(ForwardError::ConnectionLost(super::describe(&e)));
    }
    match conn.send.send_request(req).await {
        Ok(resp) => Ok((resp, slot)),
        Err(e) => Err(classify(&e)),
    }
}

/// Sorts an HTTP/2 send error: a stream the server refused (REFUSED_STREAM, or a GOAWAY that
/// left it unprocessed) was never handled, like an unreachable backend; other resets and
/// closes lost the request after it may have been seen.
fn classify(e: &hyper::Error) -> ForwardError {
    let text = super::describe(e);
    if let Some(reason) = h2_reason(e) {
        if reason == h2::Reason::REFUSED_STREAM {
            return ForwardError::Unreachable(text);
        }
        return ForwardError::ConnectionLost(text);
    }
    super::classify(e)
}

/// The HTTP/2 error code somewhere in `e`'s causes, if any.
pub(crate) fn h2_reason(e: &(dyn std::error::Error + 'static)) -> Option<h2::Reason> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(inner) = src {
        if let Some(h) = inner.downcast_ref::<h2::Error>() {
            return h.reason();
        }
        src = inner.source();
    }
    None
}

/// Whether the client's `TE` fields include `trailers` (read before the hop-by-hop fields go).
pub fn asks_for_trailers(h: &http::HeaderMap) -> bool {
    h.get_all(http::header::TE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    })
}

/// Turns a translated HTTP/1.1 request head (origin-form target, `Host`, no connection-specific
/// fields left) into the HTTP/2 one: `Host` becomes `:authority` (RFC 9113 §8.3.1), the target
/// an absolute URI with scheme `http` (hyper makes `:scheme`, `:authority` and `:path` of it,
/// the path and query byte for byte), and `TE: trailers` comes back if the client sent it.
pub fn to_http2(
    parts: &mut http::request::Parts,
    backend: &http::uri::Authority,
    te_trailers: bool,
) {
    parts.version = http::Version::HTTP_2;
    let host = parts.headers.remove(http::header::HOST);
    let authority = host
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .unwrap_or_else(|| backend.clone());
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(authority);
    uri.path_and_query = Some(pq);
    if let Ok(u) = http::Uri::from_parts(uri) {
        parts.uri = u;
    }
    if te_trailers {
        parts
            .headers
            .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method("POST").uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// `Host` moves into the URI (`:authority`), the target stays byte for byte, `TE: trailers`
    /// comes back only when asked for.
    #[test]
    fn an_http1_head_becomes_an_http2_one() {
        let backend = http::uri::Authority::from_static("127.0.0.1:5000");
        let mut p = parts(
            "/svc/M%2Fx?q=%20",
            &[("host", "example.com:8080"), ("x-a", "1")],
        );
        to_http2(&mut p, &backend, true);
        assert_eq!(p.version, http::Version::HTTP_2);
        assert_eq!(p.uri.to_string(), "http://example.com:8080/svc/M%2Fx?q=%20");
        assert!(p.headers.get(http::header::HOST).is_none());
        assert_eq!(p.headers[http::header::TE], "trailers");
        assert_eq!(p.headers["x-a"], "1");

        // No usable Host: the backend's own address.
        let mut p = parts("/", &[("host", "bad host")]);
        to_http2(&mut p, &backend, false);
        assert_eq!(p.uri.to_string(), "http://127.0.0.1:5000/");
        assert!(p.headers.get(http::header::TE).is_none());
    }

    #[test]
    fn te_trailers_is_found_in_any_list() {
        let ask = |vals: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in vals {
                h.append(http::header::TE, http::HeaderValue::from_str(v).unwrap());
            }
            asks_for_trailers(&h)
        };
        assert!(ask(&["trailers"]));
        assert!(ask(&["gzip;q=0.5, Trailers"]));
        assert!(ask(&["gzip", "trailers"]));
        assert!(!ask(&["gzip"]));
        assert!(!ask(&[]));
    }
}
