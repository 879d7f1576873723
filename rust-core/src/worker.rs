//! Worker threads of a host that runs one single-threaded runtime per core.
//!
//! A host with that layout (ancm-serve on Linux) tells the engine how many workers it runs
//! ([`configure`], once, before any app exists) and marks each worker thread with its number
//! ([`enter`]). The engine then keeps per-worker state where sharing would cost: a backend's idle
//! connections are kept per worker, because a pooled connection is driven by the runtime of the
//! thread that opened it, and handing it to another thread would turn every request into two
//! cross-thread wake-ups. Threads that are not workers (the C ABI's multi-thread runtime, a
//! host's control thread) share one extra slot.

use std::cell::Cell;
use std::sync::OnceLock;

/// The number of workers, set once by the host.
static COUNT: OnceLock<usize> = OnceLock::new();

thread_local! {
    /// This thread's worker number, or `usize::MAX` on a thread that is not a worker.
    static CURRENT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Declares that the host runs `n` worker threads. Only the first call counts (returns false
/// for later ones); it must precede the creation of the apps whose backends should keep
/// per-worker state, since that state is sized when a backend starts.
pub fn configure(n: usize) -> bool {
    COUNT.set(n).is_ok()
}

/// The number of workers declared with [`configure`] (0 if none).
pub fn count() -> usize {
    COUNT.get().copied().unwrap_or(0)
}

/// Marks the calling thread as worker `index` (0-based, below [`count`]) for the rest of its
/// life.
pub fn enter(index: usize) {
    CURRENT.with(|c| c.set(index));
}

/// The calling thread's worker number, `None` on other threads.
pub fn current() -> Option<usize> {
    let i = CURRENT.with(Cell::get);
    (i != usize::MAX).then_some(i)
}

/// One value per worker declared so far, plus one more (the last) shared by every other thread:
/// per-worker state, indexed with [`slot`].
pub fn per_worker<T>(mut make: impl FnMut() -> T) -> Box<[T]> {
    (0..=count()).map(|_| make()).collect()
}

/// The calling thread's index into a [`per_worker`] array of `len` values: its worker's, else the
/// shared last one (also for a worker numbered beyond the array).
pub fn slot(len: usize) -> usize {
    let last = len.saturating_sub(1);
    current().map_or(last, |w| w.min(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_not_workers_until_they_enter() {
        assert_eq!(current(), None);
        std::thread::spawn(|| {
            enter(3);
            assert_eq!(current(), Some(3));
        })
        .join()
        .unwrap();
        assert_eq!(current(), None);
    }

    #[test]
    fn workers_get_their_own_slot_and_other_threads_the_last() {
        assert_eq!(slot(3), 2);
        std::thread::spawn(|| {
            enter(1);
            assert_eq!(slot(3), 1);
            // A worker numbered beyond the array shares the last slot.
            enter(7);
            assert_eq!(slot(3), 2);
        })
        .join()
        .unwrap();
    }
}
