//! With every platform enabled and every target logging at TRACE (hyper, h2, reqwest, rustls,
//! tungstenite, tokio_postgres included), real traffic through the fakes leaves no secret in the
//! logs: no channel secret, access token, app secret, verify token, page token, bot token, reply
//! token, interaction token or database password.
//!
//! Needs PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`); fails,
//! never skips, without it.
#![allow(clippy::disallowed_methods)] // the server under test runs in one spawned task

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::pg::{self, PgPool, PgQueue};
use bot_core::{Bot, Context, Error, Event, EventKind, Router, Secret};
use bot_discord::ConfigureApi as _;
use bot_discord::Discord;
use bot_discord::gateway::ShardRange;
use bot_discord::testing::{
    APPLICATION_ID, FakeDiscordApi, FakeGateway, InteractionSigner, slash_command,
};
use bot_line::Line;
use bot_line::testing::{FakeLine, WebhookBuilder as LineWebhook};
use bot_messenger::Messenger;
use bot_messenger::testing::{
    FakeMessenger, WebhookBuilder as MessengerWebhook, verify_subscription,
};
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

const LINE_SECRET: &str = "line-channel-secret-4f1c9a";
const LINE_TOKEN: &str = "line-access-token-8b2e7d";
const APP_SECRET: &str = "messenger-app-secret-1d9f3a";
const VERIFY_TOKEN: &str = "messenger-verify-token-6c0b2e";
const PAGE_TOKEN: &str = "messenger-page-token-a7e44f";
const DISCORD_TOKEN: &str = "discord-bot-token-93be1c";
const DB_PASSWORD: &str = "pg-password-5e8d21";

/// Every line any target logs, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}

async fn command(cx: Context, event: Event) -> Result<(), Error> {
    let EventKind::Command(command) = &event.kind else {
        return Ok(());
    };
    if command.name == "slow" {
        // Past Discord's 3 seconds: the answer becomes a follow-up, `POST /webhooks/{app}/{token}`.
        tokio::time::sleep(Duration::from_millis(3_300)).await;
    }
    cx.reply("answered").await
}

/// A role with a password and a schema of its own, for a database URL carrying the password.
async fn database_url_with_password() -> String {
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let admin = PgPool::builder(&admin_url).max_size(1).build().unwrap();
    let conn = admin.get().await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {admin_url} ({e}); start it or set DATABASE_URL")
    });
    let role = "botrt_no_secrets";
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {role} CASCADE;
         DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
             CREATE ROLE {role} LOGIN;
           END IF;
         END $$;
         ALTER ROLE {role} PASSWORD '{DB_PASSWORD}';
         GRANT CREATE, CONNECT ON DATABASE {db} TO {role};
         CREATE SCHEMA {role} AUTHORIZATION {role};",
        db = conn
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
    ))
    .await
    .expect("create the role and its schema");
    // The same server and database, as the new role, with its password in the URL.
    let rest = admin_url
        .split_once('@')
        .map(|(_, rest)| rest.to_owned())
        .expect("DATABASE_URL names a user: postgres://user@host/db");
    format!("postgres://{role}:{DB_PASSWORD}@{rest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_at_trace_level() {
    // The role is made before logging starts: its `ALTER ROLE ... PASSWORD` is the test's own.
    let url = database_url_with_password().await;

    let captured = Captured::default();
    let writer = captured.clone();
    // RUST_LOG=trace as a bot binary's `Logging` installs it, caps included: every target at
    // TRACE; `log` records (reqwest, tungstenite, tokio_postgres) come along.
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("trace"))
        .with(bot_core::telemetry::secret_safe_caps())
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        )
        .try_init()
        .expect("the only subscriber of this test binary");

    // PostgreSQL queue, reached with a password in the URL.
    let pool = PgPool::builder(&url)
        .schema("botrt_no_secrets")
        .build()
        .unwrap();
    tracing::debug!(?pool, builder = ?PgPool::builder(&url), "pool");
    pg::migrate(&pool).await.expect("migrate as the new role");
    let queue = Arc::new(
        PgQueue::builder(&pool)
            .poll_interval(Duration::from_millis(50))
            .build()
            .unwrap(),
    );

    // LINE, Messenger, and Discord (gateway, interactions and REST), each against its fake.
    let line_api = FakeLine::start(LINE_TOKEN).await.unwrap();
    let graph = FakeMessenger::start(PAGE_TOKEN).await.unwrap();
    let gateway = FakeGateway::start(DISCORD_TOKEN).await.unwrap();
    let discord_api = FakeDiscordApi::start(DISCORD_TOKEN, &gateway.url(), 1, 1)
        .await
        .unwrap();
    let signer = InteractionSigner::new([7; 32]);
    let line = Line::builder(LINE_SECRET, LINE_TOKEN)
        .api_base(line_api.url())
        .build()
        .unwrap();
    let messenger = Messenger::builder(APP_SECRET, VERIFY_TOKEN, PAGE_TOKEN)
        .api_base(graph.url())
        .build()
        .unwrap();
    let discord = Discord::builder(DISCORD_TOKEN)
        .api_base(discord_api.url())
        .application_id(APPLICATION_ID)
        .public_key(
            bot_discord::interactions::PublicKey::from_hex(&signer.public_key_hex()).unwrap(),
        )
        .shards(ShardRange::Count(1))
        .build()
        .unwrap();
    let bot = Bot::builder()
        .adapter(line)
        .adapter(messenger)
        .adapter(discord)
        .queue(queue.clone())
        .database(pool.clone())
        .handler(
            Router::new()
                .text(echo)
                .command("echo", command)
                .command("slow", command),
        )
        .build()
        .unwrap();
    tracing::debug!(?bot, "bot");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    gateway.wait_for_readies(1).await;

    let mut tokens: Vec<String> = Vec::new();

    // LINE: three messages with reply tokens, answered with them; one forged signature.
    let webhook = LineWebhook::new()
        .text("U1", "line one")
        .text("U1", "line two")
        .text("U2", "line three");
    tokens.extend(
        webhook
            .events()
            .iter()
            .filter_map(|e| e["replyToken"].as_str().map(str::to_owned)),
    );
    let line_url = format!("{base}/line/webhook");
    assert_eq!(
        webhook
            .sign(&Secret::new(LINE_SECRET))
            .post(&line_url)
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        webhook
            .sign(&Secret::new("forged"))
            .post(&line_url)
            .await
            .unwrap(),
        401
    );
    line_api.wait_for_replies(3).await;

    // Messenger: the subscription handshake (right and wrong token), then a message.
    let messenger_url = format!("{base}/messenger/webhook");
    assert_eq!(
        verify_subscription(&messenger_url, VERIFY_TOKEN, "challenge-1")
            .await
            .unwrap(),
        (200, "challenge-1".to_owned())
    );
    assert_eq!(
        verify_subscription(&messenger_url, "guess", "challenge-2")
            .await
            .unwrap()
            .0,
        403
    );
    let webhook = MessengerWebhook::new()
        .entry()
        .text("PSID1", "messenger one");
    assert_eq!(
        webhook
            .sign(&Secret::new(APP_SECRET))
            .post(&messenger_url)
            .await
            .unwrap(),
        200
    );
    graph.wait_for_messages(1).await;

    // Discord gateway: a message, echoed over REST with the bot token.
    gateway
        .dispatch(
            "MESSAGE_CREATE",
            json!({"id": "1180000000000000001", "channel_id": "100", "guild_id": "1",
                   "author": {"id": "7000", "username": "someone"}, "content": "discord one"}),
        )
        .await;
    discord_api
        .api()
        .wait_until("the gateway message's echo", |api| {
            (!api.calls_to("/channels/100/messages").is_empty()).then_some(())
        })
        .await;

    // Discord interactions: one answered in time, one by a follow-up.
    let interactions_url = format!("{base}/discord/interactions");
    for name in ["echo", "slow"] {
        let interaction: Value = slash_command(name, json!([]), "100", "7000");
        tokens.push(interaction["token"].as_str().unwrap().to_owned());
        let response = signer.post(&interactions_url, &interaction).await.unwrap();
        assert!(
            response.status().is_success(),
            "{name}: {}",
            response.status()
        );
    }
    discord_api
        .api()
        .wait_until("the slow command's follow-up", |api| {
            api.calls()
                .iter()
                .any(|c| c.request.path.starts_with("/webhooks/"))
                .then_some(())
        })
        .await;
    bot.idle().await;
    let _ = bot.telemetry().render_prometheus();

    bot.request_shutdown();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the bot stops")
        .unwrap()
        .unwrap();
    queue.shutdown().await;

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    // The capture really holds the dependencies' trace output, not just the bot's lines.
    for target in ["hyper", "reqwest", "tokio_postgres", "bot_core"] {
        assert!(logs.contains(target), "no {target} lines were captured");
    }
    let mut secrets: Vec<(&str, String)> = vec![
        ("LINE channel secret", LINE_SECRET.to_owned()),
        ("LINE access token", LINE_TOKEN.to_owned()),
        ("Messenger app secret", APP_SECRET.to_owned()),
        ("Messenger verify token", VERIFY_TOKEN.to_owned()),
        ("Messenger page token", PAGE_TOKEN.to_owned()),
        ("Discord bot token", DISCORD_TOKEN.to_owned()),
        ("database password", DB_PASSWORD.to_owned()),
    ];
    secrets.extend(
        tokens
            .into_iter()
            .map(|t| ("reply or interaction token", t)),
    );
    let leaks: Vec<String> = secrets
        .iter()
        .filter_map(|(what, secret)| {
            let lines: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains(secret.as_str()))
                .collect();
            (!lines.is_empty()).then(|| format!("{what} {secret:?} in:\n  {}", lines.join("\n  ")))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "{} secrets leaked into {} log lines:\n{}",
        leaks.len(),
        logs.lines().count(),
        leaks.join("\n")
    );
}
