//! Run with: cargo run -p router-demo
//!
//! One handler, many routes, on the console: type `/help`, `/ping`, `echo something`, `2 + 3`,
//! `/color` (then one of the colors offered), or anything else.

use std::sync::Arc;
use std::time::Duration;

use bot_core::console::Console;
use bot_core::outbound::QuickReply;
use bot_core::router::parse_command;
use bot_core::{
    Bot, Context, Error, Event, EventKind, Limits, MemoryQueue, OutgoingMessage, Queue as _, Router,
};
use regex::Regex;

const HELP: &str = "/ping: answers pong
/help: this help
/color: offers colors to pick
echo <text>: says <text> back
<a> + <b>: adds two whole numbers";

// ANCHOR: router
fn router() -> Router {
    Router::new()
        .command("ping", ping)
        .command("help", help)
        .command("color", offer_colors)
        .postback_prefix("color:", color_picked)
        // The console cannot tap a quick reply: typing a color's name does the same.
        .text_regex(
            Regex::new(r"^(?i)(red|green|blue)$").expect("valid regex"),
            color_picked,
        )
        .text_prefix("echo ", echo)
        .text_regex(
            Regex::new(r"^\s*(-?\d+)\s*\+\s*(-?\d+)\s*$").expect("valid regex"),
            add,
        )
        .fallback(fallback)
}
// ANCHOR_END: router

// ANCHOR: commands
async fn ping(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply("pong").await
}

async fn help(cx: Context, event: Event) -> Result<(), Error> {
    // `/help ping` works too: the arguments follow the command's name.
    let topic = event
        .text_content()
        .and_then(parse_command)
        .map(|(_, args)| args);
    match topic {
        Some(topic) if !topic.is_empty() => match HELP.lines().find(|l| l.contains(topic)) {
            Some(line) => cx.reply(line).await,
            None => cx.reply(format!("no help on {topic}")).await,
        },
        _ => cx.reply(HELP).await,
    }
}
// ANCHOR_END: commands

// ANCHOR: quick_replies
async fn offer_colors(cx: Context, _event: Event) -> Result<(), Error> {
    let menu = OutgoingMessage::text("Pick a color:")
        .quick_reply(QuickReply::postback("Red", "color:red"))
        .quick_reply(QuickReply::postback("Green", "color:green"))
        .quick_reply(QuickReply::postback("Blue", "color:blue"));
    cx.reply(menu).await
}

async fn color_picked(cx: Context, event: Event) -> Result<(), Error> {
    let color = match &event.kind {
        EventKind::Postback(postback) => postback.data.trim_start_matches("color:").to_owned(),
        _ => event.text_content().unwrap_or_default().to_lowercase(),
    };
    cx.reply(format!("You picked {color}.")).await
}
// ANCHOR_END: quick_replies

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    let text = event.text_content().unwrap_or_default();
    cx.reply(text.trim_start_matches("echo ")).await
}

// ANCHOR: regex
async fn add(cx: Context, event: Event) -> Result<(), Error> {
    let numbers: Vec<i64> = event
        .text_content()
        .unwrap_or_default()
        .split('+')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    match numbers[..] {
        [a, b] => match a.checked_add(b) {
            Some(sum) => cx.reply(format!("{a} + {b} = {sum}")).await,
            None => cx.reply("that is too big for me").await,
        },
        _ => cx.reply("I add two whole numbers, like 2 + 3").await,
    }
}
// ANCHOR_END: regex

async fn fallback(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => {
            cx.reply(format!("I don't know \"{text}\". Type /help."))
                .await
        }
        // Not a message (a reaction, a new follower): nothing to say.
        None => Ok(()),
    }
}

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
    let queue = Arc::new(MemoryQueue::new(&Limits::default()));
    let console = Console::new();
    let bot = Bot::builder()
        .adapter(console.clone())
        .queue(queue.clone())
        .handler(router())
        .build()?;
    bot.start();
    println!("bot> Hello! Type /help.");
    tokio::select! {
        () = async {
            console.finished().cancelled().await;
            all_handled(&queue).await;
        } => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let report = bot.shutdown().await;
    tracing::debug!(?report, "bot stopped");
    Ok(())
}

// ANCHOR: tests
#[cfg(test)]
mod tests {
    use bot_core::testing::{self, TestBot};

    use super::*;

    #[tokio::test]
    async fn routes_commands_text_and_postbacks() -> Result<(), Error> {
        let bot = TestBot::builder().handler(router()).build()?;
        bot.send(testing::text("alice", "/ping")).await?;
        bot.send(testing::text("alice", "2 + 40")).await?;
        bot.send(testing::postback("alice", "color:blue")).await?;
        bot.send(testing::text("alice", "echo hi")).await?;
        bot.send(testing::text("alice", "what?")).await?;
        bot.idle().await;
        assert_eq!(
            bot.texts(),
            [
                "pong",
                "2 + 40 = 42",
                "You picked blue.",
                "hi",
                "I don't know \"what?\". Type /help."
            ]
        );
        bot.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_slash_command_event_takes_the_command_route() -> Result<(), Error> {
        let bot = TestBot::builder().handler(router()).build()?;
        bot.send(testing::command("bob", "color")).await?;
        let sent = bot.wait_for(1).await;
        let labels: Vec<&str> = sent[0].messages[0]
            .quick_replies
            .iter()
            .map(|q| q.label.as_str())
            .collect();
        assert_eq!(labels, ["Red", "Green", "Blue"]);
        bot.shutdown().await;
        Ok(())
    }
}
// ANCHOR_END: tests
