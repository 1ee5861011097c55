//! [`Secret`]: a credential that cannot be printed by accident (a token, a private key, a
//! JWT, an API key), the one type every crate holds one in.
//!
//! Invariant: `Debug` and `Display` print `***`; the value is only reachable through
//! [`Secret::expose`], which callers use for exactly one purpose (an `Authorization`
//! header, a git credential, a child's environment) and never for logging. Text that may
//! hold a credential of unknown origin goes through [`crate::redact`] instead.

use std::fmt;
use std::str::FromStr;

/// A token, private key or JWT.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Never log it or put it into an error.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replace every occurrence of this secret in `text` with `***` (no-op for values too
    /// short to be a real credential, so `***` never replaces ordinary words).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 6 {
            return text.to_owned();
        }
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Parsing never fails: a command line or an environment variable holds the value as is.
impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("ghp_supersecretvalue");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.scrub("x ghp_supersecretvalue y"), "x *** y");
        assert_eq!(s.expose(), "ghp_supersecretvalue");
    }

    #[test]
    fn parses_as_is() {
        let s: Secret = " ksk_value ".parse().unwrap();
        assert_eq!(s.expose(), " ksk_value ");
        assert!(!format!("{s:?}").contains("ksk_value"));
    }
}
