//! Spreading client connections evenly over the workers.
//!
//! The kernel hands each new connection to one worker's `SO_REUSEPORT` listener by a hash of its
//! addresses and ports, so the split is random: 64 connections came out 36/29 in one of three
//! tries (docs/benchmarks.md). A worker keeps a connection for its whole life (no work stealing),
//! so the busier worker's clients wait longer and the tail latency is theirs. Here a worker that
//! accepts a connection while it serves more than another worker hands the socket to the one
//! serving fewest, once per connection; requests never cross threads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// A connection handed from the worker that accepted it to the one that will serve it.
pub type Handoff = (std::net::TcpStream, SocketAddr);

/// The open connections of each worker and a way to give each worker a connection.
pub struct Balancer {
    open: Box<[AtomicUsize]>,
    inboxes: Box<[mpsc::UnboundedSender<Handoff>]>,
}

impl Balancer {
    /// A balancer for `workers` workers, with the receiving end of each one's inbox.
    pub fn new(workers: usize) -> (Arc<Balancer>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let balancer = Balancer {
            open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: senders.into_boxed_slice(),
        };
        (Arc::new(balancer), receivers)
    }

    /// The worker that should serve a connection accepted by worker `me`: `me` unless another
    /// serves fewer connections than `me` does.
    pub fn target(&self, me: usize) -> usize {
        least_loaded(self.open.len(), me, |i| {
            self.open[i].load(Ordering::Relaxed)
        })
    }

    /// Gives `conn` to worker `to`; returns it if that worker is gone (its runtime stopped).
    pub fn hand_to(&self, to: usize, conn: Handoff) -> Result<(), Handoff> {
        self.inboxes[to].send(conn).map_err(|e| e.0)
    }

    /// Counts a connection as served by `worker` until the returned guard is dropped.
    pub fn open(self: &Arc<Self>, worker: usize) -> OpenConnection {
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            balancer: self.clone(),
            worker,
        }
    }
}

/// `me`, unless some worker has fewer connections than `me`; then the first with fewest.
fn least_loaded(workers: usize, me: usize, count: impl Fn(usize) -> usize) -> usize {
    let (mut best, mut fewest) = (me, count(me));
    for i in 0..workers {
        let c = count(i);
        if c < fewest {
            (best, fewest) = (i, c);
        }
    }
    best
}

/// One open connection of a worker, counted until dropped.
pub struct OpenConnection {
    balancer: Arc<Balancer>,
    worker: usize,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.balancer.open[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(counts: &[usize], me: usize) -> usize {
        least_loaded(counts.len(), me, |i| counts[i])
    }

    #[test]
    fn a_worker_keeps_its_connection_unless_another_serves_fewer() {
        assert_eq!(pick(&[3, 3], 0), 0);
        assert_eq!(pick(&[3, 3], 1), 1);
        assert_eq!(pick(&[4, 3], 0), 1);
        assert_eq!(pick(&[3, 4], 1), 0);
        assert_eq!(pick(&[5, 2, 2], 0), 1);
        assert_eq!(pick(&[5, 4, 2], 1), 2);
        assert_eq!(pick(&[0], 0), 0);
    }

    #[test]
    fn open_connections_are_counted_until_dropped() {
        let (b, _rx) = Balancer::new(2);
        let first = b.open(0);
        let second = b.open(0);
        assert_eq!(b.target(0), 1);
        let third = b.open(1);
        assert_eq!(b.target(1), 1);
        drop((first, second));
        assert_eq!(b.target(1), 0);
        drop(third);
        assert_eq!(b.target(1), 1);
    }
}
