//! [`Secret`]: tokens and keys that never show up in logs.

use std::fmt;
use std::sync::Arc;

/// A secret string (an access token, a channel secret, an app secret) whose `Debug` and
/// `Display` print `[redacted]`.
///
/// Cloning is cheap. Comparing two secrets is constant-time in their contents, so code that
/// checks a presented token against a configured one leaks nothing through timing.
///
/// # Examples
///
/// ```
/// use bot_core::Secret;
///
/// let token = Secret::new("abc123");
/// assert_eq!(format!("{token:?}"), "Secret([redacted])");
/// assert_eq!(token.expose(), "abc123");
/// ```
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl AsRef<str>) -> Self {
        Self(Arc::from(secret.as_ref()))
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with `presented` in constant time (for equal lengths; the length is not secret).
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_compare_by_content() {
        let s = Secret::from("hunter2".to_owned());
        assert_eq!(s.to_string(), "[redacted]");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s, Secret::new("hunter2"));
        assert_ne!(s, Secret::new("hunter3"));
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter"));
        assert!(!s.is_empty());
    }
}
