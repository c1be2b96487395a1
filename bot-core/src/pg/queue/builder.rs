//! [`PgQueueBuilder`]: the queue's settings, their defaults and checks, and the start of its
//! tasks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::capacity::SizeBase;
use super::counters::{Counters, StatsCell};
use super::handle::PgQueue;
use super::inner::Inner;
use super::sql::STATS_INTERVAL;
use crate::error::Error;
use crate::limits::{Limits, Ordering, Overflow};
use crate::pg::notify;
use crate::pg::pool::PgPool;
use crate::pg::wakeup::Wakeups;

/// Default connections of the queue's own for pushes, claims and upkeep.
const DEFAULT_CONNECTIONS: usize = 4;
/// The default statement time-out is half the lease, at most this.
const MAX_DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default byte capacity: the payloads of the queued events, as stored.
const DEFAULT_CAPACITY_BYTES: u64 = 1 << 30;
/// Default age after which a dead letter is pruned.
const DEFAULT_DEAD_LETTER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Default lease: long enough that the supervisor's extensions (every third of it) are rare,
/// short enough that a crashed process's events come back quickly.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl PgQueue {
    /// Starts configuring a queue on `pool`'s schema (migrated with [`crate::pg::migrate`]).
    pub fn builder(pool: &PgPool) -> PgQueueBuilder {
        PgQueueBuilder {
            pool: pool.clone(),
            ordering: Ordering::PerConversation,
            lease: DEFAULT_LEASE,
            max_attempts: Limits::default().retry.max_attempts,
            prefetch: 16,
            max_batch: 1000,
            poll_interval: Duration::from_millis(500),
            rescue_interval: Duration::from_secs(1),
            dedup_ttl: Limits::default().dedup_ttl,
            push_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(5),
            notify_debounce: Duration::from_millis(2),
            listen: true,
            connections: DEFAULT_CONNECTIONS,
            statement_timeout: None,
            capacity: Limits::default().queue_capacity,
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            overflow: Overflow::Reject,
            dead_letter_capacity: Limits::default().dead_letter_capacity,
            dead_letter_retention: DEFAULT_DEAD_LETTER_RETENTION,
            prune_interval: Duration::from_secs(10),
            figures_interval: STATS_INTERVAL,
        }
    }
}

/// Configures a [`PgQueue`].
#[must_use]
#[derive(Debug, Clone)]
pub struct PgQueueBuilder {
    pool: PgPool,
    ordering: Ordering,
    lease: Duration,
    max_attempts: u32,
    prefetch: usize,
    max_batch: usize,
    poll_interval: Duration,
    rescue_interval: Duration,
    dedup_ttl: Duration,
    push_timeout: Duration,
    retry_after: Duration,
    notify_debounce: Duration,
    listen: bool,
    connections: usize,
    statement_timeout: Option<Duration>,
    capacity: usize,
    capacity_bytes: u64,
    overflow: Overflow,
    dead_letter_capacity: usize,
    dead_letter_retention: Duration,
    prune_interval: Duration,
    figures_interval: Duration,
}

impl PgQueueBuilder {
    /// Takes `ordering`, `dedup_ttl`, `retry.max_attempts`, `queue_capacity`, `overflow` and
    /// `dead_letter_capacity` from the bot's limits.
    pub fn limits(mut self, limits: &Limits) -> Self {
        self.ordering = limits.ordering;
        self.dedup_ttl = limits.dedup_ttl;
        self.max_attempts = limits.retry.max_attempts;
        self.capacity = limits.queue_capacity;
        self.overflow = limits.overflow;
        self.dead_letter_capacity = limits.dead_letter_capacity;
        self
    }

    /// Events the queue holds at most, in any state, across all processes (default 100,000, as
    /// [`Limits::queue_capacity`]). A push that does not fit is handled by the
    /// [`overflow`](Self::overflow) policy.
    ///
    /// The check costs no statement: it compares the last count of the table (refreshed every
    /// [`figures_interval`](Self::figures_interval) while this process pushes, every
    /// `rescue_interval` while pushes find the queue full) plus what this process pushed and
    /// completed since. So the queue can exceed it by what the other processes push between two
    /// counts (and, for a process that had not pushed for longer than `figures_interval`, until
    /// the count that its first push calls for, at the next maintenance tick), and a queue drained by
    /// other processes takes up to one refresh to accept pushes again.
    /// [`import`](crate::pg::import) ignores it.
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.capacity = events;
        self
    }

    /// Payload bytes the queue holds at most, as PostgreSQL stores them (default 1 GiB),
    /// estimated as [`queue_capacity`](Self::queue_capacity) is: the bound that keeps a flood of
    /// large events from filling the disk.
    pub fn queue_capacity_bytes(mut self, bytes: u64) -> Self {
        self.capacity_bytes = bytes;
        self
    }

    /// What a push that does not fit does (default [`Overflow::Reject`]):
    /// - [`Overflow::Reject`]: the batch is refused whole as
    ///   [`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull) with `retry_after` (webhooks answer
    ///   503 with `Retry-After`).
    /// - [`Overflow::Wait`]: waits for room (re-checking at each refresh of the figures) up to
    ///   `push_timeout`, then refuses as `Reject` does.
    /// - [`Overflow::DropNewest`]: the events of the batch beyond the room are dropped and
    ///   counted in [`PushReport::dropped_newest`](crate::queue::PushReport::dropped_newest).
    /// - [`Overflow::DropOldest`]: refuses as `Reject` does. A durable queue never deletes
    ///   events it accepted (other processes may be running them) to make room.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Dead letters kept at most; the maintenance task deletes the oldest beyond it every
    /// `prune_interval` (default 10,000, as [`Limits::dead_letter_capacity`]; 0 keeps none).
    pub fn dead_letter_capacity(mut self, dead_letters: usize) -> Self {
        self.dead_letter_capacity = dead_letters;
        self
    }

    /// Age after which a dead letter is deleted by the maintenance task (default 7 days): dead
    /// letters hold whole payloads, reply tokens included.
    pub fn dead_letter_retention(mut self, retention: Duration) -> Self {
        self.dead_letter_retention = retention;
        self
    }

    /// How often the maintenance task prunes dead letters and idle conversation locks (default
    /// 10 s); dedup keys every `dedup_ttl / 60` if that is longer, and every `prune_interval`
    /// again while a prune leaves some behind.
    pub fn prune_interval(mut self, interval: Duration) -> Self {
        self.prune_interval = interval;
        self
    }

    /// How often the maintenance task counts the queue's figures (default 5 s), while they are
    /// needed: this process pushed since the last count (its capacity check adds its own pushes
    /// to that count, not the other processes'), or they were read since
    /// ([`Queue::depth`](crate::Queue::depth), the gauges of
    /// [`PgQueue::register_metrics`](crate::pg::PgQueue::register_metrics), the outbox's
    /// figures). Every `rescue_interval` instead while pushes find the queue full; and a count
    /// that took long (a backlog of millions) is repeated at most every 50 times its duration.
    ///
    /// A process that only consumes and whose figures nobody reads counts once, when it starts:
    /// worker processes do not each count a backlog every few seconds. A read that comes after
    /// such a quiet spell gets the figures as last counted and calls for a count, which the next
    /// read sees (the count runs at the next maintenance tick): gauges scraped or exported every
    /// minute show the count their previous collection called for, up to a minute old.
    /// [`PgQueue::stats`](crate::pg::PgQueue::stats) counts at once, and so does a shutdown's
    /// report ([`Queue::depth_now`](crate::Queue::depth_now)).
    pub fn figures_interval(mut self, interval: Duration) -> Self {
        self.figures_interval = interval;
        self
    }

    /// Attempts after which an event whose lease expired (its process died while running it)
    /// is dead-lettered instead of returned (default 5, as [`crate::RetryPolicy`]).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Per-conversation ordering (the default) or none.
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// How long a claim lasts unless extended (default 30 s). The supervisor extends the leases
    /// of running handlers every third of it; a crashed process's events come back after it.
    pub fn lease_duration(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Events claimed beyond the supervisor's demand, kept for its next pull (default 16).
    pub fn prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Events claimed by one statement at most (default 1000).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// How often an idle claimer looks for events without a wake-up (default 500 ms); the
    /// fallback when a `NOTIFY` is missed, and what notices retries coming due.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How often the rescuer returns expired leases (default 1 s).
    pub fn rescue_interval(mut self, interval: Duration) -> Self {
        self.rescue_interval = interval;
        self
    }

    /// How long an event id is remembered for deduplication (default 10 minutes).
    pub fn dedup_ttl(mut self, ttl: Duration) -> Self {
        self.dedup_ttl = ttl;
        self
    }

    /// How long a push may take before it is refused as unavailable (default 5 s).
    pub fn push_timeout(mut self, timeout: Duration) -> Self {
        self.push_timeout = timeout;
        self
    }

    /// The `Retry-After` a refused push suggests (default 5 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// At most one `NOTIFY` per this interval from this process (default 2 ms): `NOTIFY`
    /// serialises commits, so pushes share them.
    pub fn notify_debounce(mut self, debounce: Duration) -> Self {
        self.notify_debounce = debounce;
        self
    }

    /// Whether to `LISTEN` for pushes of other processes (default true); without it the queue
    /// only polls.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Connections of the queue's own for pushes, claims and upkeep (default 4), beside the pool
    /// it is built on, which stays the handlers'. Two more are kept for acknowledgements and
    /// lease extensions alone. Count them all against `max_connections`
    /// ([`PgPool::check_capacity`] does, once the queue is built).
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// How long one queue statement may run (default half the lease, at most 10 s): the server
    /// cancels it then (`statement_timeout` on the queue's connections), and the client gives
    /// up waiting for it, or for a connection, as long. It must be shorter than the lease, so
    /// that a stuck acknowledgement or extension is retried before the lease lapses.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// Builds the queue and starts its tasks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when a duration is zero, `max_batch`,
    /// `connections` or a capacity is zero, the statement time-out is not shorter than the lease,
    /// or no Tokio runtime is running.
    pub fn build(self) -> Result<PgQueue, Error> {
        if self.lease < Duration::from_millis(100) {
            return Err(Error::config(
                "postgres queue: lease_duration must be at least 100 ms",
            ));
        }
        if self.max_batch == 0
            || self.poll_interval.is_zero()
            || self.rescue_interval.is_zero()
            || self.push_timeout.is_zero()
            || self.prune_interval.is_zero()
            || self.figures_interval.is_zero()
        {
            return Err(Error::config(
                "postgres queue: max_batch, poll_interval, rescue_interval, push_timeout, prune_interval and figures_interval must be above zero",
            ));
        }
        if self.capacity == 0 || self.capacity_bytes == 0 {
            return Err(Error::config(
                "postgres queue: queue_capacity and queue_capacity_bytes must be at least 1",
            ));
        }
        let statement_timeout = self
            .statement_timeout
            .unwrap_or_else(|| (self.lease / 2).min(MAX_DEFAULT_STATEMENT_TIMEOUT));
        if statement_timeout.is_zero() || statement_timeout >= self.lease {
            return Err(Error::config(
                "postgres queue: statement_timeout must be above zero and shorter than lease_duration",
            ));
        }
        if self.connections == 0 {
            return Err(Error::config(
                "postgres queue: connections must be at least 1",
            ));
        }
        let queue_pool =
            self.pool
                .derive_for_queue(self.connections, statement_timeout, "queue")?;
        let reserved = self
            .pool
            .derive_for_queue(2, statement_timeout, "queue completions")?;
        // The server's cancel comes first and says why; the client's bound catches a server
        // that does not answer at all.
        let client_timeout =
            statement_timeout + (statement_timeout / 10).min(Duration::from_secs(1));
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config("postgres queue: build it inside a Tokio runtime (it starts tasks)")
        })?;
        let inner = Arc::new(Inner {
            wakeups: Arc::new(Wakeups::new(queue_pool.clone(), self.notify_debounce)),
            pool: queue_pool,
            reserved,
            handlers: self.pool,
            client_timeout,
            ordered: self.ordering == Ordering::PerConversation,
            lease: self.lease,
            max_attempts: self.max_attempts,
            prefetch: self.prefetch,
            max_batch: self.max_batch,
            poll_interval: self.poll_interval,
            rescue_interval: self.rescue_interval,
            dedup_ttl: self.dedup_ttl,
            push_timeout: self.push_timeout,
            retry_after: self.retry_after,
            capacity: u64::try_from(self.capacity).unwrap_or(u64::MAX),
            capacity_bytes: self.capacity_bytes,
            overflow: self.overflow,
            dead_letter_capacity: u64::try_from(self.dead_letter_capacity).unwrap_or(u64::MAX),
            dead_letter_retention: self.dead_letter_retention,
            prune_interval: self.prune_interval,
            figures_interval: self.figures_interval,
            buffer: Mutex::new(VecDeque::new()),
            demand: AtomicUsize::new(0),
            claim_wanted: Notify::new(),
            delivered: Notify::new(),
            pulls_stopped: AtomicBool::new(false),
            counters: Counters::default(),
            stats: StatsCell::default(),
            size: Mutex::new(SizeBase::default()),
            wants_room: AtomicBool::new(false),
            figures_read: AtomicBool::new(false),
            stats_refreshed: Notify::new(),
            refreshing: tokio::sync::Mutex::new(()),
            push_line: super::push::PushLine::default(),
        });
        // Four long-lived tasks per queue, not per-message work; they end when it closes.
        #[allow(clippy::disallowed_methods)]
        let mut tasks = vec![
            runtime.spawn(inner.clone().run_claimer()),
            runtime.spawn(inner.clone().run_maintenance()),
            runtime.spawn(notify::run_notifier(inner.wakeups.clone())),
        ];
        if self.listen {
            #[allow(clippy::disallowed_methods)]
            tasks.push(runtime.spawn(notify::run_listener(inner.wakeups.clone())));
        }
        for _ in 0..super::push::PUSH_WRITERS {
            // Long-lived, a fixed number per queue: they write pushes, one statement at a time.
            #[allow(clippy::disallowed_methods)]
            tasks.push(runtime.spawn(inner.clone().run_push_writer()));
        }
        Ok(PgQueue {
            inner,
            tasks: Mutex::new(tasks),
        })
    }
}
