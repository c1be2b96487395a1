//! The platform-neutral rich messages every adapter's rich test sends, so that the three
//! adapters are checked against the same inputs.

use crate::outbound::{Action, Button, Card, OutgoingMessage, QuickReply};

/// A card titled `title`: a text, an image, a postback button whose data is `order={title}`, and
/// a link as its default action.
pub fn sample_card(title: &str) -> Card {
    Card::new(title)
        .text("Fresh today")
        .image("https://example.com/p.png")
        .button(Button::postback("Order", format!("order={title}")))
        .default_action(Action::Url("https://example.com/p".into()))
}

/// The sample message for `command`: `card` ([`sample_card`] `Pizza`), `carousel` (Pizza,
/// Pasta and Salad, with a `Later` quick reply posting back `later`), `file` (`menu.pdf`) and
/// `typing` (a typing indicator, then `done`); `None` for any other command.
pub fn rich_sample(command: &str) -> Option<OutgoingMessage> {
    Some(match command {
        "card" => OutgoingMessage::card(sample_card("Pizza")),
        "carousel" => OutgoingMessage::carousel(["Pizza", "Pasta", "Salad"].map(sample_card))
            .quick_reply(QuickReply::postback("Later", "later")),
        "file" => OutgoingMessage::file("https://example.com/menu.pdf", "menu.pdf"),
        "typing" => OutgoingMessage::typing().with_text("done"),
        _ => return None,
    })
}
