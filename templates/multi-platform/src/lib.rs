//! {{project-name}}: one bot on LINE, Messenger and Discord. The handlers and the durable
//! queue's assembly live here, so that the tests drive the same bot as `main`.

use std::sync::Arc;

use bot_core::pg::{self, PgPool, PgQueue};
use bot_core::{Bot, BotBuilder, Context, Error, Event, Limits, Router};

/// What the bot answers on every platform: `/help`, and any other text said back.
pub fn router() -> Router {
    Router::new().command("help", help).text(echo)
}

/// A bot builder with the router; `main` adds the platforms and the durable queue, the tests
/// platforms on fake APIs.
pub fn builder() -> BotBuilder {
    Bot::builder().handler(router())
}

/// `builder` on the durable PostgreSQL queue of `pool`'s schema (its tables created or
/// migrated first: safe when every process does it at once), and the queue, whose
/// `shutdown` returns the events claimed but not started once the bot has stopped.
///
/// # Errors
///
/// When the database cannot be reached or migrated, or the bot's configuration is invalid.
pub async fn durable(
    builder: BotBuilder,
    pool: PgPool,
    limits: Limits,
) -> Result<(Bot, Arc<PgQueue>), Error> {
    pg::migrate(&pool).await?;
    let queue = Arc::new(PgQueue::builder(&pool).limits(&limits).build()?);
    let bot = builder
        .limits(limits)
        .queue(queue.clone())
        .database(pool)
        .build()?;
    queue.register_metrics(bot.telemetry());
    Ok((bot, queue))
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
