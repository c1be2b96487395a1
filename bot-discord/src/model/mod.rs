//! Serde types of the Discord objects the adapter delivers: messages, reactions, members and
//! interactions, for typed access from a handler ([`crate::DiscordEventExt`]).
//!
//! Unknown fields are ignored, numeric enums keep values this crate does not know in `Unknown`
//! variants, and every field Discord may leave out is optional, so a new Discord feature never
//! fails a parse. Snowflakes are strings, as Discord's JSON sends them.

pub mod components;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct User {
    /// Snowflake.
    pub id: String,
    /// Unique name.
    #[serde(default)]
    pub username: String,
    /// Display name, if set.
    #[serde(default)]
    pub global_name: Option<String>,
    /// Whether the user is a bot.
    #[serde(default)]
    pub bot: bool,
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Attachment {
    /// Snowflake.
    pub id: String,
    /// File name.
    #[serde(default)]
    pub filename: String,
    /// MIME type.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Where to download it.
    #[serde(default)]
    pub url: String,
}

/// What a message replies to or forwards.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct MessageReference {
    /// The message.
    #[serde(default)]
    pub message_id: Option<String>,
    /// Its channel.
    #[serde(default)]
    pub channel_id: Option<String>,
    /// Its guild.
    #[serde(default)]
    pub guild_id: Option<String>,
}

/// A message (`MESSAGE_CREATE`; `MESSAGE_UPDATE` sends the same object, possibly partial).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Message {
    /// Snowflake.
    pub id: String,
    /// The channel.
    pub channel_id: String,
    /// The guild, for guild messages.
    #[serde(default)]
    pub guild_id: Option<String>,
    /// Who sent it (absent in some partial updates).
    #[serde(default)]
    pub author: Option<User>,
    /// The text (empty without the MESSAGE_CONTENT intent, but in DMs and mentions).
    #[serde(default)]
    pub content: String,
    /// ISO 8601 time it was sent.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// ISO 8601 time of its last edit.
    #[serde(default)]
    pub edited_timestamp: Option<String>,
    /// Files.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Users mentioned.
    #[serde(default)]
    pub mentions: Vec<User>,
    /// The message it replies to.
    #[serde(default)]
    pub message_reference: Option<MessageReference>,
    /// Set when a webhook sent it.
    #[serde(default)]
    pub webhook_id: Option<String>,
    /// The message type (0 default, 19 reply, ...).
    #[serde(default, rename = "type")]
    pub message_type: u8,
}

/// An emoji of a reaction: a custom one has an id, a Unicode one only a name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Emoji {
    /// Custom emoji id.
    #[serde(default)]
    pub id: Option<String>,
    /// The name, or the Unicode character.
    #[serde(default)]
    pub name: Option<String>,
}

/// `MESSAGE_REACTION_ADD` / `MESSAGE_REACTION_REMOVE`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Reaction {
    /// Who reacted.
    pub user_id: String,
    /// The channel.
    pub channel_id: String,
    /// The message reacted to.
    pub message_id: String,
    /// The guild, for guild messages.
    #[serde(default)]
    pub guild_id: Option<String>,
    /// The emoji.
    #[serde(default)]
    pub emoji: Emoji,
}

/// `GUILD_MEMBER_ADD` / `GUILD_MEMBER_REMOVE`: the guild and the user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct MemberChange {
    /// The guild.
    pub guild_id: String,
    /// The user.
    pub user: User,
}

/// A guild member, as interactions carry it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Member {
    /// The user.
    #[serde(default)]
    pub user: Option<User>,
    /// Nickname in the guild.
    #[serde(default)]
    pub nick: Option<String>,
}

/// What kind of interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InteractionType {
    /// 1: Discord checks the endpoint.
    Ping,
    /// 2: a slash, user or message command.
    ApplicationCommand,
    /// 3: a button or select menu.
    MessageComponent,
    /// 4: autocomplete of a command option.
    Autocomplete,
    /// 5: a submitted modal.
    ModalSubmit,
    /// A type this crate does not know.
    Unknown(u8),
}

impl From<u8> for InteractionType {
    fn from(value: u8) -> Self {
        match value {
            1 => Self::Ping,
            2 => Self::ApplicationCommand,
            3 => Self::MessageComponent,
            4 => Self::Autocomplete,
            5 => Self::ModalSubmit,
            other => Self::Unknown(other),
        }
    }
}

impl From<InteractionType> for u8 {
    fn from(value: InteractionType) -> Self {
        match value {
            InteractionType::Ping => 1,
            InteractionType::ApplicationCommand => 2,
            InteractionType::MessageComponent => 3,
            InteractionType::Autocomplete => 4,
            InteractionType::ModalSubmit => 5,
            InteractionType::Unknown(other) => other,
        }
    }
}

impl<'de> Deserialize<'de> for InteractionType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(Self::from)
    }
}

impl Serialize for InteractionType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(u8::from(*self))
    }
}

/// An option of a command, nested for sub-commands.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct CommandOption {
    /// Its name.
    pub name: String,
    /// Its type (3 string, 4 integer, 1 sub-command, ...).
    #[serde(rename = "type", default)]
    pub option_type: u8,
    /// The value, for leaf options.
    #[serde(default)]
    pub value: Option<Value>,
    /// Nested options, for sub-commands and groups.
    #[serde(default)]
    pub options: Vec<CommandOption>,
    /// Whether the user is typing in it (autocomplete).
    #[serde(default)]
    pub focused: bool,
}

/// The data of an interaction: a command's name and options, a component's `custom_id` and
/// values, a modal's `custom_id` and fields.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct InteractionData {
    /// The command's id.
    #[serde(default)]
    pub id: Option<String>,
    /// The command's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The command's options.
    #[serde(default)]
    pub options: Vec<CommandOption>,
    /// The component's or modal's `custom_id`.
    #[serde(default)]
    pub custom_id: Option<String>,
    /// The component type (2 button, 3 string select, ...).
    #[serde(default)]
    pub component_type: Option<u8>,
    /// The values chosen in a select menu.
    #[serde(default)]
    pub values: Vec<String>,
    /// A modal's rows of fields, as sent.
    #[serde(default)]
    pub components: Vec<Value>,
}

/// An interaction: a command, a component, a modal (over HTTP or `INTERACTION_CREATE`).
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Interaction {
    /// Snowflake.
    pub id: String,
    /// The application.
    #[serde(default)]
    pub application_id: Option<String>,
    /// What kind.
    #[serde(rename = "type")]
    pub interaction_type: InteractionType,
    /// The token to answer with (15 minutes). Not shown by `Debug`.
    #[serde(default)]
    pub token: String,
    /// The channel.
    #[serde(default)]
    pub channel_id: Option<String>,
    /// The guild.
    #[serde(default)]
    pub guild_id: Option<String>,
    /// The member who acted, in guilds.
    #[serde(default)]
    pub member: Option<Member>,
    /// The user who acted, in DMs.
    #[serde(default)]
    pub user: Option<User>,
    /// What was used.
    #[serde(default)]
    pub data: Option<InteractionData>,
    /// The message a component belongs to.
    #[serde(default)]
    pub message: Option<Value>,
}

impl Interaction {
    /// The user who acted, in a guild or a DM.
    pub fn acting_user(&self) -> Option<&User> {
        self.member
            .as_ref()
            .and_then(|m| m.user.as_ref())
            .or(self.user.as_ref())
    }
}

impl fmt::Debug for Interaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interaction")
            .field("id", &self.id)
            .field("interaction_type", &self.interaction_type)
            .field("channel_id", &self.channel_id)
            .field("guild_id", &self.guild_id)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_values_and_fields_parse_and_tokens_stay_out_of_debug() {
        let i: Interaction = serde_json::from_value(json!({
            "id": "1", "type": 42, "token": "secret-token", "brand_new": {"x": 1},
            "user": {"id": "u", "username": "a"}
        }))
        .unwrap();
        assert_eq!(i.interaction_type, InteractionType::Unknown(42));
        assert_eq!(i.acting_user().unwrap().id, "u");
        assert!(!format!("{i:?}").contains("secret-token"));
        assert_eq!(serde_json::to_value(i.interaction_type).unwrap(), 42);
    }
}
