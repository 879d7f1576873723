//! Starting a backend: pick a port, create the process, and wait until it listens, with the
//! configured number of attempts.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

use super::backend::Backend;
use super::child::{Child, ExitInfo, OutputSink};
use super::token::Token;
use super::{launch, port};
use crate::config::Config;
use crate::event::Event;
use crate::host::HostInfo;

/// Why a start failed, with what the process printed, for the 502.5 page and the log.
#[derive(Debug, Clone)]
pub struct StartFailure {
    /// One sentence naming the cause.
    pub cause: String,
    /// The first 30,000 characters of the last attempt's output.
    pub output: String,
    /// The failure is a configuration problem answered with a plain 502 (a bad
    /// `ASPNETCORE_PORT`), not a start failure page.
    pub plain_502: bool,
}

/// Called with (pid, exit) when any process this start created exits.
pub type ExitHook = Arc<dyn Fn(u32, &ExitInfo) + Send + Sync>;

/// Readiness polling: start fast, back off to a small cap. Every poll is one loopback connect
/// (tens of microseconds), so a low cap costs nothing and bounds the added cold-start latency.
const FIRST_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(8);

/// Starts one backend process for `config`, trying up to `config.startup_attempts` times.
pub async fn start(
    config: &Config,
    host: &HostInfo,
    rt: &Handle,
    on_exit: ExitHook,
) -> Result<Backend, StartFailure> {
    start_in(config, host, &host.site_root, rt, on_exit).await
}

/// [`start`] for a process running from `run_root` (a shadow copy; see [`launch::build_in`]).
pub async fn start_in(
    config: &Config,
    host: &HostInfo,
    run_root: &std::path::Path,
    rt: &Handle,
    on_exit: ExitHook,
) -> Result<Backend, StartFailure> {
    let configured_port = match config.configured_port() {
        Some(Ok(p)) => Some(p),
        Some(Err(rule)) => {
            return Err(StartFailure {
                cause: rule,
                output: String::new(),
                plain_502: true,
            })
        }
        None => None,
    };
    let attempts = config.startup_attempts.max(1);
    let mut last = StartFailure {
        cause: String::new(),
        output: String::new(),
        plain_502: false,
    };
    for attempt in 1..=attempts {
        let port = match configured_port {
            Some(p) => p,
            None => port::random_free_port().map_err(|e| StartFailure {
                cause: format!("no free port to start the process on: {e}"),
                output: String::new(),
                plain_502: false,
            })?,
        };
        let token = match config.environment_variable("ASPNETCORE_TOKEN") {
            Some(t) => Token::configured(t),
            None => Token::random().map_err(|e| StartFailure {
                cause: format!("the OS random source failed: {e}"),
                output: String::new(),
                plain_502: false,
            })?,
        };
        let spec = launch::build_in(config, host, run_root, port, &token, std::env::vars_os());
        let program = spec.program.clone();
        let sink = if config.stdout_log_enabled {
            OutputSink::LogFile {
                prefix: config.stdout_log_file.clone(),
                site_root: host.site_root.clone(),
                limits: super::stdout_log::Limits {
                    max_bytes: config.extensions.stdout_log_max_bytes,
                    max_files: config.extensions.stdout_log_max_files,
                },
            }
        } else {
            OutputSink::HostLog
        };
        let hook = on_exit.clone();
        let child = match Child::start(spec, rt, sink, move |pid, info| hook(pid, info)).await {
            Ok(c) => c,
            Err(e) => {
                // Creating the process failed outright (not found, not executable): another
                // attempt would fail the same way.
                let what = if e.kind() == std::io::ErrorKind::NotFound {
                    "was not found (checked relative to the site root, then on PATH)".to_owned()
                } else {
                    format!("could not be started: {e}")
                };
                return Err(StartFailure {
                    cause: format!("processPath '{}' {what}", program.display()),
                    output: String::new(),
                    plain_502: false,
                });
            }
        };
        log::info!(
            "started process {} for attempt {attempt}/{attempts}, waiting for port {port}",
            child.pid()
        );
        match wait_ready(&child, port, config.startup_time_limit).await {
            Ok(()) => {
                return Backend::new(child, port, token).map_err(|cause| StartFailure {
                    cause,
                    output: String::new(),
                    plain_502: true,
                })
            }
            Err(cause) => {
                log::warn!(
                    event = Event::ProcessStartError as u32;
                    "{}: start attempt {attempt}/{attempts} failed: {cause}",
                    config.source
                );
                child.kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                last = StartFailure {
                    cause,
                    output: child.output(),
                    plain_502: false,
                };
            }
        }
    }
    Err(last)
}

/// Waits until the child accepts a connection on `port`, it exits, or `limit` passes
/// (a zero limit means one check).
async fn wait_ready(child: &Child, port: u16, limit: Duration) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + limit;
    let mut delay = FIRST_POLL;
    loop {
        if let Some(info) = child.exit_info() {
            return Err(format!(
                "process {} {} before listening on port {port}",
                child.pid(),
                info.description
            ));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let connect_budget = remaining.clamp(Duration::from_millis(50), Duration::from_secs(1));
        if let Ok(Ok(_)) =
            tokio::time::timeout(connect_budget, tokio::net::TcpStream::connect(addr)).await
        {
            return Ok(());
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!(
                "process {} did not listen on port {port} within {} s",
                child.pid(),
                limit.as_secs()
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(delay.min(remaining)) => {}
            _ = child.wait() => {}
        }
        delay = (delay * 2).min(MAX_POLL);
    }
}
