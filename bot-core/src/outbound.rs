//! Sending messages back to a platform.
//!
//! Each adapter's API client implements [`Outbound`]; [`crate::Context::reply`] picks the one of the
//! event's platform. [`OutgoingMessage`] is the platform-neutral message that adapters map to their
//! own formats (LINE messages, Messenger templates, Discord components).

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::event::{ConversationId, EventId, MessageId, Platform, ReplyToken};
use crate::telemetry::Telemetry;

/// A message to send: text, an image, and optional quick replies or buttons.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// The text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An image to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// Quick replies offered under the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quick_replies: Vec<QuickReply>,
    /// Buttons attached to the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
}

impl OutgoingMessage {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }

    /// An image message.
    pub fn image(url: impl Into<String>) -> Self {
        Self {
            image: Some(Image {
                url: url.into(),
                preview_url: None,
            }),
            ..Self::default()
        }
    }

    /// Adds a quick reply.
    #[must_use]
    pub fn quick_reply(mut self, reply: QuickReply) -> Self {
        self.quick_replies.push(reply);
        self
    }

    /// Adds a button.
    #[must_use]
    pub fn button(mut self, button: Button) -> Self {
        self.buttons.push(button);
        self
    }
}

impl From<&str> for OutgoingMessage {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}

impl From<String> for OutgoingMessage {
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

impl From<&String> for OutgoingMessage {
    fn from(text: &String) -> Self {
        Self::text(text.as_str())
    }
}

/// An image by URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// The full-size image (HTTPS on most platforms).
    pub url: String,
    /// A smaller preview, where the platform wants one; `url` is used otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
}

/// A quick reply: a chip under the message that sends text or postback data when tapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuickReply {
    /// What the chip shows.
    pub label: String,
    /// What tapping it does.
    pub action: Action,
}

impl QuickReply {
    /// A quick reply that sends its label as a message.
    pub fn message(label: impl Into<String>) -> Self {
        let label = label.into();
        Self {
            action: Action::Message(label.clone()),
            label,
        }
    }

    /// A quick reply that sends postback `data`.
    pub fn postback(label: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            action: Action::Postback(data.into()),
        }
    }
}

/// A button attached to a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Button {
    /// What the button shows.
    pub label: String,
    /// What pressing it does.
    pub action: Action,
}

impl Button {
    /// A button that sends postback `data`.
    pub fn postback(label: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            action: Action::Postback(data.into()),
        }
    }

    /// A button that opens `url`.
    pub fn link(label: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            action: Action::Url(url.into()),
        }
    }
}

/// What a button or quick reply does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Sends this text as if the user typed it.
    Message(String),
    /// Sends a postback event with this data.
    Postback(String),
    /// Opens this URL.
    Url(String),
}

/// Where an outgoing message goes.
#[derive(Clone, PartialEq)]
pub struct Target {
    /// The conversation to post in.
    pub conversation: ConversationId,
    /// The reply token of the event being answered, on platforms that use one.
    pub reply_token: Option<ReplyToken>,
    /// The event being answered, if this is a reply (used as an idempotency key by some clients).
    pub in_reply_to: Option<EventId>,
    /// The message to thread under, if this is a reply.
    pub reply_to_message: Option<MessageId>,
    /// The event whose handler makes this send, replies and sends to other conversations alike
    /// (`None` outside a handler). With `send_index` it names a send the same way when the runtime
    /// retries the handler, so clients derive idempotency keys from it (LINE retry keys, Discord
    /// nonces) that let a retried handler's sends through once.
    pub origin: Option<EventId>,
    /// Which send of the handler this is, from 0, counted per event over replies and sends, so
    /// that two different sends of one handler stay two messages.
    pub send_index: u32,
}

impl Target {
    /// A message to a conversation, not in reply to anything.
    pub fn conversation(conversation: impl Into<ConversationId>) -> Self {
        Self {
            conversation: conversation.into(),
            reply_token: None,
            in_reply_to: None,
            reply_to_message: None,
            origin: None,
            send_index: 0,
        }
    }

    /// Whether this is a reply to an event.
    pub fn is_reply(&self) -> bool {
        self.in_reply_to.is_some()
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("conversation", &self.conversation)
            .field("reply_token", &self.reply_token)
            .field("in_reply_to", &self.in_reply_to)
            .field("reply_to_message", &self.reply_to_message)
            .field("origin", &self.origin)
            .field("send_index", &self.send_index)
            .finish()
    }
}

/// A requests-per-second limit shared by the calls of one client (a governor limiter), that
/// records each wait as `bot.outbound.ratelimit.wait`. Adapters keep one per platform quota.
pub struct RateLimit {
    per_second: u32,
    limiter: governor::DefaultDirectRateLimiter,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("per_second", &self.per_second)
            .finish()
    }
}

impl RateLimit {
    /// At most `per_second` calls a second (bursts of as many); `None` for zero.
    pub fn per_second(per_second: u32) -> Option<Self> {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::new(per_second)?);
        Some(Self {
            per_second,
            limiter: governor::RateLimiter::direct(quota),
        })
    }

    /// Waits for room for one call; a wait is recorded in `telemetry` when given.
    pub async fn acquire(&self, platform: &Platform, telemetry: Option<&Telemetry>) {
        if self.limiter.check().is_ok() {
            return;
        }
        let started = std::time::Instant::now();
        self.limiter.until_ready().await;
        if let Some(telemetry) = telemetry {
            telemetry.outbound_ratelimit_wait(platform, started.elapsed());
        }
    }
}

/// A platform's outbound API, as the runtime sees it.
///
/// Implementations own their rate limiting and retries: the runtime calls them from many handler
/// tasks at once.
#[async_trait]
pub trait Outbound: Send + Sync + fmt::Debug + 'static {
    /// The platform this client talks to.
    fn platform(&self) -> Platform;

    /// Sends `messages`, in order, to `target`.
    ///
    /// # Errors
    ///
    /// Fails when the platform refuses the call or cannot be reached after the client's retries.
    async fn send(&self, target: &Target, messages: Vec<OutgoingMessage>) -> Result<(), Error>;

    /// Shows a typing indicator in the conversation, where the platform has one.
    ///
    /// # Errors
    ///
    /// Fails like [`Outbound::send`]; the default does nothing and succeeds.
    async fn typing(&self, _conversation: &ConversationId) -> Result<(), Error> {
        Ok(())
    }
}

/// How long a [`SentParts`] remembers a part by default: far beyond the runtime's retry schedule
/// (by default 5 attempts, backoff up to 5 minutes).
pub const SENT_PARTS_TTL: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// How many parts a [`SentParts`] remembers at most by default; the oldest are forgotten first.
pub const MAX_SENT_PARTS: usize = 100_000;

/// An event, the index of a send for it ([`Target::send_index`]), and the part of that send.
pub type PartKey = (EventId, u32, usize);

/// The parts, and the order they came in for expiry.
type PartSet = (
    std::collections::HashSet<PartKey>,
    std::collections::VecDeque<(std::time::Instant, PartKey)>,
);

/// Parts of sends a client made (or may have made) for handlers, by (event, send index, part),
/// so that a retried handler skips them instead of sending them twice where the platform offers
/// no idempotency key. Bounded in count and age.
#[derive(Debug, Default)]
pub struct SentParts {
    parts: std::sync::Mutex<PartSet>,
}

impl SentParts {
    /// Whether `key` was sent (or may have been) and is still remembered.
    pub fn contains(&self, key: &PartKey) -> bool {
        let guard = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.contains(key)
    }

    /// Remembers `key` for [`SENT_PARTS_TTL`], among at most [`MAX_SENT_PARTS`].
    pub fn insert(&self, key: PartKey) {
        self.insert_at(
            key,
            std::time::Instant::now(),
            SENT_PARTS_TTL,
            MAX_SENT_PARTS,
        );
    }

    /// Remembers `key` as sent at `now`, first forgetting parts older than `ttl` and the oldest
    /// beyond `max`.
    pub fn insert_at(
        &self,
        key: PartKey,
        now: std::time::Instant,
        ttl: std::time::Duration,
        max: usize,
    ) {
        let mut guard = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        while let Some((at, _)) = order.front() {
            if now.saturating_duration_since(*at) < ttl && order.len() < max {
                break;
            }
            if let Some((_, old)) = order.pop_front() {
                set.remove(&old);
            }
        }
        if set.insert(key.clone()) {
            order.push_back((now, key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_compose_and_serialise() {
        let m = OutgoingMessage::text("pick one")
            .quick_reply(QuickReply::message("Yes"))
            .button(Button::postback("More", "more"));
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["quick_replies"][0]["action"]["type"], "message");
        assert_eq!(json["buttons"][0]["action"]["value"], "more");
        assert_eq!(OutgoingMessage::from("x").text.as_deref(), Some("x"));
    }

    #[test]
    fn sent_parts_are_bounded_in_count_and_age() {
        let sent = SentParts::default();
        let key = |i: usize| (EventId::new("m_1"), 0, i);
        let start = std::time::Instant::now();
        let ttl = std::time::Duration::from_secs(10);
        for i in 0..3 {
            sent.insert_at(key(i), start, ttl, 3);
        }
        assert!((0..3).all(|i| sent.contains(&key(i))));
        sent.insert_at(key(3), start, ttl, 3);
        assert!(!sent.contains(&key(0)), "the oldest goes first when full");
        assert!((1..4).all(|i| sent.contains(&key(i))));
        sent.insert_at(key(4), start + ttl, ttl, 3);
        assert!(
            (1..4).all(|i| !sent.contains(&key(i))),
            "expired parts are forgotten"
        );
        assert!(sent.contains(&key(4)));
        assert!(!sent.contains(&(EventId::new("m_1"), 1, 4)));
    }
}
