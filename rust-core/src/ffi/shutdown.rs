//! The process-wide shutdown, for hosts whose process is going away (IIS's stop listening):
//! see [`crate::shutdown`].

use super::panic::guard;
use super::result::ancm_result;
use super::runtime::on_core_thread;

/// Begins the process-wide shutdown and returns at once: from now on every request of every
/// app in the process gets the engine's 503 page (also the requests of apps created later), no
/// process is started any more, and the processes of every app are stopped in the background,
/// all at once, each gracefully within its app's shutdownTimeLimit (then killed). Cannot be
/// undone. Calling it again does nothing.
///
/// Owns nothing, takes nothing. Callable from any thread, also from a callback; no callback
/// runs during it (the log callback may, on the calling thread or a core thread). The host
/// still stops and frees its apps as usual; call `ancm_shutdown_wait` before the process exits.
#[no_mangle]
pub extern "C" fn ancm_shutdown_begin() -> ancm_result {
    guard(|| {
        crate::shutdown::begin();
        ancm_result::Ok
    })
}

/// Blocks until everything `ancm_shutdown_begin` set going has ended: every stop of an app's
/// processes (each bounded by its shutdownTimeLimit) and every process start that was under
/// way when it began (bounded by its startupTimeLimit). Returns at once when the shutdown has
/// not begun or has ended.
///
/// Must be called from a host thread, never from a callback or another core thread
/// (`ANCM_RESULT_WRONG_THREAD`): the stops run on the core threads. Request callbacks of
/// requests still in flight may run on core threads meanwhile.
#[no_mangle]
pub extern "C" fn ancm_shutdown_wait() -> ancm_result {
    guard(|| {
        if on_core_thread() {
            return ancm_result::WrongThread;
        }
        crate::shutdown::wait(None);
        ancm_result::Ok
    })
}
