//! The comparison client of `botload scenario gateway-consume`: one twilight-gateway 0.18 shard
//! that parses every dispatch into twilight-model's `Event` and counts MESSAGE_CREATE (botload
//! starts it; by hand: `twilight-consume --url ws://127.0.0.1:PORT --count 200000`).
//!
//! It prints `ready` on stdout when READY arrives and `consumed N` when it has seen `--count`
//! messages, then waits for its standard input to close, so that whoever started it can read
//! its CPU time and peak RSS from /proc before it exits.

use std::io::Write as _;

use clap::Parser;
use tokio::io::AsyncReadExt as _;
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _,
};

/// One twilight-gateway shard counting MESSAGE_CREATE dispatches.
#[derive(Debug, Parser)]
#[command(name = "twilight-consume", about)]
struct Args {
    /// The gateway URL, without query (`ws://127.0.0.1:9000`).
    #[arg(long)]
    url: String,
    /// The bot token to identify with.
    #[arg(long, default_value = "botload-discord-token")]
    token: String,
    /// MESSAGE_CREATE dispatches to see before reporting.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = ConfigBuilder::new(
        args.token,
        Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT,
    )
    .proxy_url(args.url)
    .build();
    let mut shard = Shard::with_config(ShardId::ONE, config);
    let mut messages = 0u64;
    while let Some(item) = shard.next_event(EventTypeFlags::all()).await {
        match item {
            Ok(Event::MessageCreate(message)) => {
                // Touch the parsed message so the parse cannot be skipped.
                std::hint::black_box(&message.content);
                messages += 1;
                if messages == args.count {
                    say(&format!("consumed {messages}"));
                    break;
                }
            }
            Ok(Event::Ready(_)) => say("ready"),
            Ok(_) => {}
            Err(error) => eprintln!("twilight-consume: {error}"),
        }
    }
    if messages < args.count {
        return Err(format!("the gateway stopped after {messages} messages").into());
    }
    // Held open until botload has read /proc; the shard is dropped only then.
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
    drop(shard);
    Ok(())
}
