//! The backend's response head, parsed where it was read, and the client's written from its
//! bytes: names keep their case, fields their order and values their bytes (obs-text included).
//! The rules are the general path's (`forward::headers`, `forward::framing`): hop-by-hop fields
//! and those `Connection` names stop here, the backend's `Date` is replaced by ours, and framing
//! that two parsers could read differently is refused.

use std::mem::MaybeUninit;

use crate::forward::framing::{Fields, Framing};
use crate::forward::{headers, ForwardError, MAX_RESPONSE_HEAD};

/// Fields parsed on the stack; a head with more is parsed again into [`MAX_FIELDS`] on the heap.
const STACK_FIELDS: usize = 64;
/// The most response header fields accepted (as the general path's client).
const MAX_FIELDS: usize = 1024;

/// How the response body is delimited on the backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// None (HEAD, 204, 304), whatever the headers say.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked; re-chunked to the client, trailers dropped.
    Chunked,
    /// Until the backend closes; chunked to the client.
    UntilClose,
}

/// A final response head at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, its final empty line included.
    pub len: usize,
    /// How its body is delimited.
    pub body: Body,
    /// The backend connection may carry another request after this response.
    pub reusable: bool,
}

/// What the start of the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An informational (1xx) head of this many bytes, not forwarded: the final one follows.
    Informational(usize),
    /// The final head; the client's head is written.
    Final(Head),
}

/// Where the fields of a final head go, once the rules have picked them: the client's head bytes
/// (`Vec<u8>`, this path), or a host's header list (the C ABI).
pub trait HeadOut {
    /// The status line's code and reason, first.
    fn status(&mut self, code: u16, reason: &[u8]);
    /// One field to pass, in the backend's order, with its bytes as they came.
    fn field(&mut self, name: &[u8], value: &[u8]);
    /// The head is complete; its body is delimited as `body` says.
    fn end(&mut self, body: Body);
}

/// The client's head, written as bytes: our `Date`, and the chunked framing when re-chunked.
impl HeadOut for Vec<u8> {
    fn status(&mut self, code: u16, reason: &[u8]) {
        self.clear();
        self.extend_from_slice(b"HTTP/1.1 ");
        self.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
        self.push(b' ');
        self.extend_from_slice(reason);
        self.extend_from_slice(b"\r\n");
    }

    fn field(&mut self, name: &[u8], value: &[u8]) {
        super::put_field(self, name, value);
    }

    fn end(&mut self, body: Body) {
        super::date::append(self);
        if matches!(body, Body::Chunked | Body::UntilClose) {
            self.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        self.extend_from_slice(b"\r\n");
    }
}

/// Parses the response at the start of `buf`, the answer to a `HEAD` request when
/// `head_method`. For a final head, `out` gets its status and the fields that pass.
pub fn parse(
    buf: &[u8],
    head_method: bool,
    out: &mut impl HeadOut,
) -> Result<Parsed, ForwardError> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_FIELDS];
    match parse_with(buf, &mut fields, head_method, out) {
        Err(httparse::Error::TooManyHeaders) => {
            let mut fields = Vec::with_capacity(MAX_FIELDS);
            fields.resize_with(MAX_FIELDS, MaybeUninit::uninit);
            parse_with(buf, &mut fields, head_method, out).map_err(invalid)?
        }
        r => r.map_err(invalid)?,
    }
}

/// [`parse`] with room for `fields.len()` fields; the outer error is httparse's.
fn parse_with<'b>(
    buf: &'b [u8],
    fields: &mut [MaybeUninit<httparse::Header<'b>>],
    head_method: bool,
    out: &mut impl HeadOut,
) -> Result<Result<Parsed, ForwardError>, httparse::Error> {
    let mut resp = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, fields)?;
    Ok(finish(resp, status, head_method, out))
}

fn invalid(e: httparse::Error) -> ForwardError {
    ForwardError::InvalidResponse(format!("its response head is malformed: {e}"))
}

fn finish(
    resp: httparse::Response<'_, '_>,
    status: httparse::Status<usize>,
    head_method: bool,
    out: &mut impl HeadOut,
) -> Result<Parsed, ForwardError> {
    let len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(Parsed::Partial),
    };
    if len > MAX_RESPONSE_HEAD {
        return Err(ForwardError::InvalidResponse(format!(
            "its response headers exceed {} KiB",
            MAX_RESPONSE_HEAD / 1024
        )));
    }
    let code = resp.code.unwrap_or(0);
    match code {
        101 => {
            return Err(ForwardError::InvalidResponse(
                "101 Switching Protocols to a request that asked for no upgrade".into(),
            ))
        }
        100..=199 => return Ok(Parsed::Informational(len)),
        200..=999 => {}
        _ => {
            return Err(ForwardError::InvalidResponse(format!(
                "status {code} is not a valid status"
            )))
        }
    }
    // HTTP/1.0 connections are not kept: keep-alive there is an extension we do not rely on.
    let mut reusable = resp.version == Some(1);
    let mut named_by_connection = false;
    let mut framing = Fields::default();
    for f in resp.headers.iter() {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            let o = headers::ConnectionOptions::parse(f.value);
            reusable &= !o.close;
            named_by_connection |= o.names_fields;
        }
        framing.feed(name, f.value);
    }
    let framing = framing
        .finish()
        .map_err(|rule| ForwardError::InvalidResponse(rule.to_owned()))?;
    let body = if head_method || code == 204 || code == 304 {
        Body::None
    } else {
        match framing {
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked,
            Framing::Unframed => Body::UntilClose,
        }
    };
    if body == Body::UntilClose {
        reusable = false;
    }
    out.status(code, resp.reason.unwrap_or("").as_bytes());
    // A repeated (identical) Content-Length goes on once, and none with a 204 or 304 (RFC 9110
    // §8.6), as the general path's server writes them.
    let mut length_written = code == 204 || code == 304;
    for f in resp.headers.iter() {
        let name = f.name.as_bytes();
        if headers::is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"date")
            || (named_by_connection && is_named_by_connection(resp.headers, name))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if length_written {
                continue;
            }
            length_written = true;
        }
        out.field(name, f.value);
    }
    out.end(body);
    Ok(Parsed::Final(Head {
        len,
        body,
        reusable,
    }))
}

/// Whether a `Connection` field of `fields` names `name`.
fn is_named_by_connection(fields: &[httparse::Header<'_>], name: &[u8]) -> bool {
    fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("connection"))
        .flat_map(|f| f.value.split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8], head_method: bool) -> (Head, String) {
        let mut out = Vec::new();
        match parse(raw, head_method, &mut out) {
            Ok(Parsed::Final(h)) => (h, String::from_utf8_lossy(&out).into_owned()),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn without_date(s: &str) -> String {
        s.lines()
            .filter(|l| !l.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn fields_pass_with_their_case_order_and_bytes_minus_hop_by_hop_and_date() {
        let raw = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Obs: caf\xe9\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nset-cookie: b=2\r\nContent-Length: 2\r\n\r\nok";
        let (h, out) = head(raw, false);
        assert_eq!(
            h,
            Head {
                len: raw.len() - 2,
                body: Body::Length(2),
                reusable: true
            }
        );
        assert_eq!(
            without_date(&out),
            "HTTP/1.1 200 OK\nSet-Cookie: a=1\nX-Obs: caf\u{fffd}\nset-cookie: b=2\nContent-Length: 2\n"
        );
        assert_eq!(out.matches("\r\ndate: ").count(), 1, "{out}");
        assert!(!out.contains("2001"));
    }

    #[test]
    fn body_delimiting() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (h, out) = head(chunked, false);
        assert_eq!((h.body, h.reusable), (Body::Chunked, true));
        assert_eq!(
            out.matches("transfer-encoding: chunked").count(),
            1,
            "{out}"
        );
        assert!(!out.contains("Transfer-Encoding"), "{out}");

        let (h, out) = head(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n", false);
        assert_eq!((h.body, h.reusable), (Body::UntilClose, false));
        assert!(out.contains("transfer-encoding: chunked"), "{out}");

        let (h, out) = head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true);
        assert_eq!((h.body, h.reusable), (Body::None, true));
        assert!(out.contains("Content-Length: 9") && !out.contains("transfer-encoding"));

        for code in ["204 No Content", "304 Not Modified", "204", "204 "] {
            let raw = format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n");
            let (h, out) = head(raw.as_bytes(), false);
            assert_eq!(h.body, Body::None, "{code}");
            assert!(
                !out.to_ascii_lowercase().contains("content-length"),
                "{out}"
            );
        }
        let (_, out) = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n",
            false,
        );
        assert_eq!(
            out.to_ascii_lowercase().matches("content-length").count(),
            1,
            "{out}"
        );
        let (h, _) = head(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!h.reusable);
        let (h, _) = head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!h.reusable);
    }

    #[test]
    fn informational_heads_are_skipped_and_partial_ones_wait() {
        let mut out = Vec::new();
        assert_eq!(
            parse(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200",
                false,
                &mut out
            )
            .unwrap(),
            Parsed::Informational(40)
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nX: ", false, &mut out).unwrap(),
            Parsed::Partial
        );
    }

    #[test]
    fn many_fields_are_accepted_up_to_the_limit() {
        let raw = format!(
            "HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n",
            "Set-Cookie: a=b\r\n".repeat(500)
        );
        let (_, out) = head(raw.as_bytes(), false);
        assert_eq!(out.matches("Set-Cookie").count(), 500);
        let raw = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_FIELDS + 1)
        );
        assert!(parse(raw.as_bytes(), false, &mut Vec::new()).is_err());
    }

    #[test]
    fn ambiguous_or_malformed_heads_are_invalid() {
        let big = format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
            "a".repeat(MAX_RESPONSE_HEAD)
        );
        for raw in [
            &b"HTTP/1.1 abc OK\r\n\r\n"[..],
            b"hello there\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            b"HTTP/1.1 099 Odd\r\n\r\n",
            big.as_bytes(),
        ] {
            assert!(
                matches!(
                    parse(raw, false, &mut Vec::new()),
                    Err(ForwardError::InvalidResponse(_))
                ),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
