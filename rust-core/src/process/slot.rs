//! One process slot of an application (processesPerApplication has N of them): the state
//! machine Idle → Starting → Running → (exit) Idle, with every request that arrives during a
//! start waiting on that one start.
//!
//! The request path reads the running backend with one atomic load; the mutex is only taken
//! when there is no live backend.

use std::future::Future;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use super::backend::Backend;
use super::start::StartFailure;

/// The outcome of a start, shared by everyone who waited for it.
pub type StartResult = Result<Arc<Backend>, Arc<StartFailure>>;

#[derive(Debug)]
enum State {
    Idle,
    Starting(watch::Receiver<Option<StartResult>>),
}

/// A slot holding at most one backend process.
#[derive(Debug)]
pub struct Slot {
    current: ArcSwapOption<Backend>,
    state: Mutex<State>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            current: ArcSwapOption::empty(),
            state: Mutex::new(State::Idle),
        }
    }
}

impl Slot {
    /// The live backend, if there is one (cheap; no lock).
    pub fn running(&self) -> Option<Arc<Backend>> {
        self.current.load_full().filter(|b| b.is_alive())
    }

    /// Whether a start is under way.
    pub fn is_starting(&self) -> bool {
        matches!(self.state.lock().as_deref(), Ok(State::Starting(_)))
    }

    /// Returns the live backend, or starts one with `start` (spawned on the current runtime,
    /// so it completes even if this caller goes away) and waits for it. Callers arriving during
    /// a start wait for the same start and get the same outcome.
    pub async fn acquire<F, Fut>(self: &Arc<Self>, start: F) -> StartResult
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StartResult> + Send + 'static,
    {
        if let Some(b) = self.running() {
            return Ok(b);
        }
        let mut rx = {
            let Ok(mut state) = self.state.lock() else {
                return Err(Arc::new(StartFailure {
                    cause: "internal error: slot state poisoned".into(),
                    output: String::new(),
                    plain_502: false,
                }));
            };
            if let Some(b) = self.running() {
                return Ok(b);
            }
            match &*state {
                State::Starting(rx) => rx.clone(),
                State::Idle => {
                    let (tx, rx) = watch::channel(None);
                    *state = State::Starting(rx.clone());
                    let fut = start();
                    let slot = self.clone();
                    tokio::spawn(async move {
                        let result = fut.await;
                        if let Ok(b) = &result {
                            slot.current.store(Some(b.clone()));
                        }
                        if let Ok(mut state) = slot.state.lock() {
                            *state = State::Idle;
                        }
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        loop {
            if let Some(result) = rx.borrow_and_update().clone() {
                return result;
            }
            if rx.changed().await.is_err() {
                return Err(Arc::new(StartFailure {
                    cause: "the start was abandoned".into(),
                    output: String::new(),
                    plain_502: false,
                }));
            }
        }
    }

    /// Puts a new backend in the slot (an overlapping recycle: it takes new requests from now
    /// on) and returns the one it replaces, for the caller to drain and stop.
    pub fn replace(&self, next: Arc<Backend>) -> Option<Arc<Backend>> {
        self.current.swap(Some(next))
    }

    /// Takes the backend out of the slot (for a stop or recycle): new requests will start a
    /// new one. Returns it so the caller can stop it.
    pub fn take(&self) -> Option<Arc<Backend>> {
        self.current.swap(None)
    }
}
