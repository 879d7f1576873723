//! HTTP/2 with prior knowledge (h2c) on the same listener as HTTP/1.1.
//!
//! A client that knows the server speaks HTTP/2 (gRPC's insecure channels, `curl
//! --http2-prior-knowledge`) starts with the connection preface instead of a request line. The
//! engine's own HTTP/1.1 path cannot parse that line (`PRI * HTTP/2.0`) and hands the connection
//! back with what it read, so the check costs the HTTP/1.1 fast path nothing: it runs only on
//! connections handed back, and is one comparison of the bytes already read.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads from `stream` until `buffered` (the bytes already read) either holds the whole preface
/// or cannot be its start; true when it holds the preface. `None` when the client closed, failed
/// or sent too little within `header_timeout`.
pub async fn detect(
    stream: &mut TcpStream,
    buffered: &mut Vec<u8>,
    header_timeout: Option<Duration>,
) -> Option<bool> {
    let reading = async {
        while buffered.len() < PREFACE.len() && PREFACE.starts_with(buffered) {
            match stream.read_buf(buffered).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        Some(buffered.starts_with(PREFACE))
    };
    match header_timeout {
        Some(t) => tokio::time::timeout(t, reading).await.ok().flatten(),
        None => reading.await,
    }
}

/// The streams open on one HTTP/2 connection, and since when it has had none: the HTTP/2 form
/// of `--header-timeout`'s bound on a keep-alive connection's idle time.
#[derive(Debug)]
pub struct Activity {
    active: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    /// A connection that has just started (idle from now).
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    /// Counts a stream until the returned guard (kept with its response body) is dropped.
    pub fn enter(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
    }

    /// When the connection went idle, or `None` while a stream is open.
    fn idle_since(&self) -> Option<Instant> {
        let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        (self.active.load(Ordering::Acquire) == 0).then_some(since)
    }
}

/// One open stream of an [`Activity`].
#[derive(Debug)]
pub struct Active(Arc<Activity>);

impl Drop for Active {
    fn drop(&mut self) {
        let mut since = self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *since = Instant::now();
        }
    }
}

/// A response body that keeps its stream counted until it is done with.
pub struct Counted<B> {
    body: B,
    _active: Active,
}

impl<B> Counted<B> {
    /// `body`, counted by `active`.
    pub fn new(body: B, active: Active) -> Self {
        Counted {
            body,
            _active: active,
        }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Resolves once `activity`'s connection has had no open stream for `idle` (never with `None`).
pub async fn idle_for(activity: &Activity, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        match activity.idle_since() {
            Some(since) if since.elapsed() >= idle => return,
            Some(since) => tokio::time::sleep_until((since + idle).into()).await,
            // Busy: look again after another period (a stream may last any time).
            None => tokio::time::sleep(idle).await,
        }
    }
}

/// A connection with bytes already read from it put back in front, passed on untouched (the
/// HTTP/1.1 framing tracker, `crate::sniff`, has no business in HTTP/2 frames).
#[derive(Debug)]
pub struct Rewound<S> {
    front: Vec<u8>,
    front_read: usize,
    inner: S,
}

impl<S> Rewound<S> {
    /// `front` is read before anything still in `inner`.
    pub fn new(front: Vec<u8>, inner: S) -> Self {
        Rewound {
            front,
            front_read: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.front_read < this.front.len() {
            let n = buf.remaining().min(this.front.len() - this.front_read);
            buf.put_slice(&this.front[this.front_read..this.front_read + n]);
            this.front_read += n;
            if this.front_read == this.front.len() {
                this.front = Vec::new();
                this.front_read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

crate::write_through::write_through!(Rewound);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    /// The preface is found however it is split, and HTTP/1.1 is told apart at its first byte
    /// that differs (no wait for 24 bytes a short HTTP/1.1 request never sends).
    #[tokio::test]
    async fn preface_split_anywhere_and_http1_told_apart() {
        for split in 0..=PREFACE.len() {
            let (mut c, mut s) = pair().await;
            let mut buffered = PREFACE[..split].to_vec();
            c.write_all(&PREFACE[split..]).await.unwrap();
            let found = detect(&mut s, &mut buffered, Some(Duration::from_secs(10))).await;
            assert_eq!(found, Some(true), "split at {split}");
        }
        let (mut c, mut s) = pair().await;
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buffered = Vec::new();
        assert_eq!(detect(&mut s, &mut buffered, None).await, Some(false));
        let (mut c, mut s) = pair().await;
        c.write_all(b"PRI / HTTP/1.1\r\n").await.unwrap();
        let mut buffered = Vec::new();
        assert_eq!(detect(&mut s, &mut buffered, None).await, Some(false));
    }
}
