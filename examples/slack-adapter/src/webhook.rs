//! The events URL: signature and timestamp checked on the raw bytes before anything is parsed,
//! the `url_verification` challenge answered, events submitted to the queue.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bot_core::signature::{SignatureError, hmac_sha256, verify_hmac_sha256};
use bot_core::{Ingress, Secret};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};

use crate::event::{Envelope, PLATFORM, to_events};

/// Where Slack posts events, unless the builder says otherwise.
pub const DEFAULT_PATH: &str = "/slack/events";
/// The signature header: `v0=` and the hex HMAC-SHA256 of `v0:<timestamp>:<body>`.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The timestamp header (Unix seconds), part of what is signed.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// How far the timestamp may be from now: older requests are replays.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The signature Slack sends for `body` at `timestamp`: for tests and tools that post as Slack.
pub fn sign(signing_secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(hmac_sha256(signing_secret, &base_string(timestamp, body)))
    )
}

fn base_string(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut base = format!("v0:{timestamp}:").into_bytes();
    base.extend_from_slice(body);
    base
}

#[derive(Clone)]
struct Webhook {
    signing_secret: Secret,
    ingress: Ingress,
}

/// The route, submitting to `ingress`.
pub(crate) fn routes(path: &str, signing_secret: Secret, ingress: Ingress) -> Router {
    Router::new()
        .route(path, post(receive))
        .with_state(Webhook {
            signing_secret,
            ingress,
        })
}

// ANCHOR: verify
/// Checks the timestamp's age and the signature of `timestamp` and `body`, in constant time.
fn verify(
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER))
    else {
        return Err(SignatureError::Missing);
    };
    let sent: u64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    if now.abs_diff(sent) > MAX_CLOCK_SKEW.as_secs() {
        // A signature that was right five minutes ago is a replay now.
        return Err(SignatureError::Mismatch);
    }
    let presented = signature
        .strip_prefix("v0=")
        .and_then(|hex_mac| hex::decode(hex_mac).ok())
        .ok_or(SignatureError::Malformed)?;
    verify_hmac_sha256(secret, &base_string(timestamp, body), &presented)
}
// ANCHOR_END: verify

// ANCHOR: receive
async fn receive(State(webhook): State<Webhook>, headers: HeaderMap, body: Bytes) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if verify(&webhook.signing_secret, &headers, &body, now).is_err() {
        return webhook
            .ingress
            .refuse(&PLATFORM, StatusCode::UNAUTHORIZED, "signature");
    }
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(envelope) => envelope,
        Err(error) => {
            return webhook
                .ingress
                .refuse_malformed(&PLATFORM, &error, body.len());
        }
    };
    match envelope {
        Envelope::UrlVerification { challenge } => {
            ([(header::CONTENT_TYPE, "text/plain")], challenge).into_response()
        }
        // 200 only once the queue has the events (a full queue answers 503 with Retry-After,
        // and Slack retries); a retry of an event already taken is deduplicated by its id.
        Envelope::EventCallback { event_id, event } => {
            webhook
                .ingress
                .submit_and_answer(to_events(&event_id, &event))
                .await
        }
        Envelope::Other => StatusCode::OK.into_response(),
    }
}
// ANCHOR_END: receive

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TIMESTAMP_HEADER, timestamp.parse().unwrap());
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        headers
    }

    #[test]
    fn slacks_known_answer_verifies() {
        // The example of Slack's "Verifying requests from Slack" guide.
        let secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(&secret, "1531420618", body), expected);
        assert_eq!(
            verify(
                &secret,
                &headers("1531420618", expected),
                body,
                1_531_420_618
            ),
            Ok(())
        );
    }

    #[test]
    fn a_wrong_old_or_missing_signature_is_refused() {
        let secret = Secret::new("s");
        let good = sign(&secret, "1000", b"{}");
        assert_eq!(
            verify(&secret, &headers("1000", &good), b"{ }", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret, &headers("1000", &good), b"{}", 1000 + 301),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret, &headers("1000", "v0=zz"), b"{}", 1000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&secret, &HeaderMap::new(), b"{}", 1000),
            Err(SignatureError::Missing)
        );
    }
}
