//! Platform-neutral messages ([`OutgoingMessage`]) mapped to LINE message objects.

use bot_core::outbound::{self, OutgoingMessage};
use serde_json::Value;

use crate::error::Error;
use crate::model::send::{
    Action, MAX_ALT_TEXT_CHARS, MAX_QUICK_REPLY_ITEMS, MAX_TEMPLATE_ACTIONS,
    MAX_TEMPLATE_TEXT_CHARS, MAX_TEXT_CHARS, Message, QuickReplyItem,
};

/// Maps a platform-neutral message to LINE message objects: text, image, a buttons template for
/// buttons (with the image as its thumbnail), quick replies under the last object.
///
/// # Errors
///
/// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) when the message breaks a LINE limit (text over 5,000
/// characters, buttons without text or over 4, template text over 160 characters, over 13 quick
/// replies) or uses an action LINE has no equivalent for.
pub fn to_line_messages(message: &OutgoingMessage) -> Result<Vec<Message>, Error> {
    let mut out = Vec::with_capacity(2);
    if message.buttons.is_empty() {
        if let Some(text) = &message.text {
            if text.chars().count() > MAX_TEXT_CHARS {
                return Err(Error::invalid_request(format!(
                    "line: a text message holds at most {MAX_TEXT_CHARS} characters"
                )));
            }
            out.push(Message::text(text.clone()));
        }
        if let Some(image) = &message.image {
            out.push(Message::image(image.url.clone(), image.preview_url.clone()));
        }
    } else {
        out.push(buttons(message)?);
    }
    if !message.quick_replies.is_empty() {
        if message.quick_replies.len() > MAX_QUICK_REPLY_ITEMS {
            return Err(Error::invalid_request(format!(
                "line: at most {MAX_QUICK_REPLY_ITEMS} quick replies, got {}",
                message.quick_replies.len()
            )));
        }
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
    if text.chars().count() > MAX_TEMPLATE_TEXT_CHARS {
        return Err(Error::invalid_request(format!(
            "line: text with buttons holds at most {MAX_TEMPLATE_TEXT_CHARS} characters"
        )));
    }
    if message.buttons.len() > MAX_TEMPLATE_ACTIONS {
        return Err(Error::invalid_request(format!(
            "line: at most {MAX_TEMPLATE_ACTIONS} buttons, got {}",
            message.buttons.len()
        )));
    }
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
    use bot_core::outbound::{Button, QuickReply};

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
}
