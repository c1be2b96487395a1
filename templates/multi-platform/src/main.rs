//! Run with: `cargo run` and the variables of `.env.example` set (at least one platform and
//! `DATABASE_URL`).
//!
//! Serves every configured platform's webhook on `BOT_ADDR` (default `0.0.0.0:8080`) and
//! `/healthz`, `/readyz`, `/metrics` on `BOT_OPS_ADDR` (or `BOT_ADDR` when unset). Events wait in
//! the durable PostgreSQL queue, so several processes on one database share the work and an
//! event acknowledged to a platform is never lost. SIGTERM drains gracefully.

use std::net::SocketAddr;

use bot_core::Limits;
use bot_core::pg::PgPool;
use bot_core::telemetry::Logging;
use bot_discord::Discord;
use bot_line::Line;
use bot_messenger::Messenger;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Levels from RUST_LOG; BOT_LOG_FORMAT=json for log pipelines.
    let _logging = Logging::new().init()?;
    // Every setting is checked before anything connects.
    let addr: SocketAddr = bot_core::env::parse_or(
        bot_core::env::ADDR_ENV,
        "an address such as 0.0.0.0:8080",
        || ([0, 0, 0, 0], 8080).into(),
    )?;
    let processes = bot_core::env::processes()?;
    let mut builder = {{crate_name}}::builder();
    let mut platforms = Vec::new();
    if let Some(line) = Line::try_from_env()? {
        builder = builder.adapter(line);
        platforms.push("line");
    }
    if let Some(messenger) = Messenger::try_from_env()? {
        builder = builder.adapter(messenger);
        platforms.push("messenger");
    }
    if let Some(discord) = Discord::try_from_env()? {
        builder = builder.adapter(discord);
        platforms.push("discord");
    }
    if platforms.is_empty() {
        anyhow::bail!(
            "no platform is configured: set LINE_CHANNEL_SECRET and LINE_CHANNEL_ACCESS_TOKEN, \
             the three MESSENGER_ variables, or DISCORD_TOKEN (see .env.example)"
        );
    }

    let pool = PgPool::from_env()?;
    // Warns when the processes' pools would not fit in the server's max_connections.
    pool.check_capacity(processes).await?;
    let (bot, queue) = {{crate_name}}::durable(builder, pool, Limits::default()).await?;

    tracing::info!(?platforms, %addr, "serving");
    let report = bot.serve(addr).await?;
    // Returns the events claimed but not started to the queue, for the other processes.
    queue.shutdown().await;
    tracing::info!(?report, "stopped");
    Ok(())
}
