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
use std::sync::{Mutex, OnceLock};

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

/// A stack of values per worker plus one shared by other threads (see [`per_worker`]), each
/// under its own lock on its own cache line, so that workers never touch each other's: for
/// things only the thread that made them should reuse (sockets registered with its runtime).
/// Most recently pushed on top.
#[derive(Debug)]
pub struct Stacks<T> {
    stacks: Box<[Stack<T>]>,
}

#[derive(Debug)]
#[repr(align(128))]
struct Stack<T>(Mutex<Vec<T>>);

impl<T> Default for Stacks<T> {
    /// A stack per worker declared so far ([`configure`]), and the shared one.
    fn default() -> Self {
        Stacks {
            stacks: per_worker(|| Stack(Mutex::new(Vec::new()))),
        }
    }
}

impl<T> Stacks<T> {
    fn mine(&self) -> &Mutex<Vec<T>> {
        &self.stacks[slot(self.stacks.len())].0
    }

    /// Pops the calling thread's values until one is `usable`, and returns it; the others are
    /// dropped.
    pub fn pop_usable(&self, mut usable: impl FnMut(&T) -> bool) -> Option<T> {
        let mut stack = self.mine().lock().ok()?;
        while let Some(v) = stack.pop() {
            if usable(&v) {
                return Some(v);
            }
        }
        None
    }

    /// Pushes onto the calling thread's stack, unless it holds `max` values already.
    pub fn push(&self, v: T, max: usize) {
        if let Ok(mut stack) = self.mine().lock() {
            if stack.len() < max {
                stack.push(v);
            }
        }
    }

    /// Values held now, over all stacks.
    pub fn len(&self) -> usize {
        self.stacks
            .iter()
            .map(|s| s.0.lock().map_or(0, |v| v.len()))
            .sum()
    }

    /// Whether no stack holds anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
