//! `%NAME%` expansion as Windows' `ExpandEnvironmentStrings` does it, so that a web.config means the
//! same thing here as under IIS.

/// Replaces each `%NAME%` in `s` whose `lookup(NAME)` is `Some` with that value.
///
/// Semantics follow Windows `ExpandEnvironmentStrings`, which is what IIS applies to attributes
/// marked `expanded="true"`:
/// - an unset `%NAME%` stays exactly as written, percent signs included, so a misconfiguration
///   remains visible in error messages instead of silently becoming empty;
/// - a single left-to-right pass: a substituted value is never scanned again, so a value holding
///   `%OTHER%` (or itself) cannot recurse or hang;
/// - a lone or unterminated `%` stays; `%%` is an empty name, never set, so it stays as `%%`;
/// - when `%NAME%` is unset, its closing `%` may open the next reference (`%A%B%` with only `B`
///   set gives `%A` + B's value), as on Windows.
///
/// Whether names compare case-insensitively is the `lookup`'s choice: on Windows the process
/// environment is case-insensitive and [`std::env::var`] already honours that, so
/// `ConfigBuilder::build` needs no special handling. Runs in time linear in `s` plus the output.
pub fn expand_env(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('%') {
        out.push_str(&rest[..open]);
        let after_open = &rest[open + 1..];
        let Some(close) = after_open.find('%') else {
            // Unterminated: the remainder, `%` included, is literal.
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after_open[..close];
        match (!name.is_empty()).then(|| lookup(name)).flatten() {
            Some(value) => {
                out.push_str(&value);
                rest = &after_open[close + 1..];
            }
            None => {
                // Keep `%NAME` and let the closing `%` start the next candidate, as Windows does.
                out.push('%');
                out.push_str(name);
                rest = &after_open[close..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn ancm_functional_test_example() {
        let e = env(&[("TestVariable", "World")]);
        assert_eq!(expand_env("%TestVariable%;Hello", &e), "World;Hello");
    }

    #[test]
    fn unknown_variable_kept_verbatim() {
        let e = env(&[]);
        assert_eq!(expand_env("a%NOPE%b", &e), "a%NOPE%b");
    }

    #[test]
    fn double_percent_and_lone_percent() {
        let e = env(&[("A", "1")]);
        assert_eq!(expand_env("%%", &e), "%%");
        assert_eq!(expand_env("100%", &e), "100%");
        assert_eq!(expand_env("%", &e), "%");
        assert_eq!(expand_env("x%%A%", &e), "x%1");
        assert_eq!(expand_env("", &e), "");
    }

    #[test]
    fn unterminated_reference_kept() {
        let e = env(&[("A", "1")]);
        assert_eq!(expand_env("%A%%A", &e), "1%A");
        assert_eq!(expand_env("pre %A", &e), "pre %A");
    }

    #[test]
    fn closing_percent_of_unset_name_can_open_next() {
        let e = env(&[("B", "2")]);
        assert_eq!(expand_env("%A%B%", &e), "%A2");
    }

    #[test]
    fn substituted_value_not_rescanned() {
        let e = env(&[("A", "%B%"), ("B", "no"), ("SELF", "%SELF%")]);
        assert_eq!(expand_env("%A%", &e), "%B%");
        assert_eq!(expand_env("%SELF%%SELF%", &e), "%SELF%%SELF%");
    }

    #[test]
    fn several_and_adjacent_references() {
        let e = env(&[("A", "1"), ("B", "2")]);
        assert_eq!(expand_env("%A%%B%-%a%", &e), "12-1");
    }

    #[test]
    fn non_ascii_text_survives() {
        let e = env(&[("Ä", "ü")]);
        assert_eq!(expand_env("é%Ä%€", &e), "éü€");
    }

    /// A megabyte of references and lone `%` signs expands correctly (its speed, which a
    /// rescan per `%` would make quadratic, belongs to benchmarks, not to a time limit here:
    /// this suite runs on shared machines and under Wine).
    #[test]
    fn one_megabyte_expands() {
        let e = env(&[("A", "xyz")]);
        let input = "%A%%B%%".repeat((1 << 20) / 7) + &"%".repeat(1 << 19);
        let out = expand_env(&input, &e);
        assert!(out.starts_with("xyz%B%"));
        assert_eq!(out.matches("xyz").count(), (1 << 20) / 7);
        let only_percent = "%".repeat(1 << 20);
        assert_eq!(expand_env(&only_percent, &e), only_percent);
    }
}
