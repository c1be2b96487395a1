//! A development-only web page to chat with your own bot as a LINE, Messenger, Discord or
//! console user.
//!
//! Every message typed or button tapped goes to the bot as the platform sends it: a LINE or
//! Messenger webhook signed with the channel's secret, a Discord gateway `MESSAGE_CREATE` or an
//! Ed25519-signed interaction, a line on the console's standard input. The bot answers through
//! its real adapters into the platforms' fakes (`bot_line::testing::FakeLine`,
//! `bot_messenger::testing::FakeMessenger`, `bot_discord::testing::FakeDiscordApi`), and the page
//! draws what the fakes received as the platform would: bubbles, images, cards and carousels,
//! quick replies and buttons that can be tapped, Discord embeds and components, deferred
//! interaction answers. A side panel shows the request each message was sent as, the handler's
//! trace (its `bot.event` span with the lines logged inside it) and the runtime's figures (in
//! flight, queue depth, p99 of handler durations) read from the bot's own `/metrics` text.
//!
//! It is for development only: the secrets are fixed and the fakes accept anything signed with
//! them. Run the demo with `cargo run -p emulator`, or start your own bot in it:
//!
//! ```no_run
//! # async fn run() -> Result<(), emulator::Error> {
//! use bot_core::{Bot, Context, Error, Event};
//! use emulator::{Emulator, Journal};
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//!
//! async fn echo(cx: Context, event: Event) -> Result<(), Error> {
//!     cx.reply(event.text_content().unwrap_or_default()).await
//! }
//!
//! let journal = Journal::new();
//! tracing_subscriber::registry().with(journal.trace_layer()).init();
//! let emulator = Emulator::start(Bot::builder().handler(echo), journal).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, emulator::router(emulator.clone())).await?;
//! # Ok(()) }
//! ```

pub mod demo;
mod emulator;
mod figures;
mod journal;
mod server;
mod trace;
mod watch;

pub use emulator::{
    DISCORD_CHANNEL, DISCORD_GUILD, DISCORD_TOKEN, DISCORD_USER, Emulator, Error, LINE_SECRET,
    LINE_TOKEN, LINE_USER, MESSENGER_APP_SECRET, MESSENGER_PAGE_TOKEN, MESSENGER_USER,
    MESSENGER_VERIFY_TOKEN, PLATFORMS, Refused, Tap, command_options,
};
pub use figures::Figures;
pub use journal::{Author, Item, Journal, Snapshot, Trace};
pub use server::router;
pub use trace::{EVENT_SPAN, TraceLayer};
