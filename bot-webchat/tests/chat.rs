//! Conversations through a real `Bot`: echo, acks, every tab, resume, rich replies, slow readers,
//! and the backend API.

mod support;

use bot_core::outbound::{Button, Card, OutgoingMessage, QuickReply};
use bot_core::{Context, Error, Event, EventKind};
use bot_webchat::CloseReason;
use futures::StreamExt as _;
use serde_json::json;
use support::{Harness, echo, next, next_of, send};

#[tokio::test]
async fn a_message_is_acknowledged_then_echoed_by_the_handler() {
    let h = Harness::start(echo).await;
    let (mut ws, _) = h.join("alice", None).await;
    send(
        &mut ws,
        json!({"type": "message", "id": "c-1", "text": "hello"}),
    )
    .await;
    // The ack comes once the event is queued, before the handler's answer.
    assert_eq!(next(&mut ws).await, json!({"type": "ack", "id": "c-1"}));
    let reply = next(&mut ws).await;
    assert_eq!(reply["type"], "message");
    assert_eq!(reply["seq"], 1);
    assert_eq!(reply["message"], json!({"text": "hello"}));
}

#[tokio::test]
async fn a_message_sent_again_with_its_id_is_handled_once() {
    let h = Harness::start(echo).await;
    let (mut ws, _) = h.join("alice", None).await;
    let frame = json!({"type": "message", "id": "same", "text": "once"});
    send(&mut ws, frame.clone()).await;
    assert_eq!(next_of(&mut ws, "message").await["seq"], 1);
    // As the widget does after a reconnect when the ack was lost.
    send(&mut ws, frame).await;
    assert_eq!(next(&mut ws).await, json!({"type": "ack", "id": "same"}));
    send(
        &mut ws,
        json!({"type": "message", "id": "next", "text": "twice"}),
    )
    .await;
    let reply = next_of(&mut ws, "message").await;
    assert_eq!(
        (reply["seq"].clone(), reply["message"]["text"].clone()),
        (json!(2), json!("twice"))
    );
}

#[tokio::test]
async fn every_tab_of_the_user_gets_the_reply_and_other_users_do_not() {
    let h = Harness::start(echo).await;
    let (mut tab1, _) = h.join("alice", None).await;
    let (mut tab2, _) = h.join("alice", None).await;
    let (mut other, _) = h.join("bob", None).await;
    send(
        &mut tab1,
        json!({"type": "message", "id": "c-1", "text": "to both tabs"}),
    )
    .await;
    for tab in [&mut tab1, &mut tab2] {
        let reply = next_of(tab, "message").await;
        assert_eq!(reply["message"]["text"], "to both tabs");
        assert_eq!(reply["seq"], 1);
    }
    // Bob's next frame is his own echo, not Alice's.
    send(
        &mut other,
        json!({"type": "message", "id": "b-1", "text": "mine"}),
    )
    .await;
    assert_eq!(
        next_of(&mut other, "message").await["message"]["text"],
        "mine"
    );
}

#[tokio::test]
async fn a_reconnecting_tab_gets_what_it_missed_once() {
    let h = Harness::start(echo).await;
    let client = h.webchat.client().clone();
    let (mut ws, _) = h.join("alice", None).await;
    client.send_to("alice", &["one".into()]).await.unwrap();
    let seen = next(&mut ws).await["seq"].as_u64().unwrap();
    assert_eq!(seen, 1);
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    // Sent while the tab was away.
    client
        .send_to("alice", &["two".into(), "three".into()])
        .await
        .unwrap();
    let (mut back, welcome) = h.join("alice", Some(seen)).await;
    assert_eq!(
        (welcome["seq"].clone(), welcome["resumed"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(welcome["gap"], false);
    let missed = [next(&mut back).await, next(&mut back).await];
    assert_eq!(
        missed.map(|f| f["message"]["text"].clone()),
        [json!("two"), json!("three")]
    );
    // Then only new messages: nothing is sent twice.
    client.send_to("alice", &["four".into()]).await.unwrap();
    let frame = next(&mut back).await;
    assert_eq!(
        (frame["seq"].clone(), frame["message"]["text"].clone()),
        (json!(4), json!("four"))
    );
}

// ANCHOR: menu
async fn menu(cx: Context, event: Event) -> Result<(), Error> {
    match &event.kind {
        EventKind::Postback(p) => cx.reply(format!("you chose {}", p.data)).await,
        _ => {
            cx.reply(
                OutgoingMessage::card(
                    Card::new("Pizza").button(Button::postback("Order", "order=pizza")),
                )
                .with_text("What would you like?")
                .quick_reply(QuickReply::message("Menu"))
                .quick_reply(QuickReply::postback("Pasta", "order=pasta")),
            )
            .await
        }
    }
}
// ANCHOR_END: menu

#[tokio::test]
async fn rich_replies_render_and_a_tapped_postback_reaches_the_handler() {
    let h = Harness::start(menu).await;
    let (mut ws, _) = h.join("alice", None).await;
    send(
        &mut ws,
        json!({"type": "message", "id": "c-1", "text": "hi"}),
    )
    .await;
    let reply = next_of(&mut ws, "message").await;
    assert_eq!(reply["message"]["text"], "What would you like?");
    assert_eq!(
        reply["message"]["card"]["buttons"][0]["action"],
        json!({"type": "postback", "value": "order=pizza"})
    );
    let chip = &reply["message"]["quick_replies"][1];
    assert_eq!(chip["label"], "Pasta");
    send(
        &mut ws,
        json!({"type": "postback", "id": "c-2", "data": chip["action"]["value"]}),
    )
    .await;
    assert_eq!(next(&mut ws).await, json!({"type": "ack", "id": "c-2"}));
    assert_eq!(
        next(&mut ws).await["message"]["text"],
        "you chose order=pasta"
    );
}

#[tokio::test]
async fn a_slow_reader_is_disconnected_and_counted_while_its_other_tab_carries_on() {
    let h = Harness::start_with(echo, |w| w.max_outbound_bytes(64 * 1024), |b| b).await;
    let (_slow, _) = h.join("alice", None).await;
    let (mut reading, _) = h.join("alice", None).await;
    let client = h.webchat.client().clone();
    let big = OutgoingMessage::text("x".repeat(16 * 1024));
    // The slow tab reads nothing: once the kernel's buffers are full, its queue passes 64 KiB.
    // The reading tab keeps up.
    let mut sent = 0;
    while h.webchat.stats().closed_for(CloseReason::SlowReader) == 0 {
        assert!(
            sent < 10_000,
            "64 KiB waiting should close the slow tab well before 160 MB"
        );
        client
            .send_to("alice", std::slice::from_ref(&big))
            .await
            .unwrap();
        sent += 1;
        let frame = next(&mut reading).await;
        assert_eq!(frame["seq"], sent);
    }
    assert_eq!(client.sockets_of("alice"), 1, "only the slow tab is gone");
    assert_eq!(
        support::sample(
            &h.metrics(),
            r#"bot_webchat_closed_total{reason="slow_reader"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn the_backend_issues_tokens_and_sends_proactive_messages_with_the_secret_only() {
    let h = Harness::start(echo).await;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/webchat/api/{path}", h.base);
    let refused = http
        .post(api("tokens"))
        .bearer_auth("wrong")
        .json(&json!({"user": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let issued: serde_json::Value = http
        .post(api("tokens"))
        .bearer_auth(support::SECRET)
        .json(&json!({"user": "alice", "ttl_secs": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ws = h.connect().await;
    send(&mut ws, json!({"type": "join", "token": issued["token"]})).await;
    assert_eq!(next(&mut ws).await["user"], "alice");
    let sent: serde_json::Value = http
        .post(api("messages"))
        .bearer_auth(support::SECRET)
        .json(&json!({"user": "alice", "messages": [{"text": "your order shipped"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sent, json!({"seqs": [1], "sockets": 1}));
    assert_eq!(next(&mut ws).await["message"]["text"], "your order shipped");
    let malformed = http
        .post(api("messages"))
        .bearer_auth(support::SECRET)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let empty_user = http
        .post(api("messages"))
        .bearer_auth(support::SECRET)
        .json(&json!({"user": "", "messages": [{"text": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty_user.status(), 422);
}
