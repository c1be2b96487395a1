//! Run with: `DISCORD_TOKEN=... cargo run`
//!
//! Connects to the gateway and answers messages; with `DISCORD_APPLICATION_ID` and
//! `DISCORD_PUBLIC_KEY`, serves slash commands at `POST /discord/interactions` on `BOT_ADDR`
//! (default `0.0.0.0:8080`), beside `/healthz`, `/readyz` and `/metrics`, until SIGTERM or
//! ctrl-c, then drains gracefully.

use std::net::SocketAddr;

use bot_core::telemetry::Logging;
use bot_discord::Discord;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Levels from RUST_LOG; BOT_LOG_FORMAT=json for log pipelines.
    let _logging = Logging::new().init()?;
    let addr: SocketAddr = bot_core::env::parse_or(
        bot_core::env::ADDR_ENV,
        "an address such as 0.0.0.0:8080",
        || ([0, 0, 0, 0], 8080).into(),
    )?;
    // With DISCORD_DEV_GUILD_ID the adapter registers the commands in that guild as it starts.
    let discord =
        Discord::from_env_with(|builder| builder.guild_commands({{crate_name}}::commands()))?;
    if bot_discord::env_var(bot_discord::ENV_DEV_GUILD_ID).is_none() {
        register_globally(&discord).await;
    }
    let bot = {{crate_name}}::bot(discord)?;
    tracing::info!(%addr, "serving Discord");
    let report = bot.serve(addr).await?;
    tracing::info!(?report, "stopped");
    Ok(())
}

/// Registers the commands globally with every application whose id is known; a failure is
/// logged, and the bot still serves messages.
async fn register_globally(discord: &Discord) {
    for (_, client) in discord.applications().iter() {
        let Some(application_id) = client.application_id() else {
            tracing::warn!("slash commands not registered: set DISCORD_APPLICATION_ID");
            continue;
        };
        let commands = {{crate_name}}::commands();
        if let Err(error) = client
            .http()
            .register_commands(application_id, &commands)
            .await
        {
            tracing::warn!(%error, application_id, "could not register the slash commands");
        }
    }
}
