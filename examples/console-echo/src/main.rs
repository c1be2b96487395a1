//! Run with: cargo run -p console-echo
//!
//! The smallest bot: type a line, get it back as `bot> ...`. No configuration, no network. It ends
//! at the end of input (ctrl-d, or the end of a piped file) once every line is answered, or at
//! ctrl-c; `RUST_LOG=debug` shows the shutdown report on stderr.
//!
//! ```sh
//! printf 'hello\nworld\n' | cargo run -q -p console-echo
//! ```

use std::sync::Arc;
use std::time::Duration;

use bot_core::console::Console;
use bot_core::{Bot, Context, Error, Event, Limits, MemoryQueue, Queue as _};

// ANCHOR: handler
async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    if let Some(text) = event.text_content() {
        cx.reply(text).await?;
    }
    Ok(())
}
// ANCHOR_END: handler

/// Logs go to stderr, so that stdout is only the chat (`telemetry::init_logging` writes to stdout).
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
}

/// Waits until every event the queue accepted is done: nothing waiting, nothing running.
async fn all_handled(queue: &MemoryQueue) {
    // The queue has no "idle" signal; polling is cheap and only happens once input has ended.
    while queue.depth() > 0 || queue.leased() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    // ANCHOR: main
    let queue = Arc::new(MemoryQueue::new(&Limits::default()));
    let console = Console::new();
    let bot = Bot::builder()
        .adapter(console.clone())
        .queue(queue.clone())
        .handler(echo)
        .build()?;
    bot.start();
    tokio::select! {
        // End of input: every line is submitted; let the handlers answer them all.
        () = async {
            console.finished().cancelled().await;
            all_handled(&queue).await;
        } => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // Drains running handlers (up to `shutdown_timeout`) and reports what was left.
    let report = bot.shutdown().await;
    tracing::debug!(?report, "bot stopped");
    // ANCHOR_END: main
    Ok(())
}
