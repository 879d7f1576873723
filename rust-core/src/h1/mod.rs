//! The engine's own HTTP/1.1 path, for hosts that own the client's socket (ancm-serve).
//!
//! Why it exists: through hyper's server and client dispatchers a small proxied GET costs about
//! 33,000 instructions, two thirds of them in the two dispatchers, and nginx spends 16,500
//! (docs/benchmarks.md). Here a request head is parsed in place (httparse) in a buffer lent for
//! the exchange, the backend's head is written from its bytes (so names keep their case for
//! free), and the response head comes back the same way.
//!
//! It takes plain requests only ([`request`]): anything else — upgrades, chunked or large
//! uploads, `Expect`, HTTP/1.0, odd targets, client certificates — is handed back to the host
//! with the bytes already read ([`Handover`]), at a request boundary, for the general path
//! (`App::handle` behind hyper), which then serves the rest of that connection. The rules are the
//! engine's either way: the same header rules (`forward::headers`), framing checks
//! (`forward::framing`), pages, retry rule, requestTimeout, process start and balancing
//! ([`crate::App`]).

pub(crate) mod backend;
pub(crate) mod bufs;
mod date;
pub(crate) mod io;
mod page;
pub mod relay;
pub mod request;
pub mod response;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use backend::Idle;

use crate::app::Admission;
use crate::forward::headers::{self, Underscores};
use crate::report::{Exchange, Reporter};
use crate::{App, ClientInfo};
use backend::Failed;
use bufs::{Bufs, Lent};
use request::Parsed;

/// The longest request head this path waits for; a longer one goes to the general path.
const MAX_HEAD: usize = 64 * 1024;

/// A client connection given back for the general path, at the start of a request.
#[derive(Debug)]
pub struct Handover {
    /// The connection.
    pub stream: TcpStream,
    /// Bytes already read from it: they come before anything still in the socket.
    pub buffered: Vec<u8>,
}

/// Serves the requests of one client connection, each with the app `current()` returns at the
/// time (a configuration change swaps it between requests), until the client closes (`None`) or
/// sends a request this path does not take (`Some`: serve the rest of the connection with
/// `App::handle`). `header_timeout` bounds the wait for each request head, idle time included.
/// `report`, if any, is called once per request answered here, after its response (for the
/// host's access log); without one nothing is measured.
pub async fn serve<F, A>(
    mut client: TcpStream,
    info: &ClientInfo,
    current: F,
    header_timeout: Option<Duration>,
    report: Option<Reporter<'_>>,
) -> Option<Handover>
where
    F: Fn() -> A,
    A: Deref<Target = App>,
{
    if info.client_cert_der.is_some() || info.windows_token.is_some() {
        return Some(Handover {
            stream: client,
            buffered: Vec::new(),
        });
    }
    let canonical = SocketAddr::new(info.addr.ip().to_canonical(), info.addr.port());
    let client_addr = headers::addr_value(canonical);
    let mut lent: Option<Lent> = None;
    loop {
        let deadline = header_timeout.map(|t| Instant::now() + t);
        let b = match &mut lent {
            Some(b) if b.has_client_bytes() => b.bufs(),
            _ => {
                // Idle: no buffers held until the next request starts to arrive.
                lent = None;
                if !readable_by(&client, deadline).await {
                    return None;
                }
                lent.insert(Lent::new()).bufs()
            }
        };
        // The app of the moment, for this request's rules and its forwarding.
        let app = current();
        let ext = &app.config().extensions;
        let underscores = Underscores::forward_if(ext.forward_headers_with_underscores);
        let generate_trace = ext.traceparent_generation.on();
        let head = loop {
            match request::parse(
                &b.client,
                client_addr.as_bytes(),
                info.https,
                underscores,
                generate_trace,
                &mut b.request,
            ) {
                Parsed::Plain(h) => break h,
                Parsed::Refused(r) => {
                    log::debug!(
                        "request refused with {}: {}",
                        r.refusal.status,
                        r.refusal.cause
                    );
                    let started = report.map(|_| Instant::now());
                    let page = crate::forward::pages::refused(r.refusal);
                    let done = Outcome::page(&page, r.head_method);
                    // The page says `Connection: close`: the connection ends after it.
                    let _ = page::write(&mut client, page, r.head_method, true, &mut b.out).await;
                    if let (Some(report), Some(started)) = (report, started) {
                        done.report(report, &b.client, None, started);
                    }
                    let _ = client.shutdown().await;
                    return None;
                }
                Parsed::Partial if b.client.len() <= MAX_HEAD => {
                    match io::read_until(&mut client, &mut b.client, deadline).await {
                        Ok(0) | Err(_) => return None,
                        Ok(_) => {}
                    }
                }
                // The header timeout is for heads: a body still coming when it runs out is left
                // to the general path, which waits for bodies as long as they progress. Without
                // one, each wait for the body is bounded by requestTimeout, that path's bound
                // for an upload that stops.
                Parsed::AwaitingBody => {
                    let by = deadline.or_else(|| {
                        let t = app.request_timeout();
                        (!t.is_zero()).then(|| Instant::now() + t)
                    });
                    match io::read_until(&mut client, &mut b.client, by).await {
                        Ok(0) => return None,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                            return Some(Handover {
                                stream: client,
                                buffered: std::mem::take(&mut b.client),
                            })
                        }
                        Err(_) => return None,
                    }
                }
                Parsed::Partial | Parsed::Other => {
                    return Some(Handover {
                        stream: client,
                        buffered: std::mem::take(&mut b.client),
                    })
                }
            }
        };
        // This path speaks HTTP/1.1 to backends; an HTTP/2 hop is the general path's.
        if app.config().extensions.backend_protocol != crate::config::BackendProtocol::Http1 {
            return Some(Handover {
                stream: client,
                buffered: std::mem::take(&mut b.client),
            });
        }
        let started = report.map(|_| Instant::now());
        let mut done = Outcome::default();
        let keep = forward(&mut client, b, head, &app, &mut done).await;
        if let (Some(report), Some(started)) = (report, started) {
            done.aborted |= keep.is_none();
            done.report(report, &b.client, head.trace_id, started);
        }
        let keep = keep?;
        if !keep || head.close {
            let _ = client.shutdown().await;
            return None;
        }
        b.client.drain(..head.len + head.body);
    }
}

/// Writes one header line, `name: value`, with the bytes as given.
fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Waits until the client sends something (or closes); false when `deadline` passed first.
async fn readable_by(client: &TcpStream, deadline: Option<Instant>) -> bool {
    match deadline {
        None => client.readable().await.is_ok(),
        Some(at) => tokio::select! {
            biased;
            r = client.readable() => r.is_ok(),
            () = crate::timer::sleep_until(at) => false,
        },
    }
}

/// How one request ended, for the host's report.
#[derive(Debug, Default)]
struct Outcome {
    status: u16,
    body_bytes: u64,
    pid: Option<u32>,
    aborted: bool,
}

impl Outcome {
    /// An engine page about to be written.
    fn page(page: &http::Response<crate::ResponseBody>, head_method: bool) -> Outcome {
        let body = match page.body() {
            crate::ResponseBody::Full(Some(b)) if !head_method => b.len() as u64,
            _ => 0,
        };
        Outcome {
            status: page.status().as_u16(),
            body_bytes: body,
            ..Outcome::default()
        }
    }

    /// Calls `report` for the request whose head starts `client` (its request line is read
    /// again here, so that a host without a report pays nothing for it).
    fn report(
        &self,
        report: Reporter<'_>,
        client: &[u8],
        trace_id: Option<crate::forward::trace::TraceId>,
        started: Instant,
    ) {
        let line = client.split(|&b| b == b'\r').next().unwrap_or_default();
        let mut parts = line.splitn(3, |&b| b == b' ');
        let method = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
        let target = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
        report(&Exchange {
            method,
            target,
            status: self.status,
            body_bytes: self.body_bytes,
            duration: started.elapsed(),
            trace_id,
            pid: self.pid,
            aborted: self.aborted,
        });
    }
}

/// Answers the plain request `head` at the start of `b.client`, whose backend head (less the
/// token) is in `b.request`. Returns whether the connection may carry another request, or `None`
/// when the client went away. `done` gets what the report needs.
async fn forward(
    client: &mut TcpStream,
    b: &mut Bufs,
    head: request::Head,
    app: &App,
    done: &mut Outcome,
) -> Option<bool> {
    let timeout = app.request_timeout();
    let base = b.request.len();
    let mut retried = false;
    let (in_flight, mut conn, resp) = loop {
        let backend = match admit(app, client, &mut b.client).await? {
            Admission::Backend(backend) => backend,
            Admission::Page(p) => return answer_page(client, b, *p, head, done).await,
        };
        done.pid = Some(backend.child.pid());
        b.request.truncate(base);
        b.request.extend_from_slice(b"MS-ASPNETCORE-TOKEN: ");
        b.request.extend_from_slice(backend.token_header.as_bytes());
        b.request.extend_from_slice(b"\r\n\r\n");
        b.request
            .extend_from_slice(&b.client[head.len..head.len + head.body]);
        let in_flight = backend.begin_request();
        let mut watch = io::Client {
            stream: client,
            ahead: &mut b.client,
        };
        match backend::exchange(
            &backend,
            &b.request,
            &mut b.backend,
            &mut b.out,
            &mut watch,
            head.head_method,
            timeout,
        )
        .await
        {
            Ok((conn, resp)) => break (in_flight, conn, resp),
            Err(Failed::ClientGone) => return None,
            Err(Failed::Forward(e)) => {
                drop(in_flight);
                if !retried && app.retry_after(&backend, &e, head.idempotent).await {
                    retried = true;
                    continue;
                }
                let page = app.failure_page(backend, e);
                return answer_page(client, b, page, head, done).await;
            }
        }
    };
    // "HTTP/1.1 200 …": the client's head was written from the backend's.
    done.status = b
        .out
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if head.close {
        // Say so, as the general path's server does: before the head's empty line.
        let end = b.out.len() - 2;
        b.out.truncate(end);
        b.out.extend_from_slice(b"connection: close\r\n\r\n");
    }
    let mut sink = io::Sink {
        stream: client,
        pending: &mut b.out,
        ahead: &mut b.client,
        sent: 0,
    };
    let relayed = relay::relay(
        &mut conn,
        &mut b.backend,
        resp.len,
        &mut sink,
        resp.body,
        timeout,
    )
    .await;
    done.body_bytes = sink.sent;
    match relayed {
        Ok(()) => {
            if resp.reusable {
                in_flight.backend().idle.put(conn);
            }
            Some(true)
        }
        Err(stop) => {
            log::debug!("response aborted: {stop}");
            done.aborted = true;
            None
        }
    }
}

/// [`App::admit`], watching the client while it waits (a process start takes a while): `None`
/// when the client left, so that a request nobody waits for is never sent (the general path's
/// server drops it too). Bytes the client sends meanwhile (pipelined requests) are kept in
/// `ahead`.
async fn admit(app: &App, client: &mut TcpStream, ahead: &mut Vec<u8>) -> Option<Admission> {
    let mut admitting = std::pin::pin!(app.admit());
    // The usual case, a running process, is ready at once: no watch then.
    let first = std::future::poll_fn(|cx| Poll::Ready(admitting.as_mut().poll(cx))).await;
    if let Poll::Ready(a) = first {
        return Some(a);
    }
    loop {
        tokio::select! {
            biased;
            a = &mut admitting => return Some(a),
            r = client.read_buf(ahead), if ahead.len() < io::MAX_AHEAD => match r {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            },
        }
    }
}

async fn answer_page(
    client: &mut TcpStream,
    b: &mut Bufs,
    page: http::Response<crate::ResponseBody>,
    head: request::Head,
    done: &mut Outcome,
) -> Option<bool> {
    let pid = done.pid;
    *done = Outcome {
        pid,
        ..Outcome::page(&page, head.head_method)
    };
    match page::write(client, page, head.head_method, head.close, &mut b.out).await {
        Ok(close) => Some(!close),
        Err(_) => None,
    }
}
