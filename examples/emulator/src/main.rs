//! Run with: cargo run -p emulator
//!
//! Opens the emulator page on `EMULATOR_ADDR` (default `127.0.0.1:3000`) with the demo bot of
//! `emulator::demo`: chat with it as a LINE, Messenger, Discord or console user. To chat with
//! your own bot, give `Emulator::start` your builder instead (see the crate docs).

use std::net::SocketAddr;

use bot_core::Bot;
use emulator::{Emulator, Journal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The page's address when `EMULATOR_ADDR` is not set.
const DEFAULT_ADDR: &str = "127.0.0.1:3000";

#[tokio::main]
async fn main() -> Result<(), emulator::Error> {
    let addr: SocketAddr = match std::env::var("EMULATOR_ADDR") {
        Ok(addr) => addr.parse().map_err(|e| {
            format!("EMULATOR_ADDR={addr:?} is not an address like 127.0.0.1:3000: {e}")
        })?,
        Err(_) => DEFAULT_ADDR.parse()?,
    };
    // ANCHOR: start
    let journal = Journal::new();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(bot_core::telemetry::secret_safe_caps())
        .with(journal.trace_layer())
        .with(tracing_subscriber::fmt::layer().with_filter(filter))
        .init();
    let bot = Bot::builder().handler(emulator::demo::router());
    let emulator = Emulator::start(bot, journal).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "emulator: open http://{}/ in a browser",
        listener.local_addr()?
    );
    axum::serve(listener, emulator::router(emulator.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let report = emulator.shutdown().await?;
    // ANCHOR_END: start
    tracing::info!(?report, "emulator stopped");
    Ok(())
}
