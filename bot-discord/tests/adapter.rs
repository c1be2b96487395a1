//! The Discord adapter end to end: gateway in, REST out, through a real bot.
#![allow(clippy::disallowed_methods)] // the bot's server runs in one spawned task

use std::collections::BTreeMap;

use bot_core::{Bot, Context, Error, Event, Router};
use bot_discord::ConfigureApi as _;
use bot_discord::Discord;
use bot_discord::gateway::ShardRange;
use bot_discord::testing::{BOT_USER_ID, FakeDiscord, FakeDiscordApi, FakeGateway};
use serde_json::json;

mod support;

const TOKEN: &str = "adapter-token";

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}

// ANCHOR: e2e
#[tokio::test]
async fn a_thousand_gateway_messages_get_a_thousand_rest_echoes_and_bots_get_none() {
    let fakes = FakeDiscord::start(TOKEN).await.unwrap();
    let discord = fakes
        .builder(TOKEN)
        // The fake answers at once; the default 50 requests/s would make this test 20 s long.
        .http(|h| h.global_per_second(100_000))
        .build()
        .unwrap();
    let FakeDiscord { gateway, api } = fakes;
    let bot = Bot::builder()
        .adapter(discord)
        .handler(Router::new().text(echo))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );

    gateway.wait_for_readies(1).await;
    assert_eq!(
        api.api().calls_to("/gateway/bot").len(),
        1,
        "the gateway URL came from GET /gateway/bot"
    );
    for i in 0..1000_u64 {
        let channel = format!("{}", 100 + i % 20);
        let author = json!({"id": format!("{}", 7000 + i % 50), "username": "someone"});
        gateway
            .dispatch("MESSAGE_CREATE", json!({"id": format!("{}", 1_180_000_000_000_000_000_u64 + i),
                "channel_id": channel, "guild_id": "1", "author": author, "content": format!("hello {i}")}))
            .await;
        if i % 10 == 0 {
            // Another bot, and the bot itself: never answered.
            gateway
                .dispatch(
                    "MESSAGE_CREATE",
                    json!({"id": format!("{}", 1_190_000_000_000_000_000_u64 + i),
                    "channel_id": channel, "author": {"id": "42", "bot": true}, "content": "beep"}),
                )
                .await;
            gateway
                .dispatch("MESSAGE_CREATE", json!({"id": format!("{}", 1_195_000_000_000_000_000_u64 + i),
                    "channel_id": channel, "author": {"id": BOT_USER_ID}, "content": format!("hello {i}")}))
                .await;
        }
    }
    let calls = api.api().wait_for_calls(1 + 1000).await;
    bot.idle().await;
    let echoes: Vec<_> = api
        .api()
        .calls()
        .into_iter()
        .filter(|c| c.request.path.starts_with("/channels/"))
        .collect();
    assert_eq!(
        echoes.len(),
        1000,
        "one echo per user message, none for bots"
    );
    let mut per_channel: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in &echoes {
        assert_eq!(
            call.request.header("authorization"),
            Some(format!("Bot {TOKEN}").as_str())
        );
        let channel = call
            .request
            .path
            .trim_start_matches("/channels/")
            .trim_end_matches("/messages")
            .to_owned();
        per_channel
            .entry(channel)
            .or_default()
            .push(call.request.json()["content"].as_str().unwrap().to_owned());
    }
    assert_eq!(per_channel.len(), 20);
    for (channel, texts) in &per_channel {
        let n: u64 = channel.parse::<u64>().unwrap() - 100;
        let expected: Vec<String> = (0..50).map(|k| format!("hello {}", n + 20 * k)).collect();
        assert_eq!(
            texts, &expected,
            "channel {channel}: every message echoed once, in order"
        );
    }
    assert!(!calls.iter().any(|c| c.request.json()["content"] == "beep"));
    // The REST client records in the bot's telemetry (given to it by `Adapter::attach`).
    let metrics = bot.telemetry().render_prometheus();
    let echoes_recorded = metrics.lines().any(|line| {
        line.starts_with("http_client_request_duration_seconds_count{")
            && line.contains(r#"bot_endpoint="create_message""#)
            && line.contains(r#"platform="discord""#)
            && line.ends_with(" 1000")
    });
    assert!(echoes_recorded, "{metrics}");
    bot.request_shutdown();
    server.await.unwrap().unwrap();
}
// ANCHOR_END: e2e

#[tokio::test]
async fn a_gateway_that_refuses_the_token_leaves_the_bot_not_ready_naming_it() {
    // REST takes the token, the gateway closes with 4004: the shards stop for good.
    let gateway = FakeGateway::start("another-token").await.unwrap();
    let api = FakeDiscordApi::start(TOKEN, &gateway.url(), 1, 1)
        .await
        .unwrap();
    let discord = Discord::builder(TOKEN)
        .api_base(api.url())
        .shards(ShardRange::Count(1))
        .build()
        .unwrap();
    let bot = Bot::builder()
        .adapter(discord)
        .handler(Router::new().text(echo))
        .build()
        .unwrap();
    bot.start();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while bot.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready after the gateway refused the token"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let reasons = bot.ingress().readiness().not_ready();
    assert!(
        reasons
            .iter()
            .any(|(c, r)| c == "discord gateway" && r.contains("4004")),
        "{reasons:?}"
    );
    assert_eq!(gateway.connections().len(), 1, "no reconnect loop");
    bot.shutdown().await;
}
