//! Configuration from C: a web.config path, or settings key by key (UTF-8 or UTF-16), and the
//! error handle that carries a configuration error's one-line message.

use std::ffi::{c_char, CString};
use std::path::PathBuf;

use super::handle::{
    box_mut, box_ref, check_null, free_box, to_box, try_ffi, units, utf8, write_out, BoxHandle,
};
use super::panic::{ffi_boundary, guard, guard_void};
use super::result::ancm_result;
use crate::config::{Config, ConfigBuilder, ConfigError, ConfigErrorKind, Dialect};

/// A validated application configuration. Created by `ancm_config_from_file(_utf16)` or
/// `ancm_config_builder_build`; freed with `ancm_config_free`. Immutable, so it may be read from
/// several threads at once.
pub struct ancm_config {
    _private: [u8; 0],
}

impl BoxHandle for ancm_config {
    type Rust = Config;
}

/// Settings being gathered key by key. Created by `ancm_config_builder_new`; consumed by
/// `ancm_config_builder_build` or freed with `ancm_config_builder_free`. Not thread-safe: use it
/// from one thread at a time.
pub struct ancm_config_builder {
    _private: [u8; 0],
}

impl BoxHandle for ancm_config_builder {
    type Rust = ConfigBuilder;
}

/// A configuration error: its kind and its one-line message (which names the file, attribute,
/// value and broken rule). Created by the calls that take an `ancm_error **error` parameter;
/// freed with `ancm_error_free`.
pub struct ancm_error {
    _private: [u8; 0],
}

/// What an `ancm_error` holds.
pub struct ErrorInfo {
    kind: ancm_config_error_kind,
    message: CString,
}

impl BoxHandle for ancm_error {
    type Rust = ErrorInfo;
}

/// Which configuration section the settings are for.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ancm_dialect {
    /// `system.webServer/aspNetCore` (ASP.NET Core Module).
    AspNetCore = 0,
    /// `system.webServer/httpPlatform` (HttpPlatformHandler).
    HttpPlatform = 1,
}

/// What kind of rule a configuration error broke.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ancm_config_error_kind {
    /// Neither section was found.
    MissingSection = 1,
    /// The section appears more than once.
    DuplicateSection = 2,
    /// The file is not well-formed XML.
    MalformedXml = 3,
    /// Bytes or UTF-16 input that is not valid Unicode.
    InvalidEncoding = 4,
    /// An attribute the schema does not define.
    UnknownAttribute = 5,
    /// A child element the schema does not define.
    UnknownElement = 6,
    /// A required attribute is missing or empty.
    Required = 7,
    /// A number or time span outside its range.
    OutOfRange = 8,
    /// A value that does not parse.
    InvalidValue = 9,
    /// A duplicate collection entry.
    DuplicateEntry = 10,
    /// The file could not be read.
    Io = 11,
    /// A kind this version does not name.
    Other = 99,
}

fn error_info(e: &ConfigError) -> ErrorInfo {
    use ancm_config_error_kind as K;
    let kind = match e.kind {
        ConfigErrorKind::MissingSection => K::MissingSection,
        ConfigErrorKind::DuplicateSection => K::DuplicateSection,
        ConfigErrorKind::MalformedXml => K::MalformedXml,
        ConfigErrorKind::InvalidEncoding => K::InvalidEncoding,
        ConfigErrorKind::UnknownAttribute => K::UnknownAttribute,
        ConfigErrorKind::UnknownElement => K::UnknownElement,
        ConfigErrorKind::Required => K::Required,
        ConfigErrorKind::OutOfRange => K::OutOfRange,
        ConfigErrorKind::InvalidValue => K::InvalidValue,
        ConfigErrorKind::DuplicateEntry => K::DuplicateEntry,
        ConfigErrorKind::Io => K::Io,
        #[allow(unreachable_patterns)]
        _ => K::Other,
    };
    // The message is one line; a NUL cannot survive into a C string, so it is shown escaped.
    let text = e.to_string().replace('\0', "\\u{0}");
    ErrorInfo {
        kind,
        message: CString::new(text).unwrap_or_default(),
    }
}

/// Turns a configuration result into a code, handing a failure's error to `error` when asked.
///
/// # Safety
/// `error` is NULL or valid for a write.
unsafe fn report<T>(
    r: Result<T, ConfigError>,
    error: *mut *mut ancm_error,
) -> Result<T, ancm_result> {
    r.map_err(|e| {
        if !error.is_null() {
            unsafe { write_out(error, to_box::<ancm_error>(error_info(&e))) };
        }
        ancm_result::ConfigInvalid
    })
}

/// Reads and validates the aspNetCore (or httpPlatform) section of the web.config file at
/// `path` (`path_len` bytes of UTF-8; relative paths are relative to the current directory).
///
/// On success writes a new configuration to `*config_out`; the caller frees it with
/// `ancm_config_free`. On `ANCM_RESULT_CONFIG_INVALID`, and only then, writes a new error to
/// `*error_out` when `error_out` is not NULL; the caller frees it with `ancm_error_free`.
/// Callable from any thread; no callback runs during it (apart from the log callback).
#[no_mangle]
pub unsafe extern "C" fn ancm_config_from_file(
    path: *const u8,
    path_len: usize,
    config_out: *mut *mut ancm_config,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    guard(|| {
        check_null!(config_out);
        let path = try_ffi!(unsafe { utf8(path, path_len) });
        let config = try_ffi!(unsafe {
            report(
                Config::from_web_config_file(&PathBuf::from(path)),
                error_out,
            )
        });
        unsafe { write_out(config_out, to_box::<ancm_config>(config)) };
        ancm_result::Ok
    })
}

/// `ancm_config_from_file` with the path as `path_len` UTF-16 code units (no terminating NUL
/// needed), as IIS hands paths. Same ownership, threads and results, plus
/// `ANCM_RESULT_INVALID_UTF16`.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_from_file_utf16(
    path: *const u16,
    path_len: usize,
    config_out: *mut *mut ancm_config,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    guard(|| {
        check_null!(config_out);
        let units = try_ffi!(unsafe { units(path, path_len) });
        let path = try_ffi!(String::from_utf16(units).map_err(|_| ancm_result::InvalidUtf16));
        let config = try_ffi!(unsafe {
            report(
                Config::from_web_config_file(&PathBuf::from(path)),
                error_out,
            )
        });
        unsafe { write_out(config_out, to_box::<ancm_config>(config)) };
        ancm_result::Ok
    })
}

/// Frees a configuration. NULL is allowed (nothing happens). Apps created from it keep their
/// own copy, so it may be freed right after `ancm_app_new`. Callable from any thread, but not
/// while another thread uses the same configuration.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_free(config: *mut ancm_config) {
    guard_void(|| drop(unsafe { free_box(config) }));
}

/// The error's one-line message (UTF-8, NUL-terminated), e.g.
/// `web.config: aspNetCore/@startupTimeLimit = "9999": must be 0–3600 seconds`.
///
/// The string is owned by `error` and valid until `ancm_error_free(error)`; never NULL (an
/// empty string for a NULL `error`). Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn ancm_error_message(error: *const ancm_error) -> *const c_char {
    ffi_boundary(
        || match unsafe { box_ref(error) } {
            Some(e) => e.message.as_ptr(),
            None => c"".as_ptr(),
        },
        || c"".as_ptr(),
    )
}

/// The kind of rule the error broke (an `ancm_config_error_kind`); `ANCM_CONFIG_ERROR_KIND_OTHER`
/// for a NULL `error`. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn ancm_error_kind(error: *const ancm_error) -> ancm_config_error_kind {
    ffi_boundary(
        || unsafe { box_ref(error) }.map_or(ancm_config_error_kind::Other, |e| e.kind),
        || ancm_config_error_kind::Other,
    )
}

/// Frees an error. NULL is allowed. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn ancm_error_free(error: *mut ancm_error) {
    guard_void(|| drop(unsafe { free_box(error) }));
}

/// Starts gathering settings key by key. `source` (`source_len` bytes of UTF-8) names the input
/// in error messages (e.g. the config path IIS reads them from); `dialect` is an `ancm_dialect`.
///
/// On success writes a new builder to `*builder_out`; the caller consumes it with
/// `ancm_config_builder_build` or frees it with `ancm_config_builder_free`. Callable from any
/// thread; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_new(
    source: *const u8,
    source_len: usize,
    dialect: u32,
    builder_out: *mut *mut ancm_config_builder,
) -> ancm_result {
    guard(|| {
        check_null!(builder_out);
        let source = try_ffi!(unsafe { utf8(source, source_len) });
        let dialect = match dialect {
            0 => Dialect::AspNetCore,
            1 => Dialect::HttpPlatform,
            _ => return ancm_result::InvalidArgument,
        };
        unsafe {
            write_out(
                builder_out,
                to_box::<ancm_config_builder>(ConfigBuilder::new(source, dialect)),
            )
        };
        ancm_result::Ok
    })
}

/// Runs one builder operation: checks the handle, reports a configuration error.
unsafe fn with_builder(
    builder: *mut ancm_config_builder,
    error_out: *mut *mut ancm_error,
    op: impl FnOnce(&mut ConfigBuilder) -> Result<Result<(), ConfigError>, ancm_result>,
) -> ancm_result {
    guard(|| {
        let Some(b) = (unsafe { box_mut(builder) }) else {
            return ancm_result::NullParameter;
        };
        let r = try_ffi!(op(b));
        try_ffi!(unsafe { report(r, error_out) });
        ancm_result::Ok
    })
}

// Written out rather than generated by a macro: cbindgen only sees functions spelled out.
/// Sets an attribute of the section by its exact, case-sensitive schema name (e.g.
/// `processPath`, `startupTimeLimit`). An unknown name fails here; values are validated by
/// `ancm_config_builder_build`.
///
/// `key`/`value` are `*_len` bytes of UTF-8, copied. On `ANCM_RESULT_CONFIG_INVALID` (only
/// then) a new error is written to `*error_out` when it is not NULL; free it with
/// `ancm_error_free`. The builder stays usable after an error. Use the builder from one thread
/// at a time; no callback runs during the call.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_set(
    builder: *mut ancm_config_builder,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            let key = utf8(key, key_len)?;
            let value = utf8(value, value_len)?;
            Ok(b.set(key, value))
        })
    }
}

/// `ancm_config_builder_set` for UTF-16 input as IIS returns it: `key`/`value` are `*_len`
/// UTF-16 code units (no NUL needed), copied; invalid UTF-16 is a configuration error
/// (`ANCM_CONFIG_ERROR_KIND_INVALID_ENCODING`). Otherwise the same contract.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_set_utf16(
    builder: *mut ancm_config_builder,
    key: *const u16,
    key_len: usize,
    value: *const u16,
    value_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            let key = units(key, key_len)?;
            let value = units(value, value_len)?;
            Ok(b.set_utf16(key, value))
        })
    }
}

/// Adds an `environmentVariables` entry (`<add name value>`); a duplicate name (compared
/// case-insensitively) is a configuration error.
///
/// `key`/`value` are `*_len` bytes of UTF-8, copied. On `ANCM_RESULT_CONFIG_INVALID` (only
/// then) a new error is written to `*error_out` when it is not NULL; free it with
/// `ancm_error_free`. The builder stays usable after an error. Use the builder from one thread
/// at a time; no callback runs during the call.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_add_environment_variable(
    builder: *mut ancm_config_builder,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            let key = utf8(key, key_len)?;
            let value = utf8(value, value_len)?;
            Ok(b.add_environment_variable(key, value))
        })
    }
}

/// `ancm_config_builder_add_environment_variable` for UTF-16 input as IIS returns it: `key`/`value` are `*_len`
/// UTF-16 code units (no NUL needed), copied; invalid UTF-16 is a configuration error
/// (`ANCM_CONFIG_ERROR_KIND_INVALID_ENCODING`). Otherwise the same contract.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_add_environment_variable_utf16(
    builder: *mut ancm_config_builder,
    key: *const u16,
    key_len: usize,
    value: *const u16,
    value_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            let key = units(key, key_len)?;
            let value = units(value, value_len)?;
            Ok(b.add_environment_variable_utf16(key, value))
        })
    }
}

/// Adds a `handlerSettings` entry (`<add name value>`).
///
/// `key`/`value` are `*_len` bytes of UTF-8, copied. On `ANCM_RESULT_CONFIG_INVALID` (only
/// then) a new error is written to `*error_out` when it is not NULL; free it with
/// `ancm_error_free`. The builder stays usable after an error. Use the builder from one thread
/// at a time; no callback runs during the call.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_add_handler_setting(
    builder: *mut ancm_config_builder,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            let key = utf8(key, key_len)?;
            let value = utf8(value, value_len)?;
            Ok(b.add_handler_setting(key, value))
        })
    }
}

/// `ancm_config_builder_add_handler_setting` for UTF-16 input as IIS returns it: `key`/`value` are `*_len`
/// UTF-16 code units (no NUL needed), copied; invalid UTF-16 is a configuration error
/// (`ANCM_CONFIG_ERROR_KIND_INVALID_ENCODING`). Otherwise the same contract.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_add_handler_setting_utf16(
    builder: *mut ancm_config_builder,
    key: *const u16,
    key_len: usize,
    value: *const u16,
    value_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            let key = units(key, key_len)?;
            let value = units(value, value_len)?;
            Ok(b.add_handler_setting_utf16(key, value))
        })
    }
}

/// Adds a `recycleOnFileChange` entry (`<file path>`): a file, relative to the site root, whose
/// change starts a new generation of the app when shadow copies are off. An empty path is
/// ignored; the httpPlatform dialect has no such collection (a configuration error).
///
/// `path` is `path_len` bytes of UTF-8, copied. On `ANCM_RESULT_CONFIG_INVALID` (only then) a
/// new error is written to `*error_out` when it is not NULL; free it with `ancm_error_free`.
/// The builder stays usable after an error. Use the builder from one thread at a time; no
/// callback runs during the call.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_add_recycle_on_file_change(
    builder: *mut ancm_config_builder,
    path: *const u8,
    path_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            let path = utf8(path, path_len)?;
            Ok(b.add_recycle_on_file_change(path))
        })
    }
}

/// `ancm_config_builder_add_recycle_on_file_change` for UTF-16 input as IIS returns it: `path`
/// is `path_len` UTF-16 code units (no NUL needed), copied; invalid UTF-16 is a configuration
/// error (`ANCM_CONFIG_ERROR_KIND_INVALID_ENCODING`). Otherwise the same contract.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_add_recycle_on_file_change_utf16(
    builder: *mut ancm_config_builder,
    path: *const u16,
    path_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            let path = units(path, path_len)?;
            Ok(b.add_recycle_on_file_change_utf16(path))
        })
    }
}

/// Removes an `environmentVariables` entry (`<remove name>`).
///
/// `name` is `name_len` bytes of UTF-8. On `ANCM_RESULT_CONFIG_INVALID` (only then) a new error
/// is written to `*error_out` when it is not NULL; free it with `ancm_error_free`. Use the
/// builder from one thread at a time; no callback runs during the call.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_remove_environment_variable(
    builder: *mut ancm_config_builder,
    name: *const u8,
    name_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            Ok(b.remove_environment_variable(utf8(name, name_len)?))
        })
    }
}

/// `ancm_config_builder_remove_environment_variable` with `name` as `name_len` UTF-16 code units. Otherwise the same
/// contract.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_remove_environment_variable_utf16(
    builder: *mut ancm_config_builder,
    name: *const u16,
    name_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            Ok(b.remove_environment_variable_utf16(units(name, name_len)?))
        })
    }
}

/// Removes a `handlerSettings` entry (`<remove name>`).
///
/// `name` is `name_len` bytes of UTF-8. On `ANCM_RESULT_CONFIG_INVALID` (only then) a new error
/// is written to `*error_out` when it is not NULL; free it with `ancm_error_free`. Use the
/// builder from one thread at a time; no callback runs during the call.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_remove_handler_setting(
    builder: *mut ancm_config_builder,
    name: *const u8,
    name_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            Ok(b.remove_handler_setting(utf8(name, name_len)?))
        })
    }
}

/// `ancm_config_builder_remove_handler_setting` with `name` as `name_len` UTF-16 code units. Otherwise the same
/// contract.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_remove_handler_setting_utf16(
    builder: *mut ancm_config_builder,
    name: *const u16,
    name_len: usize,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    unsafe {
        with_builder(builder, error_out, |b| {
            Ok(b.remove_handler_setting_utf16(units(name, name_len)?))
        })
    }
}

/// Drops every `environmentVariables` entry added so far (`<clear/>`). Use the builder from one
/// thread at a time; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_clear_environment_variables(
    builder: *mut ancm_config_builder,
) -> ancm_result {
    unsafe {
        with_builder(builder, std::ptr::null_mut(), |b| {
            Ok(b.clear_environment_variables())
        })
    }
}

/// Drops every `handlerSettings` entry added so far (`<clear/>`). Use the builder from one
/// thread at a time; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_clear_handler_settings(
    builder: *mut ancm_config_builder,
) -> ancm_result {
    unsafe {
        with_builder(builder, std::ptr::null_mut(), |b| {
            Ok(b.clear_handler_settings())
        })
    }
}

/// Validates the gathered settings (expanding `%VAR%` against this process's environment).
///
/// Always consumes `builder` (it must not be used or freed afterwards), whatever the result,
/// except for `ANCM_RESULT_NULL_PARAMETER` when `builder` itself is NULL. On success writes a
/// new configuration to `*config_out` (free with `ancm_config_free`); on
/// `ANCM_RESULT_CONFIG_INVALID` (only then) writes a new error to `*error_out` when it is not
/// NULL (free with `ancm_error_free`). Callable from any thread; no callback runs during it.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_build(
    builder: *mut ancm_config_builder,
    config_out: *mut *mut ancm_config,
    error_out: *mut *mut ancm_error,
) -> ancm_result {
    guard(|| {
        let Some(b) = (unsafe { free_box(builder) }) else {
            return ancm_result::NullParameter;
        };
        check_null!(config_out);
        let config = try_ffi!(unsafe { report(b.build(), error_out) });
        unsafe { write_out(config_out, to_box::<ancm_config>(config)) };
        ancm_result::Ok
    })
}

/// Frees a builder without building it. NULL is allowed. Callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn ancm_config_builder_free(builder: *mut ancm_config_builder) {
    guard_void(|| drop(unsafe { free_box(builder) }));
}

/// The configuration behind a handle, for the other ffi modules.
///
/// # Safety
/// A non-NULL `config` must be a live `ancm_config`.
pub(crate) unsafe fn config_ref<'a>(config: *const ancm_config) -> Option<&'a Config> {
    unsafe { box_ref(config) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::ptr::{null, null_mut};

    #[test]
    fn builder_reports_errors_with_messages() {
        unsafe {
            let mut b = null_mut();
            assert_eq!(
                ancm_config_builder_new(b"settings".as_ptr(), 8, 0, &mut b),
                ancm_result::Ok
            );
            let mut err = null_mut();
            let r = ancm_config_builder_set(b, b"bogus".as_ptr(), 5, b"1".as_ptr(), 1, &mut err);
            assert_eq!(r, ancm_result::ConfigInvalid);
            let msg = CStr::from_ptr(ancm_error_message(err)).to_str().unwrap();
            assert!(msg.starts_with("settings: aspNetCore/@bogus"), "{msg}");
            assert_eq!(
                ancm_error_kind(err),
                ancm_config_error_kind::UnknownAttribute
            );
            ancm_error_free(err);
            let key: Vec<u16> = "processPath".encode_utf16().collect();
            let val: Vec<u16> = "python3".encode_utf16().collect();
            let r = ancm_config_builder_set_utf16(
                b,
                key.as_ptr(),
                key.len(),
                val.as_ptr(),
                val.len(),
                null_mut(),
            );
            assert_eq!(r, ancm_result::Ok);
            let mut c = null_mut();
            assert_eq!(
                ancm_config_builder_build(b, &mut c, null_mut()),
                ancm_result::Ok
            );
            assert_eq!(config_ref(c).unwrap().process_path, "python3");
            ancm_config_free(c);
            assert_eq!(
                ancm_config_builder_build(null_mut(), &mut c, null_mut()),
                ancm_result::NullParameter
            );
            assert_eq!(
                ancm_config_from_file(null(), 3, &mut c, null_mut()),
                ancm_result::NullParameter
            );
            let mut err = null_mut();
            assert_eq!(
                ancm_config_from_file(b"/nonexistent/web.config".as_ptr(), 23, &mut c, &mut err),
                ancm_result::ConfigInvalid
            );
            assert_eq!(ancm_error_kind(err), ancm_config_error_kind::Io);
            ancm_error_free(err);
        }
    }
}
