//! What the engine tells its host about each request when it ends, for the host's access log:
//! the trace id the app saw and the process that served it. The engine keeps no log of its own
//! here; the host decides whether and where to write one.

use std::time::Duration;

use crate::forward::trace::TraceId;

/// A response extension set by [`crate::App::handle`] (the general path) on every response that
/// went through the trace rule: the trace id the app saw, and the process that answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// The trace id of the `traceparent` sent to the app, if any.
    pub trace_id: Option<TraceId>,
    /// The backend process that answered, when one did (not for the engine's own pages made
    /// before a process was chosen).
    pub pid: Option<u32>,
}

/// One request as the engine's own HTTP/1.1 path (`crate::h1::serve`) reports it once its
/// response is written (or abandoned).
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request target as received (origin form).
    pub target: &'a str,
    /// The status sent.
    pub status: u16,
    /// Bytes of response body sent (the payload: a chunked body's framing not counted).
    pub body_bytes: u64,
    /// From the whole request head being read to the end of the response.
    pub duration: Duration,
    /// The trace id the app saw, if any.
    pub trace_id: Option<TraceId>,
    /// The backend process that answered, when one did.
    pub pid: Option<u32>,
    /// Whether the response was cut short (the client left, the backend failed mid-body).
    pub aborted: bool,
}

/// The host's receiver of [`Exchange`]s (`None` at `h1::serve`: no report, and no cost).
pub type Reporter<'a> = &'a (dyn Fn(&Exchange<'_>) + Sync);
