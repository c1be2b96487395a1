//! Test LINE bots offline: a fake LINE API and signed webhook builders (feature `testing`).
//!
//! [`FakeLine`] serves the Messaging API endpoints the client uses on 127.0.0.1 (reply, push,
//! multicast, profile, content, loading animation, rich menus, the webhook endpoint), with LINE's
//! rules: the bearer token is checked (401), reply tokens are single-use (400 `Invalid reply
//! token`), a reply carries 1 to 5 messages, and a push or multicast whose `X-Line-Retry-Key` was
//! accepted before answers 409 with `x-line-accepted-request-id`. Every call is recorded;
//! [`FakeLine::api`] injects latency, 429 and 5xx.
//!
//! [`WebhookBuilder`] makes webhook bodies the way LINE sends them, signed with a channel secret.
//!
//! # Examples
//!
//! ```
//! use bot_core::{Bot, Context, Error, Event, Secret};
//! use bot_line::{ConfigureApi, Line};
//! use bot_line::testing::{FakeLine, WebhookBuilder};
//!
//! async fn echo(cx: Context, event: Event) -> Result<(), Error> {
//!     cx.reply(event.text_content().unwrap_or_default()).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fake = FakeLine::start("token").await?;
//! let line = Line::builder("secret", "token").api_base(fake.url()).build()?;
//! let bot = Bot::builder().adapter(line).handler(echo).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}/line/webhook", listener.local_addr()?);
//! let server = tokio::spawn(bot.clone().serve_with_shutdown(listener, std::future::pending()));
//!
//! let webhook = WebhookBuilder::new().text("U1", "hello").sign(&Secret::new("secret"));
//! let status = webhook.post(&url).await?;
//! assert_eq!(status, 200);
//! let replies = fake.wait_for_replies(1).await;
//! assert_eq!(replies[0].texts(), ["hello"]);
//! bot.request_shutdown();
//! server.await??;
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bot_core::Secret;
use bot_core::testing::fake_api::{Call, FakeApi, FakeApiBuilder, FakeRequest, FakeResponse};
use bot_core::testing::{RateWindow, RateWindowReport};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::model::send::MAX_MESSAGES_PER_CALL;
use crate::webhook::{SIGNATURE_HEADER, sign};

/// The path of the Reply API.
pub const REPLY_PATH: &str = "/v2/bot/message/reply";
/// The path of the Push API.
pub const PUSH_PATH: &str = "/v2/bot/message/push";
/// The path of the Multicast API.
pub const MULTICAST_PATH: &str = "/v2/bot/message/multicast";
/// The path of the loading animation API.
pub const LOADING_PATH: &str = "/v2/bot/chat/loading/start";

mod setup;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Rules {
    used_reply_tokens: HashSet<String>,
    /// Accepted `X-Line-Retry-Key`s and the number of the request that carried each: a UUID (as
    /// the client sends) without allocating, any other string as it came.
    accepted_retry_keys: HashMap<u128, u64>,
    accepted_other_keys: HashMap<String, u64>,
    /// Push and multicast calls in a sliding second, and the limit LINE would answer 429 past.
    push_rate: RateWindow,
    /// Pushes refused with 409 because their retry key was accepted before.
    retry_key_conflicts: u64,
    setup: setup::Setup,
}

/// A fake LINE Messaging API on 127.0.0.1.
#[derive(Clone)]
pub struct FakeLine {
    api: FakeApi,
    rules: Arc<Mutex<Rules>>,
}

impl fmt::Debug for FakeLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeLine").field("api", &self.api).finish()
    }
}

/// A reply call the fake accepted or refused.
#[derive(Debug, Clone)]
pub struct ReplyCall {
    /// `replyToken`.
    pub reply_token: String,
    /// The message objects.
    pub messages: Vec<Value>,
    /// The bearer token presented.
    pub bearer: Option<String>,
    /// What the fake answered.
    pub status: StatusCode,
}

impl ReplyCall {
    /// The texts of the text messages.
    pub fn texts(&self) -> Vec<&str> {
        texts(&self.messages)
    }
}

/// A push call the fake accepted or refused.
#[derive(Debug, Clone)]
pub struct PushCall {
    /// `to`.
    pub to: String,
    /// The message objects.
    pub messages: Vec<Value>,
    /// `X-Line-Retry-Key`, if sent.
    pub retry_key: Option<String>,
    /// What the fake answered.
    pub status: StatusCode,
}

impl PushCall {
    /// The texts of the text messages.
    pub fn texts(&self) -> Vec<&str> {
        texts(&self.messages)
    }
}

fn texts(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .filter(|m| m["type"] == "text")
        .filter_map(|m| m["text"].as_str())
        .collect()
}

impl FakeLine {
    /// Starts the fake; API calls must carry `Authorization: Bearer <access_token>`.
    ///
    /// # Errors
    ///
    /// Fails when no port can be bound.
    pub async fn start(access_token: &str) -> std::io::Result<Self> {
        Self::start_with(access_token, FakeApi::builder()).await
    }

    /// As [`FakeLine::start`], with the HTTP/2 stream limit or first latency of `options`.
    ///
    /// # Errors
    ///
    /// Fails when no port can be bound.
    pub async fn start_with(access_token: &str, options: FakeApiBuilder) -> std::io::Result<Self> {
        let access_token = access_token.to_owned();
        let rules = Arc::new(Mutex::new(Rules::default()));
        let shared = rules.clone();
        let api = options
            .start(move |request| answer(&access_token, &shared, request))
            .await?;
        Ok(Self { api, rules })
    }

    /// The base URL to give the client (`LINE_API_BASE`).
    pub fn url(&self) -> String {
        self.api.url()
    }

    /// The underlying fake, to inject faults and latency or read raw calls.
    pub fn api(&self) -> &FakeApi {
        &self.api
    }

    /// Answers push and multicast calls past `per_second` in any second with 429, as LINE
    /// does past a channel's limit (`None`: no limit, the default). Calls are counted either way
    /// ([`FakeLine::push_rate`]).
    pub fn limit_push_rate(&self, per_second: Option<u32>) {
        lock(&self.rules).push_rate.set_limit(per_second);
    }

    /// Push and multicast calls accepted in any one second at most, accepted and refused with 429.
    pub fn push_rate(&self) -> RateWindowReport {
        lock(&self.rules).push_rate.report()
    }

    /// Distinct `X-Line-Retry-Key`s accepted: the pushes LINE delivered, once each.
    pub fn accepted_retry_keys(&self) -> usize {
        let rules = lock(&self.rules);
        rules.accepted_retry_keys.len() + rules.accepted_other_keys.len()
    }

    /// Pushes refused with 409 because their retry key was accepted before: deliveries that
    /// would have been duplicates without the key.
    pub fn retry_key_conflicts(&self) -> u64 {
        lock(&self.rules).retry_key_conflicts
    }

    /// Reply calls so far.
    pub fn replies(&self) -> Vec<ReplyCall> {
        self.api
            .calls_to(REPLY_PATH)
            .iter()
            .map(reply_call)
            .collect()
    }

    /// Push calls so far.
    pub fn pushes(&self) -> Vec<PushCall> {
        self.api.calls_to(PUSH_PATH).iter().map(push_call).collect()
    }

    /// Waits until `count` reply calls arrived (whatever the answer) and returns them.
    ///
    /// # Panics
    ///
    /// When they do not arrive within [`bot_core::testing::fake_api::DEFAULT_WAIT`].
    pub async fn wait_for_replies(&self, count: usize) -> Vec<ReplyCall> {
        self.wait_for(REPLY_PATH, count).await;
        self.replies()
    }

    /// Waits until `count` push calls arrived (whatever the answer) and returns them.
    ///
    /// # Panics
    ///
    /// When they do not arrive within [`bot_core::testing::fake_api::DEFAULT_WAIT`].
    pub async fn wait_for_pushes(&self, count: usize) -> Vec<PushCall> {
        self.wait_for(PUSH_PATH, count).await;
        self.pushes()
    }

    async fn wait_for(&self, path: &str, count: usize) {
        self.api
            .wait_until(&format!("{count} calls to {path}"), |api| {
                (api.calls_to(path).len() >= count).then_some(())
            })
            .await;
    }
}

fn reply_call(call: &Call) -> ReplyCall {
    let json = call.request.json();
    ReplyCall {
        reply_token: json["replyToken"].as_str().unwrap_or_default().to_owned(),
        messages: json["messages"].as_array().cloned().unwrap_or_default(),
        bearer: call.request.bearer().map(str::to_owned),
        status: call.status,
    }
}

fn push_call(call: &Call) -> PushCall {
    let json = call.request.json();
    PushCall {
        to: json["to"].as_str().unwrap_or_default().to_owned(),
        messages: json["messages"].as_array().cloned().unwrap_or_default(),
        retry_key: call.request.header("x-line-retry-key").map(str::to_owned),
        status: call.status,
    }
}

fn error(status: StatusCode, message: &str) -> FakeResponse {
    FakeResponse::json(status, &json!({ "message": message }))
}

fn request_id(n: u64) -> String {
    format!("req-{n:016x}")
}

fn answer(access_token: &str, rules: &Mutex<Rules>, request: &FakeRequest) -> FakeResponse {
    let id = next_id();
    let request_id = request_id(id);
    if request.bearer() != Some(access_token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Authentication failed. Confirm that the access token in the authorization header is valid.",
        )
        .header("x-line-request-id", request_id);
    }
    let response = match (&request.method, request.path.as_str()) {
        (&Method::POST, REPLY_PATH) => reply(rules, request, &request.json()),
        (&Method::POST, PUSH_PATH | MULTICAST_PATH) => push(rules, request, id),
        (&Method::POST, LOADING_PATH) => FakeResponse::json(StatusCode::ACCEPTED, &json!({})),
        (&Method::GET, path)
            if path.starts_with("/v2/bot/message/") && path.ends_with("/content") =>
        {
            let id = &path["/v2/bot/message/".len()..path.len() - "/content".len()];
            FakeResponse {
                status: StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: Bytes::from(format!("content of message {id}")),
            }
            .header("content-type", "image/jpeg")
        }
        (&Method::GET, path) if path.starts_with("/v2/bot/profile/") => {
            let user_id = &path["/v2/bot/profile/".len()..];
            FakeResponse::json(
                StatusCode::OK,
                &json!({"displayName": format!("User {user_id}"), "userId": user_id, "language": "en"}),
            )
        }
        _ => setup::answer(&mut lock(rules).setup, request)
            .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "Not found")),
    };
    response.header("x-line-request-id", request_id)
}

fn messages_ok(body: &Value) -> Result<usize, Box<FakeResponse>> {
    count_ok(body["messages"].as_array().map_or(0, Vec::len))
}

fn count_ok(count: usize) -> Result<usize, Box<FakeResponse>> {
    if (1..=MAX_MESSAGES_PER_CALL).contains(&count) {
        Ok(count)
    } else {
        Err(Box::new(FakeResponse::json(
            StatusCode::BAD_REQUEST,
            &json!({"message": "The request body has 1 error(s)",
                    "details": [{"message": "Size must be between 1 and 5", "property": "messages"}]}),
        )))
    }
}

/// `{"sentMessages": [{"id": …, "quoteToken": …}, …]}` for `count` messages, written out (a
/// load test's fake answers tens of thousands of these a second).
fn sent_messages(count: usize) -> FakeResponse {
    use std::fmt::Write as _;
    let mut body = String::with_capacity(20 + 48 * count);
    body.push_str(r#"{"sentMessages":["#);
    for n in 0..count {
        if n > 0 {
            body.push(',');
        }
        let (id, quote) = (next_id(), next_id());
        let _ = write!(body, r#"{{"id":"{id}","quoteToken":"q-{quote}"}}"#);
    }
    body.push_str("]}");
    FakeResponse {
        status: StatusCode::OK,
        headers: http::HeaderMap::new(),
        body: Bytes::from(body),
    }
    .header("content-type", "application/json")
}

/// What the fake reads of a push or multicast body: how many messages it carries.
#[derive(serde::Deserialize)]
struct SendBody {
    messages: Option<Vec<serde::de::IgnoredAny>>,
}

fn reply(rules: &Mutex<Rules>, request: &FakeRequest, body: &Value) -> FakeResponse {
    if request.header("x-line-retry-key").is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "The retry key is not supported by this API",
        );
    }
    let count = match messages_ok(body) {
        Ok(count) => count,
        Err(refusal) => return *refusal,
    };
    let Some(token) = body["replyToken"].as_str().filter(|t| !t.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "Invalid reply token");
    };
    if !lock(rules).used_reply_tokens.insert(token.to_owned()) {
        return error(StatusCode::BAD_REQUEST, "Invalid reply token");
    }
    sent_messages(count)
}

fn push(rules: &Mutex<Rules>, request: &FakeRequest, id: u64) -> FakeResponse {
    // Not JSON, or `messages` not an array: no messages, refused below.
    let count = serde_json::from_slice::<SendBody>(&request.body)
        .ok()
        .and_then(|b| b.messages)
        .map_or(0, |m| m.len());
    let count = match count_ok(count) {
        Ok(count) => count,
        Err(refusal) => return *refusal,
    };
    let mut rules = lock(rules);
    if !rules.push_rate.admit() {
        return FakeResponse::json(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"message": "The API rate limit has been exceeded. Try again later."}),
        );
    }
    if let Some(key) = request.header("x-line-retry-key") {
        let rules = &mut *rules;
        let accepted = match uuid::Uuid::try_parse(key) {
            Ok(uuid) => *rules
                .accepted_retry_keys
                .entry(uuid.as_u128())
                .or_insert(id),
            Err(_) => *rules
                .accepted_other_keys
                .entry(key.to_owned())
                .or_insert(id),
        };
        if accepted != id {
            rules.retry_key_conflicts += 1;
            return FakeResponse::json(
                StatusCode::CONFLICT,
                &json!({"message": "The retry key is already accepted", "sentMessages": []}),
            )
            .header("x-line-accepted-request-id", request_id(accepted));
        }
    }
    if request.path == MULTICAST_PATH {
        FakeResponse::json(StatusCode::OK, &json!({}))
    } else {
        sent_messages(count)
    }
}

/// A text message event as LINE sends it, from `user_id` in a one-to-one chat, with a fresh
/// `webhookEventId`, reply token and message id.
pub fn text_event(user_id: &str, text: &str) -> Value {
    let n = next_id();
    json!({
        "type": "message",
        "mode": "active",
        "timestamp": 1_700_000_000_000_i64 + i64::try_from(n).unwrap_or(0),
        "source": {"type": "user", "userId": user_id},
        "webhookEventId": format!("01TEST{n:020}"),
        "deliveryContext": {"isRedelivery": false},
        "replyToken": format!("rt-{n:016x}"),
        "message": {"type": "text", "id": n.to_string(), "quoteToken": format!("q-{n}"), "text": text},
    })
}

/// The fields every event has: a fresh `webhookEventId` and timestamp, `source` a user.
fn base_event(kind: &str, user_id: &str) -> (u64, Value) {
    let n = next_id();
    let event = json!({
        "type": kind,
        "mode": "active",
        "timestamp": 1_700_000_000_000_i64 + i64::try_from(n).unwrap_or(0),
        "source": {"type": "user", "userId": user_id},
        "webhookEventId": format!("01TEST{n:020}"),
        "deliveryContext": {"isRedelivery": false},
    });
    (n, event)
}

/// A postback event as LINE sends it when `user_id` taps a postback action (a button, a
/// quick reply, a rich menu area): `data`, a fresh reply token. A quick reply or button that
/// says text arrives as a [`text_event`] instead.
pub fn postback_event(user_id: &str, data: &str) -> Value {
    let (n, mut event) = base_event("postback", user_id);
    event["replyToken"] = json!(format!("rt-{n:016x}"));
    event["postback"] = json!({"data": data});
    event
}

/// `user_id` added the bot as a friend (or unblocked it).
pub fn follow_event(user_id: &str) -> Value {
    let (n, mut event) = base_event("follow", user_id);
    event["replyToken"] = json!(format!("rt-{n:016x}"));
    event["follow"] = json!({"isUnblocked": false});
    event
}

/// The bot joined the group `group_id`.
pub fn join_event(group_id: &str) -> Value {
    let (n, mut event) = base_event("join", "");
    event["replyToken"] = json!(format!("rt-{n:016x}"));
    event["source"] = json!({"type": "group", "groupId": group_id});
    event
}

/// `user_id` joined the group `group_id`, where the bot is.
pub fn member_joined_event(group_id: &str, user_id: &str) -> Value {
    let (n, mut event) = base_event("memberJoined", "");
    event["replyToken"] = json!(format!("rt-{n:016x}"));
    event["source"] = json!({"type": "group", "groupId": group_id});
    event["joined"] = json!({"members": [{"type": "user", "userId": user_id}]});
    event
}

/// `user_id` unsent (deleted) their message `message_id`.
pub fn unsend_event(user_id: &str, message_id: &str) -> Value {
    let (_, mut event) = base_event("unsend", user_id);
    event["unsend"] = json!({"messageId": message_id});
    event
}

/// The same event marked as a redelivery (`deliveryContext.isRedelivery: true`).
pub fn redelivered(mut event: Value) -> Value {
    event["deliveryContext"] = json!({"isRedelivery": true});
    event
}

/// Builds a webhook body: `{"destination": ..., "events": [...]}`.
#[derive(Debug, Clone)]
#[must_use]
pub struct WebhookBuilder {
    destination: String,
    events: Vec<Value>,
}

impl Default for WebhookBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookBuilder {
    /// An empty body (the console's verification request) for the bot `Ubot`.
    pub fn new() -> Self {
        Self {
            destination: "U0123456789abcdef0123456789abcdef".to_owned(),
            events: Vec::new(),
        }
    }

    /// Sets `destination`, the bot's user id.
    pub fn destination(mut self, destination: impl Into<String>) -> Self {
        self.destination = destination.into();
        self
    }

    /// Adds a text message event (see [`text_event`]).
    pub fn text(self, user_id: &str, text: &str) -> Self {
        self.event(text_event(user_id, text))
    }

    /// Adds a postback event (see [`postback_event`]): a tap on a postback action.
    pub fn postback(self, user_id: &str, data: &str) -> Self {
        self.event(postback_event(user_id, data))
    }

    /// Adds a follow event (see [`follow_event`]).
    pub fn follow(self, user_id: &str) -> Self {
        self.event(follow_event(user_id))
    }

    /// Adds any event object.
    pub fn event(mut self, event: Value) -> Self {
        self.events.push(event);
        self
    }

    /// The events added so far.
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// The body's bytes.
    pub fn body(&self) -> Bytes {
        Bytes::from(json!({"destination": self.destination, "events": self.events}).to_string())
    }

    /// The body signed with `channel_secret`.
    pub fn sign(&self, channel_secret: &Secret) -> SignedWebhook {
        SignedWebhook::new(self.body(), SIGNATURE_HEADER, |body| {
            sign(channel_secret, body)
        })
    }
}

/// A webhook body with its signature (the core's type).
pub use bot_core::testing::SignedWebhook;

#[cfg(test)]
mod builder_tests {
    use super::*;
    use bot_core::EventKind;

    /// Each builder makes an event the adapter maps to the kind it stands for.
    #[test]
    fn every_builder_maps_to_its_kind() {
        let body = WebhookBuilder::new()
            .text("U1", "hi")
            .postback("U1", "dlg:1:2")
            .follow("U1")
            .event(join_event("C1"))
            .event(member_joined_event("C1", "U2"))
            .event(unsend_event("U1", "m1"))
            .body();
        let events = crate::event::events_from_body(&body).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
        assert_eq!(
            kinds,
            [
                "message",
                "postback",
                "followed",
                "member_joined",
                "member_joined",
                "deleted"
            ]
        );
        assert!(matches!(&events[1].kind, EventKind::Postback(p) if p.data == "dlg:1:2"));
        assert!(events[1].reply_token.is_some());
        assert_eq!(events[3].conversation.as_str(), "C1");
        assert!(
            matches!(&events[4].kind, EventKind::MemberJoined(m) if m.users[0].as_str() == "U2")
        );
    }
}
