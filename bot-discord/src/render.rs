//! Platform-neutral messages ([`OutgoingMessage`]) mapped to Discord message bodies.

use bot_core::outbound::{Action, OutgoingMessage};
use serde_json::{Value, json};

use crate::error::{Error, ErrorKind};

/// Longest message content.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Buttons per action row.
const BUTTONS_PER_ROW: usize = 5;
/// Action rows per message.
const MAX_ROWS: usize = 5;

/// The message bodies for `messages`: content split at 2,000 characters, buttons on the last.
///
/// # Errors
///
/// [`ErrorKind::InvalidRequest`] for more than 25 buttons or an unsupported action.
pub fn bodies(messages: &[OutgoingMessage]) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for message in messages {
        let chunks = message
            .text
            .as_deref()
            .map(split_content)
            .unwrap_or_default();
        let mut parts: Vec<Value> = chunks
            .into_iter()
            .map(|c| json!({ "content": c }))
            .collect();
        if parts.is_empty() {
            parts.push(json!({}));
        }
        let last = parts.last_mut().expect("one part at least");
        if let Some(image) = &message.image {
            last["embeds"] = json!([{ "image": { "url": image.url } }]);
        }
        let components = components(message)?;
        if !components.is_empty() {
            last["components"] = Value::Array(components);
        }
        out.extend(
            parts
                .into_iter()
                .filter(|p| p.as_object().is_some_and(|o| !o.is_empty())),
        );
    }
    Ok(out)
}

fn split_content(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut rest = text;
    while rest.chars().count() > MAX_CONTENT_CHARS {
        let limit = rest
            .char_indices()
            .nth(MAX_CONTENT_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let cut = rest[..limit]
            .rfind('\n')
            .filter(|&i| i > 0)
            .unwrap_or(limit);
        chunks.push(rest[..cut].to_owned());
        rest = rest[cut..].trim_start_matches('\n');
    }
    if !rest.is_empty() {
        chunks.push(rest.to_owned());
    }
    chunks
}

fn components(message: &OutgoingMessage) -> Result<Vec<Value>, Error> {
    let buttons = message
        .buttons
        .iter()
        .map(|b| (&b.label, &b.action))
        .chain(message.quick_replies.iter().map(|q| (&q.label, &q.action)))
        .map(|(label, action)| button(label, action))
        .collect::<Result<Vec<_>, _>>()?;
    if buttons.len() > BUTTONS_PER_ROW * MAX_ROWS {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "discord: at most {} buttons, got {}",
                BUTTONS_PER_ROW * MAX_ROWS,
                buttons.len()
            ),
        ));
    }
    Ok(buttons
        .chunks(BUTTONS_PER_ROW)
        .map(|row| json!({"type": 1, "components": row}))
        .collect())
}

fn button(label: &str, action: &Action) -> Result<Value, Error> {
    let label: String = label.chars().take(80).collect();
    Ok(match action {
        Action::Postback(data) => json!({"type": 2, "style": 1, "label": label, "custom_id": data}),
        Action::Message(text) => json!({"type": 2, "style": 2, "label": label, "custom_id": text}),
        Action::Url(url) => json!({"type": 2, "style": 5, "label": label, "url": url}),
        other => {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("discord: no button for {other:?}"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bot_core::outbound::{Button, QuickReply};

    #[test]
    fn long_text_splits_on_line_breaks_and_buttons_go_last() {
        let text = format!("{}\n{}", "a".repeat(1500), "b".repeat(1500));
        let message = OutgoingMessage::text(text)
            .button(Button::postback("Buy", "buy"))
            .quick_reply(QuickReply::message("More"));
        let parts = bodies(&[message]).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0]["content"].as_str().unwrap().len(), 1500);
        assert!(parts[0].get("components").is_none());
        let row = &parts[1]["components"][0];
        assert_eq!(row["components"][0]["custom_id"], "buy");
        assert_eq!(row["components"][1]["custom_id"], "More");

        let no_breaks = bodies(&[OutgoingMessage::text("x".repeat(4500))]).unwrap();
        let sizes: Vec<usize> = no_breaks
            .iter()
            .map(|b| b["content"].as_str().unwrap().len())
            .collect();
        assert_eq!(sizes, [2000, 2000, 500]);
    }

    #[test]
    fn images_and_link_buttons_map_and_limits_hold() {
        let message =
            OutgoingMessage::image("https://x/cat.png").button(Button::link("Site", "https://x"));
        let body = &bodies(&[message]).unwrap()[0];
        assert_eq!(body["embeds"][0]["image"]["url"], "https://x/cat.png");
        assert_eq!(body["components"][0]["components"][0]["style"], 5);
        let mut many = OutgoingMessage::text("pick");
        for i in 0..26 {
            many = many.button(Button::postback(format!("{i}"), "d"));
        }
        assert_eq!(
            bodies(&[many]).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
    }
}
