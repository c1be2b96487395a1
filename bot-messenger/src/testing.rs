//! Test Messenger bots offline: a fake Graph API and signed webhook builders (feature `testing`).
//!
//! [`FakeMessenger`] serves the Send API (`POST /me/messages`) and user profiles
//! (`GET /{psid}`) on 127.0.0.1 with Messenger's rules: the page access token is checked (Graph
//! error 190), a call carries a `message` or a `sender_action` but not both, a message needs a
//! valid `messaging_type` (and a `tag` for `MESSAGE_TAG`), text or an attachment, at most 2,000
//! characters of text and at most 13 quick replies; refusals are Graph error bodies. Every call is
//! recorded; [`FakeMessenger::api`] injects latency, 429, 5xx and Graph errors
//! ([`graph_error`]).
//!
//! [`WebhookBuilder`] makes webhook bodies the way Meta sends them (`{"object": "page", "entry":
//! [...]}`), signed with an app secret; [`SignedWebhook::post`] delivers one.
//!
//! # Examples
//!
//! ```
//! use bot_core::{Bot, Context, Error, Event, Secret};
//! use bot_messenger::Messenger;
//! use bot_messenger::testing::{FakeMessenger, WebhookBuilder};
//!
//! async fn echo(cx: Context, event: Event) -> Result<(), Error> {
//!     cx.reply(event.text_content().unwrap_or_default()).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fake = FakeMessenger::start("page-token").await?;
//! let messenger = Messenger::builder("app-secret", "verify-token", "page-token")
//!     .api_base(fake.url())
//!     .build()?;
//! let bot = Bot::builder().adapter(messenger).handler(echo).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}/messenger/webhook", listener.local_addr()?);
//! let server = tokio::spawn(bot.clone().serve_with_shutdown(listener, std::future::pending()));
//!
//! let webhook = WebhookBuilder::new().text("PSID1", "hello").sign(&Secret::new("app-secret"));
//! assert_eq!(webhook.post(&url).await?, 200);
//! let sent = fake.wait_for_messages(1).await;
//! assert_eq!(sent[0].recipient_id.as_deref(), Some("PSID1"));
//! assert_eq!(sent[0].text(), Some("hello"));
//! assert_eq!(sent[0].messaging_type.as_deref(), Some("RESPONSE"));
//! bot.request_shutdown();
//! server.await??;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bot_core::Secret;
use bot_core::testing::fake_api::{Call, FakeApi, FakeRequest, FakeResponse, Fault};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::SEND_PATH;
use crate::model::send::{
    GraphError, MAX_PAYLOAD_CHARS, MAX_QUICK_REPLIES, MAX_QUICK_REPLY_TITLE_CHARS, MAX_TEXT_CHARS,
};
use crate::webhook::{SIGNATURE_HEADER, sign};

/// The page id [`WebhookBuilder`] uses unless told otherwise.
pub const DEFAULT_PAGE_ID: &str = "106000000000001";

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A Graph error answer for [`FakeApi::inject`]: `{"error": {"message", "type", "code",
/// "error_subcode", "fbtrace_id"}}` with `status`.
///
/// # Examples
///
/// ```
/// use bot_messenger::testing::graph_error;
/// use http::StatusCode;
///
/// // The next call is refused as Meta refuses a call over the page's rate limit.
/// let fault = graph_error(StatusCode::BAD_REQUEST, 613, None).times(1);
/// # let _ = fault;
/// ```
pub fn graph_error(status: StatusCode, code: i64, subcode: Option<i64>) -> Fault {
    Fault::response(graph_response(
        status,
        code,
        subcode,
        &graph_message(code, subcode),
    ))
}

fn graph_message(code: i64, subcode: Option<i64>) -> String {
    let text = match (code, subcode) {
        (4, _) => "Application request limit reached",
        (613, _) => "Calls to this api have exceeded the rate limit.",
        (80_001 | 80_002 | 80_006, _) => {
            "There have been too many calls for this business use case. Wait a bit and try again."
        }
        (1200, _) => "Temporary send message failure. Please try again later",
        (2, _) => "An unexpected error has occurred. Please retry your request later.",
        (190, _) => "Invalid OAuth access token - Cannot parse access token",
        (100, Some(2_018_001)) => "No matching user found",
        (10, Some(2_018_278)) => {
            "This message is sent outside of allowed window. Learn more about the new policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview"
        }
        (551, _) => "This person isn't available right now.",
        _ => "Invalid parameter",
    };
    format!("(#{code}) {text}")
}

fn graph_response(
    status: StatusCode,
    code: i64,
    subcode: Option<i64>,
    message: &str,
) -> FakeResponse {
    let error = GraphError {
        message: message.to_owned(),
        error_type: if code == 190 || code == 100 || code == 10 {
            "OAuthException".to_owned()
        } else {
            "GraphMethodException".to_owned()
        },
        code,
        error_subcode: subcode,
        fbtrace_id: Some(format!("Fake{:012}", next_id())),
    };
    FakeResponse::json(status, &error.to_body())
}

fn invalid(message: &str) -> FakeResponse {
    graph_response(
        StatusCode::BAD_REQUEST,
        100,
        None,
        &format!("(#100) {message}"),
    )
}

/// A fake Graph API (Send API and profiles) on 127.0.0.1.
#[derive(Clone)]
pub struct FakeMessenger {
    api: FakeApi,
    text_faults: Arc<Mutex<Vec<TextFault>>>,
}

/// An answer for the next messages whose text contains `needle`.
struct TextFault {
    needle: String,
    response: FakeResponse,
    remaining: usize,
}

impl fmt::Debug for FakeMessenger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeMessenger")
            .field("api", &self.api)
            .finish()
    }
}

/// A Send API call that carried a message, accepted or refused.
#[derive(Debug, Clone)]
pub struct SentMessage {
    /// `recipient.id`.
    pub recipient_id: Option<String>,
    /// The whole `recipient` object (`{"id"}` or `{"user_ref"}`).
    pub recipient: Value,
    /// `messaging_type`.
    pub messaging_type: Option<String>,
    /// `tag`.
    pub tag: Option<String>,
    /// The `message` object.
    pub message: Value,
    /// The bearer token presented.
    pub bearer: Option<String>,
    /// What the fake answered.
    pub status: StatusCode,
}

impl SentMessage {
    /// The text, for text messages.
    pub fn text(&self) -> Option<&str> {
        self.message.get("text").and_then(Value::as_str)
    }

    /// The attachment's type, for attachment messages.
    pub fn attachment_type(&self) -> Option<&str> {
        self.message
            .pointer("/attachment/type")
            .and_then(Value::as_str)
    }
}

/// A Send API call that carried a sender action.
#[derive(Debug, Clone)]
pub struct SentAction {
    /// `recipient.id`.
    pub recipient_id: Option<String>,
    /// `sender_action`.
    pub action: String,
    /// What the fake answered.
    pub status: StatusCode,
}

impl FakeMessenger {
    /// Starts the fake; calls must present `page_access_token` (as a bearer token or the
    /// `access_token` query parameter).
    ///
    /// # Errors
    ///
    /// Fails when no port can be bound.
    pub async fn start(page_access_token: &str) -> std::io::Result<Self> {
        let token = page_access_token.to_owned();
        let text_faults: Arc<Mutex<Vec<TextFault>>> = Arc::default();
        let faults = text_faults.clone();
        let api = FakeApi::start(move |request| {
            text_fault(&faults, request).unwrap_or_else(|| answer(&token, request))
        })
        .await?;
        Ok(Self { api, text_faults })
    }

    /// Answers the next `times` messages whose text contains `needle` with `response` instead of
    /// accepting them, whenever they come: a fault on one part of a reply of several messages,
    /// which [`FakeApi::inject`] (the next calls, whichever they are) cannot aim at.
    pub fn refuse_texts_containing(
        &self,
        needle: impl Into<String>,
        response: FakeResponse,
        times: usize,
    ) {
        self.text_faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(TextFault {
                needle: needle.into(),
                response,
                remaining: times,
            });
    }

    /// The base URL to give the client (`MESSENGER_API_BASE`).
    pub fn url(&self) -> String {
        self.api.url()
    }

    /// The underlying fake, to inject faults and latency or read raw calls.
    pub fn api(&self) -> &FakeApi {
        &self.api
    }

    /// Send API calls with a message so far, in arrival order.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.api
            .calls_to(SEND_PATH)
            .iter()
            .filter_map(sent_message)
            .collect()
    }

    /// Send API calls with a sender action so far, in arrival order.
    pub fn sender_actions(&self) -> Vec<SentAction> {
        self.api
            .calls_to(SEND_PATH)
            .iter()
            .filter_map(|call| {
                let json = call.request.json();
                Some(SentAction {
                    recipient_id: json["recipient"]["id"].as_str().map(str::to_owned),
                    action: json.get("sender_action")?.as_str()?.to_owned(),
                    status: call.status,
                })
            })
            .collect()
    }

    /// Waits until `count` calls with a message arrived (whatever the answer) and returns them.
    ///
    /// # Panics
    ///
    /// When they do not arrive within [`bot_core::testing::fake_api::DEFAULT_WAIT`].
    pub async fn wait_for_messages(&self, count: usize) -> Vec<SentMessage> {
        self.api
            .wait_until(&format!("{count} messages"), |_| {
                let messages = self.messages();
                (messages.len() >= count).then_some(messages)
            })
            .await
    }
}

fn sent_message(call: &Call) -> Option<SentMessage> {
    let json = call.request.json();
    let message = json.get("message")?.clone();
    let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
    Some(SentMessage {
        recipient_id: json["recipient"]["id"].as_str().map(str::to_owned),
        recipient: json["recipient"].clone(),
        messaging_type: text("messaging_type"),
        tag: text("tag"),
        message,
        bearer: call.request.bearer().map(str::to_owned),
        status: call.status,
    })
}

/// The answer of the first text fault that matches the request's message text, if any.
fn text_fault(faults: &Mutex<Vec<TextFault>>, request: &FakeRequest) -> Option<FakeResponse> {
    let json = request.json();
    let text = json.pointer("/message/text").and_then(Value::as_str)?;
    let mut faults = faults.lock().unwrap_or_else(|p| p.into_inner());
    let fault = faults
        .iter_mut()
        .find(|f| f.remaining > 0 && text.contains(&f.needle))?;
    fault.remaining -= 1;
    Some(fault.response.clone())
}

fn answer(token: &str, request: &FakeRequest) -> FakeResponse {
    let presented = request
        .bearer()
        .or_else(|| request.query_param("access_token"));
    if presented != Some(token) {
        return graph_response(
            StatusCode::BAD_REQUEST,
            190,
            None,
            &graph_message(190, None),
        );
    }
    match (&request.method, request.path.as_str()) {
        (&Method::POST, SEND_PATH) => send(&request.json()),
        (&Method::GET, path) if path.len() > 1 && !path[1..].contains('/') => {
            let psid = &path[1..];
            FakeResponse::json(
                StatusCode::OK,
                &json!({
                    "first_name": "User",
                    "last_name": psid,
                    "profile_pic": format!("https://fake.invalid/{psid}.jpg"),
                    "id": psid,
                }),
            )
        }
        _ => graph_response(
            StatusCode::NOT_FOUND,
            100,
            None,
            "(#100) Unknown path components",
        ),
    }
}

fn send(body: &Value) -> FakeResponse {
    let Some(recipient) = body.get("recipient").filter(|r| r.is_object()) else {
        return invalid("The parameter recipient is required");
    };
    let recipient_id = recipient
        .get("id")
        .or_else(|| recipient.get("user_ref"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty());
    let Some(recipient_id) = recipient_id else {
        return invalid("param recipient must have an id or a user_ref");
    };
    match (body.get("message"), body.get("sender_action")) {
        (Some(_), Some(_)) => invalid("sender_action must be sent alone, without a message"),
        (None, None) => invalid("Must send either message or sender_action"),
        (None, Some(action)) => match action.as_str() {
            Some("typing_on" | "typing_off" | "mark_seen") => {
                FakeResponse::json(StatusCode::OK, &json!({ "recipient_id": recipient_id }))
            }
            _ => invalid("param sender_action must be one of {typing_on, typing_off, mark_seen}"),
        },
        (Some(message), None) => match check_message(body, message) {
            Ok(()) => FakeResponse::json(
                StatusCode::OK,
                &json!({
                    "recipient_id": recipient_id,
                    "message_id": format!("m_fake{:016}", next_id()),
                }),
            ),
            Err(refusal) => *refusal,
        },
    }
}

fn check_message(body: &Value, message: &Value) -> Result<(), Box<FakeResponse>> {
    let refuse = |m: &str| Err(Box::new(invalid(m)));
    match body.get("messaging_type").and_then(Value::as_str) {
        Some("RESPONSE" | "UPDATE") => {}
        Some("MESSAGE_TAG") if body.get("tag").and_then(Value::as_str).is_some() => {}
        Some("MESSAGE_TAG") => return refuse("param tag is required for MESSAGE_TAG"),
        _ => return refuse("param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}"),
    }
    match (message.get("text"), message.get("attachment")) {
        (Some(_), Some(_)) => return refuse("message cannot have both text and attachment"),
        (None, None) => return refuse("message must have text or attachment"),
        (Some(text), None) => {
            let Some(text) = text.as_str().filter(|t| !t.is_empty()) else {
                return refuse("param message[text] must be a non-empty UTF-8 encoded string");
            };
            if text.chars().count() > MAX_TEXT_CHARS {
                return refuse(
                    "param message[text] must be UTF-8 encoded with 2000 or fewer characters",
                );
            }
        }
        (None, Some(attachment)) => {
            if attachment.get("type").and_then(Value::as_str).is_none() {
                return refuse("param message[attachment][type] is required");
            }
        }
    }
    if let Some(quick_replies) = message.get("quick_replies") {
        let Some(items) = quick_replies.as_array() else {
            return refuse("param message[quick_replies] must be an array");
        };
        if items.len() > MAX_QUICK_REPLIES {
            return refuse("param message[quick_replies] must have at most 13 items");
        }
        for item in items {
            match item.get("content_type").and_then(Value::as_str) {
                Some("text") => {
                    let title = item.get("title").and_then(Value::as_str).unwrap_or("");
                    let payload = item.get("payload").and_then(Value::as_str).unwrap_or("");
                    if title.is_empty() || title.chars().count() > MAX_QUICK_REPLY_TITLE_CHARS {
                        return refuse("param title must be 1 to 20 characters");
                    }
                    if payload.is_empty() || payload.chars().count() > MAX_PAYLOAD_CHARS {
                        return refuse("param payload must be 1 to 1000 characters");
                    }
                }
                Some("user_email" | "user_phone_number") => {}
                _ => {
                    return refuse(
                        "param content_type must be text, user_email or user_phone_number",
                    );
                }
            }
        }
    }
    Ok(())
}

/// A text message item from `psid` to `page_id`, with a fresh `mid`.
pub fn text_item(page_id: &str, psid: &str, text: &str) -> Value {
    message_item(page_id, psid, json!({ "text": text }))
}

/// A message item from `psid` to `page_id` with the given `message` fields and a fresh `mid`.
pub fn message_item(page_id: &str, psid: &str, mut message: Value) -> Value {
    let n = next_id();
    if let Value::Object(map) = &mut message {
        map.entry("mid")
            .or_insert_with(|| json!(format!("m_test{n:020}")));
    }
    json!({
        "sender": {"id": psid},
        "recipient": {"id": page_id},
        "timestamp": timestamp(n),
        "message": message,
    })
}

/// An echo of a text message the page sent to `psid`.
pub fn echo_item(page_id: &str, psid: &str, text: &str) -> Value {
    let n = next_id();
    json!({
        "sender": {"id": page_id},
        "recipient": {"id": psid},
        "timestamp": timestamp(n),
        "message": {"mid": format!("m_echo{n:020}"), "is_echo": true, "app_id": 1_517_776_481_860_111_u64,
                    "text": text},
    })
}

/// A postback item: `psid` tapped a button titled `title` carrying `payload`.
pub fn postback_item(page_id: &str, psid: &str, title: &str, payload: &str) -> Value {
    let n = next_id();
    json!({
        "sender": {"id": psid},
        "recipient": {"id": page_id},
        "timestamp": timestamp(n),
        "postback": {"title": title, "payload": payload, "mid": format!("m_pb{n:020}")},
    })
}

fn timestamp(n: u64) -> i64 {
    1_700_000_000_000_i64 + i64::try_from(n).unwrap_or(0)
}

/// Builds a webhook body: `{"object": "page", "entry": [{"id", "time", "messaging": [...]}]}`.
///
/// Items go into the latest entry; [`WebhookBuilder::entry`] starts another.
#[derive(Debug, Clone)]
#[must_use]
pub struct WebhookBuilder {
    object: String,
    page_id: String,
    entries: Vec<Value>,
}

impl Default for WebhookBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookBuilder {
    /// A `page` body for page [`DEFAULT_PAGE_ID`], with no entries yet.
    pub fn new() -> Self {
        Self {
            object: "page".to_owned(),
            page_id: DEFAULT_PAGE_ID.to_owned(),
            entries: Vec::new(),
        }
    }

    /// Sets `object` (`page`, `instagram`, or anything else to test refusals).
    pub fn object(mut self, object: impl Into<String>) -> Self {
        self.object = object.into();
        self
    }

    /// Sets the page id of the entries started from now on.
    pub fn page_id(mut self, page_id: impl Into<String>) -> Self {
        self.page_id = page_id.into();
        self
    }

    /// Starts a new entry (Meta batches several entries in one body).
    pub fn entry(mut self) -> Self {
        let n = next_id();
        self.entries.push(json!({
            "id": self.page_id,
            "time": timestamp(n),
            "messaging": [],
        }));
        self
    }

    fn push(mut self, list: &str, item: Value) -> Self {
        if self.entries.is_empty() {
            self = self.entry();
        }
        if let Some(entry) = self.entries.last_mut()
            && let Value::Object(map) = entry
        {
            let items = map.entry(list).or_insert_with(|| json!([]));
            if let Value::Array(items) = items {
                items.push(item);
            }
        }
        self
    }

    /// Adds any item to the latest entry's `messaging[]`.
    pub fn item(self, item: Value) -> Self {
        self.push("messaging", item)
    }

    /// Adds any item to the latest entry's `standby[]`.
    pub fn standby(self, item: Value) -> Self {
        self.push("standby", item)
    }

    /// Adds a text message from `psid` (see [`text_item`]).
    pub fn text(self, psid: &str, text: &str) -> Self {
        let item = text_item(&self.page_id, psid, text);
        self.item(item)
    }

    /// Adds an echo of a text the page sent to `psid` (see [`echo_item`]).
    pub fn echo(self, psid: &str, text: &str) -> Self {
        let item = echo_item(&self.page_id, psid, text);
        self.item(item)
    }

    /// Adds a postback from `psid` (see [`postback_item`]).
    pub fn postback(self, psid: &str, title: &str, payload: &str) -> Self {
        let item = postback_item(&self.page_id, psid, title, payload);
        self.item(item)
    }

    /// Adds a quick reply tap: `psid` sent `text` by tapping a chip carrying `payload`.
    pub fn quick_reply(self, psid: &str, text: &str, payload: &str) -> Self {
        let item = message_item(
            &self.page_id,
            psid,
            json!({"text": text, "quick_reply": {"payload": payload}}),
        );
        self.item(item)
    }

    /// The body's bytes.
    pub fn body(&self) -> Bytes {
        Bytes::from(json!({"object": self.object, "entry": self.entries}).to_string())
    }

    /// The body signed with `app_secret`.
    pub fn sign(&self, app_secret: &Secret) -> SignedWebhook {
        let body = self.body();
        SignedWebhook {
            signature: sign(app_secret, &body),
            body,
        }
    }
}

/// A webhook body with its `X-Hub-Signature-256`.
#[derive(Debug, Clone)]
pub struct SignedWebhook {
    /// The body.
    pub body: Bytes,
    /// The `X-Hub-Signature-256` value (`sha256=...`).
    pub signature: String,
}

impl SignedWebhook {
    /// Posts it to `url` over HTTP and returns the status.
    ///
    /// # Errors
    ///
    /// Fails when the request cannot be made.
    pub async fn post(&self, url: &str) -> Result<u16, reqwest::Error> {
        let response = reqwest::Client::new()
            .post(url)
            .header(SIGNATURE_HEADER, &self.signature)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(self.body.clone())
            .send()
            .await?;
        Ok(response.status().as_u16())
    }
}

/// Makes the verification request Meta sends when the webhook is subscribed, and returns the
/// status and body.
///
/// # Errors
///
/// Fails when the request cannot be made.
pub async fn verify_subscription(
    url: &str,
    verify_token: &str,
    challenge: &str,
) -> Result<(u16, String), reqwest::Error> {
    let url = format!(
        "{url}?hub.mode=subscribe&hub.verify_token={}&hub.challenge={}",
        percent_encode(verify_token),
        percent_encode(challenge)
    );
    let response = reqwest::Client::new().get(url).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
