//! The platform-neutral event model.
//!
//! Every adapter maps its platform's webhook or gateway payloads to [`Event`]s. The original payload
//! stays reachable through [`Event::raw`], so nothing a platform sends is lost in translation.//!
//! The rooms: `id.rs` (ids, [`Platform`], [`ReplyToken`], [`Timestamp`]), `raw.rs` ([`Raw`]),
//! `kind.rs` ([`EventKind`] and what each kind carries); [`Event`] itself is here.

use serde::{Deserialize, Serialize};

mod id;
mod kind;
mod raw;
pub mod scan;
#[cfg(test)]
mod tests;
mod text;

pub use id::{
    ChannelId, ConversationId, EventId, MessageId, Platform, ReplyToken, Timestamp, UserId,
};
pub use kind::{
    Attachment, AttachmentKind, Command, Deleted, EventKind, Members, Mention, Message, Other,
    Postback, Reaction,
};
pub use raw::Raw;

/// One thing that happened on a platform, in platform-neutral form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The platform's id of the event; with `platform`, the deduplication key.
    pub id: EventId,
    /// Where the event came from.
    pub platform: Platform,
    /// Which of the platform's channels it came through (a LINE channel, a Messenger page, a
    /// Discord application), when the adapter serves several; replies go out through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelId>,
    /// The conversation it belongs to; the unit of ordering.
    pub conversation: ConversationId,
    /// Who caused it, when the platform says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<UserId>,
    /// What happened.
    pub kind: EventKind,
    /// The token to reply with, on platforms that use one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_token: Option<ReplyToken>,
    /// When it happened, by the platform's clock.
    pub occurred_at: Timestamp,
    /// Whether the platform says this is a redelivery of an event it sent before.
    #[serde(default)]
    pub redelivered: bool,
    /// The original payload of this event as the platform sent it.
    #[serde(default)]
    pub raw: Raw,
}

impl Event {
    /// An event of `kind` in `conversation` on `platform` with the platform's own `id`, at the
    /// current time: what adapters build, without making a local id first.
    pub fn from_platform(
        platform: Platform,
        id: impl Into<EventId>,
        conversation: impl Into<ConversationId>,
        kind: EventKind,
    ) -> Self {
        Self {
            id: id.into(),
            platform,
            channel: None,
            conversation: conversation.into(),
            sender: None,
            kind,
            reply_token: None,
            occurred_at: Timestamp::now(),
            redelivered: false,
            raw: Raw::default(),
        }
    }

    /// Starts an event of `kind` in `conversation` on `platform`, with a fresh local id and the
    /// current time (for events no platform names; adapters use [`Event::from_platform`]).
    pub fn new(
        platform: Platform,
        conversation: impl Into<ConversationId>,
        kind: EventKind,
    ) -> Self {
        Self {
            id: EventId::new(next_local_id()),
            platform,
            channel: None,
            conversation: conversation.into(),
            sender: None,
            kind,
            reply_token: None,
            occurred_at: Timestamp::now(),
            redelivered: false,
            raw: Raw::default(),
        }
    }

    /// A text message event.
    pub fn text(
        platform: Platform,
        conversation: impl Into<ConversationId>,
        text: impl Into<String>,
    ) -> Self {
        Self::new(
            platform,
            conversation,
            EventKind::Message(Message::text(text)),
        )
    }

    /// Sets the event id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<EventId>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the channel the event came through.
    #[must_use]
    pub fn with_channel(mut self, channel: impl Into<ChannelId>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Sets the sender.
    #[must_use]
    pub fn with_sender(mut self, sender: impl Into<UserId>) -> Self {
        self.sender = Some(sender.into());
        self
    }

    /// Sets the reply token.
    #[must_use]
    pub fn with_reply_token(mut self, token: ReplyToken) -> Self {
        self.reply_token = Some(token);
        self
    }

    /// Sets the raw payload.
    #[must_use]
    pub fn with_raw(mut self, raw: serde_json::Value) -> Self {
        self.raw = Raw::new(raw);
        self
    }

    /// Sets the raw payload from its JSON text (see [`Raw::from_json`]).
    #[must_use]
    pub fn with_raw_json(mut self, json: Box<serde_json::value::RawValue>) -> Self {
        self.raw = Raw::from_json(json);
        self
    }

    /// The message, when this is a message event.
    pub fn message(&self) -> Option<&Message> {
        match &self.kind {
            EventKind::Message(m) => Some(m),
            _ => None,
        }
    }

    /// The text of a message event.
    pub fn text_content(&self) -> Option<&str> {
        self.message().and_then(|m| m.text.as_deref())
    }

    /// The original platform payload.
    pub fn raw(&self) -> &serde_json::Value {
        self.raw.value()
    }
}

fn next_local_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // The process id, asked once: it cannot change, and asking is a system call.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    format!("local-{}-{n}", PID.get_or_init(std::process::id))
}

/// A stable id for a platform payload that carries none: `sha256:` and the first 128 bits of the
/// SHA-256 of its compact JSON, the same in every process and release (deduplication in a shared
/// queue compares them across processes).
pub fn content_id(payload: &serde_json::Value) -> EventId {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(payload.to_string().as_bytes());
    let mut id = String::with_capacity(7 + 32);
    id.push_str("sha256:");
    for byte in &digest[..16] {
        let _ = write!(id, "{byte:02x}");
    }
    EventId::from(id)
}
