//! A request-framing tracker between the client socket and hyper's HTTP/1 parser.
//!
//! Why it exists: a request carrying both `Content-Length` and `Transfer-Encoding` is the classic
//! request-smuggling shape, and ancm-rs answers it with 400 (as the engine does for hosts that hand
//! it raw heads). hyper's server parser resolves that conflict itself (chunked wins, the length is
//! dropped before the request reaches the service, the connection closes afterwards), so the engine
//! never sees it. [`Sniffed`] follows the message boundaries of the bytes hyper reads — head, then
//! a Content-Length or chunked body, then the next head — and, on a head that carries both
//! headers, turns the line feed ending the second of them into NUL. hyper's parser then rejects
//! that head the way it rejects any invalid head: a 400 with `connection: close`, after the
//! responses to the requests before it on the connection. Nothing is buffered or copied: each read
//! goes straight into hyper's buffer and is scanned there.
//!
//! The tracker only follows what hyper would accept. On anything hyper rejects by itself (a bad
//! Content-Length, a bad chunk size, obs-fold), on `CONNECT` and on `Upgrade` requests (the
//! connection may change protocol) it stops looking and passes the bytes through: from then on
//! hyper's own resolution applies, which is still unambiguous.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// A client connection whose request bytes are checked for framing conflicts on their way to
/// hyper; writes pass through untouched. Bytes already read from the connection (by the engine's
/// own HTTP/1.1 path, which hands a connection over at a request boundary) can be put in front.
#[derive(Debug)]
pub struct Sniffed<S> {
    inner: S,
    framing: Framing,
    /// Read before `inner`, from `front_read` on.
    front: Vec<u8>,
    front_read: usize,
}

impl<S> Sniffed<S> {
    /// Wraps a connection positioned at the start of a request, `front` holding the bytes
    /// already read from it (none for a fresh one); they are read (and checked) first.
    pub fn with_front(front: Vec<u8>, inner: S) -> Self {
        Sniffed {
            inner,
            framing: Framing::default(),
            front,
            front_read: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if this.front_read < this.front.len() {
            let n = buf.remaining().min(this.front.len() - this.front_read);
            buf.put_slice(&this.front[this.front_read..this.front_read + n]);
            this.front_read += n;
            if this.front_read == this.front.len() {
                this.front = Vec::new();
                this.front_read = 0;
            }
        } else {
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        }
        this.framing.feed(&mut buf.filled_mut()[before..]);
        Poll::Ready(Ok(()))
    }
}

crate::write_through::write_through!(Sniffed);

/// How much of a header line is kept while it is split across reads: enough for the names that
/// matter and any sane Content-Length value.
const LINE_KEEP: usize = 128;

/// Where the byte stream is, in hyper's terms.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a request head (request line or header lines).
    #[default]
    Head,
    /// In a Content-Length body with this many bytes left.
    Body(u64),
    /// In a chunk-size line: the size so far.
    ChunkSize(u64),
    /// After the chunk size (extensions, CR): skipping to the line's end.
    ChunkSizeRest(u64),
    /// In chunk data with this many bytes left.
    ChunkData(u64),
    /// After chunk data: skipping its CRLF.
    ChunkDataEnd,
    /// In the trailer section after the last chunk; `true` once the current line has content.
    Trailers(bool),
    /// No longer tracking: everything passes through.
    Off,
}

/// What the head seen so far says about framing.
#[derive(Debug, Default)]
struct Head {
    /// The request line has been seen (empty lines before it are skipped, as hyper does).
    started: bool,
    content_length: Option<u64>,
    transfer_encoding: bool,
    upgrade: bool,
}

/// The tracker itself, fed every byte read from the client in order.
#[derive(Debug, Default)]
struct Framing {
    state: State,
    head: Head,
    /// The start of a head line that continues in the next read.
    partial: Vec<u8>,
    /// The partial line was longer than [`LINE_KEEP`].
    partial_cut: bool,
}

impl Framing {
    /// Scans newly read bytes; may change one of them to NUL (see the module docs).
    fn feed(&mut self, bytes: &mut [u8]) {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Off => return,
                State::Head => match memchr::memchr(b'\n', &bytes[i..]) {
                    None => {
                        self.keep_partial(&bytes[i..]);
                        return;
                    }
                    Some(n) => {
                        let end = i + n;
                        let conflict = if self.partial.is_empty() {
                            self.head_line(&bytes[i..end], false)
                        } else {
                            self.keep_partial(&bytes[i..end]);
                            let mut line = std::mem::take(&mut self.partial);
                            let cut = std::mem::take(&mut self.partial_cut);
                            let conflict = self.head_line(&line, cut);
                            line.clear();
                            self.partial = line;
                            conflict
                        };
                        if conflict {
                            // The line feed is in this read, so it has not reached hyper yet.
                            bytes[end] = 0;
                            self.state = State::Off;
                            return;
                        }
                        i = end + 1;
                    }
                },
                State::Body(left) => {
                    self.state = match skip(left, &mut i, bytes.len()) {
                        0 => State::Head,
                        left => State::Body(left),
                    };
                }
                State::ChunkSize(size) => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match (b as char).to_digit(16) {
                        Some(d) => match size.checked_mul(16) {
                            Some(s) => State::ChunkSize(s + u64::from(d)),
                            None => State::Off,
                        },
                        None if b == b'\n' => Self::after_size_line(size),
                        None if matches!(b, b';' | b' ' | b'\t' | b'\r') => {
                            State::ChunkSizeRest(size)
                        }
                        None => State::Off,
                    };
                }
                State::ChunkSizeRest(size) => match memchr::memchr(b'\n', &bytes[i..]) {
                    None => return,
                    Some(n) => {
                        i += n + 1;
                        self.state = Self::after_size_line(size);
                    }
                },
                State::ChunkData(left) => {
                    self.state = match skip(left, &mut i, bytes.len()) {
                        0 => State::ChunkDataEnd,
                        left => State::ChunkData(left),
                    };
                }
                State::ChunkDataEnd => match memchr::memchr(b'\n', &bytes[i..]) {
                    None => return,
                    Some(n) => {
                        i += n + 1;
                        self.state = State::ChunkSize(0);
                    }
                },
                State::Trailers(content) => match memchr::memchr(b'\n', &bytes[i..]) {
                    None => {
                        let content = content || bytes[i..].iter().any(|&b| b != b'\r');
                        self.state = State::Trailers(content);
                        return;
                    }
                    Some(n) => {
                        let content = content || bytes[i..i + n].iter().any(|&b| b != b'\r');
                        i += n + 1;
                        self.state = if content {
                            State::Trailers(false)
                        } else {
                            State::Head
                        };
                    }
                },
            }
        }
    }

    fn after_size_line(size: u64) -> State {
        if size == 0 {
            State::Trailers(false)
        } else {
            State::ChunkData(size)
        }
    }

    fn keep_partial(&mut self, bytes: &[u8]) {
        let room = LINE_KEEP.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.partial_cut = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Handles one complete head line (without its LF; `cut` if only its start was kept).
    /// Returns true when the line makes the head carry both Content-Length and
    /// Transfer-Encoding.
    fn head_line(&mut self, line: &[u8], cut: bool) -> bool {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !self.head.started {
            if !line.is_empty() {
                self.head.started = true;
                self.head.upgrade = line.starts_with(b"CONNECT ");
            }
            return false;
        }
        if line.is_empty() {
            self.end_of_head();
            return false;
        }
        if matches!(line[0], b' ' | b'\t') {
            // obs-fold: hyper refuses the head.
            self.state = State::Off;
            return false;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return false;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            match parse_length(value).filter(|_| !cut) {
                Some(n) if self.head.content_length.is_none_or(|m| m == n) => {
                    self.head.content_length = Some(n);
                }
                // Unreadable or differing lengths: hyper refuses the head.
                _ => self.state = State::Off,
            }
            return self.head.transfer_encoding;
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.head.transfer_encoding = true;
            return self.head.content_length.is_some();
        }
        if name.eq_ignore_ascii_case(b"upgrade") {
            self.head.upgrade = true;
        }
        false
    }

    fn end_of_head(&mut self) {
        let head = std::mem::take(&mut self.head);
        self.state = if head.upgrade {
            State::Off
        } else if head.transfer_encoding {
            State::ChunkSize(0)
        } else {
            match head.content_length {
                Some(n) if n > 0 => State::Body(n),
                _ => State::Head,
            }
        };
    }
}

/// Moves `i` over up to `left` counted body bytes of the `len` in this read; returns how many
/// are still to come.
fn skip(left: u64, i: &mut usize, len: usize) -> u64 {
    let take = left.min((len - *i) as u64);
    *i += take as usize;
    left - take
}

/// A Content-Length value as hyper reads it: ASCII digits, optional surrounding whitespace.
fn parse_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` cut at every point given, returns the bytes as hyper would see them and
    /// the tracker.
    fn run(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Framing) {
        let mut f = Framing::default();
        let mut out = stream.to_vec();
        let mut start = 0;
        for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
            let c = c.clamp(start, stream.len());
            f.feed(&mut out[start..c]);
            start = c;
        }
        (out, f)
    }

    fn every_split(stream: &[u8]) -> Vec<(Vec<u8>, Framing)> {
        let mut all = vec![run(stream, &[])];
        for a in 0..=stream.len() {
            all.push(run(stream, &[a]));
        }
        // One byte per read.
        all.push(run(stream, &(0..stream.len()).collect::<Vec<_>>()));
        all
    }

    const VALID: &[u8] = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 41\r\n\r\n\
        Content-Length: 1\r\nTransfer-Encoding: x\r\n\
        POST /c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n1a\r\nContent-Length: 3\r\n\r\nXYZ\r\n\r\n0\r\nT: v\r\n\r\n\
        \r\nGET /d HTTP/1.1\r\n\r\n";

    #[test]
    fn valid_pipelines_pass_unchanged_however_they_are_split() {
        for (out, f) in every_split(VALID) {
            assert_eq!(out, VALID);
            assert_eq!(f.state, State::Head);
            assert!(!f.head.started, "the tracker lost the message boundaries");
        }
    }

    fn poisoned_at(stream: &[u8], at: usize) {
        for (out, f) in every_split(stream) {
            assert_eq!(f.state, State::Off);
            let changed: Vec<usize> = (0..stream.len()).filter(|&i| out[i] != stream[i]).collect();
            assert_eq!(changed, vec![at], "{}", String::from_utf8_lossy(stream));
            assert_eq!(out[at], 0);
        }
    }

    #[test]
    fn content_length_with_transfer_encoding_gets_its_line_feed_nulled() {
        let s = b"GET / HTTP/1.1\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let at = s.windows(9).position(|w| w == b"chunked\r\n").unwrap() + 8;
        poisoned_at(s, at);
        let s = b"POST /x HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\ncontent-length: 5\r\n\r\nhello";
        let at = s.windows(3).position(|w| w == b"5\r\n").unwrap() + 2;
        poisoned_at(s, at);
        // Bare LF line ends: the NUL lands in the value's place.
        let s = b"POST /x HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n";
        let at = s.windows(8).position(|w| w == b"chunked\n").unwrap() + 7;
        poisoned_at(s, at);
    }

    #[test]
    fn a_conflict_after_a_chunked_body_is_found() {
        let s = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
            POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        let at = s.len() - 3;
        poisoned_at(s, at);
    }

    #[test]
    fn what_hyper_refuses_itself_or_may_upgrade_is_passed_through() {
        for s in [
            &b"POST /x HTTP/1.1\r\nContent-Length: +5\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"GET /x HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"CONNECT h:1 HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            for (out, f) in every_split(s) {
                assert_eq!(out, s);
                assert_eq!(f.state, State::Off);
            }
        }
    }

    #[test]
    fn long_lines_split_across_reads_keep_only_what_matters() {
        let long = "v".repeat(10_000);
        let s = format!("GET / HTTP/1.1\r\nX-Long: {long}\r\nContent-Length: 2\r\n\r\nab");
        let (out, f) = run(s.as_bytes(), &[20, 5_000, 9_000]);
        assert_eq!(out, s.as_bytes());
        assert_eq!(f.state, State::Head);
        assert!(f.partial.capacity() <= 2 * LINE_KEEP);
        // A Content-Length line too long to keep is not trusted.
        let s = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}5\r\n\r\n",
            " ".repeat(500)
        );
        let (_, f) = run(s.as_bytes(), &[20]);
        assert_eq!(f.state, State::Off);
    }

    /// One request of a generated pipeline: its bytes and, if its head carries both framing
    /// headers, where the tracker must put the NUL (relative to the request's start).
    fn request(
        body: &[u8],
        chunked: bool,
        chunk: usize,
        conflict: bool,
        filler: &[String],
    ) -> (Vec<u8>, Option<usize>) {
        let mut out = b"POST /p HTTP/1.1\r\nHost: t\r\n".to_vec();
        for f in filler {
            out.extend_from_slice(format!("X-{f}: {f}\r\n").as_bytes());
        }
        let mut at = None;
        if chunked || conflict {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        if !chunked || conflict {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            if conflict {
                at = Some(out.len() - 1);
            }
        }
        out.extend_from_slice(b"\r\n");
        if chunked {
            for piece in body.chunks(chunk.max(1)) {
                out.extend_from_slice(format!("{:X}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(body);
        }
        (out, at)
    }

    proptest::proptest! {
        /// Any pipeline of valid requests, bodies full of head-like bytes, cut anywhere, passes
        /// unchanged; a conflicting head anywhere in it gets exactly one NUL, at its line feed.
        #[test]
        fn generated_pipelines(
            reqs in proptest::collection::vec(
                (
                    proptest::collection::vec(proptest::sample::select(
                        vec![&b"Content-Length: 3\r\n"[..], b"Transfer-Encoding: chunked\r\n",
                             b"\r\n\r\n", b"0\r\n", b"GET / HTTP/1.1\r\n", b"x"]), 0..6),
                    proptest::bool::ANY,
                    1usize..20,
                    proptest::collection::vec("[a-z]{1,8}", 0..3),
                ),
                1..5,
            ),
            conflict_at in proptest::option::of(0usize..5),
            cuts in proptest::collection::vec(0usize..2000, 0..6),
        ) {
            let mut stream = Vec::new();
            let mut poison = None;
            for (i, (parts, chunked, chunk, filler)) in reqs.iter().enumerate() {
                let body = parts.concat();
                let conflict = conflict_at == Some(i);
                let (bytes, at) = request(&body, *chunked, *chunk, conflict, filler);
                if let Some(at) = at {
                    poison = Some(stream.len() + at);
                }
                stream.extend_from_slice(&bytes);
                if conflict {
                    break;
                }
            }
            let mut cuts = cuts;
            cuts.sort_unstable();
            let (out, f) = run(&stream, &cuts);
            let changed: Vec<usize> = (0..stream.len()).filter(|&i| out[i] != stream[i]).collect();
            match poison {
                None => {
                    proptest::prop_assert!(changed.is_empty());
                    proptest::prop_assert_eq!(f.state, State::Head);
                }
                Some(at) => {
                    proptest::prop_assert_eq!(changed, vec![at]);
                    proptest::prop_assert_eq!(out[at], 0);
                }
            }
        }
    }

    #[test]
    fn lengths_parse_as_hyper_reads_them() {
        assert_eq!(parse_length(b" 42 "), Some(42));
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b""), None);
        assert_eq!(parse_length(b"4 2"), None);
        assert_eq!(parse_length(b"-1"), None);
        assert_eq!(parse_length(b"99999999999999999999999"), None);
    }

    /// Bytes put in front are read first, in reads of any size, and checked like the rest: a
    /// head with both framing headers split between them and the socket is still caught.
    #[tokio::test]
    async fn bytes_in_front_are_read_first_and_checked() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(256);
        client
            .write_all(b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .await
            .unwrap();
        drop(client);
        let front =
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n".to_vec();
        let mut s = Sniffed::with_front(front.clone(), server);
        let mut first = [0u8; 7];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"GET / H");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(&rest[..front.len() - 7], &front[7..]);
        assert!(
            rest.contains(&0),
            "the conflicting head was not marked: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}
