//! The request-head parser path of the C ABI: an `ancm_request_head` built from arbitrary bytes
//! goes to `parse_head` (the parser `ancm_request_start` runs) and then through the real
//! `ancm_request_start`, whose result must be the parser's; a started request is driven to its
//! `complete` callback. No panic (caught or not: libfuzzer-sys aborts on any), no UB (ASan), no
//! request left without `complete`.
//!
//! The app behind `ancm_request_start` is offline (app_offline.htm in its site root), so every
//! started request is answered by the engine itself (400 when its framing is ambiguous, else
//! 503) and no process is created per input. Its processPath names a program that does not
//! exist, so even if the offline file vanished no application could start. A missing program
//! is not free either: the engine forks (pre_exec hooks force fork + exec) and the child fails
//! at exec, so a not-offline app would create one short-lived process per input.
//!
//! Input format (readable seeds): the first byte is the field separator S (seeds use `\n`);
//! the rest, split on S, is
//!   flags (words: `https`, `serialize`, `port=N`, `cl=N`, `cancel`, `free-early`, `misuse`,
//!          `nulls`), method, target, client address, client certificate, authentication type,
//!   then one field per header, `name:value` split at the first `:` (raw bytes, no trimming).
//! Missing fields are empty. Each field is copied into its own allocation of exactly its
//! length, so ASan catches a read one byte past any of them. Empty fields are passed with a
//! NULL pointer when `nulls` is set (allowed); a NULL pointer with a non-zero length breaks the
//! caller's contract and is never generated.
#![no_main]

use std::ffi::c_void;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use ancm_core::ffi::ancm_result;
use ancm_core::ffi::app::{ancm_app, ancm_app_new, ancm_host_info};
use ancm_core::ffi::config::{ancm_config, ancm_config_free, ancm_config_from_file};
use ancm_core::ffi::handle::ancm_slice;
use ancm_core::ffi::request::{
    ancm_callbacks, ancm_header, ancm_request, ancm_request_ack_write, ancm_request_cancel,
    ancm_request_end_body, ancm_request_free, ancm_request_head, ancm_request_start,
    ancm_request_supply_body, ancm_response_head, parse_head, BodyKind,
};
use libfuzzer_sys::fuzz_target;

/// An owned field: its own allocation of exactly its length.
struct Field(Box<[u8]>);

impl Field {
    fn new(b: &[u8]) -> Field {
        Field(b.to_vec().into_boxed_slice())
    }

    fn slice(&self, nulls: bool) -> ancm_slice {
        ancm_slice {
            ptr: if nulls && self.0.is_empty() {
                std::ptr::null()
            } else {
                self.0.as_ptr()
            },
            len: self.0.len(),
        }
    }
}

#[derive(Default)]
struct Flags {
    https: bool,
    serialize: bool,
    port: u16,
    content_length: i64,
    cancel: bool,
    free_early: bool,
    misuse: bool,
    nulls: bool,
}

fn flags(field: &[u8]) -> Flags {
    let mut f = Flags::default();
    for w in String::from_utf8_lossy(field).split_ascii_whitespace() {
        match w {
            "https" => f.https = true,
            "serialize" => f.serialize = true,
            "cancel" => f.cancel = true,
            "free-early" => f.free_early = true,
            "misuse" => f.misuse = true,
            "nulls" => f.nulls = true,
            _ => {
                if let Some(n) = w.strip_prefix("port=") {
                    f.port = n.parse().unwrap_or(0);
                } else if let Some(n) = w.strip_prefix("cl=") {
                    f.content_length = n.parse().unwrap_or(0);
                }
            }
        }
    }
    f
}

/// The one app every input's request goes to, created once through the C ABI.
fn app() -> *const ancm_app {
    static APP: OnceLock<usize> = OnceLock::new();
    let addr = *APP.get_or_init(|| {
        // A fixed place, rewritten with the same contents by every run.
        let dir = std::env::temp_dir().join("ancm-fuzz-c-request-head");
        std::fs::create_dir_all(&dir).expect("site root");
        std::fs::write(dir.join("app_offline.htm"), "<p>offline for fuzzing</p>")
            .expect("app_offline.htm");
        let web_config = dir.join("web.config");
        std::fs::write(
            &web_config,
            "<configuration><system.webServer>\
             <aspNetCore processPath=\"/nonexistent/ancm-fuzz/no-such-program\" \
             requestTimeout=\"00:00:05\" />\
             </system.webServer></configuration>",
        )
        .expect("web.config");
        let path = web_config.to_str().expect("UTF-8 temp dir").to_owned();
        let root = dir.to_str().expect("UTF-8 temp dir").to_owned();
        let mut config: *mut ancm_config = std::ptr::null_mut();
        let r = unsafe {
            ancm_config_from_file(path.as_ptr(), path.len(), &mut config, std::ptr::null_mut())
        };
        assert_eq!(r, ancm_result::Ok, "web.config");
        let host = ancm_host_info {
            site_root: ancm_slice {
                ptr: root.as_ptr(),
                len: root.len(),
            },
            app_path: ancm_slice {
                ptr: std::ptr::null(),
                len: 0,
            },
            http_auth: ancm_slice {
                ptr: std::ptr::null(),
                len: 0,
            },
            https_port: 0,
            websockets_supported: true,
        };
        let mut app: *mut ancm_app = std::ptr::null_mut();
        let r = unsafe { ancm_app_new(config, &host, &mut app) };
        assert_eq!(r, ancm_result::Ok, "ancm_app_new");
        unsafe { ancm_config_free(config) };
        app as usize
    });
    addr as *const ancm_app
}

/// The host side of one started request.
struct Ctx {
    /// Written by `ancm_request_start` before any callback runs; read by callbacks only.
    request: *mut ancm_request,
    /// When set, the host freed its handle early and callbacks must not use it.
    free_early: bool,
    done: Arc<(Mutex<Option<Done>>, Condvar)>,
    status: Mutex<Option<u16>>,
}

#[derive(Debug, Clone, Copy)]
struct Done {
    result: ancm_result,
    head_seen: bool,
}

unsafe extern "C" fn body_wanted(ud: *mut c_void) {
    let ctx = unsafe { &*(ud as *const Ctx) };
    if !ctx.free_early {
        let r = unsafe { ancm_request_end_body(ctx.request) };
        // Ending a body of known length before its bytes fails the request (BODY_REFUSED).
        assert!(
            matches!(r, ancm_result::Ok | ancm_result::BodyLengthMismatch),
            "{r:?}"
        );
    }
}

unsafe extern "C" fn response_head(ud: *mut c_void, head: *const ancm_response_head) {
    let ctx = unsafe { &*(ud as *const Ctx) };
    let head = unsafe { &*head };
    // Touch everything the head points at, so ASan checks it is live.
    let reason = unsafe { std::slice::from_raw_parts(head.reason.ptr, head.reason.len) };
    let mut n = reason.iter().map(|&b| b as usize).sum::<usize>();
    let headers = if head.header_count == 0 {
        &[][..]
    } else {
        unsafe { std::slice::from_raw_parts(head.headers, head.header_count) }
    };
    for h in headers {
        let name = unsafe { std::slice::from_raw_parts(h.name.ptr, h.name.len) };
        let value = unsafe { std::slice::from_raw_parts(h.value.ptr, h.value.len) };
        n += name.len() + value.iter().map(|&b| b as usize).sum::<usize>();
    }
    std::hint::black_box(n);
    assert!(!head.upgraded, "an offline app cannot upgrade");
    let mut status = ctx.status.lock().unwrap();
    assert!(status.is_none(), "response_head called twice");
    *status = Some(head.status);
}

unsafe extern "C" fn response_body(ud: *mut c_void, data: *const u8, len: usize, _flush: bool) {
    let ctx = unsafe { &*(ud as *const Ctx) };
    assert!(len > 0, "empty response chunk");
    let chunk = unsafe { std::slice::from_raw_parts(data, len) };
    std::hint::black_box(chunk.iter().map(|&b| b as usize).sum::<usize>());
    if !ctx.free_early {
        let r = unsafe { ancm_request_ack_write(ctx.request) };
        assert_eq!(r, ancm_result::Ok);
    }
}

unsafe extern "C" fn complete(ud: *mut c_void, result: ancm_result, msg: *const u8, len: usize) {
    let ctx = unsafe { &*(ud as *const Ctx) };
    let msg = unsafe { std::slice::from_raw_parts(msg, len) };
    assert!(
        std::str::from_utf8(msg).is_ok(),
        "complete message not UTF-8"
    );
    let head_seen = ctx.status.lock().unwrap().is_some();
    // Signal through our own reference: once the host sees `done` it may free `ctx`.
    let done = ctx.done.clone();
    let (lock, cv) = &*done;
    let mut slot = lock.lock().unwrap();
    assert!(slot.is_none(), "complete called twice");
    *slot = Some(Done { result, head_seen });
    cv.notify_all();
}

const CALLBACKS: ancm_callbacks = ancm_callbacks {
    body_wanted: Some(body_wanted),
    response_head: Some(response_head),
    response_body: Some(response_body),
    complete: Some(complete),
    response_trailers: None,
};

fn code(r: &Result<ancm_core::ffi::request::ParsedHead, ancm_result>) -> ancm_result {
    match r {
        Ok(_) => ancm_result::Ok,
        Err(c) => *c,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sep, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.split(|&b| b == sep);
    let mut next = || fields.next().unwrap_or_default();
    let f = flags(next());
    let method = Field::new(next());
    let target = Field::new(next());
    let address = Field::new(next());
    let cert = Field::new(next());
    let token = Field::new(next());
    let raw_headers: Vec<(Field, Field)> = fields
        .map(|h| match h.iter().position(|&b| b == b':') {
            Some(i) => (Field::new(&h[..i]), Field::new(&h[i + 1..])),
            None => (Field::new(h), Field::new(b"")),
        })
        .collect();
    let headers: Vec<ancm_header> = raw_headers
        .iter()
        .map(|(n, v)| ancm_header {
            name: n.slice(f.nulls),
            value: v.slice(f.nulls),
        })
        .collect();
    let head = ancm_request_head {
        method: method.slice(f.nulls),
        target: target.slice(f.nulls),
        headers: if headers.is_empty() {
            std::ptr::null()
        } else {
            headers.as_ptr()
        },
        header_count: headers.len(),
        content_length: f.content_length,
        client_address: address.slice(f.nulls),
        client_port: f.port,
        https: f.https,
        client_cert_der: cert.slice(f.nulls),
        auth_type: token.slice(f.nulls),
        windows_token: std::ptr::null_mut(),
        serialize_io: f.serialize,
    };

    // The parser alone: what it accepts is exactly what it was given.
    let parsed = unsafe { parse_head(&head) };
    match &parsed {
        Ok(p) => {
            assert_eq!(p.method.as_str().as_bytes(), &method.0[..]);
            assert_eq!(p.headers.len(), headers.len());
            // A HeaderMap groups values by name; each name keeps its values in order.
            for (n, _) in &raw_headers {
                let values: Vec<&[u8]> = p
                    .headers
                    .get_all(http::HeaderName::from_bytes(&n.0).unwrap())
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect();
                let sent: Vec<&[u8]> = raw_headers
                    .iter()
                    .filter(|(m, _)| m.0.eq_ignore_ascii_case(&n.0))
                    .map(|(_, v)| &v.0[..])
                    .collect();
                assert_eq!(values, sent);
            }
            let ip: IpAddr = std::str::from_utf8(&address.0).unwrap().parse().unwrap();
            assert_eq!(p.client.addr.ip(), ip);
            assert_eq!(p.client.addr.port(), f.port);
            assert_eq!(p.client.https, f.https);
            assert_eq!(
                p.client.client_cert_der.as_deref().unwrap_or(b""),
                &cert.0[..]
            );
            // The authentication type is checked as UTF-8; with no token handle nothing is kept.
            assert!(std::str::from_utf8(&token.0).is_ok());
            assert!(p.windows_token.is_none() && p.client.windows_token.is_none());
            let expected = match f.content_length {
                0 => BodyKind::Empty,
                -1 => BodyKind::Unknown,
                n => BodyKind::Length(n as u64),
            };
            assert_eq!(p.body, expected);
        }
        Err(ancm_result::InvalidMethod) => assert!(http::Method::from_bytes(&method.0).is_err()),
        Err(ancm_result::InvalidArgument) => assert!(f.content_length < -1),
        Err(ancm_result::InvalidClientAddress) => assert!(std::str::from_utf8(&address.0)
            .ok()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_none()),
        Err(ancm_result::InvalidTarget | ancm_result::InvalidHeader | ancm_result::InvalidUtf8) => {
        }
        Err(ancm_result::FramingHeader) => assert!(
            raw_headers
                .iter()
                .any(|(n, _)| n.0.eq_ignore_ascii_case(b"content-length")
                    || n.0.eq_ignore_ascii_case(b"transfer-encoding")),
            "FRAMING_HEADER without a framing header"
        ),
        Err(other) => panic!("parse_head returned {other:?}"),
    }

    // The same head through the real C ABI.
    let mut ctx = Box::new(Ctx {
        request: std::ptr::null_mut(),
        free_early: f.free_early,
        done: Arc::new((Mutex::new(None), Condvar::new())),
        status: Mutex::new(None),
    });
    let ud: *mut Ctx = &mut *ctx;
    let out: *mut *mut ancm_request = unsafe { &raw mut (*ud).request };
    let r = unsafe { ancm_request_start(app(), &head, &CALLBACKS, ud.cast(), out) };
    assert_eq!(
        r,
        code(&parsed),
        "ancm_request_start disagrees with parse_head"
    );
    if r != ancm_result::Ok {
        // On failure no callback runs and no handle is written.
        assert!(ctx.request.is_null());
        assert!(ctx.done.0.lock().unwrap().is_none());
        return;
    }
    let request = unsafe { *out };
    assert!(!request.is_null());
    if f.misuse && !f.free_early {
        // Calls that do not fit the request's state are refused (or ignored once it is over).
        let r = unsafe { ancm_request_supply_body(request, b"x".as_ptr(), 1) };
        assert!(
            matches!(r, ancm_result::Ok | ancm_result::BodyNotWanted),
            "{r:?}"
        );
        let r = unsafe { ancm_request_supply_body(request, b"x".as_ptr(), 0) };
        assert_eq!(r, ancm_result::InvalidArgument);
        let r = unsafe { ancm_request_ack_write(request) };
        assert!(
            matches!(r, ancm_result::Ok | ancm_result::NoWritePending),
            "{r:?}"
        );
    }
    if f.cancel && !f.free_early {
        assert_eq!(unsafe { ancm_request_cancel(request) }, ancm_result::Ok);
    }
    if f.free_early {
        unsafe { ancm_request_free(request) };
    }
    let done = {
        let (lock, cv) = &*ctx.done;
        let (slot, timeout) = cv
            .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(8), |d| {
                d.is_none()
            })
            .unwrap();
        assert!(!timeout.timed_out(), "no complete within 8 s");
        slot.unwrap()
    };
    let status = *ctx.status.lock().unwrap();
    match done.result {
        ancm_result::Ok => {
            assert!(done.head_seen, "complete(OK) without a response head");
            assert!(matches!(status, Some(400 | 503)), "status {status:?}");
        }
        ancm_result::Cancelled => assert!(f.cancel || f.free_early, "cancelled by nobody"),
        ancm_result::BodyRefused => assert!(f.content_length > 0, "refused a body of no length"),
        other => panic!("complete({other:?})"),
    }
    if !f.free_early {
        unsafe { ancm_request_free(request) };
    }
    drop(ctx);
});
