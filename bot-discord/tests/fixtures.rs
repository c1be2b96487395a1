//! One fixture per dispatch the adapter maps (tests/fixtures/*.json, shaped as Discord documents
//! them): each maps to the expected core event and parses back into its typed model.

use bot_core::event::AttachmentKind;
use bot_core::{Event, EventKind};
use bot_discord::DiscordEventExt;
use bot_discord::event::{DispatchContext, from_dispatch};
use bot_discord::model::{InteractionType, MemberChange, Reaction};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

fn context() -> DispatchContext {
    let mut context = DispatchContext::default();
    context.bot_user_id = Some("1".into());
    context.session_id = Some("s".into());
    context
}

fn map(dispatch: &str, name: &str, sequence: u64) -> Event {
    let data = fixture(name);
    let event =
        from_dispatch(dispatch, data.clone(), Some(sequence), &context()).expect("delivered");
    assert_eq!(event.raw(), &data, "{name}: the raw payload is kept whole");
    event
}

#[test]
fn messages_map_with_attachments_mentions_and_replies_and_parse_back() {
    let e = map("MESSAGE_CREATE", "message_create", 2);
    assert_eq!(
        (e.id.as_str(), e.conversation.as_str()),
        ("1180000000000000100", "2000")
    );
    assert_eq!(e.sender.as_ref().unwrap().as_str(), "4000");
    let m = e.message().unwrap();
    assert_eq!(m.text.as_deref(), Some("look at this <@5000>"));
    assert_eq!(m.attachments[0].kind, AttachmentKind::Image);
    assert_eq!(m.attachments[0].size, Some(12345));
    assert_eq!(m.mentions[0].user.as_str(), "5000");
    assert_eq!(m.reply_to.as_ref().unwrap().as_str(), "1180000000000000099");
    let typed = e.discord_message().unwrap().unwrap();
    assert_eq!(typed.author.unwrap().global_name.as_deref(), Some("Ada"));
    assert_eq!(typed.message_type, 19);
    assert!(e.discord_interaction().is_none());

    let edited = map("MESSAGE_UPDATE", "message_update", 3);
    assert!(
        matches!(&edited.kind, EventKind::Edited(m) if m.text.as_deref() == Some("look at this, edited"))
    );
    assert!(edited.id.as_str().contains(":edit:2026-11-30T10:05"));
    assert!(
        edited
            .discord_message()
            .unwrap()
            .unwrap()
            .edited_timestamp
            .is_some()
    );

    let deleted = map("MESSAGE_DELETE", "message_delete", 4);
    assert!(
        matches!(&deleted.kind, EventKind::Deleted(d) if d.message_id.as_str() == "1180000000000000100")
    );
}

#[test]
fn reactions_and_members_map_with_session_ids() {
    let added = map("MESSAGE_REACTION_ADD", "message_reaction_add", 5);
    assert!(matches!(&added.kind, EventKind::Reaction(r) if r.emoji == "🔥" && !r.removed));
    assert_eq!(added.id.as_str(), "s:5");
    let typed: Reaction = added.raw.parse().unwrap();
    assert_eq!(typed.emoji.name.as_deref(), Some("🔥"));
    let removed = map("MESSAGE_REACTION_REMOVE", "message_reaction_remove", 6);
    assert!(
        matches!(&removed.kind, EventKind::Reaction(r) if r.emoji == "partyparrot" && r.removed)
    );

    let joined = map("GUILD_MEMBER_ADD", "guild_member_add", 7);
    assert!(matches!(&joined.kind, EventKind::MemberJoined(m) if m.users[0].as_str() == "8000"));
    assert_eq!(joined.conversation.as_str(), "3000");
    let typed: MemberChange = joined.raw.parse().unwrap();
    assert_eq!(typed.user.username, "newcomer");
    let left = map("GUILD_MEMBER_REMOVE", "guild_member_remove", 8);
    assert!(matches!(&left.kind, EventKind::MemberLeft(_)));
}

#[test]
fn interactions_map_to_commands_and_postbacks_and_parse_back() {
    let command = map("INTERACTION_CREATE", "interaction_command", 9);
    assert!(
        matches!(&command.kind, EventKind::Command(c) if c.name == "echo" && c.options["text"] == "hi there")
    );
    assert_eq!(
        command.reply_token.as_ref().unwrap().expose(),
        "tok-command"
    );
    let typed = command.discord_interaction().unwrap().unwrap();
    assert_eq!(typed.interaction_type, InteractionType::ApplicationCommand);
    assert_eq!(typed.acting_user().unwrap().id, "4000");
    assert!(command.discord_message().is_none());

    let button = map("INTERACTION_CREATE", "interaction_component", 10);
    assert!(
        matches!(&button.kind, EventKind::Postback(p) if p.data == "color:red" && p.params[0] == "red")
    );
    assert_eq!(
        button
            .discord_interaction()
            .unwrap()
            .unwrap()
            .data
            .unwrap()
            .values,
        ["red"]
    );

    let modal = map("INTERACTION_CREATE", "interaction_modal", 11);
    assert!(
        matches!(&modal.kind, EventKind::Postback(p) if p.data == "feedback" && p.params["comment"] == "great bot")
    );
}

#[test]
fn other_dispatches_arrive_as_other() {
    let typing = map("TYPING_START", "typing_start", 12);
    assert!(matches!(&typing.kind, EventKind::Other(o) if o.name == "TYPING_START"));
    assert_eq!(
        (typing.id.as_str(), typing.conversation.as_str()),
        ("s:12", "2000")
    );
}
