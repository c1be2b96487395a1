//! Typed builders for LINE Flex messages: bubbles and carousels of boxes, texts, images,
//! buttons and separators, serialised to the JSON the Messaging API documents
//! (`{"type": "flex", "altText": .., "contents": {"type": "bubble", ..}}`).
//!
//! A [`FlexMessage`] converts into a [`PlatformMessage`] for
//! [`Context::reply_with`](bot_core::Context::reply_with), or into a [`Message`] for the client.
//!
//! # Examples
//!
//! ```
//! use bot_line::model::flex::{Bubble, FlexBox, FlexButton, FlexMessage, FlexText};
//! use bot_line::model::send::Action;
//!
//! let bubble = Bubble::new()
//!     .body(FlexBox::vertical().content(FlexText::new("Hello").bold()).content(FlexText::new("World")))
//!     .footer(FlexBox::vertical().content(FlexButton::new(Action::Postback {
//!         label: "Hi".into(),
//!         data: "hi".into(),
//!         display_text: None,
//!     })));
//! let message = FlexMessage::new("Hello world", bubble);
//! let json = serde_json::to_value(&message).unwrap();
//! assert_eq!(json["contents"]["body"]["contents"][0]["weight"], "bold");
//! ```

use bot_core::Platform;
use bot_core::outbound::PlatformMessage;
use serde::{Deserialize, Serialize};

use super::send::{Action, Message};

/// Bubbles in a carousel at most.
pub const MAX_CAROUSEL_BUBBLES: usize = 12;
/// Bytes of JSON in a bubble at most.
pub const MAX_BUBBLE_BYTES: usize = 30 * 1024;
/// Bytes of JSON in a carousel at most.
pub const MAX_CAROUSEL_BYTES: usize = 50 * 1024;

/// A flex message: the alternative text for notifications and the container shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "flex", rename_all = "camelCase")]
pub struct FlexMessage {
    /// Shown in notifications and chat lists (at most 400 characters).
    pub alt_text: String,
    /// The bubble or carousel.
    pub contents: FlexContainer,
}

impl FlexMessage {
    /// A flex message showing `contents`, `alt_text` in notifications.
    pub fn new(alt_text: impl Into<String>, contents: impl Into<FlexContainer>) -> Self {
        Self {
            alt_text: alt_text.into(),
            contents: contents.into(),
        }
    }

    /// The message object, to send with the client.
    pub fn to_message(&self) -> Message {
        Message::from_json(serde_json::to_value(self).unwrap_or_default())
    }
}

impl From<FlexMessage> for Message {
    fn from(message: FlexMessage) -> Self {
        message.to_message()
    }
}

impl From<FlexMessage> for PlatformMessage {
    fn from(message: FlexMessage) -> Self {
        PlatformMessage::new(Platform::LINE, message.to_message().as_json().clone())
    }
}

/// A flex container: one bubble, or bubbles side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum FlexContainer {
    /// Bubbles scrolled sideways (first: a bubble has no `contents` to mistake it for one).
    Carousel(Carousel),
    /// One bubble.
    Bubble(Box<Bubble>),
}

impl FlexContainer {
    /// A carousel of `bubbles`.
    pub fn carousel(bubbles: impl IntoIterator<Item = Bubble>) -> Self {
        Self::Carousel(Carousel {
            contents: bubbles.into_iter().collect(),
        })
    }
}

/// Up to [`MAX_CAROUSEL_BUBBLES`] bubbles, scrolled sideways.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename = "carousel")]
#[non_exhaustive]
pub struct Carousel {
    /// The bubbles.
    pub contents: Vec<Bubble>,
}

impl From<Bubble> for FlexContainer {
    fn from(bubble: Bubble) -> Self {
        Self::Bubble(Box::new(bubble))
    }
}

/// A bubble: header, hero (usually an image), body and footer blocks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename = "bubble", rename_all = "camelCase")]
#[non_exhaustive]
pub struct Bubble {
    /// `nano`, `micro`, `deca`, `hecto`, `kilo`, `mega` (default) or `giga`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// The header block.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "block")]
    pub header: Option<FlexBox>,
    /// The hero block: an image or a box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hero: Option<FlexComponent>,
    /// The body block.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "block")]
    pub body: Option<FlexBox>,
    /// The footer block, usually buttons.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "block")]
    pub footer: Option<FlexBox>,
    /// What tapping the bubble does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

impl Bubble {
    /// An empty bubble.
    pub fn new() -> Self {
        Self::default()
    }

    bot_core::setters! {
        /// Sets the header.
        header: set FlexBox;

        /// Sets the hero, usually an image.
        hero: into FlexComponent;

        /// Sets the body.
        body: set FlexBox;

        /// Sets the footer.
        footer: set FlexBox;

        /// Sets what tapping the bubble does.
        action: set Action;
    }
}

/// Bubble blocks are boxes, with their `"type": "box"`.
mod block {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{FlexBox, FlexComponent};

    pub(super) fn serialize<S: Serializer>(
        block: &Option<FlexBox>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        block.clone().map(FlexComponent::Box).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<FlexBox>, D::Error> {
        match Option::<FlexComponent>::deserialize(d)? {
            None => Ok(None),
            Some(FlexComponent::Box(block)) => Ok(Some(block)),
            Some(_) => Err(serde::de::Error::custom("a bubble block is a box")),
        }
    }
}

/// A flex component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
#[non_exhaustive]
pub enum FlexComponent {
    /// A box of components.
    Box(FlexBox),
    /// A text.
    Text(FlexText),
    /// An image.
    Image(FlexImage),
    /// A button.
    Button(FlexButton),
    /// A line between components.
    Separator(FlexSeparator),
}

macro_rules! into_component {
    ($($ty:ident => $variant:ident),+) => {$(
        impl From<$ty> for FlexComponent {
            fn from(value: $ty) -> Self {
                Self::$variant(value)
            }
        }
    )+};
}
into_component!(FlexBox => Box, FlexText => Text, FlexImage => Image, FlexButton => Button,
    FlexSeparator => Separator);

/// A box: components laid out vertically, horizontally or on top of each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FlexBox {
    /// `vertical`, `horizontal` or `baseline`.
    pub layout: String,
    /// The components, in order.
    pub contents: Vec<FlexComponent>,
    /// Space between components: `none`, `xs` .. `xxl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spacing: Option<String>,
    /// What tapping the box does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

impl FlexBox {
    /// A box laying its components out top to bottom.
    pub fn vertical() -> Self {
        Self::with_layout("vertical")
    }

    /// A box laying its components out left to right.
    pub fn horizontal() -> Self {
        Self::with_layout("horizontal")
    }

    fn with_layout(layout: &str) -> Self {
        Self {
            layout: layout.to_owned(),
            contents: Vec::new(),
            spacing: None,
            action: None,
        }
    }

    bot_core::setters! {
        /// Adds a component.
        content => contents: push_into FlexComponent;

        /// Sets the space between components (`none`, `xs`, `sm`, `md`, `lg`, `xl`, `xxl`).
        spacing: into String;

        /// Sets what tapping the box does.
        action: set Action;
    }
}

/// A text component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FlexText {
    /// The text.
    pub text: String,
    /// Whether long text wraps onto more lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap: Option<bool>,
    /// `xxs` .. `5xl`, or pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// `regular` or `bold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<String>,
    /// A `#RRGGBB` colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

impl FlexText {
    /// A text component, wrapping.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            wrap: Some(true),
            size: None,
            weight: None,
            color: None,
        }
    }

    /// In bold.
    #[must_use]
    pub fn bold(mut self) -> Self {
        self.weight = Some("bold".into());
        self
    }

    bot_core::setters! {
        /// Sets the size (`xxs`, `xs`, `sm`, `md`, `lg`, `xl`, `xxl`, `3xl` .. `5xl`).
        size: into String;

        /// Sets the colour (`#RRGGBB`).
        color: into String;
    }
}

/// An image component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FlexImage {
    /// HTTPS URL of a JPEG or PNG.
    pub url: String,
    /// `xxs` .. `5xl`, `full`, or pixels or a percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Width to height, such as `20:13`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// `cover` (fill, cropping) or `fit` (whole image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_mode: Option<String>,
    /// What tapping the image does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

impl FlexImage {
    /// The image at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            size: None,
            aspect_ratio: None,
            aspect_mode: None,
            action: None,
        }
    }

    /// Full width, cropped to `aspect_ratio` (such as `20:13`): the usual hero image.
    #[must_use]
    pub fn cover(mut self, aspect_ratio: impl Into<String>) -> Self {
        self.size = Some("full".into());
        self.aspect_ratio = Some(aspect_ratio.into());
        self.aspect_mode = Some("cover".into());
        self
    }

    bot_core::setters! {
        /// Sets what tapping the image does.
        action: set Action;
    }
}

/// A button component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FlexButton {
    /// What pressing it does; its label is the button's.
    pub action: Action,
    /// `link` (default), `primary` or `secondary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// `sm` or `md` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<String>,
}

impl FlexButton {
    /// A link-style button doing `action`.
    pub fn new(action: Action) -> Self {
        Self {
            action,
            style: None,
            height: None,
        }
    }

    bot_core::setters! {
        /// Sets the style: `link`, `primary` or `secondary`.
        style: into String;

        /// Sets the height: `sm` or `md`.
        height: into String;
    }
}

/// A separator: a line between components.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FlexSeparator {
    /// Space before it: `none`, `xs` .. `xxl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<String>,
}

impl FlexSeparator {
    /// A separator.
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builders_produce_lines_documented_json() {
        let bubble = Bubble::new()
            .hero(FlexImage::new("https://x/h.png").cover("20:13"))
            .body(
                FlexBox::vertical()
                    .spacing("sm")
                    .content(FlexText::new("Title").bold().size("xl"))
                    .content(FlexSeparator::new())
                    .content(FlexBox::horizontal().content(FlexText::new("a"))),
            )
            .footer(
                FlexBox::vertical().content(
                    FlexButton::new(Action::Uri {
                        label: "Open".into(),
                        uri: "https://x".into(),
                    })
                    .style("primary"),
                ),
            );
        let json = serde_json::to_value(FlexMessage::new("alt", bubble.clone())).unwrap();
        assert_eq!(
            json,
            json!({
                "type": "flex",
                "altText": "alt",
                "contents": {
                    "type": "bubble",
                    "hero": {"type": "image", "url": "https://x/h.png", "size": "full",
                             "aspectRatio": "20:13", "aspectMode": "cover"},
                    "body": {"type": "box", "layout": "vertical", "spacing": "sm", "contents": [
                        {"type": "text", "text": "Title", "wrap": true, "size": "xl", "weight": "bold"},
                        {"type": "separator"},
                        {"type": "box", "layout": "horizontal", "contents": [
                            {"type": "text", "text": "a", "wrap": true}
                        ]}
                    ]},
                    "footer": {"type": "box", "layout": "vertical", "contents": [
                        {"type": "button", "style": "primary",
                         "action": {"type": "uri", "label": "Open", "uri": "https://x"}}
                    ]}
                }
            })
        );
        let carousel = FlexMessage::new("two", FlexContainer::carousel([bubble.clone(), bubble]));
        let platform = PlatformMessage::from(carousel.clone());
        assert_eq!(platform.platform(), &Platform::LINE);
        assert_eq!(platform.body()["contents"]["type"], "carousel");
        assert_eq!(platform.body()["contents"]["contents"][1]["type"], "bubble");
        let back: FlexMessage = serde_json::from_value(platform.body().clone()).unwrap();
        assert_eq!(back, carousel);
    }
}
