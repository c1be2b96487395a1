//! The webhook endpoint: `x-line-signature` verification, parsing, submission to the queue.
//!
//! Order of checks, each answered before the next runs:
//!
//! | check | answer |
//! | --- | --- |
//! | body over the bot's limit (1 MiB by default) | 413 |
//! | several channels, and the path `<path>/<destination>` names none of them | 404 (`unknown_destination`) |
//! | `x-line-signature` missing, not base64, or not the HMAC-SHA256 of the raw body (with several channels at the shared path: with none of their secrets; at `<path>/<destination>`: with that channel's) | 401 |
//! | several channels, and the signed body's `destination` is not the bot user id of the channel whose secret signed it | 401 (`unknown_destination`) |
//! | body not JSON, or no `events` array | 400 |
//! | `events: []` (the console's "Verify" button) | 200 |
//! | events in standby mode, unless [`WebhookConfig::deliver_standby`] | acknowledged, not delivered, counted |
//! | the queue refuses the batch (full, shutting down) | 503 with `Retry-After` |
//! | every event accepted (or a duplicate of one already accepted) | 200 |

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use bot_core::adapter::WebhookRequest;
use bot_core::signature::{hmac_sha256, verify_hmac_sha256};
use bot_core::{ChannelId, Ingress, Platform, Secret};
use bytes::Bytes;
use http::StatusCode;

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
    verify_hmac_sha256(channel_secret, body, &decode_signature(signature)?)
}

/// The MAC a signature header presents, decoded on the stack: base64 of anything but 32 bytes
/// is malformed.
fn decode_signature(signature: &[u8]) -> Result<[u8; 32], SignatureError> {
    let mut presented = [0u8; 32];
    match base64::engine::general_purpose::STANDARD
        .decode_slice(signature.trim_ascii(), &mut presented)
    {
        Ok(32) => Ok(presented),
        _ => Err(SignatureError::Malformed),
    }
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
    /// `destination`); events then carry it as their [`bot_core::EventData::channel`]. Needed when
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
    /// With several channels, every channel (the first included) and its secret.
    channels: Vec<(ChannelId, Secret)>,
}

impl Routes {
    fn new(config: &WebhookConfig) -> Self {
        let mut channels = Vec::new();
        if !config.channels.is_empty() {
            // Without its destination the first channel's events carry none (the builder of
            // `crate::Line` requires it); its secret still checks its bodies.
            let first = config.destination.as_deref().unwrap_or_default();
            channels.push((ChannelId::new(first), config.channel_secret.clone()));
            for channel in &config.channels {
                let id = ChannelId::new(&channel.destination);
                channels.push((id, channel.channel_secret.clone()));
            }
        }
        Self {
            first: config.destination.as_deref().map(ChannelId::new),
            channels,
        }
    }

    /// The channel whose secret signed `body` with `signature` (the header's value), checked
    /// before anything of the body is read: with several channels, each one's secret is tried
    /// (one HMAC of the body per channel at most).
    fn check<'a>(
        &'a self,
        config: &'a WebhookConfig,
        body: &[u8],
        signature: &[u8],
    ) -> Result<Option<&'a ChannelId>, SignatureError> {
        if self.channels.is_empty() {
            return verify(&config.channel_secret, body, signature).map(|()| self.first.as_ref());
        }
        let presented = decode_signature(signature)?;
        let mut outcome = Err(SignatureError::Mismatch);
        for (channel, secret) in &self.channels {
            match verify_hmac_sha256(secret, body, &presented) {
                Ok(()) => return Ok(Some(channel).filter(|c| !c.as_str().is_empty())),
                Err(e) => outcome = Err(e),
            }
        }
        outcome.map(|()| None)
    }

    /// The channel `destination` (named by the request's path) when its secret signed `body`:
    /// one HMAC whatever the number of channels. `None` when no channel has that destination.
    fn check_one(
        &self,
        destination: &str,
        body: &[u8],
        signature: &[u8],
    ) -> Option<Result<&ChannelId, SignatureError>> {
        let (channel, secret) = self
            .channels
            .iter()
            .find(|(channel, _)| !channel.as_str().is_empty() && channel.as_str() == destination)?;
        Some(verify(secret, body, signature).map(|()| channel))
    }
}

/// The `destination` of an authenticated body, when it names another channel than the one whose
/// secret signed it (a body of one channel replayed to another: refused).
fn names_another_channel(body: &[u8], channel: &ChannelId) -> bool {
    #[derive(serde::Deserialize)]
    struct Envelope<'b> {
        #[serde(borrow)]
        destination: std::borrow::Cow<'b, str>,
    }
    serde_json::from_slice::<Envelope<'_>>(body)
        .is_ok_and(|e| e.destination.as_ref() != channel.as_str())
}

/// The webhook route, submitting to `ingress`.
///
/// [`crate::Line`] mounts it for you; use this to serve it from your own axum app. The body
/// limit (413) is the bot's ([`bot_core::BotBuilder::max_body_bytes`]) when mounted through
/// [`bot_core::Bot::webhooks`]; add a `DefaultBodyLimit` layer when you mount it elsewhere.
pub fn router(config: WebhookConfig, ingress: Ingress) -> Router {
    let path = config.path.clone();
    let mut router = Router::new().route(&path, post(receive));
    if !config.channels.is_empty() {
        // Each channel may also point its webhook at `<path>/<its bot user id>`: one secret to try.
        let per_channel = format!("{}/{{destination}}", path.trim_end_matches('/'));
        router = router.route(&per_channel, post(receive_at));
    }
    router.with_state(WebhookState {
        routes: Arc::new(Routes::new(&config)),
        config: Arc::new(config),
        ingress,
    })
}

async fn receive(State(state): State<WebhookState>, request: WebhookRequest) -> Response {
    let WebhookRequest { headers, body, .. } = request;
    let checked = match headers.get(SIGNATURE_HEADER) {
        None => Err(SignatureError::Missing),
        Some(signature) => state
            .routes
            .check(&state.config, &body, signature.as_bytes()),
    };
    accept(&state, checked, body).await
}

/// A webhook at `<path>/<destination>`: only that channel's secret is tried.
async fn receive_at(
    State(state): State<WebhookState>,
    Path(destination): Path<String>,
    request: WebhookRequest,
) -> Response {
    let WebhookRequest { headers, body, .. } = request;
    let checked = match headers.get(SIGNATURE_HEADER) {
        None => Err(SignatureError::Missing),
        Some(signature) => {
            match state
                .routes
                .check_one(&destination, &body, signature.as_bytes())
            {
                Some(checked) => checked.map(Some),
                None => {
                    return state.ingress.refuse(
                        &Platform::LINE,
                        StatusCode::NOT_FOUND,
                        "unknown_destination",
                    );
                }
            }
        }
    };
    accept(&state, checked, body).await
}

/// What follows the signature check, wherever the request came in.
async fn accept(
    state: &WebhookState,
    checked: Result<Option<&ChannelId>, SignatureError>,
    body: Bytes,
) -> Response {
    let ingress = &state.ingress;
    let channel = match checked {
        Ok(channel) => channel,
        Err(error) => {
            // Anyone can send these: `refuse` logs them at WARN once per interval, and counts each.
            tracing::debug!(%error, "line webhook refused");
            return ingress.refuse(&Platform::LINE, StatusCode::UNAUTHORIZED, "signature");
        }
    };
    if !state.routes.channels.is_empty()
        && let Some(channel) = channel
        && names_another_channel(&body, channel)
    {
        return ingress.refuse(
            &Platform::LINE,
            StatusCode::UNAUTHORIZED,
            "unknown_destination",
        );
    }
    // The events keep slices of the body: of a copy its size, not of the connection's buffer.
    let body = bot_core::body_for_events(&body);
    match parse_body(&body, state.config.deliver_standby, channel) {
        Ok((events, standby)) => {
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
        // Base64 of a MAC one byte short (the rest is not zeros) or one byte long: malformed.
        let mac = hmac_sha256(&secret, body);
        for presented in [&mac[..31], &[mac.as_slice(), &[0]].concat()[..]] {
            let encoded = base64::engine::general_purpose::STANDARD.encode(presented);
            assert_eq!(
                verify(&secret, body, encoded.as_bytes()),
                Err(SignatureError::Malformed)
            );
        }
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
