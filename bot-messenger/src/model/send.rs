//! What the Send API and the Graph API take and return: message objects, quick replies,
//! buttons, sender actions, profiles and Graph errors.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Longest text message, in characters (UTF-8 text, counted in characters here).
pub const MAX_TEXT_CHARS: usize = 2000;
/// Most quick replies under one message.
pub const MAX_QUICK_REPLIES: usize = 13;
/// Longest title of a quick reply, in characters.
pub const MAX_QUICK_REPLY_TITLE_CHARS: usize = 20;
/// Longest `payload` of a quick reply or postback button, in characters.
pub const MAX_PAYLOAD_CHARS: usize = 1000;
/// Most buttons of a button template.
pub const MAX_BUTTONS: usize = 3;
/// Longest text of a button template, in characters.
pub const MAX_BUTTON_TEMPLATE_TEXT_CHARS: usize = 640;
/// Longest title of a button, in characters.
pub const MAX_BUTTON_TITLE_CHARS: usize = 20;

/// Why a message is sent, which decides whether Meta's 24-hour window applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessagingType {
    /// An answer to a message the user sent (within 24 hours of it). What replies use.
    Response,
    /// A message the bot starts, within 24 hours of the user's last message.
    Update,
    /// A message outside the 24-hour window, allowed by a tag.
    MessageTag(MessageTag),
}

impl MessagingType {
    /// `messaging_type` as the Send API spells it.
    pub fn as_str(&self) -> &str {
        match self {
            MessagingType::Response => "RESPONSE",
            MessagingType::Update => "UPDATE",
            MessagingType::MessageTag(_) => "MESSAGE_TAG",
        }
    }

    /// The tag, for [`MessagingType::MessageTag`].
    pub fn tag(&self) -> Option<&MessageTag> {
        match self {
            MessagingType::MessageTag(tag) => Some(tag),
            _ => None,
        }
    }
}

/// A message tag: the reason a message may go out after the 24-hour window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageTag {
    /// A human agent answers, up to 7 days after the user's message.
    HumanAgent,
    /// A change to the user's account.
    AccountUpdate,
    /// A reminder or update about an event the user registered for.
    ConfirmedEventUpdate,
    /// An update about a purchase.
    PostPurchaseUpdate,
    /// Any other tag, as the Send API spells it.
    Other(String),
}

impl MessageTag {
    /// The tag the Send API spells `tag`: a known one, or [`MessageTag::Other`].
    pub fn parse(tag: &str) -> Self {
        match tag {
            "HUMAN_AGENT" => MessageTag::HumanAgent,
            "ACCOUNT_UPDATE" => MessageTag::AccountUpdate,
            "CONFIRMED_EVENT_UPDATE" => MessageTag::ConfirmedEventUpdate,
            "POST_PURCHASE_UPDATE" => MessageTag::PostPurchaseUpdate,
            other => MessageTag::Other(other.to_owned()),
        }
    }

    /// The tag as the Send API spells it.
    pub fn as_str(&self) -> &str {
        match self {
            MessageTag::HumanAgent => "HUMAN_AGENT",
            MessageTag::AccountUpdate => "ACCOUNT_UPDATE",
            MessageTag::ConfirmedEventUpdate => "CONFIRMED_EVENT_UPDATE",
            MessageTag::PostPurchaseUpdate => "POST_PURCHASE_UPDATE",
            MessageTag::Other(tag) => tag,
        }
    }
}

/// A typing indicator or read receipt, sent alone (never with a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SenderAction {
    /// Shows the typing bubble (for 20 seconds, or until the next message).
    TypingOn,
    /// Hides it.
    TypingOff,
    /// Marks the user's last message as seen.
    MarkSeen,
}

impl SenderAction {
    /// `sender_action` as the Send API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SenderAction::TypingOn => "typing_on",
            SenderAction::TypingOff => "typing_off",
            SenderAction::MarkSeen => "mark_seen",
        }
    }
}

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Recipient {
    /// A page-scoped user id (PSID) or Instagram-scoped id.
    Id(String),
    /// A checkbox plugin's `user_ref`.
    UserRef(String),
}

impl Recipient {
    /// The `recipient` object.
    pub fn to_json(&self) -> Value {
        match self {
            Recipient::Id(id) => json!({ "id": id }),
            Recipient::UserRef(user_ref) => json!({ "user_ref": user_ref }),
        }
    }
}

impl Recipient {
    /// The recipient of a core conversation: a PSID, or `user_ref:<ref>` for users known only
    /// by a checkbox plugin's reference ([`crate::event::USER_REF_PREFIX`]).
    pub fn for_conversation(conversation: &str) -> Self {
        match conversation.strip_prefix(crate::event::USER_REF_PREFIX) {
            Some(user_ref) => Recipient::UserRef(user_ref.to_owned()),
            None => Recipient::Id(conversation.to_owned()),
        }
    }
}

impl From<&str> for Recipient {
    fn from(id: &str) -> Self {
        Recipient::Id(id.to_owned())
    }
}

/// A `message` object to send, built with the constructors or from any JSON the Send API takes
/// ([`Message::from_json`]), such as generic templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Message(Value);

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self(json!({ "text": text.into() }))
    }

    /// An image by URL; Meta fetches it (`is_reusable` lets later messages reuse it).
    pub fn image(url: impl Into<String>) -> Self {
        Self::media("image", url)
    }

    /// An attachment of `attachment_type` (`image`, `audio`, `video`, `file`) by URL.
    pub fn media(attachment_type: &str, url: impl Into<String>) -> Self {
        Self(json!({"attachment": {
            "type": attachment_type,
            "payload": {"url": url.into(), "is_reusable": true},
        }}))
    }

    /// A button template: `text` with up to three buttons.
    pub fn buttons(text: impl Into<String>, buttons: Vec<Button>) -> Self {
        Self(json!({"attachment": {
            "type": "template",
            "payload": {"template_type": "button", "text": text.into(), "buttons": buttons},
        }}))
    }

    /// Any message object, as JSON.
    pub fn from_json(value: Value) -> Self {
        Self(value)
    }

    /// Adds quick replies (Messenger shows those of the latest message).
    #[must_use]
    pub fn with_quick_replies(mut self, quick_replies: Vec<QuickReply>) -> Self {
        if let Value::Object(map) = &mut self.0 {
            map.insert("quick_replies".into(), json!(quick_replies));
        }
        self
    }

    /// Adds `metadata`, which comes back on the echo of this message.
    #[must_use]
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        if let Value::Object(map) = &mut self.0 {
            map.insert("metadata".into(), Value::String(metadata.into()));
        }
        self
    }

    /// The text, for text messages.
    pub fn text_content(&self) -> Option<&str> {
        self.0.get("text").and_then(Value::as_str)
    }

    /// The attachment's type, for attachment messages.
    pub fn attachment_type(&self) -> Option<&str> {
        self.0.pointer("/attachment/type").and_then(Value::as_str)
    }

    /// The message as JSON.
    pub fn as_json(&self) -> &Value {
        &self.0
    }
}

/// A quick reply chip under a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuickReply(Value);

impl QuickReply {
    /// A chip showing `title` that sends `title` as text with `payload` attached.
    pub fn text(title: impl Into<String>, payload: impl Into<String>) -> Self {
        Self(json!({"content_type": "text", "title": title.into(), "payload": payload.into()}))
    }

    /// A chip offering the user's email address.
    pub fn user_email() -> Self {
        Self(json!({ "content_type": "user_email" }))
    }

    /// A chip offering the user's phone number.
    pub fn user_phone_number() -> Self {
        Self(json!({ "content_type": "user_phone_number" }))
    }

    /// The quick reply as JSON.
    pub fn as_json(&self) -> &Value {
        &self.0
    }
}

/// A button of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Button(Value);

impl Button {
    /// A button that sends a postback with `payload`.
    pub fn postback(title: impl Into<String>, payload: impl Into<String>) -> Self {
        Self(json!({"type": "postback", "title": title.into(), "payload": payload.into()}))
    }

    /// A button that opens `url`.
    pub fn web_url(title: impl Into<String>, url: impl Into<String>) -> Self {
        Self(json!({"type": "web_url", "title": title.into(), "url": url.into()}))
    }

    /// The button as JSON.
    pub fn as_json(&self) -> &Value {
        &self.0
    }
}

/// What the Send API answers to a message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SendResponse {
    /// The recipient's PSID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    /// The new message's id (absent for sender actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// A user's public profile, as far as the page may see it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Profile {
    /// The PSID.
    #[serde(default)]
    pub id: String,
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Profile picture URL (expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_pic: Option<String>,
    /// Any other field asked for.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A Graph API error: `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct GraphError {
    /// What went wrong, in English.
    #[serde(default)]
    pub message: String,
    /// `OAuthException`, `GraphMethodException`, ...
    #[serde(default, rename = "type")]
    pub error_type: String,
    /// The error code (190 bad token, 4 and 613 rate limits, 1200 temporary, ...).
    #[serde(default)]
    pub code: i64,
    /// The subcode, where there is one (2018001 no such user, 2018278 outside the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    /// Meta's trace id, for their support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
}

impl GraphError {
    /// Reads the error out of a Graph answer body.
    pub fn from_body(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Wrapper {
            error: GraphError,
        }
        serde_json::from_slice::<Wrapper>(body)
            .ok()
            .map(|w| w.error)
    }

    /// The error as a Graph answer body.
    pub fn to_body(&self) -> Value {
        json!({ "error": self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_build_the_send_api_shapes() {
        let m = Message::text("hi").with_quick_replies(vec![QuickReply::text("Yes", "Y")]);
        assert_eq!(m.as_json()["quick_replies"][0]["payload"], "Y");
        assert_eq!(m.text_content(), Some("hi"));
        let b = Message::buttons("pick", vec![Button::web_url("Site", "https://x")]);
        assert_eq!(b.attachment_type(), Some("template"));
        assert_eq!(
            b.as_json()["attachment"]["payload"]["buttons"][0]["type"],
            "web_url"
        );
        assert_eq!(
            Message::image("https://x/i.png").attachment_type(),
            Some("image")
        );
        let tag = MessagingType::MessageTag(MessageTag::HumanAgent);
        assert_eq!(
            (tag.as_str(), tag.tag().unwrap().as_str()),
            ("MESSAGE_TAG", "HUMAN_AGENT")
        );
    }

    #[test]
    fn graph_errors_read_back() {
        let e = GraphError::from_body(
            br#"{"error":{"message":"(#100) No matching user found","type":"OAuthException",
                 "code":100,"error_subcode":2018001,"fbtrace_id":"AbC"}}"#,
        )
        .unwrap();
        assert_eq!((e.code, e.error_subcode), (100, Some(2018001)));
        assert_eq!(
            GraphError::from_body(&serde_json::to_vec(&e.to_body()).unwrap()),
            Some(e)
        );
        assert!(GraphError::from_body(b"<html>").is_none());
    }

    #[test]
    fn conversations_name_their_recipients() {
        assert_eq!(
            Recipient::for_conversation("2438"),
            Recipient::Id("2438".into())
        );
        let by_ref = Recipient::for_conversation("user_ref:abc");
        assert_eq!(by_ref, Recipient::UserRef("abc".into()));
        assert_eq!(by_ref.to_json(), json!({"user_ref": "abc"}));
    }
}
