//! The engine's own HTTP/1.1 path on arbitrary bytes, read both as a client's request and as a
//! backend's response: no panic, and what it writes is a well-formed head that keeps the
//! security rules (checked here, so a violation is a crash).
//!
//! - A plain request's backend head parses again as one request head (once the token line and
//!   the empty line are added), carries no `MS-ASPNETCORE-*` field of the client's, no
//!   hop-by-hop field, and ends with our `X-Forwarded-For` / `-Proto`.
//! - A final response's client head parses again as one response head with no hop-by-hop field
//!   but our own `transfer-encoding: chunked`, and never both `Content-Length` and
//!   `Transfer-Encoding`.
#![no_main]

use ancm_core::forward::headers::{is_hop_by_hop, is_reserved};
use ancm_core::h1::{request, response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if let request::Parsed::Plain(head) = request::parse(data, b"192.0.2.7:80", false, &mut out) {
        assert!(head.len + head.body <= data.len());
        out.extend_from_slice(b"MS-ASPNETCORE-TOKEN: t\r\n\r\n");
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut fields);
        assert_eq!(
            req.parse(&out),
            Ok(httparse::Status::Complete(out.len())),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        let n = req.headers.len();
        for (i, f) in req.headers.iter().enumerate() {
            let name = f.name.as_bytes();
            assert!(!is_hop_by_hop(name), "{} forwarded", f.name);
            assert!(
                !is_reserved(name) || i == n - 1,
                "the client's {} forwarded",
                f.name
            );
        }
        assert!(req.headers[n - 3].name == "X-Forwarded-For");
        assert!(req.headers[n - 3].value.ends_with(b"192.0.2.7:80"));
        assert!(req.headers[n - 2].name == "X-Forwarded-Proto");
    }

    let mut out = Vec::new();
    if let Ok(response::Parsed::Final(_)) = response::parse(data, false, &mut out) {
        let mut fields = [httparse::EMPTY_HEADER; 1100];
        let mut resp = httparse::Response::new(&mut fields);
        assert_eq!(
            resp.parse(&out),
            Ok(httparse::Status::Complete(out.len())),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        let mut length = false;
        let mut chunked = false;
        for f in resp.headers.iter() {
            if f.name == "transfer-encoding" && f.value == b"chunked" {
                chunked = true;
                continue;
            }
            assert!(!is_hop_by_hop(f.name.as_bytes()), "{} returned", f.name);
            length |= f.name.eq_ignore_ascii_case("content-length");
        }
        assert!(!(length && chunked), "both Content-Length and chunked");
    }
});
