//! {{project-name}}: one bot on LINE, Messenger and Discord. The handlers live here, so that
//! the tests drive the same bot as `main`.

use bot_core::{Bot, BotBuilder, Context, Error, Event, Router};

/// What the bot answers on every platform: `/help`, and any other text said back.
pub fn router() -> Router {
    Router::new().command("help", help).text(echo)
}

/// A bot builder with the router; `main` adds the platforms and the durable queue, the tests
/// platforms on fake APIs.
pub fn builder() -> BotBuilder {
    Bot::builder().handler(router())
}

async fn help(cx: Context, event: Event) -> Result<(), Error> {
    let platform = event.platform.as_str();
    cx.reply(format!(
        "Send me any text on {platform} and I will say it back."
    ))
    .await
}

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}
