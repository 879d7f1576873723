//! ancm-serve's log lines: env_logger's text, or one JSON object a line (`--log-format json`)
//! for log shippers (Loki, Elasticsearch, CloudWatch): `time`, `level`, `target`, `message`, and
//! every key of the record (the engine's `event` id; the access log's fields) as its own member.

use std::io::Write;

use clap::ValueEnum;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// env_logger's human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// Installs the process's logger: env_logger at `RUST_LOG` (default `info`) in `format`, with
/// the engine's debug log (`debugLevel`/`debugFile`) beside it.
pub fn install(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = json_line(record, std::time::SystemTime::now());
            writeln!(buf, "{line}")
        });
    }
    let logger = builder.build();
    let level = logger.filter();
    if log::set_boxed_logger(Box::new(ancm_core::debug_log::Tee(logger))).is_ok() {
        log::set_max_level(level);
    }
}

/// One record as a JSON object (keys of the record after the fixed members; a key repeating a
/// fixed member's name is prefixed `kv_` so the line stays unambiguous).
pub fn json_line(record: &log::Record<'_>, now: std::time::SystemTime) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("time".into(), ancm_core::utc::rfc3339_millis(now).into());
    obj.insert("level".into(), record.level().as_str().into());
    obj.insert("target".into(), record.target().into());
    obj.insert("message".into(), record.args().to_string().into());
    struct Visit<'a>(&'a mut serde_json::Map<String, serde_json::Value>);
    impl<'kvs> log::kv::VisitSource<'kvs> for Visit<'_> {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            let v = if let Some(n) = value.to_u64() {
                serde_json::Value::from(n)
            } else if let Some(n) = value.to_i64() {
                serde_json::Value::from(n)
            } else if let Some(f) = value.to_f64() {
                serde_json::Value::from(f)
            } else if let Some(b) = value.to_bool() {
                serde_json::Value::from(b)
            } else {
                serde_json::Value::from(value.to_string())
            };
            let mut name = key.as_str().to_owned();
            if self.0.contains_key(&name) {
                name.insert_str(0, "kv_");
            }
            self.0.insert(name, v);
            Ok(())
        }
    }
    let _ = record.key_values().visit(&mut Visit(&mut obj));
    serde_json::Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_members_then_keys_and_escaping() {
        let kvs: [(&str, log::kv::Value); 3] = [
            ("event", 1001u32.into()),
            ("app", "MACHINE/WEBROOT/APPHOST/site".into()),
            ("level", "clash".into()),
        ];
        let record = log::Record::builder()
            .args(format_args!("process 7 \"started\"\n"))
            .level(log::Level::Warn)
            .target("ancm::app")
            .key_values(&kvs)
            .build();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        let line = json_line(&record, t);
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "1970-01-01T00:00:01.500Z");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "ancm::app");
        assert_eq!(v["message"], "process 7 \"started\"\n");
        assert_eq!(v["event"], 1001);
        assert_eq!(v["app"], "MACHINE/WEBROOT/APPHOST/site");
        assert_eq!(v["kv_level"], "clash");
    }
}
