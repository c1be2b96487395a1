//! Test Messenger bots offline: a fake Graph API and signed webhook builders (feature `testing`).
//!
//! [`FakeMessenger`] serves the Send API (`POST /me/messages`), user profiles (`GET /{psid}`),
//! the page's Messenger profile (`/me/messenger_profile`: set, read, delete; a persistent menu
//! needs a Get Started button) and its webhook subscription (`/me/subscribed_apps`) on 127.0.0.1
//! with Messenger's rules: the page access token is checked (Graph
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
//! use bot_messenger::{ConfigureApi as _, Messenger};
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

mod graph;
mod setup;
mod webhook;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bot_core::testing::fake_api::{Call, FakeApi, FakeRequest, FakeResponse};
use http::StatusCode;
use serde_json::{Map, Value};

use graph::answer;
pub use graph::graph_error;
pub use setup::FAKE_APP_ID;
use setup::Page;
pub use webhook::{
    DEFAULT_PAGE_ID, SignedWebhook, WebhookBuilder, echo_item, message_item, postback_item,
    text_item, verify_subscription,
};

use crate::client::SEND_PATH;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A fake Graph API (Send API, profiles, the page's setup) on 127.0.0.1.
#[derive(Clone)]
pub struct FakeMessenger {
    api: FakeApi,
    text_faults: Arc<Mutex<Vec<TextFault>>>,
    page: Arc<Page>,
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
        let page = Arc::new(Page::default());
        let state = page.clone();
        let api = FakeApi::start(move |request| {
            text_fault(&faults, request).unwrap_or_else(|| answer(&token, &state, request))
        })
        .await?;
        Ok(Self {
            api,
            text_faults,
            page,
        })
    }

    /// The page's Messenger profile as set so far (`get_started`, `greeting`,
    /// `persistent_menu`, ...), in Meta's JSON.
    pub fn messenger_profile(&self) -> Map<String, Value> {
        self.page.profile()
    }

    /// The webhook fields the app is subscribed to, if it is.
    pub fn subscribed_fields(&self) -> Option<Vec<String>> {
        self.page.subscribed_fields()
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
