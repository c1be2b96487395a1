//! PostgreSQL: a durable [`Queue`](crate::Queue) shared by many processes, a conversation
//! [`StateStore`](crate::StateStore) and a bounded connection pool for handlers (feature
//! `postgres`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use bot_core::pg::{self, PgPool, PgQueue};
//!
//! # async fn run() -> Result<(), bot_core::Error> {
//! let pool = PgPool::from_env()?;          // DATABASE_URL
//! pg::migrate(&pool).await?;               // idempotent, safe from many processes at once
//! let queue = Arc::new(PgQueue::builder(&pool).build()?);
//! # let _ = queue; Ok(()) }
//! ```
//!
//! # How it works
//!
//! The techniques are those of the established PostgreSQL queues (River, Oban, graphile-worker,
//! pgmq): batched claims with `FOR UPDATE SKIP LOCKED` sized by the supervisor's demand plus a
//! small prefetch; completions batched per dispatcher turn and fenced by a lease token
//! (`DELETE ... USING unnest($ids, $tokens)`), so that a worker whose lease expired cannot
//! complete someone else's claim (such completions are counted as stale); deduplication by a
//! unique index in the same statement as the insert; leases that expire, extended while handlers
//! run, and a rescuer that returns expired ones; `LISTEN/NOTIFY` on one dedicated connection
//! outside the pool, debounced, with polling as the fallback.
//!
//! # Per-conversation ordering across processes
//!
//! What is guaranteed: the events of one conversation run one at a time, in the order in which
//! their pushes committed (the order in which the platform's requests were answered), across
//! all processes. Events pushed in one batch keep their order within it. Nothing is promised
//! between conversations, nor between pushes that were both still running: two webhooks of one
//! conversation that are in flight at once commit in some order, and that order is the one kept.
//!
//! A claim takes an event only if it is the oldest event of its conversation still in the queue
//! (the head of its lane, the smallest id) and no event of that conversation is leased. Retries
//! keep their place, so an event waiting for its retry is still the head and holds its
//! conversation. Dead letters move to their own table, which lets the conversation move on.
//!
//! That rule alone is not enough under concurrency, for two reasons.
//!
//! - Ids are taken when a row is inserted, not when it commits: a push that took an id and then
//!   committed after a later push of the same conversation would run first although it was
//!   answered last. So a push first locks one row per conversation in `botrt_lanes` (an upsert,
//!   in lane order so that batches never deadlock), in the same statement and before its events
//!   take their ids, and holds the lock to its commit: pushes of one conversation take their ids
//!   one commit after another, and id order within a conversation is commit order. Pushes of
//!   different conversations do not wait for each other. [`import`] and re-driven dead letters
//!   take the same locks.
//! - A claim sees a snapshot, and another claim not yet committed is invisible to it. Claims
//!   lock the events they take with `FOR UPDATE SKIP LOCKED`, so two claims running at once
//!   take different events; and a lease lives in a row of its own in `botrt_leases`, with a
//!   unique index on the conversation of every ordered lease, so a conversation can never hold
//!   two leases. An ordered claim holds one of two claim slots (an advisory lock on the
//!   conversations whose lane has that parity; the claim over every conversation holds both) to
//!   its commit and takes its snapshot once it holds it: it sees every lease that another claim
//!   of those conversations committed, and no such claim runs meanwhile, so its lease inserts
//!   need no conflict check (migration 13). A lease inserted by anything that holds no slot fails
//!   the claim that meets it at the unique index; the claimer retries.
//!
//! The claim is unchanged by the push locks (it still orders by id); what they cost is one
//! row update per conversation of a push, and pushes of one conversation that run at the same
//! time commit one after another.
//!
//! Pushes that wait while the process's writers are busy are written together, in the order they
//! came, as one statement (`queue/push.rs`): one commit for all of them, each answered with its
//! own count once it is committed. Within a group, events take their ids in the order of the
//! pushes, so two pushes of one conversation in one group keep the order in which they came.
//!
//! A push that announces itself with its `NOTIFY` (an idle queue's) commits without waiting for
//! the disk, so that it can be claimed at once, and is answered only once a second transaction
//! behind it on its connection, whose commit waits for the disk (migration 11,
//! `botrt_flushes`), has committed: a handler may start a millisecond before its event is on
//! disk, and a server crash before it is fails the push's webhook, whose retry runs it
//! again.
//!
//! # What a claim and a completion write
//!
//! A claim writes no event: it locks the events it takes and inserts one small row per event
//! into `botrt_leases` (id, conversation, token, expiry). Acknowledging deletes the lease and
//! the event; a retry deletes the lease and moves the event's `run_at`; releasing deletes the
//! lease alone. Every completion is fenced by the lease's token: a lease that expired and was
//! returned (or taken again) has no row with the old token, and the completion is stale. So the
//! big table's rows are written once, deleted once, and its indexes never get entries for a
//! lease (the figures at depth are in BENCHMARKS.md, issue 19).

//! # Bounds
//!
//! The queue holds at most [`PgQueueBuilder::queue_capacity`] events and
//! [`PgQueueBuilder::queue_capacity_bytes`] payload bytes. The check costs no statement: it
//! compares the last count of the table (every `figures_interval`, 5 s, while this process pushes,
//! once after each read of its figures, every second while pushes find it full) plus
//! this process's own pushes and completions since, so it is approximate: other processes'
//! pushes since the last count are not seen. A push that does not fit follows
//! [`PgQueueBuilder::overflow`]; refused, it is
//! [`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull) with a retry hint, and webhooks answer
//! 503 with `Retry-After`. Dead letters are deleted after
//! [`PgQueueBuilder::dead_letter_retention`] and beyond [`PgQueueBuilder::dead_letter_capacity`]
//! (the newest are kept), counted in `bot.dead_letters.pruned`.

mod error;
mod migrate;
mod notify;
mod pool;
mod queue;
mod state;
mod tls;
mod wakeup;

pub(crate) use error::db as db_error;
pub use migrate::{MIGRATIONS, migrate};
pub use pool::{CapacityCheck, DedicatedMessages, PgConnection, PgPool, PgPoolBuilder, PoolStats};
pub use queue::{PgQueue, PgQueueBuilder, QueueCounters, QueueStats, import};
pub use state::PgStateStore;
pub use tls::SslMode;

/// The PostgreSQL client, re-exported so that handlers can name its types (`Row`, `ToSql`).
pub use tokio_postgres;

/// The environment variable [`PgPool::from_env`] and [`PgQueue::from_env`] read.
pub const DATABASE_URL_ENV: &str = "DATABASE_URL";
