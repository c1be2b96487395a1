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

mod buffer;
mod id;
mod kind;
mod raw;
pub mod scan;
#[cfg(test)]
mod tests;
mod text;

pub use buffer::EventBuffer;
pub use id::{
    ChannelId, ConversationId, EventId, MessageId, Platform, ReplyToken, Timestamp, UserId,
};
pub use kind::{
    Attachment, AttachmentKind, Command, Deleted, EventKind, Members, Mention, Message, Other,
    Postback, Reaction,
};
pub use raw::Raw;

/// The most events whose data [`Event::batch`] puts in one shared block.
pub const BLOCK_EVENTS: usize = 16;

/// One thing that happened on a platform, in platform-neutral form: a handle to its
/// [`EventData`], shared rather than copied.
///
/// An `Event` is a handle to one element of a shared block of [`EventData`]: a pointer to the
/// block, its length and the element's index (three words). Moving it moves those 24 bytes
/// (on 64-bit targets), and cloning it counts a reference (every queue, retry and handler on the
/// way holds the same data). Reading goes through [`Deref`](std::ops::Deref)
/// (`event.conversation`, `event.text_content()`, `match &event.kind`); writing
/// (`event.redelivered = true`, the `with_*` builders) goes through
/// [`DerefMut`](std::ops::DerefMut), which first copies this one event into a block of its own
/// when another handle shares its block (copy on write), so a change is never seen through a
/// clone or a sibling; a handle alone with its block writes in place.
///
/// The events of one webhook body or one gateway batch share blocks of at most
/// [`BLOCK_EVENTS`] ([`Event::batch`]): one allocation for their data, freed once, by whichever
/// thread drops the last of them. A block lives until the last of its events is done (as the
/// body their payloads share does): an event still waiting or running keeps its siblings' data
/// alive with its own (456 bytes each, and what they own apart: texts, a JSON tree a handler
/// built, their payload's bytes). An event the memory queue keeps for a retry or as a dead letter
/// moves into a block of its own.
///
/// Build one with [`Event::new`], [`Event::from_platform`] or from an [`EventData`] literal
/// (`EventData { … }.into()`, a block of one); take the data back to move fields out with
/// [`Event::into_data`]. It serializes exactly as its [`EventData`] does.
#[derive(Clone)]
pub struct Event {
    /// The data of every event of the batch, in one allocation.
    block: Arc<[EventData]>,
    /// This event's element of `block`. A `usize` rather than a `u32`: the fat pointer before it
    /// aligns the handle to eight bytes, so a narrower index would save nothing.
    index: usize,
}

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

    /// The events of one batch (a webhook body, a gateway hand-over), their data in shared
    /// blocks of at most [`BLOCK_EVENTS`]: one allocation for up to that many events instead of
    /// one each, freed once when the last of them is dropped. The events come back in the order
    /// given.
    ///
    /// A block stays whole until its last event is done, so an event that waits long (behind a
    /// slow conversation) keeps the data of up to [`BLOCK_EVENTS`]` - 1` siblings alive with its
    /// own; blocks are cut at that size so that no batch's data, however large, is kept whole by one
    /// event. An event the queue keeps for a retry or as a dead letter is moved into a block of
    /// its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use bot_core::{Event, EventData, Platform, EventKind};
    ///
    /// let events = Event::batch(["a", "b"].map(|conversation| {
    ///     EventData::new(Platform::TEST, conversation, EventKind::Followed)
    /// }));
    /// assert_eq!(events[1].conversation.as_str(), "b");
    /// assert!(events[0].shares_block_with(&events[1]));
    /// ```
    pub fn batch(data: impl IntoIterator<Item = EventData>) -> Vec<Self> {
        let mut data = data.into_iter().peekable();
        let mut events = Vec::with_capacity(data.size_hint().0);
        while data.peek().is_some() {
            // One allocation per block when the iterator knows its length (a vector's, a
            // drain's, an array's); gathered in a vector first otherwise.
            let block: Arc<[EventData]> = data.by_ref().take(BLOCK_EVENTS).collect();
            events.extend((0..block.len()).map(|index| Self {
                block: Arc::clone(&block),
                index,
            }));
        }
        events
    }

    /// [`Event::batch`] of the data in `data`, which it leaves empty with its capacity, so that
    /// an adapter that parses every body into the same vector ([`EventBuffer`]) allocates none
    /// per body.
    ///
    /// # Examples
    ///
    /// ```
    /// use bot_core::{Event, EventData, Platform, EventKind};
    ///
    /// let mut parsed = Vec::with_capacity(16);
    /// parsed.push(EventData::new(Platform::TEST, "a", EventKind::Followed));
    /// let events = Event::batch_from(&mut parsed);
    /// assert_eq!((events.len(), parsed.len()), (1, 0));
    /// assert!(parsed.capacity() >= 16);
    /// ```
    pub fn batch_from(data: &mut Vec<EventData>) -> Vec<Self> {
        Self::batch(data.drain(..))
    }

    /// The event's data, to move fields out of it: taken without a copy when this is the only
    /// handle to a block of one event, copied when other handles share it or its block holds
    /// other events of its batch.
    #[must_use]
    pub fn into_data(self) -> EventData {
        let Self { block, index } = self;
        match <Arc<[EventData; 1]>>::try_from(block) {
            Ok(one) => {
                let [data] = Arc::unwrap_or_clone(one);
                data
            }
            Err(block) => block[index].clone(),
        }
    }

    /// The event's data (also reachable through [`Deref`](std::ops::Deref)).
    pub fn data(&self) -> &EventData {
        &self.block[self.index]
    }

    /// Readies an event the queue keeps for a retry, after a release or as a dead letter: it must
    /// keep alive no
    /// more than its own data. The event gets a block of its own holding a copy of its data that
    /// shares nothing: not its block's siblings, not the request body or gateway frame its
    /// payload and long ids were slices of, not what its handler's reads cached in it (the
    /// payload's tree, which [`Raw::value`] builds through a shared reference). A copy costs an
    /// allocation or two and a pass over the event's JSON; the memory queue makes it for a retry,
    /// a release or a dead letter only, before it takes its lock.
    pub(crate) fn shed_caches(&mut self) {
        *self = Self::from(self.data().detached());
    }

    /// Whether `self` and `other` are handles to the same data (clones of one event), which
    /// [`PartialEq`] answers without comparing the fields. Two events of one batch share a block
    /// ([`Event::shares_block_with`]) but not their data.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.index == other.index && Arc::ptr_eq(&self.block, &other.block)
    }

    /// Whether `self` and `other` have their data in the same block: clones of one event, or
    /// events of one [`Event::batch`] (that no write has since copied into a block of its own).
    pub fn shares_block_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.block, &other.block)
    }

    /// How many events' data the event's block holds (its batch's, or one).
    pub(crate) fn block_len(&self) -> usize {
        self.block.len()
    }

    /// A weak handle to the event's block, to see in tests when it is freed.
    #[cfg(test)]
    pub(crate) fn block_weak(&self) -> std::sync::Weak<[EventData]> {
        Arc::downgrade(&self.block)
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
    /// A copy of the data that shares no buffer: the payload's text and every id copied out of
    /// the body or frame they were slices of, without the payload's parsed tree. It is the
    /// queues' own serialised form read back, so that no field can be left sharing.
    pub(crate) fn detached(&self) -> Self {
        let copy =
            serde_json::to_vec(self).and_then(|json| serde_json::from_slice::<EventData>(&json));
        match copy {
            Ok(copy) => copy,
            // Not expected (the data serialises, and reads back as the queues' format);
            // a clone without its tree is the next best.
            Err(e) => {
                tracing::error!(error = %e, "an event's data does not read back from its JSON");
                let mut copy = self.clone();
                copy.raw.shed_tree();
                copy
            }
        }
    }

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
    /// An event whose block holds its data alone.
    fn from(data: EventData) -> Self {
        let block: Arc<[EventData; 1]> = Arc::new([data]);
        Self { block, index: 0 }
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
        self.data()
    }
}

impl std::ops::DerefMut for Event {
    /// The data to change: copied first into a block of its own when another handle (a clone,
    /// or a sibling of its batch) shares its block, so the change is this handle's alone.
    fn deref_mut(&mut self) -> &mut EventData {
        if Arc::get_mut(&mut self.block).is_none() {
            *self = Self::from(self.data().clone());
        }
        let index = self.index;
        let block = Arc::get_mut(&mut self.block).expect("a block no other handle shares");
        &mut block[index]
    }
}

impl AsRef<EventData> for Event {
    fn as_ref(&self) -> &EventData {
        self.data()
    }
}

impl fmt::Debug for Event {
    // As the data's, under the name users know.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.data();
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
        self.ptr_eq(other) || self.data() == other.data()
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.data().serialize(serializer)
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
