//! The engine's C ABI as a library for C and C++ hosts (`libancm.a`, `libancm.so`, `ancm.dll`).
//!
//! The `ancm_*` functions live in ancm-core (`rust-core/src/ffi/`, declared in
//! `include/ancm.h`); a static or dynamic library exports its dependencies' `#[no_mangle]`
//! functions, so this crate holds no ABI of its own. It exists because of how Cargo applies
//! link-time optimisation: a library that is also built as an `rlib` (as ancm-core must be, for
//! its Rust users) gets none in any of its outputs, so the C library was linked without it. Built
//! here, as a `staticlib`/`cdylib` only, the whole engine is optimised as one unit: 31,139 → 28,514
//! instructions per forwarded request through the C ABI (case (h) of `cargo xtask bench`,
//! docs/decisions.md, "The C library is its own crate").

/// The system allocator, named. Without a `#[global_allocator]` every allocation reaches `malloc`
/// through rustc's allocator shim (`__rust_alloc` → `__rdl_alloc`); named, the engine calls
/// `malloc` directly (≈ 70 instructions less per request). A library crate must not choose the
/// global allocator for its Rust users; the final C library may, and keeps the same one.
#[global_allocator]
static ALLOCATOR: std::alloc::System = std::alloc::System;

// Links the engine, whose C ABI is what this library exports.
pub use ancm_core::ffi;
