//! Applying web.config changes while serving: the file is polled, and a valid new
//! configuration replaces the running app with an overlapping recycle (the new app's process is
//! started first, new requests switch to it once it listens, the old one drains by the generation switch's rule —
//! its requests in flight finish, within shutdownTimeLimit — and only then stops). An
//! invalid new configuration is logged and the old app keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ancm_core::{App, Config, HostInfo};
use arc_swap::ArcSwap;

/// How often web.config is checked for changes.
const POLL: Duration = Duration::from_millis(500);

/// The app currently serving; swapped whole on a configuration change.
pub type CurrentApp = Arc<ArcSwap<App>>;

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Watches `config_path` until the process ends, replacing the app in `current` on each valid
/// change.
pub async fn watch(config_path: PathBuf, host: HostInfo, current: CurrentApp) {
    let mut seen = stamp(&config_path);
    loop {
        tokio::time::sleep(POLL).await;
        let now = stamp(&config_path);
        if now == seen {
            continue;
        }
        seen = now;
        let config = match Config::from_web_config_file(&config_path) {
            Ok(c) => c,
            Err(e) => {
                log::error!(
                    "{e} (the new configuration is ignored; the running app keeps serving)"
                );
                continue;
            }
        };
        if *current.load_full().config() == config {
            continue;
        }
        log::info!(
            "{} changed: starting the app with the new settings",
            config_path.display()
        );
        let next = App::new(config, host.clone(), tokio::runtime::Handle::current());
        if let Err(cause) = next.start().await {
            log::error!("the app with the new settings did not start: {cause}");
        }
        let old = current.swap(Arc::new(next));
        tokio::spawn(async move { old.retire().await });
    }
}
