//! NATS JetStream: a durable [`Queue`](crate::Queue) shared by any number of processes, for
//! deployments that already run NATS or outgrow one PostgreSQL server (feature `nats`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use bot_core::nats::{JetStreamQueue, async_nats};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("127.0.0.1:4222").await?;
//! let queue = Arc::new(JetStreamQueue::builder(client).name("mybot").build().await?);
//! # let _ = queue; Ok(()) }
//! ```
//!
//! # How it works
//!
//! - **Durable streams.** Events are messages of work-queue streams on file storage, one per
//!   partition (`<name>_p<k>`, subject `<name>.p.<k>`). A push publishes each event and
//!   answers only once JetStream acknowledged the write, so an event answered 200 to the
//!   platform is on disk (on `replicas` servers in a cluster). An event leaves its stream when
//!   it is acknowledged, which happens only after its handler finished. A stream per partition
//!   rather than one stream with a filtered consumer per partition: nats-server finds a
//!   filtered consumer's next message by stepping over the other partitions' messages, which
//!   made the server's work per message grow with the partitions.
//! - **Deduplication.** Each event is published with `Nats-Msg-Id: <platform>:<event id>`. The
//!   server drops a second publish of the same id within the stream's duplicate window
//!   ([`JetStreamQueueBuilder::duplicate_window`], default 2 minutes) and the push counts it
//!   as a duplicate. Each partition's stream keeps its own window, which is enough: an event's
//!   redelivery has the same conversation, so it goes to the same partition. (So the same id
//!   in two conversations of different partitions is queued twice; the PostgreSQL and memory
//!   queues deduplicate across the whole queue.) The window is the whole of it: the same id
//!   pushed again after the window is queued and handled again (handlers stay idempotent, as
//!   with every at-least-once queue). The server keeps the ids of the window in memory, about
//!   100 bytes each.
//! - **A full partition.** Each partition's stream holds `ceil(capacity / partitions)` events;
//!   a push beyond it is refused (`QueueFull`) whatever [`crate::Limits::overflow`] says: the
//!   server discards new messages, and the queue neither waits nor sheds. Keep the share
//!   large: the default 100,000 over 1,024 partitions is 98 each. A batch refused part-way
//!   keeps what other partitions stored; its retry is deduplicated.
//! - **Partitions and ownership.** A conversation is hashed (FNV-1a of platform and
//!   conversation) onto one of [`JetStreamQueueBuilder::partitions`] partitions. Each
//!   partition is consumed by one process at a time: the process that created its key
//!   `p.<k>` in the key-value bucket `<name>_owners`, whose entries expire after the ownership
//!   lease unless renewed (every quarter of it). Processes count each other through keys
//!   `m.<member>` in the same bucket and each claims its fair share; one that joins gets
//!   partitions from the others, which give them up once their running handlers finished.
//! - **Fencing.** The owner of a partition consumes its stream through a durable pull consumer
//!   named after its claim (`p<k>g<revision>`), created after deleting every earlier consumer
//!   of the partition. A process that lost the partition (crashed, paused, cut off) can no longer
//!   acknowledge anything of it (its consumer is gone), and its completions count as stale.
//!   The new consumer starts at the beginning of the partition: since acknowledged messages
//!   are deleted from a work-queue stream, that is exactly every event not yet handled, in
//!   order.
//! - **Per-conversation ordering.** The consumer delivers a partition in stream order, which
//!   within a conversation is push order. The owner keeps the delivered messages in one lane
//!   per conversation and hands out only a lane's head, and only while no other event of the
//!   conversation is running or waiting for its retry: one event at a time per conversation,
//!   in order, across processes (a partition, and so a conversation, has one owner at a
//!   time). What is kept is the order JetStream stored the publishes in; two webhooks of one
//!   conversation in flight at once are stored in some order, and that order is the one kept.
//! - **Retries and dead letters.** A failed attempt is `nak`ed with the runtime's back-off as
//!   its delay; JetStream redelivers it after the delay and its conversation waits for it.
//!   The attempt is JetStream's delivery count. After the runtime's last attempt the event is
//!   stored in the dead letters' stream `<name>_dead` (subject `<name>.dead`, JSON
//!   [`DeadLetter`](crate::queue::DeadLetter)s, the oldest dropped beyond
//!   [`JetStreamQueueBuilder::dead_letter_capacity`]) and only then acknowledged. The console
//!   reads them, and so can any NATS client; [`Queue::redrive`](crate::Queue::redrive)
//!   publishes them again.
//! - **Leases.** A delivered message must be acknowledged within `AckWait`
//!   ([`JetStreamQueueBuilder::ack_wait`], default 60 s); the supervisor extends the leases of
//!   running handlers every third of it (`+WPI`). Messages waiting behind their conversation's
//!   head longer than that are redelivered to the owner, which recognises and ignores the copy.
//!
//! # Bounds
//!
//! Each partition's consumer has at most [`JetStreamQueueBuilder::partition_in_flight`]
//! messages delivered and unacknowledged (`max_ack_pending`), fetched
//! [`JetStreamQueueBuilder::fetch_batch`] at a time: a process holds at most
//! `partition_in_flight` × its partitions. The queue holds at most
//! [`JetStreamQueueBuilder::capacity`] events, shared evenly by the partitions: each
//! partition's stream holds at most `ceil(capacity / partitions)` (discard policy `new`). A
//! push to a full partition fails with [`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull)
//! and a retry hint, and webhooks answer 503 with `Retry-After`, while other partitions still
//! take events.
//!
//! # What differs from the PostgreSQL queue
//!
//! - A batch is not one transaction: a push that fails part-way has stored its first events.
//!   The platform's redelivery of the batch is deduplicated within the window, so nothing is
//!   queued twice then.
//! - After a crash, its partitions wait for the ownership lease to run out (default 10 s)
//!   before another process takes them over; a retry's remaining delay is not kept across the
//!   takeover, and its attempt count starts again with the new consumer.
//! - A conversation whose head waits for a retry holds back the rest of its own lane only; but
//!   a partition holds at most `partition_in_flight` unacknowledged messages, so a lane longer
//!   than that stalls its partition until the head is done.
//! - Concurrency across processes is bounded by the partitions: more processes than
//!   partitions leave some idle.
//! - The capacity is per partition (its share): a conversation that floods its partition is
//!   refused before the queue as a whole is full.
//!
//! The rooms: `config.rs` (builder), `setup.rs` (streams, bucket, names, partition hash, depth),
//! `publish.rs` (ingress), `consume.rs` (a partition's consumer, acknowledgements),
//! `order.rs` (per-conversation lanes), `owner.rs` (partition ownership), `dead.rs` (dead
//! letters), `error.rs` (error mapping), `queue_impl.rs` (the `Queue` trait), `handle.rs`
//! ([`JetStreamQueue`]).

mod config;
mod consume;
mod dead;
mod error;
mod handle;
mod order;
mod owner;
mod publish;
mod queue_impl;
mod setup;

pub use config::JetStreamQueueBuilder;
pub use handle::{JetStreamCounters, JetStreamQueue};

/// The NATS client, re-exported so that applications connect with the version this crate uses.
pub use async_nats;

/// The environment variable naming the NATS server (`nats://127.0.0.1:4222` when unset), read by
/// the examples and tools that connect for you.
pub const NATS_URL_ENV: &str = "NATS_URL";
