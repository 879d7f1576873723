//! The process-wide runtime the C ABI runs the engine on.
//!
//! C hosts do not run an async runtime, so the first call that needs one creates a tokio
//! multi-thread runtime shared by every app in the process (IIS hosts many apps in one worker
//! process). It has one worker thread per CPU, at least 2 and at most 16, named `ancm-core`,
//! plus tokio's blocking pool (also `ancm-core`) for file and process work. Every callback of
//! the C ABI runs on one of these threads. The runtime lives until the process exits.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

use super::result::ancm_result;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The number of worker threads the runtime starts with on this machine.
pub(crate) fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 16)
}

/// The runtime, created on first use; `RuntimeUnavailable` if it could not be created.
pub(crate) fn runtime() -> Result<&'static Runtime, ancm_result> {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .thread_name("ancm-core")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    match rt {
        Ok(rt) => Ok(rt),
        Err(e) => {
            ::log::error!("ancm-core: cannot start the runtime: {e}");
            Err(ancm_result::RuntimeUnavailable)
        }
    }
}

/// Whether the calling thread is one of the runtime's (or inside any tokio runtime), where a
/// blocking call would stall the engine.
pub(crate) fn on_core_thread() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}
