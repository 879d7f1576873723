//! `ancm-serve`: runs a web.config-described application without IIS. It reads the
//! `aspNetCore` (or `httpPlatform`) section, listens on the given addresses and hands every
//! request to the ancm-rs engine, which starts the app's process on the first request.

mod access;
mod balance;
mod h2c;
mod listen;
mod logfmt;
mod reload;
mod server;
mod sniff;
mod write_through;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;
use std::time::Duration;

use ancm_core::{App, Config, HostInfo};
use arc_swap::ArcSwap;
use clap::Parser;

/// Serve a web.config-described app (ASP.NET Core Module settings) without IIS.
#[derive(Parser, Debug)]
#[command(name = "ancm-serve", version, about, long_about = None)]
struct Args {
    /// Address to listen on (repeat for several).
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// The app's physical path: the child's working directory and where app_offline.htm is
    /// looked for [default: CONFIG's folder].
    #[arg(long, value_name = "DIR")]
    site_root: Option<PathBuf>,
    /// The app's virtual path, given to the app as ASPNETCORE_APPL_PATH.
    #[arg(long, value_name = "PATH", default_value = "/")]
    app_path: String,
    /// Seconds a client may take to send a request head, counted from when the connection
    /// starts waiting for it (so also the longest a keep-alive connection may sit idle); 0 turns
    /// the limit off. Enforced to within a second.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    header_timeout: u64,
    /// Serve every request through hyper's HTTP/1.1 server and client instead of taking plain
    /// requests through the engine's own path first (for comparison; the rules are the same).
    #[arg(long)]
    hyper_only: bool,
    /// Log lines as text or as one JSON object a line (time, level, target, message, and the
    /// record's keys such as the Event Log id `event`).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = logfmt::LogFormat::Text)]
    log_format: logfmt::LogFormat,
    /// Write an access log line per request (client, time, request line, status, body bytes,
    /// trace id, duration, process id) to PATH (appended to), or to standard output with `-`;
    /// in --log-format's format. Off by default.
    #[arg(long, value_name = "PATH|-")]
    access_log: Option<PathBuf>,
    /// The web.config to serve.
    #[arg(value_name = "CONFIG", default_value = "web.config")]
    config: PathBuf,
}

/// Exit code for bad usage or configuration (as clap uses for usage errors).
const EXIT_USAGE: u8 = 2;

/// jemalloc's per-thread caches cover hyper's 8 KiB read buffers and 32 KiB header arrays, which
/// glibc's do not: 7 % fewer instructions per request and half the memory per idle connection
/// (docs/decisions.md, "ancm-serve allocates with jemalloc").
#[cfg(not(windows))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    logfmt::install(args.log_format);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
    }
}

fn run(args: Args) -> Result<(), (u8, String)> {
    let usage = |m: String| (EXIT_USAGE, m);
    if !args.app_path.starts_with('/') {
        return Err(usage(format!(
            "ancm-serve: --app-path = \"{}\": must start with '/'",
            args.app_path
        )));
    }
    let config = Config::from_web_config_file(&args.config).map_err(|e| usage(e.to_string()))?;
    let site_root = site_root(&args.config, args.site_root.as_deref()).map_err(usage)?;
    let listen = if args.listen.is_empty() {
        vec![SocketAddr::from(([127, 0, 0, 1], 8080))]
    } else {
        args.listen
    };
    let mut host = HostInfo::new(site_root);
    host.app_path = args.app_path;
    let config_path = args.config;
    let access = match &args.access_log {
        Some(to) => Some(Arc::new(
            access::AccessLog::open(to, args.log_format, config_path.display().to_string())
                .map_err(|e| (1, e))?,
        )),
        None => None,
    };
    let header_timeout =
        (args.header_timeout > 0).then(|| Duration::from_secs(args.header_timeout));

    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let layout = listen::bind(&listen, workers).map_err(|e| (1, e))?;
    let runtime_error =
        |e: std::io::Error| (1, format!("ancm-serve: cannot start the runtime: {e}"));
    match layout {
        listen::Layout::PerWorker(per_worker) => {
            // Workers must be declared before the first app, whose backends size their
            // per-worker connection pools from it.
            ancm_core::worker::configure(per_worker.len());
            // The control runtime: the app's process management, web.config polling, signals.
            let control = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(runtime_error)?;
            let app = App::new(config, host.clone(), control.handle().clone());
            let current: reload::CurrentApp = Arc::new(ArcSwap::from_pointee(app));
            let mut runtimes = Vec::with_capacity(per_worker.len());
            let (balancer, inboxes) = balance::Balancer::new(per_worker.len());
            for ((index, listeners), inbox) in per_worker.into_iter().enumerate().zip(inboxes) {
                // One scheduler thread per runtime. tokio's multi-thread scheduler rather than
                // its current-thread one, for its LIFO slot: a task woken by the running one
                // (the backend connection by the client's, and back) runs next, so a request is
                // parsed, written and freed before the next is started (−9 % instructions per
                // request under glibc, −8 % under jemalloc, measured in docs/benchmarks.md). Its
                // blocking-pool threads (if any) count as the worker too, which only means they
                // would share its pool stack.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("ancm-worker-{index}"))
                    .on_thread_start(move || ancm_core::worker::enter(index))
                    .enable_all()
                    .build()
                    .map_err(runtime_error)?;
                {
                    let _in_rt = rt.enter();
                    let ctx = server::ConnContext::new(
                        current.clone(),
                        header_timeout,
                        !args.hyper_only,
                        access.clone(),
                    );
                    let placement = server::Placement::Balanced(index, balancer.clone());
                    for l in listeners {
                        let l = tokio::net::TcpListener::from_std(l).map_err(runtime_error)?;
                        rt.spawn(server::accept_loop(l, ctx.clone(), placement.clone()));
                    }
                    rt.spawn(server::inbox_loop(inbox, ctx, index, balancer.clone()));
                }
                runtimes.push(rt);
            }
            log::debug!("{workers} workers, each with its own runtime and listeners");
            control.block_on(supervise(config_path, host, current));
            // The app's processes are gone; open connections need no goodbye.
            for rt in runtimes {
                rt.shutdown_background();
            }
        }
        listen::Layout::Shared(listeners) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .map_err(runtime_error)?;
            rt.block_on(async move {
                let app = App::new(config, host.clone(), tokio::runtime::Handle::current());
                let current: reload::CurrentApp = Arc::new(ArcSwap::from_pointee(app));
                for l in listeners {
                    let l = tokio::net::TcpListener::from_std(l).map_err(runtime_error)?;
                    tokio::spawn(server::accept_loop(
                        l,
                        server::ConnContext::new(
                            current.clone(),
                            header_timeout,
                            !args.hyper_only,
                            access.clone(),
                        ),
                        server::Placement::Local,
                    ));
                }
                supervise(config_path, host, current).await;
                Ok::<_, (u8, String)>(())
            })?;
        }
    }
    Ok(())
}

/// Applies web.config changes until SIGTERM or Ctrl-C, then stops the app's processes.
async fn supervise(config_path: PathBuf, host: HostInfo, current: reload::CurrentApp) {
    tokio::spawn(reload::watch(config_path, host, current.clone()));
    wait_for_stop_signal().await;
    log::info!("stopping: shutting the application's processes down");
    current.load_full().shutdown().await;
}

/// The site root: as given, else the config file's folder; made absolute so the child sees a
/// full ASPNETCORE_IIS_PHYSICAL_PATH.
fn site_root(config: &Path, given: Option<&Path>) -> Result<PathBuf, String> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => match config.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    std::fs::canonicalize(&dir).map_err(|e| {
        format!(
            "ancm-serve: --site-root = \"{}\": must be an existing folder ({e})",
            dir.display()
        )
    })
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
