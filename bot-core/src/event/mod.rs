//! The platform-neutral event model.
//!
//! Every adapter maps its platform's webhook or gateway payloads to [`Event`]s. The original payload
//! stays reachable through [`Event::raw`](crate::EventData::raw), so nothing a platform sends is
//! lost in translation.
//!
//! The rooms: `id.rs` (ids, [`Platform`], [`ReplyToken`], [`Timestamp`]), `raw.rs` ([`Raw`]),
//! `kind.rs` ([`EventKind`] and what each kind carries); [`Event`], the handle, and [`EventData`],
//! its fields, are here.

use std::fmt;
use std::sync::Arc;

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

/// One thing that happened on a platform, in platform-neutral form: a handle to its
/// [`EventData`], shared rather than copied.
///
/// An `Event` is one pointer: moving it moves eight bytes, and cloning it counts a reference
/// (every queue, retry and handler on the way holds the same data). Reading goes through
/// [`Deref`](std::ops::Deref) (`event.conversation`, `event.text_content()`, `match &event.kind`);
/// writing (`event.redelivered = true`, the `with_*` builders) goes through
/// [`DerefMut`](std::ops::DerefMut), which copies the data first when another handle shares it
/// (copy on write), so a change is never seen through another clone.
///
/// Build one with [`Event::new`], [`Event::from_platform`] or from an [`EventData`] literal
/// (`EventData { … }.into()`); take the data back to move fields out with [`Event::into_data`].
/// It serializes exactly as its [`EventData`] does.
#[derive(Clone)]
pub struct Event(Arc<EventData>);

/// The content of an [`Event`]: what happened, where, by whom and the platform's own payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
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
        EventData::from_platform(platform, id, conversation, kind).into()
    }

    /// Starts an event of `kind` in `conversation` on `platform`, with a fresh local id and the
    /// current time (for events no platform names; adapters use [`Event::from_platform`]).
    pub fn new(
        platform: Platform,
        conversation: impl Into<ConversationId>,
        kind: EventKind,
    ) -> Self {
        EventData::new(platform, conversation, kind).into()
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

    /// The event's data, to move fields out of it: taken without a copy when this is the only
    /// handle to it, copied when other clones share it.
    #[must_use]
    pub fn into_data(self) -> EventData {
        Arc::unwrap_or_clone(self.0)
    }

    /// The event's data (also reachable through [`Deref`](std::ops::Deref)).
    pub fn data(&self) -> &EventData {
        &self.0
    }

    /// Drops what reads cached in the event's data (the payload's tree, which
    /// [`Raw::value`] builds through a shared reference) when no other handle shares it: a
    /// handler's read must not stay with the event its queue keeps for a retry or as a dead
    /// letter, uncounted by the queue's byte budget. Shared, it keeps them (the other handle's
    /// holder keeps the block alive anyway).
    pub(crate) fn shed_caches(&mut self) {
        if let Some(data) = Arc::get_mut(&mut self.0) {
            data.raw.shed_tree();
        }
    }

    /// Whether `self` and `other` are handles to the same data (clones of one event), which
    /// [`PartialEq`] answers without comparing the fields.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
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
}

impl EventData {
    /// The data of an event of `kind` in `conversation` on `platform` with the platform's own
    /// `id`, at the current time (see [`Event::from_platform`]).
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

    /// The data of an event of `kind` in `conversation` on `platform`, with a fresh local id and
    /// the current time (see [`Event::new`]).
    pub fn new(
        platform: Platform,
        conversation: impl Into<ConversationId>,
        kind: EventKind,
    ) -> Self {
        Self::from_platform(platform, EventId::new(next_local_id()), conversation, kind)
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

impl From<EventData> for Event {
    fn from(data: EventData) -> Self {
        Self(Arc::new(data))
    }
}

impl From<Event> for EventData {
    fn from(event: Event) -> Self {
        event.into_data()
    }
}

impl std::ops::Deref for Event {
    type Target = EventData;

    fn deref(&self) -> &EventData {
        &self.0
    }
}

impl std::ops::DerefMut for Event {
    /// The data to change: copied first when another clone shares it, so the change is this
    /// handle's alone.
    fn deref_mut(&mut self) -> &mut EventData {
        Arc::make_mut(&mut self.0)
    }
}

impl AsRef<EventData> for Event {
    fn as_ref(&self) -> &EventData {
        &self.0
    }
}

impl fmt::Debug for Event {
    // As the data's, under the name users know.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &*self.0;
        f.debug_struct("Event")
            .field("id", &d.id)
            .field("platform", &d.platform)
            .field("channel", &d.channel)
            .field("conversation", &d.conversation)
            .field("sender", &d.sender)
            .field("kind", &d.kind)
            .field("reply_token", &d.reply_token)
            .field("occurred_at", &d.occurred_at)
            .field("redelivered", &d.redelivered)
            .field("raw", &d.raw)
            .finish()
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        EventData::deserialize(deserializer).map(Self::from)
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
