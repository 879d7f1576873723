//! The C ABI's plain requests on the engine's own HTTP/1.1 machinery ([`crate::h1`]): a
//! bodiless request to an HTTP/1.1 backend is written as the backend's head straight from the
//! host's fields, sent on a raw per-worker backend socket, and the response head is parsed in
//! place and handed to `response_head` as views of the backend's bytes, so names keep the
//! backend's case. The rules are the general path's and h1's (the same functions:
//! `h1::request::backend_head` with the host-parsed admission rules, `h1::response::parse`,
//! `h1::relay`, `App::admit`, the retry rule, requestTimeout, the engine's pages). Anything
//! else — a body, a client certificate, a Windows token, an HTTP/2 backend, a field this path
//! does not take, a head the admission rules refuse — goes through `App::handle` as before.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::TcpStream;

use super::{
    ancm_header, ancm_request_head, ancm_response_head, deliver_head, pump, write, Outcome, Shared,
};
use crate::app::Admission;
use crate::ffi::handle::ancm_slice;
use crate::ffi::result::ancm_result;
use crate::forward::admission::ParsedBy;
use crate::forward::headers::{self, Underscores};
use crate::h1::backend::{self, Failed};
use crate::h1::io::{Unwatched, Watch, Watched};
use crate::h1::relay::{self, Out};
use crate::h1::request::{self as h1req, Fields};
use crate::h1::response::{Body, HeadOut};
use crate::App;

/// Response fields passed to `response_head` without allocating.
const INLINE_FIELDS: usize = 24;
/// Response body bytes gathered before a chunk goes to the host without waiting for more.
const CHUNK: usize = 64 * 1024;

/// A plain request, ready for its backend.
pub(crate) struct Plain {
    /// The backend's head up to (excluding) the pairing token line.
    head: Vec<u8>,
    head_method: bool,
    idempotent: bool,
}

/// Whether `b` may appear in a method or field name (RFC 9110 `tchar`).
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a field value holds only bytes that every parser reads the same way (what
/// `http::HeaderValue` accepts: no control byte but HTAB).
fn plain_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The backend head of `head` when it is a request this path takes, else `None` (the general
/// path then checks it and reports what is wrong with it).
///
/// # Safety
/// As `parse_head`: every slice of `head` points at its bytes, unchanged during the call.
pub(crate) unsafe fn take(head: &ancm_request_head, app: &App) -> Option<Plain> {
    if head.content_length != 0
        || head.client_cert_der.len != 0
        || app.config().extensions.backend_protocol != crate::config::BackendProtocol::Http1
    {
        return None;
    }
    let auth_type = unsafe { head.auth_type.str() }.ok()?;
    // A token the engine would forward needs the general path (its duplicate per attempt); one
    // it ignores (anonymous or Basic logons, forwardWindowsAuthToken false) is no obstacle, as
    // there. Outside Windows the general path refuses any token.
    if !head.windows_token.is_null()
        && (!cfg!(windows)
            || (app.config().forward_windows_auth_token
                && crate::process::forwards_token_of(auth_type)))
    {
        return None;
    }
    let method = unsafe { head.method.bytes() }.ok()?;
    let target = unsafe { head.target.bytes() }.ok()?;
    if method.is_empty()
        || !method.iter().all(|&b| tchar(b))
        || method == b"CONNECT"
        || !target.starts_with(b"/")
        || target.len() > h1req::MAX_TARGET
        || !target.iter().all(|&b| h1req::plain_target_byte(b))
    {
        return None;
    }
    let list: &[ancm_header] = match head.header_count {
        0 => &[],
        _ if head.headers.is_null() => return None,
        n => unsafe { std::slice::from_raw_parts(head.headers, n) },
    };
    let mut size = method.len() + target.len() + 128;
    for h in list {
        let (name, value) = unsafe { (h.name.bytes().ok()?, h.value.bytes().ok()?) };
        if name.is_empty() || !name.iter().all(|&b| tchar(b)) || !plain_value(value) {
            return None;
        }
        size += name.len() + value.len() + 4;
    }
    let ip = super::client_ip(unsafe { head.client_address.bytes() }.ok()?).ok()?;
    let mut addr = [0u8; headers::ADDR_TEXT];
    let addr = headers::addr_text(
        SocketAddr::new(ip.to_canonical(), head.client_port),
        &mut addr,
    );
    let underscores =
        Underscores::forward_if(app.config().extensions.forward_headers_with_underscores);
    let mut out = Vec::with_capacity(size);
    let fields = list.iter().map(|h| unsafe {
        // Checked readable just above.
        (
            h.name.bytes().unwrap_or_default(),
            h.value.bytes().unwrap_or_default(),
        )
    });
    match h1req::backend_head(
        method,
        target,
        fields,
        ParsedBy::Host,
        addr,
        head.https,
        underscores,
        app.config().extensions.traceparent_generation.on(),
        &mut out,
    ) {
        Fields::Plain { body: 0, .. } => Some(Plain {
            head: out,
            head_method: method == b"HEAD",
            idempotent: matches!(
                method,
                b"GET" | b"HEAD" | b"PUT" | b"DELETE" | b"OPTIONS" | b"TRACE"
            ),
        }),
        _ => None,
    }
}

/// Forwards `p` and delivers its response; a cancel by the host stops it at its next poll.
pub(crate) async fn run(shared: &Arc<Shared>, app: &App, p: Plain) -> Result<(), Outcome> {
    let mut work = std::pin::pin!(forward(shared, app, p));
    shared
        .unless_cancelled(|cx| std::future::Future::poll(work.as_mut(), cx))
        .await
}

async fn forward(shared: &Arc<Shared>, app: &App, mut p: Plain) -> Result<(), Outcome> {
    let timeout = app.request_timeout();
    let base = p.head.len();
    let mut retried = false;
    let mut lent = crate::h1::bufs::Lent::new();
    let buf = &mut lent.bufs().backend;
    let (in_flight, mut conn, resp) = loop {
        let backend = match app.admit().await {
            Admission::Backend(b) => b,
            Admission::Page(page) => return answer(shared, *page).await,
        };
        p.head.truncate(base);
        p.head.extend_from_slice(b"MS-ASPNETCORE-TOKEN: ");
        p.head.extend_from_slice(backend.token_header.as_bytes());
        p.head.extend_from_slice(b"\r\n\r\n");
        let in_flight = backend.begin_request();
        let mut out = HostHead::new(shared);
        match backend::exchange(
            &backend,
            &p.head,
            buf,
            &mut out,
            &mut Unwatched,
            p.head_method,
            timeout,
        )
        .await
        {
            Ok((conn, resp)) => break (in_flight, conn, resp),
            Err(Failed::ClientGone) => return Err(shared.stopped()),
            Err(Failed::Forward(e)) => {
                drop(in_flight);
                if !retried && app.retry_after(&backend, &e, p.idempotent).await {
                    retried = true;
                    continue;
                }
                return answer(shared, app.failure_page(backend, e)).await;
            }
        }
    };
    let mut sink = HostOut {
        shared,
        pending: Vec::new(),
        stopped: None,
    };
    match relay::relay(&mut conn, buf, resp.len, &mut sink, resp.body, timeout).await {
        Ok(()) => {
            if resp.reusable {
                in_flight.backend().idle.put(conn);
            }
            Ok(())
        }
        // Only a delivery fails as the client's side here: the host stopped the request.
        Err(relay::Stop::Client(_)) => Err(sink.stopped.take().unwrap_or_else(|| shared.stopped())),
        Err(stop) => Err(Outcome(ancm_result::ResponseAborted, stop.to_string())),
    }
}

/// Delivers one of the engine's pages, as the general path does.
async fn answer(
    shared: &Arc<Shared>,
    page: http::Response<crate::ResponseBody>,
) -> Result<(), Outcome> {
    deliver_head(shared, &page, false);
    pump(shared, page.into_body()).await
}

/// A field's name and value as addresses and lengths into the backend's buffer (plain numbers,
/// so the future holding them stays `Send`); read only while that buffer is borrowed by
/// `response::parse`, which calls [`HeadOut::end`] before it returns.
type Span = [usize; 4];

/// The response head for the host: the fields the rules pass, delivered to `response_head` when
/// the head is complete.
struct HostHead<'a> {
    shared: &'a Arc<Shared>,
    status: u16,
    reason: (usize, usize),
    inline: [Span; INLINE_FIELDS],
    count: usize,
    spilled: Vec<Span>,
}

impl<'a> HostHead<'a> {
    fn new(shared: &'a Arc<Shared>) -> HostHead<'a> {
        HostHead {
            shared,
            status: 0,
            reason: (0, 0),
            inline: [[0; 4]; INLINE_FIELDS],
            count: 0,
            spilled: Vec::new(),
        }
    }
}

fn view(s: &Span) -> ancm_header {
    ancm_header {
        name: ancm_slice {
            ptr: s[0] as *const u8,
            len: s[1],
        },
        value: ancm_slice {
            ptr: s[2] as *const u8,
            len: s[3],
        },
    }
}

impl HeadOut for HostHead<'_> {
    fn status(&mut self, code: u16, reason: &[u8]) {
        self.status = code;
        self.reason = (reason.as_ptr() as usize, reason.len());
        self.count = 0;
        self.spilled.clear();
    }

    fn field(&mut self, name: &[u8], value: &[u8]) {
        let span = [
            name.as_ptr() as usize,
            name.len(),
            value.as_ptr() as usize,
            value.len(),
        ];
        if self.count < INLINE_FIELDS {
            self.inline[self.count] = span;
            self.count += 1;
        } else {
            self.spilled.push(span);
        }
    }

    fn end(&mut self, _body: Body) {
        let mut list = [const { std::mem::MaybeUninit::<ancm_header>::uninit() }; INLINE_FIELDS];
        let all: Vec<ancm_header>;
        let headers: &[ancm_header] = if self.spilled.is_empty() {
            for (slot, s) in list.iter_mut().zip(&self.inline[..self.count]) {
                slot.write(view(s));
            }
            // SAFETY: the first `count` slots were written just above.
            unsafe { std::slice::from_raw_parts(list.as_ptr().cast(), self.count) }
        } else {
            all = self.inline[..self.count]
                .iter()
                .chain(&self.spilled)
                .map(view)
                .collect();
            &all
        };
        let head = ancm_response_head {
            status: self.status,
            substatus: 0,
            reason: ancm_slice {
                ptr: self.reason.0 as *const u8,
                len: self.reason.1,
            },
            headers: headers.as_ptr(),
            header_count: headers.len(),
            upgraded: false,
            from_engine: false,
        };
        // SAFETY: the host's callback; the head and the backend bytes it points at (borrowed by
        // the parse that calls this) outlive the call.
        self.shared
            .call(|t, ud| unsafe { (t.response_head)(ud, &head) });
    }
}

/// The response body to the host: gathered up to [`CHUNK`] bytes (the one copy each byte
/// makes in the engine), each chunk acknowledged before the next; no framing (the host frames).
struct HostOut<'a> {
    shared: &'a Arc<Shared>,
    /// Gathered bytes: a `Vec` of exactly their length becomes `Bytes` without another
    /// allocation (a split `BytesMut` allocates its shared header).
    pending: Vec<u8>,
    /// Why a delivery stopped (the host cancelled), for the request's outcome.
    stopped: Option<Outcome>,
}

impl HostOut<'_> {
    async fn deliver(&mut self, data: Bytes, flush: bool) -> io::Result<()> {
        match write(self.shared, data, flush).await {
            Ok(()) => Ok(()),
            Err(o) => {
                self.stopped = Some(o);
                Err(io::Error::other("the host stopped the request"))
            }
        }
    }
}

impl Watch for HostOut<'_> {
    async fn read(
        &mut self,
        backend: &mut TcpStream,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, Watched> {
        Unwatched.read(backend, buf, deadline).await
    }
}

impl Out for HostOut<'_> {
    async fn data(&mut self, data: &[u8]) -> io::Result<()> {
        if self.pending.is_empty() {
            self.pending = data.to_vec();
        } else {
            self.pending.extend_from_slice(data);
        }
        if self.pending.len() >= CHUNK {
            let chunk = Bytes::from(std::mem::take(&mut self.pending));
            self.deliver(chunk, false).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.pending));
        self.deliver(chunk, true).await
    }

    fn framing(&mut self, _bytes: &[u8]) {}
}
