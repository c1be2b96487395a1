//! Run with: cargo run --release -p noop-bot
//!
//! The `webhook-noop` benchmark's bot: configured like `echo-bot` (the same environment
//! variables, the same routes, on `BOT_ADDR`, default `127.0.0.1:8080`), but its handler does
//! nothing, so a load generator (botload, wrk, k6) measures the runtime: signature checks,
//! parsing, the queue and the supervisor. It needs at least one platform configured:
//!
//! ```sh
//! LINE_CHANNEL_SECRET=s LINE_CHANNEL_ACCESS_TOKEN=t cargo run --release -p noop-bot
//! ```
//!
//! `--features mimalloc` swaps glibc's allocator for mimalloc, as an application may. The
//! adapters are features (`line`, `messenger`, `discord`, all on by default): a bot that runs one
//! platform links only that one, e.g. `--no-default-features --features discord`.

use std::net::SocketAddr;

use bot_core::telemetry::Logging;
use bot_core::{Bot, Context, Error, Event};
#[cfg(feature = "discord")]
use bot_discord::Discord;
#[cfg(feature = "line")]
use bot_line::Line;
#[cfg(feature = "messenger")]
use bot_messenger::Messenger;

/// With `--features mimalloc`: the allocator the application chooses, not the runtime.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn noop(_cx: Context, _event: Event) -> Result<(), Error> {
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _logging = Logging::new().stderr().default_level("warn").init()?;
    let addr: SocketAddr = bot_core::env::parse_or(
        bot_core::env::ADDR_ENV,
        "an address such as 127.0.0.1:8080",
        || ([127, 0, 0, 1], 8080).into(),
    )?;
    let mut builder = Bot::builder().handler(noop);
    let mut platforms: Vec<&str> = Vec::new();
    #[cfg(feature = "line")]
    if let Some(line) = Line::try_from_env()? {
        builder = builder.adapter(line);
        platforms.push("line");
    }
    #[cfg(feature = "messenger")]
    if let Some(messenger) = Messenger::try_from_env()? {
        builder = builder.adapter(messenger);
        platforms.push("messenger");
    }
    #[cfg(feature = "discord")]
    if let Some(discord) = Discord::try_from_env()? {
        builder = builder.adapter(discord);
        platforms.push("discord");
    }
    if platforms.is_empty() {
        anyhow::bail!(
            "noop-bot: configure a platform as for echo-bot (of those it was built with), \
             for example LINE_CHANNEL_SECRET and LINE_CHANNEL_ACCESS_TOKEN"
        );
    }
    tracing::info!(?platforms, %addr, "noop-bot serving");
    let report = builder.build()?.serve(addr).await?;
    tracing::info!(?report, "noop-bot stopped");
    Ok(())
}
