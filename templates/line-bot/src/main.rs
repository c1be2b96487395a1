//! Run with: `LINE_CHANNEL_SECRET=... LINE_CHANNEL_ACCESS_TOKEN=... cargo run`
//!
//! Serves `POST /line/webhook`, `/healthz`, `/readyz` and `/metrics` on `BOT_ADDR` (default
//! `0.0.0.0:8080`) until SIGTERM or ctrl-c, then drains gracefully.

use std::net::SocketAddr;

use bot_core::telemetry::Logging;
use bot_line::Line;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Levels from RUST_LOG; BOT_LOG_FORMAT=json for log pipelines.
    let _logging = Logging::new().init()?;
    let addr: SocketAddr = bot_core::env::parse_or(
        bot_core::env::ADDR_ENV,
        "an address such as 0.0.0.0:8080",
        || ([0, 0, 0, 0], 8080).into(),
    )?;
    let bot = {{crate_name}}::bot(Line::from_env()?)?;
    tracing::info!(%addr, "serving LINE at /line/webhook");
    let report = bot.serve(addr).await?;
    tracing::info!(?report, "stopped");
    Ok(())
}
