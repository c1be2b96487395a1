//! Run with: cargo run -p state-demo
//!
//! Two kinds of state on the console: a counter per conversation (`cx.conversation_state()`) and
//! app state shared by every handler (`.state(..)`, `cx.state::<T>()`). Type anything to count it,
//! `/stats` for the totals and `/reset` to start the conversation's counter again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bot_core::console::Console;
use bot_core::telemetry::Logging;
use bot_core::{Bot, Context, Error, Event, Router};
use serde::{Deserialize, Serialize};

// ANCHOR: app_state
/// Shared by every handler of the bot: registered once with `.state(..)`.
#[derive(Debug)]
struct Stats {
    started: Instant,
    messages: AtomicU64,
}
// ANCHOR_END: app_state

// ANCHOR: counter
/// The state of one conversation, stored as JSON with a version.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    messages: u64,
}

async fn count(cx: Context, _event: Event) -> Result<(), Error> {
    // Read, change and write back; retried if another write came first.
    let counter = cx
        .conversation_state()
        .update::<Counter, _>(|counter| counter.messages += 1)
        .await?;
    if let Some(stats) = cx.state::<Stats>() {
        stats.messages.fetch_add(1, Ordering::Relaxed);
    }
    cx.reply(format!("message {} of this conversation", counter.messages))
        .await
}

async fn reset(cx: Context, _event: Event) -> Result<(), Error> {
    let state = cx.conversation_state();
    if let Some(current) = state.load::<Counter>().await? {
        // Deletes only the version read: a concurrent update makes this fail, not vanish.
        state.clear(current.version).await?;
    }
    cx.reply("counter reset").await
}
// ANCHOR_END: counter

async fn stats(cx: Context, _event: Event) -> Result<(), Error> {
    let Some(stats) = cx.state::<Stats>() else {
        return cx.reply("no stats kept").await;
    };
    let messages = stats.messages.load(Ordering::Relaxed);
    let uptime = stats.started.elapsed().as_secs();
    cx.reply(format!(
        "{messages} message(s) counted in {uptime} s, all conversations together"
    ))
    .await
}

fn router() -> Router {
    Router::new()
        .command("stats", stats)
        .command("reset", reset)
        .text(count)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr, so that stdout is only the chat.
    let _logging = Logging::new().stderr().default_level("warn").init()?;
    let console = Console::new();
    // ANCHOR: build
    let bot = Bot::builder()
        .adapter(console.clone())
        .state(Stats {
            started: Instant::now(),
            messages: AtomicU64::new(0),
        })
        .handler(router())
        .build()?;
    // ANCHOR_END: build
    // Until the end of input (every line answered) or ctrl-c; then a graceful shutdown.
    let report = console.run_until_done(&bot).await;
    tracing::debug!(?report, "bot stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use bot_core::testing::{self, TestBot};

    use super::*;

    #[tokio::test]
    async fn each_conversation_counts_on_its_own() -> Result<(), Error> {
        let bot = TestBot::builder()
            .state(Stats {
                started: Instant::now(),
                messages: AtomicU64::new(0),
            })
            .handler(router())
            .build()?;
        for (who, text) in [
            ("alice", "a"),
            ("bob", "b"),
            ("alice", "c"),
            ("alice", "/reset"),
        ] {
            bot.send(testing::text(who, text)).await?;
        }
        bot.idle().await;
        bot.send(testing::text("alice", "d")).await?;
        bot.idle().await;
        bot.send(testing::text("bob", "/stats")).await?;
        bot.idle().await;
        let mut texts = bot.texts();
        let stats = texts.pop().unwrap_or_default();
        assert!(stats.starts_with("4 message(s) counted"), "{stats}");
        // Conversations run in parallel: compare without their interleaving.
        texts.sort();
        let mut expected = [
            "message 1 of this conversation",
            "message 1 of this conversation",
            "message 2 of this conversation",
            "counter reset",
            "message 1 of this conversation",
        ];
        expected.sort_unstable();
        assert_eq!(texts, expected);
        bot.shutdown().await;
        Ok(())
    }
}
