//! Header translation, the framing check and the admission rules on arbitrary header lists: no
//! panic, and the security invariants hold for every input (checked here, so a violation is a
//! crash): no `MS-ASPNETCORE-*` or hop-by-hop field of the client's passes, no name with an
//! underscore passes by default and no underscore twin of the proxy's own fields ever does, and a
//! head the admission rules take has at most one valid `Host` (exactly one in HTTP/1.1).
//!
//! Input format (text, so seed files are readable header blocks): the first line is the client
//! address (`ip:port`, optionally followed by ` https` or ` http`, then optionally a request
//! target for the admission rules: `/p`, `*`, `http://h/p`, or `authority` for `CONNECT h:1`);
//! every further line is `Name: value`.
//! Lines that do not parse into a header the `http` crate can hold are skipped, as a server's
//! parser would have refused them before the engine saw them.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use ancm_core::forward::admission;
use ancm_core::forward::framing;
use ancm_core::forward::headers::{
    is_underscore_twin, translate_request, translate_response, Underscores,
};
use ancm_core::ClientInfo;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fuzz_target!(|data: &[u8]| {
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut words = first.split(' ');
    let addr = words
        .next()
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .unwrap_or(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 1));
    let https = words.next() == Some("https");

    let mut h = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii_start();
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            h.append(k, v);
        }
    }
    let _ = framing::check(&h);

    let mut client = ClientInfo::http(addr);
    client.https = https;
    let token = HeaderValue::from_static("00112233445566778899aabbccddeeff");

    // The admission rules on this head, as HTTP/1.1 and as HTTP/1.0 (GET /, or the target form
    // the address line's third word names).
    let target = words.next().unwrap_or("/");
    for version in [http::Version::HTTP_11, http::Version::HTTP_10] {
        let Ok(mut r) = http::Request::builder()
            .method(if target == "authority" {
                "CONNECT"
            } else {
                "GET"
            })
            .uri(if target == "authority" { "h:1" } else { target })
            .version(version)
            .body(())
        else {
            continue;
        };
        *r.headers_mut() = h.clone();
        if admission::check_request(&r).is_ok() {
            let hosts: Vec<_> = h.get_all("host").iter().collect();
            assert!(hosts.len() <= 1, "{} Host fields admitted", hosts.len());
            assert!(
                version != http::Version::HTTP_11 || hosts.len() == 1,
                "an HTTP/1.1 head without Host admitted"
            );
            assert!(hosts.iter().all(|v| admission::valid_host(v.as_bytes())));
            assert!(r.method() != http::Method::CONNECT, "CONNECT admitted");
            assert!(r.uri().path() != "*", "GET * admitted");
        }
    }

    for underscores in [Underscores::Drop, Underscores::Forward] {
        let mut req = h.clone();
        translate_request(&mut req, &client, &token, underscores);
        for k in req.keys() {
            let n = k.as_str().as_bytes();
            assert!(!is_underscore_twin(n), "the twin {k} forwarded");
            assert!(
                underscores == Underscores::Forward || !n.contains(&b'_'),
                "{k} forwarded by default"
            );
        }
    }

    let mut req = h.clone();
    translate_request(&mut req, &client, &token, Underscores::Forward);
    let tokens: Vec<_> = req.get_all("ms-aspnetcore-token").iter().collect();
    assert_eq!(tokens, vec![&token], "token not exactly ours, once");
    for k in req.keys() {
        assert!(
            !k.as_str().starts_with("ms-aspnetcore") || k == "ms-aspnetcore-token",
            "client's {k} forwarded"
        );
    }
    for hop in HOP {
        assert!(!req.contains_key(hop), "{hop} forwarded");
    }
    let xff: Vec<_> = req.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff.len(), 1);
    let canonical = SocketAddr::new(addr.ip().to_canonical(), addr.port()).to_string();
    assert!(
        xff[0].as_bytes().ends_with(canonical.as_bytes()),
        "X-Forwarded-For {:?} does not end with {canonical}",
        xff[0]
    );
    let _ = framing::check(&req);

    let mut resp = h;
    translate_response(&mut resp);
    for hop in HOP {
        assert!(!resp.contains_key(hop), "{hop} returned");
    }
    let _ = framing::check(&resp);
});
