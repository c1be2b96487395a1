//! [`EventKind`] and what each kind carries: messages, attachments, commands, postbacks.

use serde::{Deserialize, Serialize};

use super::{MessageId, UserId};

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
    /// [`Event::raw`](crate::EventData::raw).
    Other(Other),
}

impl EventKind {
    /// A short stable name of the kind (`message`, `postback`, ..., or the platform's name for
    /// `Other`).
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
