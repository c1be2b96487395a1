//! Run with: SLACK_SIGNING_SECRET=... SLACK_BOT_TOKEN=xoxb-... cargo run -p slack-adapter
//!
//! An echo bot on Slack through the adapter of this crate: point the app's Event Subscriptions
//! at `https://<your host>/slack/events` (subscribe to `message.im` and `app_mention`), and
//! every message the bot can see is answered with its text. It serves on `BOT_ADDR` (default
//! `127.0.0.1:8080`), with `/healthz`, `/readyz` and `/metrics` beside the events URL.

use bot_core::telemetry::Logging;
use bot_core::{Bot, Context, Error, Event};
use slack_adapter::{ENV_BOT_TOKEN, ENV_SIGNING_SECRET, Slack};

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) if !text.is_empty() => cx.reply(text).await,
        _ => Ok(()),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("slack-adapter: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let _logging = Logging::new().stderr().default_level("info").init()?;
    let addr = std::env::var("BOT_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("BOT_ADDR={addr:?} is not an address like 127.0.0.1:8080: {e}"))?;
    let Some(slack) = Slack::try_from_env()? else {
        return Err(format!("set {ENV_SIGNING_SECRET} and {ENV_BOT_TOKEN} (see the book's \"Writing your own adapter\")").into());
    };
    let bot = Bot::builder().adapter(slack).handler(echo).build()?;
    let report = bot.serve(addr).await?;
    tracing::info!(?report, "slack-adapter stopped");
    Ok(())
}
