//! Ending a tunnelled WebSocket session when its backend drains: at a frame boundary in each
//! direction, a close frame with status 1001 (going away, RFC 6455 §7.4.1) goes to the client
//! and to the backend, so both see a clean close instead of a cut connection. Until then the
//! bytes are pumped as they are; only the frame headers are read, to know where frames end.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a side may take to answer our close before its connection is shut.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The status both sides' close frames carry (going away, RFC 6455 §7.4.1).
pub const GOING_AWAY: u16 = 1001;

/// The drain signal of a session: resolves once `closing` names a time and that time has
/// passed; never while no drain begins. Every tunnel (byte stream or message fragments) ends
/// its session by this.
pub async fn due(mut closing: watch::Receiver<Option<std::time::Instant>>) {
    loop {
        let at = *closing.borrow_and_update();
        match at {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(Instant::from_std(at)) => return,
                    r = closing.changed() => if r.is_err() {
                        tokio::time::sleep_until(Instant::from_std(at)).await;
                        return;
                    },
                }
            }
            None => {
                if closing.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Where the frames of one direction's byte stream begin and end.
#[derive(Debug, Default)]
pub struct Boundary {
    head: [u8; 14],
    have: usize,
    remaining: u64,
}

impl Boundary {
    /// Whether the bytes seen so far end exactly at the end of a frame.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// Takes in `data`; with `stop`, only up to the first frame boundary in it. Returns how
    /// many bytes were taken (all of them without `stop`).
    pub fn feed(&mut self, data: &[u8], stop: bool) -> usize {
        let mut i = 0;
        loop {
            if stop && self.at_boundary() {
                return i;
            }
            if i == data.len() {
                return i;
            }
            if self.remaining > 0 {
                let take = self.remaining.min((data.len() - i) as u64);
                self.remaining -= take;
                i += take as usize;
                continue;
            }
            self.head[self.have] = data[i];
            self.have += 1;
            i += 1;
            if let Some((_, payload)) = header(&self.head[..self.have]) {
                self.have = 0;
                self.remaining = payload;
            }
        }
    }
}

/// The length of a frame header and its payload length, once the whole header is there.
fn header(h: &[u8]) -> Option<(usize, u64)> {
    if h.len() < 2 {
        return None;
    }
    let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
    let (ext, len) = match h[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let total = 2 + ext + mask;
    if h.len() < total {
        return None;
    }
    let len = len.unwrap_or_else(|| {
        h[2..2 + ext]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    });
    Some((total, len))
}

/// The close frame a server sends: status [`GOING_AWAY`], unmasked.
const CLOSE_TO_CLIENT: [u8; 4] = [0x88, 0x02, (GOING_AWAY >> 8) as u8, GOING_AWAY as u8];

/// The close frame a client sends: status [`GOING_AWAY`], masked (RFC 6455 §5.3).
fn close_to_backend() -> [u8; 8] {
    let mut m = [0u8; 4];
    let _ = getrandom::fill(&mut m);
    let [hi, lo] = GOING_AWAY.to_be_bytes();
    [0x88, 0x82, m[0], m[1], m[2], m[3], hi ^ m[0], lo ^ m[1]]
}

/// Pumps `from` to `to` until EOF; once `closing` names a time and it has passed, stops at
/// the next frame boundary, sends `close`, drops what else comes (the peer's close answer)
/// for up to [`CLOSE_WAIT`], and shuts `to`. Returns the bytes passed on.
pub async fn pump<R, W>(
    mut from: R,
    mut to: W,
    close: &[u8],
    closing: watch::Receiver<Option<std::time::Instant>>,
) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut frames = Boundary::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut moved = 0u64;
    let mut signal = std::pin::pin!(due(closing));
    let mut due = false;
    loop {
        if due && frames.at_boundary() {
            to.write_all(close).await?;
            to.flush().await?;
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Ok(n) = from.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            let _ = to.shutdown().await;
            return Ok(moved);
        }
        tokio::select! {
            r = from.read(&mut buf) => {
                let n = r?;
                if n == 0 {
                    let _ = to.shutdown().await;
                    return Ok(moved);
                }
                let take = frames.feed(&buf[..n], due);
                to.write_all(&buf[..take]).await?;
                moved += take as u64;
                if take < n {
                    // The rest follows our close: not passed on.
                    due = true;
                    debug_assert!(frames.at_boundary());
                }
            }
            () = signal.as_mut(), if !due => {
                due = true;
            }
        }
    }
}

/// Both directions of a session, the backend's drain signal ending them with 1001.
pub async fn session<C, B>(
    client: C,
    backend: B,
    closing: watch::Receiver<Option<std::time::Instant>>,
) -> std::io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, cw) = tokio::io::split(client);
    let (br, bw) = tokio::io::split(backend);
    let to_backend = close_to_backend();
    let up = pump(cr, bw, &to_backend, closing.clone());
    let down = pump(br, cw, &CLOSE_TO_CLIENT, closing);
    let (a, b) = tokio::join!(up, down);
    Ok((a?, b?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(masked: bool, len: usize) -> Vec<u8> {
        let mut f = vec![0x82];
        let m = if masked { 0x80 } else { 0 };
        match len {
            0..=125 => f.push(m | len as u8),
            126..=65535 => {
                f.push(m | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(m | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(7u8, len));
        f
    }

    #[test]
    fn boundaries_are_found_in_any_split() {
        let mut stream = Vec::new();
        let mut ends = vec![];
        for (masked, len) in [
            (false, 0),
            (true, 5),
            (false, 126),
            (true, 70_000),
            (false, 125),
        ] {
            stream.extend(frame(masked, len));
            ends.push(stream.len());
        }
        for piece in [1, 2, 3, 7, 1000, stream.len()] {
            let mut b = Boundary::default();
            let mut seen = vec![];
            let mut pos = 0;
            while pos < stream.len() {
                let end = (pos + piece).min(stream.len());
                let mut chunk = &stream[pos..end];
                while !chunk.is_empty() {
                    // Step from boundary to boundary (after leaving the current one).
                    let first = b.feed(&chunk[..1], false);
                    let rest = b.feed(&chunk[first..], true);
                    pos += first + rest;
                    chunk = &chunk[first + rest..];
                    if b.at_boundary() {
                        seen.push(pos);
                    }
                }
            }
            assert_eq!(seen, ends, "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn the_drain_closes_both_ways_at_a_boundary() {
        let (mut client, proxy_client) = tokio::io::duplex(1 << 20);
        let (proxy_backend, mut backend) = tokio::io::duplex(1 << 20);
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(session(proxy_client, proxy_backend, rx));
        // Half a frame from the backend, then the drain: the frame is finished first.
        let f = frame(false, 10);
        backend.write_all(&f[..5]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(Some(std::time::Instant::now())).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        backend.write_all(&f[5..]).await.unwrap();
        backend.write_all(&frame(false, 3)).await.unwrap();
        let mut got = vec![0u8; f.len() + 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..f.len()], &f[..]);
        assert_eq!(&got[f.len()..], &CLOSE_TO_CLIENT);
        let mut to_backend = [0u8; 8];
        backend.read_exact(&mut to_backend).await.unwrap();
        assert_eq!(&to_backend[..2], &[0x88, 0x82]);
        let status = [to_backend[6] ^ to_backend[2], to_backend[7] ^ to_backend[3]];
        assert_eq!(u16::from_be_bytes(status), 1001);
        drop(client);
        drop(backend);
        task.await.unwrap().unwrap();
    }
}
