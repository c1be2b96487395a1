//! Run with: cargo run --release -p echo-bot
//!
//! Answers every text message with the same text, on every platform whose variables are set, on
//! `BOT_ADDR` (default `127.0.0.1:8080`):
//!
//! | platform | variables | webhook |
//! | --- | --- | --- |
//! | LINE | `LINE_CHANNEL_SECRET`, `LINE_CHANNEL_ACCESS_TOKEN`, `LINE_API_BASE` (optional) | `POST /line/webhook` |
//!
//! Beside the webhooks it serves `/healthz`, `/readyz` and `/metrics`, and shuts down gracefully on
//! SIGTERM or ctrl-c.
//!
//! With no platform variables it runs a demo instead: a fake LINE API starts on 127.0.0.1, the bot
//! answers through it, and every line you type is posted to the bot as a signed LINE webhook over
//! HTTP; the reply the fake LINE API receives is printed.

use std::net::SocketAddr;

use bot_core::telemetry::Logging;
use bot_core::{Bot, BotBuilder, Context, Error, Event, Router, Secret};
use bot_line::Line;
use bot_line::testing::{FakeLine, WebhookBuilder};
use tokio::io::AsyncBufReadExt as _;

/// The address served when `BOT_ADDR` is not set.
const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// The demo's channel secret and access token (the fake LINE API knows them).
const DEMO_SECRET: &str = "demo-channel-secret";
const DEMO_TOKEN: &str = "demo-access-token";

// ANCHOR: handler
async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}
// ANCHOR_END: handler

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _logging = Logging::new().stderr().default_level("info").init()?;
    let addr: SocketAddr = std::env::var("BOT_ADDR")
        .unwrap_or_else(|_| DEFAULT_ADDR.to_owned())
        .parse()?;

    // ANCHOR: platforms
    let mut builder = Bot::builder().handler(Router::new().text(echo));
    let mut platforms = Vec::new();
    if let Some(line) = Line::try_from_env()? {
        builder = builder.adapter(line);
        platforms.push("line");
    }
    // ANCHOR_END: platforms

    if platforms.is_empty() {
        return demo(builder, addr).await;
    }
    tracing::info!(?platforms, %addr, "echo-bot serving");
    let report = builder.build()?.serve(addr).await?;
    tracing::info!(?report, "echo-bot stopped");
    Ok(())
}

/// The demo: LINE through a fake LINE API on 127.0.0.1, driven from stdin.
async fn demo(builder: BotBuilder, addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeLine::start(DEMO_TOKEN).await?;
    let line = Line::builder(DEMO_SECRET, DEMO_TOKEN)
        .api_base(fake.url())
        .build()?;
    let bot = builder.adapter(line).build()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let webhook_url = format!("http://{}/line/webhook", listener.local_addr()?);
    println!("echo-bot demo: no platform variables set (see the README), so LINE is faked.");
    println!("  the bot serves   {webhook_url}");
    println!("  fake LINE API at {}", fake.url());
    println!(
        "Type a line: it is posted to the bot as a signed LINE webhook; the reply shows below."
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
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
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
