//! Run with:
//!
//! ```text
//! MESSENGER_APP_SECRET=... MESSENGER_VERIFY_TOKEN=... MESSENGER_PAGE_ACCESS_TOKEN=... \
//!     cargo run -p bot-messenger --example messenger-echo
//! ```
//!
//! An echo bot on Messenger: serves `GET`+`POST /messenger/webhook` on port 8080 (expose it
//! over HTTPS, for example through a tunnel, and give that URL to the Meta console), answers
//! every text with the same text and every button or quick reply tap with its payload.

use bot_core::{Bot, Context, Error, Event, EventKind, Router};
use bot_messenger::Messenger;

// ANCHOR: handler
async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}

async fn tapped(cx: Context, event: Event) -> Result<(), Error> {
    if let EventKind::Postback(postback) = &event.kind {
        cx.reply(format!("you tapped {}", postback.data)).await?;
    }
    Ok(())
}
// ANCHOR_END: handler

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _logging = bot_core::init_logging()?;
    // ANCHOR: live
    // MESSENGER_APP_SECRET, MESSENGER_VERIFY_TOKEN, MESSENGER_PAGE_ACCESS_TOKEN, and optionally
    // MESSENGER_API_BASE (another Graph version, a proxy, or a fake).
    let messenger = Messenger::from_env()?;
    let bot = Bot::builder()
        .adapter(messenger)
        .handler(Router::new().kind("postback", tapped).text(echo))
        .build()?;
    bot.serve("0.0.0.0:8080").await?;
    // ANCHOR_END: live
    Ok(())
}
