//! Which request targets the engine forwards: origin-form (`/path?query`), and the asterisk
//! only for `OPTIONS` (RFC 9112 §3.2). Anything else (a bare `foo`, an absolute URL, an
//! authority) is refused rather than translated, because translating it would forward a
//! different request than the client sent.

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

#[cfg(test)]
mod tests {
    use super::*;

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
