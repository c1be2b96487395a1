//! `bot_core::testing`'s event helpers make Messenger events as the Messenger adapter parses
//! them from Meta's webhooks: the same kind, conversation and sender, and no reply token
//! (Messenger has none).

use bot_core::outbound::{Button, QuickReply};
use bot_core::testing::{assert_delivered_alike, button_press_on, deleted_on, quick_reply_tap_on};
use bot_core::{Event, Platform};
use bot_messenger::event::parse_body;
use bot_messenger::testing::{DEFAULT_PAGE_ID, WebhookBuilder, message_item};
use serde_json::json;

const PSID: &str = "24386871164263049";

fn parsed(body: &WebhookBuilder) -> Event {
    let mut events = parse_body(&body.body()).unwrap().events;
    assert_eq!(events.len(), 1);
    events.remove(0)
}

#[test]
fn deleted_on_messenger_is_an_unsent_message() {
    let made = deleted_on(Platform::MESSENGER, PSID, "m_gone");
    let item = message_item(
        DEFAULT_PAGE_ID,
        PSID,
        json!({"mid": "m_gone", "is_deleted": true}),
    );
    assert_delivered_alike(&made, &parsed(&WebhookBuilder::new().entry().item(item)));
}

#[test]
fn taps_on_messenger_are_postbacks_with_metas_parameters() {
    let quick_reply = QuickReply::postback("2", "size=2");
    let made = quick_reply_tap_on(Platform::MESSENGER, PSID, &quick_reply).unwrap();
    let real = parsed(
        &WebhookBuilder::new()
            .entry()
            .quick_reply(PSID, "2", "size=2"),
    );
    assert_delivered_alike(&made, &real);
    let button = Button::postback("7 pm", "time=19");
    let made = button_press_on(Platform::MESSENGER, PSID, &button).unwrap();
    let real = parsed(
        &WebhookBuilder::new()
            .entry()
            .postback(PSID, "7 pm", "time=19"),
    );
    assert_delivered_alike(&made, &real);
}
