//! Typed builders for Messenger's templates: generic (cards and carousels), button and media,
//! serialised to the Send API's `attachment` JSON, and the template limits checked before a
//! message goes out ([`check_template`]).
//!
//! Each converts into a [`Message`] for the client and into a [`PlatformMessage`] for
//! [`Context::reply_with`](bot_core::Context::reply_with).
//!
//! # Examples
//!
//! ```
//! use bot_messenger::model::send::Button;
//! use bot_messenger::model::template::{GenericElement, GenericTemplate};
//!
//! let template = GenericTemplate::new([GenericElement::new("Margherita")
//!     .subtitle("Tomato, mozzarella")
//!     .image_url("https://example.com/m.jpg")
//!     .default_url("https://example.com/m")
//!     .button(Button::postback("Order", "order=m"))]);
//! let json = template.to_message().as_json().clone();
//! assert_eq!(json["attachment"]["payload"]["template_type"], "generic");
//! ```

use bot_core::Platform;
use bot_core::outbound::PlatformMessage;
use serde::Serialize;
use serde_json::{Value, json};

use super::send::{Button, MAX_BUTTON_TEMPLATE_TEXT_CHARS, MAX_BUTTONS, Message};
use crate::error::Error;

/// Elements of a generic template at most (a carousel of up to 10 cards).
pub const MAX_GENERIC_ELEMENTS: usize = 10;
/// Longest title or subtitle of a generic template element, in characters.
pub const MAX_ELEMENT_TEXT_CHARS: usize = 80;
/// Buttons of a media template at most.
pub const MAX_MEDIA_BUTTONS: usize = 1;

/// A generic template: one element is a card, several a horizontally scrolled carousel.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GenericTemplate {
    /// The elements, 1 to [`MAX_GENERIC_ELEMENTS`].
    pub elements: Vec<GenericElement>,
    /// `horizontal` (1.91:1, the default) or `square`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_aspect_ratio: Option<String>,
}

impl GenericTemplate {
    /// A generic template of `elements`.
    pub fn new(elements: impl IntoIterator<Item = GenericElement>) -> Self {
        Self {
            elements: elements.into_iter().collect(),
            image_aspect_ratio: None,
        }
    }

    /// Square images instead of 1.91:1.
    #[must_use]
    pub fn square_images(mut self) -> Self {
        self.image_aspect_ratio = Some("square".into());
        self
    }

    /// The message object.
    pub fn to_message(&self) -> Message {
        template_message("generic", self)
    }
}

/// An element (a card) of a generic template.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GenericElement {
    /// The title, at most 80 characters.
    pub title: String,
    /// The subtitle, at most 80 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    /// The image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// What tapping the element does: a `web_url` action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Value>,
    /// Up to 3 buttons.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
}

impl GenericElement {
    /// An element titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            subtitle: None,
            image_url: None,
            default_action: None,
            buttons: Vec::new(),
        }
    }

    bot_core::setters! {
        /// Sets the subtitle.
        subtitle: into String;

        /// Sets the image.
        image_url: into String;
    }

    /// Opens `url` when the element is tapped (the only default action Messenger has).
    #[must_use]
    pub fn default_url(mut self, url: impl Into<String>) -> Self {
        self.default_action = Some(json!({"type": "web_url", "url": url.into()}));
        self
    }

    bot_core::setters! {
        /// Adds a button.
        button => buttons: push Button;
    }
}

/// A button template: a text with 1 to 3 buttons.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ButtonTemplate {
    /// The text, at most 640 characters.
    pub text: String,
    /// The buttons.
    pub buttons: Vec<Button>,
}

impl ButtonTemplate {
    /// `text` with `buttons`.
    pub fn new(text: impl Into<String>, buttons: impl IntoIterator<Item = Button>) -> Self {
        Self {
            text: text.into(),
            buttons: buttons.into_iter().collect(),
        }
    }

    /// The message object.
    pub fn to_message(&self) -> Message {
        template_message("button", self)
    }
}

/// A media template: an image or video (uploaded to Meta, or a Facebook URL) with at most one
/// button.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct MediaTemplate {
    /// `image` or `video`.
    pub media_type: String,
    /// A Facebook URL of the media, or `None` with `attachment_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The id of media uploaded with the Attachment Upload API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    /// At most one button.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
}

impl MediaTemplate {
    /// An image or video (`media_type`) at a Facebook `url`.
    pub fn url(media_type: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            media_type: media_type.into(),
            url: Some(url.into()),
            attachment_id: None,
            buttons: Vec::new(),
        }
    }

    /// An image or video (`media_type`) uploaded before, by its attachment id.
    pub fn attachment(media_type: impl Into<String>, attachment_id: impl Into<String>) -> Self {
        Self {
            media_type: media_type.into(),
            url: None,
            attachment_id: Some(attachment_id.into()),
            buttons: Vec::new(),
        }
    }

    bot_core::setters! {
        /// Adds a button.
        button => buttons: push Button;
    }

    /// The message object.
    pub fn to_message(&self) -> Message {
        let payload = json!({"template_type": "media", "elements": [self]});
        Message::from_json(json!({"attachment": {"type": "template", "payload": payload}}))
    }
}

fn template_message(template_type: &str, template: &impl Serialize) -> Message {
    let mut payload = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    payload["template_type"] = json!(template_type);
    Message::from_json(json!({"attachment": {"type": "template", "payload": payload}}))
}

macro_rules! conversions {
    ($($ty:ident),+) => {$(
        impl From<$ty> for Message {
            fn from(template: $ty) -> Self {
                template.to_message()
            }
        }

        impl From<$ty> for PlatformMessage {
            fn from(template: $ty) -> Self {
                PlatformMessage::new(Platform::MESSENGER, template.to_message().as_json().clone())
            }
        }
    )+};
}
conversions!(GenericTemplate, ButtonTemplate, MediaTemplate);

/// Checks a message's template against Messenger's limits: generic templates 1 to 10 elements,
/// titles and subtitles at most 80 characters, at most 3 buttons an element; button templates
/// 1 to 3 buttons and text at most 640 characters; media templates one element with at most
/// one button. Messages that are not templates pass.
///
/// # Errors
///
/// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) naming the broken limit.
pub fn check_template(message: &Message) -> Result<(), Error> {
    let Some(payload) = message
        .as_json()
        .pointer("/attachment/payload")
        .filter(|_| message.attachment_type() == Some("template"))
    else {
        return Ok(());
    };
    let count =
        |value: &Value, key: &str| value.get(key).and_then(Value::as_array).map_or(0, Vec::len);
    let chars = |value: &Value, key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map_or(0, |s| s.chars().count())
    };
    let refuse = |what: String| Err(Error::invalid_request(format!("messenger: {what}")));
    match payload.get("template_type").and_then(Value::as_str) {
        Some("generic") => {
            let elements = count(payload, "elements");
            if elements == 0 || elements > MAX_GENERIC_ELEMENTS {
                return refuse(format!(
                    "a generic template holds 1 to {MAX_GENERIC_ELEMENTS} elements, got {elements}"
                ));
            }
            for element in payload["elements"].as_array().into_iter().flatten() {
                if chars(element, "title") == 0
                    || chars(element, "title") > MAX_ELEMENT_TEXT_CHARS
                    || chars(element, "subtitle") > MAX_ELEMENT_TEXT_CHARS
                {
                    return refuse(format!(
                        "an element's title holds 1 to {MAX_ELEMENT_TEXT_CHARS} characters and \
                         its subtitle at most {MAX_ELEMENT_TEXT_CHARS}"
                    ));
                }
                if count(element, "buttons") > MAX_BUTTONS {
                    return refuse(format!("an element holds at most {MAX_BUTTONS} buttons"));
                }
            }
        }
        Some("button") => {
            let buttons = count(payload, "buttons");
            if buttons == 0 || buttons > MAX_BUTTONS {
                return refuse(format!(
                    "a button template holds 1 to {MAX_BUTTONS} buttons, got {buttons}"
                ));
            }
            if chars(payload, "text") > MAX_BUTTON_TEMPLATE_TEXT_CHARS {
                return refuse(format!(
                    "text with buttons holds at most {MAX_BUTTON_TEMPLATE_TEXT_CHARS} characters"
                ));
            }
        }
        Some("media") => {
            let elements = payload["elements"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            if elements.len() != 1 || count(&elements[0], "buttons") > MAX_MEDIA_BUTTONS {
                return refuse(format!(
                    "a media template holds one element with at most {MAX_MEDIA_BUTTONS} button"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn templates_serialise_to_the_send_api_shapes() {
        let generic = GenericTemplate::new([GenericElement::new("T")
            .subtitle("S")
            .image_url("https://x/i.png")
            .default_url("https://x")
            .button(Button::web_url("Open", "https://x/o"))])
        .square_images();
        assert_eq!(
            generic.to_message().as_json(),
            &json!({"attachment": {"type": "template", "payload": {
                "template_type": "generic",
                "image_aspect_ratio": "square",
                "elements": [{
                    "title": "T", "subtitle": "S", "image_url": "https://x/i.png",
                    "default_action": {"type": "web_url", "url": "https://x"},
                    "buttons": [{"type": "web_url", "title": "Open", "url": "https://x/o"}],
                }],
            }}})
        );
        let button = ButtonTemplate::new("Pick", [Button::postback("A", "a")]);
        let platform = PlatformMessage::from(button);
        assert_eq!(platform.platform(), &Platform::MESSENGER);
        assert_eq!(
            platform.body()["attachment"]["payload"]["template_type"],
            "button"
        );
        assert_eq!(
            platform.body()["attachment"]["payload"]["buttons"][0]["payload"],
            "a"
        );
        let media = MediaTemplate::url("video", "https://www.facebook.com/x/videos/1")
            .button(Button::web_url("More", "https://x"));
        let json = media.to_message().as_json().clone();
        assert_eq!(json["attachment"]["payload"]["template_type"], "media");
        assert_eq!(
            json["attachment"]["payload"]["elements"][0]["media_type"],
            "video"
        );
        assert!(check_template(&media.to_message()).is_ok());
    }

    #[test]
    fn template_limits_are_checked() {
        let refused = |m: Message| check_template(&m).unwrap_err().kind();
        let eleven = GenericTemplate::new((0..11).map(|i| GenericElement::new(format!("{i}"))));
        assert_eq!(refused(eleven.to_message()), ErrorKind::InvalidRequest);
        let ten = GenericTemplate::new((0..10).map(|i| GenericElement::new(format!("{i}"))));
        assert!(check_template(&ten.to_message()).is_ok());
        let long = GenericTemplate::new([GenericElement::new("x".repeat(81))]);
        assert_eq!(refused(long.to_message()), ErrorKind::InvalidRequest);
        let mut four = GenericElement::new("t");
        for i in 0..4 {
            four = four.button(Button::postback(format!("{i}"), "p"));
        }
        assert_eq!(
            refused(GenericTemplate::new([four]).to_message()),
            ErrorKind::InvalidRequest
        );
        let none = ButtonTemplate::new("t", []);
        assert_eq!(refused(none.to_message()), ErrorKind::InvalidRequest);
        let two = MediaTemplate::attachment("image", "1")
            .button(Button::postback("a", "a"))
            .button(Button::postback("b", "b"));
        assert_eq!(refused(two.to_message()), ErrorKind::InvalidRequest);
        assert!(check_template(&Message::text("plain")).is_ok());
    }
}
