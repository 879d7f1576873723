//! One request: header translation, body streaming both ways, timeouts, and the mapping of
//! failures to responses.

pub mod admission;
mod body;
pub mod framing;
pub mod going_away;
pub mod h2;
pub mod headers;
pub mod pages;
pub mod pool;
mod progress;
pub mod target;
pub mod trace;
pub mod upgrade;
pub mod websocket;

use std::time::Duration;

use http::header;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};

pub use body::{BackendBody, BodyError, BoxError, Hop, RequestBody, ResponseBody};
pub use headers::ClientInfo;
pub use progress::OutgoingBody;
pub use upgrade::BackendUpgrade;

use crate::config::BackendProtocol;
use crate::process::InFlight;

/// The largest response head accepted from a backend (ANCM's limit).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Why a request could not be forwarded (before any of the response was sent).
#[derive(Debug)]
pub enum ForwardError {
    /// The backend did not send its response head within requestTimeout.
    Timeout(Duration),
    /// Connecting, sending or reading the head failed.
    Backend(String),
    /// The backend's response cannot be forwarded unambiguously; the client connection should
    /// be closed after the error page, as ANCM resets it.
    InvalidResponse(String),
    /// No connection to the backend could be made (refused, unreachable): the request was
    /// never sent, so it may be sent again.
    Unreachable(String),
    /// The connection was reset or closed before any of the response arrived (a process that
    /// just died, a pooled connection the backend had closed): an idempotent request may be
    /// sent again.
    ConnectionLost(String),
    /// The client's request body was malformed (e.g. a bad chunk size): the client's fault,
    /// answered 400, and the connection closed since its framing is lost.
    BadRequestBody(String),
    /// The user's Windows token could not be duplicated into the backend's process; the
    /// request was not sent (ANCM fails the request too rather than send it without the
    /// identity).
    WindowsToken(String),
}

impl ForwardError {
    /// Whether the client connection should be closed after the error response.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ForwardError::InvalidResponse(_) | ForwardError::BadRequestBody(_)
        )
    }
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Timeout(d) => {
                write!(
                    f,
                    "the application did not respond within {} s (requestTimeout)",
                    d.as_secs()
                )
            }
            ForwardError::Backend(s) => f.write_str(s),
            ForwardError::InvalidResponse(s) => {
                write!(f, "the application sent an invalid response: {s}")
            }
            ForwardError::BadRequestBody(s) => write!(f, "the request body is malformed: {s}"),
            ForwardError::Unreachable(s) => write!(f, "could not connect to the application: {s}"),
            ForwardError::ConnectionLost(s) => {
                write!(f, "the connection to the application was lost: {s}")
            }
            ForwardError::WindowsToken(s) => {
                write!(
                    f,
                    "the Windows user token could not be handed to the application: {s}"
                )
            }
        }
    }
}

impl std::error::Error for ForwardError {}

pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Sorts a send error by whose fault it is, from hyper's own error kinds.
pub(crate) fn classify(e: &(dyn std::error::Error + 'static)) -> ForwardError {
    let text = describe(e);
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(inner) = src {
        if let Some(h) = inner.downcast_ref::<hyper::Error>() {
            if h.is_user() {
                return ForwardError::BadRequestBody(text);
            }
            if h.is_parse() || h.is_parse_too_large() || h.is_parse_status() {
                return ForwardError::InvalidResponse(text);
            }
            if h.is_incomplete_message() || h.is_canceled() {
                return ForwardError::ConnectionLost(text);
            }
        }
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) {
                return ForwardError::ConnectionLost(text);
            }
        }
        src = inner.source();
    }
    ForwardError::Backend(text)
}

/// The size of a response head as it came on the wire (name, ": ", value, CRLF per field).
fn head_size(h: &http::HeaderMap) -> usize {
    h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
}

/// Forwards `req` to the backend held by `in_flight` over `protocol` and returns the backend's
/// response head with its body still streaming. The request's path and query go out exactly as
/// received; fields with an underscore in their name go as `underscores` says. A 101 answer to a
/// WebSocket upgrade carries a [`BackendUpgrade`] in its extensions (HTTP/1.1 backends only: an
/// HTTP/2 hop has no `Upgrade`).
pub async fn forward(
    in_flight: InFlight,
    req: Request<RequestBody>,
    peer: &ClientInfo,
    timeout: Duration,
    dialect: crate::config::Dialect,
    protocol: BackendProtocol,
    underscores: headers::Underscores,
) -> Result<Response<ResponseBody>, ForwardError> {
    let h2c = protocol == BackendProtocol::H2c;
    let upgrade = (!h2c && upgrade::is_upgrade_request(&req))
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten();
    let (mut parts, body) = req.into_parts();
    let backend = in_flight.backend().clone();
    // An HTTP/2 client names the host in `:authority` (the URI), an HTTP/1.1 one in `Host`;
    // each hop gets it its own way.
    if !parts.headers.contains_key(header::HOST) {
        let host = parts
            .uri
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            // HTTP/1.0 clients may send none; HTTP/1.1 requires one on the backend connection.
            .or_else(|| http::HeaderValue::from_str(backend.authority.as_str()).ok());
        if let Some(v) = host {
            parts.headers.insert(header::HOST, v);
        }
    }
    // Origin form, exactly as received (an absolute-form target keeps only its path and query).
    if parts.uri.scheme().is_some() || parts.uri.path_and_query().is_none() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    // `TE: trailers` is the one connection-specific field HTTP/2 keeps (RFC 9113 §8.2.2);
    // gRPC servers want it.
    let te_trailers = h2c && h2::asks_for_trailers(&parts.headers);
    // The backend connection is HTTP/1.1 keep-alive or HTTP/2, whatever the client spoke.
    parts.version = Version::HTTP_11;
    headers::translate_request(&mut parts.headers, peer, &backend.token_header, underscores);
    // The token goes to this attempt's process; a retry duplicates it again for its own.
    let remote_token = match &peer.windows_token {
        Some(t) => Some(t.send_to(&backend.child).map_err(|e| {
            ForwardError::WindowsToken(format!("process {}: {e}", backend.child.pid()))
        })?),
        None => None,
    };
    if let Some(r) = &remote_token {
        headers::set_windows_token(&mut parts.headers, &r.hex(), dialect);
    }
    if let Some(u) = &upgrade {
        upgrade::restore_request_headers(&mut parts.headers, u.clone());
    }
    if h2c {
        h2::to_http2(&mut parts, &backend.authority, te_trailers);
    }
    let (body, progress) = OutgoingBody::new(body);
    let req = Request::from_parts(parts, body);
    let mut sent = std::pin::pin!(async {
        if h2c {
            let (r, s) = h2::send(&backend.pool.h2, backend.port, timeout, req).await?;
            Ok::<_, ForwardError>((r, Hop::H2(s)))
        } else {
            let (r, s) = pool::send(&backend.pool, backend.port, timeout, req).await?;
            Ok((r, Hop::H1(s)))
        }
    });
    let result = if timeout.is_zero() {
        sent.await
    } else {
        // A coarse timer (fires up to 100 ms late): set on every request, it almost never
        // expires, and tokio's costs hundreds of instructions per request (crate::timer).
        let mut deadline = std::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                biased;
                r = &mut sent => break r,
                () = crate::timer::sleep_until(deadline) => match &progress {
                    // Still uploading: the timeout counts from the upload's last progress.
                    Some(p) if p.last() + timeout > tokio::time::Instant::now() => {
                        deadline = (p.last() + timeout).into_std();
                    }
                    _ => return Err(ForwardError::Timeout(timeout)),
                },
            }
        }
    };
    let (mut resp, sender) = match result {
        Ok(r) => r,
        Err(e) => {
            // Never connected: the backend never saw the handle's value, so close it there.
            // After a lost connection it may have read the request (and owns the handle), so
            // it is left to the backend (or to the process's exit).
            if let (Some(r), ForwardError::Unreachable(_)) = (remote_token, &e) {
                r.reclaim();
            }
            return Err(e);
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if upgrade.is_none() {
            return Err(ForwardError::InvalidResponse(
                "101 Switching Protocols to a request that asked for no upgrade".into(),
            ));
        }
        let on = hyper::upgrade::on(&mut resp);
        let (mut parts, _) = resp.into_parts();
        let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
        headers::translate_response(&mut parts.headers);
        upgrade::restore_response_headers(&mut parts.headers, upgrade_value);
        parts
            .extensions
            .insert(BackendUpgrade::of(on, backend.clone()));
        return Ok(Response::from_parts(parts, ResponseBody::empty()));
    }
    framing::check(resp.headers())
        .map_err(|rule| ForwardError::InvalidResponse(rule.to_owned()))?;
    if head_size(resp.headers()) > MAX_RESPONSE_HEAD {
        return Err(ForwardError::InvalidResponse(format!(
            "its response headers exceed {} KiB",
            MAX_RESPONSE_HEAD / 1024
        )));
    }
    let (mut parts, body) = resp.into_parts();
    headers::translate_response(&mut parts.headers);
    parts.version = Version::HTTP_11;
    Ok(Response::from_parts(
        parts,
        ResponseBody::Backend(BackendBody::new(body, timeout, in_flight, sender)),
    ))
}
