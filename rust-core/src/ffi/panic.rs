//! The panic boundary: no unwinding ever crosses into C.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::result::ancm_result;

/// Runs `f`; if it panics, logs the panic and returns `on_panic()` instead.
pub(crate) fn ffi_boundary<R>(f: impl FnOnce() -> R, on_panic: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            // Logging itself must not panic again; the logger catches its own panics.
            ::log::error!("ancm-core: panic caught at the C ABI boundary: {what}");
            on_panic()
        }
    }
}

/// [`ffi_boundary`] for calls that return a result code: a panic becomes
/// [`ancm_result::Panic`].
pub(crate) fn guard(f: impl FnOnce() -> ancm_result) -> ancm_result {
    ffi_boundary(f, || ancm_result::Panic)
}

/// [`ffi_boundary`] for calls that return nothing.
pub(crate) fn guard_void(f: impl FnOnce()) {
    ffi_boundary(f, || ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_results() {
        assert_eq!(guard(|| panic!("boom")), ancm_result::Panic);
        assert_eq!(guard(|| ancm_result::Ok), ancm_result::Ok);
        guard_void(|| panic!("boom"));
    }
}
