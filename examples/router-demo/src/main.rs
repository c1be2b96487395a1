//! Run with: cargo run -p router-demo
//!
//! One handler, many routes, on the console: type `/help`, `/ping`, `echo something`, `2 + 3`,
//! `/color` (then one of the colors offered: typing a quick reply's label taps it), or anything
//! else.

use bot_core::console::Console;
use bot_core::outbound::QuickReply;
use bot_core::router::parse_command;
use bot_core::telemetry::Logging;
use bot_core::{Bot, Context, Error, Event, EventKind, OutgoingMessage, Router};
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
    // The route is a postback route: nothing else gets here.
    let EventKind::Postback(postback) = &event.kind else {
        return Ok(());
    };
    let color = postback.data.trim_start_matches("color:");
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr, so that stdout is only the chat.
    let _logging = Logging::new().stderr().default_level("warn").init()?;
    let console = Console::new();
    let bot = Bot::builder()
        .adapter(console.clone())
        .handler(router())
        .build()?;
    println!("bot> Hello! Type /help.");
    // Until the end of input (every line answered) or ctrl-c; then a graceful shutdown.
    let report = console.run_until_done(&bot).await;
    tracing::debug!(?report, "bot stopped");
    Ok(())
}

// ANCHOR: tests
#[cfg(test)]
mod tests {
    use bot_core::outbound::Action;
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
    async fn a_tapped_quick_reply_takes_the_postback_route() -> Result<(), Error> {
        let bot = TestBot::builder().handler(router()).build()?;
        // A slash command event, as Discord sends: the command route offers the colors.
        bot.send(testing::command("bob", "color")).await?;
        let sent = bot.wait_for(1).await;
        let offered = &sent[0].messages[0].quick_replies;
        let labels: Vec<&str> = offered.iter().map(|q| q.label.as_str()).collect();
        assert_eq!(labels, ["Red", "Green", "Blue"]);
        // Tapping "Green" sends its postback data back.
        let Action::Postback(data) = &offered[1].action else {
            panic!("the colors are postback quick replies");
        };
        bot.send(testing::postback("bob", data.as_str())).await?;
        bot.idle().await;
        assert_eq!(bot.texts()[1], "You picked green.");
        bot.shutdown().await;
        Ok(())
    }
}
// ANCHOR_END: tests

/// The same router on the console, where typing a quick reply's label taps it.
#[cfg(test)]
mod console_tests {
    use std::time::Duration;

    use bot_core::BoxError;
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, DuplexStream, Lines};

    use super::*;

    /// The next line the bot prints; a time-out only so that a broken bot fails instead of hanging.
    async fn next_line(screen: &mut Lines<BufReader<DuplexStream>>) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(10), screen.next_line())
            .await
            .expect("the bot answers")
            .expect("the output is readable")
    }

    #[tokio::test]
    async fn typing_a_color_label_picks_it() -> Result<(), BoxError> {
        let (mut keyboard, input) = tokio::io::duplex(1024);
        let (output, screen) = tokio::io::duplex(4096);
        let console = Console::with_io(BufReader::new(input), output);
        let bot = Bot::builder()
            .adapter(console.clone())
            .handler(router())
            .build()?;
        bot.start();
        let mut screen = BufReader::new(screen).lines();

        keyboard.write_all(b"/color\n").await?;
        let menu = next_line(&mut screen).await;
        assert_eq!(
            menu.as_deref(),
            Some("bot> Pick a color: [Red] [Green] [Blue]")
        );
        keyboard.write_all(b"red\n").await?;
        let answer = next_line(&mut screen).await;
        assert_eq!(answer.as_deref(), Some("bot> You picked red."));
        // Offered by the last message only: now "red" is just text.
        keyboard.write_all(b"red\n").await?;
        let answer = next_line(&mut screen).await;
        assert_eq!(
            answer.as_deref(),
            Some("bot> I don't know \"red\". Type /help.")
        );

        drop(keyboard);
        console.finished().cancelled().await;
        bot.idle().await;
        bot.shutdown().await;
        Ok(())
    }
}
