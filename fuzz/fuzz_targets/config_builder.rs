//! The key-by-key UTF-16 builder a native host feeds from IIS's configuration system: any
//! sequence of calls, with any UTF-16 (unpaired surrogates included), then `build`.
#![no_main]

use ancm_core::config::{attributes, ConfigBuilder, Dialect};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Name {
    /// One of the section's real attribute names (by index), so values reach the validators.
    Known(u8),
    Raw(Vec<u16>),
}

#[derive(Debug, Arbitrary)]
enum Op {
    Set(Name, Vec<u16>),
    AddEnv(Vec<u16>, Vec<u16>),
    RemoveEnv(Vec<u16>),
    ClearEnv,
    AddHandler(Vec<u16>, Vec<u16>),
    RemoveHandler(Vec<u16>),
    ClearHandlers,
}

#[derive(Debug, Arbitrary)]
struct Input {
    http_platform: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let dialect = if input.http_platform {
        Dialect::HttpPlatform
    } else {
        Dialect::AspNetCore
    };
    let specs = attributes(dialect);
    let mut b = ConfigBuilder::new("fuzz", dialect);
    for op in input.ops {
        // Errors are answers, not failures: a host reports them and goes on or stops.
        let _ = match op {
            Op::Set(Name::Known(i), v) => {
                let name: Vec<u16> = specs[usize::from(i) % specs.len()]
                    .name
                    .encode_utf16()
                    .collect();
                b.set_utf16(&name, &v)
            }
            Op::Set(Name::Raw(n), v) => b.set_utf16(&n, &v),
            Op::AddEnv(n, v) => b.add_environment_variable_utf16(&n, &v),
            Op::RemoveEnv(n) => b.remove_environment_variable_utf16(&n),
            Op::ClearEnv => b.clear_environment_variables(),
            Op::AddHandler(n, v) => b.add_handler_setting_utf16(&n, &v),
            Op::RemoveHandler(n) => b.remove_handler_setting_utf16(&n),
            Op::ClearHandlers => b.clear_handler_settings(),
        };
    }
    if let Ok(config) = b.build() {
        let _ = config.configured_port();
        let _ = config.warnings();
    }
});
