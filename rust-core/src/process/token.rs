//! The pairing token: the secret that proves to the backend that a request came through us.

use std::fmt;

/// A fresh 128-bit token from the OS random source, as 32 lowercase hex digits.
///
/// `Debug` and `Display` print `<redacted>` so the token cannot reach a log by accident; call
/// [`Token::expose`] where the value must really be used (the child's environment, the header).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Draws a new random token. Fails only if the OS random source fails.
    pub fn random() -> std::io::Result<Token> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut s = String::with_capacity(32);
        for b in bytes {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
        }
        Ok(Token(s))
    }

    /// A token chosen by the configuration (`ASPNETCORE_TOKEN` in environmentVariables).
    pub fn configured(value: &str) -> Token {
        Token(value.to_owned())
    }

    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_128_bit_hex_and_differ() {
        let a = Token::random().unwrap();
        let b = Token::random().unwrap();
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn token_never_prints() {
        let t = Token::configured("secret");
        assert_eq!(format!("{t} {t:?}"), "<redacted> <redacted>");
    }
}
