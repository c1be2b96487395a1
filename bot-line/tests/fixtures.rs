//! One fixture per LINE webhook event type (tests/fixtures/*.json, shaped as LINE documents them):
//! each parses into its typed kind and maps to the expected core event.

use bot_core::event::AttachmentKind;
use bot_core::{Event, EventKind as Core};
use bot_line::LineEventExt;
use bot_line::event::to_core_event;
use bot_line::model::{
    BeaconType, ContentProviderType, EventKind as Line, LinkResult, MembershipType, MessageContent,
    Mode, ModuleType, StickerResourceType, ThingsType, WebhookEvent,
};
use serde_json::Value;

const BOT: &str = "Ubot";
const USER: &str = "U4af4980629a1b2c3d4e5f6a7b8c9d0e1";
const GROUP: &str = "Ca56f94637c0b1d2e3f4a5b6c7d8e9f00";
const ROOM: &str = "Ra8dc0b1d2e3f4a5b6c7d8e9f001234ab";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Parses the fixture both ways: typed, and mapped to a core event (checked against the raw JSON).
fn load(name: &str) -> (WebhookEvent, Event) {
    let raw = fixture(name);
    let typed = WebhookEvent::from_value(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    let core = to_core_event(BOT, raw.clone());
    assert_eq!(core.raw(), &raw, "{name}: the raw payload is kept whole");
    assert_eq!(
        core.id.as_str(),
        raw["webhookEventId"].as_str().unwrap(),
        "{name}: id"
    );
    assert_eq!(
        core.occurred_at.as_millis(),
        raw["timestamp"].as_i64().unwrap(),
        "{name}: timestamp"
    );
    assert_eq!(
        core.reply_token.as_ref().map(|t| t.expose().to_owned()),
        raw["replyToken"].as_str().map(str::to_owned),
        "{name}: reply token"
    );
    assert_eq!(
        core.line_event().unwrap().unwrap(),
        typed,
        "{name}: typed access back"
    );
    (typed, core)
}

#[test]
fn text_messages_keep_text_emojis_mentions_and_quotes() {
    let (typed, core) = load("message-text");
    let Line::Message(MessageContent::Text(text)) = &typed.kind else {
        panic!("{typed:?}")
    };
    assert_eq!(text.emojis[0].product_id, "5ac1bfd5040ab15980c9b435");
    assert_eq!(text.mention.as_ref().unwrap().mentionees.len(), 2);
    assert_eq!(text.quote_token.as_deref(), Some("q3Plxr4AgKd..."));
    assert_eq!(typed.mode, Some(Mode::Active));
    assert_eq!(core.conversation.as_str(), GROUP);
    assert_eq!(core.sender.as_ref().unwrap().as_str(), USER);
    let m = core.message().unwrap();
    assert_eq!(m.text.as_deref(), Some("@example Hello, world! (love) $"));
    assert_eq!(m.mentions.len(), 1, "the @All mention has no user");
    assert_eq!(m.reply_to.as_ref().unwrap().as_str(), "468789532432007169");
}

#[test]
fn media_messages_become_attachments() {
    let (typed, core) = load("message-image");
    let Line::Message(MessageContent::Image(image)) = &typed.kind else {
        panic!()
    };
    assert_eq!(
        image.content_provider.provider_type,
        ContentProviderType::External
    );
    assert_eq!(image.image_set.as_ref().unwrap().total, Some(2));
    let a = &core.message().unwrap().attachments[0];
    assert_eq!(a.kind, AttachmentKind::Image);
    assert_eq!(a.url.as_deref(), Some("https://example.com/original.jpg"));

    for (name, kind) in [
        ("message-video", AttachmentKind::Video),
        ("message-audio", AttachmentKind::Audio),
    ] {
        let (typed, core) = load(name);
        assert!(matches!(
            typed.kind,
            Line::Message(MessageContent::Video(_) | MessageContent::Audio(_))
        ));
        let a = &core.message().unwrap().attachments[0];
        assert_eq!(a.kind, kind);
        assert_eq!(
            a.url, None,
            "LINE-hosted content has no URL; fetch it by id"
        );
        assert_eq!(a.id.as_deref(), typed_message_id(&typed));
    }

    let (typed, core) = load("message-file");
    let Line::Message(MessageContent::File(file)) = &typed.kind else {
        panic!()
    };
    assert_eq!(file.file_size, 2138);
    let a = &core.message().unwrap().attachments[0];
    assert_eq!(
        (a.kind.clone(), a.name.as_deref(), a.size),
        (AttachmentKind::File, Some("file.txt"), Some(2138))
    );

    let (typed, core) = load("message-location");
    let Line::Message(MessageContent::Location(loc)) = &typed.kind else {
        panic!()
    };
    assert!((loc.latitude - 35.67966).abs() < 1e-9);
    let a = &core.message().unwrap().attachments[0];
    assert_eq!(a.url.as_deref(), Some("geo:35.67966,139.73669"));
    assert_eq!(a.name.as_deref(), Some("my location"));
}

fn typed_message_id(e: &WebhookEvent) -> Option<&str> {
    match &e.kind {
        Line::Message(m) => m.id(),
        _ => None,
    }
}

#[test]
fn stickers_keep_their_ids_keywords_and_text() {
    let (typed, core) = load("message-sticker");
    let Line::Message(MessageContent::Sticker(s)) = &typed.kind else {
        panic!()
    };
    assert_eq!(
        (s.package_id.as_str(), s.sticker_id.as_str()),
        ("11537", "52002738")
    );
    assert_eq!(s.sticker_resource_type, StickerResourceType::Animation);
    assert_eq!(s.keywords.len(), 14);
    let a = &core.message().unwrap().attachments[0];
    assert_eq!(
        (a.kind.clone(), a.id.as_deref()),
        (AttachmentKind::Sticker, Some("52002738"))
    );

    let (typed, core) = load("message-sticker-message");
    let Line::Message(MessageContent::Sticker(s)) = &typed.kind else {
        panic!()
    };
    assert_eq!(s.sticker_resource_type, StickerResourceType::Message);
    assert_eq!(core.text_content(), Some("Let's hang out this weekend!"));
}

#[test]
fn edits_unsends_follows_and_membership_changes_map_to_core_kinds() {
    let (typed, core) = load("message-edited");
    assert!(matches!(
        typed.kind,
        Line::MessageEdited(MessageContent::Text(_))
    ));
    let Core::Edited(m) = &core.kind else {
        panic!("{:?}", core.kind)
    };
    assert_eq!(m.text.as_deref(), Some("Hello, edited world!"));

    let (typed, core) = load("unsend");
    assert!(matches!(&typed.kind, Line::Unsend(u) if u.message_id == "325708"));
    assert!(matches!(&core.kind, Core::Deleted(d) if d.message_id.as_str() == "325708"));
    assert_eq!(core.conversation.as_str(), GROUP);

    let (typed, core) = load("follow");
    assert!(matches!(typed.kind, Line::Follow(f) if !f.is_unblocked));
    assert_eq!(core.kind, Core::Followed);
    assert_eq!(load("unfollow").1.kind, Core::Unfollowed);

    let (typed, core) = load("join");
    assert_eq!(typed.kind, Line::Join);
    assert!(matches!(&core.kind, Core::MemberJoined(m) if m.users.is_empty()));
    assert_eq!(core.conversation.as_str(), GROUP);
    assert_eq!(core.sender, None);
    let (_, core) = load("leave");
    assert!(matches!(&core.kind, Core::MemberLeft(m) if m.users.is_empty()));

    let (typed, core) = load("member-joined");
    assert!(matches!(&typed.kind, Line::MemberJoined(m) if m.members.len() == 2));
    let Core::MemberJoined(m) = &core.kind else {
        panic!()
    };
    assert_eq!(m.users[1].as_str(), "U91eeaf62d9...");
    let (_, core) = load("member-left");
    assert!(matches!(&core.kind, Core::MemberLeft(m) if m.users.len() == 2));
}

#[test]
fn postbacks_carry_data_and_params() {
    let (typed, core) = load("postback-datetime");
    let Line::Postback(p) = &typed.kind else {
        panic!()
    };
    assert_eq!(
        p.params.as_ref().unwrap().datetime.as_deref(),
        Some("2017-12-25T01:00")
    );
    let Core::Postback(p) = &core.kind else {
        panic!()
    };
    assert_eq!(p.data, "storeId=12345");
    assert_eq!(p.params["datetime"], "2017-12-25T01:00");

    let (typed, _) = load("postback-rich-menu");
    let Line::Postback(p) = &typed.kind else {
        panic!()
    };
    let params = p.params.as_ref().unwrap();
    assert_eq!(
        params.new_rich_menu_alias_id.as_deref(),
        Some("richmenu-alias-b")
    );
    assert_eq!(params.status.as_deref(), Some("SUCCESS"));
}

/// Events without a core kind arrive as `Other` named by LINE's type, typed in the model.
#[test]
fn line_only_events_are_typed_and_delivered_as_other() {
    let other = |core: &Event, name: &str| {
        assert!(
            matches!(&core.kind, Core::Other(o) if o.name == name),
            "{:?}",
            core.kind
        );
    };
    let (typed, core) = load("video-play-complete");
    assert!(matches!(&typed.kind, Line::VideoPlayComplete(v) if v.tracking_id == "track-id"));
    other(&core, "videoPlayComplete");

    let (typed, core) = load("beacon");
    assert!(
        matches!(&typed.kind, Line::Beacon(b) if b.beacon_type == BeaconType::Enter && b.dm.is_some())
    );
    other(&core, "beacon");

    let (typed, core) = load("account-link");
    assert!(matches!(&typed.kind, Line::AccountLink(l) if l.result == LinkResult::Ok));
    other(&core, "accountLink");
    let (typed, core) = load("account-link-failed");
    assert!(matches!(&typed.kind, Line::AccountLink(l) if l.result == LinkResult::Failed));
    assert_eq!(typed.source, None);
    assert_eq!(
        core.conversation.as_str(),
        BOT,
        "no source: the bot's own conversation"
    );

    let (typed, core) = load("things-link");
    assert!(matches!(&typed.kind, Line::Things(t) if t.things_type == ThingsType::Link));
    other(&core, "things");
    let (typed, _) = load("things-scenario-result");
    assert!(
        matches!(&typed.kind, Line::Things(t) if t.result.as_ref().unwrap()["resultCode"] == "success")
    );

    let (typed, core) = load("membership");
    assert!(
        matches!(&typed.kind, Line::Membership(m) if m.membership_type == MembershipType::Joined && m.membership_id == 3189)
    );
    other(&core, "membership");

    let (typed, core) = load("module-attached");
    assert!(
        matches!(&typed.kind, Line::Module(m) if m.module_type == ModuleType::Attached && m.scopes.len() == 2)
    );
    other(&core, "module");
    let (typed, _) = load("module-detached");
    assert!(matches!(&typed.kind, Line::Module(m) if m.reason.as_deref() == Some("bot_deleted")));

    let (typed, core) = load("activated");
    assert!(
        matches!(&typed.kind, Line::Activated(a) if a.chat_control.expire_at == 1_592_961_360_000)
    );
    other(&core, "activated");
    let (typed, core) = load("deactivated");
    assert_eq!(typed.kind, Line::Deactivated);
    other(&core, "deactivated");

    let (typed, core) = load("bot-suspended");
    assert_eq!(typed.kind, Line::BotSuspended);
    other(&core, "botSuspended");
    let (typed, core) = load("bot-resumed");
    assert_eq!(typed.kind, Line::BotResumed);
    other(&core, "botResumed");

    let (typed, core) = load("delivery");
    assert!(matches!(&typed.kind, Line::Delivery(d) if d.data.len() == 64));
    other(&core, "delivery");
}

#[test]
fn standby_events_have_no_reply_token() {
    let (typed, core) = load("message-standby");
    assert!(typed.is_standby());
    assert_eq!(core.reply_token, None);
    assert_eq!(core.conversation.as_str(), ROOM);
}

#[test]
fn unknown_event_types_map_to_other_with_their_payload() {
    let (typed, core) = load("unknown-type");
    assert_eq!(typed.kind, Line::Unknown);
    assert_eq!(typed.event_type, "hologramCall");
    other_with_raw(&core);
}

fn other_with_raw(core: &Event) {
    assert!(matches!(&core.kind, Core::Other(o) if o.name == "hologramCall"));
    assert_eq!(core.raw()["hologramCall"]["dimensions"], 3);
    assert_eq!(core.conversation.as_str(), USER);
}
