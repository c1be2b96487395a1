//! Proactive messages that survive restarts: a durable outbox in PostgreSQL.
//!
//! Bots do not only answer: they notify, remind and broadcast. [`Outbox::send`] commits a
//! message to PostgreSQL before it returns; senders in any number of processes claim what is
//! due, send it through the platform's client, record the outcome and retry with back-off, so a
//! crash or a redeploy loses nothing and a send goes out once.
//!
//! - **Durable and shared**: the outbox is a [`PgQueue`](crate::pg::PgQueue) in a schema of its
//!   own (default: the pool's schema with `_outbox` appended), so it has the inbound queue's
//!   guarantees and speed: batched claims with `SKIP LOCKED`, leases extended while a send runs
//!   and returned when a process dies, batched completions fenced by lease tokens, `LISTEN/NOTIFY`
//!   wake-ups with polling behind them, a capacity with an [`Overflow`](crate::Overflow) policy,
//!   dead letters with retention.
//! - **Idempotency**: every message has a key. [`Outbox::send_many`] derives it from the campaign
//!   and the recipient, so that running a campaign again after a crash queues only what was not
//!   accepted the first time; [`OutboxMessage::key`] sets one of the caller's own. A key is
//!   remembered for [`OutboxBuilder::key_retention`]. The platform's own idempotency is derived
//!   from it too (LINE's `X-Line-Retry-Key`, Discord's nonce), so a sender killed after the
//!   platform accepted a message but before it recorded that does not deliver it twice
//!   (Messenger has no such key: such a message may be delivered twice there).
//! - **Retries and dead letters**: a failed send is retried with the sender's
//!   [`RetryPolicy`](crate::RetryPolicy) (a `Retry-After` is honoured); a refused one (a 4xx
//!   other than 429) and one that exhausts its attempts becomes a dead letter
//!   ([`Outbox::dead_letters`], [`Outbox::redrive`]).
//! - **Ordering**, when asked: [`Ordering::PerConversation`](crate::Ordering::PerConversation)
//!   sends the messages of one recipient one at a time, in the order they were queued, across
//!   processes; the default, [`Ordering::Unordered`](crate::Ordering::Unordered), sends them as
//!   they come, in parallel.
//! - **Campaigns**: [`Outbox::cancel`] removes the messages of a campaign not yet sent.
//! - **Rate limits** are the clients': a client whose limits are shared across processes keeps
//!   every sender of a channel under the platform's limit together.
//!
//! A bot with an outbox ([`crate::BotBuilder::outbox`]) runs the senders with its own platform
//! clients, offers [`Bot::send`](crate::Bot::send) and hands the [`Outbox`] to handlers as
//! shared state (`cx.state::<Outbox>()`). Another program (a web app, a cron job) builds an
//! [`Outbox`] on the same database and only queues: the bots' processes send.
//!
//! # Examples
//!
//! ```no_run
//! use bot_core::outbox::{Outbox, OutboxMessage};
//! use bot_core::pg::PgPool;
//! use bot_core::Platform;
//!
//! # async fn run() -> Result<(), bot_core::Error> {
//! let pool = PgPool::from_env()?;
//! let outbox = Outbox::builder(&pool).build().await?;
//! // Committed when this returns; a bot process with this outbox sends it.
//! outbox
//!     .send(OutboxMessage::new(Platform::LINE, "U4af4980629...", "Your order has shipped"))
//!     .await?;
//! // A campaign: run it again after a crash and only what was not queued is queued.
//! let users = ["U1", "U2", "U3"];
//! let report = outbox
//!     .send_many(
//!         "spring-sale",
//!         users.iter().map(|u| OutboxMessage::new(Platform::LINE, *u, "20 % off today")),
//!     )
//!     .await?;
//! println!("{} queued, {} already queued before", report.queued, report.duplicates);
//! # Ok(()) }
//! ```

mod builder;
mod handle;
mod message;
mod metrics;
mod sender;
#[cfg(test)]
mod tests;

pub use builder::{
    DEFAULT_CAPACITY, DEFAULT_CAPACITY_BYTES, DEFAULT_KEY_RETENTION, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_SEND_WAIT, OutboxBuilder, default_retry_policy,
};
pub use handle::{Outbox, OutboxSenders};
pub use message::{OutboxMessage, Queued};
pub use metrics::{OutboxCounts, OutboxStats};

/// The event kind name of an outbox message as it waits in the outbox's queue.
pub const OUTBOX_EVENT: &str = "outbox.send";
