//! Writes a response the engine made (its pages: 503 offline, 502.5, 502.3 …) to the client, as
//! the general path's server would: canonical reason, `Content-Length`, `Date`, and the
//! status.substatus in [`STATUS_HEADER`].

use std::io;

use http::{header, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::forward::pages::{EngineStatus, STATUS_HEADER};
use crate::forward::ResponseBody;

/// Writes `page` (no body for a `HEAD` request); returns whether the connection must close
/// after it (the page says `Connection: close`, or the client did: `client_close`, then said
/// in the page too, as the general path's server does).
pub async fn write(
    client: &mut TcpStream,
    page: Response<ResponseBody>,
    head_method: bool,
    client_close: bool,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let body = match page.body() {
        ResponseBody::Full(Some(b)) => b.clone(),
        _ => bytes::Bytes::new(),
    };
    let status = page.status();
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut close = false;
    for (name, value) in page.headers() {
        if name == header::CONNECTION {
            close |= value.as_bytes().eq_ignore_ascii_case(b"close");
        }
        if name == header::CONTENT_LENGTH || name == header::DATE {
            continue;
        }
        super::put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if client_close && !close {
        super::put_field(out, b"connection", b"close");
        close = true;
    }
    if let Some(s) = page.extensions().get::<EngineStatus>() {
        super::put_field(
            out,
            STATUS_HEADER.as_str().as_bytes(),
            s.to_string().as_bytes(),
        );
    }
    super::date::append(out);
    super::put_field(
        out,
        b"content-length",
        itoa::Buffer::new().format(body.len()).as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    if !head_method {
        out.extend_from_slice(&body);
    }
    client.write_all(out).await?;
    out.clear();
    Ok(close)
}
