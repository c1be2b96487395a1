//! Webhook bodies the way Meta sends them, signed, and the subscription handshake.

use bot_core::Secret;
use bytes::Bytes;
use serde_json::{Value, json};

use super::next_id;
use crate::webhook::{SIGNATURE_HEADER, sign};

/// The page id [`WebhookBuilder`] uses unless told otherwise.
pub const DEFAULT_PAGE_ID: &str = "106000000000001";

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
        SignedWebhook::new(self.body(), SIGNATURE_HEADER, |body| sign(app_secret, body))
    }
}

/// A webhook body with its signature (the core's type).
pub use bot_core::testing::SignedWebhook;

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
