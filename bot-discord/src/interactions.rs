//! The HTTP interactions endpoint: Ed25519 verification, PING/PONG, and answers within Discord's
//! 3-second deadline.
//!
//! | request | answer |
//! | --- | --- |
//! | `X-Signature-Ed25519` / `X-Signature-Timestamp` missing, not hex, not a valid signature of timestamp + body under the application's public key, or a timestamp more than 5 minutes off | 401 |
//! | not JSON | 400 |
//! | PING (type 1) | 200 `{"type": 1}` |
//! | the queue refuses the interaction | 503 with `Retry-After` |
//! | autocomplete (type 4) | 200 with no choices (type 8); not delivered |
//! | the queue does not take it within 2.5 s of its arrival | 503 with `Retry-After` |
//! | anything else | the handler's first reply as the response (type 4) if it comes within 2.5 s of the request's arrival; otherwise a deferred response (type 5), and the handler's replies become follow-ups |
//!
//! # Several applications
//!
//! One endpoint serves every application of the bot ([`InteractionsConfig::applications`]):
//! `<path>/<application id>` verifies with that application's key only, and `<path>` itself
//! with each application's key in turn, the first first, so that a bot with one application
//! keeps its URL. A request no key verifies is 401; with several applications (several keys, or
//! an adapter serving several applications, keyed or not), a verified body that names another
//! application than the one whose key signed it is 401 too (`unknown_application`). The event
//! carries the application as its [`bot_core::EventData::channel`], so its replies go out through
//! that application's client.
//!
//! With a durable queue the handler may run in another process: the endpoint still defers in
//! time, and that process's first reply goes through the callback endpoint, or as a follow-up
//! when the interaction was already acknowledged.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bot_core::event::ChannelId;
use bot_core::{Ingress, Platform};
use bytes::Bytes;
use ed25519_dalek::{Signature, VerifyingKey};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::Error;
use crate::event::from_interaction;

/// The default path of the endpoint.
pub const DEFAULT_PATH: &str = "/discord/interactions";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
/// The timestamp header.
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";
/// How long the endpoint waits for the handler before it defers (Discord allows 3 s).
pub const DEFAULT_DEFER_AFTER: Duration = Duration::from_millis(2500);
/// How far a request's timestamp may be from now.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// How long an interaction is remembered after it arrived (its token lasts 15 minutes; later
/// replies find their way through the callback endpoint).
const REMEMBERED: Duration = Duration::from_secs(5 * 60);
/// Most interactions remembered at once: 1,000 a second for five minutes, past Discord's limits
/// for one application.
const MAX_PENDING: usize = 300_000;

/// Interaction type 4, an autocomplete request.
const AUTOCOMPLETE: u64 = 4;
/// Interaction response type 1, PONG.
const PONG: u8 = 1;
/// Interaction response type 8, autocomplete choices.
const AUTOCOMPLETE_RESULT: u8 = 8;
/// Interaction response type 4, a message.
pub(crate) const CHANNEL_MESSAGE: u8 = 4;
/// Interaction response type 5, "thinking…", answered later.
const DEFERRED_CHANNEL_MESSAGE: u8 = 5;

/// The application's public key (hex, from the developer portal).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses the hex key.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when it is not 64 hex characters of a valid key, or when it
    /// is a weak (small-order) key such as an all-zero placeholder: signatures under one can be
    /// forged without any secret.
    pub fn from_hex(hex_key: &str) -> Result<Self, Error> {
        let bytes: [u8; 32] = hex::decode(hex_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::config("discord: the public key is not 64 hex characters"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|e| Error::config("discord: the public key is invalid").with_source(e))?;
        if key.is_weak() {
            return Err(Error::config(
                "discord: the public key is a weak (small-order) key, not an application's: copy it from the developer portal",
            ));
        }
        Ok(Self(key))
    }

    /// Checks `signature` (hex) of `timestamp ‖ body`, strictly: a signature with a small-order
    /// part, or not in canonical form, is refused.
    pub fn verify(&self, timestamp: &[u8], body: &[u8], signature_hex: &[u8]) -> bool {
        let Some(bytes) = hex::decode(signature_hex)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
        else {
            return false;
        };
        let signature = Signature::from_bytes(&bytes);
        let mut message = Vec::with_capacity(timestamp.len() + body.len());
        message.extend_from_slice(timestamp);
        message.extend_from_slice(body);
        self.0.verify_strict(&message, &signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0.as_bytes()))
    }
}

enum Entry {
    /// The HTTP request waits for the handler's first reply.
    Waiting(oneshot::Sender<Value>),
    /// The request was answered (with the first reply or a deferral); replies are follow-ups.
    Acknowledged,
}

#[derive(Default)]
struct Entries {
    /// By interaction id: the entry and when the interaction arrived.
    by_id: HashMap<String, (Entry, Instant)>,
    /// Arrival order, for expiry.
    order: VecDeque<(Instant, String)>,
}

/// Interactions this process is answering: how a handler's reply finds its HTTP response.
///
/// Entries live five minutes after the interaction arrived; a reply after that goes through the
/// callback endpoint and, when Discord says the interaction was acknowledged, as a follow-up.
#[derive(Default)]
pub struct Pending {
    entries: Mutex<Entries>,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("entries", &self.lock().by_id.len())
            .finish()
    }
}

/// How the first reply to an interaction goes out.
pub(crate) enum Route {
    /// It went into the waiting HTTP response.
    Answered,
    /// The interaction was answered here: post a follow-up.
    FollowUp,
    /// Unknown here (gateway-delivered, another process, or forgotten): use the callback endpoint.
    Callback,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait(&self, id: &str) -> Option<oneshot::Receiver<Value>> {
        let now = Instant::now();
        let mut entries = self.lock();
        let entries = &mut *entries;
        while let Some((at, old)) = entries.order.front() {
            if now.duration_since(*at) < REMEMBERED {
                break;
            }
            if entries
                .by_id
                .get(old)
                .is_some_and(|(_, arrived)| arrived == at)
            {
                entries.by_id.remove(old);
            }
            entries.order.pop_front();
        }
        if entries.by_id.len() >= MAX_PENDING {
            return None;
        }
        let (sender, receiver) = oneshot::channel();
        entries
            .by_id
            .insert(id.to_owned(), (Entry::Waiting(sender), now));
        entries.order.push_back((now, id.to_owned()));
        Some(receiver)
    }

    /// The deadline passed: defer, unless the reply just went into the response.
    fn defer(&self, id: &str) -> bool {
        let mut entries = self.lock();
        match entries.by_id.get_mut(id) {
            Some((entry @ Entry::Waiting(_), _)) => {
                *entry = Entry::Acknowledged;
                true
            }
            _ => false,
        }
    }

    fn forget(&self, id: &str) {
        self.lock().by_id.remove(id);
    }

    /// Routes a handler's first reply to interaction `id`.
    pub(crate) fn route(&self, id: &str, response: Value) -> Route {
        let mut entries = self.lock();
        let Some((entry, _)) = entries.by_id.get_mut(id) else {
            return Route::Callback;
        };
        match std::mem::replace(entry, Entry::Acknowledged) {
            Entry::Waiting(sender) => match sender.send(response) {
                Ok(()) => Route::Answered,
                // The request is gone (the client hung up): Discord never got an answer.
                Err(_) => Route::Callback,
            },
            Entry::Acknowledged => Route::FollowUp,
        }
    }
}

/// An application whose interactions come to the endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InteractionsApplication {
    /// Its id, when known: its events carry it as their [`bot_core::EventData::channel`], and it is
    /// served at `<path>/<id>` too.
    pub id: Option<ChannelId>,
    /// Its public key.
    pub public_key: PublicKey,
}

impl InteractionsApplication {
    /// The application `id` (when known), verified with `public_key`.
    pub fn new(id: Option<ChannelId>, public_key: PublicKey) -> Self {
        Self { id, public_key }
    }
}

/// What the endpoint needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InteractionsConfig {
    /// Where the endpoint is served. Default [`DEFAULT_PATH`].
    pub path: String,
    /// The applications served, the first first (at least one): see the module's docs for how
    /// a request finds its application.
    pub applications: Vec<InteractionsApplication>,
    /// How long to wait for the handler before deferring. Default 2.5 s.
    pub defer_after: Duration,
    /// How far the signed timestamp may be from now. Default 5 minutes.
    pub max_clock_skew: Duration,
    /// Whether the adapter serves several applications, keyed or not: a body naming another
    /// application is then refused even when only one has a key here.
    pub(crate) several_applications: bool,
}

impl InteractionsConfig {
    /// Defaults for one application, whose id is not known, verified with `public_key`.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            path: DEFAULT_PATH.to_owned(),
            applications: vec![InteractionsApplication::new(None, public_key)],
            defer_after: DEFAULT_DEFER_AFTER,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            several_applications: false,
        }
    }
}

impl InteractionsConfig {
    /// Whether several applications are served: then a body must name the application whose
    /// key signed it.
    fn serves_several(&self) -> bool {
        self.several_applications || self.applications.len() > 1
    }
}

#[derive(Clone)]
struct EndpointState {
    config: Arc<InteractionsConfig>,
    ingress: Ingress,
    pending: Arc<Pending>,
    /// The application of an `<path>/<id>` route; `None` at `<path>`, where each is tried.
    only: Option<usize>,
}

impl EndpointState {
    /// The application whose key signed `timestamp ‖ body`.
    fn signed_by(
        &self,
        timestamp: &[u8],
        body: &[u8],
        signature: &[u8],
    ) -> Option<&InteractionsApplication> {
        let applications = &self.config.applications;
        let candidates = match self.only {
            Some(index) => &applications[index..=index],
            None => &applications[..],
        };
        candidates
            .iter()
            .find(|app| app.public_key.verify(timestamp, body, signature))
    }
}

/// The endpoint's routes (`<path>`, and `<path>/<id>` for each application whose id is known),
/// submitting to `ingress`; handlers' replies find their responses through `pending` (the
/// adapter's clients share it). An id that is not a snowflake (digits), or that an earlier
/// application has, gets no route of its own (logged): its requests still verify at `<path>`.
pub fn router(config: InteractionsConfig, ingress: Ingress, pending: Arc<Pending>) -> Router {
    let config = Arc::new(config);
    let state = |only| EndpointState {
        config: config.clone(),
        ingress: ingress.clone(),
        pending: pending.clone(),
        only,
    };
    let mut router = Router::new().route(&config.path, post(receive).with_state(state(None)));
    let mut routed = std::collections::HashSet::new();
    for (index, app) in config.applications.iter().enumerate() {
        let Some(id) = &app.id else { continue };
        if !is_snowflake(id.as_str()) || !routed.insert(id.as_str()) {
            tracing::warn!(application = %id, "discord: no interactions route of its own for this application id");
            continue;
        }
        let path = format!("{}/{id}", config.path.trim_end_matches('/'));
        router = router.route(&path, post(receive).with_state(state(Some(index))));
    }
    router
}

/// Whether `id` can be a Discord snowflake (and so a path segment of its own).
pub(crate) fn is_snowflake(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

fn fresh(timestamp: &[u8], max_skew: Duration) -> bool {
    let Some(seconds) = std::str::from_utf8(timestamp)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
    else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now.abs_diff(seconds) <= max_skew.as_secs()
}

async fn receive(State(state): State<EndpointState>, headers: HeaderMap, body: Bytes) -> Response {
    let deadline = Instant::now() + state.config.defer_after;
    let ingress = &state.ingress;
    let signature = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    let timestamp = headers.get(TIMESTAMP_HEADER).map(|v| v.as_bytes());
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return ingress.refuse(&Platform::DISCORD, StatusCode::UNAUTHORIZED, "signature");
    };
    let Some(application) = state.signed_by(timestamp, &body, signature) else {
        return ingress.refuse(&Platform::DISCORD, StatusCode::UNAUTHORIZED, "signature");
    };
    if !fresh(timestamp, state.config.max_clock_skew) {
        return ingress.refuse(
            &Platform::DISCORD,
            StatusCode::UNAUTHORIZED,
            "stale_timestamp",
        );
    }
    let Ok(interaction) = serde_json::from_slice::<Value>(&body) else {
        return ingress.refuse(
            &Platform::DISCORD,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        );
    };
    if state.config.serves_several()
        && let Some(id) = &application.id
        && interaction
            .get("application_id")
            .and_then(Value::as_str)
            .is_some_and(|named| named != id.as_str())
    {
        // Signed with one application's key, for another: not something Discord sends.
        return ingress.refuse(
            &Platform::DISCORD,
            StatusCode::UNAUTHORIZED,
            "unknown_application",
        );
    }
    if interaction.get("type").and_then(Value::as_u64) == Some(AUTOCOMPLETE) {
        // Autocomplete wants choices, not a message: no handler reply fits, so none are offered.
        return json_response(&json!({ "type": AUTOCOMPLETE_RESULT, "data": { "choices": [] } }));
    }
    let Some(mut event) = from_interaction(&interaction) else {
        // PING: Discord checks the endpoint with it.
        return json_response(&json!({ "type": PONG }));
    };
    event.channel = application.id.clone();
    let id = event.id.to_string();
    let Some(reply) = state.pending.wait(&id) else {
        return ingress.refuse(
            &Platform::DISCORD,
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_interactions",
        );
    };
    // Discord's 3 seconds count from the request, so the deadline does too, also when the queue
    // is slow to take the interaction (a busy PostgreSQL, a full buffer under Overflow::Wait).
    match tokio::time::timeout_at(deadline, ingress.submit(vec![event])).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            state.pending.forget(&id);
            return bot_core::adapter::rejection(&error);
        }
        Err(_) => {
            state.pending.forget(&id);
            ingress
                .telemetry()
                .webhook_rejected(&Platform::DISCORD, "queue_timeout");
            let error = bot_core::Error::new(
                bot_core::ErrorKind::QueueFull,
                "the queue did not take the interaction in time",
            )
            .with_retry_after(Duration::from_secs(1));
            return bot_core::adapter::rejection(&error);
        }
    }
    tokio::pin!(reply);
    match tokio::time::timeout_at(deadline, &mut reply).await {
        Ok(Ok(response)) => json_response(&response),
        Ok(Err(_)) => deferred(),
        Err(_) if state.pending.defer(&id) => deferred(),
        // The reply went into the channel as the deadline passed: it is there now.
        Err(_) => match reply.await {
            Ok(response) => json_response(&response),
            Err(_) => deferred(),
        },
    }
}

fn deferred() -> Response {
    json_response(&json!({ "type": DEFERRED_CHANNEL_MESSAGE }))
}

fn json_response(value: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_signatures_are_checked() {
        assert!(PublicKey::from_hex("zz").is_err());
        assert!(PublicKey::from_hex(&"00".repeat(31)).is_err());
        let key =
            PublicKey::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        assert!(!key.verify(b"1", b"{}", b"not hex"));
        assert!(!key.verify(b"1", b"{}", "00".repeat(64).as_bytes()));
    }

    #[test]
    fn only_snowflakes_get_a_path_of_their_own() {
        assert!(is_snowflake("1100000000000000001"));
        for not_one in ["", "app/2", "{id}", "12345678901234567890123", "１"] {
            assert!(!is_snowflake(not_one), "{not_one:?}");
        }
    }

    /// The encoding of the identity point: a small-order key (and signature part).
    const IDENTITY: &str = "0100000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn weak_keys_are_a_config_error() {
        for weak in [&"00".repeat(32), IDENTITY] {
            let error = PublicKey::from_hex(weak).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::Config);
            assert!(error.to_string().contains("weak"), "{error}");
        }
    }

    /// With a small-order key, the identity as `R` and a zero `s` satisfy the plain Ed25519
    /// equation for every message: only the strict check refuses them.
    #[test]
    fn a_forged_small_order_signature_is_refused() {
        use ed25519_dalek::Verifier as _;
        let weak =
            VerifyingKey::from_bytes(&hex::decode(IDENTITY).unwrap().try_into().unwrap()).unwrap();
        let forged = format!("{IDENTITY}{}", "00".repeat(32));
        let bytes: [u8; 64] = hex::decode(&forged).unwrap().try_into().unwrap();
        assert!(
            weak.verify(b"1{\"type\":2}", &Signature::from_bytes(&bytes))
                .is_ok(),
            "the plain check lets it through"
        );
        let key = PublicKey(weak);
        assert!(!key.verify(b"1", br#"{"type":2}"#, forged.as_bytes()));
        assert!(!key.verify(b"", b"", forged.as_bytes()));
    }

    /// RFC 8032, test 1: the empty message (timestamp and body both empty).
    #[test]
    fn the_rfc_8032_known_answer_verifies() {
        let key =
            PublicKey::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        let signature = b"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        assert!(key.verify(b"", b"", signature));
        assert!(!key.verify(b"", b"x", signature));
    }

    #[test]
    fn timestamps_must_be_recent() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(fresh(now.to_string().as_bytes(), DEFAULT_MAX_CLOCK_SKEW));
        assert!(!fresh(
            (now - 600).to_string().as_bytes(),
            DEFAULT_MAX_CLOCK_SKEW
        ));
        assert!(!fresh(b"yesterday", DEFAULT_MAX_CLOCK_SKEW));
    }

    #[test]
    fn a_reply_goes_to_the_waiting_response_once_then_follow_ups() {
        let pending = Pending::default();
        let mut receiver = pending.wait("1").unwrap();
        assert!(matches!(
            pending.route("1", json!({"type": 4})),
            Route::Answered
        ));
        assert_eq!(receiver.try_recv().unwrap()["type"], 4);
        assert!(matches!(pending.route("1", json!({})), Route::FollowUp));
        assert!(matches!(
            pending.route("unknown", json!({})),
            Route::Callback
        ));

        let _receiver = pending.wait("2").unwrap();
        assert!(pending.defer("2"));
        assert!(matches!(pending.route("2", json!({})), Route::FollowUp));
        assert!(matches!(pending.route("2", json!({})), Route::FollowUp));
    }
}
