//! The socket's rules: joins with good, bad and expired tokens, malformed and oversized frames,
//! time-outs; each refusal closes that socket only, with its code, and is counted.

mod support;

use std::time::Duration;

use bot_webchat::{CloseReason, WebChatConfig};
use futures::SinkExt as _;
use serde_json::json;
use support::{Harness, close_code, echo, next, next_of, sample, send};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_signed_token_joins_and_the_welcome_says_who_and_how_often() {
    let h = Harness::start(echo).await;
    let (_ws, welcome) = h.join("alice", None).await;
    assert_eq!(welcome["user"], "alice");
    assert_eq!(welcome["v"], 1);
    assert_eq!(welcome["seq"], 0);
    assert_eq!(welcome["heartbeat_ms"], 20_000);
    assert_eq!(welcome["resumed"], 0);
    assert_eq!(h.webchat.client().sockets_of("alice"), 1);
    assert_eq!(h.webchat.stats().joined, 1);
}

#[tokio::test]
async fn bad_expired_and_missing_joins_are_closed_with_their_codes() {
    let h = Harness::start(echo).await;
    let other_secret = bot_webchat::token::issue(
        &bot_core::Secret::new("another secret"),
        "mallory",
        Duration::from_secs(60),
    )
    .unwrap();
    let expired =
        bot_webchat::token::issue_until(&bot_core::Secret::new(support::SECRET), "bob", 1).unwrap();
    let cases = [
        (
            json!({"type": "join", "token": other_secret}),
            CloseReason::BadToken,
        ),
        (
            json!({"type": "join", "token": "not-a-token"}),
            CloseReason::BadToken,
        ),
        (
            json!({"type": "join", "token": expired}),
            CloseReason::TokenExpired,
        ),
        (
            json!({"type": "message", "text": "hi"}),
            CloseReason::JoinRequired,
        ),
        (
            json!({"type": "join", "v": 2, "token": h.token("carol")}),
            CloseReason::UnsupportedVersion,
        ),
    ];
    for (frame, reason) in cases {
        let mut ws = h.connect().await;
        send(&mut ws, frame.clone()).await;
        assert_eq!(close_code(&mut ws).await, reason.code(), "{frame}");
    }
    let stats = h.webchat.stats();
    assert_eq!(stats.closed_for(CloseReason::BadToken), 2);
    assert_eq!(stats.closed_for(CloseReason::TokenExpired), 1);
    assert_eq!(stats.joined, 0);
    assert_eq!(
        sample(
            &h.metrics(),
            r#"bot_webchat_closed_total{reason="bad_token"}"#
        ),
        2.0
    );
}

#[tokio::test]
async fn malformed_binary_and_oversized_frames_close_that_socket_only() {
    let h = Harness::start_with(echo, |w| w.max_frame_bytes(1024), |b| b).await;
    let (mut bystander, _) = h.join("bystander", None).await;
    let cases: [(Message, CloseReason); 4] = [
        (Message::text("{not json"), CloseReason::MalformedFrame),
        (
            Message::text(r#"{"type":"message"}"#),
            CloseReason::MalformedFrame,
        ),
        (Message::binary(vec![1, 2, 3]), CloseReason::MalformedFrame),
        (
            Message::text(json!({"type": "message", "text": "x".repeat(4096)}).to_string()),
            CloseReason::FrameTooLarge,
        ),
    ];
    for (frame, reason) in cases {
        let (mut ws, _) = h.join("sender", None).await;
        ws.send(frame).await.unwrap();
        assert_eq!(close_code(&mut ws).await, reason.code(), "{reason:?}");
    }
    // The other socket, and the process, carry on.
    send(
        &mut bystander,
        json!({"type": "message", "id": "m1", "text": "still here"}),
    )
    .await;
    assert_eq!(
        next_of(&mut bystander, "message").await["message"]["text"],
        "still here"
    );
    let stats = h.webchat.stats();
    assert_eq!(stats.closed_for(CloseReason::MalformedFrame), 3);
    assert_eq!(stats.closed_for(CloseReason::FrameTooLarge), 1);
}

#[tokio::test]
async fn heartbeats_are_answered_and_silence_is_closed_by_the_sweeper() {
    let config = WebChatConfig {
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_millis(300),
        join_timeout: Duration::from_millis(300),
        sweep_interval: Duration::from_millis(50),
        ..WebChatConfig::default()
    };
    let h = Harness::start_with(echo, |w| w.config(config), |b| b).await;
    let (mut ws, welcome) = h.join("quiet", None).await;
    assert_eq!(welcome["heartbeat_ms"], 100);
    send(&mut ws, json!({"type": "heartbeat"})).await;
    assert_eq!(next(&mut ws).await, json!({"type": "heartbeat"}));
    // Then silence: the sweeper closes it, and a socket that never joins.
    let mut unjoined = h.connect().await;
    assert_eq!(
        close_code(&mut ws).await,
        CloseReason::HeartbeatTimeout.code()
    );
    assert_eq!(
        close_code(&mut unjoined).await,
        CloseReason::JoinRequired.code()
    );
    let stats = h.webchat.stats();
    assert_eq!(stats.closed_for(CloseReason::HeartbeatTimeout), 1);
    assert_eq!(stats.closed_for(CloseReason::JoinRequired), 1);
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_going_away() {
    let h = Harness::start(echo).await;
    let (mut ws, _) = h.join("leaving", None).await;
    let bot = h.bot.clone();
    bot.request_shutdown();
    assert_eq!(close_code(&mut ws).await, CloseReason::GoingAway.code());
    h.stop().await;
}

#[tokio::test]
async fn a_plain_get_is_not_an_upgrade() {
    let h = Harness::start(echo).await;
    let url = format!("{}/webchat/ws", h.base);
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn web_chat_can_serve_on_an_address_of_its_own() {
    let own: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let h = Harness::start_with(echo, |w| w.listen(own), |b| b).await;
    let addr = loop {
        match h.webchat.own_addr() {
            Some(addr) => break addr,
            None => tokio::task::yield_now().await,
        }
    };
    // Not on the bot's server any more.
    assert_eq!(
        reqwest::get(format!("{}/webchat/widget.js", h.base))
            .await
            .unwrap()
            .status(),
        404
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/webchat/ws"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join", "token": h.token("own")})).await;
    assert_eq!(next(&mut ws).await["user"], "own");
    send(
        &mut ws,
        json!({"type": "message", "id": "m", "text": "here too"}),
    )
    .await;
    assert_eq!(
        next_of(&mut ws, "message").await["message"]["text"],
        "here too"
    );
}
