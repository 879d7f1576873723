//! Splitting the `arguments` attribute into an argument vector.
//!
//! web.config files are written for Windows, where a process gets one command-line string and
//! the program splits it. On Unix we must split it ourselves, and we do it by the rules the
//! Microsoft C runtime applies, so that `arguments=".\app.dll \"a b\""` means the same thing on
//! both systems. On Windows the string is passed through untouched.

/// Splits a Windows-style command line into arguments (Microsoft C runtime rules: whitespace
/// separates, `"` toggles quoting, `""` inside quotes is a literal quote, backslashes are
/// literal unless they precede a quote, where 2n of them give n and 2n+1 give n plus a `"`).
pub fn split_windows(cmdline: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut quoted = false;
    let mut chars = cmdline.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' if !quoted => {
                if in_arg {
                    args.push(std::mem::take(&mut cur));
                    in_arg = false;
                }
            }
            '\\' => {
                in_arg = true;
                let mut n = 1;
                while chars.peek() == Some(&'\\') {
                    chars.next();
                    n += 1;
                }
                if chars.peek() == Some(&'"') {
                    cur.extend(std::iter::repeat_n('\\', n / 2));
                    if n % 2 == 1 {
                        chars.next();
                        cur.push('"');
                    }
                } else {
                    cur.extend(std::iter::repeat_n('\\', n));
                }
            }
            '"' => {
                in_arg = true;
                if quoted && chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = !quoted;
                }
            }
            other => {
                in_arg = true;
                cur.push(other);
            }
        }
    }
    if in_arg {
        args.push(cur);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::split_windows;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn plain_and_quoted() {
        assert_eq!(split_windows(""), Vec::<String>::new());
        assert_eq!(split_windows("   "), Vec::<String>::new());
        assert_eq!(split_windows("app.py  --x 1"), s(&["app.py", "--x", "1"]));
        assert_eq!(split_windows(r#""a b" c"#), s(&["a b", "c"]));
        assert_eq!(split_windows(r#""""#), s(&[""]));
        assert_eq!(split_windows(r#"a"b c"d"#), s(&["ab cd"]));
    }

    #[test]
    fn backslashes_follow_the_crt_rules() {
        assert_eq!(split_windows(r"C:\dir\app.exe"), s(&[r"C:\dir\app.exe"]));
        assert_eq!(split_windows(r#"a\"b"#), s(&[r#"a"b"#]));
        assert_eq!(split_windows(r#"a\\"b c""#), s(&[r"a\b c"]));
        assert_eq!(split_windows(r#"a\\\"b"#), s(&[r#"a\"b"#]));
        assert_eq!(split_windows(r#""a""b""#), s(&[r#"a"b"#]));
    }
}
