//! The Discord adapter's start-up warning, logged, and a quick reply answered without the
//! application id.
//!
//! Alone in its test binary: it reads the logs through a thread-local subscriber, and tracing
//! caches whether a log line is wanted per call site for the whole process, so another test
//! starting an adapter on another thread at the same moment could make the line skip it.
#![allow(clippy::disallowed_methods)] // the bot's server runs in one spawned task

use bot_core::{Bot, Context, Event, Router};
use bot_discord::testing::FakeDiscord;
use serde_json::json;

mod support;

const TOKEN: &str = "adapter-token";

/// A quick reply that says text, pressed on Discord, reaches a `.text_exact()` route as the
/// text it says (as it does on LINE and Messenger), and is answered over the gateway without the
/// application id, through the interaction's callback; the adapter says at start what that
/// configuration cannot do.
#[tokio::test]
async fn a_pressed_quick_reply_over_the_gateway_is_text_answered_without_an_application_id() {
    use bot_core::outbound::{OutgoingMessage, QuickReply};
    let fakes = FakeDiscord::start(TOKEN).await.unwrap();
    let discord = fakes.builder(TOKEN).build().unwrap();
    let FakeDiscord { gateway, api } = fakes;
    let warnings = discord.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("DISCORD_APPLICATION_ID"),
        "{warnings:?}"
    );
    // The warning is logged when the adapter starts, not only returned.
    let logs = support::Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let router = Router::new()
        .text_exact("book", |cx: Context, _e: Event| async move {
            cx.reply(OutgoingMessage::text("How many?").quick_reply(QuickReply::message("2")))
                .await
        })
        .text_exact("2", |cx: Context, _e: Event| async move {
            cx.reply("A table for two").await
        });
    let bot = Bot::builder()
        .adapter(discord)
        .handler(router)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    gateway.wait_for_readies(1).await;
    let logged = logs.text();
    let warned = logged
        .lines()
        .find(|line| line.contains(&warnings[0]))
        .unwrap_or_else(|| panic!("the warning was not logged: {logged}"));
    assert!(warned.contains("WARN"), "{warned}");
    assert_eq!(logged.matches(&warnings[0]).count(), 1, "{logged}");
    gateway
        .dispatch(
            "MESSAGE_CREATE",
            json!({"id": "1180000000000000001", "channel_id": "100",
            "author": {"id": "7000", "username": "someone"}, "content": "book"}),
        )
        .await;
    let calls = api.api().wait_for_calls(2).await;
    let asked = calls.last().unwrap().request.json();
    assert_eq!(asked["content"], "How many?");
    let custom_id = asked["components"][0]["components"][0]["custom_id"]
        .as_str()
        .unwrap()
        .to_owned();
    gateway
        .dispatch(
            "INTERACTION_CREATE",
            json!({"id": "1180000000000000002", "type": 3,
            "token": "press-token", "channel_id": "100", "application_id": "1100000000000000001",
            "member": {"user": {"id": "7000"}},
            "data": {"custom_id": custom_id, "component_type": 2}}),
        )
        .await;
    let calls = api.api().wait_for_calls(3).await;
    let answer = calls.last().unwrap();
    assert_eq!(
        answer.request.path,
        "/interactions/1180000000000000002/press-token/callback"
    );
    assert_eq!(answer.request.json()["data"]["content"], "A table for two");
    bot.idle().await;
    assert!(bot.dead_letters(10).await.unwrap().is_empty());
    bot.request_shutdown();
    server.await.unwrap().unwrap();
}
