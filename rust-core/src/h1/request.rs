//! The client's request head, parsed where it was read, and the backend's head written from its
//! bytes: names keep their case and fields their order because nothing is re-encoded.
//!
//! Only plain requests are taken here: HTTP/1.1, an origin-form target of ordinary characters, no
//! `Transfer-Encoding`, `Upgrade`, `Expect` or other hop-by-hop fields beyond `Connection:
//! keep-alive|close`, a head the admission rules take (`forward::admission`: one `Host` …; a head
//! they refuse is answered here), and a body (if any) of at most [`MAX_BODY`] bytes. Anything
//! else is [`Parsed::Other`], for the general path, whose rules are the same but slower to apply.

use std::mem::MaybeUninit;

use crate::forward::admission::{self, ParsedBy, Refusal, TargetForm};
use crate::forward::framing::{Fields as FramingFields, Framing};
use crate::forward::headers::{self, Underscores};
use crate::forward::trace::{self, Trace, TraceId};

/// The most request header fields this path takes (hyper's server default): a head with more goes
/// to the general path.
const MAX_FIELDS: usize = 100;
/// The longest request target taken here: the general path's URI type holds at most this many
/// bytes, and answers longer ones 414.
pub const MAX_TARGET: usize = u16::MAX as usize - 1;
/// The largest request body taken here; it is read whole before the request is sent. Larger
/// bodies stream through the general path.
pub const MAX_BODY: usize = 64 * 1024;

/// A plain request head at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, its final empty line included.
    pub len: usize,
    /// Bytes of the body that follows it (all of them are in the buffer).
    pub body: usize,
    /// The client asked to close the connection after this response.
    pub close: bool,
    /// `HEAD`: the response has no body whatever its headers say.
    pub head_method: bool,
    /// The method is idempotent (RFC 9110 §9.2.2), so the request may be sent again.
    pub idempotent: bool,
    /// The trace id of the `traceparent` the app gets (`forward::trace`), if any.
    pub trace_id: Option<TraceId>,
}

/// What the start of the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not all of the head yet: read more.
    Partial,
    /// A whole plain head, but not all of its body yet: read more.
    AwaitingBody,
    /// A plain request; the backend's head is written.
    Plain(Head),
    /// A head the admission rules refuse (`forward::admission`): answered, never forwarded.
    Refused(Refused),
    /// Something for the general path (or for its error response), untouched.
    Other,
}

/// A refused request head at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Why, with the status to answer.
    pub refusal: Refusal,
    /// `HEAD`: the answer has no body.
    pub head_method: bool,
}

/// Parses the request at the start of `buf`. For a plain one, `out` gets the backend's head up to
/// and excluding the pairing token line and the empty line (they depend on the backend chosen):
/// request line, the client's fields minus hop-by-hop ones, any `MS-ASPNETCORE-*` and those with
/// an underscore that `underscores` drops, then `X-Forwarded-For` (the client's list, if any,
/// with `client_addr` appended) and `X-Forwarded-Proto`, and the `traceparent` the trace rule
/// (`forward::trace::decide`, `generate_trace`) gives. A whole head the admission rules refuse
/// is [`Parsed::Refused`] (one that goes to the general path meets the same rules there).
pub fn parse(
    buf: &[u8],
    client_addr: &[u8],
    https: bool,
    underscores: Underscores,
    generate_trace: bool,
    out: &mut Vec<u8>,
) -> Parsed {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    if method == "CONNECT"
        || !target.starts_with('/')
        || target.len() > MAX_TARGET
        || !target.bytes().all(plain_target_byte)
    {
        return Parsed::Other;
    }
    let (close, body, tracing) = match backend_head(
        method.as_bytes(),
        target.as_bytes(),
        req.headers.iter().map(|f| (f.name.as_bytes(), f.value)),
        ParsedBy::Engine { http11: true },
        client_addr,
        https,
        underscores,
        generate_trace,
        out,
    ) {
        Fields::Plain { close, body, trace } => (close, body, trace),
        Fields::Refused(refusal) => {
            return Parsed::Refused(Refused {
                refusal,
                head_method: method == "HEAD",
            })
        }
        Fields::Other => return Parsed::Other,
    };
    let body = match usize::try_from(body) {
        Ok(n) if n <= MAX_BODY => n,
        _ => return Parsed::Other,
    };
    if buf.len() - len < body {
        return Parsed::AwaitingBody;
    }
    Parsed::Plain(Head {
        len,
        body,
        close,
        head_method: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        ),
        trace_id: tracing.trace_id(),
    })
}

/// What [`backend_head`] made of a request's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// A plain request: the backend's head is written.
    Plain {
        /// The client asked to close its connection after this response.
        close: bool,
        /// The body's length (`Content-Length`; 0 without one).
        body: u64,
        /// What became of its trace fields (`forward::trace`).
        trace: Trace,
    },
    /// The admission rules refuse the head.
    Refused(Refusal),
    /// Something for the general path.
    Other,
}

/// The rules of this path for a request head, whoever parsed it (the engine here, or the C ABI's
/// host, `by`): writes into `out` the backend's head up to and excluding the pairing token line
/// (see [`parse`]) from the request line's `method` and `target` (already checked plain) and the
/// client's `fields`, in order, and the `traceparent` the trace rule gives (`generate_trace`:
/// the app's `traceparentGeneration`).
#[allow(clippy::too_many_arguments)]
pub fn backend_head<'a>(
    method: &[u8],
    target: &[u8],
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    by: ParsedBy,
    client_addr: &[u8],
    https: bool,
    underscores: Underscores,
    generate_trace: bool,
    out: &mut Vec<u8>,
) -> Fields {
    // Decided before the fields are written, so that a kept `traceparent` and `tracestate` stay
    // in place, byte for byte, and a replaced one's `tracestate` is left out.
    let tracing = trace::decide(
        fields
            .clone()
            .filter(|(name, _)| is_named(name, b"traceparent"))
            .map(|(_, value)| value),
        generate_trace,
    );
    out.clear();
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut framing = FramingFields::default();
    let mut admitted = admission::Head::new(method, TargetForm::Origin, target.len());
    let mut close = false;
    // The client's own X-Forwarded-For / -Proto lists, joined (rare: a proxy in front).
    let mut xff: Vec<u8> = Vec::new();
    let mut xfp: Vec<u8> = Vec::new();
    for (name, value) in fields {
        admitted.feed(name, value);
        if name.eq_ignore_ascii_case(b"connection") {
            let o = headers::ConnectionOptions::parse(value);
            if o.names_fields {
                return Fields::Other;
            }
            close |= o.close;
            continue;
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || headers::is_hop_by_hop(name)
        {
            return Fields::Other;
        }
        if headers::is_reserved(name) || headers::drops_underscored(name, underscores) {
            continue;
        }
        if let Trace::Generated(_) = tracing {
            if is_named(name, b"traceparent") || is_named(name, b"tracestate") {
                continue;
            }
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            join(&mut xff, value);
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            join(&mut xfp, value);
            continue;
        }
        let repeated_length = framing.has_length() && name.eq_ignore_ascii_case(b"content-length");
        framing.feed(name, value);
        if repeated_length {
            // Identical (else refused below): sent once, as the general path does; backends
            // such as Kestrel refuse a request with two.
            continue;
        }
        super::put_field(out, name, value);
    }
    if let Err(refusal) = admitted.check(by) {
        return Fields::Refused(refusal);
    }
    let body = match framing.finish() {
        Ok(Framing::Unframed) => 0,
        Ok(Framing::Length(n)) => n,
        _ => return Fields::Other,
    };
    put_list(out, b"X-Forwarded-For: ", &xff, client_addr);
    put_list(
        out,
        b"X-Forwarded-Proto: ",
        &xfp,
        if https { b"https" } else { b"http" },
    );
    if let Trace::Generated(p) = tracing {
        super::put_field(out, b"traceparent", p.as_bytes());
    }
    Fields::Plain {
        close,
        body,
        trace: tracing,
    }
}

/// Whether a field's `name` is `lower` (given in lowercase), in any case; the length is
/// compared first, so most fields cost one comparison.
fn is_named(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.eq_ignore_ascii_case(lower)
}

/// Writes the field line `name` with the client's `list` (if any) and then `ours`.
fn put_list(out: &mut Vec<u8>, name: &[u8], list: &[u8], ours: &[u8]) {
    out.extend_from_slice(name);
    if !list.is_empty() {
        out.extend_from_slice(list);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(ours);
    out.extend_from_slice(b"\r\n");
}

/// Appends `value` to a comma-separated list.
fn join(list: &mut Vec<u8>, value: &[u8]) {
    if !list.is_empty() {
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(value);
}

/// Whether a target byte is one every URI parser reads the same way (RFC 3986 `pchar`, `/`, `?`
/// and `%`); anything else goes to the general path, which decides.
pub fn plain_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain_with(raw: &str, underscores: Underscores) -> (Head, String) {
        let mut out = Vec::new();
        match parse(
            raw.as_bytes(),
            b"10.0.0.1:5000",
            false,
            underscores,
            false,
            &mut out,
        ) {
            Parsed::Plain(h) => (h, String::from_utf8(out).unwrap()),
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn plain(raw: &str) -> (Head, String) {
        plain_with(raw, Underscores::Drop)
    }

    fn other(raw: &str) -> Parsed {
        parse(
            raw.as_bytes(),
            b"10.0.0.1:5000",
            false,
            Underscores::Drop,
            false,
            &mut Vec::new(),
        )
    }

    #[test]
    fn heads_the_admission_rules_refuse_are_answered_here() {
        let long_target = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(admission::MAX_TARGET)
        );
        let big_head = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
            "c".repeat(admission::MAX_HEAD)
        );
        for (raw, status) in [
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x y\r\n\r\n", 400),
            ("HEAD / HTTP/1.1\r\nX: 1\r\n\r\n", 400),
            (long_target.as_str(), 414),
            (big_head.as_str(), 431),
        ] {
            match other(raw) {
                Parsed::Refused(r) => {
                    assert_eq!(r.refusal.status, status, "{raw:.60?}");
                    assert_eq!(r.head_method, raw.starts_with("HEAD"));
                }
                p => panic!("{raw:.60?}: {p:?}"),
            }
        }
    }

    #[test]
    fn underscored_names_are_dropped_unless_asked_and_twins_always() {
        let raw =
            "GET / HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nMS_ASPNETCORE_TOKEN: f\r\n\
                   Transfer_Encoding: chunked\r\nx_app: 1\r\nX-Kept: 2\r\n\r\n";
        let (_, out) = plain(raw);
        assert!(!out.contains('_'), "{out}");
        assert!(out.contains("X-Kept: 2\r\n"), "{out}");
        assert!(out.ends_with("X-Forwarded-For: 10.0.0.1:5000\r\nX-Forwarded-Proto: http\r\n"));
        let (_, out) = plain_with(raw, Underscores::Forward);
        assert_eq!(out.matches('_').count(), 1, "{out}");
        assert!(out.contains("x_app: 1\r\n"), "{out}");
    }

    #[test]
    fn a_plain_get_keeps_case_and_order_and_gets_the_forwarded_fields() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-CamelCase: v\r\nconnection: keep-alive\r\nAccept: */*\r\n\r\n";
        let (h, out) = plain(raw);
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-CamelCase: v\r\nAccept: */*\r\n\
             X-Forwarded-For: 10.0.0.1:5000\r\nX-Forwarded-Proto: http\r\n"
        );
        assert_eq!(
            h,
            Head {
                len: raw.len(),
                body: 0,
                close: false,
                head_method: false,
                idempotent: true,
                trace_id: None,
            }
        );
    }

    #[test]
    fn forged_ms_aspnetcore_fields_are_dropped_and_forwarded_lists_extended() {
        let (_, out) = plain(
            "POST / HTTP/1.1\r\nHost: x\r\nMS-ASPNETCORE-TOKEN: forged\r\nms-aspnetcore-event: shutdown\r\nX-IIS-WindowsAuthToken: 4a8\r\n\
             X-Forwarded-For: 1.1.1.1:1\r\nx-forwarded-for: 2.2.2.2:2\r\nX-Forwarded-Proto: https\r\n\r\n",
        );
        assert!(!out.to_ascii_lowercase().contains("ms-aspnetcore"), "{out}");
        assert!(
            !out.to_ascii_lowercase().contains("windowsauthtoken"),
            "{out}"
        );
        assert!(out.ends_with(
            "X-Forwarded-For: 1.1.1.1:1, 2.2.2.2:2, 10.0.0.1:5000\r\nX-Forwarded-Proto: https, http\r\n"
        ), "{out}");
    }

    fn traced(raw: &str) -> (Head, String) {
        let mut out = Vec::new();
        match parse(
            raw.as_bytes(),
            b"10.0.0.1:5000",
            false,
            Underscores::Drop,
            true,
            &mut out,
        ) {
            Parsed::Plain(h) => (h, String::from_utf8(out).unwrap()),
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn traceparent_kept_in_place_generated_or_replaced() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let raw =
            format!("GET / HTTP/1.1\r\ntracestate: a=1\r\nHost: x\r\nTraceParent: {tp}\r\n\r\n");
        let (h, out) = traced(&raw);
        assert_eq!(h.trace_id.unwrap().as_str(), &tp[3..35]);
        assert!(
            out.starts_with(&format!(
                "GET / HTTP/1.1\r\ntracestate: a=1\r\nHost: x\r\nTraceParent: {tp}\r\n"
            )),
            "{out}"
        );
        for raw in [
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\ntraceparent: 00-bad\r\ntracestate: a=1\r\n\r\n",
        ] {
            let (h, out) = traced(raw);
            let id = h.trace_id.unwrap();
            let line = out.lines().last().unwrap();
            let value = line.strip_prefix("traceparent: ").unwrap();
            assert_eq!(trace::valid(value.as_bytes()), Some(id), "{out}");
            assert_eq!(out.matches("trace").count(), 1, "{out}");
        }
        // Off: nothing added, nothing removed.
        let (h, out) = plain("GET / HTTP/1.1\r\nHost: x\r\ntraceparent: 00-bad\r\n\r\n");
        assert_eq!(h.trace_id, None);
        assert!(out.contains("traceparent: 00-bad\r\n"), "{out}");
        assert_eq!(out.matches("trace").count(), 1, "{out}");
    }

    #[test]
    fn small_bodies_are_waited_for_and_counted() {
        let raw = "PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(other(raw), Parsed::AwaitingBody);
        let (h, _) = plain(&format!("{raw}lo"));
        assert_eq!((h.len, h.body, h.idempotent), (raw.len() - 3, 5, true));
        let (_, out) =
            plain("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx");
        assert_eq!(out.matches("ontent-").count(), 1, "{out}");
        assert_eq!(other("GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
    }

    #[test]
    fn close_and_head_are_noted() {
        let (h, out) = plain("HEAD / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n");
        assert!(h.close && h.head_method && h.idempotent);
        assert!(!out.to_ascii_lowercase().contains("connection"), "{out}");
        let (h, _) = plain("PATCH / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!h.idempotent && !h.close && !h.head_method);
    }

    #[test]
    fn everything_else_goes_to_the_general_path() {
        let big = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let long_target = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(MAX_TARGET)
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_FIELDS)
        );
        for raw in [
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /a\"b HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /a{b} HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nKeep-Alive: 5\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx",
            "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n",
            &big,
            &many,
            &long_target,
        ] {
            assert_eq!(other(raw), Parsed::Other, "{raw:?}");
        }
    }
}
