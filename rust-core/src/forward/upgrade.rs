//! WebSocket upgrades: which requests may be upgraded, and the byte pump between the client's
//! and the backend's connections once the backend has answered 101.
//!
//! Like ANCM, only `Upgrade: websocket` is tunnelled, and only for HTTP/1.1 requests without a
//! body; `Sec-WebSocket-Extensions` is removed so that no compression is negotiated that the
//! host might not pass through intact. Any other request has its `Upgrade` header removed as the
//! hop-by-hop header it is, so the backend answers it as an ordinary request.

use std::sync::{Arc, Mutex};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::process::{Backend, Session};

/// The backend's side of an upgraded connection, found in the extensions of a 101 response the
/// engine returns. A host takes it out (`extensions_mut().remove::<BackendUpgrade>()`) and
/// either calls [`tunnel`] with the client's side or pumps it itself (the C ABI).
///
/// Extensions must be `Clone`; the connection itself is not, so it sits in a take-once cell.
#[derive(Clone)]
pub struct BackendUpgrade(Arc<Mutex<Option<OnUpgrade>>>, Option<Arc<Backend>>);

impl BackendUpgrade {
    /// Wraps the backend's pending upgrade.
    pub fn new(on: OnUpgrade) -> Self {
        BackendUpgrade(Arc::new(Mutex::new(Some(on))), None)
    }

    /// Wraps the pending upgrade of `backend`, whose drain ends the session ([`tunnel`]).
    pub fn of(on: OnUpgrade, backend: Arc<Backend>) -> Self {
        BackendUpgrade(Arc::new(Mutex::new(Some(on))), Some(backend))
    }

    /// Takes the pending upgrade (once; later calls get `None`).
    pub fn take(&self) -> Option<OnUpgrade> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }

    /// The session's place in its backend's count, with the backend's drain signal.
    pub fn session(&self) -> Option<Session> {
        self.1.as_ref().map(|b| b.begin_session())
    }
}

/// Whether `req` is a WebSocket upgrade the engine will tunnel.
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && has_token(req.headers(), header::UPGRADE, "websocket")
        && !has_body(req.headers())
}

/// Request headers for an upgrade: what hop-by-hop removal took away, put back.
pub fn restore_request_headers(h: &mut HeaderMap, upgrade: HeaderValue) {
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, upgrade);
    h.remove(header::SEC_WEBSOCKET_EXTENSIONS);
}

/// Response headers of a 101: `Connection` and `Upgrade` belong to the handshake the client
/// must see.
pub fn restore_response_headers(h: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Some(u) = upgrade {
        h.insert(header::UPGRADE, u);
    }
}

fn has_body(h: &HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Pumps bytes both ways between the client's upgraded connection and the backend's until
/// either side closes (a close is passed on as a write shutdown) or fails. When the backend
/// drains (a deploy, a recycle), both sides get a close frame with 1001 (going away) after
/// webSocketDrainSeconds ([`super::going_away`]). Returns the bytes moved (client→backend,
/// backend→client).
pub async fn tunnel<C>(client: C, backend: BackendUpgrade) -> std::io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let session = backend.session();
    let pending = backend
        .take()
        .ok_or_else(|| std::io::Error::other("the backend connection was already taken"))?;
    let backend = pending.await.map_err(std::io::Error::other)?;
    let mut backend = TokioIo::new(backend);
    if let Some(session) = session {
        let closing = session.closing.clone();
        let moved = super::going_away::session(client, backend, closing).await;
        drop(session);
        return moved;
    }
    let mut client = client;
    tokio::io::copy_bidirectional(&mut client, &mut backend).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_bodiless_http11_websocket_requests_upgrade() {
        let ws = [("connection", "Upgrade"), ("upgrade", "WebSocket")];
        assert!(is_upgrade_request(&req(Version::HTTP_11, &ws)));
        assert!(!is_upgrade_request(&req(Version::HTTP_10, &ws)));
        assert!(!is_upgrade_request(&req(
            Version::HTTP_11,
            &[("upgrade", "h2c")]
        )));
        let with_body = [("upgrade", "websocket"), ("content-length", "5")];
        assert!(!is_upgrade_request(&req(Version::HTTP_11, &with_body)));
        let chunked = [("upgrade", "websocket"), ("transfer-encoding", "chunked")];
        assert!(!is_upgrade_request(&req(Version::HTTP_11, &chunked)));
        let empty = [("upgrade", "websocket"), ("content-length", "0")];
        assert!(is_upgrade_request(&req(Version::HTTP_11, &empty)));
    }

    #[test]
    fn extensions_are_not_negotiated() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate"),
        );
        restore_request_headers(&mut h, HeaderValue::from_static("websocket"));
        assert!(h.get(header::SEC_WEBSOCKET_EXTENSIONS).is_none());
        assert_eq!(h[header::CONNECTION], "Upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
    }
}
