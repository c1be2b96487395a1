//! Platform-neutral messages ([`OutgoingMessage`]) mapped to Discord message bodies.
//!
//! | neutral | Discord |
//! |---|---|
//! | text | `content`, split at 2,000 characters (on a line break when there is one) |
//! | image | an embed with the image |
//! | buttons, quick replies | buttons in action rows (5 a row, 25 a message): a postback's data as `custom_id`; a button or quick reply that says text as [`TEXT_CUSTOM_ID_PREFIX`] and the text, which comes back as a text message when pressed; links as link buttons |
//! | card | an embed (title at most 256 characters, description at most 4,096, the image, the default action's URL as the title link) and its buttons in action rows |
//! | carousel | 1 to 10 embeds in one message, every card's buttons in its action rows |
//! | file | **fallback**: an embed titled with the name, linking to the URL (a bot uploads files only as multipart attachments) |
//! | typing | `POST /channels/{id}/typing` |
//! | platform message | Discord's message body as-is, or a modal (`{"type": 9, ..}`) as the interaction's response, checked against Discord's limits; another platform's: its fallback, or refused |

use bot_core::Platform;
use bot_core::outbound::{
    Action, Button, Card, OutgoingMessage, Rendering, Rich, at_most, chars_at_most,
};
use serde_json::{Value, json};

use crate::error::{Error, ErrorKind};
use crate::model::components::{
    MAX_BUTTON_LABEL_CHARS, MAX_CUSTOM_ID_CHARS, MAX_EMBED_DESCRIPTION_CHARS,
    MAX_EMBED_TITLE_CHARS, MAX_EMBEDS, MAX_MODAL_LABEL_CHARS, MAX_SELECT_OPTIONS, MODAL_CALLBACK,
    TEXT_CUSTOM_ID_PREFIX,
};

/// Longest message content.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Buttons per action row.
const BUTTONS_PER_ROW: usize = 5;
/// Action rows per message.
const MAX_ROWS: usize = 5;

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidRequest, message)
}

/// The message bodies for `messages`: content split at 2,000 characters, then embeds (the
/// image, cards, files) and buttons on the last part; a Discord platform message is a part of
/// its own. A typing indicator is not a body, and is left out (the client triggers typing for
/// it). The module docs hold the full table.
///
/// # Errors
///
/// [`ErrorKind::InvalidRequest`] for more than 25 buttons, more than 10 embeds, a carousel of
/// no card, embed texts over Discord's limits, an unsupported action (a card's default action
/// that is not a URL), a Discord body over Discord's limits, or another platform's message
/// without a fallback.
pub fn bodies(messages: &[OutgoingMessage]) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for message in messages {
        out.extend(message_bodies(message)?);
    }
    Ok(out)
}

/// Whether an answer is an interaction response of its own (a modal), not a message body.
pub(crate) fn is_callback(body: &Value) -> bool {
    body.get("type").is_some()
}

fn message_bodies(message: &OutgoingMessage) -> Result<Vec<Value>, Error> {
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
    let mut embeds = Vec::new();
    if let Some(image) = &message.image {
        embeds.push(json!({ "image": { "url": image.url } }));
    }
    let mut card_buttons: Vec<&Button> = Vec::new();
    let mut after = Vec::new();
    match &message.rich {
        None | Some(Rich::Typing) => {}
        Some(Rich::Card(card)) => {
            embeds.push(embed(card)?);
            card_buttons.extend(&card.buttons);
        }
        Some(Rich::Carousel { cards }) => {
            if cards.is_empty() {
                return Err(invalid("discord: a carousel holds 1 card at least".into()));
            }
            for card in cards {
                embeds.push(embed(card)?);
                card_buttons.extend(&card.buttons);
            }
        }
        Some(Rich::File(file)) => {
            embeds.push(
                json!({"title": truncate(&file.name, MAX_EMBED_TITLE_CHARS), "url": file.url}),
            );
        }
        Some(Rich::Platform(platform)) => match platform.render_on(&Platform::DISCORD) {
            Some(Rendering::Native(body)) => {
                check_body(body)?;
                after.push(body.clone());
            }
            Some(Rendering::Fallback(fallback)) => after.extend(message_bodies(fallback)?),
            _ => {
                return Err(invalid(format!(
                    "discord: a {} message without a fallback cannot go to Discord",
                    platform.platform()
                )));
            }
        },
        Some(other) => {
            return Err(invalid(format!(
                "discord: no Discord message for {other:?}"
            )));
        }
    }
    at_most(
        &Platform::DISCORD,
        "embeds in a message",
        embeds.len(),
        MAX_EMBEDS,
    )?;
    let last = parts.last_mut().expect("one part at least");
    if !embeds.is_empty() {
        last["embeds"] = Value::Array(embeds);
    }
    let components = components(message, &card_buttons)?;
    if !components.is_empty() {
        last["components"] = Value::Array(components);
    }
    Ok(parts
        .into_iter()
        .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()))
        .chain(after)
        .collect())
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A card as an embed: title (linking to the default action's URL), description, image.
fn embed(card: &Card) -> Result<Value, Error> {
    chars_at_most(
        &Platform::DISCORD,
        "an embed title",
        &card.title,
        MAX_EMBED_TITLE_CHARS,
    )?;
    let mut embed = json!({ "title": card.title });
    if let Some(text) = &card.text {
        let max_chars = MAX_EMBED_DESCRIPTION_CHARS;
        chars_at_most(&Platform::DISCORD, "an embed description", text, max_chars)?;
        embed["description"] = json!(text);
    }
    if let Some(image) = &card.image {
        embed["image"] = json!({ "url": image.url });
    }
    match &card.default_action {
        None => {}
        Some(Action::Url(url)) => embed["url"] = json!(url),
        Some(other) => {
            return Err(invalid(format!(
                "discord: a card's default action opens a URL; {other:?} has no equivalent"
            )));
        }
    }
    Ok(embed)
}

/// Checks a Discord body (message or modal) against Discord's limits before it goes out.
fn check_body(body: &Value) -> Result<(), Error> {
    let chars = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .map_or(0, |s| s.chars().count())
    };
    let array = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (data, modal) = match body.get("type").and_then(Value::as_u64) {
        None => (body, false),
        Some(t) if t == u64::from(MODAL_CALLBACK) => (&body["data"], true),
        Some(t) => {
            return Err(invalid(format!(
                "discord: interaction response type {t} is not one this client sends (9, a modal)"
            )));
        }
    };
    if chars(data, "content") > MAX_CONTENT_CHARS {
        return Err(invalid(format!(
            "discord: content holds at most {MAX_CONTENT_CHARS} characters"
        )));
    }
    if array(data, "embeds").len() > MAX_EMBEDS {
        return Err(invalid(format!("discord: at most {MAX_EMBEDS} embeds")));
    }
    let rows = array(data, "components");
    if rows.len() > MAX_ROWS || (modal && rows.is_empty()) {
        return Err(invalid(format!("discord: 1 to {MAX_ROWS} action rows")));
    }
    if modal && (chars(data, "title") == 0 || chars(data, "title") > MAX_MODAL_LABEL_CHARS) {
        return Err(invalid(format!(
            "discord: a modal title holds 1 to {MAX_MODAL_LABEL_CHARS} characters"
        )));
    }
    for row in &rows {
        let components = array(row, "components");
        if components.is_empty() || components.len() > BUTTONS_PER_ROW {
            return Err(invalid(format!(
                "discord: an action row holds 1 to {BUTTONS_PER_ROW} components"
            )));
        }
        for component in &components {
            if chars(component, "custom_id") > MAX_CUSTOM_ID_CHARS
                || chars(component, "label") > MAX_BUTTON_LABEL_CHARS
                || array(component, "options").len() > MAX_SELECT_OPTIONS
                || (component["type"] == 4 && chars(component, "label") > MAX_MODAL_LABEL_CHARS)
            {
                return Err(invalid(format!(
                    "discord: a component breaks a limit (custom_id at most \
                     {MAX_CUSTOM_ID_CHARS} characters, label {MAX_BUTTON_LABEL_CHARS}, \
                     {MAX_SELECT_OPTIONS} options, text input label {MAX_MODAL_LABEL_CHARS})"
                )));
            }
        }
    }
    Ok(())
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

/// Refuses `messages` as [`DiscordClient`](crate::client::DiscordClient)'s send would, with
/// the same error, before any call (a 26th button, a `custom_id` over 100 characters, a modal
/// after another). For tests: `TestBot::builder().platform_rules(Platform::DISCORD,
/// bot_discord::client::validate)`.
///
/// # Errors
///
/// The error the client's send returns for `messages`.
pub fn validate(messages: &[OutgoingMessage]) -> Result<(), bot_core::Error> {
    let bodies = bodies(messages)?;
    if bodies.iter().skip(1).any(is_callback) {
        return Err(Error::invalid_request(
            "discord: an interaction takes one modal, as its first response",
        )
        .into());
    }
    Ok(())
}

fn components(message: &OutgoingMessage, card_buttons: &[&Button]) -> Result<Vec<Value>, Error> {
    let buttons = message
        .buttons
        .iter()
        .chain(card_buttons.iter().copied())
        .map(|b| (&b.label, &b.action))
        .chain(message.quick_replies.iter().map(|q| (&q.label, &q.action)))
        .map(|(label, action)| button(label, action))
        .collect::<Result<Vec<_>, _>>()?;
    let max_buttons = BUTTONS_PER_ROW * MAX_ROWS;
    at_most(&Platform::DISCORD, "buttons", buttons.len(), max_buttons)?;
    Ok(buttons
        .chunks(BUTTONS_PER_ROW)
        .map(|row| json!({"type": 1, "components": row}))
        .collect())
}

fn button(label: &str, action: &Action) -> Result<Value, Error> {
    let label: String = label.chars().take(80).collect();
    let custom_id = |id: String| {
        if id.chars().count() > MAX_CUSTOM_ID_CHARS {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "discord: a button's data holds at most {MAX_CUSTOM_ID_CHARS} characters, \
                     {} for one that says text",
                    MAX_CUSTOM_ID_CHARS - TEXT_CUSTOM_ID_PREFIX.len()
                ),
            ));
        }
        Ok(id)
    };
    Ok(match action {
        Action::Postback(data) => {
            json!({"type": 2, "style": 1, "label": label, "custom_id": custom_id(data.clone())?})
        }
        Action::Message(text) => {
            let id = custom_id(format!("{TEXT_CUSTOM_ID_PREFIX}{text}"))?;
            json!({"type": 2, "style": 2, "label": label, "custom_id": id})
        }
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
    use bot_core::outbound::QuickReply;

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
        assert_eq!(row["components"][1]["custom_id"], "botrt:text:More");

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

    #[test]
    fn cards_become_embeds_with_their_buttons_and_limits_hold() {
        let card = |t: &str| {
            Card::new(t)
                .text("sub")
                .image("https://x/c.png")
                .button(Button::postback("Buy", "buy"))
                .default_action(Action::Url("https://x/c".into()))
        };
        let body = &bodies(&[OutgoingMessage::card(card("A"))]).unwrap()[0];
        assert_eq!(
            body["embeds"][0],
            json!({"title": "A", "description": "sub", "image": {"url": "https://x/c.png"},
                   "url": "https://x/c"})
        );
        assert_eq!(body["components"][0]["components"][0]["custom_id"], "buy");
        let ten = bodies(&[OutgoingMessage::carousel(
            (0..10).map(|i| card(&format!("{i}"))),
        )])
        .unwrap();
        assert_eq!(ten[0]["embeds"].as_array().unwrap().len(), 10);
        assert_eq!(ten[0]["components"].as_array().unwrap().len(), 2);
        let eleven = OutgoingMessage::carousel((0..11).map(|i| card(&format!("{i}"))));
        assert_eq!(
            bodies(&[eleven]).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        let long = OutgoingMessage::card(Card::new("x".repeat(257)));
        assert_eq!(
            bodies(&[long]).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        let postback = Card::new("t").default_action(Action::Postback("p".into()));
        assert!(bodies(&[OutgoingMessage::card(postback)]).is_err());

        let file = &bodies(&[OutgoingMessage::file("https://x/a.pdf", "a.pdf")]).unwrap()[0];
        assert_eq!(
            file["embeds"][0],
            json!({"title": "a.pdf", "url": "https://x/a.pdf"})
        );
        assert!(bodies(&[OutgoingMessage::typing()]).unwrap().is_empty());
    }

    #[test]
    fn discord_bodies_pass_as_is_after_their_limits() {
        use bot_core::outbound::PlatformMessage;
        let native = |body: Value| {
            bodies(&[OutgoingMessage::platform(PlatformMessage::new(
                Platform::DISCORD,
                body,
            ))])
        };
        let modal = json!({"type": 9, "data": {"custom_id": "m", "title": "T", "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": "a", "label": "A", "style": 1}]}]}});
        assert_eq!(native(modal.clone()).unwrap(), std::slice::from_ref(&modal));
        assert!(is_callback(&modal));
        let mut long_title = modal.clone();
        long_title["data"]["title"] = json!("x".repeat(46));
        assert!(native(long_title).is_err());
        let six = json!({"components": [{"type": 1, "components": (0..6)
            .map(|i| json!({"type": 2, "style": 1, "label": "b", "custom_id": i.to_string()}))
            .collect::<Vec<_>>()}]});
        assert_eq!(native(six).unwrap_err().kind(), ErrorKind::InvalidRequest);
        let line = PlatformMessage::new(Platform::LINE, json!({"type": "sticker"}));
        assert!(bodies(&[OutgoingMessage::platform(line.clone())]).is_err());
        let fallback = OutgoingMessage::platform(line.with_fallback("plain"));
        assert_eq!(bodies(&[fallback]).unwrap(), [json!({"content": "plain"})]);
    }
}
