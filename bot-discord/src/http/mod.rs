//! The REST client: [`DiscordHttp`] on the client core ([`bot_core::api::ApiClient`]), with
//! Discord's own rate limits and a guard against its invalid request ban.
//!
//! - **Buckets**: every answer's `X-RateLimit-Bucket`, `-Remaining` and `-Reset-After` are
//!   remembered per route and major parameter (channel, guild, webhook); a call to a bucket with
//!   nothing remaining waits for its reset while calls to other buckets go on.
//! - **Global**: at most 50 requests per second by default (interaction responses and follow-ups
//!   excepted, as on Discord); a 429 with `X-RateLimit-Global` (or `"global": true`) pauses every
//!   global route for its `retry_after`.
//! - **Invalid requests**: 401, 403 and 429 (but the `shared` scope) are counted over 10 minutes;
//!   past the budget (9,000 by default, under Discord's 10,000 ban), calls are refused with
//!   [`ErrorKind::InvalidRequestLimit`](crate::ErrorKind::InvalidRequestLimit) until the window
//!   drains.
//! - **Retries** (the core's loop): 429 after `retry_after`, 5xx and connection failures with
//!   backoff. Message creation carries a `nonce` with `enforce_nonce`, so a retry never posts
//!   twice.
//! - **Maybe delivered**: a call that cannot be made idempotent (a `POST` without a nonce:
//!   follow-ups, interaction responses) is not sent again after a failure that may hide a
//!   delivery: a time-out, a connection broken after the request was written, a 500, 502 or
//!   504. It fails with [`Error::maybe_delivered`](crate::Error::maybe_delivered); a refused
//!   connection or a 503 is retried.
//! - **Long rate limits**: a 429 or a bucket that asks to wait longer than
//!   [`ConfigureApi::max_retry_after`] (or ends past what is left of the call's deadline) is not waited: the call fails at
//!   once with [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited) and the hint in
//!   [`Error::retry_after`](crate::Error::retry_after), so the runtime retries the handler later
//!   instead of a handler sleeping past its time-out.
//!
//! The calls, by area: [`messages`](DiscordHttp::create_message) (create, edit, typing),
//! [`interactions`](DiscordHttp::interaction_callback) (callback, follow-ups, the original
//! response), [`commands`](DiscordHttp::register_commands) (global and guild slash commands), and
//! [`gateway information`](DiscordHttp::gateway_bot).

mod builder;
mod client;
mod commands;
mod gateway;
mod interactions;
mod messages;
mod ratelimit;
mod route;
mod spec;

pub use bot_core::api::{
    ConfigureApi, DEFAULT_DEADLINE, DEFAULT_MAX_RETRY_AFTER, DEFAULT_TIMEOUT, default_retry_policy,
};
pub use builder::{DEFAULT_GLOBAL_PER_SECOND, DEFAULT_INVALID_BUDGET, DiscordHttpBuilder};
pub use client::DiscordHttp;
pub use commands::{ApplicationCommand, CommandOptionSpec, CommandSpec};
pub use ratelimit::{INVALID_REQUEST_BAN, INVALID_WINDOW};
pub use spec::ErrorBody;
