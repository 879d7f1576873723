//! Property tests for the header translation and framing rules (issue 9): generated header lists
//! — forged `MS-ASPNETCORE-*`, hop-by-hop and `Connection`-named headers, repeated
//! `X-Forwarded-For`, arbitrary obs-text bytes — checked against invariants stated here
//! independently of the engine's code. Kept as an integration test so it uses only the public
//! API and never collides with edits inside `forward/`.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ancm_core::forward::framing;
use ancm_core::forward::headers::{
    is_underscore_twin, remove_hop_by_hop, translate_request, translate_response, Underscores,
};
use ancm_core::ClientInfo;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

/// The hop-by-hop headers, as RFC 9110 §7.6.1 and common practice list them (written out again
/// here rather than imported, so the test checks the rule and not the engine's copy of it).
const HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Names the generator mixes in: the ones the rules are about, in assorted cases.
const INTERESTING: [&str; 27] = [
    "X_Forwarded_For",
    "MS_ASPNETCORE_TOKEN",
    "Transfer_Encoding",
    "content_length",
    "x_app_key",
    "MS-ASPNETCORE-TOKEN",
    "ms-aspnetcore-token",
    "Ms-AspNetCore-ClientCert",
    "MS-ASPNETCORE-WINAUTHTOKEN",
    "ms-aspnetcore-event",
    "ms-aspnetcorex",
    "Connection",
    "connection",
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    "X-Forwarded-For",
    "x-forwarded-for",
    "X-Forwarded-Proto",
    "Content-Length",
    "Host",
    "Cookie",
    "X-Custom-Hop",
    "Date",
];

fn name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(&INTERESTING[..]).prop_map(str::to_owned),
        1 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}",
    ]
}

/// A header value: visible ASCII with spaces and tabs, sometimes obs-text bytes (0x80–0xFF),
/// which HTTP/1.1 parsers accept and `HeaderValue` holds as opaque bytes.
fn value_strategy(obs_text: bool) -> impl Strategy<Value = Vec<u8>> {
    let byte = if obs_text {
        prop_oneof![
            8 => 0x20u8..0x7f,
            1 => Just(b'\t'),
            1 => 0x80u8..=0xff,
        ]
        .boxed()
    } else {
        prop_oneof![8 => 0x20u8..0x7f, 1 => Just(b'\t')].boxed()
    };
    proptest::collection::vec(byte, 0..24)
}

/// A `Connection` value naming other headers (some real, some not), comma-separated with
/// assorted whitespace and empty elements.
fn connection_value_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        (
            name_strategy(),
            proptest::sample::select(vec!["", " ", "\t", "  "]),
        ),
        0..5,
    )
    .prop_map(|items| {
        let mut s = String::new();
        for (i, (n, ws)) in items.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(ws);
            s.push_str(n);
            s.push_str(ws);
        }
        s.into_bytes()
    })
}

fn headers_strategy(obs_text: bool) -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    proptest::collection::vec(
        name_strategy().prop_flat_map(move |n| {
            let v = if n.eq_ignore_ascii_case("connection") {
                prop_oneof![connection_value_strategy(), value_strategy(obs_text)].boxed()
            } else {
                value_strategy(obs_text).boxed()
            };
            (Just(n), v)
        }),
        0..16,
    )
}

fn addr_strategy() -> impl Strategy<Value = SocketAddr> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        // IPv4-mapped IPv6, as a dual-stack listener reports IPv4 clients.
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    (ip, any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// Builds a map from generated pairs, keeping only what `http` can hold (as a server would have
/// refused the rest before the engine saw it).
fn to_map(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            h.append(k, v);
        }
    }
    h
}

/// The lower-case names the client's `Connection` headers list, read from the raw bytes (an
/// element that is not a valid name names nothing).
fn connection_named(h: &HeaderMap) -> HashSet<String> {
    h.get_all("connection")
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|e| String::from_utf8_lossy(e.trim_ascii()).to_ascii_lowercase())
        .filter(|e| HeaderName::from_bytes(e.as_bytes()).is_ok())
        .collect()
}

/// The client's address as it must appear in X-Forwarded-For: `ip:port`, IPv6 in brackets, an
/// IPv4-mapped IPv6 address shown as the IPv4 address it is.
fn expected_xff_entry(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(v4) => format!("{v4}:{}", a.port()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{}", a.port()),
            None => format!("[{v6}]:{}", a.port()),
        },
    }
}

fn is_ours(name: &str) -> bool {
    name.starts_with("ms-aspnetcore") || name == "x-forwarded-for" || name == "x-forwarded-proto"
}

fn check_translation(
    pairs: &[(String, Vec<u8>)],
    addr: SocketAddr,
    https: bool,
    underscores: Underscores,
) {
    let before = to_map(pairs);
    let named = connection_named(&before);
    let mut h = before.clone();
    let token = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let mut client = ClientInfo::http(addr);
    client.https = https;
    translate_request(&mut h, &client, &token, underscores);

    // No underscored name passes by default; the twins of the proxy's own fields never do.
    for k in h.keys() {
        let n = k.as_str().as_bytes();
        assert!(
            !is_underscore_twin(n) && (underscores == Underscores::Forward || !n.contains(&b'_')),
            "{k} forwarded under {underscores:?}"
        );
    }

    // Only our token, exactly once; no other MS-ASPNETCORE-* (the client offered no certificate
    // and no Windows token here, so the engine has none of its own to add).
    let tokens: Vec<_> = h.get_all("ms-aspnetcore-token").iter().collect();
    assert_eq!(tokens, vec![&token], "token not exactly ours, once");
    for k in h.keys() {
        assert!(
            !k.as_str().starts_with("ms-aspnetcore") || k == "ms-aspnetcore-token",
            "client's {k} survived"
        );
    }

    // Hop-by-hop and Connection-named headers stop here (the headers the engine sets itself are
    // set after the removal, with its own values, checked above and below).
    for hop in HOP {
        assert!(!h.contains_key(hop), "hop-by-hop {hop} forwarded");
    }
    for n in &named {
        if !is_ours(n) {
            assert!(
                !h.contains_key(n.as_str()),
                "Connection-named {n} forwarded"
            );
        }
    }

    // X-Forwarded-For: one field, ending with the true client address.
    let want = expected_xff_entry(addr);
    let xff: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff.len(), 1, "X-Forwarded-For fields: {xff:?}");
    // Read as bytes: a client's obs-text entry may come through (re-encoded), which is fine as
    // long as ours is last.
    let xff = String::from_utf8_lossy(xff[0].as_bytes()).into_owned();
    let last = xff.rsplit(", ").next().unwrap_or("");
    assert_eq!(
        last, want,
        "X-Forwarded-For {xff:?} does not end with {want}"
    );
    if named.contains("x-forwarded-for") {
        // The client asked for its X-Forwarded-For to be dropped as hop-by-hop.
        assert_eq!(xff, want);
    }
    let xfp: Vec<_> = h.get_all("x-forwarded-proto").iter().collect();
    assert_eq!(xfp.len(), 1);
    let proto = if https { "https" } else { "http" };
    assert!(
        xfp[0].as_bytes().ends_with(proto.as_bytes())
            && (xfp[0].len() == proto.len()
                || xfp[0].as_bytes().ends_with(format!(", {proto}").as_bytes())),
        "X-Forwarded-Proto {:?}",
        xfp[0]
    );

    // Everything end-to-end arrives untouched, in order.
    for name in before.keys() {
        let n = name.as_str();
        if HOP.contains(&n) || named.contains(n) || is_ours(n) {
            continue;
        }
        if n.contains('_') && (underscores == Underscores::Drop || is_underscore_twin(n.as_bytes()))
        {
            continue;
        }
        let a: Vec<_> = before.get_all(name).iter().collect();
        let b: Vec<_> = h.get_all(name).iter().collect();
        assert_eq!(a, b, "end-to-end {n} changed");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn translate_request_invariants(
        pairs in headers_strategy(false),
        addr in addr_strategy(),
        https in any::<bool>(),
        forward_underscores in any::<bool>(),
    ) {
        check_translation(&pairs, addr, https, Underscores::forward_if(forward_underscores));
    }

    /// With obs-text allowed everywhere, `Connection` values included (they once hid the
    /// headers they named when not valid UTF-8).
    #[test]
    fn translate_request_invariants_obs_text(
        pairs in headers_strategy(true),
        addr in addr_strategy(),
    ) {
        check_translation(&pairs, addr, false, Underscores::Drop);
    }

    #[test]
    fn remove_hop_by_hop_and_translate_response(pairs in headers_strategy(false)) {
        let before = to_map(&pairs);
        let named = connection_named(&before);
        let mut h = before.clone();
        remove_hop_by_hop(&mut h);
        let mut r = before.clone();
        translate_response(&mut r);
        for hop in HOP {
            prop_assert!(!h.contains_key(hop) && !r.contains_key(hop), "{} kept", hop);
        }
        for n in &named {
            prop_assert!(!h.contains_key(n.as_str()) && !r.contains_key(n.as_str()), "{} kept", n);
        }
        prop_assert!(!r.contains_key("date"));
        for name in before.keys() {
            let n = name.as_str();
            if HOP.contains(&n) || named.contains(n) {
                continue;
            }
            let a: Vec<_> = before.get_all(name).iter().collect();
            prop_assert_eq!(&a, &h.get_all(name).iter().collect::<Vec<_>>());
            if n != "date" {
                prop_assert_eq!(&a, &r.get_all(name).iter().collect::<Vec<_>>());
            }
        }
    }
}

// ---- framing::check against an independent oracle ----

/// Whether a message with these framing headers has exactly one reading (RFC 9112 §6.1, §6.3),
/// stated directly: either no framing header; or Content-Length fields that all carry the same
/// non-empty run of digits and no Transfer-Encoding; or Transfer-Encoding fields whose joined
/// coding list is `chunked` alone, and no Content-Length. (A list like `gzip, chunked` has one
/// reading, but the coding under chunked would reach the other side unannounced once the
/// hop-by-hop field is dropped, so it is refused too, as nginx does.)
fn unambiguous(h: &HeaderMap) -> bool {
    let cls: Vec<&[u8]> = h
        .get_all("content-length")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let te_fields: Vec<&[u8]> = h
        .get_all("transfer-encoding")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    match (cls.is_empty(), te_fields.is_empty()) {
        (true, true) => true,
        (false, false) => false,
        (false, true) => {
            let first = cls[0];
            !first.is_empty()
                && first.iter().all(|b| b.is_ascii_digit())
                && cls.iter().all(|v| *v == first)
        }
        (true, false) => {
            // Elements are separated by commas and padded by optional whitespace (SP / HTAB,
            // RFC 9110 §5.6.1); empty elements count for nothing.
            let joined = te_fields.join(&b","[..]);
            let codings: Vec<Vec<u8>> = joined
                .split(|&b| b == b',')
                .map(|c| {
                    let ows = |b: &u8| *b == b' ' || *b == b'\t';
                    let start = c.iter().position(|b| !ows(b)).unwrap_or(c.len());
                    let end = c.iter().rposition(|b| !ows(b)).map_or(start, |e| e + 1);
                    c[start..end].to_ascii_lowercase()
                })
                .filter(|c| !c.is_empty())
                .collect();
            codings == [b"chunked".to_vec()]
        }
    }
}

fn framing_value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Content-Length shapes.
        "[0-9]{0,4}".prop_map(String::into_bytes),
        proptest::sample::select(vec![
            "10", "010", " 10", "1e3", "-1", "+1", "10, 10", "0x10"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        // Transfer-Encoding shapes: coding lists with case, whitespace and empty elements.
        proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    "chunked",
                    "Chunked",
                    "CHUNKED",
                    "gzip",
                    "identity",
                    "deflate",
                    "chunked;x=1",
                    "",
                ]),
                proptest::sample::select(vec!["", " ", "\t"]),
            ),
            0..4,
        )
        .prop_map(|cs| {
            cs.iter()
                .map(|(c, ws)| format!("{ws}{c}{ws}"))
                .collect::<Vec<_>>()
                .join(",")
                .into_bytes()
        }),
        value_strategy(true),
    ]
}

fn framing_headers_strategy() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    proptest::collection::vec(
        (
            proptest::sample::select(vec![
                "Content-Length",
                "content-length",
                "Transfer-Encoding",
                "transfer-encoding",
                "Host",
                "TE",
            ])
            .prop_map(str::to_owned),
            framing_value_strategy(),
        ),
        0..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn framing_check_accepts_iff_unambiguous(pairs in framing_headers_strategy()) {
        let h = to_map(&pairs);
        let got = framing::check(&h);
        prop_assert_eq!(got.is_ok(), unambiguous(&h), "check said {:?} for {:?}", got, h);
    }

    #[test]
    fn framing_check_never_panics(pairs in headers_strategy(true)) {
        let _ = framing::check(&to_map(&pairs));
    }
}
