//! The webhook endpoint: the `GET` verification handshake, `X-Hub-Signature-256` verification,
//! parsing, submission to the queue.
//!
//! `GET` (subscribing the webhook in the Meta console):
//!
//! | request | answer |
//! | --- | --- |
//! | `hub.mode=subscribe` and `hub.verify_token` equal to the configured token (compared in constant time) | 200, `text/plain`, body = `hub.challenge` verbatim |
//! | anything else | 403 |
//!
//! `POST` (deliveries), each check answered before the next runs:
//!
//! | check | answer |
//! | --- | --- |
//! | body over the bot's limit (1 MiB by default; a full batch of 1,000 large items can exceed it, and is then refused on every redelivery: raise [`bot_core::BotBuilder::max_body_bytes`] for a busy page) | 413 |
//! | `X-Hub-Signature-256` missing, not `sha256=<64 hex digits>`, or not the HMAC-SHA256 of the raw body with the app secret | 401 |
//! | body not JSON, or no `object` or `entry` array | 400 |
//! | `object` neither `page` nor `instagram` | 200, ignored and counted (once per body) as `bot.events.skipped{reason="object"}` (Meta retries and finally disables webhooks that keep failing, so refusing a signed body would only cause noise) |
//! | the queue refuses the batch (full, shutting down) | 503 with `Retry-After` |
//! | echoes and `standby[]` items, unless [`WebhookConfig::deliver_echoes`] / [`WebhookConfig::deliver_standby`] | acknowledged, not delivered, counted as `bot.events.skipped{reason="echo"}` / `{reason="standby"}` |
//! | every other item of every entry accepted (or a duplicate) | 200 |

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bot_core::adapter::WebhookRequest;
use bot_core::signature::{check_header, hmac_sha256, verify_hmac_sha256};
use bot_core::{Ingress, Platform, Secret};
use http::{StatusCode, header};
use serde::Deserialize;

use crate::event::{Leave, parse_leaving_out};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The default path of the webhook.
pub const DEFAULT_PATH: &str = "/messenger/webhook";

const SIGNATURE_PREFIX: &str = "sha256=";

/// Why a request's signature was refused (the core's, shared by every adapter).
pub use bot_core::signature::SignatureError;

/// Computes `X-Hub-Signature-256` for `body`: `sha256=` and the lowercase hex
/// HMAC-SHA256(app secret, body).
pub fn sign(app_secret: &Secret, body: &[u8]) -> String {
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(hmac_sha256(app_secret, body))
    )
}

/// Checks `signature` (the header's value) against the raw `body` in constant time.
///
/// # Errors
///
/// [`SignatureError::Malformed`] when it is not `sha256=` and 64 hex digits,
/// [`SignatureError::Mismatch`] when it is not the body's MAC.
pub fn verify(app_secret: &Secret, body: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
    let digits = signature
        .trim_ascii()
        .strip_prefix(SIGNATURE_PREFIX.as_bytes())
        .ok_or(SignatureError::Malformed)?;
    // Decoded on the stack: a MAC is 32 bytes, and any other length is malformed.
    let mut presented = [0u8; 32];
    hex::decode_to_slice(digits, &mut presented).map_err(|_| SignatureError::Malformed)?;
    verify_hmac_sha256(app_secret, body, &presented)
}

/// What the webhook needs: its path, the app secret, the verify token, and what to deliver.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Where the webhook is served (`GET` and `POST`). Default [`DEFAULT_PATH`].
    pub path: String,
    /// Signs every delivery (the app's secret, App settings > Basic).
    pub app_secret: Secret,
    /// The token typed into the console when subscribing the webhook.
    pub verify_token: Secret,
    /// Whether echoes of the page's own messages reach the handlers, as `Other { name:
    /// "message_echo" }`. Default false: they are acknowledged and counted as
    /// `bot.events.skipped{reason="echo"}`.
    pub deliver_echoes: bool,
    /// Whether `standby[]` items (another app owns the conversation) reach the handlers, as
    /// `Other { name: "standby_<key>" }`. Default false: they are acknowledged and counted as
    /// `bot.events.skipped{reason="standby"}`, since the bot may not answer in those
    /// conversations.
    pub deliver_standby: bool,
}

impl WebhookConfig {
    /// The default configuration for `app_secret` and `verify_token`.
    pub fn new(app_secret: Secret, verify_token: Secret) -> Self {
        Self {
            path: DEFAULT_PATH.to_owned(),
            app_secret,
            verify_token,
            deliver_echoes: false,
            deliver_standby: false,
        }
    }
}

#[derive(Clone)]
struct WebhookState {
    config: Arc<WebhookConfig>,
    ingress: Ingress,
}

/// The webhook routes (`GET` and `POST` at `config.path`), submitting to `ingress`.
///
/// [`crate::Messenger`] mounts them for you; use this to serve them from your own axum app. The
/// body limit (413) is the bot's ([`bot_core::BotBuilder::max_body_bytes`]) when mounted through
/// [`bot_core::Bot::webhooks`]; add a `DefaultBodyLimit` layer when you mount it elsewhere.
pub fn router(config: WebhookConfig, ingress: Ingress) -> Router {
    let path = config.path.clone();
    Router::new()
        .route(&path, get(verify_subscription).post(receive))
        .with_state(WebhookState {
            config: Arc::new(config),
            ingress,
        })
}

/// The query of the verification request.
#[derive(Deserialize)]
struct Subscription {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("mode", &self.mode)
            .field(
                "verify_token",
                &self.verify_token.as_ref().map(|_| "[redacted]"),
            )
            .field("challenge", &self.challenge)
            .finish()
    }
}

async fn verify_subscription(
    State(state): State<WebhookState>,
    query: Result<Query<Subscription>, QueryRejection>,
) -> Response {
    // A query that cannot be read (repeated or badly encoded parameters) is refused like a
    // wrong token: 403, not the extractor's 400.
    let Ok(Query(query)) = query else {
        return refuse_verification(&state);
    };
    let token_matches = query
        .verify_token
        .as_deref()
        .is_some_and(|token| state.config.verify_token.matches(token.as_bytes()));
    match (query.mode.as_deref(), query.challenge) {
        (Some("subscribe"), Some(challenge)) if token_matches => {
            tracing::info!("messenger webhook subscription verified");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                challenge,
            )
                .into_response()
        }
        _ => refuse_verification(&state),
    }
}

fn refuse_verification(state: &WebhookState) -> Response {
    tracing::debug!("messenger webhook verification refused");
    state
        .ingress
        .refuse(&Platform::MESSENGER, StatusCode::FORBIDDEN, "verify_token")
}

async fn receive(State(state): State<WebhookState>, request: WebhookRequest) -> Response {
    let WebhookRequest { headers, body, .. } = request;
    let ingress = &state.ingress;
    let secret = &state.config.app_secret;
    let checked = check_header(&headers, SIGNATURE_HEADER, |s| verify(secret, &body, s));
    if let Err(error) = checked {
        // Anyone can send these: `refuse` logs them at WARN once per interval, and counts each.
        tracing::debug!(%error, "messenger webhook refused");
        return ingress.refuse(&Platform::MESSENGER, StatusCode::UNAUTHORIZED, "signature");
    }
    // The events keep slices of the body: of a copy its size, not of the connection's buffer.
    let body = bot_core::body_for_events(&body);
    // Echoes and standby items the bot does not deliver are left out before the others share
    // their blocks, where their data would stay alive as long as any of those events.
    let leave = Leave {
        echoes: !state.config.deliver_echoes,
        standby: !state.config.deliver_standby,
    };
    let (batch, left) = match parse_leaving_out(&body, leave) {
        Ok(read) => read,
        Err(error) => return ingress.refuse_malformed(&Platform::MESSENGER, &error, body.len()),
    };
    if !matches!(
        batch.object,
        crate::model::Object::Page | crate::model::Object::Instagram
    ) {
        tracing::info!(object = ?batch.object, "messenger webhook for another object ignored");
        ingress.skipped(&Platform::MESSENGER, "object", 1);
        return (StatusCode::OK, "ignored").into_response();
    }
    if leave.echoes {
        ingress.skipped(&Platform::MESSENGER, "echo", left.echoes);
    }
    if leave.standby {
        ingress.skipped(&Platform::MESSENGER, "standby", left.standby);
    }
    let events = batch.events;
    ingress.submit_and_answer(events).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers computed with `openssl dgst -sha256 -hmac <secret>`, an independent
    /// implementation.
    #[test]
    fn signatures_match_known_answers() {
        let cases = [
            (
                "app_secret",
                r#"{"object":"page","entry":[]}"#,
                "sha256=22d3988d1017c437ea81a89d41e2d3266c00a508cffdb23f8ad8746d232d77e9",
            ),
            (
                "test_secret",
                r#"{"hello":"world"}"#,
                "sha256=b7b1e7e190c7aace9efb076f2394f2408bf389ed0398c526b97101ab2c84fed3",
            ),
        ];
        bot_core::testing::check_known_signatures(&cases, sign, verify);
        for (secret, body, expected) in cases {
            let secret = Secret::new(secret);
            let upper = expected.replace("sha256=", "").to_ascii_uppercase();
            let upper = format!("sha256={upper}");
            assert_eq!(verify(&secret, body.as_bytes(), upper.as_bytes()), Ok(()));
        }
    }

    #[test]
    fn malformed_foreign_and_tampered_signatures_are_refused() {
        let secret = Secret::new("test_secret");
        let body = br#"{"hello":"world"}"#;
        let right = sign(&secret, body);
        let bare = right.trim_start_matches("sha256=");
        assert_eq!(
            verify(&secret, body, bare.as_bytes()),
            Err(SignatureError::Malformed)
        );
        let sha1 = format!("sha1={bare}");
        assert_eq!(
            verify(&secret, body, sha1.as_bytes()),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&secret, body, &right.as_bytes()[..40]),
            Err(SignatureError::Malformed)
        );
        // Hex of a MAC one byte short or one byte long: malformed.
        let mac = hmac_sha256(&secret, body);
        for presented in [&mac[..31], &[mac.as_slice(), &[0]].concat()[..]] {
            let header = format!("sha256={}", hex::encode(presented));
            assert_eq!(
                verify(&secret, body, header.as_bytes()),
                Err(SignatureError::Malformed)
            );
        }
        let not_hex = format!("sha256={}", "zz".repeat(32));
        assert_eq!(
            verify(&secret, body, not_hex.as_bytes()),
            Err(SignatureError::Malformed)
        );
        let other = sign(&Secret::new("other"), body);
        assert_eq!(
            verify(&secret, body, other.as_bytes()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret, br#"{"hello":"world!"}"#, right.as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }
}
