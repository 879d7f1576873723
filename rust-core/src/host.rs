//! What a host tells the engine about the application it serves, beyond the config section.

use std::path::PathBuf;

/// Facts about the application that come from the host, not from the aspNetCore section.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// The app's physical path: the child's working directory, where `app_offline.htm` is
    /// looked for, and the base of relative `processPath` and `stdoutLogFile`.
    pub site_root: PathBuf,
    /// The app's virtual path (`/` or `/sub`), given to the app as `ASPNETCORE_APPL_PATH`.
    pub app_path: String,
    /// `ASPNETCORE_IIS_HTTPAUTH`: the enabled authentication schemes, e.g. `anonymous;`.
    pub http_auth: String,
    /// The site's single https port, if it has one (`ASPNETCORE_ANCM_HTTPS_PORT`).
    pub https_port: Option<u16>,
    /// Whether the host can tunnel WebSocket upgrades (`ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED`).
    pub websockets_supported: bool,
}

impl HostInfo {
    /// Host facts for an app at `site_root` mounted at `/`, with anonymous authentication, as the
    /// standalone host serves it.
    pub fn new(site_root: impl Into<PathBuf>) -> HostInfo {
        HostInfo {
            site_root: site_root.into(),
            app_path: "/".to_owned(),
            http_auth: "anonymous;".to_owned(),
            https_port: None,
            websockets_supported: true,
        }
    }
}
