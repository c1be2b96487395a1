//! Signed user tokens: what the site's backend gives a browser so that it may join as a user.
//!
//! A token is `v1.<payload>.<mac>`: the payload is the base64url (no padding) of
//! `{"sub":"<user id>","exp":<unix seconds>}`, the MAC is the base64url of
//! HMAC-SHA256(secret, `"webchat-token." + "v1." + payload`). The MAC is checked in constant
//! time before the payload is parsed; the domain prefix keeps the MAC from standing for any other
//! HMAC made with the same secret (the backend API compares the secret itself, never a MAC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bot_core::Secret;
use bot_core::signature::{hmac_sha256, verify_hmac_sha256};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The version prefix of the tokens this crate issues.
const VERSION: &str = "v1";
/// What the MAC covers before the token's own text: the domain of the key's use.
const DOMAIN: &[u8] = b"webchat-token.";
/// The longest user id a token may carry, in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;
/// The longest token accepted, in bytes (a user id of the maximum length fits well under it).
const MAX_TOKEN_BYTES: usize = 512;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as the site's backend names its user.
    #[serde(rename = "sub")]
    pub user: String,
    /// When the token stops being accepted, in seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a token of this format, or its MAC does not match (not signed with this secret).
    Invalid,
    /// Signed with this secret, but past its expiry.
    Expired,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenError::Invalid => "the token is not signed with this secret",
            TokenError::Expired => "the token has expired",
        })
    }
}

impl std::error::Error for TokenError {}

/// Checks that `user` can be a web chat user id: 1 to [`MAX_USER_ID_BYTES`] bytes, no control
/// characters.
///
/// # Errors
///
/// [`crate::ErrorKind::Invalid`] saying which rule it breaks.
pub fn check_user_id(user: &str) -> Result<(), Error> {
    if user.is_empty() || user.len() > MAX_USER_ID_BYTES {
        return Err(Error::invalid(format!(
            "webchat: a user id has 1 to {MAX_USER_ID_BYTES} bytes, not {}",
            user.len()
        )));
    }
    if user.chars().any(char::is_control) {
        return Err(Error::invalid(
            "webchat: a user id has no control characters",
        ));
    }
    Ok(())
}

/// Issues a token for `user` that expires `ttl` from now.
///
/// # Errors
///
/// [`crate::ErrorKind::Invalid`] when `user` is not a valid user id ([`check_user_id`]).
pub fn issue(secret: &Secret, user: &str, ttl: Duration) -> Result<String, Error> {
    let expires_at = unix_now().saturating_add(ttl.as_secs());
    issue_until(secret, user, expires_at)
}

/// Issues a token for `user` that expires at `expires_at` (seconds since the Unix epoch).
///
/// # Errors
///
/// As [`issue`].
pub fn issue_until(secret: &Secret, user: &str, expires_at: u64) -> Result<String, Error> {
    check_user_id(user)?;
    let claims = Claims {
        user: user.to_owned(),
        expires_at,
    };
    let payload = serde_json::to_vec(&claims).expect("claims serialise");
    let mut token = format!("{VERSION}.{}", URL_SAFE_NO_PAD.encode(payload));
    let mac = hmac_sha256(secret, &signed_bytes(&token));
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(mac));
    Ok(token)
}

/// Verifies `token` against `secret` at the current time.
///
/// # Errors
///
/// [`TokenError::Invalid`] unless the token is this format and signed with `secret` (the MAC is
/// compared in constant time before anything else is read), [`TokenError::Expired`] when it is
/// but its time is over.
pub fn verify(secret: &Secret, token: &str) -> Result<Claims, TokenError> {
    verify_at(secret, token, unix_now())
}

/// Verifies `token` as [`verify`] does, as if the time were `now` (seconds since the Unix epoch).
///
/// # Errors
///
/// As [`verify`].
pub fn verify_at(secret: &Secret, token: &str, now: u64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Invalid);
    }
    let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
    let (version, payload) = signed.split_once('.').ok_or(TokenError::Invalid)?;
    if version != VERSION {
        return Err(TokenError::Invalid);
    }
    let mac = URL_SAFE_NO_PAD
        .decode(mac)
        .map_err(|_| TokenError::Invalid)?;
    verify_hmac_sha256(secret, &signed_bytes(signed), &mac).map_err(|_| TokenError::Invalid)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Invalid)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Invalid)?;
    if check_user_id(&claims.user).is_err() {
        return Err(TokenError::Invalid);
    }
    if claims.expires_at <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

fn signed_bytes(signed: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(DOMAIN.len() + signed.len());
    bytes.extend_from_slice(DOMAIN);
    bytes.extend_from_slice(signed.as_bytes());
    bytes
}

/// Seconds since the Unix epoch, by the system clock.
pub(crate) fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the Unix epoch, by the system clock.
pub(crate) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("s3cret")
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let token = issue_until(&secret(), "user-1", 1_000).unwrap();
        let claims = verify_at(&secret(), &token, 999).unwrap();
        assert_eq!(claims.user, "user-1");
        assert_eq!(claims.expires_at, 1_000);
        assert_eq!(
            verify_at(&secret(), &token, 1_000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn another_secret_or_a_changed_payload_is_invalid() {
        let token = issue_until(&secret(), "user-1", u64::MAX).unwrap();
        assert_eq!(
            verify_at(&Secret::new("other"), &token, 0),
            Err(TokenError::Invalid)
        );
        // The same MAC on another user's payload.
        let other = issue_until(&secret(), "user-2", u64::MAX).unwrap();
        let (_, mac) = token.rsplit_once('.').unwrap();
        let (forged, _) = other.rsplit_once('.').unwrap();
        assert_eq!(
            verify_at(&secret(), &format!("{forged}.{mac}"), 0),
            Err(TokenError::Invalid)
        );
        for junk in [
            "",
            "v1",
            "v1..",
            "v2.e30.AAAA",
            "v1.e30.!!!!",
            &"a".repeat(600),
        ] {
            assert_eq!(
                verify_at(&secret(), junk, 0),
                Err(TokenError::Invalid),
                "{junk}"
            );
        }
    }

    #[test]
    fn user_ids_are_checked() {
        assert!(issue(&secret(), "", Duration::from_secs(1)).is_err());
        assert!(issue(&secret(), &"x".repeat(129), Duration::from_secs(1)).is_err());
        assert!(issue(&secret(), "a\nb", Duration::from_secs(1)).is_err());
        assert!(issue(&secret(), &"x".repeat(128), Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn the_format_is_stable() {
        // A known answer: a change of format or MAC input breaks tokens already issued.
        let token = issue_until(&secret(), "u", 1).unwrap();
        assert!(
            token.starts_with("v1.eyJzdWIiOiJ1IiwiZXhwIjoxfQ."),
            "{token}"
        );
        let mac = hmac_sha256(&secret(), b"webchat-token.v1.eyJzdWIiOiJ1IiwiZXhwIjoxfQ");
        assert!(token.ends_with(&URL_SAFE_NO_PAD.encode(mac)));
    }
}
