//! The web.config reader on arbitrary bytes: no panic, no hang, an answer either way.
#![no_main]

use ancm_core::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Valid UTF-8 goes in as is (the common case, and it keeps the fuzzer's XML intact);
    // anything else as the lossy decoding a host that had to guess would produce.
    let text = match std::str::from_utf8(data) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(data),
    };
    // A fixed environment, so %VAR% expansion is exercised the same way on every machine and
    // never reads the fuzzer's own environment.
    let lookup = |name: &str| match name.to_ascii_uppercase().as_str() {
        "A" => Some("%B%".to_owned()),
        "B" => Some("%A%".to_owned()),
        "HOME" => Some("/home/fuzz".to_owned()),
        "LONG" => Some("x".repeat(4096)),
        _ => None,
    };
    if let Ok(config) = Config::from_web_config_str_with_env(&text, "web.config", &lookup) {
        // The accessors the hosts call on a valid config must not panic either.
        let _ = config.configured_port();
        let _ = config.warnings();
    }
});
