//! The `message` of a messaging item: text, attachments, quick reply payload, reply, echo.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A message a user sent to the page, or (with [`Message::is_echo`]) one the page sent.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Message {
    /// The message id, `m_...`; the event id of the core event.
    #[serde(default)]
    pub mid: String,
    /// The text, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Set when the user tapped a quick reply; its payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_reply: Option<QuickReplyPayload>,
    /// The message this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
    /// Images, audio, video, files, locations, shared templates, reels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Whether the page itself sent this message (an echo): `sender` is the page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_echo: bool,
    /// On echoes, the app that sent the message (a number in Meta's JSON, kept as text).
    #[serde(
        default,
        deserialize_with = "super::string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub app_id: Option<String>,
    /// On echoes, the `metadata` the sending app attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// Instagram: the user unsent (deleted) the message.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_deleted: bool,
    /// Instagram: the message has content the API cannot show.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_unsupported: bool,
}

/// The payload of a tapped quick reply.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct QuickReplyPayload {
    /// What the bot put in the quick reply's `payload`.
    #[serde(default)]
    pub payload: String,
}

/// The message a message replies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ReplyTo {
    /// The id of the message replied to.
    #[serde(default)]
    pub mid: String,
}

/// The type of an [`Attachment`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttachmentType {
    /// A picture (stickers are images with a `sticker_id`).
    Image,
    /// A sound recording.
    Audio,
    /// A video.
    Video,
    /// Any file.
    File,
    /// A shared location (`payload.coordinates`).
    Location,
    /// A shared link or content Messenger shows as a fallback (`title`, `URL`).
    Fallback,
    /// A structured template (on echoes of the page's own templates).
    Template,
    /// A Facebook reel.
    Reel,
    /// An Instagram reel.
    IgReel,
    /// Instagram: a story that mentions the account.
    StoryMention,
    /// Instagram: a shared post.
    Share,
    /// A type this crate does not know, as Meta sent it.
    #[serde(untagged)]
    Unknown(String),
}

impl AttachmentType {
    /// The type as Meta spells it.
    pub fn as_str(&self) -> &str {
        match self {
            AttachmentType::Image => "image",
            AttachmentType::Audio => "audio",
            AttachmentType::Video => "video",
            AttachmentType::File => "file",
            AttachmentType::Location => "location",
            AttachmentType::Fallback => "fallback",
            AttachmentType::Template => "template",
            AttachmentType::Reel => "reel",
            AttachmentType::IgReel => "ig_reel",
            AttachmentType::StoryMention => "story_mention",
            AttachmentType::Share => "share",
            AttachmentType::Unknown(other) => other,
        }
    }
}

/// A file, picture, location or shared content in a message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Attachment {
    /// What it is.
    #[serde(rename = "type")]
    pub attachment_type: AttachmentType,
    /// Its content; absent or `null` on some fallbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<AttachmentPayload>,
    /// Fallback attachments: the title of the shared content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Fallback attachments: the shared URL (Meta spells the key `URL`).
    #[serde(
        default,
        rename = "URL",
        alias = "url",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
}

/// The content of an [`Attachment`]. Fields of payloads this crate does not name (templates,
/// products) are kept in [`AttachmentPayload::other`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct AttachmentPayload {
    /// Where to download the media (valid for a limited time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A title (locations, shares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Set when the image is a sticker (the thumbs-up is 369239263222822).
    #[serde(
        default,
        deserialize_with = "super::string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub sticker_id: Option<String>,
    /// A shared location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinates: Option<Coordinates>,
    /// Reels: the video's id.
    #[serde(
        default,
        deserialize_with = "super::string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub reel_video_id: Option<String>,
    /// Every other field of the payload.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A point on Earth.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Coordinates {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub long: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attachments_of_every_type_parse_and_unknown_types_keep_their_name() {
        let m: Message = serde_json::from_value(json!({
            "mid": "m_1",
            "attachments": [
                {"type": "image", "payload": {"url": "https://x/i.png", "sticker_id": 369_239_263_222_822_u64}},
                {"type": "location", "payload": {"coordinates": {"lat": 52.5, "long": 13.4}}},
                {"type": "fallback", "title": "A page", "URL": "https://x/p", "payload": null},
                {"type": "template", "payload": {"template_type": "button", "buttons": []}},
                {"type": "hologram", "payload": {"url": "https://x/h"}}
            ]
        }))
        .unwrap();
        let a = &m.attachments;
        assert_eq!(a[0].attachment_type, AttachmentType::Image);
        let image = a[0].payload.as_ref().unwrap();
        assert_eq!(image.sticker_id.as_deref(), Some("369239263222822"));
        assert_eq!(
            a[1].payload.as_ref().unwrap().coordinates.unwrap().long,
            13.4
        );
        assert_eq!(a[2].url.as_deref(), Some("https://x/p"));
        assert!(a[2].payload.is_none());
        assert_eq!(
            a[3].payload.as_ref().unwrap().other["template_type"],
            "button"
        );
        assert_eq!(
            a[4].attachment_type,
            AttachmentType::Unknown("hologram".into())
        );
        assert_eq!(a[4].attachment_type.as_str(), "hologram");
        assert!(!m.is_echo);
    }
}
