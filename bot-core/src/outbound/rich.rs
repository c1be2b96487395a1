//! [`Rich`] parts of a message: cards, carousels, files, typing, platform messages.

use serde::{Deserialize, Serialize};

use super::{Action, Button, Image, PlatformMessage};

/// The rich part of an [`OutgoingMessage`](super::OutgoingMessage), sent after its text, image
/// and buttons. Each adapter renders a kind as its platform's closest equivalent, or refuses it
/// with an invalid-request error before sending when it breaks a platform limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rich {
    /// One card: LINE Flex bubble, Messenger generic template, Discord embed.
    Card(Card),
    /// Cards side by side: LINE Flex carousel, Messenger generic template with several
    /// elements, Discord embeds in one message.
    Carousel {
        /// The cards, in order.
        cards: Vec<Card>,
    },
    /// A file by URL: Messenger file attachment, Discord link embed, LINE a text with the link
    /// (LINE bots cannot send files).
    File(File),
    /// A typing indicator instead of a message: LINE loading animation (one-to-one chats only),
    /// Messenger `typing_on`, Discord trigger typing.
    Typing,
    /// One platform's own message JSON, sent as-is there; elsewhere its fallback or an error.
    Platform(PlatformMessage),
}

/// A card: a title, an optional text, image and buttons, and an action for tapping the card.
///
/// # Examples
///
/// ```
/// use bot_core::outbound::{Action, Button, Card};
///
/// let card = Card::new("Order #42")
///     .text("2 items, shipped")
///     .image("https://example.com/parcel.png")
///     .button(Button::link("Track", "https://example.com/track/42"))
///     .default_action(Action::Url("https://example.com/orders/42".into()));
/// assert_eq!(card.buttons.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Card {
    /// The title, in bold.
    pub title: String,
    /// A text under the title (a subtitle on Messenger, the description on Discord).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An image above the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// Buttons under the text: at most 3 on Messenger, 25 a message on Discord; LINE counts only
    /// the bubble's 30 KB.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
    /// What tapping the card itself does. Messenger and Discord take only [`Action::Url`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
}

impl Card {
    /// A card with `title` and nothing else.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            text: None,
            image: None,
            buttons: Vec::new(),
            default_action: None,
        }
    }

    crate::setters! {
        /// Sets the text under the title.
        text: into String;
    }

    /// Sets the image, by URL.
    #[must_use]
    pub fn image(mut self, url: impl Into<String>) -> Self {
        self.image = Some(Image::new(url));
        self
    }

    crate::setters! {
        /// Adds a button.
        button => buttons: push Button;

        /// Sets what tapping the card does.
        default_action: set Action;
    }
}

/// A file by URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct File {
    /// Where the platform (or the user) downloads it; HTTPS.
    pub url: String,
    /// The name to show, such as `invoice.pdf`.
    pub name: String,
}

impl File {
    /// The file at `url`, shown as `name`.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
        }
    }
}
