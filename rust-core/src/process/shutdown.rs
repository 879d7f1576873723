//! Stopping a backend gracefully, as ANCM does: the shutdown event over HTTP with the pairing
//! token, then the platform's interrupt if that call failed, then a kill after
//! shutdownTimeLimit.

use std::time::Duration;

use super::backend::Backend;
use crate::event::Event;

/// The control-plane HTTP client (shutdown events): reqwest with every default that would
/// change the request turned off. Not on the request path.
pub fn control_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It had already exited.
    AlreadyExited,
    /// It exited within the limit.
    Gracefully,
    /// It was killed after the limit.
    Killed,
}

/// Stops `backend` within `limit`: the shutdown POST to `<app_path>/iisintegration`, the
/// interrupt if the POST was not accepted, and a kill once `limit` has passed.
pub async fn stop(
    backend: &Backend,
    app_path: &str,
    limit: Duration,
    client: &reqwest::Client,
) -> Stopped {
    let child = &backend.child;
    if child.has_exited() {
        return Stopped::AlreadyExited;
    }
    let pid = child.pid();
    child.mark_stopping();
    let accepted = if limit.is_zero() {
        false
    } else {
        let url = format!(
            "http://127.0.0.1:{}{}/iisintegration",
            backend.port,
            app_path.trim_end_matches('/')
        );
        let sent = client
            .post(&url)
            .header("MS-ASPNETCORE-EVENT", "shutdown")
            .header("MS-ASPNETCORE-TOKEN", backend.token.expose())
            .timeout(limit)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().as_u16() == 202 => {
                log::info!(
                    event = Event::SentShutdownRequest as u32;
                    "sent the shutdown event to process {pid}"
                );
                true
            }
            Ok(r) => {
                log::info!(
                    "process {pid} answered the shutdown event with {}; interrupting it",
                    r.status()
                );
                false
            }
            Err(e) => {
                log::info!("shutdown event to process {pid} failed ({e}); interrupting it");
                false
            }
        }
    };
    if !accepted && !limit.is_zero() {
        child.interrupt();
    }
    if tokio::time::timeout(limit, child.wait()).await.is_ok() {
        return Stopped::Gracefully;
    }
    log::warn!(
        event = Event::GracefulShutdownFailure as u32;
        "failed to gracefully shut down process {pid} within {} s; killing it",
        limit.as_secs()
    );
    child.kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Stopped::Killed
}
