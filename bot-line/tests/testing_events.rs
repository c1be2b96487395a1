//! `bot_core::testing`'s event helpers make LINE events as the LINE adapter parses them from
//! LINE's webhooks: the same kind, conversation, sender, and a reply token where LINE gives one.

use bot_core::testing::{
    assert_delivered_alike, deleted_on, followed_on, joined_on, postback_on, text_on,
};
use bot_core::{Event, Platform};
use bot_line::event::events_from_body;
use bot_line::testing::{
    WebhookBuilder, follow_event, member_joined_event, postback_event, text_event, unsend_event,
};
use serde_json::Value;

fn parsed(event: Value) -> Event {
    let body = WebhookBuilder::new().event(event).body();
    let mut events = events_from_body(&body).unwrap();
    assert_eq!(events.len(), 1);
    events.remove(0)
}

#[test]
fn followed_on_line_is_a_follow_with_a_reply_token() {
    let made = followed_on(Platform::LINE, "U1");
    assert_delivered_alike(&made, &parsed(follow_event("U1")));
    assert!(made.reply_token.is_some());
}

#[test]
fn joined_on_line_is_a_member_joined_in_the_group_without_a_sender() {
    let made = joined_on(Platform::LINE, "Cgroup", &["U1"]);
    assert_delivered_alike(&made, &parsed(member_joined_event("Cgroup", "U1")));
    assert_eq!(made.sender, None);
}

#[test]
fn deleted_on_line_is_an_unsend_without_a_reply_token() {
    let made = deleted_on(Platform::LINE, "U1", "m-325");
    assert_delivered_alike(&made, &parsed(unsend_event("U1", "m-325")));
    assert!(made.reply_token.is_none());
}

#[test]
fn texts_and_postbacks_on_line_carry_a_reply_token() {
    assert_delivered_alike(
        &postback_on(Platform::LINE, "U1", "size=2"),
        &parsed(postback_event("U1", "size=2")),
    );
    let made = text_on(Platform::LINE, "U1", "book");
    let real = parsed(text_event("U1", "book"));
    assert_eq!(made.text_content(), real.text_content());
    assert_eq!(
        (&made.conversation, &made.sender),
        (&real.conversation, &real.sender)
    );
    assert!(made.reply_token.is_some() && real.reply_token.is_some());
}
