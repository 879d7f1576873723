//! Generations of an application and the switch between them (docs/architecture.md, "Deploys
//! without downtime"): a new generation is prepared (its shadow copy made), its processes are
//! started and health-gated off the request path, and only then do the slots swap to them (one
//! atomic store each, so the request path is unchanged); the old processes drain and stop, and
//! the old copy is deleted. Also warm-up (preload) and the periodic health probe.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::deploy::{changes, shadow, Exclusions, Generation};
use crate::event::Event;
use crate::host::HostInfo;
use crate::process::{self, Backend, StartFailure};

use super::Inner;

/// How long a replaced backend is left before its in-flight count is trusted.
const DRAIN_GRACE: Duration = Duration::from_millis(50);

/// Where an application's shadow copies go, or nothing when shadow copies are off.
#[derive(Debug)]
pub(super) struct Plan {
    /// The folder of every generation's copy, and this app's prefix of their names.
    shadow: Option<(PathBuf, String)>,
    exclusions: Arc<Exclusions>,
}

impl Plan {
    /// The plan for `config` at `host`, and its first generation. Cleans the copies a crashed
    /// host left behind.
    pub(super) fn new(config: &Config, host: &HostInfo) -> (Plan, Generation) {
        let d = &config.deploy;
        let base = shadow::base_dir(&host.site_root, d.shadow_copy_directory.as_deref());
        let log_prefix = host
            .site_root
            .join(process::launch::native_path(&config.stdout_log_file));
        let exclusions = Arc::new(
            Exclusions::new(&host.site_root, vec![base.clone()])
                .with_stdout_log(&host.site_root, &log_prefix),
        );
        let shadow = d.shadow_copy.then(|| {
            shadow::clean_stale(&base);
            (base, shadow::app_prefix())
        });
        let plan = Plan { shadow, exclusions };
        let first = plan.generation(1, host);
        (plan, first)
    }

    /// Generation `id`, not yet prepared.
    fn generation(&self, id: u64, host: &HostInfo) -> Generation {
        let copy = self
            .shadow
            .as_ref()
            .map(|(base, prefix)| base.join(format!("{prefix}{id}")));
        Generation::new(id, host.site_root.clone(), copy, self.exclusions.clone())
    }

    /// What the change watch fingerprints: the whole site with shadow copies, else the files
    /// of recycleOnFileChange.
    fn fingerprint(&self, config: &Config, host: &HostInfo) -> changes::Fingerprint {
        if self.shadow.is_some() {
            changes::tree(&host.site_root, &self.exclusions)
        } else {
            changes::files(&host.site_root, &config.deploy.recycle_on_file_change)
        }
    }
}

impl Inner {
    /// Holds a started process back from traffic until a GET of healthCheckPath answers 2xx,
    /// within startupTimeLimit (at least one probe); else it is killed and the start failed.
    pub(super) async fn health_gate(&self, b: &Backend) -> Result<(), StartFailure> {
        let Some(path) = self.config.deploy.health_check_path.as_deref() else {
            return Ok(());
        };
        let deadline = Instant::now() + self.config.startup_time_limit;
        let mut pause = Duration::from_millis(20);
        let last = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let probe =
                process::probe(b, path, left.max(Duration::from_millis(500)), &self.control);
            let last = tokio::select! {
                r = probe => match r { Ok(()) => return Ok(()), Err(e) => e },
                info = b.child.wait() => format!("process {} {} before it was healthy", b.child.pid(), info.description),
            };
            if b.child.has_exited() || Instant::now() >= deadline {
                break last;
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        };
        b.child.mark_stopping();
        b.child.kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), b.child.wait()).await;
        Err(StartFailure {
            cause: format!(
                "process {} did not pass its health check (healthCheckPath) within startupTimeLimit = {} s: {last}",
                b.child.pid(),
                self.config.startup_time_limit.as_secs()
            ),
            output: b.child.output(),
            plain_502: false,
        })
    }

    /// Stops `b` after its requests are done: it takes no new ones (the caller took it out of
    /// its slot), those in flight may finish within shutdownTimeLimit, its WebSocket sessions
    /// get 1001 after webSocketDrainSeconds, then the shutdown event as for any stop, within
    /// what is left of the limit.
    pub(super) async fn drain_and_stop(&self, b: Arc<Backend>) {
        let limit = self.config.shutdown_time_limit;
        let waited = self.drain(&b).await;
        let left = limit
            .saturating_sub(waited)
            .max(Duration::from_secs(1).min(limit));
        process::stop(&b, &self.host.app_path, left, &self.control).await;
    }

    /// The drain rule of every overlapped replacement (a generation switch, a recycle, a host
    /// replacing the whole app): waits until `b`'s requests in flight are done, at most
    /// shutdownTimeLimit, and its WebSocket sessions closed (1001 after
    /// webSocketDrainSeconds). Returns how long it waited.
    pub(super) async fn drain(&self, b: &Backend) -> Duration {
        let limit = self.config.shutdown_time_limit;
        let started = Instant::now();
        // A request that read this backend from its slot just before the swap counts itself
        // in flight a moment later: let it.
        tokio::time::sleep(DRAIN_GRACE.min(limit)).await;
        let ws = self.config.deploy.websocket_drain;
        b.begin_drain(started + ws);
        while b.in_flight() > 0 && started.elapsed() < limit && !b.child.has_exited() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Its WebSocket sessions close themselves (1001) after webSocketDrainSeconds; give them
        // that and the close handshake's second.
        let ws_deadline = started + ws + Duration::from_secs(2);
        while b.sessions() > 0 && Instant::now() < ws_deadline && !b.child.has_exited() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let waited = started.elapsed();
        if b.in_flight() == 0 {
            log::info!(
                "process {} drained in {} ms",
                b.child.pid(),
                waited.as_millis()
            );
        } else {
            log::warn!(
                "process {} still has {} requests after shutdownTimeLimit; stopping it",
                b.child.pid(),
                b.in_flight()
            );
        }
        waited
    }

    /// Starts a new generation and switches to it: see the module comment. A generation that
    /// cannot start leaves the current one serving. Switches run one at a time.
    pub(super) async fn switch(self: &Arc<Self>, reason: &str) {
        let _one = self.deploying.lock().await;
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let old = self.generation.load_full();
        let id = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let next = Arc::new(self.plan.generation(id, &self.host));
        log::info!("generation {id}: starting ({reason})");
        // A start under way runs from the old generation's files: let it finish and count it.
        self.settle().await;
        let running: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].running().is_some())
            .collect();
        if running.is_empty() {
            // Nothing runs (not started yet, or offline): the next start uses the new files.
            self.generation.store(next.clone());
            log::info!(
                "generation {id}: switched (no process was running; the next request starts it)"
            );
            let previous = self.catch_up(&next).await;
            self.retire(old, previous).await;
            return;
        }
        let mut started = Vec::new();
        for _ in &running {
            match self.start_in(&next).await {
                Ok(b) => started.push(Arc::new(b)),
                Err(f) => {
                    log::error!(
                        event = Event::ProcessStartFailure as u32;
                        "{}: generation {id} failed; generation {} keeps serving: {}",
                        self.config.source,
                        old.id,
                        f.cause
                    );
                    for b in started {
                        process::stop(
                            &b,
                            &self.host.app_path,
                            self.config.shutdown_time_limit,
                            &self.control,
                        )
                        .await;
                    }
                    let next = next.clone();
                    let _ = tokio::task::spawn_blocking(move || next.remove()).await;
                    return;
                }
            }
        }
        log::info!("generation {id}: ready ({} processes)", started.len());
        self.generation.store(next.clone());
        let mut previous = Vec::new();
        for (idx, b) in running.into_iter().zip(started) {
            previous.extend(self.slots[idx].replace(b));
        }
        log::info!("generation {id}: switched; generation {} drains", old.id);
        previous.extend(self.catch_up(&next).await);
        self.retire(old, previous).await;
    }

    /// Waits (at most startupTimeLimit) until no slot is starting a process.
    async fn settle(&self) {
        let until = Instant::now() + self.config.startup_time_limit;
        while self.slots.iter().any(|s| s.is_starting()) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After the swap: a slot that started a process of an older generation meanwhile (a
    /// request's start, a crash restart) gets one of `next` too. Returns the replaced ones.
    async fn catch_up(self: &Arc<Self>, next: &Generation) -> Vec<Arc<Backend>> {
        self.settle().await;
        let mut previous = Vec::new();
        for idx in 0..self.slots.len() {
            let Some(b) = self.slots[idx].running() else {
                continue;
            };
            if self.generation_of(b.child.pid()) == Some(next.id) {
                continue;
            }
            if let Ok(fresh) = self.start_in(next).await {
                previous.extend(self.slots[idx].replace(Arc::new(fresh)));
            }
        }
        previous
    }

    /// Drains and stops the old generation's processes, then deletes its copy.
    async fn retire(self: &Arc<Self>, old: Arc<Generation>, backends: Vec<Arc<Backend>>) {
        let mut set = tokio::task::JoinSet::new();
        for b in backends {
            let inner = self.clone();
            set.spawn(async move { inner.drain_and_stop(b).await });
        }
        while set.join_next().await.is_some() {}
        log::info!("generation {}: drained", old.id);
        if let Ok(mut m) = self.members.lock() {
            m.retain(|_, g| *g != old.id);
        }
        let _ = tokio::task::spawn_blocking(move || old.remove()).await;
    }

    /// The generation a running process belongs to.
    fn generation_of(&self, pid: u32) -> Option<u64> {
        self.members.lock().ok()?.get(&pid).copied()
    }

    /// Starts every idle slot now (preload), without waiting for it.
    pub(super) fn preload(self: &Arc<Self>) {
        if self.shutting_down.load(Ordering::Acquire) || self.offline.load().is_some() {
            return;
        }
        for slot in self.slots.iter() {
            if slot.running().is_some() || slot.is_starting() {
                continue;
            }
            let slot = slot.clone();
            let inner = self.clone();
            self.rt.spawn(async move {
                let _ = slot.acquire(|| Inner::start_future(inner)).await;
            });
        }
    }
}

/// The change watch: polls the site's fingerprint and switches to a new generation once it
/// changed and then held still for the debounce interval. A walk that takes long slows the
/// poll down (at most a tenth of the time goes to walking).
pub(super) async fn watch_changes(weak: Weak<Inner>) {
    let Some((mut seen, debounce)) = weak.upgrade().map(|i| {
        let plan = &i.plan;
        (
            plan.fingerprint(&i.config, &i.host),
            i.config.deploy.debounce,
        )
    }) else {
        return;
    };
    let mut deployed = seen;
    let mut quiet_since = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        tokio::time::sleep(pause).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let walk = Instant::now();
        let probe = inner.clone();
        let Ok(now) =
            tokio::task::spawn_blocking(move || probe.plan.fingerprint(&probe.config, &probe.host))
                .await
        else {
            continue;
        };
        pause = (walk.elapsed() * 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
            continue;
        }
        if now != deployed && quiet_since.elapsed() >= debounce {
            deployed = now;
            inner
                .switch(&format!("the site's files changed ({} files)", now.files))
                .await;
        }
    }
}

/// The periodic health probe: a running process failing healthCheckFailures probes in a row
/// is replaced by an overlapped restart.
pub(super) async fn watch_health(weak: Weak<Inner>) {
    let Some((path, every, limit)) = weak.upgrade().and_then(|i| {
        let d = &i.config.deploy;
        Some((
            d.health_check_path.clone()?,
            d.health_check_interval,
            d.health_check_failures,
        ))
    }) else {
        return;
    };
    let mut failures: std::collections::HashMap<u32, u32> = Default::default();
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let mut live = Vec::new();
        for idx in 0..inner.slots.len() {
            let Some(b) = inner.slots[idx].running() else {
                continue;
            };
            let pid = b.child.pid();
            live.push(pid);
            match process::probe(
                &b,
                &path,
                every.max(Duration::from_millis(200)),
                &inner.control,
            )
            .await
            {
                Ok(()) => {
                    failures.remove(&pid);
                }
                Err(e) => {
                    let n = failures.entry(pid).or_insert(0);
                    *n += 1;
                    log::warn!("process {pid}: health check {n}/{limit} failed: {e}");
                    if *n >= limit {
                        failures.remove(&pid);
                        inner
                            .recycle(
                                idx,
                                pid,
                                &format!("it failed {limit} health checks in a row"),
                            )
                            .await;
                    }
                }
            }
        }
        failures.retain(|pid, _| live.contains(pid));
    }
}
