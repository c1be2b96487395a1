//! Platform-neutral messages ([`OutgoingMessage`]) mapped to Send API message objects.
//!
//! | neutral | Messenger |
//! |---|---|
//! | text | text messages (split at 2,000 characters) |
//! | image | image attachment |
//! | buttons | button template with the text (at most 3 buttons, text at most 640 characters) |
//! | quick replies | `quick_replies` of the last message (at most 13) |
//! | card | generic template with one element (title and subtitle at most 80 characters, at most 3 buttons; the default action must open a URL) |
//! | carousel | generic template with 1 to 10 elements |
//! | file | file attachment by URL (Messenger shows its own name for it) |
//! | typing | `sender_action: typing_on`, sent alone |
//! | platform message | Messenger's `message` JSON as-is (templates checked against their limits); another platform's: its fallback, or refused |

use bot_core::Platform;
use bot_core::outbound::{self, Card, OutgoingMessage, Rich, at_most, chars_at_most, collect_into};
use serde_json::Value;

use crate::error::Error;
use crate::event::TEXT_QUICK_REPLY_PAYLOAD;
use crate::model::send::{
    Button, MAX_BUTTON_TEMPLATE_TEXT_CHARS, MAX_BUTTON_TITLE_CHARS, MAX_BUTTONS, MAX_PAYLOAD_CHARS,
    MAX_QUICK_REPLIES, MAX_QUICK_REPLY_TITLE_CHARS, MAX_TEXT_CHARS, Message, QuickReply,
};
use crate::model::template::{
    GenericElement, GenericTemplate, MAX_ELEMENT_TEXT_CHARS, MAX_GENERIC_ELEMENTS, check_template,
};

/// What a neutral message becomes here: a message object, or a typing indicator.
pub(crate) type Rendered = bot_core::outbound::Rendered<Message>;

/// Maps a platform-neutral message to Send API message objects (a typing indicator is not one,
/// and is left out):
///
/// - text: one text message, or several when it is longer than 2,000 characters (split at the
///   last line break or space before the limit, else at the limit);
/// - an image: an image attachment after the text;
/// - buttons: a button template with the text (at most 3 buttons, text at most 640
///   characters), after the image if there is one;
/// - a card or carousel: a generic template, a file: a file attachment (the module docs hold
///   the table);
/// - quick replies (at most 13) under the last message. A postback quick reply carries its
///   data as payload; a message quick reply sends its label as text and arrives as a text
///   message again (see [`crate::event`]), so its text must be its label.
///
/// # Errors
///
/// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) when the message is empty or
/// breaks a Messenger limit (buttons without text, over 3 buttons, template text over 640
/// characters, titles over 20 characters, payloads over 1,000, over 13 quick replies, a
/// carousel of no card or over 10, card titles over 80 characters), uses an action Messenger
/// has no equivalent for (a button that sends text, a quick reply that opens a URL, a quick
/// reply whose text is not its label, a card whose default action is not a URL), or is another
/// platform's message without a fallback.
pub fn to_messenger_messages(message: &OutgoingMessage) -> Result<Vec<Message>, Error> {
    Ok(bot_core::outbound::messages_of(render(message)?))
}

/// The messages of one send: whether a typing indicator goes first, and the message objects.
/// Refuses `messages` as [`MessengerClient`](crate::client::MessengerClient)'s send would,
/// with the same error, before any call (a button that sends text, a fourth button, a quick
/// reply title over 20 characters). For tests: `TestBot::builder().platform_rules(
/// Platform::MESSENGER, bot_messenger::client::validate)`.
///
/// # Errors
///
/// The error the client's send returns for `messages`.
pub fn validate(messages: &[OutgoingMessage]) -> Result<(), bot_core::Error> {
    let (_, mapped) = render_send(messages)?;
    for message in &mapped {
        check_message(message)?;
    }
    Ok(())
}

pub(crate) fn render_send(messages: &[OutgoingMessage]) -> Result<(bool, Vec<Message>), Error> {
    bot_core::outbound::render_send(messages, render)
}

/// As [`to_messenger_messages`], with the typing indicator as a [`Rendered::Typing`] first.
pub(crate) fn render(message: &OutgoingMessage) -> Result<Vec<Rendered>, Error> {
    let text = message.text.as_deref().filter(|t| !t.is_empty());
    let mut out = Vec::with_capacity(2);
    let mut typing = false;
    if message.buttons.is_empty() {
        if let Some(text) = text {
            out.extend(
                split_text(text, MAX_TEXT_CHARS)
                    .into_iter()
                    .map(Message::text),
            );
        }
        if let Some(image) = &message.image {
            out.push(Message::image(image.url.clone()));
        }
    } else {
        if let Some(image) = &message.image {
            out.push(Message::image(image.url.clone()));
        }
        out.push(buttons(text, &message.buttons)?);
    }
    match &message.rich {
        None => {}
        Some(Rich::Typing) => typing = true,
        Some(Rich::Card(card)) => out.push(generic(std::slice::from_ref(card))?),
        Some(Rich::Carousel { cards }) => out.push(generic(cards)?),
        Some(Rich::File(file)) => out.push(Message::media("file", file.url.clone())),
        Some(Rich::Platform(platform)) => {
            let native = |json: &serde_json::Value| {
                let native = Message::from_json(json.clone());
                check_template(&native).map(|()| native)
            };
            let rendered =
                platform.render_for(&Platform::MESSENGER, native, render, Error::invalid_request);
            typing |= collect_into(rendered?, &mut out);
        }
        Some(other) => {
            return Err(Error::invalid_request(format!(
                "messenger: no Messenger message for {other:?}"
            )));
        }
    }
    let Some(last) = out.pop() else {
        if typing && message.quick_replies.is_empty() {
            return Ok(vec![Rendered::Typing]);
        }
        return Err(Error::invalid_request(
            "messenger: nothing to send (no text, image, buttons or rich part)",
        ));
    };
    if message.quick_replies.is_empty() {
        out.push(last);
    } else {
        let count = message.quick_replies.len();
        at_most(
            &Platform::MESSENGER,
            "quick replies",
            count,
            MAX_QUICK_REPLIES,
        )?;
        let items = message
            .quick_replies
            .iter()
            .map(quick_reply)
            .collect::<Result<Vec<_>, _>>()?;
        out.push(last.with_quick_replies(items));
    }
    let mut out: Vec<Rendered> = out.into_iter().map(Rendered::Message).collect();
    if typing {
        out.insert(0, Rendered::Typing);
    }
    Ok(out)
}

/// Checks a message object against the Send API's text and quick reply limits.
pub(crate) fn check_message(message: &Message) -> Result<(), Error> {
    if let Some(text) = message.text_content() {
        chars_at_most(&Platform::MESSENGER, "a text message", text, MAX_TEXT_CHARS)?;
    }
    let quick_replies = message
        .as_json()
        .get("quick_replies")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    at_most(
        &Platform::MESSENGER,
        "quick replies",
        quick_replies,
        MAX_QUICK_REPLIES,
    )?;
    Ok(())
}

/// Cards as a generic template: one element each.
fn generic(cards: &[Card]) -> Result<Message, Error> {
    if cards.is_empty() || cards.len() > MAX_GENERIC_ELEMENTS {
        return Err(Error::invalid_request(format!(
            "messenger: a carousel holds 1 to {MAX_GENERIC_ELEMENTS} cards, got {}",
            cards.len()
        )));
    }
    let elements = cards.iter().map(element).collect::<Result<Vec<_>, _>>()?;
    let message = GenericTemplate::new(elements).to_message();
    check_template(&message)?;
    Ok(message)
}

fn element(card: &Card) -> Result<GenericElement, Error> {
    if card.title.is_empty() || card.title.chars().count() > MAX_ELEMENT_TEXT_CHARS {
        return Err(Error::invalid_request(format!(
            "messenger: a card title holds 1 to {MAX_ELEMENT_TEXT_CHARS} characters"
        )));
    }
    let count = card.buttons.len();
    at_most(
        &Platform::MESSENGER,
        "buttons on a card",
        count,
        MAX_BUTTONS,
    )?;
    let mut element = GenericElement::new(card.title.clone());
    if let Some(text) = &card.text {
        element = element.subtitle(text.clone());
    }
    if let Some(image) = &card.image {
        element = element.image_url(image.url.clone());
    }
    match &card.default_action {
        None => {}
        Some(outbound::Action::Url(url)) => element = element.default_url(url.clone()),
        Some(other) => {
            return Err(Error::invalid_request(format!(
                "messenger: a card's default action opens a URL; {other:?} has no equivalent"
            )));
        }
    }
    for b in &card.buttons {
        element = element.button(button(b)?);
    }
    Ok(element)
}

fn check_title(kind: &str, title: &str) -> Result<(), Error> {
    let max = if kind == "quick reply" {
        MAX_QUICK_REPLY_TITLE_CHARS
    } else {
        MAX_BUTTON_TITLE_CHARS
    };
    if title.is_empty() || title.chars().count() > max {
        return Err(Error::invalid_request(format!(
            "messenger: a {kind} title holds 1 to {max} characters, got {title:?}"
        )));
    }
    Ok(())
}

fn check_payload(payload: &str) -> Result<(), Error> {
    if payload.is_empty() || payload.chars().count() > MAX_PAYLOAD_CHARS {
        return Err(Error::invalid_request(format!(
            "messenger: a payload holds 1 to {MAX_PAYLOAD_CHARS} characters"
        )));
    }
    Ok(())
}

fn quick_reply(q: &outbound::QuickReply) -> Result<QuickReply, Error> {
    check_title("quick reply", &q.label)?;
    match &q.action {
        outbound::Action::Postback(data) => {
            check_payload(data)?;
            Ok(QuickReply::text(q.label.clone(), data.clone()))
        }
        // Messenger sends the chip's title as the text; the marker payload makes the tap arrive
        // as that text message rather than as a postback. So the text must be the label.
        outbound::Action::Message(text) if *text == q.label => {
            Ok(QuickReply::text(q.label.clone(), TEXT_QUICK_REPLY_PAYLOAD))
        }
        outbound::Action::Message(text) => Err(Error::invalid_request(format!(
            "messenger: a quick reply sends its label as text, so its text {text:?} must equal \
             its label {:?}; use QuickReply::message(label), or a postback to tell the tap apart",
            q.label
        ))),
        other => Err(Error::invalid_request(format!(
            "messenger: a quick reply cannot {other:?}; use a button"
        ))),
    }
}

fn buttons(text: Option<&str>, buttons: &[outbound::Button]) -> Result<Message, Error> {
    let Some(text) = text else {
        return Err(Error::invalid_request(
            "messenger: buttons need a text to go with",
        ));
    };
    let max_chars = MAX_BUTTON_TEMPLATE_TEXT_CHARS;
    chars_at_most(&Platform::MESSENGER, "text with buttons", text, max_chars)?;
    at_most(&Platform::MESSENGER, "buttons", buttons.len(), MAX_BUTTONS)?;
    let mapped = buttons.iter().map(button).collect::<Result<Vec<_>, _>>()?;
    Ok(Message::buttons(text, mapped))
}

fn button(b: &outbound::Button) -> Result<Button, Error> {
    check_title("button", &b.label)?;
    match &b.action {
        outbound::Action::Postback(data) => {
            check_payload(data)?;
            Ok(Button::postback(b.label.clone(), data.clone()))
        }
        outbound::Action::Url(url) => Ok(Button::web_url(b.label.clone(), url.clone())),
        other => Err(Error::invalid_request(format!(
            "messenger: a button cannot {other:?}; use a quick reply to send text"
        ))),
    }
}

/// Splits `text` into pieces of at most `max` characters, at the last line break or space
/// before the limit when there is one in the second half of the piece.
fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..limit];
        let half = window.char_indices().nth(max / 2).map_or(0, |(i, _)| i);
        let cut = window
            .rfind('\n')
            .filter(|&i| i >= half)
            .or_else(|| window.rfind(' ').filter(|&i| i >= half))
            .map_or(limit, |i| i + 1);
        pieces.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use bot_core::outbound::{Button as CoreButton, Card, QuickReply as CoreQuickReply};

    #[test]
    fn neutral_messages_map_to_send_api_objects() {
        let m = OutgoingMessage::text("pick")
            .quick_reply(CoreQuickReply::postback("Red", "c=red"))
            .quick_reply(CoreQuickReply::message("Blue"));
        let out = to_messenger_messages(&m).unwrap();
        assert_eq!(out.len(), 1);
        let json = out[0].as_json();
        assert_eq!(json["text"], "pick");
        assert_eq!(json["quick_replies"][0]["payload"], "c=red");
        assert_eq!(json["quick_replies"][1]["title"], "Blue");
        assert_eq!(
            json["quick_replies"][1]["payload"],
            TEXT_QUICK_REPLY_PAYLOAD
        );

        let mut with_buttons = OutgoingMessage::text("menu")
            .button(CoreButton::link("Site", "https://example.com"))
            .button(CoreButton::postback("Buy", "buy"))
            .quick_reply(CoreQuickReply::postback("Later", "later"));
        with_buttons.image = Some(bot_core::outbound::Image {
            url: "https://x/y.png".into(),
            preview_url: None,
        });
        let out = to_messenger_messages(&with_buttons).unwrap();
        assert_eq!(out[0].attachment_type(), Some("image"));
        let template = out[1].as_json();
        assert_eq!(template["attachment"]["payload"]["template_type"], "button");
        assert_eq!(
            template["attachment"]["payload"]["buttons"][0]["url"],
            "https://example.com"
        );
        assert_eq!(
            template["attachment"]["payload"]["buttons"][1]["payload"],
            "buy"
        );
        assert_eq!(template["quick_replies"][0]["payload"], "later");
        assert!(out[0].as_json().get("quick_replies").is_none());
    }

    #[test]
    fn long_texts_are_split_at_spaces_and_never_exceed_the_limit() {
        let word = "word ";
        let text = word.repeat(1000); // 5,000 characters
        let pieces = split_text(&text, MAX_TEXT_CHARS);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.chars().count() <= MAX_TEXT_CHARS));
        assert!(pieces[0].ends_with(' '));
        assert_eq!(pieces.concat(), text);
        let unbroken = "\u{e4}".repeat(4500);
        let pieces = split_text(&unbroken, MAX_TEXT_CHARS);
        assert_eq!(
            pieces.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            [2000, 2000, 500]
        );
        let m = OutgoingMessage::text(text).quick_reply(CoreQuickReply::postback("A", "a"));
        let out = to_messenger_messages(&m).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out[2].as_json().get("quick_replies").is_some());
        assert!(out[0].as_json().get("quick_replies").is_none());
    }

    #[test]
    fn messages_over_messengers_limits_are_refused_before_sending() {
        let refused = |m: OutgoingMessage| to_messenger_messages(&m).unwrap_err().kind();
        let mut four = OutgoingMessage::text("t");
        for i in 0..4 {
            four = four.button(CoreButton::postback(format!("b{i}"), "d"));
        }
        assert_eq!(refused(four), ErrorKind::InvalidRequest);
        assert_eq!(
            refused(OutgoingMessage::default().button(CoreButton::postback("b", "d"))),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            refused(OutgoingMessage::default()),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            refused(OutgoingMessage::text("")),
            ErrorKind::InvalidRequest
        );
        let mut many = OutgoingMessage::text("t");
        for i in 0..14 {
            many = many.quick_reply(CoreQuickReply::postback(format!("q{i}"), "d"));
        }
        assert_eq!(refused(many), ErrorKind::InvalidRequest);
        let long_title =
            OutgoingMessage::text("t").quick_reply(CoreQuickReply::postback("x".repeat(21), "d"));
        assert_eq!(refused(long_title), ErrorKind::InvalidRequest);
        let text_button = OutgoingMessage::text("t").button(CoreButton {
            label: "Say".into(),
            action: outbound::Action::Message("hi".into()),
        });
        assert_eq!(refused(text_button), ErrorKind::InvalidRequest);
        let other_text = OutgoingMessage::text("t").quick_reply(CoreQuickReply {
            label: "Yes".into(),
            action: outbound::Action::Message("yes please".into()),
        });
        let error = to_messenger_messages(&other_text).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        assert!(
            error.to_string().contains("must equal its label"),
            "{error}"
        );
        let same_text = OutgoingMessage::text("t").quick_reply(CoreQuickReply {
            label: "Yes".into(),
            action: outbound::Action::Message("Yes".into()),
        });
        assert!(to_messenger_messages(&same_text).is_ok());
    }

    fn card(title: &str) -> Card {
        Card::new(title)
            .text("sub")
            .image("https://x/c.png")
            .button(CoreButton::postback("Buy", "buy"))
            .default_action(outbound::Action::Url("https://x/c".into()))
    }

    #[test]
    fn cards_become_generic_templates_and_files_attachments() {
        let out = to_messenger_messages(&OutgoingMessage::card(card("A"))).unwrap();
        let payload = &out[0].as_json()["attachment"]["payload"];
        assert_eq!(payload["template_type"], "generic");
        let element = &payload["elements"][0];
        assert_eq!(element["title"], "A");
        assert_eq!(element["subtitle"], "sub");
        assert_eq!(element["image_url"], "https://x/c.png");
        assert_eq!(element["default_action"]["url"], "https://x/c");
        assert_eq!(element["buttons"][0]["payload"], "buy");

        let ten = OutgoingMessage::carousel((0..10).map(|i| card(&format!("c{i}"))));
        let out = to_messenger_messages(&ten).unwrap();
        assert_eq!(
            out[0].as_json()["attachment"]["payload"]["elements"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
        let refused = |m: OutgoingMessage| to_messenger_messages(&m).unwrap_err().kind();
        let eleven = OutgoingMessage::carousel((0..11).map(|i| card(&format!("c{i}"))));
        assert_eq!(refused(eleven), ErrorKind::InvalidRequest);
        let four = (0..4).fold(Card::new("t"), |c, i| {
            c.button(CoreButton::postback(format!("{i}"), "p"))
        });
        assert_eq!(
            refused(OutgoingMessage::card(four)),
            ErrorKind::InvalidRequest
        );
        let postback_default =
            Card::new("t").default_action(outbound::Action::Postback("p".into()));
        assert_eq!(
            refused(OutgoingMessage::card(postback_default)),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            refused(OutgoingMessage::card(Card::new("x".repeat(81)))),
            ErrorKind::InvalidRequest
        );

        let file =
            to_messenger_messages(&OutgoingMessage::file("https://x/a.pdf", "a.pdf")).unwrap();
        assert_eq!(file[0].attachment_type(), Some("file"));
        assert_eq!(
            file[0].as_json()["attachment"]["payload"]["url"],
            "https://x/a.pdf"
        );
        assert_eq!(
            render(&OutgoingMessage::typing()).unwrap(),
            [Rendered::Typing]
        );
    }

    #[test]
    fn texts_over_the_limit_are_refused_before_sending() {
        let long = Message::text("x".repeat(MAX_TEXT_CHARS + 1));
        assert_eq!(
            check_message(&long).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
    }
}
