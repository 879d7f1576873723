//! What a request head must be before anything of it is forwarded: the rules RFC 9112 gives a
//! server (§3.2: exactly one valid `Host`, required in HTTP/1.1; §3.2.3–4: authority-form only
//! with `CONNECT`, asterisk-form only with `OPTIONS`), the refusal of `CONNECT` (a reverse proxy
//! opens no tunnels), and size limits like HTTP.sys's defaults. Every path applies these same
//! rules: the engine's own HTTP/1.1 path field by field ([`Head::feed`]), the general path and the
//! C ABI on an `http::Request` ([`check_request`]).

use http::{Request, Uri, Version};

/// The longest request target taken, in bytes (HTTP.sys's default `MaxFieldLength`, which bounds
/// the URL too); a longer one is answered 414.
pub const MAX_TARGET: usize = 16 * 1024;
/// The largest request head taken, request line and header fields together, in bytes (HTTP.sys's
/// default `MaxRequestBytes`); a larger one is answered 431. Counted as [`line_size`] plus
/// [`field_size`] of every field, so that both paths count the same however the client spaced
/// its fields.
pub const MAX_HEAD: usize = 16 * 1024;

/// Why a request is answered by the engine instead of forwarded: the status and the rule broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status (400, 414, 431 or 501).
    pub status: u16,
    /// The rule, in words for the page and the log.
    pub cause: &'static str,
}

/// The form of a request target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://host/path`.
    Absolute,
    /// `host:port`, for `CONNECT` only.
    Authority,
    /// `*`, for `OPTIONS` only.
    Asterisk,
}

impl TargetForm {
    /// The form of a target as the `http` crate parsed it.
    pub fn of_uri(uri: &Uri) -> TargetForm {
        if uri.scheme().is_some() {
            TargetForm::Absolute
        } else if uri.authority().is_some() {
            TargetForm::Authority
        } else if uri.path() == "*" {
            TargetForm::Asterisk
        } else {
            TargetForm::Origin
        }
    }
}

/// Who read the request from the client's bytes. It decides the rules that need what only that
/// parser saw: the HTTP version and the head's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedBy {
    /// The engine or ancm-serve's hyper (either path): `Host` is required when the client spoke
    /// HTTP/1.1, and the size limits apply.
    Engine {
        /// The client spoke HTTP/1.1 (HTTP/1.0 may omit `Host`).
        http11: bool,
    },
    /// The host's own HTTP server (IIS: HTTP.sys), which has already applied its version rules
    /// and its own, administrator-set size limits; the head given to the engine says neither the
    /// version nor the size. A request marked with [`HostParsed`].
    Host,
}

/// Marks a request (in its extensions) as read by the host's own HTTP server: see
/// [`ParsedBy::Host`]. The C ABI sets it on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostParsed;

/// The bytes a request line counts for in [`MAX_HEAD`]: `METHOD SP target SP HTTP/1.1 CRLF`.
pub fn line_size(method: usize, target: usize) -> usize {
    method + target + 12
}

/// The bytes a header field counts for in [`MAX_HEAD`]: `name: value CRLF`.
pub fn field_size(name: usize, value: usize) -> usize {
    name + value + 4
}

/// A request head as the rules see it, its fields fed one by one in any order.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    method: &'a [u8],
    form: TargetForm,
    target_len: usize,
    size: usize,
    hosts: u32,
    host_valid: bool,
}

impl<'a> Head<'a> {
    /// A head with request line `method target` (the target `target_len` bytes long, in `form`)
    /// and no fields yet.
    pub fn new(method: &'a [u8], form: TargetForm, target_len: usize) -> Head<'a> {
        Head {
            method,
            form,
            target_len,
            size: line_size(method.len(), target_len),
            hosts: 0,
            host_valid: true,
        }
    }

    /// Takes one header field of the client's (every one counts, also those never forwarded).
    pub fn feed(&mut self, name: &[u8], value: &[u8]) {
        self.size += field_size(name.len(), value.len());
        if name.eq_ignore_ascii_case(b"host") {
            self.hosts += 1;
            self.host_valid &= valid_host(value);
        }
    }

    /// Applies the rules, in this order: sizes (414, 431), `CONNECT` (501), the target's form,
    /// then `Host` (400).
    pub fn check(&self, by: ParsedBy) -> Result<(), Refusal> {
        let refuse = |status, cause| Err(Refusal { status, cause });
        if let ParsedBy::Engine { .. } = by {
            if self.target_len > MAX_TARGET {
                return refuse(414, "the request target is longer than 16,384 bytes");
            }
            if self.size > MAX_HEAD {
                return refuse(
                    431,
                    "the request line and header fields are larger than 16,384 bytes",
                );
            }
        }
        if self.method == b"CONNECT" {
            return refuse(
                501,
                "CONNECT is not supported: this is a reverse proxy, it opens no tunnels",
            );
        }
        match self.form {
            TargetForm::Asterisk if self.method != b"OPTIONS" => {
                return refuse(400, "the target * is only for OPTIONS (RFC 9112 §3.2.4)");
            }
            TargetForm::Authority => {
                return refuse(
                    400,
                    "an authority-form target is only for CONNECT (RFC 9112 §3.2.3)",
                );
            }
            _ => {}
        }
        if self.hosts > 1 {
            return refuse(400, "more than one Host field (RFC 9112 §3.2)");
        }
        if self.hosts == 0 && by == (ParsedBy::Engine { http11: true }) {
            return refuse(400, "an HTTP/1.1 request without Host (RFC 9112 §3.2)");
        }
        if !self.host_valid {
            return refuse(
                400,
                "the Host field is not a valid host[:port] (RFC 9112 §3.2)",
            );
        }
        Ok(())
    }
}

/// The rules for a request as the `http` crate holds it (the general path, the C ABI).
pub fn check_request<B>(req: &Request<B>) -> Result<(), Refusal> {
    let uri = req.uri();
    let form = TargetForm::of_uri(uri);
    let pq = uri.path_and_query().map_or(0, |p| p.as_str().len());
    let target_len = match (uri.scheme(), uri.authority()) {
        (Some(s), Some(a)) => s.as_str().len() + 3 + a.as_str().len() + pq,
        (None, Some(a)) => a.as_str().len(),
        _ => pq,
    };
    let by = if req.extensions().get::<HostParsed>().is_some() {
        ParsedBy::Host
    } else {
        ParsedBy::Engine {
            http11: req.version() == Version::HTTP_11,
        }
    };
    let mut head = Head::new(req.method().as_str().as_bytes(), form, target_len);
    for (name, value) in req.headers() {
        head.feed(name.as_str().as_bytes(), value.as_bytes());
    }
    head.check(by)
}

/// Whether a `Host` value is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a
/// bracketed IP literal or a reg-name / IPv4 address, no userinfo, path or whitespace. Empty is
/// valid (RFC 9112 §3.2: a target without an authority).
pub fn valid_host(value: &[u8]) -> bool {
    let (host, rest) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(end) => {
                let inside = &value[1..end];
                if inside.is_empty()
                    || !inside
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b":.-_~!$&'()*+,;=%".contains(&b))
                {
                    return false;
                }
                (&value[..0], &value[end + 1..])
            }
            None => return false,
        },
        _ => match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        },
    };
    let host_ok = host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    let port_ok = match rest.split_first() {
        None => true,
        Some((b':', port)) => port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const H11: ParsedBy = ParsedBy::Engine { http11: true };

    fn head<'a>(method: &'a str, form: TargetForm, fields: &[(&str, &str)]) -> Head<'a> {
        let mut h = Head::new(method.as_bytes(), form, 1);
        for (k, v) in fields {
            h.feed(k.as_bytes(), v.as_bytes());
        }
        h
    }

    fn status(r: Result<(), Refusal>) -> u16 {
        r.map_or_else(|r| r.status, |()| 200)
    }

    #[test]
    fn host_is_required_once_in_http11_and_must_be_valid() {
        let o = TargetForm::Origin;
        assert_eq!(status(head("GET", o, &[("Host", "x")]).check(H11)), 200);
        assert_eq!(status(head("GET", o, &[]).check(H11)), 400);
        let http10 = ParsedBy::Engine { http11: false };
        assert_eq!(status(head("GET", o, &[]).check(http10)), 200);
        assert_eq!(status(head("GET", o, &[]).check(ParsedBy::Host)), 200);
        for by in [H11, http10, ParsedBy::Host] {
            let two = head("GET", o, &[("Host", "x"), ("host", "x")]);
            assert_eq!(status(two.check(by)), 400, "{by:?}");
            let bad = head("GET", o, &[("HOST", "a b")]);
            assert_eq!(status(bad.check(by)), 400, "{by:?}");
        }
    }

    #[test]
    fn connect_asterisk_and_authority_forms() {
        let h = [("Host", "x")];
        for by in [H11, ParsedBy::Host] {
            assert_eq!(
                status(head("CONNECT", TargetForm::Authority, &h).check(by)),
                501
            );
            assert_eq!(
                status(head("CONNECT", TargetForm::Origin, &h).check(by)),
                501
            );
            assert_eq!(status(head("GET", TargetForm::Asterisk, &h).check(by)), 400);
            assert_eq!(
                status(head("OPTIONS", TargetForm::Asterisk, &h).check(by)),
                200
            );
            assert_eq!(
                status(head("GET", TargetForm::Authority, &h).check(by)),
                400
            );
            assert_eq!(status(head("GET", TargetForm::Absolute, &h).check(by)), 200);
        }
    }

    #[test]
    fn sizes_are_limited_where_the_engine_parsed() {
        let at = |target_len: usize, value: usize| {
            let mut h = Head::new(b"GET", TargetForm::Origin, target_len);
            h.feed(b"Host", b"x");
            h.feed(b"X", "v".repeat(value).as_bytes());
            h
        };
        assert_eq!(status(at(MAX_TARGET, 0).check(H11)), 431);
        assert_eq!(status(at(MAX_TARGET + 1, 0).check(H11)), 414);
        assert_eq!(status(at(MAX_TARGET + 1, 0).check(ParsedBy::Host)), 200);
        // Exactly at the limit: "GET / HTTP/1.1\r\n" + "Host: x\r\n" + "X: …\r\n".
        let fixed = line_size(3, 1) + field_size(4, 1) + field_size(1, 0);
        assert_eq!(status(at(1, MAX_HEAD - fixed).check(H11)), 200);
        assert_eq!(status(at(1, MAX_HEAD - fixed + 1).check(H11)), 431);
        assert_eq!(
            status(at(1, MAX_HEAD - fixed + 1).check(ParsedBy::Host)),
            200
        );
    }

    #[test]
    fn requests_are_checked_as_parsed() {
        let req = |m: &str, t: &str, v: Version, hosts: &[&str]| {
            let mut b = Request::builder().method(m).uri(t).version(v);
            for h in hosts {
                b = b.header("host", *h);
            }
            b.body(()).unwrap()
        };
        let s = |r: &Request<()>| status(check_request(r));
        assert_eq!(s(&req("GET", "/a", Version::HTTP_11, &["x"])), 200);
        assert_eq!(s(&req("GET", "/a", Version::HTTP_11, &[])), 400);
        assert_eq!(s(&req("GET", "/a", Version::HTTP_10, &[])), 200);
        assert_eq!(s(&req("GET", "*", Version::HTTP_11, &["x"])), 400);
        assert_eq!(s(&req("OPTIONS", "*", Version::HTTP_11, &["x"])), 200);
        assert_eq!(s(&req("CONNECT", "x:443", Version::HTTP_11, &["x"])), 501);
        assert_eq!(s(&req("GET", "x:443", Version::HTTP_11, &["x"])), 400);
        assert_eq!(s(&req("GET", "http://x/a", Version::HTTP_11, &["x"])), 200);
        let long = format!("/{}", "a".repeat(MAX_TARGET));
        assert_eq!(s(&req("GET", &long, Version::HTTP_11, &["x"])), 414);
        let mut parsed = req("GET", &long, Version::HTTP_11, &[]);
        parsed.extensions_mut().insert(HostParsed);
        assert_eq!(s(&parsed), 200);
        parsed.headers_mut().append("host", "a".parse().unwrap());
        parsed.headers_mut().append("host", "b".parse().unwrap());
        assert_eq!(s(&parsed), 400);
    }

    #[test]
    fn host_values() {
        for ok in [
            "",
            "example.com",
            "example.com:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:80",
            "x:",
            "a_b.local",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            "a b",
            "user@host",
            "x/y",
            "x:80:81",
            "x:8a",
            "[::1",
            "[]",
            "[::1]x",
            "x?",
            "\t",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }
}
