//! Message framing a proxy must refuse rather than forward ambiguously (request smuggling,
//! RFC 9112 §6.1 and §6.3). hyper's parser already refuses obs-fold, NUL/CR/LF in values and
//! malformed chunked encoding; these are the shapes it accepts but two HTTP implementations
//! may frame differently.

use http::header::{self, HeaderMap};

/// How a message's body is delimited, as its framing headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Neither header: no body for a request; for a response, what its status and the request
    /// method allow.
    Unframed,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding` ending with chunked.
    Chunked,
}

/// The framing headers of one message, fed field by field in the order they came (for heads
/// that are parsed in place rather than into a `HeaderMap`); [`Fields::finish`] applies the
/// rules of [`check`].
#[derive(Debug, Default)]
pub struct Fields<'a> {
    length: Option<&'a [u8]>,
    lengths_differ: bool,
    te: bool,
    chunked: u32,
    last_chunked: bool,
    other_codings: bool,
}

impl<'a> Fields<'a> {
    /// Takes one header field; names are compared without regard to case.
    pub fn feed(&mut self, name: &[u8], value: &'a [u8]) {
        if name.eq_ignore_ascii_case(b"content-length") {
            match self.length {
                None => self.length = Some(value),
                Some(first) => self.lengths_differ |= first != value,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.te = true;
            for c in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if !c.is_empty() {
                    self.last_chunked = c.eq_ignore_ascii_case(b"chunked");
                    self.chunked += u32::from(self.last_chunked);
                    self.other_codings |= !self.last_chunked;
                }
            }
        }
    }

    /// Whether a `Content-Length` field was fed.
    pub fn has_length(&self) -> bool {
        self.length.is_some()
    }

    /// The message's framing, or the rule its headers break.
    pub fn finish(self) -> Result<Framing, &'static str> {
        if let Some(first) = self.length {
            if self.te {
                return Err("both Content-Length and Transfer-Encoding are present");
            }
            if first.is_empty() || !first.iter().all(u8::is_ascii_digit) {
                return Err("Content-Length is not a decimal number");
            }
            if self.lengths_differ {
                return Err("repeated Content-Length headers differ");
            }
            return std::str::from_utf8(first)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Framing::Length)
                .ok_or("Content-Length is too large");
        }
        if self.te {
            if self.chunked == 0 {
                return Err("Transfer-Encoding does not end with chunked");
            }
            if self.chunked > 1 || !self.last_chunked {
                return Err("Transfer-Encoding has chunked other than once, last");
            }
            if self.other_codings {
                // Once de-chunked, the body would still be in that coding, and the field that
                // says so is hop-by-hop: nothing would tell the other side (nginx refuses too).
                return Err("Transfer-Encoding names a coding besides chunked (not supported)");
            }
            return Ok(Framing::Chunked);
        }
        Ok(Framing::Unframed)
    }
}

/// Checks the framing headers of a request or response; the error names the rule broken.
pub fn check(h: &HeaderMap) -> Result<(), &'static str> {
    if !h.contains_key(header::CONTENT_LENGTH) && !h.contains_key(header::TRANSFER_ENCODING) {
        return Ok(());
    }
    let mut fields = Fields::default();
    for name in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING] {
        for v in h.get_all(&name) {
            fields.feed(name.as_str().as_bytes(), v.as_bytes());
        }
    }
    fields.finish().map(|_| ())
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
        assert!(check(&h(&[("transfer-encoding", " Chunked ,")])).is_ok());
        assert!(check(&h(&[
            ("transfer-encoding", ""),
            ("transfer-encoding", "chunked")
        ]))
        .is_ok());
    }

    #[test]
    fn fields_give_the_framing() {
        let framing = |pairs: &[(&str, &str)]| {
            let mut f = Fields::default();
            for (k, v) in pairs {
                f.feed(k.as_bytes(), v.as_bytes());
            }
            f.finish()
        };
        assert_eq!(framing(&[("Host", "x")]), Ok(Framing::Unframed));
        assert_eq!(
            framing(&[("Content-Length", "10"), ("content-length", "10")]),
            Ok(Framing::Length(10))
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "Chunked")]),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing(&[
                ("Transfer-Encoding", "gzip"),
                ("transfer-encoding", "Chunked")
            ]),
            Err("Transfer-Encoding names a coding besides chunked (not supported)")
        );
        assert_eq!(
            framing(&[("content-length", "99999999999999999999999")]),
            Err("Content-Length is too large")
        );
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
            vec![("transfer-encoding", "gzip, chunked")],
            vec![
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked"),
            ],
            vec![("transfer-encoding", "chunked, chunked")],
            vec![
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            vec![("transfer-encoding", "")],
        ] {
            assert!(check(&h(&bad)).is_err(), "{bad:?} was accepted");
            let mut f = Fields::default();
            for (k, v) in &bad {
                f.feed(k.as_bytes(), v.as_bytes());
            }
            assert!(f.finish().is_err(), "{bad:?} was accepted field by field");
        }
    }
}
