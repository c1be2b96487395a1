//! The webhook over real HTTP: the verification handshake, signatures, body limits, malformed
//! bodies, echoes and other objects.

mod support;

use bot_core::Bot;
use bot_messenger::testing::{FakeMessenger, WebhookBuilder, verify_subscription};
use bot_messenger::webhook::sign;
use support::{Seen, app_secret, messenger, metric, post_raw, serve};

#[tokio::test]
async fn verification_answers_the_challenge_to_the_right_token_and_403_otherwise() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(support::echo),
    )
    .await;
    let url = &served.webhook;

    let (status, body) = verify_subscription(url, support::VERIFY_TOKEN, "1158201444")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "1158201444"));
    // The challenge comes back verbatim, whatever it holds.
    let odd = "a b&c=d/é";
    let (status, body) = verify_subscription(url, support::VERIFY_TOKEN, odd)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, odd));
    let response = reqwest::get(format!(
        "{url}?hub.mode=subscribe&hub.verify_token={}&hub.challenge=42",
        support::VERIFY_TOKEN
    ))
    .await
    .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    let (status, body) = verify_subscription(url, "wrong-token", "1158201444")
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert!(!body.contains("1158201444"));
    let prefix = format!("{}x", support::VERIFY_TOKEN);
    assert_eq!(verify_subscription(url, &prefix, "1").await.unwrap().0, 403);
    for query in [
        "",
        "?hub.mode=subscribe&hub.challenge=1",
        "?hub.mode=unsubscribe&hub.verify_token=test-verify-token&hub.challenge=1",
        "?hub.mode=subscribe&hub.verify_token=test-verify-token",
        "?hub.mode=subscribe&hub.mode=subscribe&hub.verify_token=test-verify-token&hub.challenge=1",
        "?hub.mode=subscribe&hub.verify_token=%FF%FE&hub.challenge=1",
    ] {
        let status = reqwest::get(format!("{url}{query}"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 403, "{query:?}");
    }
    assert_eq!(
        metric(
            &served.bot,
            "bot_webhook_rejected_total",
            &["reason=\"verify_token\""]
        ),
        8.0
    );
    served.stop().await;
}

#[tokio::test]
async fn missing_malformed_foreign_and_tampered_signatures_get_401_and_nothing_runs() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let seen = Seen::default();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(seen.echo_handler()),
    )
    .await;
    let url = &served.webhook;
    let signed = WebhookBuilder::new()
        .text("PSID1", "hello")
        .sign(&app_secret());
    let body = signed.body.clone();
    let hex = signed.signature.trim_start_matches("sha256=").to_owned();
    let foreign = sign(&bot_core::Secret::new("another-app"), &body);
    let mut tampered = body.to_vec();
    let at = tampered.iter().position(|&b| b == b'h').unwrap();
    tampered[at] = b'j';

    assert_eq!(post_raw(url, body.clone(), None).await, 401);
    assert_eq!(
        post_raw(url, body.clone(), Some(&hex)).await,
        401,
        "no sha256= prefix"
    );
    assert_eq!(
        post_raw(url, body.clone(), Some(&format!("sha1={hex}"))).await,
        401
    );
    assert_eq!(post_raw(url, body.clone(), Some("sha256=zz")).await, 401);
    assert_eq!(post_raw(url, body.clone(), Some(&foreign)).await, 401);
    assert_eq!(post_raw(url, tampered, Some(&signed.signature)).await, 401);

    // The same body with its signature goes through; only it reaches the handler and the API.
    assert_eq!(signed.post(url).await.unwrap(), 200);
    let sent = fake.wait_for_messages(1).await;
    served.bot.idle().await;
    assert_eq!(seen.events().len(), 1);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text(), Some("hello"));
    assert_eq!(
        metric(
            &served.bot,
            "bot_webhook_rejected_total",
            &["reason=\"signature\""]
        ),
        6.0
    );
    served.stop().await;
}

#[tokio::test]
async fn bodies_over_the_bots_limit_get_413() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let seen = Seen::default();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(seen.echo_handler())
            .max_body_bytes(2048),
    )
    .await;
    let big = WebhookBuilder::new()
        .text("PSID1", &"x".repeat(4096))
        .sign(&app_secret());
    assert_eq!(big.post(&served.webhook).await.unwrap(), 413);
    let small = WebhookBuilder::new()
        .text("PSID1", "fits")
        .sign(&app_secret());
    assert_eq!(small.post(&served.webhook).await.unwrap(), 200);
    fake.wait_for_messages(1).await;
    served.bot.idle().await;
    assert_eq!(seen.events().len(), 1);
    served.stop().await;
}

#[tokio::test]
async fn malformed_bodies_with_valid_signatures_get_400() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(support::echo),
    )
    .await;
    let secret = app_secret();
    for body in [
        b"{\"object\": \"page\", \"entry\": [" as &[u8],
        b"not json at all",
        b"{\"entry\": []}",
        b"{\"object\": \"page\"}",
        b"{\"object\": \"page\", \"entry\": {}}",
        b"[]",
    ] {
        let status = post_raw(&served.webhook, body.to_vec(), Some(&sign(&secret, body))).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
    }
    assert_eq!(
        metric(
            &served.bot,
            "bot_webhook_rejected_total",
            &["reason=\"malformed_json\""]
        ),
        6.0
    );
    assert_eq!(fake.api().call_count(), 0);
    served.stop().await;
}

#[tokio::test]
async fn echoes_are_counted_and_trigger_no_reply() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let seen = Seen::default();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(seen.echo_handler()),
    )
    .await;
    let only_echoes = WebhookBuilder::new()
        .echo("PSID1", "the page said this")
        .echo("PSID2", "and this")
        // An echo the model cannot read (a text that is not a string) is still an echo.
        .item(serde_json::json!({
            "sender": {"id": bot_messenger::testing::DEFAULT_PAGE_ID},
            "recipient": {"id": "PSID3"},
            "timestamp": 1_700_000_000_000_i64,
            "message": {"mid": "m_odd_echo", "is_echo": true, "text": 42}
        }))
        .sign(&app_secret());
    assert_eq!(only_echoes.post(&served.webhook).await.unwrap(), 200);
    let mixed = WebhookBuilder::new()
        .echo("PSID1", "page text")
        .text("PSID1", "user text")
        .sign(&app_secret());
    assert_eq!(mixed.post(&served.webhook).await.unwrap(), 200);
    let sent = fake.wait_for_messages(1).await;
    served.bot.idle().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text(), Some("user text"));
    assert_eq!(seen.events().len(), 1, "echoes never reach the handler");
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(
        metric(
            &served.bot,
            "bot_events_skipped_total",
            &["reason=\"echo\""]
        ),
        4.0
    );
    served.stop().await;
}

#[tokio::test]
async fn echoes_can_be_delivered_as_other_events_that_echo_handlers_ignore() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let seen = Seen::default();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).deliver_echoes(true).build().unwrap())
            .handler(seen.echo_handler()),
    )
    .await;
    let body = WebhookBuilder::new()
        .echo("PSID1", "page text")
        .sign(&app_secret());
    assert_eq!(body.post(&served.webhook).await.unwrap(), 200);
    served.bot.idle().await;
    let events = seen.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind.name(), "message_echo");
    assert_eq!(events[0].conversation.as_str(), "PSID1");
    assert_eq!(events[0].text_content(), None);
    assert_eq!(fake.api().call_count(), 0);
    served.stop().await;
}

#[tokio::test]
async fn standby_items_are_counted_and_delivered_only_when_asked_for() {
    let standby_item = |text: &str| {
        bot_messenger::testing::text_item(bot_messenger::testing::DEFAULT_PAGE_ID, "PSID1", text)
    };
    for deliver in [false, true] {
        let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
        let seen = Seen::default();
        let served = serve(
            Bot::builder()
                .adapter(messenger(&fake).deliver_standby(deliver).build().unwrap())
                .handler(seen.echo_handler()),
        )
        .await;
        let body = WebhookBuilder::new()
            .text("PSID2", "to the bot")
            .standby(standby_item("to the human agent"))
            .standby(standby_item("again"))
            .sign(&app_secret());
        assert_eq!(body.post(&served.webhook).await.unwrap(), 200);
        fake.wait_for_messages(1).await;
        served.bot.idle().await;
        let kinds: Vec<String> = seen
            .events()
            .iter()
            .map(|e| e.kind.name().to_owned())
            .collect();
        let skipped = metric(
            &served.bot,
            "bot_events_skipped_total",
            &["reason=\"standby\""],
        );
        if deliver {
            assert_eq!(kinds, ["message", "standby_message", "standby_message"]);
            assert_eq!(skipped, 0.0);
        } else {
            assert_eq!(kinds, ["message"]);
            assert_eq!(skipped, 2.0);
        }
        // Standby items are never answered: the conversation belongs to another app.
        assert_eq!(fake.messages().len(), 1);
        served.stop().await;
    }
}

#[tokio::test]
async fn other_objects_are_ignored_with_200_and_instagram_is_served() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let seen = Seen::default();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(seen.echo_handler()),
    )
    .await;
    let user = WebhookBuilder::new()
        .object("user")
        .text("PSID1", "not for us")
        .sign(&app_secret());
    assert_eq!(user.post(&served.webhook).await.unwrap(), 200);
    let instagram = WebhookBuilder::new()
        .object("instagram")
        .page_id("17841400000000001")
        .text("IGSID1", "from instagram")
        .sign(&app_secret());
    assert_eq!(instagram.post(&served.webhook).await.unwrap(), 200);
    let sent = fake.wait_for_messages(1).await;
    served.bot.idle().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].recipient_id.as_deref(), Some("IGSID1"));
    assert_eq!(seen.events().len(), 1);
    assert_eq!(
        metric(
            &served.bot,
            "bot_events_skipped_total",
            &["reason=\"object\""]
        ),
        1.0
    );
    served.stop().await;
}

#[tokio::test]
async fn a_full_queue_refuses_the_whole_batch_with_503_and_a_redelivery_goes_through() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (gate, handled) = (gate.clone(), handled.clone());
        move |_cx: bot_core::Context, _event: bot_core::Event| {
            let (gate, handled) = (gate.clone(), handled.clone());
            async move {
                let _pass = gate.acquire().await.expect("gate open");
                handled.fetch_add(1, Ordering::SeqCst);
                Ok::<(), bot_core::Error>(())
            }
        }
    };
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .limits(bot_core::Limits {
                queue_capacity: 3,
                max_in_flight: 1,
                ..bot_core::Limits::default()
            })
            .handler(handler),
    )
    .await;
    let first = WebhookBuilder::new()
        .text("PSID1", "a")
        .text("PSID1", "b")
        .sign(&app_secret());
    assert_eq!(first.post(&served.webhook).await.unwrap(), 200);
    // Two entries, three items: more than the queue has room for while the first two wait.
    let second = WebhookBuilder::new()
        .entry()
        .text("PSID2", "c")
        .entry()
        .text("PSID3", "d")
        .text("PSID3", "e")
        .sign(&app_secret());
    let response = reqwest::Client::new()
        .post(&served.webhook)
        .header("x-hub-signature-256", &second.signature)
        .body(second.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));

    gate.add_permits(100);
    served.bot.idle().await;
    assert_eq!(
        handled.load(Ordering::SeqCst),
        2,
        "nothing of the refused batch ran"
    );
    // Meta delivers the refused body again; now there is room for all of it.
    assert_eq!(second.post(&served.webhook).await.unwrap(), 200);
    served.bot.idle().await;
    assert_eq!(handled.load(Ordering::SeqCst), 5);
    served.stop().await;
}
