//! Coarse timers for deadlines that are set on every request and almost never expire.
//!
//! Two such deadlines are set per request: the engine's requestTimeout while it waits for the
//! response head, and a host's header-read timeout (hyper arms one at the start of every request
//! head and drops it once the head is in). With tokio's timer each costs a timer-wheel entry and
//! the time driver's lock in and out, hundreds of instructions per request (docs/benchmarks.md).
//! Neither needs millisecond precision, so here sleeps sit in a slab under one lock that is
//! uncontended in practice (one set of sleeps per worker thread, or per accept loop), and a ticker
//! task, which runs only while sleeps are registered, wakes the expired ones once per tick. A sleep
//! fires between its deadline and one tick later.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

/// The engine's tick: requestTimeout is given in whole seconds.
const ENGINE_TICK: Duration = Duration::from_millis(100);

/// A set of sleeps and the ticker that wakes them.
struct Wheel {
    tick: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    sleeps: Slab<Entry>,
    /// Whether a ticker task is running; it exits when no sleeps are left, or with its runtime.
    ticking: bool,
}

struct Entry {
    deadline: Instant,
    waker: Option<Waker>,
    fired: bool,
}

impl Wheel {
    fn new(tick: Duration) -> Arc<Wheel> {
        Arc::new(Wheel {
            tick,
            state: Mutex::new(State::default()),
        })
    }

    /// The state, even if a thread panicked while holding it: every update leaves it consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A future that completes between `deadline` and one tick later. It registers with its wheel
/// at its first pending poll and unregisters when dropped, so a sleep that is never polled (or
/// dropped before its deadline, the usual case) costs a lock and a slab slot at most. It must be
/// polled inside a tokio runtime, where the ticker is spawned.
pub struct CoarseSleep {
    wheel: Arc<Wheel>,
    deadline: Instant,
    key: Option<usize>,
}

/// A sleep on the calling worker's wheel (see [`crate::worker`]; threads that are not workers
/// share one), ticking every 100 ms: for the engine's own per-request deadlines.
pub fn sleep_until(deadline: Instant) -> CoarseSleep {
    static WHEELS: OnceLock<Box<[Arc<Wheel>]>> = OnceLock::new();
    let wheels = WHEELS.get_or_init(|| crate::worker::per_worker(|| Wheel::new(ENGINE_TICK)));
    CoarseSleep {
        wheel: wheels[crate::worker::slot(wheels.len())].clone(),
        deadline,
        key: None,
    }
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut state = this.wheel.lock();
        match this.key {
            Some(key) => match state.sleeps.get_mut(key) {
                Some(e) if e.fired => return Poll::Ready(()),
                Some(e) => match &mut e.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                },
                None => return Poll::Ready(()),
            },
            None => {
                this.key = Some(state.sleeps.insert(Entry {
                    deadline: this.deadline,
                    waker: Some(cx.waker().clone()),
                    fired: false,
                }));
            }
        }
        if !state.ticking {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    state.ticking = true;
                    drop(state);
                    rt.spawn(ticker(this.wheel.clone()));
                }
                // Polled outside a runtime (a bug of the caller): nothing could wake it.
                Err(e) => log::error!("a timer was polled outside a tokio runtime: {e}"),
            }
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

/// Clears `ticking` if the ticker is dropped before it ends by itself (its runtime shut down), so
/// that the next sleep starts a ticker on a live runtime.
struct TickerGuard {
    wheel: Arc<Wheel>,
    ended: bool,
}

impl Drop for TickerGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.wheel.lock().ticking = false;
        }
    }
}

/// Wakes the sleeps whose deadline has passed, once per tick, while any sleeps are registered.
/// The guard is made before the first poll: a runtime may drop the task without ever running it.
fn ticker(wheel: Arc<Wheel>) -> impl Future<Output = ()> + Send {
    let guard = TickerGuard {
        wheel,
        ended: false,
    };
    tick_while_needed(guard)
}

async fn tick_while_needed(mut guard: TickerGuard) {
    let mut due = Vec::new();
    loop {
        tokio::time::sleep(guard.wheel.tick).await;
        {
            let mut state = guard.wheel.lock();
            if state.sleeps.is_empty() {
                // Cleared under the same lock as the emptiness check: a sleep registering
                // after it starts a new ticker.
                state.ticking = false;
                guard.ended = true;
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

/// A [`hyper::rt::Timer`] over its own set of sleeps, for a host's header-read timeout. Clones
/// share it; give each worker thread its own so that its lock stays on one thread.
#[derive(Clone)]
pub struct CoarseTimer {
    wheel: Arc<Wheel>,
}

impl CoarseTimer {
    /// A timer whose sleeps fire within `tick` after their deadline.
    pub fn new(tick: Duration) -> Self {
        CoarseTimer {
            wheel: Wheel::new(tick),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    const TICK: Duration = Duration::from_millis(20);

    fn pending(t: &CoarseTimer) -> usize {
        t.wheel.lock().sleeps.len()
    }

    fn ticking(t: &CoarseTimer) -> bool {
        t.wheel.lock().ticking
    }

    #[tokio::test]
    async fn a_sleep_fires_after_its_deadline_and_unregisters_when_dropped() {
        let timer = CoarseTimer::new(TICK);
        let start = Instant::now();
        timer.sleep(Duration::from_millis(50)).await;
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(pending(&timer), 0);
    }

    #[tokio::test]
    async fn a_dropped_sleep_leaves_nothing_behind_and_the_ticker_stops() {
        let timer = CoarseTimer::new(TICK);
        let mut sleep = timer.sleep(Duration::from_secs(3600));
        let polled = std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
        assert_eq!(pending(&timer), 1);
        assert!(ticking(&timer));
        drop(sleep);
        assert_eq!(pending(&timer), 0);
        // The ticker notices the empty wheel at its next tick and exits.
        let start = Instant::now();
        while ticking(&timer) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the ticker never stopped"
            );
            tokio::time::sleep(TICK).await;
        }
    }

    #[tokio::test]
    async fn sleeps_fire_each_at_its_own_deadline() {
        let timer = CoarseTimer::new(TICK);
        let short = timer.sleep(Duration::from_millis(30));
        let mut long = timer.sleep(Duration::from_millis(400));
        let start = Instant::now();
        tokio::select! {
            biased;
            _ = short => {}
            _ = long.as_mut() => panic!("the 400 ms sleep fired before the 30 ms one"),
        }
        // The fired short sleep is gone; the long one is still registered.
        assert_eq!(pending(&timer), 1);
        long.await;
        assert!(start.elapsed() >= Duration::from_millis(400));
        assert_eq!(pending(&timer), 0);
    }

    #[tokio::test]
    async fn an_unpolled_sleep_is_never_registered() {
        let timer = CoarseTimer::new(TICK);
        drop(timer.sleep_until(Instant::now()));
        assert_eq!(pending(&timer), 0);
        assert!(!ticking(&timer));
    }

    #[test]
    fn a_ticker_lost_with_its_runtime_is_restarted_by_the_next_sleep() {
        let timer = CoarseTimer::new(TICK);
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Registered on the first runtime, which then goes away with the sleep pending.
        first.block_on(async {
            let mut sleep = timer.sleep(Duration::from_secs(3600));
            let polled = std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
            std::mem::forget(sleep);
        });
        assert!(ticking(&timer));
        drop(first);
        assert!(!ticking(&timer), "the dropped ticker left `ticking` set");
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        second.block_on(timer.sleep(Duration::from_millis(50)));
    }

    #[tokio::test]
    async fn engine_sleeps_fire() {
        let start = Instant::now();
        sleep_until(start + Duration::from_millis(150)).await;
        assert!(start.elapsed() >= Duration::from_millis(150));
    }
}
