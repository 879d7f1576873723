//! The C ABI (`include/ancm.h`, generated from this module by cbindgen).
//!
//! Conventions (see docs/c-api.md): every export is `ancm_<noun>_<verb>`, runs inside a panic
//! boundary ([`panic`]), checks every pointer, returns an [`result::ancm_result`] when it can
//! fail and writes outputs only through out-parameters and only on success. Handles are opaque;
//! each declares at the type level how it is owned ([`handle`]). Strings cross as UTF-8
//! `(pointer, length)` pairs, with UTF-16 variants where IIS hands UTF-16.
//!
//! The engine runs on one process-wide tokio runtime created on first use ([`runtime`]); every
//! callback runs on one of its threads, in a driver task that runs one request after another
//! ([`drivers`]).
//!
//! # Safety
//! Every `unsafe extern "C"` function here has one contract: pointer arguments are NULL or
//! valid for what its doc says (reads of the given length, one write), and handles are live,
//! of the right type, and not used after they are freed.

#![allow(non_camel_case_types)]
// The one safety contract of every `unsafe extern "C"` function is stated in this module's
// docs ("Safety") rather than repeated in each.
#![allow(clippy::missing_safety_doc)]

pub mod app;
pub mod config;
mod drivers;
pub mod handle;
pub mod log;
pub mod panic;
pub mod request;
pub mod result;
pub mod runtime;
pub mod shutdown;
pub mod target;

pub use result::ancm_result;
