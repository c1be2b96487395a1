//! [`SignedWebhook`]: a webhook body with its signature, as a platform would post it.

use bytes::Bytes;

/// A webhook body with its signature header, built by an adapter's testing `WebhookBuilder`.
#[derive(Debug, Clone)]
pub struct SignedWebhook {
    /// The body.
    pub body: Bytes,
    /// The signature header's name (`x-line-signature`, `x-hub-signature-256`).
    pub header: &'static str,
    /// The signature header's value.
    pub signature: String,
}

impl SignedWebhook {
    /// `body`, signed by `sign` in header `header`.
    pub fn new(body: Bytes, header: &'static str, sign: impl FnOnce(&[u8]) -> String) -> Self {
        Self {
            signature: sign(&body),
            header,
            body,
        }
    }

    /// Posts it to `url` over HTTP as JSON and returns the status.
    ///
    /// # Errors
    ///
    /// Fails when the request cannot be made.
    pub async fn post(&self, url: &str) -> Result<u16, reqwest::Error> {
        let response = reqwest::Client::new()
            .post(url)
            .header(self.header, &self.signature)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(self.body.clone())
            .send()
            .await?;
        Ok(response.status().as_u16())
    }
}

/// Checks an adapter's `sign` and `verify` against known answers `(secret, body, signature)`
/// (from the platform's SDK, or an independent implementation such as `openssl dgst -hmac`).
///
/// # Panics
///
/// When `sign` does not give the known signature, or `verify` refuses it.
pub fn check_known_signatures(
    cases: &[(&str, &str, &str)],
    sign: impl Fn(&crate::Secret, &[u8]) -> String,
    verify: impl Fn(&crate::Secret, &[u8], &[u8]) -> Result<(), crate::signature::SignatureError>,
) {
    for (secret, body, expected) in cases {
        let secret = crate::Secret::new(*secret);
        assert_eq!(sign(&secret, body.as_bytes()), *expected, "sign({body:?})");
        assert_eq!(
            verify(&secret, body.as_bytes(), expected.as_bytes()),
            Ok(()),
            "verify({body:?})"
        );
    }
}
