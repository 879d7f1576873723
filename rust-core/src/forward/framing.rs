//! Message framing a proxy must refuse rather than forward ambiguously (request smuggling,
//! RFC 9112 §6.1 and §6.3). hyper's parser already refuses obs-fold, NUL/CR/LF in values and
//! malformed chunked encoding; these are the shapes it accepts but two HTTP implementations
//! may frame differently.

use http::header::{self, HeaderMap};

/// Checks the framing headers of a request or response; the error names the rule broken.
pub fn check(h: &HeaderMap) -> Result<(), &'static str> {
    let has_te = h.contains_key(header::TRANSFER_ENCODING);
    let mut lengths = h.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if has_te {
            return Err("both Content-Length and Transfer-Encoding are present");
        }
        if !first.as_bytes().iter().all(u8::is_ascii_digit) || first.is_empty() {
            return Err("Content-Length is not a decimal number");
        }
        if lengths.any(|v| v != first) {
            return Err("repeated Content-Length headers differ");
        }
    }
    if has_te {
        let mut codings = h
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(|c| c.trim_ascii())
            .filter(|c| !c.is_empty())
            .peekable();
        let mut chunked_seen = false;
        while let Some(c) = codings.next() {
            let is_chunked = c.eq_ignore_ascii_case(b"chunked");
            if is_chunked && (chunked_seen || codings.peek().is_some()) {
                return Err("Transfer-Encoding has chunked other than once, last");
            }
            chunked_seen |= is_chunked;
        }
        if !chunked_seen {
            return Err("Transfer-Encoding does not end with chunked");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn accepted_shapes() {
        assert!(check(&h(&[])).is_ok());
        assert!(check(&h(&[("content-length", "10")])).is_ok());
        assert!(check(&h(&[("content-length", "10"), ("content-length", "10")])).is_ok());
        assert!(check(&h(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(check(&h(&[("transfer-encoding", "gzip, Chunked")])).is_ok());
        assert!(check(&h(&[
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "chunked")
        ]))
        .is_ok());
    }

    #[test]
    fn rejected_shapes() {
        for bad in [
            vec![("content-length", "10"), ("transfer-encoding", "chunked")],
            vec![("content-length", "10"), ("content-length", "11")],
            vec![("content-length", "1e3")],
            vec![("content-length", "")],
            vec![("content-length", "-1")],
            vec![("transfer-encoding", "chunked, gzip")],
            vec![("transfer-encoding", "gzip")],
            vec![("transfer-encoding", "chunked, chunked")],
            vec![
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            vec![("transfer-encoding", "")],
        ] {
            assert!(check(&h(&bad)).is_err(), "{bad:?} was accepted");
        }
    }
}
