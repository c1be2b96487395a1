//! [`OutgoingMessage`] and its parts: images, quick replies, buttons and their actions.

use serde::{Deserialize, Serialize};

use super::{Card, File, PlatformMessage, Rich};

/// A message to send: text, an image, quick replies or buttons, and a [`Rich`] part (a card, a
/// carousel, a file, a typing indicator or a platform's own message).
///
/// Adapters send the parts in this order: the text, the image, the buttons (with the text where
/// the platform attaches buttons to a text), then the rich part; quick replies go under the last
/// message sent.
///
/// # Examples
///
/// ```
/// use bot_core::outbound::{Button, Card, OutgoingMessage, QuickReply};
///
/// let menu = OutgoingMessage::card(
///     Card::new("Pizza Margherita")
///         .text("Tomato, mozzarella, basil")
///         .image("https://example.com/margherita.jpg")
///         .button(Button::postback("Order", "order=margherita")),
/// )
/// .quick_reply(QuickReply::message("Menu"));
/// assert!(menu.rich.is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutgoingMessage {
    /// The text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An image to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// Quick replies offered under the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quick_replies: Vec<QuickReply>,
    /// Buttons attached to the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
    /// A card, carousel, file, typing indicator or platform message, sent after the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rich: Option<Rich>,
}

impl OutgoingMessage {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }

    /// An image message.
    pub fn image(url: impl Into<String>) -> Self {
        Self {
            image: Some(Image::new(url)),
            ..Self::default()
        }
    }

    /// A card: a title, a text, an image and buttons in one bubble.
    pub fn card(card: Card) -> Self {
        Self::rich(Rich::Card(card))
    }

    /// A carousel: cards side by side, scrolled horizontally where the platform can.
    pub fn carousel(cards: impl IntoIterator<Item = Card>) -> Self {
        Self::rich(Rich::Carousel {
            cards: cards.into_iter().collect(),
        })
    }

    /// A file by URL, shown as `name` where the platform shows one.
    pub fn file(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self::rich(Rich::File(File::new(url, name)))
    }

    /// A typing indicator in the conversation (LINE's loading animation, Messenger's
    /// `typing_on`, Discord's trigger typing) instead of a message.
    pub fn typing() -> Self {
        Self::rich(Rich::Typing)
    }

    /// A platform's own message, sent as-is on its platform (see [`PlatformMessage`]).
    pub fn platform(message: PlatformMessage) -> Self {
        Self::rich(Rich::Platform(message))
    }

    fn rich(rich: Rich) -> Self {
        Self {
            rich: Some(rich),
            ..Self::default()
        }
    }

    crate::setters! {
        /// Sets the text, sent before the rest.
        with_text => text: into String;

        /// Adds a quick reply.
        quick_reply => quick_replies: push QuickReply;

        /// Adds a button.
        button => buttons: push Button;
    }

    /// Whether this message asks for a typing indicator.
    pub fn is_typing(&self) -> bool {
        matches!(self.rich, Some(Rich::Typing))
    }
}

impl From<&str> for OutgoingMessage {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}

impl From<String> for OutgoingMessage {
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

impl From<&String> for OutgoingMessage {
    fn from(text: &String) -> Self {
        Self::text(text.as_str())
    }
}

impl From<Card> for OutgoingMessage {
    fn from(card: Card) -> Self {
        Self::card(card)
    }
}

impl From<File> for OutgoingMessage {
    fn from(file: File) -> Self {
        Self::rich(Rich::File(file))
    }
}

impl From<PlatformMessage> for OutgoingMessage {
    fn from(message: PlatformMessage) -> Self {
        Self::platform(message)
    }
}

/// An image by URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// The full-size image (HTTPS on most platforms).
    pub url: String,
    /// A smaller preview, where the platform wants one; `url` is used otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
}

impl Image {
    /// An image at `url`, with no separate preview.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            preview_url: None,
        }
    }
}

/// A quick reply: a chip under the message that sends text or postback data when tapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuickReply {
    /// What the chip shows.
    pub label: String,
    /// What tapping it does.
    pub action: Action,
}

impl QuickReply {
    /// A quick reply that sends its label as a message.
    pub fn message(label: impl Into<String>) -> Self {
        let label = label.into();
        Self {
            action: Action::Message(label.clone()),
            label,
        }
    }

    /// A quick reply that sends postback `data`.
    pub fn postback(label: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            action: Action::Postback(data.into()),
        }
    }
}

/// A button attached to a message or a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Button {
    /// What the button shows.
    pub label: String,
    /// What pressing it does.
    pub action: Action,
}

impl Button {
    /// A button that sends postback `data`.
    pub fn postback(label: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            action: Action::Postback(data.into()),
        }
    }

    /// A button that opens `url`.
    pub fn link(label: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            action: Action::Url(url.into()),
        }
    }
}

/// What a button or quick reply does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Sends this text as if the user typed it.
    Message(String),
    /// Sends a postback event with this data.
    Postback(String),
    /// Opens this URL.
    Url(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Platform;

    #[test]
    fn builders_compose_and_serialise() {
        let m = OutgoingMessage::text("pick one")
            .quick_reply(QuickReply::message("Yes"))
            .button(Button::postback("More", "more"));
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["quick_replies"][0]["action"]["type"], "message");
        assert_eq!(json["buttons"][0]["action"]["value"], "more");
        assert_eq!(OutgoingMessage::from("x").text.as_deref(), Some("x"));
    }

    #[test]
    fn every_rich_kind_survives_a_serde_round_trip() {
        let card = Card::new("Title")
            .text("Sub")
            .image("https://x/i.png")
            .button(Button::link("Open", "https://x"))
            .default_action(Action::Postback("tap".into()));
        let messages = [
            OutgoingMessage::card(card.clone()).with_text("intro"),
            OutgoingMessage::carousel([card.clone(), Card::new("Second")]),
            OutgoingMessage::file("https://x/a.pdf", "a.pdf"),
            OutgoingMessage::typing(),
            OutgoingMessage::platform(
                PlatformMessage::new(Platform::LINE, serde_json::json!({"type": "sticker"}))
                    .with_fallback("a sticker"),
            ),
        ];
        for message in messages {
            let json = serde_json::to_value(&message).unwrap();
            let back: OutgoingMessage = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back, message, "{json}");
        }
        let json = serde_json::to_value(OutgoingMessage::carousel([card])).unwrap();
        assert_eq!(json["rich"]["type"], "carousel");
        assert_eq!(json["rich"]["cards"][0]["title"], "Title");
        assert_eq!(
            serde_json::to_value(OutgoingMessage::typing()).unwrap(),
            serde_json::json!({"rich": {"type": "typing"}})
        );
        assert!(OutgoingMessage::typing().is_typing());
        assert!(!OutgoingMessage::text("x").is_typing());
    }
}
