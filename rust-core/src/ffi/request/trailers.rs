//! Trailers and stream resets over the C ABI, both ways: the backend's response trailers to the
//! host (`response_trailers`), the client's request trailers from the host
//! (`ancm_request_supply_trailers`), a reset by the client (`ancm_request_reset`) and one by the
//! backend (`ANCM_RESULT_STREAM_RESET`, `ancm_request_reset_code`). They matter to HTTP/2
//! clients of h2c apps (gRPC's `grpc-status` is a trailer); docs/forwarding.md, "HTTP/2".

use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{ancm_header, ancm_request, wake_all, Outcome, Read, Shared, State};
use crate::ffi::handle::{arc_ref, check_null, write_out};
use crate::ffi::panic::guard;
use crate::ffi::result::ancm_result;
use crate::forward::BoxError;

/// No reset: HTTP/2 error codes are 32 bits, so this 64-bit value is none of them.
pub(super) const NO_RESET: u64 = u64::MAX;

/// The response's trailers (`count` fields, names lowercase as HTTP/2 has them), after the last
/// `response_body` chunk was acknowledged and before `complete` (`ANCM_RESULT_OK`); at most once,
/// and only when the backend sent trailers. `headers` and what it points at are valid only during
/// the call: copy what you keep. Runs on a core thread; must not block. NULL in the table: the
/// trailers are dropped.
pub type ancm_response_trailers_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, headers: *const ancm_header, count: usize)>;

/// Hands the backend's response trailers to the host, if it takes them.
pub(super) fn deliver(shared: &Shared, trailers: &HeaderMap) {
    let Some(cb) = shared.table.response_trailers else {
        return;
    };
    let list: Vec<ancm_header> = trailers
        .iter()
        .map(|(n, v)| ancm_header {
            name: crate::ffi::handle::ancm_slice::of(n.as_str().as_bytes()),
            value: crate::ffi::handle::ancm_slice::of(v.as_bytes()),
        })
        .collect();
    // SAFETY: the host's callback; `list` and the map it points into outlive the call.
    shared.call(|_, ud| unsafe { cb(ud, list.as_ptr(), list.len()) });
}

/// How a failed response body ends the request: a backend's reset of the stream (an HTTP/2 error
/// code in the error's causes) is `StreamReset` with its code kept for `ancm_request_reset_code`;
/// anything else is `ResponseAborted`.
pub(super) fn body_failed(shared: &Shared, e: &crate::forward::BodyError) -> Outcome {
    let text = crate::forward::describe(e);
    match crate::forward::h2::h2_reason(e) {
        Some(reason) => {
            shared
                .backend_reset
                .store(u64::from(u32::from(reason)), Ordering::Release);
            Outcome(ancm_result::StreamReset, text)
        }
        None => Outcome(ancm_result::ResponseAborted, text),
    }
}

/// The error the request body fails with once the host reset the request while the body was
/// still open: an HTTP/2 error carrying the host's code, which hyper's HTTP/2 client sends to the
/// backend as its RST_STREAM code. Stops the request too (`state` locked). `None`: no reset.
pub(super) fn host_reset_error(
    shared: &Shared,
    st: &mut MutexGuard<'_, State>,
) -> Option<BoxError> {
    let code = shared.host_reset.load(Ordering::Acquire);
    if code == NO_RESET {
        return None;
    }
    if !shared.is_over() {
        let wakers = shared.stop(st, None);
        // The body's own waker is the caller's: only the driver needs waking.
        if let Some(w) = wakers[1].clone() {
            w.wake();
        }
    }
    let code = u32::try_from(code).unwrap_or(u32::from(h2::Reason::CANCEL));
    Some(Box::new(h2::Error::from(h2::Reason::from(code))))
}

/// Copies the host's trailer fields, leaving out those a trailer section must not carry (RFC 9110
/// §6.5.1: framing, routing and connection fields) and the engine's reserved `MS-ASPNETCORE-*`
/// ones, which the client never supplies.
unsafe fn copy_trailers(
    headers: *const ancm_header,
    count: usize,
) -> Result<HeaderMap, ancm_result> {
    if count == 0 {
        return Ok(HeaderMap::new());
    }
    if headers.is_null() {
        return Err(ancm_result::NullParameter);
    }
    // SAFETY: the caller promises `count` readable entries.
    let list = unsafe { std::slice::from_raw_parts(headers, count) };
    let mut map = HeaderMap::with_capacity(count);
    for h in list {
        let name = unsafe { h.name.bytes()? };
        let value = unsafe { h.value.bytes()? };
        let name = HeaderName::from_bytes(name).map_err(|_| ancm_result::InvalidHeader)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| ancm_result::InvalidHeader)?;
        let n = name.as_str().as_bytes();
        if crate::forward::headers::is_hop_by_hop(n)
            || crate::forward::headers::is_reserved(n)
            || name == http::header::CONTENT_LENGTH
            || name == http::header::HOST
        {
            continue;
        }
        map.append(name, value);
    }
    Ok(map)
}

/// Ends the request body with trailers (the client's trailer section, e.g. of an HTTP/2
/// request): like `ancm_request_end_body`, and the `count` fields of `headers` (copied before the
/// call returns; the host keeps ownership) follow the body to the backend. An h2c backend gets
/// them as the request's trailers; an HTTP/1.1 backend gets none (docs/forwarding.md). Fields a
/// trailer section must not carry (`Content-Length`, `Host`, `Transfer-Encoding`, `TE`,
/// `Connection` …) and `MS-ASPNETCORE-*` are left out.
///
/// Returns `ANCM_RESULT_INVALID_HEADER` for a name or value HTTP does not allow (nothing
/// changes), `ANCM_RESULT_BODY_NOT_WANTED` when the body has already ended or the request has no
/// body (`content_length` 0), and `ANCM_RESULT_BODY_LENGTH_MISMATCH` like `end_body` before all of
/// a known `content_length` (the request then fails). After the request was cancelled or has
/// completed the fields are ignored and the result is OK. Callable from any thread, also from
/// inside a callback; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_request_supply_trailers(
    request: *const ancm_request,
    headers: *const ancm_header,
    count: usize,
) -> ancm_result {
    guard(|| {
        let Some(shared) = (unsafe { arc_ref(request) }) else {
            return ancm_result::NullParameter;
        };
        let map = match unsafe { copy_trailers(headers, count) } {
            Ok(m) => m,
            Err(e) => return e,
        };
        let wakers = {
            let mut st = shared.state();
            if shared.is_over() {
                return ancm_result::Ok;
            }
            if st.read == Read::Ended || shared.driver_only || st.duplex {
                return ancm_result::BodyNotWanted;
            }
            if shared.length.is_some_and(|n| st.received < n) {
                let wakers = shared.stop(&mut st, Some(super::Refusal::TooShort));
                drop(st);
                wake_all(wakers);
                return ancm_result::BodyLengthMismatch;
            }
            st.read = Read::Ended;
            if !map.is_empty() {
                st.trailers = Some(map);
            }
            [st.body_waker.take(), st.driver_waker.clone()]
        };
        wake_all(wakers);
        ancm_result::Ok
    })
}

/// Resets the request's stream with HTTP/2 error `code` (the client reset its HTTP/2 stream):
/// the backend request is abandoned and `complete` follows with `ANCM_RESULT_CANCELLED`, as after
/// `ancm_request_cancel`. While the request body is still open and the engine is waiting for
/// it, an h2c backend's stream is reset with `code`; otherwise (the body was sent in full, or the
/// backend speaks HTTP/1.1) the backend sees what a cancel gives it: an HTTP/2 stream reset with
/// `CANCEL`, or a closed connection. Idempotent (the first code counts). Callable from any
/// thread, also from inside a callback; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_request_reset(
    request: *const ancm_request,
    code: u32,
) -> ancm_result {
    guard(|| {
        let Some(shared) = (unsafe { arc_ref(request) }) else {
            return ancm_result::NullParameter;
        };
        let wakers = {
            let mut st = shared.state();
            if shared.is_over() {
                return ancm_result::Ok;
            }
            shared.host_reset.store(u64::from(code), Ordering::Release);
            let open = st.read != Read::Ended
                && !shared.driver_only
                && shared.length.is_none_or(|n| st.received != n);
            match st.body_waker.take() {
                // The backend's body pipe waits in the body's poll: woken, it fails the body with
                // the code (`host_reset_error`), which also stops the request.
                Some(w) if open => [Some(w), None],
                // Nothing would poll the body: stop now.
                _ => shared.stop(&mut st, None),
            }
        };
        wake_all(wakers);
        ancm_result::Ok
    })
}

/// Writes the HTTP/2 error code the backend reset the response's stream with to `*code_out`,
/// after a `complete` with `ANCM_RESULT_STREAM_RESET` (also from inside that `complete`).
/// Returns `ANCM_RESULT_NOT_RESET` (nothing written) when the backend did not reset it. Callable
/// from any thread; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_request_reset_code(
    request: *const ancm_request,
    code_out: *mut u32,
) -> ancm_result {
    guard(|| {
        check_null!(code_out);
        let Some(shared) = (unsafe { arc_ref(request) }) else {
            return ancm_result::NullParameter;
        };
        match u32::try_from(shared.backend_reset.load(Ordering::Acquire)) {
            Ok(code) => {
                unsafe { write_out(code_out, code) };
                ancm_result::Ok
            }
            Err(_) => ancm_result::NotReset,
        }
    })
}
