//! `bot_core::testing`'s event helpers make Discord events as the Discord adapter parses them
//! from interactions and gateway dispatches: the same kind, conversation, sender, and a reply
//! token (the interaction's) where Discord gives one.

use bot_core::outbound::QuickReply;
use bot_core::testing::{
    assert_delivered_alike, command_on, component_on, deleted_on, edited_on, joined_on,
    quick_reply_tap_on,
};
use bot_core::{Event, Platform};
use bot_discord::event::{DispatchContext, from_dispatch, from_interaction};
use bot_discord::model::components::TEXT_CUSTOM_ID_PREFIX;
use bot_discord::testing::{button_press, select_menu, slash_command};
use serde_json::{Value, json};

fn dispatched(name: &str, data: Value) -> Event {
    from_dispatch(name, data, Some(7), &DispatchContext::default()).unwrap()
}

#[test]
fn command_on_discord_is_a_slash_command_interaction() {
    let mut options = serde_json::Map::new();
    options.insert("size".to_owned(), json!(2));
    options.insert("time".to_owned(), json!("19:00"));
    let made = command_on(Platform::DISCORD, "chan", "book", options).with_sender("u1");
    let sent = json!([
        {"name": "size", "type": 4, "value": 2},
        {"name": "time", "type": 3, "value": "19:00"},
    ]);
    let real = from_interaction(&slash_command("book", sent, "chan", "u1")).unwrap();
    assert_delivered_alike(&made, &real);
    assert!(made.reply_token.is_some());
}

#[test]
fn component_on_discord_is_a_select_menu_interaction() {
    let made = component_on(Platform::DISCORD, "chan", "menu", &["a", "c"]).with_sender("u1");
    let real = from_interaction(&select_menu("menu", &["a", "c"], "chan", "u1")).unwrap();
    assert_delivered_alike(&made, &real);
    assert!(made.reply_token.is_some());
}

#[test]
fn a_quick_reply_tap_on_discord_is_a_button_interaction_with_a_token() {
    let made = quick_reply_tap_on(Platform::DISCORD, "chan", &QuickReply::message("2"))
        .unwrap()
        .with_sender("u1");
    let custom_id = format!("{TEXT_CUSTOM_ID_PREFIX}2");
    let real = from_interaction(&button_press(&custom_id, "chan", "u1")).unwrap();
    assert_delivered_alike(&made, &real);
}

#[test]
fn edited_on_discord_is_a_message_update() {
    let made =
        edited_on(Platform::DISCORD, "chan", "1300000000000000001", "7 pm").with_sender("u1");
    let real = dispatched(
        "MESSAGE_UPDATE",
        json!({"id": "1300000000000000001", "channel_id": "chan", "guild_id": "1",
               "author": {"id": "u1", "username": "someone"}, "content": "7 pm",
               "edited_timestamp": "2026-01-01T00:00:00+00:00"}),
    );
    assert_delivered_alike(&made, &real);
    assert!(made.reply_token.is_none());
}

#[test]
fn deleted_on_discord_is_a_message_delete_by_no_one_known() {
    let made = deleted_on(Platform::DISCORD, "chan", "1300000000000000001");
    let real = dispatched(
        "MESSAGE_DELETE",
        json!({"id": "1300000000000000001", "channel_id": "chan", "guild_id": "1"}),
    );
    assert_delivered_alike(&made, &real);
    assert_eq!(made.sender, None);
}

#[test]
fn joined_on_discord_is_a_guild_member_add_sent_by_the_member() {
    let made = joined_on(Platform::DISCORD, "guild", &["u1"]);
    let real = dispatched(
        "GUILD_MEMBER_ADD",
        json!({"guild_id": "guild", "user": {"id": "u1", "username": "someone"}}),
    );
    assert_delivered_alike(&made, &real);
}
