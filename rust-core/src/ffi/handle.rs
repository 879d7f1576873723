//! Opaque handles and the plain-data types that cross the ABI.
//!
//! A handle type is a zero-sized struct C only ever sees behind a pointer; the pointer really
//! points at the Rust value named by [`BoxHandle::Rust`] or [`ArcHandle::Rust`]. Which trait a
//! handle implements fixes how it is created and freed, so freeing one the wrong way does not
//! compile.

use std::sync::Arc;

use super::result::ancm_result;

/// A borrowed byte string: `len` bytes at `ptr`. `ptr` may be NULL only when `len` is 0.
/// Text is UTF-8 unless a function says otherwise; no NUL terminator is needed or read.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ancm_slice {
    /// The first byte (NULL allowed when `len` is 0).
    pub ptr: *const u8,
    /// The number of bytes.
    pub len: usize,
}

impl ancm_slice {
    /// A slice over `b`, valid as long as `b` is.
    pub(crate) fn of(b: &[u8]) -> ancm_slice {
        ancm_slice {
            ptr: b.as_ptr(),
            len: b.len(),
        }
    }

    /// The bytes, or `NullParameter` for a NULL pointer with a non-zero length.
    ///
    /// # Safety
    /// `ptr` must point at `len` readable bytes that stay unchanged for `'a`.
    pub(crate) unsafe fn bytes<'a>(self) -> Result<&'a [u8], ancm_result> {
        unsafe { bytes(self.ptr, self.len) }
    }

    /// The bytes as UTF-8 text.
    ///
    /// # Safety
    /// As [`ancm_slice::bytes`].
    pub(crate) unsafe fn str<'a>(self) -> Result<&'a str, ancm_result> {
        std::str::from_utf8(unsafe { self.bytes()? }).map_err(|_| ancm_result::InvalidUtf8)
    }
}

/// `len` bytes at `ptr` (NULL allowed when `len` is 0).
///
/// # Safety
/// A non-NULL `ptr` must point at `len` readable bytes that stay unchanged for `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], ancm_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(ancm_result::NullParameter);
    }
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// UTF-8 text at (`ptr`, `len`).
///
/// # Safety
/// As [`bytes`].
pub(crate) unsafe fn utf8<'a>(ptr: *const u8, len: usize) -> Result<&'a str, ancm_result> {
    std::str::from_utf8(unsafe { bytes(ptr, len)? }).map_err(|_| ancm_result::InvalidUtf8)
}

/// `len` UTF-16 code units at `ptr` (NULL allowed when `len` is 0).
///
/// # Safety
/// A non-NULL `ptr` must point at `len` readable, aligned code units unchanged for `'a`.
pub(crate) unsafe fn units<'a>(ptr: *const u16, len: usize) -> Result<&'a [u16], ancm_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(ancm_result::NullParameter);
    }
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A handle owned through a `Box`: created with [`to_box`], freed once with [`free_box`].
pub(crate) trait BoxHandle {
    /// The Rust value behind the handle.
    type Rust;
}

/// A handle owned through an `Arc`: created with [`to_arc`], freed once with [`free_arc`]; the
/// core may hold further references of its own.
pub(crate) trait ArcHandle {
    /// The Rust value behind the handle.
    type Rust;
}

/// Moves `v` to the heap and returns it as handle `H`.
pub(crate) fn to_box<H: BoxHandle>(v: H::Rust) -> *mut H {
    Box::into_raw(Box::new(v)).cast()
}

/// Borrows the value behind a Box handle (`None` for NULL).
///
/// # Safety
/// A non-NULL `p` must come from [`to_box`] for this `H` and not have been freed.
pub(crate) unsafe fn box_ref<'a, H: BoxHandle>(p: *const H) -> Option<&'a H::Rust> {
    unsafe { p.cast::<H::Rust>().as_ref() }
}

/// Borrows the value behind a Box handle mutably (`None` for NULL).
///
/// # Safety
/// As [`box_ref`], and no other reference to it may be live (the C caller promises not to use
/// the handle from two threads at once).
pub(crate) unsafe fn box_mut<'a, H: BoxHandle>(p: *mut H) -> Option<&'a mut H::Rust> {
    unsafe { p.cast::<H::Rust>().as_mut() }
}

/// Takes back ownership of a Box handle (`None` for NULL).
///
/// # Safety
/// A non-NULL `p` must come from [`to_box`] for this `H` and is invalid afterwards.
pub(crate) unsafe fn free_box<H: BoxHandle>(p: *mut H) -> Option<Box<H::Rust>> {
    if p.is_null() {
        None
    } else {
        Some(unsafe { Box::from_raw(p.cast::<H::Rust>()) })
    }
}

/// Gives C one reference to `v` as handle `H`.
pub(crate) fn to_arc<H: ArcHandle>(v: Arc<H::Rust>) -> *mut H {
    Arc::into_raw(v).cast_mut().cast()
}

/// Borrows the value behind an Arc handle (`None` for NULL).
///
/// # Safety
/// A non-NULL `p` must come from [`to_arc`] for this `H` and not have been freed.
pub(crate) unsafe fn arc_ref<'a, H: ArcHandle>(p: *const H) -> Option<&'a H::Rust> {
    unsafe { p.cast::<H::Rust>().as_ref() }
}

/// Takes back C's reference to an Arc handle (`None` for NULL).
///
/// # Safety
/// A non-NULL `p` must come from [`to_arc`] for this `H` and is invalid afterwards.
pub(crate) unsafe fn free_arc<H: ArcHandle>(p: *const H) -> Option<Arc<H::Rust>> {
    if p.is_null() {
        None
    } else {
        Some(unsafe { Arc::from_raw(p.cast::<H::Rust>()) })
    }
}

/// Writes `v` through an out-parameter (the caller has checked it is non-NULL).
///
/// # Safety
/// `out` must be valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, v: T) {
    unsafe { out.write(v) }
}

/// Returns `NullParameter` from the enclosing function if any of the pointers is NULL.
macro_rules! check_null {
    ($($p:expr),+ $(,)?) => {
        $( if $p.is_null() { return $crate::ffi::result::ancm_result::NullParameter; } )+
    };
}
pub(crate) use check_null;

/// Evaluates a `Result<T, ancm_result>`, returning the code from the enclosing function on `Err`.
macro_rules! try_ffi {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}
pub(crate) use try_ffi;

#[cfg(test)]
mod tests {
    use super::*;

    struct Thing;
    impl BoxHandle for Thing {
        type Rust = String;
    }

    #[test]
    fn slices_and_boxes() {
        unsafe {
            assert_eq!(bytes(std::ptr::null(), 0), Ok(&[][..]));
            assert_eq!(bytes(std::ptr::null(), 1), Err(ancm_result::NullParameter));
            assert_eq!(utf8(b"\xff".as_ptr(), 1), Err(ancm_result::InvalidUtf8));
            assert_eq!(ancm_slice::of(b"hi").str(), Ok("hi"));
            let h: *mut Thing = to_box("x".to_owned());
            box_mut(h).unwrap().push('y');
            assert_eq!(box_ref(h).unwrap(), "xy");
            assert_eq!(*free_box(h).unwrap(), "xy");
            assert!(free_box::<Thing>(std::ptr::null_mut()).is_none());
        }
    }
}
