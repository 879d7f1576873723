//! The access log (`--access-log PATH|-`, off by default): one line per request, from what the
//! engine reports at its end (the engine's own path: `ancm_core::report::Exchange`; the general
//! path: the response's `ancm_core::report::Served` and the body as it is sent). Lines are
//! formatted on the worker and handed over a channel to one writer thread, so a slow disk never
//! holds a worker; the writer flushes whenever the channel runs dry.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use ancm_core::forward::trace::TraceId;
use http_body::{Body, Frame, SizeHint};

use crate::logfmt::LogFormat;

/// The access log's writer side: cheap to share, one per process.
#[derive(Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<String>,
    format: LogFormat,
    /// The `app` member: the configuration file served.
    app: String,
}

/// One request's line, whichever path served it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The client's address.
    pub client: SocketAddr,
    /// The request method.
    pub method: &'a str,
    /// The request target (origin form).
    pub target: &'a str,
    /// The client's protocol, as in the request line.
    pub version: &'a str,
    /// The status sent.
    pub status: u16,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// From the request head to the end of the response.
    pub duration: Duration,
    /// The trace id the app saw.
    pub trace_id: Option<TraceId>,
    /// The backend process that answered.
    pub pid: Option<u32>,
    /// The response was cut short.
    pub aborted: bool,
}

impl AccessLog {
    /// Opens `to` (`-`: standard output) for appending and starts the writer thread.
    pub fn open(to: &Path, format: LogFormat, app: String) -> Result<AccessLog, String> {
        let mut out: Box<dyn Write + Send> = if to == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(to)
                .map_err(|e| {
                    format!(
                        "ancm-serve: --access-log = \"{}\": cannot be opened for appending ({e})",
                        to.display()
                    )
                })?;
            Box::new(f)
        };
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("ancm-access-log".into())
            .spawn(move || {
                let mut buf = Vec::with_capacity(64 * 1024);
                while let Ok(line) = rx.recv() {
                    buf.extend_from_slice(line.as_bytes());
                    // Whatever else is queued goes in the same write.
                    while let Ok(line) = rx.try_recv() {
                        buf.extend_from_slice(line.as_bytes());
                        if buf.len() >= 64 * 1024 {
                            break;
                        }
                    }
                    if let Err(e) = out.write_all(&buf).and_then(|()| out.flush()) {
                        log::warn!("the access log cannot be written: {e}");
                    }
                    buf.clear();
                }
            })
            .map_err(|e| format!("ancm-serve: cannot start the access log's writer: {e}"))?;
        Ok(AccessLog { tx, format, app })
    }

    /// Queues the line for `e`.
    pub fn write(&self, e: &Entry<'_>) {
        let line = match self.format {
            LogFormat::Text => text_line(e, SystemTime::now()),
            LogFormat::Json => json_line(e, &self.app, SystemTime::now()),
        };
        let _ = self.tx.send(line);
    }
}

/// A combined-log-like line: `client - - [time] "method target version" status bytes`, then
/// `trace_id=`, `duration=` (seconds) and `pid=` (`-` where unknown).
pub fn text_line(e: &Entry<'_>, now: SystemTime) -> String {
    let trace = e.trace_id.map(|t| t.to_string());
    let pid = e.pid.map(|p| p.to_string());
    format!(
        "{} - - [{}] \"{} {} {}\" {} {} trace_id={} duration={:.6} pid={}{}\n",
        e.client.ip().to_canonical(),
        ancm_core::utc::rfc3339_millis(now),
        escaped(e.method),
        escaped(e.target),
        e.version,
        e.status,
        e.body_bytes,
        trace.as_deref().unwrap_or("-"),
        e.duration.as_secs_f64(),
        pid.as_deref().unwrap_or("-"),
        if e.aborted { " aborted" } else { "" },
    )
}

/// `s` with `"`, `\\` and anything outside printable ASCII as `\xHH` (as nginx writes them), so
/// that a line splits unambiguously.
fn escaped(s: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    if s.bytes().all(plain) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out.into()
}

/// One JSON object: the log lines' fixed members (`time`, `level`, `target` = `ancm::access`,
/// `message`), then `app`, `pid`, `trace_id`, `method`, `path` (the request target: `target`
/// is taken), `status`, `duration` (seconds), `bytes`, `client`, `aborted`.
pub fn json_line(e: &Entry<'_>, app: &str, now: SystemTime) -> String {
    use serde_json::Value;
    let mut o = serde_json::Map::new();
    o.insert("time".into(), ancm_core::utc::rfc3339_millis(now).into());
    o.insert("level".into(), "INFO".into());
    o.insert("target".into(), "ancm::access".into());
    o.insert(
        "message".into(),
        format!("{} {} {}", e.method, e.target, e.status).into(),
    );
    o.insert("app".into(), app.into());
    o.insert("pid".into(), e.pid.map_or(Value::Null, Value::from));
    o.insert(
        "trace_id".into(),
        e.trace_id.map_or(Value::Null, |t| t.to_string().into()),
    );
    o.insert("method".into(), e.method.into());
    o.insert("path".into(), e.target.into());
    o.insert("status".into(), e.status.into());
    o.insert("duration".into(), e.duration.as_secs_f64().into());
    o.insert("bytes".into(), e.body_bytes.into());
    o.insert(
        "client".into(),
        e.client.ip().to_canonical().to_string().into(),
    );
    o.insert("aborted".into(), e.aborted.into());
    let mut line = Value::Object(o).to_string();
    line.push('\n');
    line
}

/// What the general path knows of a request before its response, kept until the body ends.
#[derive(Debug)]
pub struct Pending {
    /// The log to write to.
    pub log: std::sync::Arc<AccessLog>,
    /// The client's address.
    pub client: SocketAddr,
    /// The request method.
    pub method: http::Method,
    /// The request target.
    pub target: String,
    /// The client's protocol.
    pub version: http::Version,
    /// When the request head was read.
    pub started: Instant,
    /// The status sent.
    pub status: u16,
    /// The trace id and process, from the engine.
    pub served: ancm_core::report::Served,
    /// Body bytes so far.
    pub sent: u64,
}

impl Pending {
    fn write(&self, aborted: bool) {
        let version = match self.version {
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        self.log.write(&Entry {
            client: self.client,
            method: self.method.as_str(),
            target: &self.target,
            version,
            status: self.status,
            body_bytes: self.sent,
            duration: self.started.elapsed(),
            trace_id: self.served.trace_id,
            pid: self.served.pid,
            aborted,
        });
    }
}

/// A response body that writes its request's access log line when it ends (or is dropped
/// before, then marked aborted). Without an access log it only forwards.
pub struct Logged<B> {
    body: B,
    pending: Option<Box<Pending>>,
}

impl<B> Logged<B> {
    /// `body`, logged by `pending` if any.
    pub fn new(body: B, pending: Option<Box<Pending>>) -> Self {
        Logged { body, pending }
    }
}

impl<B> Drop for Logged<B> {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.write(true);
        }
    }
}

impl<B: Body + Unpin> Body for Logged<B>
where
    B::Data: bytes::Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.body).poll_frame(cx);
        if let Some(p) = &mut this.pending {
            match &r {
                Poll::Ready(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        p.sent += bytes::Buf::remaining(d) as u64;
                    }
                    if this.body.is_end_stream() {
                        if let Some(p) = this.pending.take() {
                            p.write(false);
                        }
                    }
                }
                Poll::Ready(None) => {
                    if let Some(p) = this.pending.take() {
                        p.write(false);
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    if let Some(p) = this.pending.take() {
                        p.write(true);
                    }
                }
                Poll::Pending => {}
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_lines() {
        let id = ancm_core::forward::trace::valid(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let e = Entry {
            client: "[::ffff:10.0.0.1]:5000".parse().unwrap(),
            method: "GET",
            target: "/a?b=\"c\"",
            version: "HTTP/1.1",
            status: 200,
            body_bytes: 12,
            duration: Duration::from_micros(1500),
            trace_id: id,
            pid: Some(42),
            aborted: false,
        };
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(
            text_line(&e, t),
            "10.0.0.1 - - [1970-01-01T00:00:01.500Z] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 12 \
             trace_id=4bf92f3577b34da6a3ce929d0e0e4736 duration=0.001500 pid=42\n"
        );
        let v: serde_json::Value =
            serde_json::from_str(&json_line(&e, "/s/web.config", t)).unwrap();
        assert_eq!(v["target"], "ancm::access");
        assert_eq!(v["path"], "/a?b=\"c\"");
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["duration"], 0.0015);
        assert_eq!(v["app"], "/s/web.config");
        let none = Entry {
            trace_id: None,
            pid: None,
            aborted: true,
            ..e
        };
        assert!(text_line(&none, t).ends_with("trace_id=- duration=0.001500 pid=- aborted\n"));
    }
}
