//! proto-proxy: a measuring stick for issue 8, not a product. It answers one question: how many
//! instructions per request does an HTTP/1.1 keep-alive proxy spend when it parses heads in place
//! (httparse) into reusable per-connection buffers, instead of going through hyper's server and
//! client dispatchers as ancm-serve does? Only what the small-GET benchmark needs is here:
//! bodiless requests, responses with a Content-Length, no chunked bodies, no upgrades, no pooling
//! (each client connection keeps one backend connection), header case kept because the bytes are
//! copied. Anything else closes the connection. `cargo xtask bench` does not use it; see
//! docs/benchmarks.md ("Session 3") for what it measured.
//!
//! Usage: `proto-proxy LISTEN_ADDR BACKEND_ADDR`

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Hop-by-hop and proxy-set request headers that are not copied from the client.
const DROPPED_REQUEST: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "ms-aspnetcore-token",
];

/// Response headers that are not copied to the client.
const DROPPED_RESPONSE: &[&str] = &["connection", "keep-alive", "date"];

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(backend)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: proto-proxy LISTEN_ADDR BACKEND_ADDR");
        std::process::exit(2);
    };
    let parse = |s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{s}: {e}")))
    };
    let (listen, backend) = (parse(listen)?, parse(backend)?);
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // ancm-serve's layout: one single-threaded scheduler per core, each accepting for itself.
    let mut runtimes = Vec::new();
    for i in 0..workers {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("proto-{i}"))
            .enable_all()
            .build()?;
        let l = listener.try_clone()?;
        rt.spawn(async move {
            let l = match TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => return eprintln!("proto-proxy: {e}"),
            };
            loop {
                let Ok((s, peer)) = l.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = serve(s, peer, backend).await;
                });
            }
        });
        runtimes.push(rt);
    }
    eprintln!("proto-proxy: listening on http://{listen}");
    loop {
        std::thread::park();
    }
}

/// Reads more bytes into `buf`; 0 means the peer closed.
async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 2048 {
        buf.reserve(8192);
    }
    s.read_buf(buf).await
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// One header line, its name's bytes as they came.
fn put_header(out: &mut Vec<u8>, h: &httparse::Header<'_>) {
    out.extend_from_slice(h.name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(h.value);
    out.extend_from_slice(b"\r\n");
}

fn dropped(name: &str, list: &[&str]) -> bool {
    list.iter().any(|d| d.eq_ignore_ascii_case(name))
}

async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    backend_addr: SocketAddr,
) -> io::Result<()> {
    let mut backend: Option<TcpStream> = None;
    let mut cbuf: Vec<u8> = Vec::with_capacity(8192);
    let mut bbuf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut num = itoa::Buffer::new();
    let mut xff = Vec::with_capacity(32);
    if let std::net::IpAddr::V4(ip) = peer.ip() {
        for (i, o) in ip.octets().iter().enumerate() {
            if i > 0 {
                xff.push(b'.');
            }
            xff.extend_from_slice(num.format(*o).as_bytes());
        }
    } else {
        xff.extend_from_slice(peer.ip().to_string().as_bytes());
    }
    xff.push(b':');
    xff.extend_from_slice(num.format(peer.port()).as_bytes());
    loop {
        // The request head, parsed where it was read.
        let head_len = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            match req.parse(&cbuf).map_err(|_| bad("request head"))? {
                httparse::Status::Complete(n) => {
                    out.clear();
                    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
                    out.extend_from_slice(b" HTTP/1.1\r\n");
                    for h in req.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length")
                            || h.name.eq_ignore_ascii_case("transfer-encoding")
                        {
                            return Err(bad("request bodies are out of scope"));
                        }
                        if !dropped(h.name, DROPPED_REQUEST) {
                            put_header(&mut out, h);
                        }
                    }
                    out.extend_from_slice(b"X-Forwarded-For: ");
                    out.extend_from_slice(&xff);
                    out.extend_from_slice(
                        b"\r\nX-Forwarded-Proto: http\r\nMS-ASPNETCORE-TOKEN: 0123456789abcdef\r\n\r\n",
                    );
                    break n;
                }
                httparse::Status::Partial => {
                    if read_more(&mut client, &mut cbuf).await? == 0 {
                        return Ok(());
                    }
                }
            }
        };
        cbuf.drain(..head_len);
        let b = match &mut backend {
            Some(b) => b,
            None => {
                let s = TcpStream::connect(backend_addr).await?;
                s.set_nodelay(true)?;
                backend.insert(s)
            }
        };
        b.write_all(&out).await?;
        // The response head, then its Content-Length body, written to the client at once.
        let (head_len, body_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut hs);
            match resp.parse(&bbuf).map_err(|_| bad("response head"))? {
                httparse::Status::Complete(n) => {
                    out.clear();
                    out.extend_from_slice(b"HTTP/1.1 ");
                    out.extend_from_slice(num.format(resp.code.unwrap_or(502)).as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
                    out.extend_from_slice(b"\r\n");
                    let mut len = None;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            return Err(bad("chunked responses are out of scope"));
                        }
                        if h.name.eq_ignore_ascii_case("content-length") {
                            len = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.parse::<usize>().ok());
                        }
                        if !dropped(h.name, DROPPED_RESPONSE) {
                            put_header(&mut out, h);
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                    break (n, len.ok_or_else(|| bad("no Content-Length"))?);
                }
                httparse::Status::Partial => {
                    if read_more(b, &mut bbuf).await? == 0 {
                        return Err(bad("backend closed"));
                    }
                }
            }
        };
        while bbuf.len() < head_len + body_len {
            if read_more(b, &mut bbuf).await? == 0 {
                return Err(bad("backend closed in the body"));
            }
        }
        out.extend_from_slice(&bbuf[head_len..head_len + body_len]);
        bbuf.drain(..head_len + body_len);
        client.write_all(&out).await?;
    }
}
