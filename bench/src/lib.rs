//! Shared pieces of the benchmark binaries: a body of N zero bytes streamed from one static
//! buffer (so neither side allocates per chunk), and small helpers.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The body of bench-backend's `/small` (13 bytes); the case (h) drivers check it.
pub const SMALL_BODY: &[u8] = b"Hello, World!";

/// The chunk size of [`Zeros`].
pub const CHUNK: usize = 64 * 1024;
static ZERO_CHUNK: [u8; CHUNK] = [0u8; CHUNK];

/// A body of `remaining` zero bytes with an exact length (so it goes out with Content-Length),
/// sent in [`CHUNK`]-sized pieces that all borrow one static buffer.
#[derive(Debug, Clone, Copy)]
pub struct Zeros {
    remaining: u64,
}

impl Zeros {
    /// A body of `n` bytes.
    pub fn new(n: u64) -> Zeros {
        Zeros { remaining: n }
    }
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZERO_CHUNK[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Wall-clock nanoseconds since the Unix epoch: comparable between processes on one machine
/// (the cold-start case subtracts the backend's listen time from the client's response time).
pub fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The value of `key` in a query string (`a=1&n=5`), undecoded.
pub fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn query_params() {
        assert_eq!(query_param("n=5", "n"), Some("5"));
        assert_eq!(query_param("a=1&n=7", "n"), Some("7"));
        assert_eq!(query_param("a=1", "n"), None);
        assert_eq!(query_param("", "n"), None);
    }

    #[tokio::test]
    async fn zeros_has_the_exact_length() {
        let body = Zeros::new(CHUNK as u64 * 2 + 5);
        assert_eq!(body.size_hint().exact(), Some(CHUNK as u64 * 2 + 5));
        let got = body.collect().await.map(|c| c.to_bytes().len());
        assert_eq!(got.ok(), Some(CHUNK * 2 + 5));
    }
}
