//! A complete small adapter written outside the runtime, as the book's "Writing your own
//! adapter" chapter walks through it: Slack's Events API in, `chat.postMessage` out.
//!
//! | part | file | what it does |
//! | --- | --- | --- |
//! | webhook | `webhook.rs` | verifies `X-Slack-Signature` (HMAC-SHA256 of `v0:<timestamp>:<body>`, in constant time) and the timestamp's age before parsing, answers the `url_verification` challenge, submits the events and answers 200 only once the queue has them |
//! | event | `event.rs` | Slack's JSON (unknown fields and types tolerated) mapped to core `Event`s: messages and mentions as text, the bot's own messages skipped, anything else `EventKind::Other` |
//! | client | `client.rs` | the runtime's HTTP client core with Slack's part (`ApiSpec`): bearer token, refusals classified, `Retry-After` honoured, Slack's `{"ok": false}` answers turned into errors; `Outbound` renders neutral messages as Slack text and blocks |
//! | adapter | `adapter.rs` | the `Adapter` that plugs the three into a bot |
//!
//! ```no_run
//! use bot_core::{Bot, Context, Error, Event};
//! use slack_adapter::Slack;
//!
//! async fn echo(cx: Context, event: Event) -> Result<(), Error> {
//!     cx.reply(event.text_content().unwrap_or_default()).await
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let slack = Slack::builder("signing-secret", "xoxb-bot-token").build()?;
//! let bot = Bot::builder().adapter(slack).handler(echo).build()?;
//! bot.serve("0.0.0.0:8080").await?; // Slack posts to /slack/events
//! # Ok(()) }
//! ```

mod adapter;
mod client;
mod event;
mod webhook;

pub use adapter::{ENV_API_BASE, ENV_BOT_TOKEN, ENV_SIGNING_SECRET, Slack, SlackBuilder};
pub use client::{DEFAULT_API_BASE, SlackClient};
pub use event::{PLATFORM, to_events};
pub use webhook::{DEFAULT_PATH, MAX_CLOCK_SKEW, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
