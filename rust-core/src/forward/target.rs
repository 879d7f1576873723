//! Which request targets the engine forwards: origin-form (`/path?query`), and the asterisk
//! only for `OPTIONS` (RFC 9112 §3.2). Anything else (a bare `foo`, an absolute URL, an
//! authority) is refused rather than translated, because translating it would forward a
//! different request than the client sent.
//!
//! Request targets a host hands over in a form the engine does not take as is: the rule that
//! turns them into a valid origin-form target (`/path?query`, RFC 9112 §3.2.1), one byte at a
//! time, in one place.
//!
//! Two shapes arrive from IIS: the target as the client sent it (`HTTP_REQUEST.pRawUrl`), which
//! HTTP.sys accepted although it may hold bytes a strict URI parser refuses (`<`, `"`, a space in
//! the query, non-UTF-8); and the URL after IIS rewrote it (`CookedUrl`: the path decoded, the
//! query as sent), which must be escaped again before it can be sent. Either way every byte that
//! origin-form allows passes unchanged, so an escape already there (`%2F`) is never touched;
//! every other byte becomes `%XX`.

use http::Method;

/// Checks that `target` is origin-form, or `*` with `OPTIONS`; the error names the rule.
///
/// Looks at the first byte (and the length for `*`): the characters of the rest are for the
/// URI parser to judge. Both the C ABI's `ancm_request_start` and the HTTP front ends call it.
pub fn check_origin_form(method: &Method, target: &[u8]) -> Result<(), &'static str> {
    match target {
        [b'/', ..] => Ok(()),
        b"*" if method == Method::OPTIONS => Ok(()),
        b"*" => Err("the asterisk target (*) is only for OPTIONS"),
        [] => Err("the target is empty (origin-form starts with /)"),
        _ => Err("the target is not origin-form (it must start with /; absolute URLs and authorities are not forwarded)"),
    }
}

/// Whether origin-form allows `b` unescaped in a path segment or between segments: RFC 3986's
/// `pchar` (unreserved, sub-delims, `:`, `@`) and `/`.
fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

/// Whether origin-form allows `b` unescaped in the query: a path byte or `?` (RFC 3986 §3.4).
fn query_byte(b: u8) -> bool {
    path_byte(b) || b == b'?'
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// Appends `part` (still escaped, as a client sent it): an existing `%XX` is kept, every byte
/// that `allowed` refuses (a `%` that starts no escape included) becomes `%XX`.
fn push_sent(out: &mut Vec<u8>, part: &[u8], allowed: fn(u8) -> bool) {
    for (i, &b) in part.iter().enumerate() {
        let escape_kept = b == b'%'
            && part.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && part.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if escape_kept || allowed(b) {
            out.push(b);
        } else {
            push_escaped(out, b);
        }
    }
}

/// The target a client sent, as a valid origin-form target: the bytes origin-form allows and
/// every `%XX` unchanged, every other byte `%XX` (`/a b?x="1"` → `/a%20b?x=%221%22`). The path
/// ends at the first `?`. The result is at most three times as long as `raw`. The caller
/// decides whether `raw` is an origin-form target at all (it starts with `/`); `*` passes
/// unchanged.
pub fn escape_sent(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    let (path, query) = raw.split_at(raw.iter().position(|&b| b == b'?').unwrap_or(raw.len()));
    push_sent(&mut out, path, path_byte);
    push_sent(&mut out, query, query_byte);
    out
}

/// A URL whose path is decoded (IIS's `CookedUrl.pAbsPath`, as UTF-8) and whose query is as the
/// client sent it (`CookedUrl.pQueryString`, `?` included, or empty), as a valid origin-form
/// target. Every path byte that is not a path byte becomes `%XX`: `%` too (in a decoded path it
/// stands for itself) and `?` (as ANCM's `EscapeAbsPath` does: it would end the path). The query
/// is treated as [`escape_sent`] treats it. The result is at most three times as long as the
/// input.
pub fn escape_decoded(path: &[u8], query: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + query.len() + 16);
    for &b in path {
        if path_byte(b) {
            out.push(b);
        } else {
            push_escaped(&mut out, b);
        }
    }
    push_sent(&mut out, query, query_byte);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(s: &[u8]) -> String {
        String::from_utf8(escape_sent(s)).expect("ASCII")
    }

    #[test]
    fn a_valid_target_passes_byte_for_byte() {
        let t = b"/app/a%2Fb;p=1/c@d:e?x=1&y=%C3%A9&z=a/b?c~!$'()*+,";
        assert_eq!(sent(t).as_bytes(), t);
        assert_eq!(sent(b"*"), "*");
        assert_eq!(sent(b"/"), "/");
    }

    #[test]
    fn bytes_a_strict_parser_refuses_are_escaped_and_nothing_else() {
        assert_eq!(sent(b"/a b?q=<x>\"y\""), "/a%20b?q=%3Cx%3E%22y%22");
        assert_eq!(sent(b"/caf\xc3\xa9/\xff"), "/caf%C3%A9/%FF");
        assert_eq!(
            sent(b"/a{b}|c\\d^e`f[g]h#i"),
            "/a%7Bb%7D%7Cc%5Cd%5Ee%60f%5Bg%5Dh%23i"
        );
        assert_eq!(sent(b"/\x00\x1f\x7f"), "/%00%1F%7F");
    }

    #[test]
    fn a_percent_that_starts_no_escape_is_escaped_itself() {
        assert_eq!(sent(b"/100%"), "/100%25");
        assert_eq!(sent(b"/a%zz%2?q=%4"), "/a%25zz%252?q=%254");
        assert_eq!(sent(b"/ok%2f%2F"), "/ok%2f%2F");
    }

    #[test]
    fn a_question_mark_in_the_query_stays() {
        assert_eq!(sent(b"/p?a?b"), "/p?a?b");
    }

    #[test]
    fn a_decoded_path_is_escaped_again() {
        let out = |p: &str, q: &str| {
            String::from_utf8(escape_decoded(p.as_bytes(), q.as_bytes())).expect("ASCII")
        };
        assert_eq!(out("/new path/café", ""), "/new%20path/caf%C3%A9");
        // A `/` the client escaped is a `/` once decoded: nothing can tell them apart.
        assert_eq!(out("/a/b", "?x=%2F"), "/a/b?x=%2F");
        assert_eq!(out("/100%/what?", "?q=<1>"), "/100%25/what%3F?q=%3C1%3E");
        assert_eq!(out("/", ""), "/");
    }

    #[test]
    fn the_output_is_always_a_valid_origin_form_target() {
        let mut all: Vec<u8> = (0..=255u8).collect();
        all.insert(0, b'/');
        for out in [escape_sent(&all), escape_decoded(&all, b"?\x00 %%41")] {
            assert!(out.len() <= 3 * (all.len() + 8));
            let text = std::str::from_utf8(&out).expect("ASCII");
            let uri: http::Uri = text.parse().expect("a valid URI");
            assert!(
                uri.scheme().is_none() && uri.path().starts_with('/'),
                "{text}"
            );
        }
    }

    #[test]
    fn origin_form_and_options_asterisk_only() {
        for ok in ["/", "/a?b=1", "/a%2Fb", "//double"] {
            assert_eq!(
                check_origin_form(&Method::GET, ok.as_bytes()),
                Ok(()),
                "{ok}"
            );
        }
        assert_eq!(check_origin_form(&Method::OPTIONS, b"*"), Ok(()));
        assert_eq!(check_origin_form(&Method::OPTIONS, b"/x"), Ok(()));
        for (method, bad) in [
            (Method::GET, "*"),
            (Method::POST, "*"),
            (Method::GET, "foo"),
            (Method::GET, ""),
            (Method::GET, "http://example.test/a"),
            (Method::CONNECT, "example.test:443"),
            (Method::OPTIONS, "*x"),
            (Method::OPTIONS, "**"),
            (Method::GET, "?q"),
        ] {
            assert!(
                check_origin_form(&method, bad.as_bytes()).is_err(),
                "{method} {bad}"
            );
        }
    }
}
