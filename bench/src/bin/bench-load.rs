//! `bench-load`: the load clients wrk cannot be: idle keep-alive connections, one huge upload
//! or download, and WebSocket echo. Prints one line of `key=value` pairs for the harness.
//!
//! ```text
//! bench-load idle     ADDR PATH CONNS         open CONNS keep-alive connections, one GET each
//!                                             (one at a time), print "ready", hold them until
//!                                             stdin closes (at most 120 s)
//! bench-load download ADDR PATH               one GET, body discarded
//! bench-load upload   ADDR PATH BYTES         one POST of BYTES zero bytes (Content-Length)
//! bench-load ws       ADDR PATH CONNS SECS SIZE   WebSocket echo: CONNS connections each
//!                                             sending SIZE-byte messages one at a time
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ancm_bench::Zeros;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&format!("cannot build the runtime: {e}")),
    };
    let result = rt.block_on(async {
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["idle", addr, path, conns] => idle(addr.parse()?, path, conns.parse()?).await,
            ["download", addr, path] => download(addr.parse()?, path).await,
            ["upload", addr, path, bytes] => upload(addr.parse()?, path, bytes.parse()?).await,
            ["ws", addr, path, conns, secs, size] => {
                ws(
                    addr.parse()?,
                    path,
                    conns.parse()?,
                    secs.parse()?,
                    size.parse()?,
                )
                .await
            }
            _ => {
                Err("usage: bench-load idle|download|upload|ws … (see the source's header)".into())
            }
        }
    });
    if let Err(e) = result {
        fail(&e.to_string())
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("bench-load: {msg}");
    std::process::exit(1)
}

async fn connect<B>(addr: SocketAddr) -> Result<http1::SendRequest<B>, Error>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// GET `path` on `send`; anything but a success status is an error.
async fn get(
    send: &mut http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
    let req = Request::get(path)
        .header(header::HOST, addr.to_string())
        .body(Empty::new())?;
    let resp = send.send_request(req).await?;
    if !resp.status().is_success() {
        return Err(format!("GET {path}: {}", resp.status()).into());
    }
    Ok(resp)
}

async fn idle(addr: SocketAddr, path: &str, conns: usize) -> Result<(), Error> {
    let mut held = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut send = connect::<Empty<Bytes>>(addr).await?;
        get(&mut send, addr, path)
            .await?
            .into_body()
            .collect()
            .await?;
        held.push(send);
    }
    println!("ready conns={conns}");
    // Hold them until the harness closes our stdin (or a bound passes).
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::io::stdin().read_to_end(&mut sink),
    )
    .await;
    drop(held);
    Ok(())
}

async fn download(addr: SocketAddr, path: &str) -> Result<(), Error> {
    let mut send = connect::<Empty<Bytes>>(addr).await?;
    let start = Instant::now();
    let mut body = get(&mut send, addr, path).await?.into_body();
    let mut n: u64 = 0;
    while let Some(frame) = body.frame().await {
        n += frame?.data_ref().map_or(0, |d| d.len() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bytes={n} secs={secs:.6} mib_per_s={:.1}",
        n as f64 / secs / 1048576.0
    );
    Ok(())
}

async fn upload(addr: SocketAddr, path: &str, bytes: u64) -> Result<(), Error> {
    let mut send = connect::<Zeros>(addr).await?;
    let start = Instant::now();
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_LENGTH, bytes)
        .body(Zeros::new(bytes))?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let answer = resp.into_body().collect().await?.to_bytes();
    let secs = start.elapsed().as_secs_f64();
    if !status.is_success() || answer.as_ref() != bytes.to_string().as_bytes() {
        return Err(format!(
            "POST {path}: {status}, answered {:?}",
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    println!(
        "bytes={bytes} secs={secs:.6} mib_per_s={:.1}",
        bytes as f64 / secs / 1048576.0
    );
    Ok(())
}

async fn ws(
    addr: SocketAddr,
    path: &str,
    conns: usize,
    secs: f64,
    size: usize,
) -> Result<(), Error> {
    let url = format!("ws://{addr}{path}");
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp).await?;
        streams.push(ws);
    }
    let payload = Bytes::from(vec![b'x'; size]);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut ws in streams {
        let payload = payload.clone();
        tasks.spawn(async move {
            let mut lat_us: Vec<u32> = Vec::with_capacity(1 << 16);
            while Instant::now() < deadline {
                let t = Instant::now();
                ws.send(Message::Binary(payload.clone())).await?;
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) if b.len() == payload.len() => {}
                    other => return Err::<Vec<u32>, Error>(format!("bad echo: {other:?}").into()),
                }
                lat_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            let _ = ws.close(None).await;
            Ok(lat_us)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if all.is_empty() {
        return Err("no message was echoed".into());
    }
    all.sort_unstable();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    println!(
        "msgs={} secs={elapsed:.3} msgs_per_s={:.0} p50_us={} p99_us={}",
        all.len(),
        all.len() as f64 / elapsed,
        p(0.50),
        p(0.99)
    );
    Ok(())
}
