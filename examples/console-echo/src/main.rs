//! Run with: cargo run -p console-echo
//!
//! The smallest bot: type a line, get it back as `bot> ...`. No configuration, no network. It ends
//! at the end of input (ctrl-d, or the end of a piped file) once every line is answered, or at
//! ctrl-c; `RUST_LOG=debug` shows the shutdown report on stderr.
//!
//! ```sh
//! printf 'hello\nworld\n' | cargo run -q -p console-echo
//! ```

use bot_core::console::Console;
use bot_core::telemetry::Logging;
use bot_core::{Bot, Context, Error, Event};

// ANCHOR: handler
async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    if let Some(text) = event.text_content() {
        cx.reply(text).await?;
    }
    Ok(())
}
// ANCHOR_END: handler

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // ANCHOR: logging
    // Logs go to stderr, so that stdout is only the chat.
    let _logging = Logging::new().stderr().default_level("warn").init()?;
    // ANCHOR_END: logging
    // ANCHOR: main
    let console = Console::new();
    let bot = Bot::builder()
        .adapter(console.clone())
        .handler(echo)
        .build()?;
    // Until the end of input (every line answered) or ctrl-c; then a graceful shutdown.
    let report = console.run_until_done(&bot).await;
    tracing::debug!(?report, "bot stopped");
    // ANCHOR_END: main
    Ok(())
}
