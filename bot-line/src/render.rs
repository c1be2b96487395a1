//! Platform-neutral messages ([`OutgoingMessage`]) mapped to LINE message objects.
//!
//! | neutral | LINE |
//! |---|---|
//! | text | text message (at most 5,000 characters) |
//! | image | image message |
//! | buttons | buttons template with the text (at most 4 buttons, text at most 160 characters) |
//! | quick replies | `quickReply` of the last message (at most 13) |
//! | card | Flex bubble: hero image, bold title, text, link buttons in the footer, the default action on the bubble (at most 30 KB) |
//! | carousel | Flex carousel of those bubbles (1 to 12, at most 50 KB) |
//! | file | **fallback**: a text message with the name and the link, since LINE bots cannot send files |
//! | typing | the loading animation, in one-to-one chats only (LINE has none for groups) |
//! | platform message | LINE's JSON as-is; another platform's: its fallback, or refused |

use bot_core::Platform;
use bot_core::outbound::{self, Card, OutgoingMessage, Rich, at_most, chars_at_most, collect_into};
use serde_json::Value;

use crate::error::Error;
use crate::model::flex::{
    Bubble, FlexBox, FlexButton, FlexContainer, FlexImage, FlexMessage, FlexText, MAX_BUBBLE_BYTES,
    MAX_CAROUSEL_BUBBLES, MAX_CAROUSEL_BYTES,
};
use crate::model::send::{
    Action, MAX_ALT_TEXT_CHARS, MAX_MESSAGES_PER_CALL, MAX_QUICK_REPLY_ITEMS, MAX_TEMPLATE_ACTIONS,
    MAX_TEMPLATE_TEXT_CHARS, MAX_TEXT_CHARS, Message, QuickReplyItem,
};

/// What a neutral message becomes here: a message object, or a typing indicator.
pub(crate) type Rendered = bot_core::outbound::Rendered<Message>;

/// Maps a platform-neutral message to LINE message objects (a typing indicator is not one, and
/// is left out): text, image, a buttons template for buttons (with the image as its thumbnail),
/// a Flex message for a card or carousel, a text with the link for a file, quick replies under
/// the last object. The module docs hold the full table.
///
/// # Errors
///
/// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) when the message breaks a
/// LINE limit (text over 5,000 characters, buttons without text or over 4, template text over
/// 160 characters, over 13 quick replies, a carousel of no card or over 12, a bubble over 30 KB
/// or a carousel over 50 KB), uses an action LINE has no equivalent for, or is another
/// platform's message without a fallback.
pub fn to_line_messages(message: &OutgoingMessage) -> Result<Vec<Message>, Error> {
    Ok(bot_core::outbound::messages_of(render(message)?))
}

/// Refuses `messages` as [`LineClient`](crate::client::LineClient)'s send would, with the
/// same error, before any call: what LINE cannot show or what breaks its limits (five buttons
/// on one message, say). For tests: `TestBot::builder().platform_rules(Platform::LINE,
/// bot_line::client::validate)` makes a test bot refuse what LINE would.
///
/// # Errors
///
/// The error the client's send returns for `messages`.
pub fn validate(messages: &[OutgoingMessage]) -> Result<(), bot_core::Error> {
    render_send(messages)?;
    Ok(())
}

/// The messages of one send: whether a typing indicator goes first, and the message objects.
pub(crate) fn render_send(messages: &[OutgoingMessage]) -> Result<(bool, Vec<Message>), Error> {
    bot_core::outbound::render_send(messages, render)
}

/// As [`to_line_messages`], with the typing indicator as a [`Rendered::Typing`] first.
pub(crate) fn render(message: &OutgoingMessage) -> Result<Vec<Rendered>, Error> {
    let mut typing = false;
    let mut out = plain(message)?;
    match &message.rich {
        None => {}
        Some(Rich::Typing) => typing = true,
        Some(Rich::Card(card)) => out.push(flex(&card.title, bubble(card)?.into())?),
        Some(Rich::Carousel { cards }) => out.push(carousel(cards)?),
        Some(Rich::File(file)) => out.push(text(&format!("{}\n{}", file.name, file.url))?),
        Some(Rich::Platform(platform)) => {
            let native = |json: &serde_json::Value| Ok(Message::from_json(json.clone()));
            let rendered =
                platform.render_for(&Platform::LINE, native, render, Error::invalid_request);
            typing |= collect_into(rendered?, &mut out);
        }
        Some(other) => {
            return Err(Error::invalid_request(format!(
                "line: no LINE message for {other:?}"
            )));
        }
    }
    let mut out = with_quick_replies(message, out)?
        .into_iter()
        .map(Rendered::Message)
        .collect::<Vec<_>>();
    if typing {
        out.insert(0, Rendered::Typing);
    }
    Ok(out)
}

/// Refuses a call of no message or more than LINE takes at once.
pub(crate) fn check_count(messages: &[Message]) -> Result<(), Error> {
    if messages.is_empty() || messages.len() > MAX_MESSAGES_PER_CALL {
        return Err(Error::invalid_request(format!(
            "line: a call carries 1 to {MAX_MESSAGES_PER_CALL} messages, got {}",
            messages.len()
        )));
    }
    Ok(())
}

/// The text, the image and the buttons.
fn plain(message: &OutgoingMessage) -> Result<Vec<Message>, Error> {
    let mut out = Vec::with_capacity(2);
    if message.buttons.is_empty() {
        if let Some(body) = &message.text {
            out.push(text(body)?);
        }
        if let Some(image) = &message.image {
            out.push(Message::image(image.url.clone(), image.preview_url.clone()));
        }
    } else {
        out.push(buttons(message)?);
    }
    Ok(out)
}

fn text(text: &str) -> Result<Message, Error> {
    chars_at_most(&Platform::LINE, "a text message", text, MAX_TEXT_CHARS)?;
    Ok(Message::text(text))
}

/// A card as a bubble: hero image, bold title and text in the body, buttons in the footer.
fn bubble(card: &Card) -> Result<Bubble, Error> {
    let mut body = FlexBox::vertical()
        .spacing("sm")
        .content(FlexText::new(card.title.clone()).bold().size("lg"));
    if let Some(text) = &card.text {
        body = body.content(FlexText::new(text.clone()).size("sm").color("#666666"));
    }
    let mut bubble = Bubble::new().body(body);
    if let Some(image) = &card.image {
        bubble = bubble.hero(FlexImage::new(image.url.clone()).cover("20:13"));
    }
    if !card.buttons.is_empty() {
        let mut footer = FlexBox::vertical().spacing("sm");
        for b in &card.buttons {
            footer = footer.content(FlexButton::new(action(&b.label, &b.action)?).height("sm"));
        }
        bubble = bubble.footer(footer);
    }
    if let Some(default) = &card.default_action {
        bubble = bubble.action(action(&card.title, default)?);
    }
    Ok(bubble)
}

fn carousel(cards: &[Card]) -> Result<Message, Error> {
    if cards.is_empty() || cards.len() > MAX_CAROUSEL_BUBBLES {
        return Err(Error::invalid_request(format!(
            "line: a carousel holds 1 to {MAX_CAROUSEL_BUBBLES} cards, got {}",
            cards.len()
        )));
    }
    let bubbles = cards.iter().map(bubble).collect::<Result<Vec<_>, _>>()?;
    let titles = cards
        .iter()
        .map(|c| c.title.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    flex(&titles, FlexContainer::carousel(bubbles))
}

/// A flex message, its alt text cut to LINE's limit, refused over LINE's size limits.
fn flex(alt_text: &str, contents: FlexContainer) -> Result<Message, Error> {
    let (max, what) = match contents {
        FlexContainer::Bubble(_) => (MAX_BUBBLE_BYTES, "bubble"),
        _ => (MAX_CAROUSEL_BYTES, "carousel"),
    };
    let size = serde_json::to_vec(&contents).map_or(usize::MAX, |json| json.len());
    if size > max {
        return Err(Error::invalid_request(format!(
            "line: a flex {what} holds at most {max} bytes of JSON, got {size}"
        )));
    }
    let alt_text: String = alt_text.chars().take(MAX_ALT_TEXT_CHARS).collect();
    Ok(FlexMessage::new(alt_text, contents).to_message())
}

/// Quick replies under the last message.
fn with_quick_replies(
    message: &OutgoingMessage,
    mut out: Vec<Message>,
) -> Result<Vec<Message>, Error> {
    if !message.quick_replies.is_empty() {
        let count = message.quick_replies.len();
        at_most(
            &Platform::LINE,
            "quick replies",
            count,
            MAX_QUICK_REPLY_ITEMS,
        )?;
        let items = message
            .quick_replies
            .iter()
            .map(|q| action(&q.label, &q.action).map(QuickReplyItem::new))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = out.pop() else {
            return Err(Error::invalid_request(
                "line: quick replies need a message to go under (text or image)",
            ));
        };
        out.push(last.with_quick_reply(items));
    }
    Ok(out)
}

fn buttons(message: &OutgoingMessage) -> Result<Message, Error> {
    let Some(text) = &message.text else {
        return Err(Error::invalid_request(
            "line: buttons need a text to go with",
        ));
    };
    chars_at_most(
        &Platform::LINE,
        "text with buttons",
        text,
        MAX_TEMPLATE_TEXT_CHARS,
    )?;
    let count = message.buttons.len();
    at_most(&Platform::LINE, "buttons", count, MAX_TEMPLATE_ACTIONS)?;
    let actions = message
        .buttons
        .iter()
        .map(|b| action(&b.label, &b.action))
        .collect::<Result<Vec<_>, _>>()?;
    let alt_text: String = text.chars().take(MAX_ALT_TEXT_CHARS).collect();
    let mut template = Message::buttons(alt_text, text.clone(), actions);
    if let Some(image) = &message.image {
        template = Message::from_json({
            let mut json = template.as_json().clone();
            json["template"]["thumbnailImageUrl"] = Value::String(image.url.clone());
            json
        });
    }
    Ok(template)
}

fn action(label: &str, action: &outbound::Action) -> Result<Action, Error> {
    Ok(match action {
        outbound::Action::Message(text) => Action::Message {
            label: label.to_owned(),
            text: text.clone(),
        },
        outbound::Action::Postback(data) => Action::Postback {
            label: label.to_owned(),
            data: data.clone(),
            display_text: Some(label.to_owned()),
        },
        outbound::Action::Url(uri) => Action::Uri {
            label: label.to_owned(),
            uri: uri.clone(),
        },
        other => {
            return Err(Error::invalid_request(format!(
                "line: no LINE action for {other:?}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use bot_core::outbound::{Button, PlatformMessage, QuickReply};

    #[test]
    fn neutral_messages_map_to_line_objects() {
        let m = OutgoingMessage::text("pick").quick_reply(QuickReply::postback("Red", "c=red"));
        let line = to_line_messages(&m).unwrap();
        assert_eq!(line.len(), 1);
        let json = line[0].as_json();
        assert_eq!(json["text"], "pick");
        assert_eq!(json["quickReply"]["items"][0]["action"]["data"], "c=red");
        assert_eq!(
            json["quickReply"]["items"][0]["action"]["displayText"],
            "Red"
        );

        let with_buttons = OutgoingMessage::text("menu")
            .button(Button::link("Site", "https://example.com"))
            .button(Button::postback("Buy", "buy"));
        let json = to_line_messages(&with_buttons).unwrap()[0]
            .as_json()
            .clone();
        assert_eq!(json["type"], "template");
        assert_eq!(json["template"]["actions"][0]["uri"], "https://example.com");

        let mut image_and_text = OutgoingMessage::image("https://x/y.png");
        image_and_text.text = Some("look".into());
        let line = to_line_messages(&image_and_text).unwrap();
        assert_eq!(
            line.iter()
                .map(|m| m.message_type().unwrap())
                .collect::<Vec<_>>(),
            ["text", "image"]
        );
    }

    #[test]
    fn messages_over_lines_limits_are_refused_before_sending() {
        let long = OutgoingMessage::text("x".repeat(MAX_TEXT_CHARS + 1));
        assert_eq!(
            to_line_messages(&long).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        let mut five = OutgoingMessage::text("t");
        for i in 0..5 {
            five = five.button(Button::postback(format!("b{i}"), "d"));
        }
        assert_eq!(
            to_line_messages(&five).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        let no_text = OutgoingMessage::default().button(Button::postback("b", "d"));
        assert!(to_line_messages(&no_text).is_err());
    }

    fn card(title: &str) -> Card {
        Card::new(title)
            .text("sub")
            .image("https://x/c.png")
            .button(Button::postback("Buy", "buy"))
            .default_action(outbound::Action::Url("https://x/c".into()))
    }

    #[test]
    fn cards_become_flex_bubbles_and_carousels() {
        let line = to_line_messages(&OutgoingMessage::card(card("A"))).unwrap();
        let json = line[0].as_json();
        assert_eq!(json["type"], "flex");
        assert_eq!(json["altText"], "A");
        let bubble = &json["contents"];
        assert_eq!(bubble["type"], "bubble");
        assert_eq!(bubble["hero"]["url"], "https://x/c.png");
        assert_eq!(bubble["body"]["contents"][0]["text"], "A");
        assert_eq!(bubble["footer"]["contents"][0]["action"]["data"], "buy");
        assert_eq!(bubble["action"]["uri"], "https://x/c");

        let twelve = OutgoingMessage::carousel((0..12).map(|i| card(&format!("c{i}"))));
        let json = to_line_messages(&twelve).unwrap()[0].as_json().clone();
        assert_eq!(json["contents"]["type"], "carousel");
        assert_eq!(json["contents"]["contents"].as_array().unwrap().len(), 12);
        let thirteen = OutgoingMessage::carousel((0..13).map(|i| card(&format!("c{i}"))));
        assert_eq!(
            to_line_messages(&thirteen).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        let none = OutgoingMessage::carousel([]);
        assert_eq!(
            to_line_messages(&none).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        let huge = OutgoingMessage::card(Card::new("x".repeat(MAX_BUBBLE_BYTES)));
        assert!(
            to_line_messages(&huge)
                .unwrap_err()
                .to_string()
                .contains("bytes")
        );
    }

    #[test]
    fn files_fall_back_to_a_link_typing_is_no_message_and_platform_json_passes() {
        let file = to_line_messages(&OutgoingMessage::file("https://x/a.pdf", "a.pdf")).unwrap();
        assert_eq!(file[0].text_content(), Some("a.pdf\nhttps://x/a.pdf"));
        assert_eq!(
            render(&OutgoingMessage::typing()).unwrap(),
            [Rendered::Typing]
        );
        assert!(
            to_line_messages(&OutgoingMessage::typing())
                .unwrap()
                .is_empty()
        );
        let sticker = serde_json::json!({"type": "sticker", "packageId": "1", "stickerId": "2"});
        let native =
            OutgoingMessage::platform(PlatformMessage::new(Platform::LINE, sticker.clone()));
        assert_eq!(to_line_messages(&native).unwrap()[0].as_json(), &sticker);
        let discord = PlatformMessage::new(Platform::DISCORD, serde_json::json!({"content": "x"}));
        let refused = to_line_messages(&OutgoingMessage::platform(discord.clone())).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::InvalidRequest);
        assert!(refused.to_string().contains("discord"), "{refused}");
        let fallback = OutgoingMessage::platform(discord.with_fallback("plain"));
        assert_eq!(
            to_line_messages(&fallback).unwrap()[0].text_content(),
            Some("plain")
        );
    }
}
