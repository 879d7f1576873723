//! Byte buffers lent to a connection for one exchange and returned after it, so that an idle
//! keep-alive connection holds none (the idle-memory bar of docs/benchmarks.md) and a busy one
//! allocates none.

use std::cell::RefCell;

/// What a buffer starts with.
pub const INITIAL: usize = 8 * 1024;
/// Buffers kept per thread.
const KEPT: usize = 64;
/// Buffers that grew beyond this (a long head, a big read) are freed rather than kept.
const LARGEST_KEPT: usize = 256 * 1024;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least [`INITIAL`] bytes.
pub fn take() -> Vec<u8> {
    FREE.with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Vec::with_capacity(INITIAL))
}

/// Gives a buffer back for the thread's next exchange.
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() < INITIAL || buf.capacity() > LARGEST_KEPT {
        return;
    }
    buf.clear();
    FREE.with_borrow_mut(|free| {
        if free.len() < KEPT {
            free.push(buf);
        }
    });
}

/// The buffers of one exchange, given back when dropped.
pub struct Lent {
    /// Bytes read from the client.
    pub client: Vec<u8>,
    /// Bytes read from the backend.
    pub backend: Vec<u8>,
    /// The request head for the backend.
    pub request: Vec<u8>,
    /// Bytes on their way to the client.
    pub out: Vec<u8>,
}

impl Lent {
    /// Borrows four buffers; `client` starts with `already` (bytes read before).
    pub fn new(already: Vec<u8>) -> Lent {
        let client = if already.capacity() >= INITIAL {
            already
        } else {
            let mut b = take();
            b.extend_from_slice(&already);
            b
        };
        Lent {
            client,
            backend: take(),
            request: take(),
            out: take(),
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        for b in [
            std::mem::take(&mut self.client),
            std::mem::take(&mut self.backend),
            std::mem::take(&mut self.request),
            std::mem::take(&mut self.out),
        ] {
            give(b);
        }
    }
}
