//! Webhook signatures: the HMAC-SHA256 that LINE and Messenger sign their webhooks with, checked
//! in constant time, and why a signature was refused. Each adapter keeps only its header and its
//! encoding (LINE base64, Messenger `sha256=` and hex).

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

use crate::secret::Secret;

/// Why a request's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureError {
    /// No signature header.
    Missing,
    /// The header is not in the platform's encoding of a SHA-256 MAC.
    Malformed,
    /// The signature does not match the body and the secret.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => "the signature header is missing",
            SignatureError::Malformed => "the signature header is not an encoded HMAC-SHA256",
            SignatureError::Mismatch => "the signature does not match the body",
        })
    }
}

impl std::error::Error for SignatureError {}

/// HMAC-SHA256(`secret`, `body`).
pub fn hmac_sha256(secret: &Secret, body: &[u8]) -> [u8; 32] {
    mac(secret, body).finalize().into_bytes().into()
}

/// Checks that `presented` (the decoded signature) is HMAC-SHA256(`secret`, `body`), in constant
/// time.
///
/// # Errors
///
/// [`SignatureError::Malformed`] when it is not 32 bytes, [`SignatureError::Mismatch`] when it is
/// not the body's MAC.
pub fn verify_hmac_sha256(
    secret: &Secret,
    body: &[u8],
    presented: &[u8],
) -> Result<(), SignatureError> {
    if presented.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    mac(secret, body)
        .verify_slice(presented)
        .map_err(|_| SignatureError::Mismatch)
}

/// Checks the signature in header `name` of a request with `verify` (the platform's decoding and
/// [`verify_hmac_sha256`]).
///
/// # Errors
///
/// [`SignatureError::Missing`] without the header; what `verify` says otherwise.
pub fn check_header(
    headers: &HeaderMap,
    name: &str,
    verify: impl FnOnce(&[u8]) -> Result<(), SignatureError>,
) -> Result<(), SignatureError> {
    match headers.get(name) {
        None => Err(SignatureError::Missing),
        Some(signature) => verify(signature.as_bytes()),
    }
}

fn mac(secret: &Secret, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_is_checked_and_a_wrong_length_is_malformed() {
        let secret = Secret::new("s");
        let mac = hmac_sha256(&secret, b"body");
        assert_eq!(verify_hmac_sha256(&secret, b"body", &mac), Ok(()));
        assert_eq!(
            verify_hmac_sha256(&secret, b"bodY", &mac),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_hmac_sha256(&Secret::new("t"), b"body", &mac),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_hmac_sha256(&secret, b"body", &mac[..31]),
            Err(SignatureError::Malformed)
        );
        let headers = HeaderMap::new();
        assert_eq!(
            check_header(&headers, "x-sig", |_| Ok(())),
            Err(SignatureError::Missing)
        );
    }
}
