//! {{project-name}}: a LINE bot. The handlers live here, so that the tests drive the same bot
//! as `main`.

use bot_core::{Bot, Context, Error, Event, Router};
use bot_line::Line;

/// What the bot answers: `/help`, and any other text said back.
pub fn router() -> Router {
    Router::new().command("help", help).text(echo)
}

/// The bot on `line`, its webhook at `POST /line/webhook`.
///
/// # Errors
///
/// When the bot's configuration is invalid.
pub fn bot(line: Line) -> Result<Bot, Error> {
    Bot::builder().adapter(line).handler(router()).build()
}

async fn help(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply("Send me any text and I will say it back.").await
}

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}
