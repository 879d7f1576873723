//! The Windows user token of a request (IIS Windows authentication), handed to the backend
//! process that serves the request, as ANCM does for `forwardWindowsAuthToken`.
//!
//! The host lends the engine its token handle for the duration of `ancm_request_start`; the
//! engine keeps its own duplicate ([`UserToken`]) for as long as the request may still be sent
//! (a retry may pick another process), and duplicates it into the chosen backend's process just
//! before sending ([`RemoteToken`]). The handle value goes to the backend in hex
//! (`MS-ASPNETCORE-WINAUTHTOKEN`); from then on the backend owns that handle and closes it
//! (ASP.NET Core's IIS integration does). A duplicate whose request certainly never reached the
//! backend is closed in the backend's process again ([`RemoteToken::reclaim`]), so retries and
//! failed connects leak nothing.
//!
//! Only Windows has such tokens: elsewhere [`UserToken`] cannot be constructed, and the C ABI
//! refuses a token with `ANCM_RESULT_UNSUPPORTED`.

use std::sync::Arc;

use super::child::Child;

/// Whether ANCM forwards the token of a user authenticated by `auth_type` (IIS's
/// `IHttpUser::GetAuthenticationType`): only Negotiate (Kerberos or NTLM) and NTLM logons,
/// compared without regard to case. Basic authentication also yields a token, but ANCM does
/// not forward it, and neither does this engine.
pub fn forwards_token_of(auth_type: &str) -> bool {
    auth_type.eq_ignore_ascii_case("negotiate") || auth_type.eq_ignore_ascii_case("ntlm")
}

/// The engine's own reference to a request's user token (a handle in this process).
#[derive(Debug)]
pub struct UserToken {
    #[cfg(windows)]
    handle: std::os::windows::io::OwnedHandle,
    #[cfg(not(windows))]
    never: std::convert::Infallible,
}

/// A duplicate of the token in a backend's process, not yet known to be in the backend's hands.
#[derive(Debug)]
pub struct RemoteToken {
    /// The handle value in the backend's process.
    value: usize,
    /// The process it lives in (kept so that a reclaim targets the same process object, never
    /// a later process that reused the id).
    child: Arc<Child>,
}

#[cfg(windows)]
mod imp {
    use super::*;
    use std::io;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
    use windows_sys::Win32::Foundation::{
        DuplicateHandle, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, HANDLE,
    };
    use windows_sys::Win32::System::Threading::GetCurrentProcess;

    impl UserToken {
        /// Takes the engine's own duplicate of the host's token handle (same access); the host
        /// keeps its handle and may close it once this returns.
        ///
        /// # Safety
        /// `raw` is a handle open in this process for the duration of the call (any object
        /// type passes DuplicateHandle; the backend is the one that uses it as a token).
        pub unsafe fn duplicate_from_host(raw: *mut std::ffi::c_void) -> io::Result<UserToken> {
            let mut own: HANDLE = std::ptr::null_mut();
            // SAFETY: the current-process pseudo handle and a handle the caller vouches for;
            // `own` receives a new handle that this function then owns.
            let ok = unsafe {
                DuplicateHandle(
                    GetCurrentProcess(),
                    raw as HANDLE,
                    GetCurrentProcess(),
                    &mut own,
                    0,
                    0,
                    DUPLICATE_SAME_ACCESS,
                )
            };
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: DuplicateHandle returned a fresh handle owned by nobody else.
            Ok(UserToken {
                handle: unsafe { OwnedHandle::from_raw_handle(own as _) },
            })
        }

        /// Duplicates the token into `child`'s process; the value is what the backend reads.
        pub fn send_to(&self, child: &Arc<Child>) -> io::Result<RemoteToken> {
            let process = child
                .process_handle()
                .ok_or_else(|| io::Error::other(format!("no handle to process {}", child.pid())))?;
            let mut remote: HANDLE = std::ptr::null_mut();
            // SAFETY: our token handle and a process handle with PROCESS_DUP_HANDLE access
            // (the one CreateProcess returned, duplicated), both open during the call.
            let ok = unsafe {
                DuplicateHandle(
                    GetCurrentProcess(),
                    self.handle.as_raw_handle() as HANDLE,
                    process as HANDLE,
                    &mut remote,
                    0,
                    0,
                    DUPLICATE_SAME_ACCESS,
                )
            };
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(RemoteToken {
                value: remote as usize,
                child: child.clone(),
            })
        }
    }

    impl RemoteToken {
        /// Closes the duplicate inside the backend's process: for a request that never reached
        /// it. A process that has exited took its handles with it; nothing to do then.
        pub fn reclaim(self) {
            let Some(process) = self.child.process_handle() else {
                return;
            };
            // Moved home, then closed: DUPLICATE_CLOSE_SOURCE closes it in the backend. (The
            // shorter idiom with no target process works on Windows but not under Wine 8,
            // which fails it with ERROR_INVALID_HANDLE and leaves the handle open.)
            let mut home: HANDLE = std::ptr::null_mut();
            // SAFETY: `value` was created in `process` (opened with PROCESS_DUP_HANDLE) by us and
            // never announced to the backend, so no code there uses or closes it; the copy we
            // receive is ours to close.
            let ok = unsafe {
                DuplicateHandle(
                    process as HANDLE,
                    self.value as HANDLE,
                    GetCurrentProcess(),
                    &mut home,
                    0,
                    0,
                    DUPLICATE_CLOSE_SOURCE | DUPLICATE_SAME_ACCESS,
                )
            };
            if ok != 0 {
                // SAFETY: a fresh handle in this process, closed once.
                drop(unsafe { OwnedHandle::from_raw_handle(home as _) });
            } else if !self.child.has_exited() {
                log::warn!(
                    "could not close an unsent Windows token handle in process {}: {}",
                    self.child.pid(),
                    io::Error::last_os_error()
                );
            }
        }
    }
}

#[cfg(not(windows))]
impl UserToken {
    /// Never called: no value of this type exists outside Windows.
    pub fn send_to(&self, _child: &Arc<Child>) -> std::io::Result<RemoteToken> {
        match self.never {}
    }
}

#[cfg(not(windows))]
impl RemoteToken {
    /// Never called (see [`UserToken::send_to`]).
    pub fn reclaim(self) {
        let _ = (self.value, &self.child);
    }
}

impl RemoteToken {
    /// The handle value as `MS-ASPNETCORE-WINAUTHTOKEN` carries it: lower-case hex, no prefix
    /// (ANCM formats it with `_ui64toa(…, 16)`; ASP.NET Core parses it as base-16).
    pub fn hex(&self) -> String {
        format!("{:x}", self.value)
    }
}

/// Windows only, run under Wine by `cargo xtask iis-emu` (the engine's Windows unit tests):
/// the duplicate lands in the backend's process and a reclaim closes it there.
#[cfg(all(test, windows))]
mod windows_tests {
    use super::*;
    use crate::process::launch::LaunchSpec;
    use crate::process::OutputSink;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
    use windows_sys::Win32::Foundation::{DuplicateHandle, DUPLICATE_SAME_ACCESS, HANDLE, LUID};
    use windows_sys::Win32::Security::{
        GetTokenInformation, TokenStatistics, TOKEN_DUPLICATE, TOKEN_QUERY, TOKEN_STATISTICS,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    /// The token's id (the same for every handle to one token object), if `h` is a token.
    fn token_id(h: HANDLE) -> Option<(u32, i32)> {
        // SAFETY: a zeroed, properly sized TOKEN_STATISTICS; a non-token handle just fails.
        unsafe {
            let mut stats: TOKEN_STATISTICS = std::mem::zeroed();
            let mut len = 0u32;
            let ok = GetTokenInformation(
                h,
                TokenStatistics,
                &mut stats as *mut _ as *mut _,
                std::mem::size_of::<TOKEN_STATISTICS>() as u32,
                &mut len,
            );
            let LUID { LowPart, HighPart } = stats.TokenId;
            (ok != 0).then_some((LowPart, HighPart))
        }
    }

    /// The token id of what `value` is in `process`: None when it is not open there or is not
    /// a token (the child may reuse a freed value for its own objects).
    fn token_in(process: std::os::windows::io::RawHandle, value: usize) -> Option<(u32, i32)> {
        let mut back: HANDLE = std::ptr::null_mut();
        // SAFETY: plain Win32 call; a copy received is closed right away.
        let ok = unsafe {
            DuplicateHandle(
                process as HANDLE,
                value as HANDLE,
                GetCurrentProcess(),
                &mut back,
                0,
                0,
                DUPLICATE_SAME_ACCESS,
            )
        };
        if ok == 0 {
            return None;
        }
        let back = unsafe { OwnedHandle::from_raw_handle(back as _) };
        token_id(back.as_raw_handle() as HANDLE)
    }

    #[tokio::test]
    async fn a_duplicate_lands_in_the_child_and_a_reclaim_closes_it_there() {
        let child = Child::start(
            LaunchSpec::cmd("/c ping -n 30 127.0.0.1 >nul"),
            &tokio::runtime::Handle::current(),
            OutputSink::HostLog,
            |_, _| {},
        )
        .await
        .expect("start");
        let mut raw: HANDLE = std::ptr::null_mut();
        // SAFETY: our own process token, opened for the test.
        assert_ne!(
            unsafe {
                OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY | TOKEN_DUPLICATE, &mut raw)
            },
            0
        );
        let host = unsafe { OwnedHandle::from_raw_handle(raw as _) };
        let ours = token_id(raw).expect("our token's id");
        let token =
            unsafe { UserToken::duplicate_from_host(host.as_raw_handle() as _) }.expect("own");
        drop(host); // the host closes its handle: the engine's duplicate lives on
        let process = child.process_handle().expect("process handle");
        let sent = token.send_to(&child).expect("duplicate into the child");
        let value = sent.value;
        assert_eq!(
            token_in(process, value),
            Some(ours),
            "our token, in the child"
        );
        assert_eq!(sent.hex(), format!("{value:x}"));
        let again = token.send_to(&child).expect("a second duplicate (a retry)");
        assert_ne!(again.value, value);
        sent.reclaim();
        // (the child may reuse the freed value for its own objects: none is our token)
        assert_ne!(
            token_in(process, value),
            Some(ours),
            "reclaimed: closed in the child"
        );
        assert_eq!(
            token_in(process, again.value),
            Some(ours),
            "the other one is untouched"
        );
        again.reclaim();
        child.kill();
        child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_negotiate_and_ntlm_logons_forward_their_token() {
        for t in ["Negotiate", "negotiate", "NTLM", "Ntlm"] {
            assert!(forwards_token_of(t), "{t}");
        }
        for t in ["", "Basic", "Kerberos", "anonymous", "negotiate "] {
            assert!(!forwards_token_of(t), "{t:?}");
        }
    }
}
