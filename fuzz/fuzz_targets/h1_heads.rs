//! The engine's own HTTP/1.1 path on arbitrary bytes, read both as a client's request and as a
//! backend's response: no panic, and what it writes is a well-formed head that keeps the
//! security rules (checked here, so a violation is a crash).
//!
//! - A plain request's backend head parses again as one request head (once the token line and
//!   the empty line are added), carries no `MS-ASPNETCORE-*` field of the client's, no
//!   hop-by-hop field, no name with an underscore (by default) and no underscore twin of the
//!   proxy's own fields (ever), exactly one valid `Host`, no `CONNECT`, a target and head within
//!   the admission limits, and ends with our `X-Forwarded-For` / `-Proto`.
//! - A refused one is refused with one of the admission statuses (400, 414, 431, 501).
//! - A final response's client head parses again as one response head with no hop-by-hop field
//!   but our own `transfer-encoding: chunked`, and never both `Content-Length` and
//!   `Transfer-Encoding`.
#![no_main]

use ancm_core::forward::admission;
use ancm_core::forward::headers::{is_hop_by_hop, is_reserved, is_underscore_twin, Underscores};
use ancm_core::h1::{request, response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for underscores in [Underscores::Drop, Underscores::Forward] {
        plain_request(data, underscores);
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

/// `data` as a client's request head, with underscored names treated as `underscores` says.
fn plain_request(data: &[u8], underscores: Underscores) {
    let mut out = Vec::new();
    let head = match request::parse(
        data,
        b"192.0.2.7:80",
        false,
        underscores,
        data.first().is_some_and(|b| b & 1 == 1),
        &mut out,
    ) {
        request::Parsed::Plain(head) => head,
        request::Parsed::Refused(r) => {
            assert!(
                [400, 414, 431, 501].contains(&r.refusal.status),
                "refused with {}",
                r.refusal.status
            );
            return;
        }
        _ => return,
    };
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
    assert_ne!(req.method, Some("CONNECT"));
    let target = req.path.unwrap_or_default();
    assert!(target.starts_with('/') && target.len() <= admission::MAX_TARGET);
    // The client's head within the limit, counted as the rules count it.
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut client = httparse::Request::new(&mut fields);
    if let Ok(httparse::Status::Complete(_)) = client.parse(data) {
        let size = admission::line_size(client.method.unwrap_or_default().len(), target.len())
            + client
                .headers
                .iter()
                .map(|f| admission::field_size(f.name.len(), f.value.len()))
                .sum::<usize>();
        assert!(
            size <= admission::MAX_HEAD,
            "a head of {size} bytes admitted"
        );
    }
    let n = req.headers.len();
    let mut hosts = 0;
    for (i, f) in req.headers.iter().enumerate() {
        let name = f.name.as_bytes();
        assert!(!is_hop_by_hop(name), "{} forwarded", f.name);
        assert!(
            !is_reserved(name) || i == n - 1,
            "the client's {} forwarded",
            f.name
        );
        assert!(!is_underscore_twin(name), "the twin {} forwarded", f.name);
        assert!(
            underscores == Underscores::Forward || !name.contains(&b'_'),
            "{} forwarded by default",
            f.name
        );
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            assert!(admission::valid_host(f.value), "an invalid Host admitted");
        }
    }
    assert_eq!(hosts, 1, "{hosts} Host fields admitted");
    // A generated traceparent goes after the forwarding fields, before the token.
    let generated = usize::from(req.headers[n - 2].name == "traceparent");
    if generated == 1 {
        assert!(
            head.trace_id.is_some(),
            "a traceparent written but no trace id"
        );
        assert_eq!(
            req.headers
                .iter()
                .filter(|f| f.name.eq_ignore_ascii_case("traceparent"))
                .count(),
            1,
            "the client's traceparent kept beside a generated one"
        );
    }
    assert!(req.headers[n - 3 - generated].name == "X-Forwarded-For");
    assert!(req.headers[n - 3 - generated]
        .value
        .ends_with(b"192.0.2.7:80"));
    assert!(req.headers[n - 2 - generated].name == "X-Forwarded-Proto");
}
