//! Run with: cargo run -p booking-dialog
//!
//! A table booking on the console: say "book", pick a party size, a time, confirm; "cancel",
//! "help" and "status" work at any step (typing a choice's label taps it). With the LINE,
//! Messenger or Discord variables set (as for echo-bot), it serves those platforms on
//! `BOT_ADDR` (default `127.0.0.1:8080`) instead.

use std::net::SocketAddr;

use bot_core::Bot;
use bot_core::console::Console;
use bot_core::env::ADDR_ENV;
use bot_core::telemetry::Logging;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _logging = Logging::new().stderr().default_level("warn").init()?;
    // Every setting is checked before anything starts: a mistake is one plain line on stderr.
    let addr: SocketAddr =
        bot_core::env::parse_or(ADDR_ENV, "an address such as 127.0.0.1:8080", || {
            SocketAddr::from(([127, 0, 0, 1], 8080))
        })?;
    let mut builder = Bot::builder().handler(booking_dialog::handler());
    let line = bot_line::Line::try_from_env()?;
    let messenger = bot_messenger::Messenger::try_from_env()?;
    let discord = bot_discord::Discord::try_from_env()?;
    if line.is_none() && messenger.is_none() && discord.is_none() {
        let console = Console::new();
        let bot = builder.adapter(console.clone()).build()?;
        println!("bot> Hello! Say \"book\" to book a table.");
        console.run_until_done(&bot).await;
        return Ok(());
    }
    builder = line.into_iter().fold(builder, |b, line| b.adapter(line));
    builder = messenger.into_iter().fold(builder, |b, m| b.adapter(m));
    builder = discord
        .into_iter()
        .fold(builder, |b, discord| b.adapter(discord));
    let report = builder.build()?.serve(addr).await?;
    tracing::info!(?report, "bot stopped");
    Ok(())
}
