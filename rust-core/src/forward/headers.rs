//! Header translation between the client and the backend, as ANCM does it (ancm-behaviour.md
//! §3) and as RFC 9110 §7.6.1 requires of any proxy: hop-by-hop headers and the headers the
//! `Connection` header names stop here; the client can never speak for us in `MS-ASPNETCORE-*`.

use std::net::SocketAddr;

use base64::Engine as _;
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

/// Who the client is, as the host saw it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client's address and port.
    pub addr: SocketAddr,
    /// Whether the client connection is https.
    pub https: bool,
    /// The client certificate (DER), when the client sent one.
    pub client_cert_der: Option<bytes::Bytes>,
    /// The user's Windows token (IIS Windows authentication), when it is to be forwarded
    /// (forwardWindowsAuthToken and a Negotiate/NTLM logon): duplicated into the chosen
    /// backend's process for each attempt. Only Windows hosts can have one.
    pub windows_token: Option<std::sync::Arc<crate::process::UserToken>>,
}

impl ClientInfo {
    /// A plain-http client at `addr`.
    pub fn http(addr: SocketAddr) -> ClientInfo {
        ClientInfo {
            addr,
            https: false,
            client_cert_der: None,
            windows_token: None,
        }
    }
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1, plus the
/// non-standard ones still seen in the wild). A `static`: a `const` array of `HeaderName`s is
/// built and dropped at every use (measured: ≈ 200 instructions per request).
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const MS_PREFIX: &str = "ms-aspnetcore";
/// The pairing token header.
pub const TOKEN: HeaderName = HeaderName::from_static("ms-aspnetcore-token");
const CLIENT_CERT: HeaderName = HeaderName::from_static("ms-aspnetcore-clientcert");
/// The Windows user token header, as ANCM names it.
pub const WIN_AUTH_TOKEN: HeaderName = HeaderName::from_static("ms-aspnetcore-winauthtoken");
/// The same, as HttpPlatformHandler names it.
pub const HPH_WIN_AUTH_TOKEN: HeaderName = HeaderName::from_static("x-iis-windowsauthtoken");
const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Whether a header name (in any case) is hop-by-hop, never forwarded.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
}

/// Whether a header name (in any case) is one only the engine may set, the client's being
/// dropped: the `MS-ASPNETCORE-*` space, and `X-IIS-WindowsAuthToken` (the Windows token in the
/// httpPlatform dialect: a handle value the app would act on as the user's token).
pub fn is_reserved(name: &[u8]) -> bool {
    (name.len() >= MS_PREFIX.len()
        && name[..MS_PREFIX.len()].eq_ignore_ascii_case(MS_PREFIX.as_bytes()))
        || name.eq_ignore_ascii_case(HPH_WIN_AUTH_TOKEN.as_str().as_bytes())
}

/// What becomes of a client's request field whose name holds an underscore. CGI- and WSGI-style
/// servers (Python apps among them) fold `_` and `-` together, so `X_Forwarded_For` would read
/// there as the proxy's own `X-Forwarded-For`, and `Transfer_Encoding` as framing: such names are
/// dropped by default, as nginx does (`underscores_in_headers off`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Underscores {
    /// Drop every field whose name holds `_`.
    #[default]
    Drop,
    /// Forward them (handlerSetting `forwardHeadersWithUnderscores`), except the twins of the
    /// fields the proxy itself sets or strips ([`is_underscore_twin`]), which are always dropped.
    Forward,
}

impl Underscores {
    /// The rule an app's setting `forward` (forwardHeadersWithUnderscores) asks for.
    pub fn forward_if(forward: bool) -> Underscores {
        if forward {
            Underscores::Forward
        } else {
            Underscores::Drop
        }
    }
}

/// Whether a client's request field `name` is dropped under `rule` for holding an underscore.
pub fn drops_underscored(name: &[u8], rule: Underscores) -> bool {
    name.contains(&b'_') && (rule == Underscores::Drop || is_underscore_twin(name))
}

/// Whether `name` holds an underscore and reads, with `_` taken as `-` and in any case, as a
/// field the proxy sets or strips itself: `X-Forwarded-*`, `MS-ASPNETCORE-*`, `X-IIS-*`,
/// `Content-Length`, `Host` and the hop-by-hop fields.
pub fn is_underscore_twin(name: &[u8]) -> bool {
    const PREFIXES: [&[u8]; 3] = [b"x-forwarded-", b"ms-aspnetcore", b"x-iis-"];
    const NAMES: [&[u8]; 9] = [
        b"content-length",
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    if !name.contains(&b'_') {
        return false;
    }
    let folded = |a: &[u8], b: &[u8]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(&x, &y)| {
                let x = if x == b'_' {
                    b'-'
                } else {
                    x.to_ascii_lowercase()
                };
                x == y
            })
    };
    PREFIXES
        .iter()
        .any(|p| name.len() >= p.len() && folded(&name[..p.len()], p))
        || NAMES.iter().any(|n| folded(name, n))
}

/// What one `Connection` field value says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionOptions {
    /// `close`: the connection ends after this message.
    pub close: bool,
    /// Any token other than `close` and `keep-alive`: it names other fields as hop-by-hop (or
    /// asks for an upgrade).
    pub names_fields: bool,
}

impl ConnectionOptions {
    /// Reads a `Connection` field value (tokens in any case, comma-separated).
    pub fn parse(value: &[u8]) -> ConnectionOptions {
        let mut o = ConnectionOptions::default();
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                o.close = true;
            } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                o.names_fields = true;
            }
        }
        o
    }
}

/// Removes the hop-by-hop headers and every header the `Connection` header names.
pub fn remove_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the names (no hashing) finds the common case: nothing to remove. Saves
    // seven hashed removes per message (about 1,300 instructions per proxied request).
    if !h.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for n in HOP_BY_HOP.iter() {
        h.remove(n);
    }
}

/// Turns the client's request headers into the backend's: hop-by-hop removed, every
/// `MS-ASPNETCORE-*` from the client dropped, names with an underscore dropped as `underscores`
/// says, then ours set (token, client certificate), and `X-Forwarded-For` / `X-Forwarded-Proto`
/// appended to. The Windows token is set per attempt by [`set_windows_token`].
pub fn translate_request(
    h: &mut HeaderMap,
    client: &ClientInfo,
    token: &HeaderValue,
    underscores: Underscores,
) {
    remove_hop_by_hop(h);
    let dropped = |k: &HeaderName| {
        is_ms_aspnetcore(k) || drops_underscored(k.as_str().as_bytes(), underscores)
    };
    if h.keys().any(dropped) {
        let forged: Vec<HeaderName> = h.keys().filter(|k| dropped(k)).cloned().collect();
        for n in forged {
            h.remove(n);
        }
    }
    let addr = SocketAddr::new(client.addr.ip().to_canonical(), client.addr.port());
    // `entry`: one hash of the name when the client sent none (the common case).
    match h.entry(XFF) {
        Entry::Vacant(v) => {
            v.insert(addr_value(addr));
        }
        Entry::Occupied(_) => append_list(h, XFF, &addr.to_string()),
    }
    let proto = if client.https { "https" } else { "http" };
    match h.entry(XFP) {
        // The common case costs no allocation.
        Entry::Vacant(v) => {
            v.insert(HeaderValue::from_static(proto));
        }
        Entry::Occupied(_) => append_list(h, XFP, proto),
    }
    h.insert(TOKEN, token.clone());
    if let Some(der) = &client.client_cert_der {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        if let Ok(v) = HeaderValue::from_str(&b64) {
            h.insert(CLIENT_CERT, v);
        }
    }
}

/// Sets the Windows token header: `hex` is the handle value in the backend's process. Named
/// `MS-ASPNETCORE-WINAUTHTOKEN` (ANCM) or `X-IIS-WindowsAuthToken` (HttpPlatformHandler), as
/// the app of each dialect reads it. Call after [`translate_request`] (which drops any the
/// client sent).
pub fn set_windows_token(h: &mut HeaderMap, hex: &str, dialect: crate::config::Dialect) {
    let name = match dialect {
        crate::config::Dialect::HttpPlatform => HPH_WIN_AUTH_TOKEN,
        _ => WIN_AUTH_TOKEN,
    };
    if let Ok(v) = HeaderValue::from_str(hex) {
        h.insert(name, v);
    }
}

/// Turns the backend's response headers into the client's: hop-by-hop removed (so also
/// `Connection` and the chunked `Transfer-Encoding`, which the host re-frames), and `Date`
/// dropped (the host stamps its own), as ANCM does. `Server` is kept.
pub fn translate_response(h: &mut HeaderMap) {
    remove_hop_by_hop(h);
    h.remove(header::DATE);
}

/// `ip:port` as a header value ([`addr_text`]).
pub(crate) fn addr_value(addr: SocketAddr) -> HeaderValue {
    let mut buf = [0u8; ADDR_TEXT];
    HeaderValue::from_bytes(addr_text(addr, &mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Room for any `ip:port` text (`[v6%scope]:port`).
pub(crate) const ADDR_TEXT: usize = 64;

/// `ip:port` as text in `buf`, no allocation; IPv4 (the common case) formatted with `itoa`,
/// without the `fmt` machinery (measured: 1,700 instructions per request through
/// `SocketAddr::to_string`).
pub(crate) fn addr_text(addr: SocketAddr, buf: &mut [u8; ADDR_TEXT]) -> &[u8] {
    let mut n = 0;
    if let SocketAddr::V4(a) = addr {
        let mut push = |bytes: &[u8]| {
            buf[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        };
        let mut num = itoa::Buffer::new();
        for (i, o) in a.ip().octets().iter().enumerate() {
            if i > 0 {
                push(b".");
            }
            push(num.format(*o).as_bytes());
        }
        push(b":");
        push(num.format(a.port()).as_bytes());
    } else {
        use std::io::Write as _;
        let mut w = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(w, "{addr}");
        n = usize::try_from(w.position()).unwrap_or(0);
    }
    &buf[..n]
}

fn is_ms_aspnetcore(name: &HeaderName) -> bool {
    is_reserved(name.as_str().as_bytes())
}

/// Appends `value` to a comma-separated list header, joining the values of repeated headers
/// first (IIS hands the module one joined value; we must forward the same).
fn append_list(h: &mut HeaderMap, name: HeaderName, value: &str) {
    // Bytes, not text: the client's values go on byte for byte (obs-text too).
    let mut joined = Vec::new();
    for v in h.get_all(&name) {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if !joined.is_empty() {
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value.as_bytes());
    match HeaderValue::from_bytes(&joined) {
        Ok(v) => {
            h.insert(name, v);
        }
        Err(_) => {
            // An existing value we cannot re-encode: keep ours alone rather than forward a
            // list that misstates the chain.
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn client(addr: &str) -> ClientInfo {
        ClientInfo::http(addr.parse().unwrap())
    }

    fn tok() -> HeaderValue {
        HeaderValue::from_static("secret")
    }

    #[test]
    fn the_windows_token_header_is_named_by_the_dialect() {
        use crate::config::Dialect;
        let mut h = map(&[("ms-aspnetcore-winauthtoken", "forged")]);
        translate_request(&mut h, &client("10.1.2.3:4567"), &tok(), Underscores::Drop);
        set_windows_token(&mut h, "1f2e", Dialect::AspNetCore);
        assert_eq!(
            h.get_all(WIN_AUTH_TOKEN).iter().collect::<Vec<_>>(),
            ["1f2e"]
        );
        assert!(!h.contains_key(HPH_WIN_AUTH_TOKEN));

        let mut h = map(&[("x-iis-windowsauthtoken", "forged")]);
        translate_request(&mut h, &client("10.1.2.3:4567"), &tok(), Underscores::Drop);
        set_windows_token(&mut h, "3a4b", Dialect::HttpPlatform);
        assert_eq!(
            h.get_all(HPH_WIN_AUTH_TOKEN).iter().collect::<Vec<_>>(),
            ["3a4b"]
        );
        assert!(!h.contains_key(WIN_AUTH_TOKEN));
    }

    #[test]
    fn forged_ms_aspnetcore_headers_are_dropped_and_token_set() {
        let mut h = map(&[
            ("MS-ASPNETCORE-TOKEN", "forged"),
            ("ms-aspnetcore-event", "shutdown"),
            ("MS-ASPNETCORE-CLIENTCERT", "forged"),
            ("ms-aspnetcorex", "x"),
            ("X-IIS-WindowsAuthToken", "4a8"),
            ("accept", "*/*"),
        ]);
        translate_request(&mut h, &client("10.0.0.1:5000"), &tok(), Underscores::Drop);
        assert_eq!(h.get_all(TOKEN).iter().collect::<Vec<_>>(), vec!["secret"]);
        assert!(h.get("ms-aspnetcore-event").is_none());
        assert!(h.get("ms-aspnetcore-clientcert").is_none());
        assert!(h.get("ms-aspnetcorex").is_none());
        assert!(h.get(HPH_WIN_AUTH_TOKEN).is_none());
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn x_forwarded_for_appends_ip_and_port() {
        let mut h = HeaderMap::new();
        translate_request(&mut h, &client("10.0.0.1:5000"), &tok(), Underscores::Drop);
        assert_eq!(h[XFF], "10.0.0.1:5000");
        assert_eq!(h[XFP], "http");

        let mut h = map(&[
            ("X-Forwarded-For", "1.1.1.1:1"),
            ("x-forwarded-for", "2.2.2.2:2"),
            ("x-forwarded-proto", "https"),
        ]);
        translate_request(&mut h, &client("[::1]:6000"), &tok(), Underscores::Drop);
        assert_eq!(h.get_all(XFF).iter().count(), 1);
        assert_eq!(h[XFF], "1.1.1.1:1, 2.2.2.2:2, [::1]:6000");
        assert_eq!(h[XFP], "https, http");
    }

    #[test]
    fn underscored_names_are_dropped_and_their_twins_always() {
        let fields = [
            ("X_Forwarded_For", "6.6.6.6"),
            ("ms_aspnetcore_token", "forged"),
            ("Transfer_Encoding", "chunked"),
            ("content_length", "5"),
            ("X_IIS_WindowsAuthToken", "4a8"),
            ("HOST_", "x"),
            ("x_app_key", "kept only when asked"),
            ("x-plain", "kept"),
        ];
        let mut h = map(&fields);
        translate_request(&mut h, &client("10.0.0.1:5000"), &tok(), Underscores::Drop);
        assert!(
            !h.keys().any(|k| k.as_str().contains('_')),
            "{:?}",
            h.keys().collect::<Vec<_>>()
        );
        assert_eq!(h[XFF], "10.0.0.1:5000");
        assert_eq!(h["x-plain"], "kept");

        let mut h = map(&fields);
        translate_request(
            &mut h,
            &client("10.0.0.1:5000"),
            &tok(),
            Underscores::Forward,
        );
        let mut left: Vec<&str> = h
            .keys()
            .map(HeaderName::as_str)
            .filter(|k| k.contains('_'))
            .collect();
        left.sort_unstable();
        // `host_` is no twin: it reads as `host-`.
        assert_eq!(left, ["host_", "x_app_key"]);
        assert_eq!(h[XFF], "10.0.0.1:5000");
    }

    #[test]
    fn underscore_twins() {
        for twin in [
            "X_FORWARDED_FOR",
            "x_forwarded_proto",
            "X-Forwarded_Host",
            "x_forwarded_anything",
            "MS_ASPNETCORE_TOKEN",
            "ms_aspnetcorex",
            "X_IIS_WindowsAuthToken",
            "Content_Length",
            "Transfer_Encoding",
            "Keep_Alive",
            "Proxy_Connection",
            "HOST",
        ]
        .iter()
        .filter(|n| n.contains('_'))
        {
            assert!(is_underscore_twin(twin.as_bytes()), "{twin}");
            assert!(drops_underscored(twin.as_bytes(), Underscores::Forward));
        }
        for other in [
            "X-Forwarded-For",
            "x_app",
            "content_lengths",
            "x_iis",
            "_host",
        ] {
            assert!(!is_underscore_twin(other.as_bytes()), "{other}");
        }
        assert!(drops_underscored(b"x_app", Underscores::Drop));
        assert!(!drops_underscored(b"x_app", Underscores::Forward));
        assert!(!drops_underscored(b"x-app", Underscores::Drop));
    }

    #[test]
    fn connection_options() {
        let o = |v: &str| ConnectionOptions::parse(v.as_bytes());
        assert_eq!(o("keep-alive"), ConnectionOptions::default());
        assert!(o("Keep-Alive, CLOSE").close && !o("close").names_fields);
        assert!(o("upgrade").names_fields && !o("upgrade").close);
        assert!(o(" , x-hop ,").names_fields);
    }

    #[test]
    fn name_predicates_ignore_case() {
        for n in [
            "Connection",
            "KEEP-ALIVE",
            "te",
            "Transfer-Encoding",
            "upgrade",
            "Trailer",
        ] {
            assert!(is_hop_by_hop(n.as_bytes()), "{n}");
        }
        for n in ["content-length", "tee", "connections", ""] {
            assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
        }
        for n in ["MS-ASPNETCORE-TOKEN", "ms-aspnetcorex", "Ms-AspNetCore"] {
            assert!(is_reserved(n.as_bytes()), "{n}");
        }
        for n in ["ms-aspnetcor", "x-ms-aspnetcore-token"] {
            assert!(!is_reserved(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn addr_values_match_display() {
        for a in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.0.0.1:5000",
            "[::1]:80",
            "192.0.2.7:9",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(addr_value(addr), addr.to_string().as_str());
        }
    }

    #[test]
    fn ipv4_mapped_client_addresses_are_shown_as_ipv4() {
        let mut h = HeaderMap::new();
        translate_request(
            &mut h,
            &client("[::ffff:192.0.2.7]:80"),
            &tok(),
            Underscores::Drop,
        );
        assert_eq!(h[XFF], "192.0.2.7:80");
    }

    #[test]
    fn https_clients_and_certificates() {
        let mut c = client("10.0.0.1:5000");
        c.https = true;
        c.client_cert_der = Some(bytes::Bytes::from_static(b"\x30\x82\x01"));
        let mut h = HeaderMap::new();
        translate_request(&mut h, &c, &tok(), Underscores::Drop);
        assert_eq!(h[XFP], "https");
        assert_eq!(h[CLIENT_CERT], "MIIB");
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Custom-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-custom-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("trailer", "x-t"),
            ("x-end-to-end", "kept"),
            ("host", "example.com"),
        ]);
        translate_request(&mut h, &client("10.0.0.1:1"), &tok(), Underscores::Drop);
        for gone in [
            "connection",
            "keep-alive",
            "x-custom-hop",
            "te",
            "transfer-encoding",
            "upgrade",
            "proxy-connection",
            "trailer",
        ] {
            assert!(h.get(gone).is_none(), "{gone} was forwarded");
        }
        assert_eq!(h["x-end-to-end"], "kept");
        assert_eq!(h["host"], "example.com");
    }

    #[test]
    fn connection_value_with_obs_text_still_names_headers() {
        let mut h = HeaderMap::new();
        h.append(
            "connection",
            HeaderValue::from_bytes(b"x-secret, caf\xe9").unwrap(),
        );
        h.append("x-secret", HeaderValue::from_static("hop"));
        remove_hop_by_hop(&mut h);
        assert!(
            !h.contains_key("x-secret"),
            "Connection-named x-secret forwarded"
        );
    }

    #[test]
    fn response_drops_date_connection_and_chunked_but_keeps_server_and_cookies() {
        let mut h = map(&[
            ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("server", "Kestrel"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        translate_response(&mut h);
        assert!(
            h.get("date").is_none()
                && h.get("connection").is_none()
                && h.get("transfer-encoding").is_none()
        );
        assert_eq!(h["server"], "Kestrel");
        assert_eq!(
            h.get_all("set-cookie").iter().collect::<Vec<_>>(),
            vec!["a=1", "b=2"]
        );
    }
}
