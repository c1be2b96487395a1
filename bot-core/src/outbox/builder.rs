//! [`OutboxBuilder`]: the outbox's schema, capacity, ordering, retries and retention.

use std::sync::Arc;
use std::time::Duration;

use super::handle::{Inner, Outbox};
use super::metrics::Counts;
use crate::error::Error;
use crate::limits::{Limits, Ordering, Overflow, RetryPolicy};
use crate::pg::{PgPool, PgQueue, migrate};

/// Default messages sent at once by one process.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// Default messages the outbox holds (all processes, all states).
pub const DEFAULT_CAPACITY: usize = 10_000_000;
/// Default payload bytes the outbox holds: room for the default capacity of text messages.
pub const DEFAULT_CAPACITY_BYTES: u64 = 16 << 30;
/// Default time a key is remembered: a campaign run again within it queues only what is new.
pub const DEFAULT_KEY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Default [`OutboxBuilder::max_send_wait`]: an hour.
pub const DEFAULT_MAX_SEND_WAIT: Duration = Duration::from_secs(3600);

/// The retry policy of outbox messages by default: 8 attempts, 1 s doubling up to 5 minutes,
/// 20 % jitter (the clients retry each call a few times within an attempt too).
pub fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(300),
        multiplier: 2.0,
        jitter: 0.2,
    }
}

/// Configures an [`Outbox`]; [`Outbox::builder`] starts one.
#[derive(Debug, Clone)]
#[must_use]
pub struct OutboxBuilder {
    pub(super) pool: PgPool,
    pub(super) schema: Option<String>,
    pub(super) ordering: Ordering,
    pub(super) max_in_flight: usize,
    pub(super) retry: RetryPolicy,
    pub(super) capacity: usize,
    pub(super) capacity_bytes: u64,
    pub(super) overflow: Overflow,
    pub(super) key_retention: Duration,
    pub(super) dead_letter_capacity: usize,
    pub(super) dead_letter_retention: Duration,
    pub(super) lease: Duration,
    pub(super) shutdown_timeout: Duration,
    pub(super) connections: usize,
    pub(super) max_send_wait: Duration,
}

impl Outbox {
    /// Starts configuring an outbox on `pool`'s database.
    pub fn builder(pool: &PgPool) -> OutboxBuilder {
        OutboxBuilder {
            pool: pool.clone(),
            schema: None,
            ordering: Ordering::Unordered,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            retry: default_retry_policy(),
            capacity: DEFAULT_CAPACITY,
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            overflow: Overflow::Reject,
            key_retention: DEFAULT_KEY_RETENTION,
            dead_letter_capacity: 100_000,
            dead_letter_retention: Duration::from_secs(14 * 24 * 3600),
            lease: Duration::from_secs(30),
            shutdown_timeout: Limits::default().shutdown_timeout,
            connections: 4,
            max_send_wait: DEFAULT_MAX_SEND_WAIT,
        }
    }
}

impl OutboxBuilder {
    /// The schema of the outbox's tables (default: the pool's schema followed by `_outbox`, as
    /// `public_outbox`). Letters, digits and `_` only.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// [`Ordering::Unordered`] (the default): messages are sent as they come, in parallel, the
    /// cheapest for campaigns. [`Ordering::PerConversation`]: the messages of one recipient are
    /// sent one at a time, in the order they were queued, across processes; a message waiting
    /// for its retry holds the recipient's later ones back. Every process of an outbox must use
    /// the same ordering.
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// Messages one process sends at once (default 512). Together with the latency of the
    /// platform's API it bounds a process's rate: 512 in flight at 50 ms is 10,240 a second.
    pub fn max_in_flight(mut self, messages: usize) -> Self {
        self.max_in_flight = messages;
        self
    }

    /// How failed sends are retried (default [`default_retry_policy`]); what still fails is a
    /// dead letter.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Messages the outbox holds at most, across processes (default 10,000,000); what a send
    /// beyond it does is the [`overflow`](Self::overflow) policy's. The check is the
    /// [`PgQueue`]'s: cheap, and up to a refresh late.
    pub fn capacity(mut self, messages: usize) -> Self {
        self.capacity = messages;
        self
    }

    /// Payload bytes the outbox holds at most, as PostgreSQL stores them (default 16 GiB, room
    /// for the default capacity of text messages); the bound that keeps rich messages from
    /// filling the disk. A send beyond it is handled as one beyond the capacity.
    pub fn capacity_bytes(mut self, bytes: u64) -> Self {
        self.capacity_bytes = bytes;
        self
    }

    /// What a send to a full outbox does: [`Overflow::Reject`] (the default: an error the
    /// caller sees, nothing queued), [`Overflow::Wait`] (waits for room up to a few seconds,
    /// then refuses), [`Overflow::DropNewest`] (sheds what does not fit, counted in
    /// [`super::Queued`] and in the outbox's counts). [`Overflow::DropOldest`] acts as `Reject`:
    /// a durable queue does not delete what it committed to send.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// How long a key is remembered (default 7 days): a message with the key of one queued
    /// within it is not queued again.
    pub fn key_retention(mut self, retention: Duration) -> Self {
        self.key_retention = retention;
        self
    }

    /// Dead letters kept at most (default 100,000; the newest are kept).
    pub fn dead_letter_capacity(mut self, dead_letters: usize) -> Self {
        self.dead_letter_capacity = dead_letters;
        self
    }

    /// How long dead letters are kept (default 14 days).
    pub fn dead_letter_retention(mut self, retention: Duration) -> Self {
        self.dead_letter_retention = retention;
        self
    }

    /// How long a sender's claim on a message lasts without being extended (default 30 s): how
    /// soon the messages of a killed process are sent by another.
    pub fn lease_duration(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long one send may take in all (default [`DEFAULT_MAX_SEND_WAIT`], an hour), its waits
    /// for its turn under the clients' rate limits included; past it the attempt fails as timed
    /// out and counts. A send that waited for the limits until its call's deadline without
    /// sending anything waits again without counting an attempt
    /// ([`OutboxCounts::waited`](super::OutboxCounts::waited)), so a campaign under a low limit
    /// takes as long as the limit requires instead of ending in dead letters; this bounds that.
    pub fn max_send_wait(mut self, wait: Duration) -> Self {
        self.max_send_wait = wait;
        self
    }

    /// How long [`super::OutboxSenders::shutdown`] waits for sends in flight (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Connections of the outbox's senders for claims, completions and upkeep (default 4),
    /// beside the pool's; queueing messages uses two more, and one more is the senders'
    /// `LISTEN` connection.
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// A queue on the outbox's tables: the senders' (claiming, woken by `LISTEN`) or the one
    /// messages are queued through (pushing only: two connections, no `LISTEN`).
    pub(super) fn queue(&self, admin: &PgPool, sending: bool) -> Result<PgQueue, Error> {
        PgQueue::builder(admin)
            .ordering(self.ordering)
            .max_attempts(self.retry.max_attempts)
            .queue_capacity(self.capacity)
            .queue_capacity_bytes(self.capacity_bytes)
            .overflow(self.overflow)
            .dedup_ttl(self.key_retention)
            .dead_letter_capacity(self.dead_letter_capacity)
            .dead_letter_retention(self.dead_letter_retention)
            .lease_duration(self.lease)
            // Claims of a quarter of the senders' window at least: a claim costs about the same
            // for 20 messages as for 200, and a sender frees its slots one by one.
            .prefetch((self.max_in_flight / 4).clamp(16, 1_000))
            .connections(if sending { self.connections } else { 2 })
            .listen(sending)
            .build()
    }

    /// Creates or updates the outbox's tables and starts its queue.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] for an invalid setting (a zero, an invalid schema name);
    /// [`crate::ErrorKind::Queue`] when the database cannot be reached or migrated.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub async fn build(self) -> Result<Outbox, Error> {
        if self.max_in_flight == 0 {
            return Err(Error::config("outbox: max_in_flight must be at least 1"));
        }
        if self.key_retention.is_zero() || self.dead_letter_retention.is_zero() {
            return Err(Error::config(
                "outbox: key_retention and dead_letter_retention must be above zero",
            ));
        }
        if self.max_send_wait.is_zero() {
            return Err(Error::config("outbox: max_send_wait must be above zero"));
        }
        self.retry.validate()?;
        let schema = self
            .schema
            .clone()
            .unwrap_or_else(|| format!("{}_outbox", self.pool.schema()));
        let admin = self.pool.with_schema(&schema, 2)?;
        migrate(&admin).await?;
        super::handle::prepare(&admin).await?;
        let queue = self.queue(&admin, false)?;
        Ok(Outbox {
            inner: Arc::new(Inner {
                queue: Arc::new(queue),
                admin,
                settings: self,
                counts: Arc::new(Counts::default()),
            }),
        })
    }
}
