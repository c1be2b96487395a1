//! The webhook endpoint: `x-line-signature` verification, parsing, submission to the queue.
//!
//! Order of checks, each answered before the next runs:
//!
//! | check | answer |
//! | --- | --- |
//! | body over the bot's limit (1 MiB by default) | 413 |
//! | several channels at this path, and the body's `destination` names none of them (or the body has none) | 401 (`unknown_destination`) |
//! | `x-line-signature` missing, not base64, or not the HMAC-SHA256 of the raw body (with the secret of the channel `destination` names) | 401 |
//! | body not JSON, or no `events` array | 400 |
//! | `events: []` (the console's "Verify" button) | 200 |
//! | events in standby mode, unless [`WebhookConfig::deliver_standby`] | acknowledged, not delivered, counted |
//! | the queue refuses the batch (full, shutting down) | 503 with `Retry-After` |
//! | every event accepted (or a duplicate of one already accepted) | 200 |

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use bot_core::signature::{check_header, hmac_sha256, verify_hmac_sha256};
use bot_core::{ChannelId, Ingress, Platform, Secret};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::event::parse_body;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-line-signature";
/// The default path of the webhook.
pub const DEFAULT_PATH: &str = "/line/webhook";

/// Why a request's signature was refused (the core's, shared by every adapter).
pub use bot_core::signature::SignatureError;

/// Computes `x-line-signature` for `body`: base64(HMAC-SHA256(channel secret, body)).
pub fn sign(channel_secret: &Secret, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(channel_secret, body))
}

/// Checks `signature` (the header's value) against `body` in constant time.
///
/// # Errors
///
/// [`SignatureError::Malformed`] when it is not base64 of 32 bytes, [`SignatureError::Mismatch`]
/// when it is not the body's MAC.
pub fn verify(
    channel_secret: &Secret,
    body: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let presented = base64::engine::general_purpose::STANDARD
        .decode(signature.trim_ascii())
        .map_err(|_| SignatureError::Malformed)?;
    verify_hmac_sha256(channel_secret, body, &presented)
}

/// What the webhook needs: its path, the channel secret, and what to deliver.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Where the webhook is served. Default [`DEFAULT_PATH`].
    pub path: String,
    /// The channel secret that signs the requests.
    pub channel_secret: Secret,
    /// Whether events in standby mode (another module channel holds the chat; no reply token)
    /// reach the handlers. Default false: they are acknowledged and counted as
    /// `bot.events.skipped{reason="standby"}`, so that a handler's reply cannot turn into a push
    /// into a chat the bot does not control.
    pub deliver_standby: bool,
    /// The bot user id of the channel `channel_secret` belongs to (the webhook body's
    /// `destination`); events then carry it as their [`bot_core::Event::channel`]. Needed when
    /// `channels` is not empty.
    pub destination: Option<String>,
    /// Other channels served at the same path, told apart by the body's `destination`.
    pub channels: Vec<WebhookChannel>,
}

/// Another LINE channel whose webhooks come to the same path.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookChannel {
    /// The channel's bot user id: the `destination` of its webhook bodies.
    pub destination: String,
    /// Its channel secret.
    pub channel_secret: Secret,
}

impl WebhookChannel {
    /// The channel whose bot user id is `destination`, signing with `channel_secret`.
    pub fn new(destination: impl Into<String>, channel_secret: Secret) -> Self {
        Self {
            destination: destination.into(),
            channel_secret,
        }
    }
}

impl WebhookConfig {
    /// The default configuration for `channel_secret`.
    pub fn new(channel_secret: Secret) -> Self {
        Self {
            path: DEFAULT_PATH.to_owned(),
            channel_secret,
            deliver_standby: false,
            destination: None,
            channels: Vec::new(),
        }
    }
}

#[derive(Clone)]
struct WebhookState {
    config: Arc<WebhookConfig>,
    routes: Arc<Routes>,
    ingress: Ingress,
}

/// Which channel's secret checks a body, and the channel its events carry.
struct Routes {
    first: Option<ChannelId>,
    by_destination: HashMap<String, (ChannelId, Secret)>,
}

impl Routes {
    fn new(config: &WebhookConfig) -> Self {
        let mut by_destination = HashMap::new();
        if !config.channels.is_empty()
            && let Some(first) = &config.destination
        {
            by_destination.insert(
                first.clone(),
                (ChannelId::new(first), config.channel_secret.clone()),
            );
        }
        for channel in &config.channels {
            by_destination.insert(
                channel.destination.clone(),
                (
                    ChannelId::new(&channel.destination),
                    channel.channel_secret.clone(),
                ),
            );
        }
        Self {
            first: config.destination.as_deref().map(ChannelId::new),
            by_destination,
        }
    }

    /// The channel and secret for `body`: the only channel's without reading it, otherwise the
    /// one its `destination` names (`None` when it names none of them).
    fn pick<'a>(
        &'a self,
        config: &'a WebhookConfig,
        body: &[u8],
    ) -> Option<(Option<&'a ChannelId>, &'a Secret)> {
        if self.by_destination.is_empty() {
            return Some((self.first.as_ref(), &config.channel_secret));
        }
        #[derive(serde::Deserialize)]
        struct Envelope<'b> {
            #[serde(borrow)]
            destination: std::borrow::Cow<'b, str>,
        }
        let envelope: Envelope<'_> = serde_json::from_slice(body).ok()?;
        let (channel, secret) = self.by_destination.get(envelope.destination.as_ref())?;
        Some((Some(channel), secret))
    }
}

/// The webhook route, submitting to `ingress`.
///
/// [`crate::Line`] mounts it for you; use this to serve it from your own axum app. The body
/// limit (413) is the bot's ([`bot_core::BotBuilder::max_body_bytes`]) when mounted through
/// [`bot_core::Bot::webhooks`]; add a `DefaultBodyLimit` layer when you mount it elsewhere.
pub fn router(config: WebhookConfig, ingress: Ingress) -> Router {
    let path = config.path.clone();
    Router::new()
        .route(&path, post(receive))
        .with_state(WebhookState {
            routes: Arc::new(Routes::new(&config)),
            config: Arc::new(config),
            ingress,
        })
}

async fn receive(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    let ingress = &state.ingress;
    let Some((channel, secret)) = state.routes.pick(&state.config, &body) else {
        tracing::debug!("line webhook for a destination this bot does not serve");
        return ingress.refuse(
            &Platform::LINE,
            StatusCode::UNAUTHORIZED,
            "unknown_destination",
        );
    };
    let checked = check_header(&headers, SIGNATURE_HEADER, |s| verify(secret, &body, s));
    if let Err(error) = checked {
        // Anyone can send these: `refuse` logs them at WARN once per interval, and counts each.
        tracing::debug!(%error, "line webhook refused");
        return ingress.refuse(&Platform::LINE, StatusCode::UNAUTHORIZED, "signature");
    }
    match parse_body(&body, state.config.deliver_standby) {
        Ok((mut events, standby)) => {
            if let Some(channel) = channel {
                for event in &mut events {
                    event.channel = Some(channel.clone());
                }
            }
            ingress.skipped(&Platform::LINE, "standby", standby);
            ingress.submit_and_answer(events).await
        }
        Err(error) => ingress.refuse_malformed(&Platform::LINE, &error, body.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers from LINE's own SDK tests (PROTOCOLS.md 1.1).
    #[test]
    fn signatures_match_the_sdks_known_answers() {
        let cases = [
            (
                "channel_secret",
                "bodybodybodybody",
                "/gg9a+LvFevTH1sd7XCQycD7tsWclCsInj7MhBHxN7k=",
            ),
            (
                "test_secret",
                r#"{"hello":"world"}"#,
                "t7Hn4ZDHqs6e+wdvI5TyQIvzie0DmMUmuXEBqyyE/tM=",
            ),
            (
                "SECRET",
                "{}",
                "3q8QXTAGaey18yL8FWTqdVlbMr6hcuNvM4tefa0o9nA=",
            ),
        ];
        bot_core::testing::check_known_signatures(&cases, sign, verify);
    }

    #[test]
    fn case_flipped_truncated_and_foreign_signatures_are_refused() {
        let secret = Secret::new("test_secret");
        let body = br#"{"hello":"world"}"#;
        let flipped: String = "t7Hn4ZDHqs6e+wdvI5TyQIvzie0DmMUmuXEBqyyE/tM="
            .chars()
            .map(|c| {
                if c.is_ascii_uppercase() {
                    c.to_ascii_lowercase()
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        // Base64 is case-sensitive: the flipped string is another (or no) byte string.
        assert!(verify(&secret, body, flipped.as_bytes()).is_err());
        assert_eq!(
            verify(&secret, body, b"t7Hn4ZDHqs6e"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&secret, body, b"%%%"),
            Err(SignatureError::Malformed)
        );
        let other = sign(&Secret::new("other"), body);
        assert_eq!(
            verify(&secret, body, other.as_bytes()),
            Err(SignatureError::Mismatch)
        );
        let tampered = br#"{"hello":"world!"}"#;
        let right = sign(&secret, body);
        assert_eq!(
            verify(&secret, tampered, right.as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }
}
