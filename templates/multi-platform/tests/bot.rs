//! The bot end to end, offline: signed LINE and Messenger webhooks and a Discord gateway message
//! in, replies out to fake APIs, the same handlers answering all three. One more test runs the
//! bot on the durable PostgreSQL queue, as `main` does; it needs a database, so it is ignored
//! unless asked for: `DATABASE_URL=postgres://… cargo test -- --include-ignored`.

use std::time::Duration;

use bot_core::pg::PgPool;
use bot_core::{Bot, Limits, Secret};
use bot_discord::gateway::ShardRange;
use bot_discord::testing::{FakeDiscordApi, FakeGateway, WAIT};
use bot_discord::{ConfigureApi as _, Discord};
use bot_line::Line;
use bot_line::testing::{FakeLine, WebhookBuilder as LineWebhook};
use bot_messenger::Messenger;
use bot_messenger::testing::{FakeMessenger, WebhookBuilder as MessengerWebhook};
use serde_json::json;

type Server = tokio::task::JoinHandle<Result<bot_core::ShutdownReport, bot_core::Error>>;

/// Serves `bot` on 127.0.0.1 until it is asked to shut down; its base URL.
async fn serve(bot: &Bot) -> anyhow::Result<(String, Server)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    Ok((base, server))
}

#[tokio::test]
async fn one_router_answers_line_messenger_and_discord() -> anyhow::Result<()> {
    let fake_line = FakeLine::start("line-token").await?;
    let fake_graph = FakeMessenger::start("page-token").await?;
    let gateway = FakeGateway::start("discord-token").await?;
    let fake_discord = FakeDiscordApi::start("discord-token", &gateway.url(), 1, 1).await?;
    let line = Line::builder("line-secret", "line-token")
        .api_base(fake_line.url())
        .build()?;
    let messenger = Messenger::builder("app-secret", "verify-token", "page-token")
        .api_base(fake_graph.url())
        .build()?;
    let discord = Discord::builder("discord-token")
        .api_base(fake_discord.url())
        .shards(ShardRange::Count(1))
        .build()?;
    let bot = {{crate_name}}::builder()
        .adapter(line)
        .adapter(messenger)
        .adapter(discord)
        .build()?;
    let (base, server) = serve(&bot).await?;

    let line_hello = LineWebhook::new()
        .text("U1", "hello")
        .sign(&Secret::new("line-secret"));
    assert_eq!(line_hello.post(&format!("{base}/line/webhook")).await?, 200);
    assert_eq!(fake_line.wait_for_replies(1).await[0].texts(), ["hello"]);

    let help = MessengerWebhook::new()
        .text("psid-1", "/help")
        .sign(&Secret::new("app-secret"));
    assert_eq!(help.post(&format!("{base}/messenger/webhook")).await?, 200);
    let sent = fake_graph.wait_for_messages(1).await;
    assert_eq!(
        sent[0].text(),
        Some("Send me any text on messenger and I will say it back.")
    );

    gateway.wait_for_readies(1).await;
    let mut said = fake_discord.message_feed(8);
    gateway
        .dispatch(
            "MESSAGE_CREATE",
            json!({"id": "1180000000000000001", "channel_id": "100", "guild_id": "1",
                "author": {"id": "7001", "username": "someone"}, "content": "hi there"}),
        )
        .await;
    let message = tokio::time::timeout(WAIT, said.recv())
        .await?
        .expect("the echo is sent");
    assert_eq!(
        (message.channel.as_str(), message.content.as_str()),
        ("100", "hi there")
    );

    bot.request_shutdown();
    server.await??;
    Ok(())
}

#[tokio::test]
#[ignore = "needs PostgreSQL: DATABASE_URL=postgres://… cargo test -- --include-ignored"]
async fn events_wait_in_the_durable_queue_and_each_is_answered_once() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("this test needs DATABASE_URL (a PostgreSQL database)"))?;
    // A schema of its own, made by the migration, dropped at the end.
    let schema = format!("bot_test_{}", std::process::id());
    let pool = PgPool::builder(&url)
        .schema(&schema)
        .create_timeout(Duration::from_secs(5))
        .build()?;
    let fake_line = FakeLine::start("line-token").await?;
    let line = Line::builder("line-secret", "line-token")
        .api_base(fake_line.url())
        .build()?;
    let builder = {{crate_name}}::builder().adapter(line);
    let (bot, queue) = {{crate_name}}::durable(builder, pool.clone(), Limits::default()).await?;
    let (base, server) = serve(&bot).await?;

    // A 200 means the events are committed to the queue; then the handlers answer each.
    let webhook = LineWebhook::new()
        .text("U1", "one")
        .text("U1", "two")
        .text("U2", "three")
        .sign(&Secret::new("line-secret"));
    assert_eq!(webhook.post(&format!("{base}/line/webhook")).await?, 200);
    // The platform delivers the same webhook again (it does after a time-out): nothing twice.
    assert_eq!(webhook.post(&format!("{base}/line/webhook")).await?, 200);
    let mut texts: Vec<String> = fake_line
        .wait_for_replies(3)
        .await
        .iter()
        .flat_map(|reply| reply.texts())
        .map(str::to_owned)
        .collect();
    texts.sort();
    assert_eq!(texts, ["one", "three", "two"]);

    bot.request_shutdown();
    server.await??;
    queue.shutdown().await;
    let stats = queue.stats().await?;
    assert_eq!(
        (stats.ready, stats.retrying, stats.leased, stats.dead),
        (0, 0, 0, 0),
        "every event acknowledged"
    );
    assert_eq!(fake_line.replies().len(), 3, "no event answered twice");
    pool.get()
        .await?
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await?;
    Ok(())
}
