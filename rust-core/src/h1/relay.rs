//! The response body, from the backend connection to the client: a `Content-Length` body as it
//! is, a chunked one decoded and chunked again (trailers dropped, as the general path does), one
//! delimited by the backend's close chunked. Each wait for the backend is bounded by
//! requestTimeout, and watches the client: one that leaves cancels the backend request at once.
//! Bytes after the end of the body mean the backend framed its response wrongly: the client
//! connection is then aborted before the response completes (the general path's rules).

use std::io;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::io::{Watch, Watched};
use super::response::Body;

/// Where a response body goes: the client's connection ([`super::io::Sink`], chunks framed
/// again), or a host that frames it itself (the C ABI). Its [`Watch`] watches the client while
/// the backend is awaited.
pub trait Out: Watch {
    /// Passes body bytes on (they may be gathered until [`Out::flush`]).
    fn data(&mut self, data: &[u8]) -> impl std::future::Future<Output = io::Result<()>>;
    /// Sends everything gathered.
    fn flush(&mut self) -> impl std::future::Future<Output = io::Result<()>>;
    /// Chunked-framing bytes for the client's connection (size lines, ends), in order with the
    /// data; a host that frames the body itself ignores them.
    fn framing(&mut self, bytes: &[u8]);
}

/// The longest chunk-size line or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 64 * 1024;
/// The read size for bodies that take more than one read (fewer system calls for large ones).
const BODY_READ: usize = 64 * 1024;

/// Why a body stopped before its end; the client connection is then aborted.
#[derive(Debug)]
pub enum Stop {
    /// The backend connection failed, closed early or sent a malformed body.
    Backend(String),
    /// The backend sent bytes after the end of the response.
    ExtraBytes,
    /// No bytes came within requestTimeout.
    Timeout(Duration),
    /// The client went away.
    Client(io::Error),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Backend(s) => write!(f, "the backend response body failed: {s}"),
            Stop::ExtraBytes => f.write_str(
                "the backend sent bytes after the end of its response (a body longer than its Content-Length?)",
            ),
            Stop::Timeout(d) => write!(f, "the backend sent no data for {} s (requestTimeout)", d.as_secs()),
            Stop::Client(e) => write!(f, "the client connection failed: {e}"),
        }
    }
}

/// Sends the head waiting in `sink` and the body of kind `body` that starts at `buf[start..]`
/// and continues on `backend`. Returns whether the backend connection ended exactly at the end of
/// the response (so may be reused when its head allows).
pub async fn relay(
    backend: &mut TcpStream,
    buf: &mut Vec<u8>,
    start: usize,
    sink: &mut impl Out,
    body: Body,
    timeout: Duration,
) -> Result<(), Stop> {
    let mut r = Reader {
        backend,
        buf,
        pos: start,
        timeout,
    };
    match body {
        Body::None => {
            if r.pos < r.buf.len() {
                return Err(Stop::ExtraBytes);
            }
        }
        Body::Length(n) => r.length(sink, n).await?,
        Body::Chunked => r.chunked(sink).await?,
        Body::UntilClose => r.until_close(sink).await?,
    }
    sink.flush().await.map_err(Stop::Client)
}

/// The unread bytes of the backend connection: `buf[pos..]`, then the socket.
struct Reader<'a> {
    backend: &'a mut TcpStream,
    buf: &'a mut Vec<u8>,
    pos: usize,
    timeout: Duration,
}

impl Reader<'_> {
    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more of the backend's bytes (`Ok(0)`: its end) within requestTimeout, watching the
    /// client meanwhile ([`read_watching`]).
    async fn read(&mut self, sink: &mut impl Out) -> Result<usize, Stop> {
        // A body that needs more than one read is likely large: read it in large pieces.
        if self.buf.capacity() < BODY_READ {
            self.buf.reserve(BODY_READ);
        }
        let deadline = (!self.timeout.is_zero()).then(|| Instant::now() + self.timeout);
        sink.read(self.backend, self.buf, deadline)
            .await
            .map_err(|w| match w {
                Watched::Backend(e) => Stop::Backend(e.to_string()),
                Watched::Client(e) => Stop::Client(e),
                Watched::TimedOut => Stop::Timeout(self.timeout),
            })
    }

    /// Reads more, keeping what is unread. `what` names what was expected, for the error.
    async fn more(&mut self, sink: &mut impl Out, what: &str) -> Result<(), Stop> {
        if self.pos == self.buf.len() {
            self.buf.clear();
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
        }
        self.pos = 0;
        match self.read(sink).await? {
            0 => Err(Stop::Backend(format!(
                "the connection closed in the middle of {what}"
            ))),
            _ => Ok(()),
        }
    }

    async fn length(&mut self, sink: &mut impl Out, mut left: u64) -> Result<(), Stop> {
        loop {
            let avail = self.available().len();
            let take = avail.min(usize::try_from(left).unwrap_or(usize::MAX));
            left -= take as u64;
            if left == 0 && take < avail {
                // Hold the end back: the response must not complete.
                return Err(Stop::ExtraBytes);
            }
            let end = self.pos + take;
            sink.data(&self.buf[self.pos..end])
                .await
                .map_err(Stop::Client)?;
            self.pos = end;
            if left == 0 {
                return Ok(());
            }
            sink.flush().await.map_err(Stop::Client)?;
            self.more(sink, "the body").await?;
        }
    }

    async fn chunked(&mut self, sink: &mut impl Out) -> Result<(), Stop> {
        let mut hex = [0u8; 18];
        loop {
            // The size line.
            let size = loop {
                match httparse::parse_chunk_size(self.available()) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.pos += used;
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.available().len() < MAX_CHUNK_LINE => {
                        sink.flush().await.map_err(Stop::Client)?;
                        self.more(sink, "a chunk size").await?;
                    }
                    _ => return Err(Stop::Backend("a chunk size line is malformed".into())),
                }
            };
            if size == 0 {
                return self.trailers(sink).await;
            }
            sink.framing(hex_size(size, &mut hex));
            let mut left = size;
            while left > 0 {
                if self.available().is_empty() {
                    sink.flush().await.map_err(Stop::Client)?;
                    self.more(sink, "a chunk").await?;
                }
                let take = self
                    .available()
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                let end = self.pos + take;
                sink.data(&self.buf[self.pos..end])
                    .await
                    .map_err(Stop::Client)?;
                self.pos = end;
                left -= take as u64;
            }
            while self.available().len() < 2 {
                sink.flush().await.map_err(Stop::Client)?;
                self.more(sink, "a chunk").await?;
            }
            if &self.available()[..2] != b"\r\n" {
                return Err(Stop::Backend("a chunk is longer than its size".into()));
            }
            self.pos += 2;
            sink.framing(b"\r\n");
        }
    }

    /// Skips the trailer section after the last chunk, then ends the client's body.
    async fn trailers(&mut self, sink: &mut impl Out) -> Result<(), Stop> {
        let mut seen = 0;
        loop {
            match self.available().windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.pos += 2;
                    if !self.available().is_empty() {
                        return Err(Stop::ExtraBytes);
                    }
                    sink.framing(b"0\r\n\r\n");
                    return Ok(());
                }
                Some(line) => {
                    seen += line + 2;
                    self.pos += line + 2;
                }
                None => {
                    // The unfinished line is counted once it ends; here only bounded.
                    if seen + self.available().len() > MAX_TRAILERS {
                        return Err(Stop::Backend("its trailers are too long".into()));
                    }
                    sink.flush().await.map_err(Stop::Client)?;
                    self.more(sink, "the trailers").await?;
                }
            }
            if seen > MAX_TRAILERS {
                return Err(Stop::Backend("its trailers are too long".into()));
            }
        }
    }

    async fn until_close(&mut self, sink: &mut impl Out) -> Result<(), Stop> {
        let mut hex = [0u8; 18];
        loop {
            let avail = self.available().len();
            if avail > 0 {
                sink.framing(hex_size(avail as u64, &mut hex));
                let (pos, end) = (self.pos, self.buf.len());
                sink.data(&self.buf[pos..end]).await.map_err(Stop::Client)?;
                sink.framing(b"\r\n");
                self.pos = end;
            }
            sink.flush().await.map_err(Stop::Client)?;
            self.buf.clear();
            self.pos = 0;
            if self.read(sink).await? == 0 {
                sink.framing(b"0\r\n\r\n");
                return Ok(());
            }
        }
    }
}

/// `size` in hex followed by CRLF: a chunk-size line.
fn hex_size(size: u64, buf: &mut [u8; 18]) -> &[u8] {
    let digits = 16 - (size.leading_zeros() as usize / 4).min(15);
    for (i, b) in buf[..digits].iter_mut().enumerate() {
        let nibble = (size >> (4 * (digits - 1 - i))) & 0xf;
        *b = b"0123456789abcdef"[nibble as usize];
    }
    buf[digits] = b'\r';
    buf[digits + 1] = b'\n';
    &buf[..digits + 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_lowercase_hex() {
        let mut b = [0u8; 18];
        for (n, s) in [
            (1u64, "1"),
            (0xff, "ff"),
            (0x1000, "1000"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            assert_eq!(hex_size(n, &mut b), format!("{s}\r\n").as_bytes());
        }
    }
}
