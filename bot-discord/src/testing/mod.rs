//! Test Discord bots offline (feature `testing`): a scriptable fake gateway and a fake REST API.
//!
//! [`FakeGateway`] is a WebSocket server on 127.0.0.1 that speaks the gateway protocol: Hello,
//! a connection closed (4009) when its heartbeats stop for 1.5 intervals,
//! Identify (checking the token: 4004 otherwise), READY with a session and a `resume_gateway_url`,
//! Resume (replaying every dispatch after the client's sequence, then RESUMED), heartbeats and their
//! ACKs, and zlib-stream compression when asked. Tests script it: send dispatches, ask for a
//! reconnection (op 7), invalidate the session (op 9), close with a code, or stop acknowledging
//! heartbeats to make the connection a zombie. Everything the client sends is recorded.
//!
//! [`FakeDiscord`] starts both, the API's `GET /gateway/bot` naming the gateway, and gives a
//! [`crate::Discord`] builder on them.
//!
//! [`InteractionSigner`] signs HTTP interactions as Discord does, with a fixed test key pair.
//!
//! [`FakeDiscordApi`] is the REST API on [`bot_core::testing::fake_api::FakeApi`]: it checks
//! `Authorization: Bot <token>`, answers message creation, interaction callbacks and follow-ups
//! with Discord's shapes and `X-RateLimit-*` headers, keeps the application commands registered
//! (global and per guild: overwrite, list, delete one), and serves `GET /gateway/bot`.

mod gateway;
mod pair;
mod rest;
mod signer;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use gateway::{Connected, FakeGateway, Received};
pub use pair::FakeDiscord;
pub use rest::{CreatedMessage, FakeDiscordApi};
pub use signer::{InteractionSigner, button_press, message_create, select_menu, slash_command};

/// The bot user id the fakes report in READY and for `@me`.
pub const BOT_USER_ID: &str = "1000000000000000001";
/// The application id the fakes report.
pub const APPLICATION_ID: &str = "1000000000000000002";
/// How long the fakes' waits last before a test fails.
pub const WAIT: Duration = Duration::from_secs(20);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
