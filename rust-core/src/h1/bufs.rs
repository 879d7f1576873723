//! Byte buffers lent to a connection for one exchange and returned after it, so that an idle
//! keep-alive connection holds none (the idle-memory bar of docs/benchmarks.md) and a busy one
//! allocates none: each thread keeps the sets its connections gave back.

use std::cell::RefCell;

/// What a buffer starts with.
const INITIAL: usize = 8 * 1024;
/// Sets kept per thread.
const KEPT: usize = 64;
/// Buffers that grew beyond this (a long head, a large body read) are freed rather than kept.
const LARGEST_KEPT: usize = 256 * 1024;

thread_local! {
    static FREE: RefCell<Vec<Bufs>> = const { RefCell::new(Vec::new()) };
}

/// The buffers of one exchange.
#[derive(Default)]
pub struct Bufs {
    /// Bytes read from the client.
    pub client: Vec<u8>,
    /// Bytes read from the backend.
    pub backend: Vec<u8>,
    /// The request head (and small body) for the backend.
    pub request: Vec<u8>,
    /// Bytes on their way to the client.
    pub out: Vec<u8>,
}

impl Bufs {
    fn fresh() -> Bufs {
        Bufs {
            client: Vec::with_capacity(INITIAL),
            backend: Vec::with_capacity(INITIAL),
            request: Vec::with_capacity(INITIAL),
            out: Vec::with_capacity(INITIAL),
        }
    }
}

/// A set of buffers borrowed from the thread's free list, given back when dropped.
pub struct Lent(Bufs);

impl Lent {
    /// Borrows a set of empty buffers.
    pub fn new() -> Lent {
        Lent(FREE.with_borrow_mut(Vec::pop).unwrap_or_else(Bufs::fresh))
    }

    /// Whether client bytes wait to be served (a pipelined request's start).
    pub fn has_client_bytes(&self) -> bool {
        !self.0.client.is_empty()
    }

    /// The buffers.
    pub fn bufs(&mut self) -> &mut Bufs {
        &mut self.0
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut b = std::mem::take(&mut self.0);
        for v in [&mut b.client, &mut b.backend, &mut b.request, &mut b.out] {
            if v.capacity() < INITIAL || v.capacity() > LARGEST_KEPT {
                // Taken away (a handover) or grown large: start again small.
                *v = Vec::with_capacity(INITIAL);
            } else {
                v.clear();
            }
        }
        FREE.with_borrow_mut(|free| {
            if free.len() < KEPT {
                free.push(b);
            }
        });
    }
}
