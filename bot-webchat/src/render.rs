//! Rendering [`OutgoingMessage`]s to the protocol's [`WireMessage`]: the widget shows every
//! neutral kind as it is, so one outgoing message is one wire message.

use bot_core::Platform;
use bot_core::outbound::{
    Action, Button, Card, Image, OutgoingMessage, QuickReply, Rendered, Rich,
};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The platform name of web chat events and replies.
pub const PLATFORM: Platform = Platform::from_static("webchat");

/// A message of the bot as the widget receives it, inside a `message` frame.
///
/// Every field is optional; the widget shows, in order, the text, the image, the buttons, the card
/// or carousel, the file, and the quick replies under the last message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WireMessage {
    /// The text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<WireImage>,
    /// Buttons under the text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<WireButton>,
    /// Chips offered under the message until the user answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quick_replies: Vec<WireButton>,
    /// One card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<WireCard>,
    /// Cards side by side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carousel: Vec<WireCard>,
    /// A file to download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<WireFile>,
    /// A web chat [`bot_core::outbound::PlatformMessage`]'s body, for a site's own widget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
}

/// An image by URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireImage {
    /// The image.
    pub url: String,
    /// A smaller preview, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
}

/// A button or quick reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireButton {
    /// What it shows.
    pub label: String,
    /// What tapping it does.
    pub action: WireAction,
}

/// What a button does: `{"type":"message"|"postback"|"url","value":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireAction {
    /// `message` (send `value` as the user's text), `postback` (send a postback with `value`)
    /// or `url` (open `value`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text, data or URL.
    pub value: String,
}

/// A card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireCard {
    /// The title.
    pub title: String,
    /// The text under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The image above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<WireImage>,
    /// Its buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<WireButton>,
    /// What tapping the card does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<WireAction>,
}

/// A file by URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireFile {
    /// Where to download it.
    pub url: String,
    /// The name to show.
    pub name: String,
}

/// What `message` becomes: one wire message, or the typing indicator.
///
/// # Errors
///
/// [`crate::ErrorKind::Invalid`] for an empty message, a kind this version cannot show (a
/// new action), or another platform's message without a fallback.
pub(crate) fn render(message: &OutgoingMessage) -> Result<Vec<Rendered<WireMessage>>, Error> {
    if message.is_typing() {
        return Ok(vec![Rendered::Typing]);
    }
    let mut wire = WireMessage {
        text: message.text.clone(),
        image: message.image.as_ref().map(image),
        buttons: message
            .buttons
            .iter()
            .map(button)
            .collect::<Result<_, _>>()?,
        quick_replies: (message.quick_replies.iter())
            .map(quick_reply)
            .collect::<Result<_, _>>()?,
        ..WireMessage::default()
    };
    match &message.rich {
        None | Some(Rich::Typing) => {}
        Some(Rich::Card(c)) => wire.card = Some(card(c)?),
        Some(Rich::Carousel { cards }) => {
            wire.carousel = cards.iter().map(card).collect::<Result<_, _>>()?;
        }
        Some(Rich::File(f)) => {
            wire.file = Some(WireFile {
                url: f.url.clone(),
                name: f.name.clone(),
            });
        }
        Some(Rich::Platform(p)) => {
            let mut parts = p.render_for(
                &PLATFORM,
                |body| {
                    Ok(WireMessage {
                        custom: Some(body.clone()),
                        ..WireMessage::default()
                    })
                },
                render,
                Error::invalid,
            )?;
            // The text, buttons and quick replies of this message go with the platform part.
            match parts.pop() {
                Some(Rendered::Message(part)) => merge(&mut wire, part),
                Some(Rendered::Typing) | None => {}
            }
        }
        Some(_) => {
            return Err(Error::invalid(
                "webchat: a rich kind this version cannot show",
            ));
        }
    }
    if wire == WireMessage::default() {
        return Err(Error::invalid("webchat: an empty message"));
    }
    Ok(vec![Rendered::Message(wire)])
}

/// Fills what `wire` lacks from `part` (a platform message's rendering).
fn merge(wire: &mut WireMessage, part: WireMessage) {
    wire.text = wire.text.take().or(part.text);
    wire.image = wire.image.take().or(part.image);
    wire.card = wire.card.take().or(part.card);
    wire.file = wire.file.take().or(part.file);
    wire.custom = part.custom;
    wire.buttons.extend(part.buttons);
    wire.quick_replies.extend(part.quick_replies);
    wire.carousel.extend(part.carousel);
}

fn image(image: &Image) -> WireImage {
    WireImage {
        url: image.url.clone(),
        preview_url: image.preview_url.clone(),
    }
}

fn action(action: &Action) -> Result<WireAction, Error> {
    let (kind, value) = match action {
        Action::Message(text) => ("message", text),
        Action::Postback(data) => ("postback", data),
        Action::Url(url) => ("url", url),
        _ => {
            return Err(Error::invalid(
                "webchat: an action this version cannot show",
            ));
        }
    };
    Ok(WireAction {
        kind: kind.to_owned(),
        value: value.clone(),
    })
}

fn button(b: &Button) -> Result<WireButton, Error> {
    Ok(WireButton {
        label: b.label.clone(),
        action: action(&b.action)?,
    })
}

fn quick_reply(q: &QuickReply) -> Result<WireButton, Error> {
    Ok(WireButton {
        label: q.label.clone(),
        action: action(&q.action)?,
    })
}

fn card(c: &Card) -> Result<WireCard, Error> {
    Ok(WireCard {
        title: c.title.clone(),
        text: c.text.clone(),
        image: c.image.as_ref().map(image),
        buttons: c.buttons.iter().map(button).collect::<Result<_, _>>()?,
        default_action: c.default_action.as_ref().map(action).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use bot_core::outbound::PlatformMessage;
    use serde_json::json;

    use super::*;

    fn one(message: &OutgoingMessage) -> serde_json::Value {
        match render(message).unwrap().as_slice() {
            [Rendered::Message(m)] => serde_json::to_value(m).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_buttons_and_quick_replies_render_together() {
        let message = OutgoingMessage::text("pick one")
            .button(Button::link("Site", "https://example.com"))
            .quick_reply(QuickReply::message("Yes"))
            .quick_reply(QuickReply::postback("No", "answer=no"));
        assert_eq!(
            one(&message),
            json!({
                "text": "pick one",
                "buttons": [{"label": "Site", "action": {"type": "url", "value": "https://example.com"}}],
                "quick_replies": [
                    {"label": "Yes", "action": {"type": "message", "value": "Yes"}},
                    {"label": "No", "action": {"type": "postback", "value": "answer=no"}}
                ]
            })
        );
    }

    #[test]
    fn cards_carousels_files_and_images_render() {
        let card = Card::new("Pizza")
            .text("Margherita")
            .image("https://x/p.png")
            .button(Button::postback("Order", "order=1"))
            .default_action(Action::Url("https://x".into()));
        let json = one(&OutgoingMessage::card(card.clone()).with_text("menu"));
        assert_eq!(json["text"], "menu");
        assert_eq!(json["card"]["title"], "Pizza");
        assert_eq!(json["card"]["buttons"][0]["action"]["value"], "order=1");
        assert_eq!(json["card"]["default_action"]["type"], "url");
        let json = one(&OutgoingMessage::carousel([card.clone(), Card::new("Two")]));
        assert_eq!(json["carousel"][1]["title"], "Two");
        let json = one(&OutgoingMessage::file("https://x/a.pdf", "a.pdf"));
        assert_eq!(
            json["file"],
            json!({"url": "https://x/a.pdf", "name": "a.pdf"})
        );
        let json = one(&OutgoingMessage::image("https://x/i.png"));
        assert_eq!(json["image"]["url"], "https://x/i.png");
    }

    #[test]
    fn typing_platform_messages_and_empty_messages() {
        assert_eq!(
            render(&OutgoingMessage::typing()).unwrap(),
            vec![Rendered::Typing]
        );
        let native = PlatformMessage::new(PLATFORM, json!({"kind": "rating"}));
        assert_eq!(
            one(&OutgoingMessage::platform(native))["custom"]["kind"],
            "rating"
        );
        let line = PlatformMessage::new(Platform::LINE, json!({"type": "sticker"}));
        assert!(render(&OutgoingMessage::platform(line.clone())).is_err());
        let with_fallback = OutgoingMessage::platform(line.with_fallback("a sticker"));
        assert_eq!(one(&with_fallback)["text"], "a sticker");
        assert!(render(&OutgoingMessage::default()).is_err());
    }
}
