//! The event mapping's unit tests.

use super::*;
use serde_json::json;

fn context() -> DispatchContext {
    DispatchContext {
        bot_user_id: Some("999".into()),
        session_id: None,
        deliver_bot_messages: false,
        ..DispatchContext::default()
    }
}

#[test]
fn empty_ids_count_as_missing_and_never_share_a_dedup_key() {
    let a = json!({"id": "", "channel_id": "c1", "value": 1});
    let b = json!({"id": "", "channel_id": "c1", "value": 2});
    let a = from_dispatch("SOMETHING_NEW", a, None, &context()).unwrap();
    let b = from_dispatch("SOMETHING_NEW", b, None, &context()).unwrap();
    assert_ne!(a.id, b.id);
    let message = json!({"id": "", "channel_id": "c1", "author": {"id": "u1"}, "content": "x"});
    assert!(from_dispatch("MESSAGE_CREATE", message, None, &context()).is_none());
}

#[test]
fn messages_map_and_bots_are_filtered() {
    let data = json!({"id": "1180000000000000000", "channel_id": "c1", "guild_id": "g1",
        "author": {"id": "u1"}, "content": "hello",
        "attachments": [{"id": "a1", "filename": "cat.png", "content_type": "image/png", "size": 10, "url": "https://cdn/cat.png"}],
        "mentions": [{"id": "u2"}], "message_reference": {"message_id": "m0"}});
    let e = from_dispatch("MESSAGE_CREATE", data.clone(), Some(5), &context()).unwrap();
    assert_eq!(
        (e.id.as_str(), e.conversation.as_str()),
        ("1180000000000000000", "c1")
    );
    assert_eq!(e.text_content(), Some("hello"));
    let m = e.message().unwrap();
    assert_eq!(m.attachments[0].kind, AttachmentKind::Image);
    assert_eq!(m.mentions[0].user.as_str(), "u2");
    assert_eq!(m.reply_to.as_ref().unwrap().as_str(), "m0");
    assert_eq!(
        e.occurred_at,
        snowflake_time("1180000000000000000").unwrap()
    );

    let mut bot = data.clone();
    bot["author"] = json!({"id": "u3", "bot": true});
    assert!(from_dispatch("MESSAGE_CREATE", bot.clone(), Some(6), &context()).is_none());
    let mut own = data;
    own["author"] = json!({"id": "999"});
    assert!(from_dispatch("MESSAGE_CREATE", own, Some(7), &context()).is_none());
    let mut everyone = context();
    everyone.deliver_bot_messages = true;
    assert!(from_dispatch("MESSAGE_CREATE", bot, Some(8), &everyone).is_some());
}

#[test]
fn interactions_become_commands_and_postbacks() {
    let command = json!({"id": "1180000000000000001", "type": 2, "token": "tok", "channel_id": "c1",
        "member": {"user": {"id": "u1"}},
        "data": {"name": "echo", "options": [{"name": "text", "type": 3, "value": "hi"},
                                              {"name": "sub", "type": 1, "options": [{"name": "n", "type": 4, "value": 3}]}]}});
    let e = from_interaction(&command).unwrap();
    let EventKind::Command(c) = &e.kind else {
        panic!()
    };
    assert_eq!(c.name, "echo");
    assert_eq!(c.options["text"], "hi");
    assert_eq!(c.options["sub"]["n"], 3);
    assert_eq!(e.reply_token.as_ref().unwrap().expose(), "tok");
    assert_eq!(e.sender.as_ref().unwrap().as_str(), "u1");

    let button = json!({"id": "2", "type": 3, "token": "t", "channel_id": "c", "user": {"id": "u"},
        "data": {"custom_id": "buy", "component_type": 2}});
    assert!(
        matches!(&from_interaction(&button).unwrap().kind, EventKind::Postback(p) if p.data == "buy")
    );
    let select = json!({"id": "5", "type": 3, "token": "t", "channel_id": "c", "user": {"id": "u"},
        "data": {"custom_id": "botrt:text:x", "component_type": 3, "values": ["a"]}});
    assert!(
        matches!(&from_interaction(&select).unwrap().kind, EventKind::Postback(p) if p.data == "botrt:text:x"),
        "a select menu is a postback whatever its custom_id"
    );
    let modal = json!({"id": "3", "type": 5, "token": "t", "channel_id": "c", "user": {"id": "u"},
        "data": {"custom_id": "form", "components": [{"type": 1, "components": [{"type": 4, "custom_id": "name", "value": "Ada"}]}]}});
    let EventKind::Postback(p) = from_interaction(&modal).unwrap().into_data().kind else {
        panic!()
    };
    assert_eq!(p.params["name"], "Ada");
    assert!(from_interaction(&json!({"id": "4", "type": 1})).is_none());
}

/// Edge cases of every field the view reads: it maps them as the tree does, or leaves
/// them to the tree.
#[test]
fn the_view_maps_every_payload_as_the_tree_does() {
    let mut context = context();
    context.session_id = Some("s".into());
    let message = r#"{"id": "1180000000000000000", "channel_id": "c1", "author": {"id": "u1"}"#;
    let cases: Vec<(&str, String)> = vec![
        ("MESSAGE_CREATE", format!(r#"{message}, "content": "hi\n\"there\" \u00e9"}}"#)),
        ("MESSAGE_CREATE", format!(r#"{message}, "content": ""}}"#)),
        ("MESSAGE_CREATE", format!(r#"{message}, "content": 5}}"#)),
        ("MESSAGE_CREATE", format!(r#"{message}, "webhook_id": null}}"#)),
        ("MESSAGE_CREATE", format!(r#"{message}, "webhook_id": "w"}}"#)),
        ("MESSAGE_CREATE", format!(r#"{message}, "webhook_id": 0}}"#)),
        ("MESSAGE_CREATE", r#"{"id": "1", "channel_id": "c", "author": {"id": "999"}}"#.into()),
        ("MESSAGE_CREATE", r#"{"id": "1", "channel_id": "c", "author": {"id": "u", "bot": 1}}"#.into()),
        ("MESSAGE_CREATE", r#"{"id": "1", "channel_id": "c", "author": ["u", true]}"#.into()),
        ("MESSAGE_CREATE", r#"["1", "c"]"#.into()),
        ("MESSAGE_CREATE", r#"{"id": "1", "id": "2", "channel_id": "c"}"#.into()),
        ("MESSAGE_CREATE", r#"{"id": 1, "channel_id": "c"}"#.into()),
        ("MESSAGE_CREATE", r#"{"id": "", "channel_id": "c"}"#.into()),
        ("MESSAGE_CREATE", r#"{"id": "1", "channel_id": null, "author": null}"#.into()),
        ("MESSAGE_CREATE", format!(r#"{message}, "attachments": [{{"id": "a", "size": 3, "content_type": "video/mp4"}}, {{}}], "mentions": [{{"id": "m"}}, {{"username": "x"}}]}}"#)),
        ("MESSAGE_CREATE", format!(r#"{message}, "attachments": [{{"size": -1}}], "mentions": [{{"id": 5}}]}}"#)),
        ("MESSAGE_CREATE", format!(r#"{message}, "attachments": {{}}, "mentions": null}}"#)),
        ("MESSAGE_CREATE", format!(r#"{message}, "attachments": [1], "mentions": ["u"]}}"#)),
        ("MESSAGE_CREATE", format!(r#"{message}, "message_reference": {{"message_id": "m0"}}}}"#)),
        ("MESSAGE_CREATE", format!(r#"{message}, "message_reference": []}}"#)),
        ("MESSAGE_UPDATE", format!(r#"{message}, "edited_timestamp": "2026-01-01T00:00:00Z"}}"#)),
        ("MESSAGE_UPDATE", format!(r#"{message}, "edited_timestamp": null}}"#)),
        ("MESSAGE_DELETE", r#"{"id": "1180000000000000000", "channel_id": "c"}"#.into()),
        ("MESSAGE_DELETE", r#"{"channel_id": "c"}"#.into()),
        ("MESSAGE_REACTION_ADD", r#"{"message_id": "m", "user_id": "u", "channel_id": "c", "emoji": {"id": null, "name": "👍"}}"#.into()),
        ("MESSAGE_REACTION_REMOVE", r#"{"message_id": "m", "channel_id": "c", "emoji": {"id": "e1"}}"#.into()),
        ("MESSAGE_REACTION_ADD", r#"{"message_id": "m", "user_id": "", "emoji": "x"}"#.into()),
        ("MESSAGE_REACTION_ADD", r#"{"user_id": "u"}"#.into()),
        ("GUILD_MEMBER_ADD", r#"{"guild_id": "g", "user": {"id": "u", "username": "x"}}"#.into()),
        ("GUILD_MEMBER_REMOVE", r#"{"guild_id": "g", "user": {"username": "x"}}"#.into()),
        ("GUILD_MEMBER_REMOVE", r#"{"guild_id": "g", "user": "u"}"#.into()),
        ("INTERACTION_CREATE", r#"{"id": "5", "type": 2, "token": "t", "data": {"name": "x"}}"#.into()),
        ("TYPING_START", r#"{"channel_id": "c", "user_id": "u"}"#.into()),
        ("MESSAGE_CREATE", "null".into()),
        ("MESSAGE_CREATE", "7".into()),
    ];
    for (name, json) in cases {
        let tree: Value = serde_json::from_str(&json).unwrap();
        let mut from_view = map_dispatch(name, &json, Some(3), &context).unwrap();
        let from_tree = map_tree(name, &tree, Some(3), &context);
        if let (Some(view), Some(tree)) = (&mut from_view, &from_tree) {
            // Events without a snowflake take the time they are read.
            if (view.occurred_at.as_millis() - tree.occurred_at.as_millis()).abs() < 60_000 {
                view.occurred_at = tree.occurred_at;
            }
        }
        assert_eq!(from_view, from_tree, "{name} {json}");
    }
    // JSON a tree cannot hold: an error, as when the whole frame was one tree.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(map_dispatch("TYPING_START", &deep, None, &context).is_err());
}

#[test]
fn other_dispatches_are_delivered_with_stable_ids() {
    let data = json!({"guild_id": "g", "user_id": "u", "timestamp": 5});
    let mut context = context();
    context.session_id = Some("s1".into());
    let a = from_dispatch("TYPING_START", data.clone(), Some(9), &context).unwrap();
    let replayed = from_dispatch("TYPING_START", data.clone(), Some(9), &context).unwrap();
    let again = from_dispatch("TYPING_START", data, Some(10), &context).unwrap();
    assert_eq!(
        a.id, replayed.id,
        "a replay after a resume is the same event"
    );
    assert_ne!(a.id, again.id, "the same payload later is another event");
    assert_eq!(a.id.as_str(), "s1:9");
    assert!(matches!(&a.kind, EventKind::Other(o) if o.name == "TYPING_START"));
    assert_eq!(a.conversation.as_str(), "g");
}

/// A quick reply that says text arrives as that text, as it does on LINE and Messenger: the
/// button the renderer made, pressed, is a text `Message` a `.text()` route serves.
#[test]
fn a_pressed_text_quick_reply_is_a_text_message() {
    use bot_core::outbound::{Action, Button, OutgoingMessage, QuickReply};
    let message = OutgoingMessage::text("How many?")
        .quick_reply(QuickReply::message("2"))
        .button(Button {
            label: "Four".into(),
            action: Action::Message("4".into()),
        })
        .button(Button::postback("Cancel", "cancel"));
    let body = crate::render::bodies(&[message]).unwrap().remove(0);
    let ids: Vec<&str> = body["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["custom_id"].as_str().unwrap())
        .collect();
    let pressed = |custom_id: &str| {
        from_interaction(
            &json!({"id": "1180000000000000009", "type": 3, "token": "tok",
            "channel_id": "c", "member": {"user": {"id": "u1"}},
            "data": {"custom_id": custom_id, "component_type": 2}}),
        )
        .unwrap()
    };
    let texts: Vec<Option<String>> = ids
        .iter()
        .map(|id| pressed(id).text_content().map(str::to_owned))
        .collect();
    assert_eq!(texts, [Some("4".to_owned()), None, Some("2".to_owned())]);
    let event = pressed(ids[2]);
    assert!(matches!(&event.kind, EventKind::Message(m) if m.text.as_deref() == Some("2")));
    // Still the interaction's: the reply answers it, from its presser.
    assert_eq!(event.reply_token.as_ref().unwrap().expose(), "tok");
    assert_eq!(event.sender.as_ref().unwrap().as_str(), "u1");
    assert!(matches!(&pressed(ids[1]).kind, EventKind::Postback(p) if p.data == "cancel"));
}

#[test]
fn text_too_long_for_a_custom_id_is_refused_with_the_limit() {
    use bot_core::outbound::{OutgoingMessage, QuickReply};
    let long = "x".repeat(95);
    let message = OutgoingMessage::text("?").quick_reply(QuickReply::message(long));
    let e = crate::render::bodies(&[message]).unwrap_err();
    assert!(e.to_string().contains("89 for one that says text"), "{e}");
}

/// The testing builders make what the mapping expects of each kind.
#[cfg(feature = "testing")]
#[test]
fn the_testing_builders_map_to_their_kinds() {
    use crate::testing::{button_press, message_create, select_menu, slash_command};
    let kinds: Vec<String> = [
        slash_command("echo", json!([]), "c", "u"),
        button_press("buy", "c", "u"),
        button_press("botrt:text:2", "c", "u"),
        select_menu("size", &["l"], "c", "u"),
    ]
    .iter()
    .map(|i| from_interaction(i).unwrap().kind.name().to_owned())
    .collect();
    assert_eq!(kinds, ["command", "postback", "message", "postback"]);
    let m = message_create("hi", "c", "u");
    assert_eq!(m["content"], "hi");
}
