//! One fixture per messaging item kind (tests/fixtures/*.json, shaped like Meta's documented
//! examples): each parses, maps to the core kind the mapping table promises, reads back as the
//! typed item, and is accepted by a real bot.

mod support;

use bot_core::event::AttachmentKind;
use bot_core::{Bot, Event, EventKind};
use bot_messenger::MessengerEventExt;
use bot_messenger::event::parse_body;
use bot_messenger::model::{LinkStatus, MessagingKind};
use support::{Seen, app_secret, messenger, serve};

const PAGE: &str = "106000000000001";
const USER: &str = "24386871164263049";
const IG_ACCOUNT: &str = "17841400000000001";

/// The typed key of events that are no messaging item (`changes[]`).
const NO_ITEM: &str = "-";

/// What one item must become: (core kind, conversation, sender, typed key).
type Expected = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
);

/// Every fixture with what each of its items must become.
const FIXTURES: &[(&str, &[Expected])] = &[
    ("message_text", &[("message", USER, Some(USER), "message")]),
    (
        "message_escaped",
        &[("message", USER, Some(USER), "message")],
    ),
    (
        "message_attachments",
        &[("message", USER, Some(USER), "message")],
    ),
    (
        "message_sticker",
        &[("message", USER, Some(USER), "message")],
    ),
    (
        "message_location",
        &[("message", USER, Some(USER), "message")],
    ),
    (
        "message_fallback",
        &[("message", USER, Some(USER), "message")],
    ),
    (
        "message_template",
        &[("message", USER, Some(USER), "message")],
    ),
    ("message_reel", &[("message", USER, Some(USER), "message")]),
    (
        "message_quick_reply",
        &[("postback", USER, Some(USER), "message")],
    ),
    (
        "message_reply_to",
        &[("message", USER, Some(USER), "message")],
    ),
    (
        "message_echo",
        &[("message_echo", USER, Some(PAGE), "message")],
    ),
    ("postback", &[("postback", USER, Some(USER), "postback")]),
    (
        "postback_referral",
        &[("postback", USER, Some(USER), "postback")],
    ),
    (
        "reaction",
        &[
            ("reaction", USER, Some(USER), "reaction"),
            ("reaction", USER, Some(USER), "reaction"),
        ],
    ),
    ("read", &[("read", USER, Some(USER), "read")]),
    ("delivery", &[("delivery", USER, Some(USER), "delivery")]),
    ("referral", &[("referral", USER, Some(USER), "referral")]),
    (
        "optin",
        &[
            ("optin", USER, Some(USER), "optin"),
            ("optin", "user_ref:ref-from-checkbox-123", None, "optin"),
        ],
    ),
    (
        "account_linking",
        &[
            ("account_linking", USER, Some(USER), "account_linking"),
            ("account_linking", USER, Some(USER), "account_linking"),
        ],
    ),
    (
        "pass_thread_control",
        &[(
            "pass_thread_control",
            USER,
            Some(USER),
            "pass_thread_control",
        )],
    ),
    (
        "take_thread_control",
        &[(
            "take_thread_control",
            USER,
            Some(USER),
            "take_thread_control",
        )],
    ),
    (
        "request_thread_control",
        &[(
            "request_thread_control",
            USER,
            Some(USER),
            "request_thread_control",
        )],
    ),
    ("app_roles", &[("app_roles", PAGE, None, "app_roles")]),
    (
        "standby",
        &[("standby_message", USER, Some(USER), "message")],
    ),
    (
        "instagram",
        &[
            ("message", "IGSID1", Some("IGSID1"), "message"),
            ("message", "IGSID1", Some("IGSID1"), "message"),
            ("deleted", "IGSID1", Some("IGSID1"), "message"),
            ("read", "IGSID1", Some("IGSID1"), "read"),
        ],
    ),
    (
        "changes",
        &[
            ("changes_feed", USER, Some(USER), NO_ITEM),
            ("changes_mention", PAGE, None, NO_ITEM),
        ],
    ),
    (
        "unknown_kind",
        &[
            ("game_play", USER, Some(USER), "game_play"),
            ("message", USER, Some(USER), "message"),
        ],
    ),
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn events(name: &str) -> Vec<Event> {
    parse_body(&fixture(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .events
}

/// The first attachment of the `index`-th event of fixture `name`.
fn attachment(name: &str, index: usize) -> bot_core::event::Attachment {
    events(name)[index].message().unwrap().attachments[0].clone()
}

#[test]
fn every_fixture_parses_and_maps_as_the_table_says() {
    let dir = std::fs::read_dir(format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let files = dir.count();
    assert_eq!(files, FIXTURES.len(), "every fixture file is in the table");
    for (name, expected) in FIXTURES {
        let events = events(name);
        let got: Vec<(&str, &str, Option<&str>, String)> = events
            .iter()
            .map(|e| {
                let typed = e.messenger_event().map_or_else(
                    || NO_ITEM.to_owned(),
                    |typed| {
                        typed
                            .unwrap_or_else(|err| panic!("{name}: typed item: {err}"))
                            .kind
                            .key()
                            .to_owned()
                    },
                );
                (
                    e.kind.name(),
                    e.conversation.as_str(),
                    e.sender.as_ref().map(|s| s.as_str()),
                    typed,
                )
            })
            .collect();
        let expected: Vec<(&str, &str, Option<&str>, String)> = expected
            .iter()
            .map(|(kind, conversation, sender, key)| {
                (*kind, *conversation, *sender, (*key).to_owned())
            })
            .collect();
        assert_eq!(got, expected, "{name}");
        for e in &events {
            assert!(!e.id.as_str().is_empty(), "{name}");
            assert!(e.raw().is_object(), "{name}: the raw item is kept");
        }
    }
}

#[test]
fn messages_carry_their_ids_text_attachments_and_replies() {
    let text = &events("message_text")[0];
    assert!(text.id.as_str().starts_with("m_AG5Hz2Uq"));
    assert_eq!(text.text_content(), Some("hello, world!"));
    assert_eq!(text.occurred_at.as_millis(), 1_700_000_000_000);

    let attachments = &events("message_attachments")[0];
    let kinds: Vec<AttachmentKind> = attachments
        .message()
        .unwrap()
        .attachments
        .iter()
        .map(|a| a.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            AttachmentKind::Image,
            AttachmentKind::Audio,
            AttachmentKind::Video,
            AttachmentKind::File
        ]
    );
    assert_eq!(
        attachments.message().unwrap().attachments[3].url.as_deref(),
        Some("https://cdn.fbsbx.com/v/report.pdf")
    );

    let sticker = attachment("message_sticker", 0);
    assert_eq!(sticker.kind, AttachmentKind::Sticker);
    assert_eq!(sticker.id.as_deref(), Some("369239263222822"));

    let location = attachment("message_location", 0);
    assert_eq!(location.kind, AttachmentKind::Location);
    assert_eq!(location.url.as_deref(), Some("geo:52.520008,13.404954"));

    let fallback = attachment("message_fallback", 0);
    assert_eq!(fallback.kind, AttachmentKind::Other("fallback".into()));
    assert_eq!(fallback.url.as_deref(), Some("https://example.com/article"));
    assert_eq!(fallback.name.as_deref(), Some("An article"));

    let template = attachment("message_template", 0);
    assert_eq!(template.kind, AttachmentKind::Other("template".into()));

    let reel = attachment("message_reel", 0);
    assert_eq!(reel.kind, AttachmentKind::Other("reel".into()));
    assert_eq!(reel.id.as_deref(), Some("1234567890123"));

    let reply = events("message_reply_to")[0].message().unwrap().clone();
    assert_eq!(reply.reply_to.unwrap().as_str(), "m_original");

    let holo = attachment("unknown_kind", 1);
    assert_eq!(holo.kind, AttachmentKind::Other("hologram".into()));
}

#[test]
fn quick_replies_and_postbacks_map_to_postbacks_with_their_source() {
    let quick = &events("message_quick_reply")[0];
    let EventKind::Postback(p) = &quick.kind else {
        panic!("{quick:?}")
    };
    assert_eq!(p.data, "COLOR_RED");
    assert_eq!(p.params["source"], "quick_reply");
    assert_eq!(p.params["text"], "Red");
    assert_eq!(quick.id.as_str(), "m_qr");

    let postback = &events("postback")[0];
    let EventKind::Postback(p) = &postback.kind else {
        panic!("{postback:?}")
    };
    assert_eq!(
        (p.data.as_str(), &p.params["title"]),
        ("GET_STARTED", &"Get Started".into())
    );
    assert_eq!(postback.id.as_str(), "m_postback");

    let referred = &events("postback_referral")[0];
    let EventKind::Postback(p) = &referred.kind else {
        panic!("{referred:?}")
    };
    assert_eq!(p.params["referral"]["ref"], "spring-campaign");
    assert!(
        referred.id.as_str().starts_with("sha256:"),
        "no mid: a stable hash"
    );
}

#[test]
fn reactions_reads_deliveries_and_others_keep_their_detail() {
    let reactions = events("reaction");
    let (EventKind::Reaction(added), EventKind::Reaction(removed)) =
        (&reactions[0].kind, &reactions[1].kind)
    else {
        panic!("{reactions:?}")
    };
    assert_eq!(added.message_id.as_str(), "m_reacted");
    assert_eq!(added.emoji, "\u{2764}");
    assert!(!added.removed && removed.removed);
    assert_ne!(reactions[0].id, reactions[1].id);

    let delivery = &events("delivery")[0];
    assert_eq!(
        delivery.occurred_at.as_millis(),
        1_700_000_005_000,
        "the entry's time"
    );
    let Ok(MessagingKind::Delivery(d)) = delivery.messenger_event().unwrap().map(|i| i.kind) else {
        panic!()
    };
    assert_eq!(d.mids, ["m_d1", "m_d2"]);

    let linking = events("account_linking");
    let Ok(MessagingKind::AccountLinking(linked)) =
        linking[0].messenger_event().unwrap().map(|i| i.kind)
    else {
        panic!()
    };
    assert_eq!(linked.status, LinkStatus::Linked);
    assert_eq!(linked.authorization_code.as_deref(), Some("auth-code-1"));

    let roles = &events("app_roles")[0];
    let Ok(MessagingKind::AppRoles(roles)) = roles.messenger_event().unwrap().map(|i| i.kind)
    else {
        panic!()
    };
    assert_eq!(roles["123456789"], ["primary_receiver"]);

    let request = &events("request_thread_control")[0];
    let Ok(MessagingKind::RequestThreadControl(r)) =
        request.messenger_event().unwrap().map(|i| i.kind)
    else {
        panic!()
    };
    assert_eq!(r.requested_owner_app_id.as_deref(), Some("123456789"));

    let standby = &events("standby")[0];
    assert!(standby.is_messenger_standby());
    assert!(!events("message_text")[0].is_messenger_standby());

    let unknown = &events("unknown_kind")[0];
    assert_eq!(unknown.raw()["game_play"]["score"], 99);

    let instagram = events("instagram");
    assert!(
        matches!(&instagram[2].kind, EventKind::Deleted(d) if d.message_id.as_str() == "aWdfdeleted")
    );
    assert_eq!(
        instagram[1].message().unwrap().attachments[0].kind,
        AttachmentKind::Other("ig_reel".into())
    );
    assert_ne!(instagram[0].conversation.as_str(), IG_ACCOUNT);
}

#[test]
fn changes_are_delivered_with_their_field_and_a_stable_id() {
    let changes = events("changes");
    let comment = &changes[0];
    assert!(comment.is_messenger_change() && !comment.is_messenger_echo());
    assert_eq!(comment.raw()["value"]["message"], "nice post");
    assert_eq!(comment.occurred_at.as_millis(), 1_700_000_005_000);
    assert!(comment.id.as_str().starts_with("sha256:"));
    assert_eq!(comment.id, events("changes")[0].id, "stable");
    assert_ne!(comment.id, changes[1].id);
    assert!(!events("message_text")[0].is_messenger_change());
}

#[test]
fn echoes_and_standby_items_are_marked() {
    let echo = &events("message_echo")[0];
    assert!(echo.is_messenger_echo() && !echo.is_messenger_standby());
    let standby = &events("standby")[0];
    assert!(standby.is_messenger_standby() && !standby.is_messenger_echo());
    assert!(!events("message_text")[0].is_messenger_echo());
}

#[test]
fn escaped_unicode_is_read_as_the_characters_it_stands_for() {
    let raw = fixture("message_escaped");
    let raw_text = String::from_utf8(raw).unwrap();
    assert!(
        raw_text.contains(r"\u00e4") && raw_text.contains(r"\/"),
        "escaped as Meta sends"
    );
    let event = &events("message_escaped")[0];
    assert_eq!(
        event.text_content(),
        Some("\u{e4} gr\u{fc}\u{df}e https://example.com/a")
    );
}

#[tokio::test]
async fn a_real_bot_accepts_every_fixture() {
    let fake = bot_messenger::testing::FakeMessenger::start(support::PAGE_TOKEN)
        .await
        .unwrap();
    let seen = Seen::default();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(seen.recorder()),
    )
    .await;
    let secret = app_secret();
    let mut expected: Vec<(String, String)> = Vec::new();
    for (name, _) in FIXTURES {
        // Signed over the raw bytes, escapes and all, as Meta signs.
        let body = fixture(name);
        let signature = bot_messenger::webhook::sign(&secret, &body);
        let status = support::post_raw(&served.webhook, body, Some(&signature)).await;
        assert_eq!(status, 200, "{name}");
        // Echoes and standby items are acknowledged, not delivered, by default.
        expected.extend(
            events(name)
                .iter()
                .filter(|e| !e.is_messenger_echo() && !e.is_messenger_standby())
                .map(|e| (e.id.as_str().to_owned(), e.kind.name().to_owned())),
        );
    }
    served.bot.idle().await;
    let events = seen.events();
    let mut delivered: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.id.as_str().to_owned(), e.kind.name().to_owned()))
        .collect();
    expected.sort();
    delivered.sort();
    assert_eq!(delivered, expected);
    let escaped = events
        .iter()
        .find(|e| e.id.as_str() == "m_escaped_unicode")
        .expect("the escaped fixture was delivered");
    assert_eq!(
        escaped.text_content(),
        Some("\u{e4} gr\u{fc}\u{df}e https://example.com/a")
    );
    assert!(fake.messages().is_empty(), "the recorder answers nothing");
    served.stop().await;
}
