//! A process's resident memory, for the recycleAboveMemoryMB limit.

/// Resident set size of process `pid` in bytes; `None` where the platform is not supported
/// (only Linux so far: Windows needs GetProcessMemoryInfo) or the process is gone.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * u64::try_from(page).ok()?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn own_rss_is_measurable() {
        let rss = super::resident_bytes(std::process::id()).unwrap();
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
