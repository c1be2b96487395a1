//! Run with: cargo run --release -p echo-bot
//!
//! Answers every text message with the same text, on every platform whose variables are set, on
//! `BOT_ADDR` (default `127.0.0.1:8080`):
//!
//! | platform | variables | webhook |
//! | --- | --- | --- |
//! | LINE | `LINE_CHANNEL_SECRET`, `LINE_CHANNEL_ACCESS_TOKEN`, `LINE_API_BASE` (optional) | `POST /line/webhook` |
//! | Messenger | `MESSENGER_APP_SECRET`, `MESSENGER_VERIFY_TOKEN`, `MESSENGER_PAGE_ACCESS_TOKEN`, `MESSENGER_API_BASE` (optional) | `GET`+`POST /messenger/webhook` |
//! | Web chat | `WEBCHAT_SECRET` (signs user tokens, authorises the backend API), `WEBCHAT_PATH` and `WEBCHAT_ADDR` (optional; with `DATABASE_URL`, the processes share replies and presence) | `GET /webchat/ws`, `POST /webchat/api/{tokens,messages}`, `GET /webchat/widget.js` |
//! | Discord | `DISCORD_TOKEN`; `DISCORD_APPLICATION_ID` and `DISCORD_PUBLIC_KEY` for slash commands over HTTP; optional `DISCORD_API_BASE`, `DISCORD_GATEWAY_URL`, `DISCORD_INTENTS`, `DISCORD_SHARDS`, `DISCORD_GLOBAL_PER_SECOND`, `DISCORD_DEV_GUILD_ID` | the gateway, and `POST /discord/interactions` (`/discord/interactions/<application id>`) |
//!
//! Several LINE channels, Messenger pages and Discord applications in one process: give the first
//! one's id (`LINE_DESTINATION`, its bot user id; `MESSENGER_PAGE_ID`; `DISCORD_APPLICATION_ID`),
//! then number the others from 2: `LINE_CHANNEL_2_DESTINATION`, `LINE_CHANNEL_2_SECRET`,
//! `LINE_CHANNEL_2_ACCESS_TOKEN`; `MESSENGER_PAGE_2_ID`, `MESSENGER_PAGE_2_ACCESS_TOKEN`;
//! `DISCORD_APPLICATION_2_ID`, `DISCORD_APPLICATION_2_TOKEN`, `DISCORD_APPLICATION_2_PUBLIC_KEY`.
//! Each event is answered through its own channel's token (`tests/channels.rs`).
//!
//! On Discord, a message in a channel gets its text back, and the slash command `/echo text:<t>`
//! answers `<t>`. echo-bot registers the command with every application whose id it knows:
//! in the guild `DISCORD_DEV_GUILD_ID` names when set (seen at once, while developing),
//! globally otherwise (`tests/discord_commands.rs`).
//!
//! Beside the webhooks it serves `/healthz`, `/readyz` and `/metrics` (on `BOT_OPS_ADDR` instead,
//! when set, e.g. `127.0.0.1:9090`: keep metrics off the public webhook port), and shuts down
//! gracefully on SIGTERM or ctrl-c. With `DATABASE_URL` set it queues events in PostgreSQL, so several echo-bot
//! processes on different `BOT_ADDR`s share one database's work (set `BOT_PROCESSES` to their
//! number and it warns at startup when their pools exceed `max_connections`); without it, in
//! memory.
//!
//! A variable set wrong stops it at once with one line naming the variable: a platform half
//! configured (`LINE_CHANNEL_SECRET` without `LINE_CHANNEL_ACCESS_TOKEN`), a misspelt name
//! (`LINE_CHANEL_SECRET`), a `BOT_ADDR`, `BOT_PROCESSES` or `BOT_LOG_FORMAT` (`text` or `json`)
//! that does not parse (`tests/config_errors.rs`).
//!
//! With no platform variables it runs a demo instead: a fake LINE API and a fake Graph API start on
//! 127.0.0.1, the bot answers through them, and every line you type is posted to the bot as a
//! signed LINE webhook and a signed Messenger webhook over HTTP; the replies the fakes receive are
//! printed. Web chat is served too, with a demo page whose URL is printed: open it in a browser.

use std::net::SocketAddr;
use std::sync::Arc;

use bot_core::env::ADDR_ENV;
use bot_core::pg::{self, PgPool, PgQueue};
use bot_core::telemetry::Logging;
use bot_core::{Bot, BotBuilder, Context, Error, Event, EventKind, Limits, Router, Secret};
use bot_discord::http::{CommandOptionSpec, CommandSpec};
use bot_discord::{Discord, DiscordBuilder};
use bot_line::ConfigureApi as _;
use bot_line::Line;
use bot_line::testing::{FakeLine, WebhookBuilder};
use bot_messenger::Messenger;
use bot_messenger::testing as messenger_testing;
use bot_webchat::WebChat;
use bot_webchat::pg::PgCluster;
use tokio::io::AsyncBufReadExt as _;

/// The address served when `BOT_ADDR` is not set: 127.0.0.1:8080.
const DEFAULT_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);
/// The demo's channel secret and access token (the fake LINE API knows them).
const DEMO_SECRET: &str = "demo-channel-secret";
const DEMO_TOKEN: &str = "demo-access-token";
/// The demo's Messenger app secret, verify token and page token (the fake Graph API knows the
/// page token).
const DEMO_APP_SECRET: &str = "demo-app-secret";
const DEMO_VERIFY_TOKEN: &str = "demo-verify-token";
const DEMO_PAGE_TOKEN: &str = "demo-page-token";

// ANCHOR: handler
async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}

/// `/echo text:<t>` as a slash command, or `/echo <t>` typed as text.
async fn echo_command(cx: Context, event: Event) -> Result<(), Error> {
    let text = match &event.kind {
        EventKind::Command(command) => command
            .options
            .get("text")
            .and_then(|t| t.as_str())
            .map(str::to_owned),
        _ => event
            .text_content()
            .and_then(|t| t.split_once(' '))
            .map(|(_, rest)| rest.to_owned()),
    };
    cx.reply(text.unwrap_or_else(|| "usage: /echo text:<something>".to_owned()))
        .await
}
// ANCHOR_END: handler

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _logging = Logging::new().stderr().default_level("info").init()?;
    // Every setting is checked before anything starts: a mistake is one plain line on stderr.
    let addr: SocketAddr =
        bot_core::env::parse_or(ADDR_ENV, "an address such as 127.0.0.1:8080", || {
            DEFAULT_ADDR.into()
        })?;
    let processes = bot_core::env::processes()?;

    // ANCHOR: platforms
    let router = Router::new().command("echo", echo_command).text(echo);
    let mut builder = Bot::builder().handler(router);
    let mut platforms = Vec::new();
    if let Some(line) = Line::try_from_env()? {
        builder = builder.adapter(line);
        platforms.push("line");
    }
    if let Some(messenger) = Messenger::try_from_env()? {
        builder = builder.adapter(messenger);
        platforms.push("messenger");
    }
    if let Some(mut webchat) = WebChat::try_builder_from_env()? {
        // With DATABASE_URL, the echo-bot processes of one database are one web chat: a reply
        // reaches the user's sockets on every process, and presence is kept there.
        if std::env::var_os(pg::DATABASE_URL_ENV).is_some() {
            let cluster = PgCluster::builder(&PgPool::from_env()?).build()?;
            cluster.migrate().await?;
            webchat = webchat.cluster(cluster);
        }
        builder = builder.adapter(webchat.build()?);
        platforms.push("webchat");
    }
    // In the dev guild when one is named (registered as the adapter starts; that needs the
    // application id), globally otherwise. The variables read as the adapter reads them.
    let set = |name| bot_discord::env_var(name).is_some();
    let in_dev_guild = set(bot_discord::ENV_DEV_GUILD_ID) && set(bot_discord::ENV_APPLICATION_ID);
    let commands = |b: DiscordBuilder| match in_dev_guild {
        true => b.guild_commands([echo_command_spec()]),
        false => b,
    };
    if let Some(discord) = Discord::try_from_env_with(commands)? {
        if !in_dev_guild {
            register_echo_command(&discord).await;
        }
        builder = builder.adapter(discord);
        platforms.push("discord");
    }
    // ANCHOR_END: platforms

    if platforms.is_empty() {
        return demo(builder, addr).await;
    }
    // ANCHOR: durable
    // With DATABASE_URL, the durable PostgreSQL queue: several echo-bot processes (each on its
    // own BOT_ADDR) share the work of one database, and nothing acknowledged is lost on a crash.
    let durable = match std::env::var_os(pg::DATABASE_URL_ENV) {
        Some(_) => {
            let pool = PgPool::from_env()?;
            pg::migrate(&pool).await?;
            // Warns when BOT_PROCESSES processes' pools would not fit in max_connections.
            let queue = Arc::new(PgQueue::builder(&pool).limits(&Limits::default()).build()?);
            // After the queue, so that its own connections count too.
            pool.check_capacity(processes).await?;
            builder = builder.queue(queue.clone());
            Some(queue)
        }
        None => None,
    };
    let bot = builder.build()?;
    if let Some(queue) = &durable {
        queue.register_metrics(bot.telemetry());
    }
    tracing::info!(?platforms, %addr, durable = durable.is_some(), "echo-bot serving");
    let report = bot.serve(addr).await?;
    if let Some(queue) = &durable {
        queue.shutdown().await;
    }
    // ANCHOR_END: durable
    tracing::info!(?report, "echo-bot stopped");
    Ok(())
}

/// `/echo text:<t>`.
fn echo_command_spec() -> CommandSpec {
    CommandSpec::slash("echo", "Says it back")
        .option(CommandOptionSpec::new(CommandOptionSpec::STRING, "text", "What to say").required())
}

/// Registers `/echo` as a global slash command with every application whose id is known.
async fn register_echo_command(discord: &Discord) {
    for (_, client) in discord.applications().iter() {
        let Some(application_id) = client.application_id() else {
            tracing::warn!("discord: /echo not registered: set DISCORD_APPLICATION_ID");
            continue;
        };
        let registered = client
            .http()
            .register_commands(application_id, &[echo_command_spec()])
            .await;
        if let Err(error) = registered {
            tracing::warn!(%error, application_id, "could not register /echo");
        }
    }
}

/// The demo: LINE and Messenger through fake APIs on 127.0.0.1, driven from stdin.
async fn demo(builder: BotBuilder, addr: SocketAddr) -> anyhow::Result<()> {
    let fake = FakeLine::start(DEMO_TOKEN).await?;
    let line = Line::builder(DEMO_SECRET, DEMO_TOKEN)
        .api_base(fake.url())
        .build()?;
    let fake_graph = messenger_testing::FakeMessenger::start(DEMO_PAGE_TOKEN).await?;
    let messenger = Messenger::builder(DEMO_APP_SECRET, DEMO_VERIFY_TOKEN, DEMO_PAGE_TOKEN)
        .api_base(fake_graph.url())
        .build()?;
    // A secret of this run only: the demo page signs a token for a new user on every load.
    let webchat = WebChat::builder(uuid::Uuid::new_v4().simple().to_string())
        .demo(true)
        .build()?;
    let demo_path = webchat.demo_path().unwrap_or_default();
    let bot = builder
        .adapter(line)
        .adapter(messenger)
        .adapter(webchat)
        .build()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let webhook_url = format!("http://{}/line/webhook", listener.local_addr()?);
    let messenger_url = format!("http://{}/messenger/webhook", listener.local_addr()?);
    println!(
        "echo-bot demo: no platform variables set (see the README), so LINE and Messenger are faked."
    );
    println!("  the bot serves   {webhook_url}");
    println!("  fake LINE API at {}", fake.url());
    println!("  and              {messenger_url}");
    println!("  fake Graph API at {}", fake_graph.url());
    println!(
        "  web chat demo    http://{}{demo_path}   (open it in a browser)",
        listener.local_addr()?
    );
    println!(
        "Type a line: it is posted to the bot as signed LINE and Messenger webhooks; the replies show below."
    );
    println!("ctrl-d stops typing, ctrl-c stops the bot.");

    let watcher = fake.clone();
    // The demo's two long-lived helpers: the reply printer and the stdin reader.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        let mut printed = 0;
        loop {
            watcher.api().wait_for_count(printed + 1).await;
            for reply in watcher.replies().iter().skip(printed) {
                println!(
                    "LINE reply API got: {:?} (HTTP {})",
                    reply.texts(),
                    reply.status
                );
                printed += 1;
            }
        }
    });
    let graph = fake_graph.clone();
    // The Messenger reply printer, as long-lived as the LINE one.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        let (mut calls, mut printed) = (0, 0);
        loop {
            graph.api().wait_for_count(calls + 1).await;
            calls = graph.api().call_count();
            for sent in graph.messages().iter().skip(printed) {
                println!(
                    "Messenger Send API got: {:?} for {} (HTTP {})",
                    sent.text().unwrap_or_default(),
                    sent.recipient_id.as_deref().unwrap_or("?"),
                    sent.status
                );
                printed += 1;
            }
        }
    });
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        let app_secret = Secret::new(DEMO_APP_SECRET);
        // What Meta does first when the webhook is subscribed in its console.
        match messenger_testing::verify_subscription(
            &messenger_url,
            DEMO_VERIFY_TOKEN,
            "demo-challenge",
        )
        .await
        {
            Ok((status, challenge)) => {
                println!("Messenger verification: HTTP {status}, challenge {challenge:?}")
            }
            Err(e) => eprintln!("the Messenger verification request failed: {e}"),
        }
        let secret = Secret::new(DEMO_SECRET);
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let first = Some("hello from the echo-bot demo".to_owned());
        let mut next = first;
        loop {
            let text = match next.take() {
                Some(text) => text,
                None => match lines.next_line().await {
                    Ok(Some(line)) if line.trim().is_empty() => continue,
                    Ok(Some(line)) => line,
                    Ok(None) | Err(_) => break,
                },
            };
            let webhook = WebhookBuilder::new().text("Udemo", &text).sign(&secret);
            match webhook.post(&webhook_url).await {
                Ok(status) => println!("you> {text}   (webhook answered {status})"),
                Err(e) => eprintln!("posting the webhook failed: {e}"),
            }
            let signed = messenger_testing::WebhookBuilder::new()
                .text("demo-psid", &text)
                .sign(&app_secret);
            match signed.post(&messenger_url).await {
                Ok(status) => println!("you (Messenger)> {text}   (webhook answered {status})"),
                Err(e) => eprintln!("posting the Messenger webhook failed: {e}"),
            }
        }
    });
    let report = bot.serve_with_shutdown(listener, terminated()).await?;
    tracing::info!(?report, "echo-bot demo stopped");
    Ok(())
}

/// Completes on ctrl-c or SIGTERM.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
