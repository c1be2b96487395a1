//! A real bot on 127.0.0.1 against the fake Graph API: batches, replies, routing of postbacks and
//! quick replies, and permanent refusals dead-lettered at once.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bot_core::outbound::{Button, QuickReply};
use bot_core::testing::fake_api::FakeResponse;
use bot_core::{Bot, Context, Error, Event, Limits, OutgoingMessage, Router};
use bot_messenger::ConfigureApi;
use bot_messenger::testing::{FakeMessenger, WebhookBuilder, graph_error};
use http::StatusCode;
use support::{Seen, app_secret, messenger, serve};

// ANCHOR: batch
#[tokio::test]
async fn two_entries_of_five_items_get_ten_replies_to_the_right_psids() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let seen = Seen::default();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(seen.echo_handler()),
    )
    .await;

    // Two entries in one body, five messaging items each; PSIDs repeat across the entries.
    let mut webhook = WebhookBuilder::new().entry();
    for i in 0..5 {
        webhook = webhook.text(&format!("PSID{i}"), &format!("first {i}"));
    }
    webhook = webhook.entry();
    for i in 0..5 {
        webhook = webhook.text(&format!("PSID{}", i % 3), &format!("second {i}"));
    }
    assert_eq!(
        webhook
            .sign(&app_secret())
            .post(&served.webhook)
            .await
            .unwrap(),
        200
    );

    let sent = fake.wait_for_messages(10).await;
    // ANCHOR_END: batch
    served.bot.idle().await;
    assert_eq!(sent.len(), 10);
    assert_eq!(seen.events().len(), 10);
    let mut by_psid: HashMap<String, Vec<String>> = HashMap::new();
    for message in &sent {
        assert_eq!(message.status, StatusCode::OK);
        assert_eq!(message.messaging_type.as_deref(), Some("RESPONSE"));
        assert_eq!(message.tag, None);
        assert_eq!(message.bearer.as_deref(), Some(support::PAGE_TOKEN));
        by_psid
            .entry(message.recipient_id.clone().unwrap())
            .or_default()
            .push(message.text().unwrap().to_owned());
    }
    // Each conversation is answered in the order its messages came, entries included.
    let expected: HashMap<String, Vec<String>> = [
        ("PSID0", vec!["first 0", "second 0", "second 3"]),
        ("PSID1", vec!["first 1", "second 1", "second 4"]),
        ("PSID2", vec!["first 2", "second 2"]),
        ("PSID3", vec!["first 3"]),
        ("PSID4", vec!["first 4"]),
    ]
    .into_iter()
    .map(|(psid, texts)| {
        (
            psid.to_owned(),
            texts.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    assert_eq!(by_psid, expected);
    assert_eq!(
        support::metric(
            &served.bot,
            "bot_outbound_requests_total",
            &["platform=\"messenger\"", "status=\"200\""]
        ),
        10.0
    );
    served.stop().await;
}

#[tokio::test]
async fn a_user_known_only_by_a_user_ref_is_answered_through_it() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(
                Router::new().kind("optin", |cx: Context, _e: Event| async move {
                    cx.reply("thanks for opting in").await
                }),
            ),
    )
    .await;
    let webhook = WebhookBuilder::new()
        .item(serde_json::json!({
            "recipient": {"id": bot_messenger::testing::DEFAULT_PAGE_ID},
            "timestamp": 1_700_000_000_000_i64,
            "optin": {"ref": "checkout", "user_ref": "ref-123"}
        }))
        .sign(&app_secret());
    assert_eq!(webhook.post(&served.webhook).await.unwrap(), 200);
    let sent = fake.wait_for_messages(1).await;
    assert_eq!(
        sent[0].recipient,
        serde_json::json!({"user_ref": "ref-123"})
    );
    assert_eq!(sent[0].status, StatusCode::OK);
    served.stop().await;
}

#[tokio::test]
async fn redelivered_bodies_are_answered_once() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let seen = Seen::default();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(seen.echo_handler()),
    )
    .await;
    let webhook = WebhookBuilder::new()
        .text("PSID1", "once")
        .item(serde_json::json!({
            "sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "timestamp": 5,
            "read": {"watermark": 4}
        }))
        .sign(&app_secret());
    assert_eq!(webhook.post(&served.webhook).await.unwrap(), 200);
    assert_eq!(webhook.post(&served.webhook).await.unwrap(), 200);
    fake.wait_for_messages(1).await;
    served.bot.idle().await;
    assert_eq!(
        seen.events().len(),
        2,
        "the message and the read, once each"
    );
    assert_eq!(fake.messages().len(), 1);
    served.stop().await;
}

async fn bought(cx: Context, event: Event) -> Result<(), Error> {
    let source = event.kind.clone();
    let bot_core::EventKind::Postback(postback) = source else {
        return Ok(());
    };
    cx.reply(format!(
        "bought via {}",
        postback.params["source"].as_str().unwrap_or("?")
    ))
    .await
}

// ANCHOR: router
#[tokio::test]
async fn quick_replies_and_buttons_reach_the_routers_postback_routes() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let router = Router::new()
        .postback("BUY", bought)
        .command("menu", |cx: Context, _e: Event| async move {
            cx.reply(
                OutgoingMessage::text("What now?")
                    .button(Button::postback("Buy", "BUY"))
                    .button(Button::link("Shop", "https://shop.example"))
                    .quick_reply(QuickReply::postback("Buy", "BUY"))
                    .quick_reply(QuickReply::message("Hello")),
            )
            .await
        })
        .text(support::echo);
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(router),
    )
    .await;
    let webhook = WebhookBuilder::new()
        .text("PSID1", "/menu")
        .postback("PSID2", "Buy", "BUY")
        .quick_reply("PSID3", "Buy", "BUY")
        .sign(&app_secret());
    assert_eq!(webhook.post(&served.webhook).await.unwrap(), 200);
    // ANCHOR_END: router
    let sent = fake.wait_for_messages(3).await;
    served.bot.idle().await;
    let to = |psid: &str| {
        sent.iter()
            .find(|m| m.recipient_id.as_deref() == Some(psid))
            .unwrap_or_else(|| panic!("no message to {psid}: {sent:?}"))
    };
    let menu = &to("PSID1").message;
    assert_eq!(menu["attachment"]["payload"]["template_type"], "button");
    assert_eq!(menu["attachment"]["payload"]["text"], "What now?");
    assert_eq!(
        menu["attachment"]["payload"]["buttons"][0]["payload"],
        "BUY"
    );
    assert_eq!(
        menu["attachment"]["payload"]["buttons"][1]["type"],
        "web_url"
    );
    assert_eq!(menu["quick_replies"][0]["payload"], "BUY");
    assert_eq!(to("PSID2").text(), Some("bought via postback"));
    assert_eq!(to("PSID3").text(), Some("bought via quick_reply"));

    // Tapping the "Hello" chip of the menu sends its title as text, which the text route echoes.
    let chip = menu["quick_replies"][1]["payload"]
        .as_str()
        .unwrap()
        .to_owned();
    let tap = WebhookBuilder::new()
        .quick_reply("PSID1", "Hello", &chip)
        .sign(&app_secret());
    assert_eq!(tap.post(&served.webhook).await.unwrap(), 200);
    let sent = fake.wait_for_messages(4).await;
    assert_eq!(sent[3].text(), Some("Hello"));
    served.stop().await;
}

#[tokio::test]
async fn refusals_that_retrying_cannot_fix_are_dead_lettered_after_one_attempt() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .limits(Limits {
                retry: support::fast_retries(5),
                ..Limits::default()
            })
            .handler(support::echo),
    )
    .await;
    fake.api()
        .inject(graph_error(StatusCode::BAD_REQUEST, 551, None));
    let webhook = WebhookBuilder::new()
        .text("PSID1", "are you there")
        .sign(&app_secret());
    assert_eq!(webhook.post(&served.webhook).await.unwrap(), 200);
    served.bot.idle().await;
    let dead = served.bot.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "{:?}", dead[0]);
    assert!(dead[0].error.contains("not available"), "{}", dead[0].error);
    assert_eq!(fake.api().call_count(), 1);
    served.stop().await;
}

/// A handler that counts its runs and answers every event with `text`.
fn replying(text: String, runs: Arc<AtomicU32>) -> impl bot_core::Handler {
    move |cx: Context, _event: Event| {
        runs.fetch_add(1, Ordering::SeqCst);
        let text = text.clone();
        async move { cx.reply(text).await }
    }
}

/// A reply of two parts: 1,998 characters, then `second` (split at the last space).
fn two_parts(second: &str) -> (String, String) {
    let first = "a ".repeat(999);
    (first.clone(), format!("{first}{second}"))
}

#[tokio::test]
async fn a_retried_handler_does_not_resend_the_parts_that_went_out() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let (first, long) = two_parts("the second part");
    // Part 2 fails with 503 as often as the client tries (3): the client gives up, the runtime
    // retries the handler, and part 2 then goes through.
    fake.refuse_texts_containing(
        "the second part",
        FakeResponse::json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({})),
        3,
    );
    let runs = Arc::new(AtomicU32::new(0));
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .limits(Limits {
                retry: support::fast_retries(3),
                ..Limits::default()
            })
            .handler(replying(long, runs.clone())),
    )
    .await;
    let webhook = WebhookBuilder::new()
        .text("PSID1", "tell me everything")
        .sign(&app_secret());
    assert_eq!(webhook.post(&served.webhook).await.unwrap(), 200);
    fake.wait_for_messages(5).await;
    served.bot.idle().await;

    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the runtime retried the handler"
    );
    let sent = fake.messages();
    let statuses = |text: &str| -> Vec<u16> {
        sent.iter()
            .filter(|m| m.text() == Some(text))
            .map(|m| m.status.as_u16())
            .collect()
    };
    assert_eq!(statuses(&first), [200], "part 1 went out once");
    assert_eq!(statuses("the second part"), [503, 503, 503, 200]);
    assert!(served.bot.dead_letters(10).await.unwrap().is_empty());
    served.stop().await;
}

#[tokio::test]
async fn a_reply_that_timed_out_is_not_sent_again_by_a_retried_handler() {
    let (api, received) = support::unanswering_api().await;
    let runs = Arc::new(AtomicU32::new(0));
    let served = serve(
        Bot::builder()
            .adapter(
                bot_messenger::Messenger::builder(
                    support::APP_SECRET,
                    support::VERIFY_TOKEN,
                    support::PAGE_TOKEN,
                )
                .api_base(api)
                .client(|c| {
                    c.retry(support::fast_retries(3))
                        .timeout(std::time::Duration::from_millis(100))
                })
                .build()
                .unwrap(),
            )
            .limits(Limits {
                retry: support::fast_retries(3),
                ..Limits::default()
            })
            .handler(replying("maybe twice".into(), runs.clone())),
    )
    .await;
    let webhook = WebhookBuilder::new()
        .text("PSID1", "hello")
        .sign(&app_secret());
    assert_eq!(webhook.post(&served.webhook).await.unwrap(), 200);
    served.bot.idle().await;

    // The first run timed out (the message may be out) and was retried; the retry skipped it.
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(served.bot.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(received.load(Ordering::SeqCst), 1, "sent once");
    served.stop().await;
}

#[tokio::test]
async fn a_part_answered_by_a_gateway_error_is_neither_retried_nor_resent() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    // Three parts, split at the line breaks: 2,000 characters each, then "the third part".
    let (first, second) = (
        format!("{}\n", "a".repeat(1999)),
        format!("{}\n", "b".repeat(1999)),
    );
    let long = format!("{first}{second}the third part");
    fake.refuse_texts_containing(
        "bbb",
        FakeResponse::json(StatusCode::BAD_GATEWAY, &serde_json::json!({})),
        1,
    );
    let runs = Arc::new(AtomicU32::new(0));
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .limits(Limits {
                retry: support::fast_retries(3),
                ..Limits::default()
            })
            .handler(replying(long, runs.clone())),
    )
    .await;
    let webhook = WebhookBuilder::new()
        .text("PSID1", "tell me everything")
        .sign(&app_secret());
    assert_eq!(webhook.post(&served.webhook).await.unwrap(), 200);
    fake.wait_for_messages(3).await;
    served.bot.idle().await;

    // The 502 may hide a sent message: the client did not retry part 2, and the retried
    // handler skipped it (and part 1) and sent only part 3.
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let sent: Vec<(String, u16)> = fake
        .messages()
        .iter()
        .map(|m| (m.text().unwrap_or_default().to_owned(), m.status.as_u16()))
        .collect();
    assert_eq!(
        sent,
        [
            (first, 200),
            (second, 502),
            ("the third part".to_owned(), 200)
        ]
    );
    assert!(served.bot.dead_letters(10).await.unwrap().is_empty());
    served.stop().await;
}
