//! Run with: cargo run -p booking-dialog
//!
//! A table booking on the console: say "book", pick a party size, a time, confirm; "cancel",
//! "help" and "status" work at any step (typing a choice's label taps it). With
//! `LINE_CHANNEL_SECRET` and `LINE_CHANNEL_ACCESS_TOKEN`, the `MESSENGER_*` variables or
//! `DISCORD_TOKEN` set, the same bot serves those platforms on `BOT_ADDR` (default
//! `127.0.0.1:8080`) instead.

use bot_core::Bot;
use bot_core::console::Console;
use bot_core::telemetry::Logging;
use bot_discord::Discord;
use bot_line::Line;
use bot_messenger::Messenger;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _logging = Logging::new().stderr().default_level("warn").init()?;
    let mut builder = Bot::builder().handler(booking_dialog::handler());
    let mut platforms = 0;
    if let Some(line) = Line::try_from_env()? {
        builder = builder.adapter(line);
        platforms += 1;
    }
    if let Some(messenger) = Messenger::try_from_env()? {
        builder = builder.adapter(messenger);
        platforms += 1;
    }
    if let Some(discord) = Discord::try_from_env()? {
        builder = builder.adapter(discord);
        platforms += 1;
    }
    if platforms > 0 {
        let addr = std::env::var("BOT_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
        let report = builder
            .build()?
            .serve(addr.parse::<std::net::SocketAddr>()?)
            .await?;
        tracing::info!(?report, "bot stopped");
        return Ok(());
    }
    let console = Console::new();
    let bot = builder.adapter(console.clone()).build()?;
    println!("bot> Hello! Say \"book\" to book a table.");
    let report = console.run_until_done(&bot).await;
    tracing::debug!(?report, "bot stopped");
    Ok(())
}
