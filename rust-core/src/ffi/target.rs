//! Request targets for hosts whose server hands them over in another form than origin-form
//! (IIS): the engine's escaping rule ([`crate::forward::target`]) behind the C ABI, so that the
//! target a host passes to `ancm_request_start` is built by the same rule on every host.

use super::handle::{ancm_slice, check_null, try_ffi, units, write_out};
use super::panic::guard;
use super::result::ancm_result;
use crate::forward::target::{escape_decoded, escape_sent};

/// Copies `escaped` into the caller's buffer and writes its length.
///
/// # Safety
/// `out` is valid for `capacity` bytes of writes, `out_len` for one write.
unsafe fn deliver(
    escaped: &[u8],
    out: *mut u8,
    capacity: usize,
    out_len: *mut usize,
) -> ancm_result {
    if escaped.len() > capacity {
        return ancm_result::InvalidArgument;
    }
    // SAFETY: the caller's buffer holds `capacity` ≥ `escaped.len()` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(escaped.as_ptr(), out, escaped.len());
        write_out(out_len, escaped.len());
    }
    ancm_result::Ok
}

/// Escapes a request target as the client sent it (IIS: `HTTP_REQUEST.pRawUrl`, which HTTP.sys
/// accepted although it may hold bytes a strict parser refuses) into a valid origin-form
/// target: every byte origin-form allows and every existing `%XX` (`%2F` included) unchanged,
/// every other byte (`<`, `"`, a space, non-UTF-8, a `%` that starts no escape) as `%XX`. The
/// caller checks that `raw` is origin-form in shape (starts with `/`, or is `*`).
///
/// Writes the result (no NUL) to `out`, which holds `capacity` bytes (3 × `raw.len` always
/// suffices), and its length to `*out_len`. Returns `ANCM_RESULT_INVALID_ARGUMENT` (nothing
/// written) when `capacity` is too small, `ANCM_RESULT_NULL_PARAMETER` for a NULL `out` or
/// `out_len`. The caller owns every buffer. Callable from any thread; no callback runs.
#[no_mangle]
pub unsafe extern "C" fn ancm_target_escape_sent(
    raw: ancm_slice,
    out: *mut u8,
    capacity: usize,
    out_len: *mut usize,
) -> ancm_result {
    guard(|| {
        check_null!(out, out_len);
        let raw = try_ffi!(unsafe { raw.bytes() });
        unsafe { deliver(&escape_sent(raw), out, capacity, out_len) }
    })
}

/// Escapes a URL whose path is decoded and whose query is as sent (IIS after a rewrite:
/// `CookedUrl.pAbsPath` and `CookedUrl.pQueryString`, UTF-16, lengths in code units, the query
/// with its `?` or empty) into a valid origin-form target: the path as UTF-8 with every byte
/// that a path does not allow unescaped as `%XX` (`%` and `?` included, as ANCM's escaping does
/// for `?`), then the query as `ancm_target_escape_sent` treats it. An unpaired surrogate
/// becomes U+FFFD.
///
/// Writes the result (no NUL) to `out`, which holds `capacity` bytes (9 × (`path_len` +
/// `query_len`) always suffices), and its length to `*out_len`. Returns
/// `ANCM_RESULT_INVALID_ARGUMENT` (nothing written) when `capacity` is too small,
/// `ANCM_RESULT_NULL_PARAMETER` for a NULL `out` or `out_len` (or a NULL string with a non-zero
/// length). The caller owns every buffer. Callable from any thread; no callback runs.
#[no_mangle]
pub unsafe extern "C" fn ancm_target_escape_decoded_utf16(
    path: *const u16,
    path_len: usize,
    query: *const u16,
    query_len: usize,
    out: *mut u8,
    capacity: usize,
    out_len: *mut usize,
) -> ancm_result {
    guard(|| {
        check_null!(out, out_len);
        let path = String::from_utf16_lossy(try_ffi!(unsafe { units(path, path_len) }));
        let query = String::from_utf16_lossy(try_ffi!(unsafe { units(query, query_len) }));
        let escaped = escape_decoded(path.as_bytes(), query.as_bytes());
        unsafe { deliver(&escaped, out, capacity, out_len) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_targets_through_the_abi() {
        let raw = b"/a%2Fb c?q=<1>";
        let mut out = [0u8; 3 * 14];
        let mut len = 0;
        let r = unsafe {
            ancm_target_escape_sent(ancm_slice::of(raw), out.as_mut_ptr(), out.len(), &mut len)
        };
        assert_eq!(r, ancm_result::Ok);
        assert_eq!(&out[..len], b"/a%2Fb%20c?q=%3C1%3E");
        let r =
            unsafe { ancm_target_escape_sent(ancm_slice::of(raw), out.as_mut_ptr(), 5, &mut len) };
        assert_eq!(r, ancm_result::InvalidArgument);
        let r = unsafe {
            ancm_target_escape_sent(ancm_slice::of(raw), std::ptr::null_mut(), 0, &mut len)
        };
        assert_eq!(r, ancm_result::NullParameter);
    }

    #[test]
    fn decoded_targets_through_the_abi_in_the_worst_case_capacity() {
        // Each code unit at its longest: a three-byte character, all of it escaped.
        let path: Vec<u16> = "/\u{20ac}\u{20ac}".encode_utf16().collect();
        let query: Vec<u16> = vec![u16::from(b'?'), 0xD800]; // an unpaired surrogate
        let mut out = vec![0u8; 9 * (path.len() + query.len())];
        let mut len = 0;
        let r = unsafe {
            ancm_target_escape_decoded_utf16(
                path.as_ptr(),
                path.len(),
                query.as_ptr(),
                query.len(),
                out.as_mut_ptr(),
                out.len(),
                &mut len,
            )
        };
        assert_eq!(r, ancm_result::Ok);
        assert_eq!(&out[..len], b"/%E2%82%AC%E2%82%AC?%EF%BF%BD");
    }
}
