//! [`Secret`]: a credential that cannot be printed by accident.
//!
//! Invariant: `Debug` and `Display` print `***`; the value is only reachable through
//! [`Secret::expose`], which callers use for exactly one purpose (an `Authorization`
//! header, a git credential) and never for logging.

use std::fmt;

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
}
