//! The platform-neutral event model.
//!
//! Every adapter maps its platform's webhook or gateway payloads to [`Event`]s. The original payload
//! stays reachable through [`Event::raw`], so nothing a platform sends is lost in translation.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

mod text;

use text::Text;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Text);

        impl $name {
            /// Creates the id from any string.
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(Text::new(id.as_ref()))
            }

            /// The id `id`, read from `payload` (the body or frame it came in): a short id is
            /// kept inline, a long one shares `payload`'s buffer instead of a copy. An `id` that
            /// does not lie within `payload` is copied.
            pub fn from_shared(payload: &Bytes, id: &str) -> Self {
                Self(Text::from_shared(payload, id))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Text::from_string(s))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

string_id!(
    /// The platform's id of an event (LINE `webhookEventId`, Messenger `mid`, Discord snowflake).
    ///
    /// Together with the [`Platform`] it is the deduplication key.
    EventId
);
string_id!(
    /// A conversation: a LINE user, group or room, a Messenger PSID, a Discord channel.
    ///
    /// Events of one conversation are handled one at a time, in arrival order, by default.
    ConversationId
);
string_id!(
    /// A user on a platform.
    UserId
);
string_id!(
    /// A message on a platform.
    MessageId
);

/// The platform an event came from, such as `line`, `messenger`, `discord` or `console`.
///
/// A string rather than a closed enum, so that adapters for other platforms can be written outside
/// this workspace.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Platform(Cow<'static, str>);

impl Platform {
    /// The LINE Messaging API.
    pub const LINE: Platform = Platform(Cow::Borrowed("line"));
    /// The Facebook Messenger Platform.
    pub const MESSENGER: Platform = Platform(Cow::Borrowed("messenger"));
    /// Discord.
    pub const DISCORD: Platform = Platform(Cow::Borrowed("discord"));
    /// The stdin/stdout console platform for local development.
    pub const CONSOLE: Platform = Platform(Cow::Borrowed("console"));
    /// The platform used by [`crate::testing`].
    pub const TEST: Platform = Platform(Cow::Borrowed("test"));

    /// A platform known at compile time.
    pub const fn from_static(name: &'static str) -> Self {
        Platform(Cow::Borrowed(name))
    }

    /// A platform named at run time.
    pub fn new(name: impl Into<String>) -> Self {
        Platform(Cow::Owned(name.into()))
    }

    /// The platform's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token that lets a handler reply to an event (LINE's `replyToken`, a Discord interaction token).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReplyToken(Text);

impl ReplyToken {
    /// Wraps a token.
    pub fn new(token: impl AsRef<str>) -> Self {
        Self(Text::new(token.as_ref()))
    }

    /// The token `token`, read from `payload` (the body it came in), sharing it when long (see
    /// [`EventId::from_shared`]).
    pub fn from_shared(payload: &Bytes, token: &str) -> Self {
        Self(Text::from_shared(payload, token))
    }

    /// The token. Do not log it: it authorises a reply.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for ReplyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyToken(..)")
    }
}

/// Milliseconds since the Unix epoch, the resolution every supported platform uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Now, from the system clock.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        if t.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(t.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(t.0.unsigned_abs())
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

/// The original platform payload of an event, shared so that clones are cheap.
///
/// Adapters keep it as the JSON text the platform sent: a slice of the request's or frame's body
/// ([`Raw::from_shared`], no copy and no allocation), or text of its own ([`Raw::from_json`]).
/// [`Raw::parse`] reads the text straight into a platform type; [`Raw::value`] builds the tree on
/// first use and keeps it. A payload made from a tree ([`Raw::new`]) keeps the tree and writes
/// its text on first use.
///
/// A payload sharing a body keeps the whole body alive while any event of it is queued or in
/// flight: the events of one request share one buffer instead of a copy each.
///
/// It serialises as the JSON it holds, embedded as is, with `serde_json` (the queues' format).
#[derive(Clone, Default)]
pub struct Raw {
    /// The JSON text, UTF-8 (every constructor takes a `str`).
    text: OnceLock<Bytes>,
    /// The tree, built from the text on first use (or given).
    tree: OnceLock<Arc<serde_json::Value>>,
}

static NULL: serde_json::Value = serde_json::Value::Null;

impl Raw {
    /// Wraps a payload.
    pub fn new(value: serde_json::Value) -> Self {
        Self {
            text: OnceLock::new(),
            tree: OnceLock::from(Arc::new(value)),
        }
    }

    /// Wraps a payload's JSON text, parsed only when asked.
    pub fn from_json(json: Box<serde_json::value::RawValue>) -> Self {
        let text: Box<str> = json.into();
        Self::from_text(Bytes::from(text.into_boxed_bytes()))
    }

    /// The payload `json` (JSON text, such as a `RawValue` read from `payload`), sharing the
    /// buffer of `payload` (the request's or frame's body) instead of a copy; `json` that does not
    /// lie within `payload` is copied.
    ///
    /// `json` must be JSON text: it is embedded as is when the event is serialised.
    pub fn from_shared(payload: &Bytes, json: &str) -> Self {
        Self::from_text(
            text::shared_slice(payload, json)
                .unwrap_or_else(|| Bytes::copy_from_slice(json.as_bytes())),
        )
    }

    fn from_text(text: Bytes) -> Self {
        Self {
            text: OnceLock::from(text),
            tree: OnceLock::new(),
        }
    }

    fn is_none(&self) -> bool {
        self.text.get().is_none() && self.tree.get().is_none()
    }

    /// The payload as a JSON tree (built from the text on first use).
    ///
    /// `null` in the rare case where the text cannot become a tree although it was read as JSON
    /// (nesting deeper than serde_json's tree allows, or a lone surrogate escape): the text
    /// itself, in [`Raw::json`], is still whole.
    pub fn value(&self) -> &serde_json::Value {
        if self.is_none() {
            return &NULL;
        }
        self.tree.get_or_init(|| {
            Arc::new(serde_json::from_str(self.json()).unwrap_or_else(|e| {
                tracing::warn!(category = ?e.classify(), "raw payload cannot become a JSON tree");
                serde_json::Value::Null
            }))
        })
    }

    /// The payload as JSON text (written from the tree on first use).
    pub fn json(&self) -> &str {
        self.raw_json().unwrap_or("null")
    }

    fn raw_json(&self) -> Option<&str> {
        if self.is_none() {
            return None;
        }
        let text = self.text.get_or_init(|| {
            let value = self.tree.get().map_or(&NULL, |tree| &**tree);
            Bytes::from(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
        });
        // UTF-8 by construction; checked again rather than trusted, which needs no `unsafe`.
        Some(std::str::from_utf8(text).unwrap_or("null"))
    }

    /// Deserialises the payload into a platform type.
    ///
    /// # Errors
    ///
    /// Fails when the payload does not have the shape of `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self.tree.get() {
            Some(value) => T::deserialize(&**value),
            None => serde_json::from_str(self.json()),
        }
    }
}

impl PartialEq for Raw {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

/// Shows the payload's size, never its content: platform payloads carry reply and interaction
/// tokens, and `Debug` output ends up in logs.
impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.raw_json() {
            None => f.write_str("Raw(none)"),
            Some(json) => write!(f, "Raw({} bytes)", json.len()),
        }
    }
}

impl Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.raw_json() {
            Some(json) => {
                // Borrowed: checks the text is one JSON value without copying it.
                let raw: &serde_json::value::RawValue =
                    serde_json::from_str(json).map_err(serde::ser::Error::custom)?;
                raw.serialize(s)
            }
            None => s.serialize_unit(),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Ok(if json.get() == "null" {
            Self::default()
        } else {
            Self::from_json(json)
        })
    }
}

/// One thing that happened on a platform, in platform-neutral form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The platform's id of the event; with `platform`, the deduplication key.
    pub id: EventId,
    /// Where the event came from.
    pub platform: Platform,
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

/// What happened. New kinds may be added; match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A message was sent.
    Message(Message),
    /// A button or quick reply carrying `data` was pressed.
    Postback(Postback),
    /// A command: a Discord slash command or interaction; text commands arrive as messages.
    Command(Command),
    /// Members joined the conversation (or the bot was added to it).
    MemberJoined(Members),
    /// Members left the conversation (or the bot was removed).
    MemberLeft(Members),
    /// The user followed (added, unblocked) the bot.
    Followed,
    /// The user unfollowed (blocked) the bot.
    Unfollowed,
    /// A reaction was added or removed.
    Reaction(Reaction),
    /// A message was edited; the new content.
    Edited(Message),
    /// A message was deleted or unsent.
    Deleted(Deleted),
    /// Anything the core model has no kind for; the platform's own type name. The payload is in
    /// [`Event::raw`].
    Other(Other),
}

impl EventKind {
    /// A short stable name of the kind (`message`, `postback`, ..., or the platform's name for `Other`).
    pub fn name(&self) -> &str {
        match self {
            EventKind::Message(_) => "message",
            EventKind::Postback(_) => "postback",
            EventKind::Command(_) => "command",
            EventKind::MemberJoined(_) => "member_joined",
            EventKind::MemberLeft(_) => "member_left",
            EventKind::Followed => "followed",
            EventKind::Unfollowed => "unfollowed",
            EventKind::Reaction(_) => "reaction",
            EventKind::Edited(_) => "edited",
            EventKind::Deleted(_) => "deleted",
            EventKind::Other(o) => &o.name,
        }
    }
}

/// A message: text, attachments, mentions and what it replies to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Message {
    /// The platform's message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<MessageId>,
    /// The text, if the message has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Images, files, stickers, locations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Users mentioned in the text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<Mention>,
    /// The message this one replies to or quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
}

impl Message {
    /// A text-only message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }
}

/// A file, image, sticker or location attached to a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// What it is.
    pub kind: AttachmentKind,
    /// Where to fetch it, when the platform gives a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The platform's id for it (LINE content id, sticker id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// File name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The kind of an [`Attachment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttachmentKind {
    /// A picture.
    Image,
    /// A video.
    Video,
    /// A sound recording.
    Audio,
    /// Any file.
    File,
    /// A sticker.
    Sticker,
    /// A shared location.
    Location,
    /// A kind the core has no name for; the platform's name.
    Other(String),
}

/// A user mentioned in a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    /// Who.
    pub user: UserId,
    /// Where in the text, in characters, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// How long the mention is in the text, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<usize>,
}

/// A postback: data attached to a button the user pressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Postback {
    /// The data the bot attached to the button.
    pub data: String,
    /// Extra parameters (LINE's date picker result, Messenger's referral), if any.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
}

/// A command with its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// The command's name, without any leading `/`.
    pub name: String,
    /// Options by name (Discord slash command options).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// Who joined or left.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Members {
    /// The members; empty when the bot itself joined or left.
    #[serde(default)]
    pub users: Vec<UserId>,
}

/// A reaction to a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    /// The message reacted to.
    pub message_id: MessageId,
    /// The emoji or reaction name.
    pub emoji: String,
    /// Whether the reaction was removed rather than added.
    #[serde(default)]
    pub removed: bool,
}

/// A deleted or unsent message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    /// The message that is gone.
    pub message_id: MessageId,
}

/// An event type the core has no kind for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Other {
    /// The platform's name for the event type.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips_through_json_with_raw_payload() {
        let e = Event::text(Platform::LINE, "U123", "hi")
            .with_id("01H")
            .with_sender("U123")
            .with_reply_token(ReplyToken::new("rt"))
            .with_raw(serde_json::json!({"type": "message", "x": 1}));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"]["type"], "message");
        assert_eq!(json["kind"]["text"], "hi");
        assert_eq!(json["raw"]["x"], 1);
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn raw_json_text_is_kept_whole_read_on_demand_and_embedded_when_serialised() {
        let text = r#"{"type":"message","message":{"id":"m1","text":"hé \"q\""},"n":[1,2.5]}"#;
        let json = serde_json::value::RawValue::from_string(text.to_owned()).unwrap();
        let e = Event::text(Platform::LINE, "U1", "hi")
            .with_id("e1")
            .with_raw_json(json);
        assert_eq!(e.raw.json(), text);
        #[derive(Deserialize)]
        struct Typed {
            message: serde_json::Map<String, serde_json::Value>,
        }
        let typed: Typed = e.raw.parse().unwrap();
        assert_eq!(typed.message["text"], "hé \"q\"");
        assert_eq!(e.raw()["n"][1], 2.5);

        let out = serde_json::to_string(&e).unwrap();
        assert!(out.contains(&format!(r#""raw":{text}"#)), "{out}");
        let back: Event = serde_json::from_str(&out).unwrap();
        assert_eq!(back.raw.json(), text);
        assert_eq!(back, e);
        let via_value: Event = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(via_value.raw(), e.raw());

        let tree = Event::text(Platform::LINE, "U1", "hi").with_raw(serde_json::json!({"a": [1]}));
        assert_eq!(tree.raw.json(), r#"{"a":[1]}"#);
        let none = Event::text(Platform::LINE, "U1", "hi");
        assert_eq!(none.raw(), &serde_json::Value::Null);
        assert_eq!(none.raw.json(), "null");
        let out = serde_json::to_string(&none).unwrap();
        assert!(out.contains(r#""raw":null"#), "{out}");
        let back: Event = serde_json::from_str(&out).unwrap();
        assert_eq!(back, none);
    }

    #[test]
    fn other_kind_keeps_its_name() {
        let e = Event::new(
            Platform::LINE,
            "c",
            EventKind::Other(Other {
                name: "things".into(),
            }),
        );
        assert_eq!(e.kind.name(), "things");
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back.kind, e.kind);
    }

    #[test]
    fn reply_token_is_redacted_in_debug() {
        assert_eq!(format!("{:?}", ReplyToken::new("secret")), "ReplyToken(..)");
    }

    #[test]
    fn event_debug_shows_the_raw_payloads_size_not_its_tokens() {
        let e = Event::text(Platform::LINE, "U1", "hi")
            .with_reply_token(ReplyToken::new("reply-secret"))
            .with_raw(serde_json::json!({"replyToken": "reply-secret", "token": "itoken-secret"}));
        let shown = format!("{e:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("Raw(53 bytes)"), "{shown}");
        assert_eq!(format!("{:?}", Raw::default()), "Raw(none)");
    }

    #[test]
    fn timestamps_convert_both_ways() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(Timestamp::from(SystemTime::from(t)), t);
    }

    #[test]
    fn content_ids_are_stable_and_tell_payloads_apart() {
        let a = content_id(&serde_json::json!({"type": "read", "watermark": 1}));
        assert_eq!(
            a,
            content_id(&serde_json::json!({"watermark": 1, "type": "read"}))
        );
        assert_ne!(
            a,
            content_id(&serde_json::json!({"type": "read", "watermark": 2}))
        );
        assert!(a.as_str().starts_with("sha256:") && a.as_str().len() == 39);
        let e = Event::from_platform(Platform::LINE, "01H", "U1", EventKind::Followed);
        assert_eq!((e.id.as_str(), e.conversation.as_str()), ("01H", "U1"));
    }

    #[test]
    fn local_ids_are_unique() {
        let a = Event::text(Platform::TEST, "c", "a");
        let b = Event::text(Platform::TEST, "c", "b");
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn public_types_are_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Event>();
        assert_send_sync::<Platform>();
    }
}
