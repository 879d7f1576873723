//! hyper's header-read timer, at a coarse granularity.
//!
//! hyper arms a timer at the start of every request head it reads (slowloris protection) and drops
//! it once the head is in, so on a keep-alive connection each request creates, registers and
//! cancels one. With tokio's timer that is a boxed `Sleep`, a timer-wheel entry and the time
//! driver's lock in and out: about 1,000 instructions per request (docs/benchmarks.md). A header
//! timeout of 30 s does not need millisecond precision, so [`CoarseTimer`] keeps its sleeps in a
//! slab under one uncontended lock and lets a ticker task, which runs only while sleeps exist,
//! wake the expired ones once per tick: a sleep fires up to one tick after its deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

/// A [`hyper::rt::Timer`] whose sleeps fire within one `tick` after their deadline. Clones share
/// one set of sleeps and one ticker; give each accept loop its own so the lock stays on one thread.
#[derive(Clone)]
pub struct CoarseTimer {
    wheel: Arc<Wheel>,
}

struct Wheel {
    tick: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    sleeps: Slab<Entry>,
    /// Whether a ticker task is running; it exits when no sleeps are left.
    ticking: bool,
}

struct Entry {
    deadline: Instant,
    waker: Option<Waker>,
    fired: bool,
}

impl Wheel {
    /// The state, even if a thread panicked while holding it: every update leaves it consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CoarseTimer {
    /// A timer with the given granularity. The ticker is spawned on the tokio runtime of the
    /// first poll that registers a sleep, so sleeps must be polled inside a runtime.
    pub fn new(tick: Duration) -> Self {
        CoarseTimer {
            wheel: Arc::new(Wheel {
                tick,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Sleeps registered and not yet dropped (for tests).
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.wheel.lock().sleeps.len()
    }
}

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoarseSleep {
            wheel: self.wheel.clone(),
            deadline,
            key: None,
        })
    }
}

/// One sleep: registers with its wheel at its first pending poll (hyper polls the header timer
/// only when the head is not complete yet) and unregisters when dropped.
struct CoarseSleep {
    wheel: Arc<Wheel>,
    deadline: Instant,
    key: Option<usize>,
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let wheel = self.wheel.clone();
        let mut state = wheel.lock();
        match self.key {
            Some(key) => match state.sleeps.get_mut(key) {
                Some(e) if e.fired => return Poll::Ready(()),
                Some(e) => match &mut e.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                },
                None => return Poll::Ready(()),
            },
            None => {
                let key = state.sleeps.insert(Entry {
                    deadline: self.deadline,
                    waker: Some(cx.waker().clone()),
                    fired: false,
                });
                self.key = Some(key);
            }
        }
        if !state.ticking {
            state.ticking = true;
            drop(state);
            tokio::spawn(ticker(wheel));
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for CoarseSleep {}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.wheel.lock().sleeps.try_remove(key);
        }
    }
}

/// Wakes the sleeps whose deadline has passed, once per tick, while any sleeps are registered.
async fn ticker(wheel: Arc<Wheel>) {
    let mut due = Vec::new();
    loop {
        tokio::time::sleep(wheel.tick).await;
        {
            let mut state = wheel.lock();
            if state.sleeps.is_empty() {
                state.ticking = false;
                return;
            }
            let now = Instant::now();
            for (_, e) in state.sleeps.iter_mut() {
                if !e.fired && e.deadline <= now {
                    e.fired = true;
                    due.extend(e.waker.take());
                }
            }
        }
        // Outside the lock: a woken task on another thread may poll its sleep at once.
        for w in due.drain(..) {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    const TICK: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn a_sleep_fires_after_its_deadline_and_unregisters_when_dropped() {
        let timer = CoarseTimer::new(TICK);
        let start = Instant::now();
        let sleep = timer.sleep(Duration::from_millis(50));
        sleep.await;
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(timer.pending(), 0);
    }

    #[tokio::test]
    async fn a_dropped_sleep_leaves_nothing_behind_and_the_ticker_stops() {
        let timer = CoarseTimer::new(TICK);
        let mut sleep = timer.sleep(Duration::from_secs(3600));
        // One pending poll registers it.
        let polled = std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
        assert_eq!(timer.pending(), 1);
        assert!(timer.wheel.lock().ticking);
        drop(sleep);
        assert_eq!(timer.pending(), 0);
        // The ticker notices the empty wheel at its next tick and exits.
        tokio::time::sleep(TICK * 5).await;
        assert!(!timer.wheel.lock().ticking);
    }

    #[tokio::test]
    async fn many_sleeps_fire_each_at_its_own_deadline() {
        let timer = CoarseTimer::new(TICK);
        let short = timer.sleep(Duration::from_millis(30));
        let long = timer.sleep(Duration::from_millis(400));
        let start = Instant::now();
        let mut long = long;
        tokio::select! {
            biased;
            _ = short => {}
            _ = long.as_mut() => panic!("the 400 ms sleep fired before the 30 ms one"),
        }
        // The fired short sleep is gone; the long one is still registered.
        assert_eq!(timer.pending(), 1);
        long.await;
        assert!(start.elapsed() >= Duration::from_millis(400));
        assert_eq!(timer.pending(), 0);
    }

    #[tokio::test]
    async fn an_unpolled_sleep_is_never_registered() {
        let timer = CoarseTimer::new(TICK);
        let sleep = timer.sleep_until(Instant::now());
        assert_eq!(timer.pending(), 0);
        drop(sleep);
        assert!(!timer.wheel.lock().ticking);
    }
}
