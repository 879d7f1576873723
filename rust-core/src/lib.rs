//! ancm-rs engine: starts an application's process and forwards IIS requests to it over loopback
//! HTTP, as the ASP.NET Core Module (out-of-process) and HttpPlatformHandler do, without their
//! memory-safety hazards.

pub mod config;
