//! The ancm-rs IIS module, `aspnetcore_rs.dll`.
//!
//! IIS loads the DLL and calls its one export, `RegisterModule`. The export is defined here in
//! Rust because a Rust `cdylib` exports only Rust `#[no_mangle]` symbols; it forwards to the
//! C++ glue (`src/glue/`, compiled by build.rs), which implements IIS's C++ interfaces.
//!
//! Off Windows the crate is empty, so `cargo test --workspace` on Linux builds it as a no-op.
//! Build the DLL with `cargo xtask dll`; see docs/iis.md.

// The engine: its C ABI (`ancm_*`) is what the C++ glue calls. Naming the crate makes sure it
// is linked into the DLL.
#[cfg(windows)]
use ancm_core as _;

/// The system allocator, named, as crate ancm-capi names it: the engine then calls `malloc`
/// directly instead of through rustc's allocator shim (docs/decisions.md, "The C library is its
/// own crate").
#[cfg(windows)]
#[global_allocator]
static ALLOCATOR: std::alloc::System = std::alloc::System;

#[cfg(windows)]
mod windows {
    use std::ffi::c_void;

    /// HRESULT E_UNEXPECTED: returned when the glue panicked or unwound (it must not).
    const E_UNEXPECTED: i32 = 0x8000_FFFFu32 as i32;

    extern "system" {
        /// The C++ side of RegisterModule (src/glue/module.cpp). Catches every C++
        /// exception itself and returns an HRESULT.
        fn ancm_glue_register_module(
            server_version: u32,
            module_info: *mut c_void,
            global_info: *mut c_void,
        ) -> i32;
    }

    /// IIS's entry point (`PFN_REGISTERMODULE`): `HRESULT WINAPI RegisterModule(DWORD,
    /// IHttpModuleRegistrationInfo*, IHttpServer*)`, exported undecorated. Unwinding out of
    /// it into IIS would be undefined behaviour, hence the catch_unwind.
    ///
    /// # Safety
    /// Called by IIS with valid interface pointers that outlive the worker process.
    #[no_mangle]
    pub unsafe extern "system" fn RegisterModule(
        server_version: u32,
        module_info: *mut c_void,
        global_info: *mut c_void,
    ) -> i32 {
        std::panic::catch_unwind(|| {
            // SAFETY: the pointers come from IIS unchanged; the glue checks them for null.
            unsafe { ancm_glue_register_module(server_version, module_info, global_info) }
        })
        .unwrap_or(E_UNEXPECTED)
    }
}
