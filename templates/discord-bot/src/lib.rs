//! {{project-name}}: a Discord bot. The handlers live here, so that the tests drive the same
//! bot as `main`.

use bot_core::{Bot, Context, Error, Event, EventKind, Router};
use bot_discord::Discord;
use bot_discord::http::{CommandOptionSpec, CommandSpec};

/// What the bot answers: the slash command `/echo text:<t>`, and any message in a channel it
/// can read, said back.
pub fn router() -> Router {
    Router::new().command("echo", echo_command).text(echo)
}

/// The slash commands the bot registers.
pub fn commands() -> Vec<CommandSpec> {
    let text = CommandOptionSpec::new(CommandOptionSpec::STRING, "text", "What to say");
    vec![CommandSpec::slash("echo", "Says it back").option(text.required())]
}

/// The bot on `discord`: its gateway shards, and `POST /discord/interactions` when the
/// application's public key is configured.
///
/// # Errors
///
/// When the bot's configuration is invalid.
pub fn bot(discord: Discord) -> Result<Bot, Error> {
    Bot::builder().adapter(discord).handler(router()).build()
}

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}

/// `/echo text:<t>` answers `<t>`.
async fn echo_command(cx: Context, event: Event) -> Result<(), Error> {
    let text = match &event.kind {
        EventKind::Command(command) => command.options.get("text").and_then(|t| t.as_str()),
        _ => None,
    };
    cx.reply(text.unwrap_or("usage: /echo text:<something>"))
        .await
}
