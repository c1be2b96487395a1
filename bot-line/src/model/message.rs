//! The `message` object of message events: text, image, video, audio, file, location, sticker.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The content of a message event, by `message.type`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MessageContent {
    /// `text`: text with LINE emojis, mentions and quotes.
    Text(TextMessage),
    /// `image`.
    Image(ImageMessage),
    /// `video`.
    Video(VideoMessage),
    /// `audio`.
    Audio(AudioMessage),
    /// `file`.
    File(FileMessage),
    /// `location`.
    Location(LocationMessage),
    /// `sticker`.
    Sticker(StickerMessage),
    /// A message type this crate does not know; the payload is in the event's raw JSON.
    Unknown {
        /// `message.type` as LINE sent it.
        message_type: String,
        /// `message.id`, if present.
        id: Option<String>,
    },
}

impl MessageContent {
    /// Parses a `message` object, dispatching on its `type`.
    ///
    /// # Errors
    ///
    /// Fails when a known message type lacks a field LINE always sends.
    pub fn from_value(value: &Value) -> Result<Self, serde_json::Error> {
        Self::from_json(&value.to_string())
    }

    /// As [`MessageContent::from_value`], from the object's JSON text (no tree is built).
    ///
    /// # Errors
    ///
    /// Fails when the text is not an object or a known message type lacks a field LINE always
    /// sends.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        // Lenient, as LINE's own additions may be: a message that is not an object, or whose
        // `type` or `id` is not a string, is an unknown message, not an unreadable event.
        #[derive(Deserialize, Default)]
        struct Tag {
            #[serde(rename = "type", default)]
            message_type: Value,
            #[serde(default)]
            id: Value,
        }
        let tag: Tag = serde_json::from_str(json).unwrap_or_default();
        let message_type = tag.message_type.as_str().unwrap_or("");
        Ok(match message_type {
            "text" => Self::Text(serde_json::from_str(json)?),
            "image" => Self::Image(serde_json::from_str(json)?),
            "video" => Self::Video(serde_json::from_str(json)?),
            "audio" => Self::Audio(serde_json::from_str(json)?),
            "file" => Self::File(serde_json::from_str(json)?),
            "location" => Self::Location(serde_json::from_str(json)?),
            "sticker" => Self::Sticker(serde_json::from_str(json)?),
            other => Self::Unknown {
                message_type: other.to_owned(),
                id: tag.id.as_str().map(str::to_owned),
            },
        })
    }

    /// `message.type` as LINE spells it.
    pub fn message_type(&self) -> &str {
        match self {
            Self::Text(_) => "text",
            Self::Image(_) => "image",
            Self::Video(_) => "video",
            Self::Audio(_) => "audio",
            Self::File(_) => "file",
            Self::Location(_) => "location",
            Self::Sticker(_) => "sticker",
            Self::Unknown { message_type, .. } => message_type,
        }
    }

    /// The message id (`message.id`).
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Text(m) => Some(&m.id),
            Self::Image(m) => Some(&m.id),
            Self::Video(m) => Some(&m.id),
            Self::Audio(m) => Some(&m.id),
            Self::File(m) => Some(&m.id),
            Self::Location(m) => Some(&m.id),
            Self::Sticker(m) => Some(&m.id),
            Self::Unknown { id, .. } => id.as_deref(),
        }
    }
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_value(&value).map_err(serde::de::Error::custom)
    }
}

/// A `text` message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TextMessage {
    /// Message id.
    pub id: String,
    /// The text; LINE emojis appear as `$` placeholders located by `emojis`.
    pub text: String,
    /// LINE emojis in the text.
    #[serde(default)]
    pub emojis: Vec<Emoji>,
    /// Users mentioned in the text.
    #[serde(default)]
    pub mention: Option<Mention>,
    /// Token to quote this message in a reply.
    #[serde(default)]
    pub quote_token: Option<String>,
    /// The message this one quotes.
    #[serde(default)]
    pub quoted_message_id: Option<String>,
    /// Token to mark the chat as read up to this message.
    #[serde(default)]
    pub mark_as_read_token: Option<String>,
}

/// A LINE emoji inside a text message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Emoji {
    /// Position in the text, in UTF-16 code units.
    pub index: usize,
    /// Length in the text.
    pub length: usize,
    /// Emoji set.
    pub product_id: String,
    /// Emoji in the set.
    pub emoji_id: String,
}

/// The mentions of a text message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Mention {
    /// Who is mentioned, and where.
    pub mentionees: Vec<Mentionee>,
}

string_enum!(
    /// What a mention points at.
    MentioneeType {
        /// One user.
        User = "user",
        /// Everyone in the chat (`@All`).
        All = "all",
    }
);

/// One mention in a text message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Mentionee {
    /// Position in the text.
    pub index: usize,
    /// Length in the text.
    pub length: usize,
    /// A user or everyone. Old payloads omit it (then a user).
    #[serde(rename = "type", default = "user_mentionee")]
    pub mentionee_type: MentioneeType,
    /// The user, when they consented to share it.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Whether the mention is of this bot.
    #[serde(default)]
    pub is_self: Option<bool>,
}

fn user_mentionee() -> MentioneeType {
    MentioneeType::User
}

string_enum!(
    /// Where image, video and audio content is stored.
    ContentProviderType {
        /// On LINE's servers: fetch it from the content API with the message id.
        Line = "line",
        /// At the URLs given.
        External = "external",
    }
);

/// Where to fetch a media message's content.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ContentProvider {
    /// LINE or external.
    #[serde(rename = "type")]
    pub provider_type: ContentProviderType,
    /// The content's URL, for external content.
    #[serde(default)]
    pub original_content_url: Option<String>,
    /// The preview's URL, for external content.
    #[serde(default)]
    pub preview_image_url: Option<String>,
}

/// Images sent together; they may arrive in any order.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ImageSet {
    /// The set's id.
    pub id: String,
    /// This image's position, from 1.
    #[serde(default)]
    pub index: Option<u32>,
    /// Images in the set.
    #[serde(default)]
    pub total: Option<u32>,
}

/// An `image` message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageMessage {
    /// Message id, also the content id.
    pub id: String,
    /// Where the image is.
    pub content_provider: ContentProvider,
    /// The set this image belongs to.
    #[serde(default)]
    pub image_set: Option<ImageSet>,
    /// Token to quote this message.
    #[serde(default)]
    pub quote_token: Option<String>,
    /// Token to mark the chat as read.
    #[serde(default)]
    pub mark_as_read_token: Option<String>,
}

/// A `video` message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VideoMessage {
    /// Message id, also the content id.
    pub id: String,
    /// Length in milliseconds.
    #[serde(default)]
    pub duration: Option<u64>,
    /// Where the video is.
    pub content_provider: ContentProvider,
    /// Token to quote this message.
    #[serde(default)]
    pub quote_token: Option<String>,
    /// Token to mark the chat as read.
    #[serde(default)]
    pub mark_as_read_token: Option<String>,
}

/// An `audio` message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AudioMessage {
    /// Message id, also the content id.
    pub id: String,
    /// Length in milliseconds.
    #[serde(default)]
    pub duration: Option<u64>,
    /// Where the audio is.
    pub content_provider: ContentProvider,
    /// Token to mark the chat as read.
    #[serde(default)]
    pub mark_as_read_token: Option<String>,
}

/// A `file` message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FileMessage {
    /// Message id, also the content id.
    pub id: String,
    /// File name.
    pub file_name: String,
    /// Size in bytes.
    pub file_size: u64,
    /// Token to mark the chat as read.
    #[serde(default)]
    pub mark_as_read_token: Option<String>,
}

/// A `location` message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LocationMessage {
    /// Message id.
    pub id: String,
    /// Title of the place.
    #[serde(default)]
    pub title: Option<String>,
    /// Address.
    #[serde(default)]
    pub address: Option<String>,
    /// Latitude.
    pub latitude: f64,
    /// Longitude.
    pub longitude: f64,
    /// Token to mark the chat as read.
    #[serde(default)]
    pub mark_as_read_token: Option<String>,
}

string_enum!(
    /// How a sticker is animated or voiced; LINE adds values over time.
    StickerResourceType {
        /// Still image.
        Static = "STATIC",
        /// Animated.
        Animation = "ANIMATION",
        /// With sound.
        Sound = "SOUND",
        /// Animated with sound.
        AnimationSound = "ANIMATION_SOUND",
        /// Pop-up.
        Popup = "POPUP",
        /// Pop-up with sound.
        PopupSound = "POPUP_SOUND",
        /// Custom sticker with the user's text.
        Custom = "CUSTOM",
        /// Message sticker.
        Message = "MESSAGE",
        /// Name-text sticker.
        NameText = "NAME_TEXT",
        /// Per-sticker text.
        PerStickerText = "PER_STICKER_TEXT",
    }
);

/// A `sticker` message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StickerMessage {
    /// Message id.
    pub id: String,
    /// Sticker package.
    pub package_id: String,
    /// Sticker in the package.
    pub sticker_id: String,
    /// How the sticker behaves.
    #[serde(default = "static_sticker")]
    pub sticker_resource_type: StickerResourceType,
    /// Up to 15 keywords describing the sticker.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The text of a message sticker.
    #[serde(default)]
    pub text: Option<String>,
    /// Token to quote this message.
    #[serde(default)]
    pub quote_token: Option<String>,
    /// The message this one quotes.
    #[serde(default)]
    pub quoted_message_id: Option<String>,
    /// Token to mark the chat as read.
    #[serde(default)]
    pub mark_as_read_token: Option<String>,
}

fn static_sticker() -> StickerResourceType {
    StickerResourceType::Static
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_message_types_and_enum_values_parse() {
        let m = MessageContent::from_value(&json!({"type": "hologram", "id": "9"})).unwrap();
        assert_eq!(m.message_type(), "hologram");
        assert_eq!(m.id(), Some("9"));

        let s = MessageContent::from_value(&json!({
            "type": "sticker", "id": "1", "packageId": "446", "stickerId": "1988",
            "stickerResourceType": "SPARKLY_3D", "newField": true
        }))
        .unwrap();
        let MessageContent::Sticker(s) = s else {
            panic!("not a sticker")
        };
        assert_eq!(
            s.sticker_resource_type,
            StickerResourceType::Unknown("SPARKLY_3D".into())
        );
        assert_eq!(s.sticker_resource_type.as_str(), "SPARKLY_3D");
    }

    #[test]
    fn a_known_type_without_its_fields_is_an_error() {
        assert!(MessageContent::from_value(&json!({"type": "text", "id": "1"})).is_err());
    }
}
