//! Applications: create one from a configuration, query it, stop it, free it.

use super::config::{ancm_config, config_ref};
use super::handle::{
    ancm_slice, box_ref, check_null, free_box, to_box, try_ffi, write_out, BoxHandle,
};
use super::panic::{guard, guard_void};
use super::result::ancm_result;
use super::runtime::{on_core_thread, runtime};
use crate::{App, HostInfo};

/// A served application: its processes are started by its first request. Created by
/// `ancm_app_new`, freed with `ancm_app_free`. Thread-safe: requests may be started on it from
/// any number of threads at once.
pub struct ancm_app {
    _private: [u8; 0],
}

impl BoxHandle for ancm_app {
    type Rust = App;
}

/// What the host knows about the application beyond its configuration. Every string is UTF-8,
/// borrowed for the duration of the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ancm_host_info {
    /// The app's physical path: the process's working directory, where app_offline.htm is
    /// looked for, and the base of relative paths in the configuration. Required.
    pub site_root: ancm_slice,
    /// The app's virtual path (`/` or `/sub`); empty means `/`.
    pub app_path: ancm_slice,
    /// The enabled authentication schemes (`ASPNETCORE_IIS_HTTPAUTH`, e.g. `windows;anonymous;`);
    /// empty means `anonymous;`.
    pub http_auth: ancm_slice,
    /// The site's single https port (`ASPNETCORE_ANCM_HTTPS_PORT`), 0 when none.
    pub https_port: u16,
    /// Whether the host can tunnel WebSocket upgrades.
    pub websockets_supported: bool,
}

/// A snapshot of an app's state, for diagnostics.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ancm_app_status {
    /// How many of its processes are running.
    pub process_count: usize,
    /// Whether app_offline.htm is present (requests get 503).
    pub offline: bool,
    /// Whether `ancm_app_stop` or `ancm_shutdown_begin` has been called (requests get 503).
    pub shutting_down: bool,
}

/// One running process of an app.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ancm_process_info {
    /// Its process id.
    pub pid: u32,
    /// The loopback port it listens on.
    pub port: u16,
}

/// Creates an application from `config` (copied: the caller still owns and frees `config`) and
/// `host` (copied). No process starts until the first request.
///
/// On success writes a new app to `*app_out`; the caller frees it with `ancm_app_free`. The
/// first call in the process creates the core runtime (see docs/c-api.md, "Threads"). Callable
/// from any thread; no request callback runs during it (the log callback may).
#[no_mangle]
pub unsafe extern "C" fn ancm_app_new(
    config: *const ancm_config,
    host: *const ancm_host_info,
    app_out: *mut *mut ancm_app,
) -> ancm_result {
    guard(|| {
        check_null!(config, host, app_out);
        let Some(config) = (unsafe { config_ref(config) }) else {
            return ancm_result::NullParameter;
        };
        let host = unsafe { *host };
        let site_root = try_ffi!(unsafe { host.site_root.str() });
        if site_root.is_empty() {
            return ancm_result::InvalidArgument;
        }
        let mut info = HostInfo::new(site_root);
        let app_path = try_ffi!(unsafe { host.app_path.str() });
        if !app_path.is_empty() {
            info.app_path = app_path.to_owned();
        }
        let http_auth = try_ffi!(unsafe { host.http_auth.str() });
        if !http_auth.is_empty() {
            info.http_auth = http_auth.to_owned();
        }
        info.https_port = (host.https_port != 0).then_some(host.https_port);
        info.websockets_supported = host.websockets_supported;
        let rt = try_ffi!(runtime());
        for w in config.warnings() {
            ::log::warn!("{w}");
        }
        if config.extensions.debug.is_set() {
            // A host without a log callback still gets the debug log it configured.
            super::log::install();
        }
        let app = App::new(config.clone(), info, rt.handle().clone());
        unsafe { write_out(app_out, to_box::<ancm_app>(app)) };
        ancm_result::Ok
    })
}

/// Fills `*status_out` with the app's current state. Callable from any thread; no callback runs
/// during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_app_get_status(
    app: *const ancm_app,
    status_out: *mut ancm_app_status,
) -> ancm_result {
    guard(|| {
        check_null!(status_out);
        let Some(app) = (unsafe { box_ref(app) }) else {
            return ancm_result::NullParameter;
        };
        let s = app.status();
        let status = ancm_app_status {
            process_count: s.processes.len(),
            offline: s.offline,
            shutting_down: s.shutting_down,
        };
        unsafe { write_out(status_out, status) };
        ancm_result::Ok
    })
}

/// Copies up to `capacity` entries describing the app's running processes into `processes`
/// (which may be NULL when `capacity` is 0) and writes how many are running to `*count_out`
/// (which may exceed `capacity`). Callable from any thread; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_app_processes(
    app: *const ancm_app,
    processes: *mut ancm_process_info,
    capacity: usize,
    count_out: *mut usize,
) -> ancm_result {
    guard(|| {
        check_null!(count_out);
        if capacity > 0 {
            check_null!(processes);
        }
        let Some(app) = (unsafe { box_ref(app) }) else {
            return ancm_result::NullParameter;
        };
        let running = app.status().processes;
        for (i, (pid, port)) in running.iter().take(capacity).enumerate() {
            unsafe {
                write_out(
                    processes.add(i),
                    ancm_process_info {
                        pid: *pid,
                        port: *port,
                    },
                )
            };
        }
        unsafe { write_out(count_out, running.len()) };
        ancm_result::Ok
    })
}

/// Stops the app: from now on its requests get 503, and its processes are stopped gracefully
/// (shutdown event, then a signal, then killed after shutdownTimeLimit). Blocks until they have
/// exited. Requests in flight continue until their backend goes away.
///
/// Must be called from a host thread, never from a callback or another core thread
/// (`ANCM_RESULT_WRONG_THREAD`). Request callbacks of this app's requests may run on core
/// threads meanwhile. The app still has to be freed with `ancm_app_free`.
#[no_mangle]
pub unsafe extern "C" fn ancm_app_stop(app: *const ancm_app) -> ancm_result {
    guard(|| {
        let Some(app) = (unsafe { box_ref(app) }) else {
            return ancm_result::NullParameter;
        };
        if on_core_thread() {
            return ancm_result::WrongThread;
        }
        let rt = try_ffi!(runtime());
        rt.block_on(app.shutdown());
        ancm_result::Ok
    })
}

/// Frees the app handle. NULL is allowed. Requests already started keep the app alive until
/// they complete; when the last one has, processes still running are killed (call
/// `ancm_app_stop` first for a graceful stop). Callable from any thread, also from a callback;
/// the handle must not be in use on another thread.
#[no_mangle]
pub unsafe extern "C" fn ancm_app_free(app: *mut ancm_app) {
    guard_void(|| drop(unsafe { free_box(app) }));
}

/// The app behind a handle, for the request module.
///
/// # Safety
/// A non-NULL `app` must be a live `ancm_app`.
pub(crate) unsafe fn app_ref<'a>(app: *const ancm_app) -> Option<&'a App> {
    unsafe { box_ref(app) }
}
