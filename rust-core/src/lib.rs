//! ancm-rs engine: a memory-safe replacement for the ASP.NET Core Module's out-of-process
//! hosting. An [`App`] is built from a validated [`config::Config`]; hosts (the IIS module, the
//! standalone `ancm-serve`, any C program through the C ABI) hand it requests, and it starts the
//! application's own process on the first one, keeps it alive and forwards requests to it over
//! loopback HTTP.

pub mod app;
pub mod config;
pub mod debug_log;
pub mod deploy;
pub mod event;
pub mod ffi;
pub mod forward;
pub mod h1;
pub mod host;
pub mod process;
pub mod report;
pub mod shutdown;
pub mod timer;
pub mod utc;
pub mod worker;

pub use app::{App, AppStatus};
pub use config::{Config, ConfigError};
pub use forward::pages::EngineStatus;
pub use forward::{ClientInfo, RequestBody, ResponseBody};
pub use host::HostInfo;
