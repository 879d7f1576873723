//! The `Date` field of responses, formatted once a second per thread rather than per response.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// An IMF-fixdate is always this long (`Sun, 06 Nov 1994 08:49:37 GMT`).
const LEN: usize = 29;

thread_local! {
    static CACHED: Cell<(u64, [u8; LEN])> = const { Cell::new((u64::MAX, [0; LEN])) };
}

/// Appends `date: <now>\r\n`.
pub fn append(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (at, mut text) = CACHED.get();
    if at != secs {
        let formatted = httpdate::fmt_http_date(now);
        if formatted.len() == LEN {
            text.copy_from_slice(formatted.as_bytes());
            CACHED.set((secs, text));
        }
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&text);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_now_in_imf_fixdate() {
        let mut out = Vec::new();
        super::append(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let value = text
            .strip_prefix("date: ")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap();
        let parsed = httpdate::parse_http_date(value).unwrap();
        let skew = std::time::SystemTime::now()
            .duration_since(parsed)
            .unwrap_or_default();
        assert!(skew.as_secs() < 5, "{value}");
    }
}
