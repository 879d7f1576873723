//! Result codes and their messages.

use std::ffi::c_char;

use super::panic::ffi_boundary;

/// The result of a fallible call, or the outcome given to a request's `complete` callback.
///
/// Codes are grouped in bands and never reused: 0 success; 1000–1999 the caller passed something
/// unusable; 2000–2999 configuration; 3000–3999 a call that does not fit the request's current
/// state; 4000–4999 the process environment; 5000–5999 how a request ended; 9000 a bug (a panic
/// caught at the boundary). A code received from C is always taken as `uint32_t`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ancm_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 1000,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 1001,
    /// A UTF-16 string argument was not valid UTF-16.
    InvalidUtf16 = 1002,
    /// An argument is out of its documented range (e.g. an unknown dialect, a zero-length chunk).
    InvalidArgument = 1003,
    /// The request method is not a valid HTTP method token.
    InvalidMethod = 1004,
    /// The request target cannot be forwarded (not a valid origin-form target).
    InvalidTarget = 1005,
    /// A request header name or value is not valid.
    InvalidHeader = 1006,
    /// The client address is not a valid IPv4 or IPv6 address.
    InvalidClientAddress = 1007,
    /// A required callback in the callback table was NULL.
    MissingCallback = 1008,
    /// A blocking call was made from a core thread (for example from inside a callback).
    WrongThread = 1009,
    /// The request's Windows token handle could not be duplicated (not an open handle).
    InvalidWindowsToken = 1010,
    /// A `Content-Length` or `Transfer-Encoding` header in the request head disagrees with its
    /// `content_length` (or the two headers conflict): `content_length` is the framing.
    FramingHeader = 1011,
    /// The configuration is invalid; the `ancm_error` out-parameter carries the message.
    ConfigInvalid = 2000,
    /// Body bytes or an end of body were supplied while the core had not asked for them.
    BodyNotWanted = 3000,
    /// A write was acknowledged while none was outstanding.
    NoWritePending = 3001,
    /// The supplied body does not fit `content_length`: more bytes than it announced, or the
    /// end before all of them. The request fails (`ANCM_RESULT_BODY_REFUSED`).
    BodyLengthMismatch = 3002,
    /// `ancm_request_reset_code` was asked of a request whose backend did not reset its stream.
    NotReset = 3003,
    /// The process-wide runtime could not be created (its message went to the log callback).
    RuntimeUnavailable = 4000,
    /// Another `log` logger is already installed in this process.
    LoggerAlreadySet = 4001,
    /// The call asks for something this platform does not have (a Windows token outside
    /// Windows).
    Unsupported = 4002,
    /// Request outcome: the host cancelled the request (client disconnect, or freed early).
    Cancelled = 5000,
    /// Request outcome: the response failed after its head was delivered (backend connection
    /// lost, malformed body, requestTimeout between chunks). The host must abort the client
    /// connection rather than end the response normally.
    ResponseAborted = 5001,
    /// Request outcome: the backend switched protocols but the upgraded connection failed.
    UpgradeFailed = 5002,
    /// Request outcome: the engine refused a body supply (a length that breaks
    /// `content_length`, or zero bytes), so the request was not forwarded as a success; the
    /// message says which. Abort the client connection.
    BodyRefused = 5003,
    /// Request outcome: the backend reset the HTTP/2 stream of a response whose head was
    /// delivered; `ancm_request_reset_code` gives its error code. Reset the client's stream
    /// with that code (an HTTP/1.1 client: abort its connection).
    StreamReset = 5004,
    /// A panic was caught at the ABI boundary: a bug in ancm-core.
    Panic = 9000,
}

impl ancm_result {
    /// The code's description, NUL-terminated.
    pub(crate) fn message(code: u32) -> &'static str {
        use ancm_result as R;
        let all = [
            (R::Ok, "success\0"),
            (R::NullParameter, "a required pointer argument was NULL\0"),
            (R::InvalidUtf8, "a string argument is not valid UTF-8\0"),
            (R::InvalidUtf16, "a string argument is not valid UTF-16\0"),
            (
                R::InvalidArgument,
                "an argument is out of its documented range\0",
            ),
            (
                R::InvalidMethod,
                "the request method is not a valid HTTP method\0",
            ),
            (R::InvalidTarget, "the request target cannot be forwarded\0"),
            (
                R::InvalidHeader,
                "a request header name or value is invalid\0",
            ),
            (
                R::InvalidClientAddress,
                "the client address is not an IPv4 or IPv6 address\0",
            ),
            (R::MissingCallback, "a required callback is NULL\0"),
            (
                R::WrongThread,
                "a blocking call was made from a core thread\0",
            ),
            (
                R::InvalidWindowsToken,
                "the Windows token handle cannot be duplicated\0",
            ),
            (
                R::FramingHeader,
                "a Content-Length or Transfer-Encoding header disagrees with content_length\0",
            ),
            (R::ConfigInvalid, "the configuration is invalid\0"),
            (
                R::BodyNotWanted,
                "request body supplied while the core had not asked for it\0",
            ),
            (
                R::NoWritePending,
                "a write was acknowledged while none was outstanding\0",
            ),
            (
                R::BodyLengthMismatch,
                "the supplied request body does not match content_length\0",
            ),
            (
                R::RuntimeUnavailable,
                "the ancm-core runtime could not be started\0",
            ),
            (
                R::LoggerAlreadySet,
                "another logger is already installed in this process\0",
            ),
            (
                R::Unsupported,
                "not supported on this platform (a Windows token outside Windows)\0",
            ),
            (R::Cancelled, "the request was cancelled by the host\0"),
            (
                R::ResponseAborted,
                "the response failed after its head was sent; abort the client connection\0",
            ),
            (R::UpgradeFailed, "the upgraded connection failed\0"),
            (
                R::BodyRefused,
                "the request failed: the engine refused the body the host supplied\0",
            ),
            (
                R::NotReset,
                "the backend did not reset the request's stream\0",
            ),
            (
                R::StreamReset,
                "the backend reset the response's stream; reset the client's with its code\0",
            ),
            (
                R::Panic,
                "internal error: a panic was caught at the ancm-core ABI boundary\0",
            ),
        ];
        all.iter()
            .find(|(r, _)| *r as u32 == code)
            .map_or("unknown result code\0", |(_, m)| m)
    }
}

/// Describes a result code in English (one line, no trailing period).
///
/// Returns a static NUL-terminated UTF-8 string that must not be freed; never NULL (an unknown
/// code gives "unknown result code"). Callable from any thread; no callback runs during it.
#[no_mangle]
pub extern "C" fn ancm_result_message(result: u32) -> *const c_char {
    ffi_boundary(
        || ancm_result::message(result).as_ptr().cast(),
        || c"panic".as_ptr(),
    )
}

/// This library's version (`"MAJOR.MINOR.PATCH"`, equal to `ANCM_VERSION`).
///
/// Returns a static NUL-terminated string that must not be freed. Callable from any thread.
#[no_mangle]
pub extern "C" fn ancm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_nul_terminated_and_known() {
        for code in [
            0u32, 1000, 1009, 1010, 1011, 2000, 3000, 3001, 3002, 4000, 4001, 4002, 5000, 5001,
            5002, 5003, 9000, 77,
        ] {
            let m = ancm_result::message(code);
            assert!(m.ends_with('\0') && !m[..m.len() - 1].contains('\0'), "{m}");
            assert_eq!(m == "unknown result code\0", code == 77, "{code}");
        }
    }
}
