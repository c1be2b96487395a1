//! What the Messaging API takes and returns: message objects, quick replies, actions, profiles.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Most messages one reply, push or multicast call may carry.
pub const MAX_MESSAGES_PER_CALL: usize = 5;
/// Longest text message, in characters.
pub const MAX_TEXT_CHARS: usize = 5000;
/// Most quick reply items under one message.
pub const MAX_QUICK_REPLY_ITEMS: usize = 13;
/// Most actions of a buttons template.
pub const MAX_TEMPLATE_ACTIONS: usize = 4;
/// Longest text of a buttons template without a title or image.
pub const MAX_TEMPLATE_TEXT_CHARS: usize = 160;
/// Longest alternative text of a template or flex message.
pub const MAX_ALT_TEXT_CHARS: usize = 400;
/// Most recipients of one multicast call.
pub const MAX_MULTICAST_RECIPIENTS: usize = 500;

/// A message object to send (`{"type": "text", ...}`), built with the constructors or from any
/// JSON LINE accepts ([`Message::from_json`]), such as flex messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Message(Value);

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self(json!({"type": "text", "text": text.into()}))
    }

    /// An image message; `preview_url` defaults to the image itself.
    pub fn image(url: impl Into<String>, preview_url: Option<String>) -> Self {
        let url = url.into();
        let preview = preview_url.unwrap_or_else(|| url.clone());
        Self(json!({"type": "image", "originalContentUrl": url, "previewImageUrl": preview}))
    }

    /// A sticker message.
    pub fn sticker(package_id: impl Into<String>, sticker_id: impl Into<String>) -> Self {
        Self(
            json!({"type": "sticker", "packageId": package_id.into(), "stickerId": sticker_id.into()}),
        )
    }

    /// A buttons template: `text` with up to four actions; `alt_text` shows in notifications.
    pub fn buttons(
        alt_text: impl Into<String>,
        text: impl Into<String>,
        actions: Vec<Action>,
    ) -> Self {
        Self(json!({
            "type": "template",
            "altText": alt_text.into(),
            "template": {"type": "buttons", "text": text.into(), "actions": actions},
        }))
    }

    /// A flex message with its `contents` container.
    pub fn flex(alt_text: impl Into<String>, contents: Value) -> Self {
        Self(json!({"type": "flex", "altText": alt_text.into(), "contents": contents}))
    }

    /// Any message object LINE accepts, as JSON.
    pub fn from_json(value: Value) -> Self {
        Self(value)
    }

    /// Puts quick reply buttons under the message (LINE shows those of the last message sent).
    #[must_use]
    pub fn with_quick_reply(mut self, items: Vec<QuickReplyItem>) -> Self {
        if let Value::Object(map) = &mut self.0 {
            map.insert("quickReply".into(), json!({ "items": items }));
        }
        self
    }

    /// The message type (`text`, `image`, ...).
    pub fn message_type(&self) -> Option<&str> {
        self.0.get("type").and_then(Value::as_str)
    }

    /// The text of a text message.
    pub fn text_content(&self) -> Option<&str> {
        (self.message_type() == Some("text"))
            .then(|| self.0.get("text").and_then(Value::as_str))
            .flatten()
    }

    /// The JSON sent.
    pub fn as_json(&self) -> &Value {
        &self.0
    }
}

/// An action of a button or quick reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum Action {
    /// Sends `text` as the user.
    Message {
        /// What the button shows.
        label: String,
        /// What is sent.
        text: String,
    },
    /// Sends a postback event with `data`.
    Postback {
        /// What the button shows.
        label: String,
        /// The postback's data.
        data: String,
        /// Text shown in the chat as the user's message, if any.
        #[serde(rename = "displayText", skip_serializing_if = "Option::is_none")]
        display_text: Option<String>,
    },
    /// Opens `uri`.
    Uri {
        /// What the button shows.
        label: String,
        /// The link.
        uri: String,
    },
    /// Opens a date/time picker; the choice comes back as a postback with `params`.
    #[serde(rename = "datetimepicker")]
    DatetimePicker {
        /// What the button shows.
        label: String,
        /// The postback's data.
        data: String,
        /// `date`, `time` or `datetime`.
        mode: String,
    },
    /// Opens the camera (quick replies only).
    Camera {
        /// What the button shows.
        label: String,
    },
    /// Opens the camera roll (quick replies only).
    #[serde(rename = "cameraRoll")]
    CameraRoll {
        /// What the button shows.
        label: String,
    },
    /// Opens the location picker (quick replies only).
    Location {
        /// What the button shows.
        label: String,
    },
}

/// One quick reply button.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct QuickReplyItem {
    /// Always `action`.
    #[serde(rename = "type")]
    pub item_type: String,
    /// An icon, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// What tapping it does.
    pub action: Action,
}

impl QuickReplyItem {
    /// A quick reply button doing `action`.
    pub fn new(action: Action) -> Self {
        Self {
            item_type: "action".into(),
            image_url: None,
            action,
        }
    }
}

/// A message LINE accepted, as reply and push answer it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SentMessage {
    /// The message's id.
    pub id: String,
    /// Token to quote it later.
    #[serde(default)]
    pub quote_token: Option<String>,
}

/// The answer to a reply or push: the messages sent, and which request LINE recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SendOutcome {
    /// The messages sent (empty when LINE does not say).
    pub sent_messages: Vec<SentMessage>,
    /// `X-Line-Request-Id` of the request.
    pub request_id: Option<String>,
    /// Set when LINE answered 409 to a retry: the retry key was already accepted by the request
    /// with this id (`x-line-accepted-request-id`), so nothing was sent twice.
    pub accepted_request_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SentMessages {
    #[serde(default)]
    pub(crate) sent_messages: Vec<SentMessage>,
}

/// A user's profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Profile {
    /// Display name.
    pub display_name: String,
    /// User id.
    pub user_id: String,
    /// Language tag, when the user consented.
    #[serde(default)]
    pub language: Option<String>,
    /// Profile picture.
    #[serde(default)]
    pub picture_url: Option<String>,
    /// Status message.
    #[serde(default)]
    pub status_message: Option<String>,
}

/// LINE's error body: `{"message": ..., "details": [{"message": ..., "property": ...}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ApiError {
    /// What went wrong.
    #[serde(default)]
    pub message: String,
    /// Which properties were wrong.
    #[serde(default)]
    pub details: Vec<ApiErrorDetail>,
}

/// One detail of an [`ApiError`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ApiErrorDetail {
    /// What is wrong.
    #[serde(default)]
    pub message: String,
    /// Which property.
    #[serde(default)]
    pub property: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_serialise_as_line_expects() {
        let m = Message::text("hi").with_quick_reply(vec![QuickReplyItem::new(Action::Postback {
            label: "Yes".into(),
            data: "yes".into(),
            display_text: None,
        })]);
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"type": "text", "text": "hi", "quickReply": {"items": [
                {"type": "action", "action": {"type": "postback", "label": "Yes", "data": "yes"}}
            ]}})
        );
        assert_eq!(m.text_content(), Some("hi"));
        let picker = serde_json::to_value(Action::DatetimePicker {
            label: "When".into(),
            data: "d".into(),
            mode: "date".into(),
        })
        .unwrap();
        assert_eq!(picker["type"], "datetimepicker");
        assert_eq!(
            Message::image("https://x/a.png", None).as_json()["previewImageUrl"],
            "https://x/a.png"
        );
    }
}
