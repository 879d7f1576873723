//! requestTimeout is per operation (ANCM): waiting for the response head must not time out
//! while the client's upload is still moving. The request body records when it last moved;
//! the head wait extends its deadline from there.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::body::{BoxError, RequestBody};

/// When a request body last delivered data.
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    last_nanos: AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let n = self.start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.last_nanos.store(n, Ordering::Relaxed);
    }

    /// The last time data moved (the start, if it never did).
    pub fn last(&self) -> Instant {
        self.start + std::time::Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }
}

/// The body sent to the backend: the host's body, noting progress when it has one (bodiless
/// requests, the common case, allocate nothing for it).
pub struct OutgoingBody {
    inner: RequestBody,
    progress: Option<Arc<Progress>>,
}

impl OutgoingBody {
    /// Wraps `inner`, returning the progress record when there is a body to track.
    pub fn new(inner: RequestBody) -> (OutgoingBody, Option<Arc<Progress>>) {
        let progress = (!inner.is_end_stream()).then(|| Arc::new(Progress::new()));
        (
            OutgoingBody {
                inner,
                progress: progress.clone(),
            },
            progress,
        )
    }
}

impl Body for OutgoingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(_))), Some(p)) = (&r, &this.progress) {
            p.touch();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
