//! The HTTP/1.1 server side of ancm-serve: accept connections, hand each request to the engine.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use ancm_core::forward::upgrade::{is_upgrade_request, tunnel, BackendUpgrade};
use ancm_core::timer::CoarseTimer;
use ancm_core::{App, ClientInfo, EngineStatus, RequestBody, ResponseBody};
use http::{HeaderName, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::reload::CurrentApp;
use crate::sniff::Sniffed;

/// The header that carries IIS's status.substatus (e.g. `502.5`) on responses the engine
/// made, since plain HTTP has no substatus.
pub const STATUS_HEADER: HeaderName = HeaderName::from_static("x-ancm-status");

/// Accepts connections forever, serving each on its own task. A client that has not sent a
/// whole request head within `header_timeout` of the connection starting to wait for one (idle
/// keep-alive time included) loses the connection; `None` waits forever.
pub async fn accept_loop(listener: TcpListener, app: CurrentApp, header_timeout: Option<Duration>) {
    // One timer per accept loop: its connections run on this loop's worker, so its lock is
    // uncontended. Coarse: the timeout may fire up to a second late.
    let timer = CoarseTimer::new(Duration::from_secs(1));
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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let timer = timer.clone();
        let client = Arc::new(ClientInfo::http(peer));
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                // The app of the moment: a configuration change swaps it between requests.
                let app = app.load_full();
                let client = client.clone();
                // Boxed: hyper keeps a slot of the service future's size for the whole life
                // of the connection, idle or not (4.4 KiB here); a box costs one allocation per
                // request and leaves an idle connection an empty pointer-sized slot.
                Box::pin(async move { Ok::<_, Infallible>(serve(&app, &client, req).await) })
            });
            let conn = http1::Builder::new()
                .timer(timer)
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .preserve_header_case(true)
                .serve_connection(TokioIo::new(Sniffed::new(stream)), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                log::debug!("connection from {peer}: {e}");
            }
        });
    }
}

async fn serve(
    app: &App,
    client: &ClientInfo,
    mut req: Request<Incoming>,
) -> Response<ResponseBody> {
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
    resp
}
