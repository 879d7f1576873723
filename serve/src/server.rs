//! The server side of ancm-serve: accept connections (HTTP/1.1, or HTTP/2 with prior
//! knowledge), hand each request to the engine.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use ancm_core::forward::upgrade::{is_upgrade_request, tunnel, BackendUpgrade};
use ancm_core::timer::CoarseTimer;
use ancm_core::{App, ClientInfo, EngineStatus, RequestBody, ResponseBody};
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::access::{AccessLog, Logged, Pending};
use crate::balance::{Balancer, Handoff, OpenConnection};
use crate::h2c::{Activity, Counted, Rewound};
use crate::reload::CurrentApp;
use crate::sniff::Sniffed;

pub use ancm_core::forward::pages::STATUS_HEADER;

/// What a worker's connections share: the app, the header timeout, and its timer.
#[derive(Clone)]
pub struct ConnContext {
    /// Whether plain requests take the engine's own HTTP/1.1 path (`ancm_core::h1`) before a
    /// connection falls back to hyper.
    pub engine_http1: bool,
    /// The app of the moment.
    pub app: CurrentApp,
    /// A client that has not sent a whole request head within this long of the connection
    /// starting to wait for one (idle keep-alive time included) loses the connection; `None`
    /// waits forever.
    pub header_timeout: Option<Duration>,
    /// One timer per worker, so that its lock stays on one thread. Coarse: the header timeout
    /// may fire up to a second late.
    pub timer: CoarseTimer,
    /// The access log, when `--access-log` asks for one.
    pub access: Option<Arc<AccessLog>>,
}

impl ConnContext {
    /// The context for one worker's connections.
    pub fn new(
        app: CurrentApp,
        header_timeout: Option<Duration>,
        engine_http1: bool,
        access: Option<Arc<AccessLog>>,
    ) -> Self {
        ConnContext {
            engine_http1,
            app,
            header_timeout,
            timer: CoarseTimer::new(Duration::from_secs(1)),
            access,
        }
    }
}

/// Where a worker's accepted connections go: served by the worker itself (one runtime for all
/// workers) or spread over the workers by the balancer.
#[derive(Clone)]
pub enum Placement {
    /// Serve here.
    Local,
    /// This worker's number and the balancer of all workers.
    Balanced(usize, Arc<Balancer>),
}

/// Accepts connections forever, serving each on its own task (here, or on the worker that
/// `placement` picks).
pub async fn accept_loop(listener: TcpListener, ctx: ConnContext, placement: Placement) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        match &placement {
            Placement::Local => serve_connection(stream, peer, &ctx, None),
            Placement::Balanced(me, balancer) => {
                let to = balancer.target(*me);
                let kept = if to == *me {
                    Some(stream)
                } else {
                    hand_off(balancer, to, stream, peer)
                };
                if let Some(stream) = kept {
                    serve_connection(stream, peer, &ctx, Some(balancer.open(*me)));
                }
            }
        }
    }
}

/// Gives `stream` to worker `to`; returns it if it must be served here (that worker is gone).
fn hand_off(
    balancer: &Balancer,
    to: usize,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<TcpStream> {
    // Deregistered from this worker's reactor; the other registers it with its own.
    let std_stream = stream
        .into_std()
        .map_err(|e| log::warn!("connection from {peer}: {e}"))
        .ok()?;
    let (back, _) = balancer.hand_to(to, (std_stream, peer)).err()?;
    TcpStream::from_std(back)
        .map_err(|e| log::warn!("connection from {peer}: {e}"))
        .ok()
}

/// Serves the connections other workers hand to worker `me`, until they all stop.
pub async fn inbox_loop(
    mut inbox: mpsc::UnboundedReceiver<Handoff>,
    ctx: ConnContext,
    me: usize,
    balancer: Arc<Balancer>,
) {
    while let Some((std_stream, peer)) = inbox.recv().await {
        match TcpStream::from_std(std_stream) {
            Ok(stream) => serve_connection(stream, peer, &ctx, Some(balancer.open(me))),
            Err(e) => log::warn!("connection from {peer}: {e}"),
        }
    }
}

/// Spawns the task that serves one client connection; `open` counts it for the balancer.
fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: &ConnContext,
    open: Option<OpenConnection>,
) {
    let _ = stream.set_nodelay(true);
    if let Some(w) = ancm_core::worker::current() {
        log::debug!("connection from {peer} served by worker {w}");
    }
    let app = ctx.app.clone();
    let timer = ctx.timer.clone();
    let header_timeout = ctx.header_timeout;
    let engine_http1 = ctx.engine_http1;
    let access = ctx.access.clone();
    let client = Arc::new(ClientInfo::http(peer));
    tokio::spawn(async move {
        let _open = open;
        // Plain requests first take the engine's own path; it hands the connection back, at a
        // request boundary, for the first request it does not take.
        let (mut stream, mut buffered) = if engine_http1 {
            let log = access.clone();
            let report = move |x: &ancm_core::report::Exchange<'_>| {
                if let Some(log) = &log {
                    log.write(&crate::access::Entry {
                        client: peer,
                        method: x.method,
                        target: x.target,
                        version: "HTTP/1.1",
                        status: x.status,
                        body_bytes: x.body_bytes,
                        duration: x.duration,
                        trace_id: x.trace_id,
                        pid: x.pid,
                        aborted: x.aborted,
                    });
                }
            };
            let report = access
                .is_some()
                .then_some(&report as ancm_core::report::Reporter<'_>);
            let served =
                ancm_core::h1::serve(stream, &client, || app.load_full(), header_timeout, report)
                    .await;
            match served {
                Some(h) => (h.stream, h.buffered),
                None => return,
            }
        } else {
            (stream, Vec::new())
        };
        let Some(http2) = crate::h2c::detect(&mut stream, &mut buffered, header_timeout).await
        else {
            return;
        };
        let service = service_fn(move |req: Request<Incoming>| {
            // The app of the moment: a configuration change swaps it between requests.
            let app = app.load_full();
            let client = client.clone();
            let access = access.clone();
            // Boxed: hyper keeps a slot of the service future's size for the whole life
            // of the connection, idle or not (4.4 KiB here); a box costs one allocation per
            // request and leaves an idle connection an empty pointer-sized slot.
            Box::pin(async move {
                Ok::<_, Infallible>(serve(&app, &client, req, access.as_ref()).await)
            })
        });
        if http2 {
            serve_http2(
                Rewound::new(buffered, stream),
                peer,
                service,
                timer,
                header_timeout,
            )
            .await;
            return;
        }
        let io = Sniffed::with_front(buffered, stream);
        let conn = http1::Builder::new()
            .timer(timer)
            .header_read_timeout(header_timeout)
            .keep_alive(true)
            .preserve_header_case(true)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        if let Err(e) = conn.await {
            log::debug!("connection from {peer}: {e}");
        }
    });
}

/// Serves an HTTP/2 connection with `service`; one that has had no open stream for
/// `idle` is told to go away (GOAWAY, then closed once its streams are done), as an HTTP/1.1
/// connection loses its idle keep-alive at `--header-timeout`.
async fn serve_http2<S>(
    io: Rewound<TcpStream>,
    peer: SocketAddr,
    service: S,
    timer: CoarseTimer,
    idle: Option<Duration>,
) where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<Logged<ResponseBody>>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let activity = Activity::new();
    let counting = activity.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let active = counting.enter();
        let response = service.call(req);
        async move { response.await.map(|r| r.map(|b| Counted::new(b, active))) }
    });
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(timer)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = crate::h2c::idle_for(&activity, idle) => {
            log::debug!("HTTP/2 connection from {peer}: idle, going away");
            conn.as_mut().graceful_shutdown();
            // The last GOAWAY waits for the client's answer to a PING; one that does not
            // answer within the same bound loses the connection (dropped, so closed).
            let grace = idle.unwrap_or_default();
            match tokio::time::timeout(grace, conn).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        log::debug!("HTTP/2 connection from {peer}: {e}");
    }
}

/// One request on the general path; with an access log, its line is written when the response
/// body ends.
async fn serve(
    app: &App,
    client: &ClientInfo,
    mut req: Request<Incoming>,
    access: Option<&Arc<AccessLog>>,
) -> Response<Logged<ResponseBody>> {
    // The one branch an unlogged request pays.
    let pending = access.map(|log| {
        Box::new(Pending {
            log: log.clone(),
            client: client.addr,
            method: req.method().clone(),
            target: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().to_string(), |pq| pq.as_str().to_owned()),
            version: req.version(),
            started: std::time::Instant::now(),
            status: 0,
            served: Default::default(),
            sent: 0,
        })
    });
    let client_upgrade = is_upgrade_request(&req).then(|| hyper::upgrade::on(&mut req));
    let mut resp = app.handle(req.map(RequestBody::from), client).await;
    if let (Some(client_side), Some(backend_side)) = (
        client_upgrade,
        resp.extensions_mut().remove::<BackendUpgrade>(),
    ) {
        tokio::spawn(async move {
            let result = match client_side.await {
                Ok(io) => tunnel(TokioIo::new(io), backend_side).await,
                Err(e) => Err(std::io::Error::other(e)),
            };
            if let Err(e) = result {
                log::debug!("upgraded connection ended: {e}");
            }
        });
    }
    if let Some(s) = resp.extensions().get::<EngineStatus>().copied() {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            resp.headers_mut().insert(STATUS_HEADER, v);
        }
    }
    let pending = pending.map(|mut p| {
        p.status = resp.status().as_u16();
        if let Some(s) = resp.extensions().get::<ancm_core::report::Served>() {
            p.served = *s;
        }
        p
    });
    resp.map(|b| Logged::new(b, pending))
}
