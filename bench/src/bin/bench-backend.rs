//! `bench-backend`: the fast native backend of the benchmarks (a small hyper HTTP/1.1 server),
//! so that the proxies, not the app, are measured.
//!
//! Listens on 127.0.0.1:$ASPNETCORE_PORT (or `--port`), with `--threads N` (or
//! `BENCH_BACKEND_THREADS`; default 1, a current-thread runtime) runtime threads. Writes
//! `listening on 127.0.0.1:PORT wall_ns=<ns since the Unix epoch>` to stderr the moment it
//! listens, and appends the same line to `$BENCH_LISTEN_LOG` when that is set (the cold-start
//! case reads it). Never checks MS-ASPNETCORE-TOKEN (nginx cannot send it).
//!
//! Routes: `/small` (13-byte body), `/bytes?n=N` (N zero bytes), `/upload` (reads the body,
//! answers its length), `/ws` (WebSocket echo), and `POST */iisintegration` with
//! `MS-ASPNETCORE-EVENT: shutdown` (202, then the process exits).

use std::convert::Infallible;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ancm_bench::{query_param, wall_ns, Zeros, SMALL_BODY};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

type Body = Either<Full<Bytes>, Zeros>;

fn usage() -> ! {
    eprintln!(
        "usage: bench-backend [--port PORT] [--threads N]   (PORT defaults to $ASPNETCORE_PORT)"
    );
    std::process::exit(2)
}

fn main() {
    let mut port: Option<u16> = std::env::var("ASPNETCORE_PORT")
        .ok()
        .and_then(|p| p.parse().ok());
    let mut threads: usize = std::env::var("BENCH_BACKEND_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => {
                port = Some(
                    args.next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            _ => usage(),
        }
    }
    let Some(port) = port else {
        eprintln!("bench-backend: no port: set ASPNETCORE_PORT or pass --port");
        std::process::exit(1)
    };
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-backend: cannot build the runtime: {e}");
            std::process::exit(1)
        }
    };
    if let Err(e) = rt.block_on(serve(port)) {
        eprintln!("bench-backend: {e}");
        std::process::exit(1)
    }
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let line = format!("listening on 127.0.0.1:{port} wall_ns={}\n", wall_ns());
    eprint!("{line}");
    if let Some(path) = std::env::var_os("BENCH_LISTEN_LOG") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(line.as_bytes())?;
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let resp = match path {
        "/small" => full(StatusCode::OK, Bytes::from_static(SMALL_BODY)),
        // The same body with the head Kestrel sends (Server, Content-Type, Date, Content-Length):
        // the C ABI's measure as IIS meets it (issue 20).
        "/small-real" => {
            let mut r = full(StatusCode::OK, Bytes::from_static(SMALL_BODY));
            r.headers_mut()
                .insert(header::SERVER, header::HeaderValue::from_static("Kestrel"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain"),
            );
            r
        }
        "/bytes" => {
            let n = req
                .uri()
                .query()
                .and_then(|q| query_param(q, "n"))
                .and_then(|n| n.parse::<u64>().ok());
            match n {
                Some(n) => Response::new(Either::Right(Zeros::new(n))),
                None => full(StatusCode::BAD_REQUEST, Bytes::from_static(b"bytes?n=N\n")),
            }
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut len: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => len += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => {
                        return Ok(full(
                            StatusCode::BAD_REQUEST,
                            Bytes::from_static(b"body failed\n"),
                        ))
                    }
                }
            }
            full(StatusCode::OK, Bytes::from(len.to_string()))
        }
        "/ws" => websocket(req),
        p if p.ends_with("/iisintegration") && req.method() == Method::POST => {
            let shutdown = req
                .headers()
                .get("ms-aspnetcore-event")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"shutdown"));
            if shutdown {
                tokio::spawn(async {
                    // Let the 202 go out first.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    std::process::exit(0);
                });
                full(StatusCode::ACCEPTED, Bytes::new())
            } else {
                full(StatusCode::BAD_REQUEST, Bytes::new())
            }
        }
        _ => full(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    };
    Ok(resp)
}

fn full(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body)));
    *r.status_mut() = status;
    r
}

/// Accepts a WebSocket upgrade and echoes every message back.
fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return full(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(b"not a websocket request\n"),
        );
    };
    let Ok(accept) = HeaderValue::from_str(&key) else {
        return full(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new());
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut r = full(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    r
}
