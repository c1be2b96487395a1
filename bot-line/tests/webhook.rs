//! The LINE webhook over real HTTP: signatures, status codes, redelivery, back-pressure, and the
//! echo path end to end through the fake LINE API.
#![allow(clippy::disallowed_methods)] // the server under test runs in one spawned task

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use bot_core::{Context, Error, Event, Limits, Overflow, Secret};
use bot_line::testing::{WebhookBuilder, redelivered, text_event};
use bot_line::webhook::SIGNATURE_HEADER;
use support::{Counting, Harness, echo, sample, secret};

async fn post_raw(
    url: &str,
    signature: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(url).body(body);
    if let Some(signature) = signature {
        request = request.header(SIGNATURE_HEADER, signature);
    }
    request.send().await.unwrap()
}

// ANCHOR: e2e
#[tokio::test]
async fn ten_signed_text_events_get_ten_echoed_replies_over_http() {
    let h = Harness::start(echo, |b| b).await;
    let mut webhook = WebhookBuilder::new();
    for i in 0..10 {
        webhook = webhook.text(&format!("U{i:032}"), &format!("hello number {i}"));
    }
    let expected: BTreeSet<(String, String)> = webhook
        .events()
        .iter()
        .map(|e| {
            (
                e["replyToken"].as_str().unwrap().to_owned(),
                e["message"]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();

    assert_eq!(webhook.sign(&secret()).post(&h.url).await.unwrap(), 200);

    let replies = h.fake.wait_for_replies(10).await;
    assert_eq!(replies.len(), 10);
    let got: BTreeSet<(String, String)> = replies
        .iter()
        .map(|r| (r.reply_token.clone(), r.texts().concat()))
        .collect();
    assert_eq!(
        got, expected,
        "each event answered once, with its own token and text"
    );
    for reply in &replies {
        assert_eq!(reply.bearer.as_deref(), Some(support::TOKEN));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.messages.len(), 1);
    }
    h.bot.idle().await;
    let metrics = h.metrics();
    assert_eq!(
        sample(&metrics, r#"bot_events_received_total{platform="line"}"#),
        10.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"bot_outbound_requests_total{platform="line",status="200"}"#
        ),
        10.0
    );
    assert_eq!(h.fake.api().call_count(), 10, "nothing but the replies");
    h.stop().await;
}
// ANCHOR_END: e2e

#[tokio::test]
async fn bad_signatures_get_401_and_the_handler_never_runs() {
    let counting = Counting::default();
    let h = Harness::start(counting.handler(), |b| b).await;
    let signed = WebhookBuilder::new()
        .text("Uattacker", "let me in")
        .sign(&secret());

    let mut tampered = signed.body.to_vec();
    let at = tampered.windows(9).position(|w| w == b"let me in").unwrap();
    tampered[at] = b'L';
    let tampered_status = post_raw(&h.url, Some(&signed.signature), tampered)
        .await
        .status();
    let wrong_secret = WebhookBuilder::new()
        .text("Uattacker", "hi")
        .sign(&Secret::new("not-the-secret"));
    let wrong_status = post_raw(
        &h.url,
        Some(&wrong_secret.signature),
        wrong_secret.body.clone(),
    )
    .await
    .status();
    let missing_status = post_raw(&h.url, None, signed.body.clone()).await.status();
    let garbage_status = post_raw(&h.url, Some("not base64!"), signed.body.clone())
        .await
        .status();
    for status in [
        tampered_status,
        wrong_status,
        missing_status,
        garbage_status,
    ] {
        assert_eq!(status, 401);
    }

    // A valid request afterwards is handled, and it is the only one.
    let valid = WebhookBuilder::new()
        .text("Ufriend", "hello")
        .sign(&secret());
    assert_eq!(valid.post(&h.url).await.unwrap(), 200);
    h.bot.idle().await;
    assert_eq!(counting.count(), 1);
    assert_eq!(h.fake.wait_for_replies(1).await[0].texts(), ["hello"]);
    let metrics = h.metrics();
    assert_eq!(
        sample(
            &metrics,
            r#"bot_webhook_rejected_total{platform="line",reason="signature"}"#
        ),
        4.0
    );
    assert_eq!(
        sample(&metrics, r#"bot_events_received_total{platform="line"}"#),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_nothing_runs() {
    let counting = Counting::default();
    let h = Harness::start(counting.handler(), |b| b.max_body_bytes(16 * 1024)).await;
    let big = WebhookBuilder::new()
        .text("U1", &"x".repeat(20 * 1024))
        .sign(&secret());
    let response = post_raw(&h.url, Some(&big.signature), big.body.clone()).await;
    assert_eq!(response.status(), 413);
    // Just under the limit still goes through.
    let fits = WebhookBuilder::new()
        .text("U1", &"y".repeat(8 * 1024))
        .sign(&secret());
    assert_eq!(fits.post(&h.url).await.unwrap(), 200);
    h.bot.idle().await;
    assert_eq!(counting.count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn malformed_json_with_a_valid_signature_gets_400() {
    let counting = Counting::default();
    let h = Harness::start(counting.handler(), |b| b).await;
    for body in [
        &b"{\"destination\": \"U1\", \"events\": ["[..],
        b"[1,2,3]",
        b"{\"events\": 7}",
        b"",
    ] {
        let signature = bot_line::webhook::sign(&secret(), body);
        let response = post_raw(&h.url, Some(&signature), body.to_vec()).await;
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(body));
    }
    assert_eq!(
        sample(
            &h.metrics(),
            r#"bot_webhook_rejected_total{platform="line",reason="malformed_json"}"#
        ),
        4.0
    );
    assert_eq!(counting.count(), 0);
    h.stop().await;
}

#[tokio::test]
async fn the_consoles_verify_request_gets_200() {
    let h = Harness::start(echo, |b| b).await;
    assert_eq!(
        WebhookBuilder::new()
            .sign(&secret())
            .post(&h.url)
            .await
            .unwrap(),
        200
    );
    assert_eq!(h.fake.api().call_count(), 0);
    h.stop().await;
}

#[tokio::test]
async fn a_redelivered_event_is_handled_once() {
    let counting = Counting::default();
    let h = Harness::start(counting.handler(), |b| b).await;
    let event = text_event("Uredeliver", "only once");
    let first = WebhookBuilder::new().event(event.clone()).sign(&secret());
    assert_eq!(first.post(&h.url).await.unwrap(), 200);
    h.fake.wait_for_replies(1).await;

    // LINE sends it again, marked as a redelivery, with the same webhookEventId.
    let again = WebhookBuilder::new()
        .event(redelivered(event))
        .sign(&secret());
    assert_eq!(
        again.post(&h.url).await.unwrap(),
        200,
        "acknowledged, so LINE stops"
    );
    let next = WebhookBuilder::new()
        .text("Uredeliver", "next")
        .sign(&secret());
    assert_eq!(next.post(&h.url).await.unwrap(), 200);
    h.bot.idle().await;

    let replies = h.fake.wait_for_replies(2).await;
    let texts: Vec<String> = replies.iter().map(|r| r.texts().concat()).collect();
    assert_eq!(texts, ["only once", "next"]);
    assert_eq!(counting.count(), 2);
    assert_eq!(
        sample(
            &h.metrics(),
            r#"bot_events_dropped_total{reason="duplicate"}"#
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_keeps_nothing_of_the_batch() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let handler = move |cx: Context, event: Event| {
        let held = held.clone();
        async move {
            let _permit = held
                .acquire()
                .await
                .map_err(|e| Error::new(bot_core::ErrorKind::Other, e.to_string()))?;
            echo(cx, event).await
        }
    };
    let limits = Limits {
        max_in_flight: 1,
        queue_capacity: 4,
        overflow: Overflow::Reject,
        ..Limits::default()
    };
    let h = Harness::start(handler, |b| b.limits(limits)).await;
    let mut fill = WebhookBuilder::new();
    for i in 0..5 {
        fill = fill.text(&format!("Ufill{i}"), "fill");
    }
    // One runs (and blocks), four wait: the buffer is full.
    assert_eq!(fill.sign(&secret()).post(&h.url).await.unwrap(), 200);
    let overflow = WebhookBuilder::new()
        .text("Ulate1", "late")
        .text("Ulate2", "late")
        .sign(&secret());
    let response = post_raw(&h.url, Some(&overflow.signature), overflow.body.clone()).await;
    assert_eq!(response.status(), 503);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);

    gate.add_permits(100);
    h.bot.idle().await;
    let replies = h.fake.wait_for_replies(5).await;
    assert_eq!(replies.len(), 5, "the refused batch left nothing behind");
    assert!(replies.iter().all(|r| r.texts() == ["fill"]));
    // Redelivered by LINE later, the refused batch is welcome.
    assert_eq!(overflow.post(&h.url).await.unwrap(), 200);
    assert_eq!(h.fake.wait_for_replies(7).await.len(), 7);
    h.stop().await;
}

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

type Seen = Arc<std::sync::Mutex<Vec<(String, String)>>>;

fn recorder() -> (Seen, impl bot_core::Handler) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let handler = move |_cx: Context, event: Event| {
        let record = record.clone();
        async move {
            record
                .lock()
                .unwrap()
                .push((event.id.to_string(), event.kind.name().to_owned()));
            Ok::<_, Error>(())
        }
    };
    (seen, handler)
}

#[tokio::test]
async fn every_event_type_of_one_request_reaches_the_handler() {
    let names = [
        "message-text",
        "message-image",
        "message-video",
        "message-audio",
        "message-file",
        "message-location",
        "message-sticker",
        "message-edited",
        "unsend",
        "follow",
        "unfollow",
        "join",
        "leave",
        "member-joined",
        "member-left",
        "postback-datetime",
        "video-play-complete",
        "beacon",
        "account-link",
        "account-link-failed",
        "things-link",
        "membership",
        "module-attached",
        "activated",
        "deactivated",
        "bot-suspended",
        "bot-resumed",
        "delivery",
        "unknown-type",
    ];
    let (seen, handler) = recorder();
    let h = Harness::start(handler, |b| b).await;
    let mut webhook = WebhookBuilder::new();
    for name in names {
        webhook = webhook.event(fixture(name));
    }
    let expected_ids: BTreeSet<String> = webhook
        .events()
        .iter()
        .map(|e| e["webhookEventId"].as_str().unwrap().to_owned())
        .collect();
    // A standby event in the same request is acknowledged but not delivered.
    webhook = webhook.event(fixture("message-standby"));
    assert_eq!(webhook.sign(&secret()).post(&h.url).await.unwrap(), 200);
    h.bot.idle().await;
    let seen = seen.lock().unwrap().clone();
    let ids: BTreeSet<String> = seen.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, expected_ids);
    let kinds: BTreeSet<&str> = seen.iter().map(|(_, kind)| kind.as_str()).collect();
    for kind in [
        "message",
        "edited",
        "deleted",
        "followed",
        "unfollowed",
        "member_joined",
        "member_left",
        "postback",
        "beacon",
        "hologramCall",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(
        sample(
            &h.metrics(),
            r#"bot_events_skipped_total{platform="line",reason="standby"}"#
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn standby_events_are_delivered_when_asked_for() {
    let (seen, handler) = recorder();
    let h = Harness::start_with(handler, |line| line.deliver_standby(true), |b| b).await;
    let standby = fixture("message-standby");
    let id = standby["webhookEventId"].as_str().unwrap().to_owned();
    assert_eq!(
        WebhookBuilder::new()
            .event(standby)
            .sign(&secret())
            .post(&h.url)
            .await
            .unwrap(),
        200
    );
    h.bot.idle().await;
    assert_eq!(seen.lock().unwrap().clone(), [(id, "message".to_owned())]);
    h.stop().await;
}

#[tokio::test]
async fn each_channel_may_have_a_path_of_its_own_checked_with_its_secret_alone() {
    const FIRST: &str = "U0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
    const SECOND: &str = "U1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b";
    let second_secret = Secret::new("second-channel-secret");
    let channels = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let channels = channels.clone();
        move |_cx: Context, event: Event| {
            let channels = channels.clone();
            async move {
                let channel = event.channel.as_ref().map(|c| c.as_str().to_owned());
                channels.lock().unwrap().push(channel);
                Ok::<_, Error>(())
            }
        }
    };
    let h = Harness::start_with(
        handler,
        |line| {
            line.destination(FIRST).channel(bot_line::LineChannel::new(
                SECOND,
                second_secret.clone(),
                "second-token",
            ))
        },
        |b| b,
    )
    .await;
    let at_second = format!("{}/{SECOND}", h.url);
    let body = |destination: &str, text: &str| {
        WebhookBuilder::new()
            .destination(destination)
            .text("Ufriend", text)
    };

    // The second channel's own path: its secret is the one that counts.
    let signed = body(SECOND, "hello second").sign(&second_secret);
    assert_eq!(signed.post(&at_second).await.unwrap(), 200);
    // Signed with the first channel's secret: not this path's channel.
    let crossed = body(SECOND, "crossed").sign(&secret());
    assert_eq!(crossed.post(&at_second).await.unwrap(), 401);
    // A body of the first channel replayed to the second's path with the second's secret.
    let mislabelled = body(FIRST, "mislabelled").sign(&second_secret);
    assert_eq!(mislabelled.post(&at_second).await.unwrap(), 401);
    // A path that names no channel of this bot.
    let unknown = body("U9", "nobody").sign(&second_secret);
    let unknown_path = format!("{}/U9c9c9c9c9c9c9c9c9c9c9c9c9c9c9c9c", h.url);
    assert_eq!(unknown.post(&unknown_path).await.unwrap(), 404);
    // The shared path keeps serving both.
    let shared = body(FIRST, "hello first").sign(&secret());
    assert_eq!(shared.post(&h.url).await.unwrap(), 200);

    h.bot.idle().await;
    let mut seen = channels.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [Some(FIRST.to_owned()), Some(SECOND.to_owned())]);
    let metrics = h.metrics();
    assert_eq!(
        sample(
            &metrics,
            r#"bot_webhook_rejected_total{platform="line",reason="signature"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"bot_webhook_rejected_total{platform="line",reason="unknown_destination"}"#
        ),
        2.0
    );
    h.stop().await;
}
