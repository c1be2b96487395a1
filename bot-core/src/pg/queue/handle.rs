//! [`PgQueue`]: the handle, what it tells about the queue, its metrics and its shutdown.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use opentelemetry::KeyValue;
use tokio::task::JoinHandle;

use super::counters::{Counters, QueueCounters, QueueStats};
use super::inner::Inner;
use crate::error::Error;
use crate::pg::pool::PgPool;
use crate::queue::Queue;
use crate::telemetry::Telemetry;

/// The durable [`Queue`]: PostgreSQL tables shared by any number of processes.
///
/// Same semantics as [`crate::MemoryQueue`], and across processes: an event whose push returned
/// `Ok` is committed; it runs until acknowledged or dead-lettered, on whichever process claims it;
/// a process that dies loses nothing (its leases expire and the rescuer returns them); events of
/// one conversation run one at a time, in the order their pushes committed, across all processes.
/// The queue is bounded
/// ([`PgQueueBuilder::queue_capacity`](crate::pg::PgQueueBuilder::queue_capacity)) and so are its
/// dead letters. See the [module docs](crate::pg) for how.
///
/// Build it with [`PgQueue::builder`] (after [`crate::pg::migrate`]) or [`PgQueue::from_env`]. It
/// runs six long-lived tasks (claimer, `LISTEN` connection, debounced `NOTIFY`, rescuer, and two
/// writers that write the pushes waiting in line together, one statement and one commit for
/// many webhooks' events under load);
/// [`PgQueue::shutdown`] closes the queue, returns the claimed but unstarted events at once and
/// waits for the tasks.
pub struct PgQueue {
    pub(super) inner: Arc<Inner>,
    pub(super) tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgQueue")
            .field("schema", &self.inner.pool.schema())
            .field("ordered", &self.inner.ordered)
            .field("lease", &self.inner.lease)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

impl PgQueue {
    /// A queue with default settings on the database in `DATABASE_URL`, migrated.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when `DATABASE_URL` is missing or invalid;
    /// [`ErrorKind::Queue`](crate::ErrorKind::Queue) when the database cannot be reached or
    /// migrated.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub async fn from_env() -> Result<Self, Error> {
        let pool = PgPool::from_env()?;
        super::super::migrate(&pool).await?;
        Self::builder(&pool).build()
    }

    /// The pool the queue was built on (share it with [`crate::pg::PgStateStore`] and handlers).
    /// The queue's own statements use connections of their own beside it.
    #[allow(clippy::misnamed_getters)] // `inner.pool` is the queue's own; this is the handlers'
    pub fn pool(&self) -> &PgPool {
        &self.inner.handlers
    }

    /// Counts of what this process's queue did so far.
    pub fn counters(&self) -> QueueCounters {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(AtomicOrdering::Relaxed);
        QueueCounters {
            pushed: get(&c.pushed),
            duplicates: get(&c.duplicates),
            claims: get(&c.claims),
            claimed: get(&c.claimed),
            acked: get(&c.acked),
            nacked: get(&c.nacked),
            dead: get(&c.dead),
            released: get(&c.released),
            released_stale: get(&c.released_stale),
            rescued: get(&c.rescued),
            stale: get(&c.stale),
            redriven: get(&c.redriven),
            notifications: self
                .inner
                .wakeups
                .notifications
                .load(AtomicOrdering::Relaxed),
            refused_full: get(&c.refused_full),
            dropped_full: get(&c.dropped_full),
            dead_letters_pruned: get(&c.dead_letters_pruned),
            push_statements: get(&c.push_statements),
            figure_counts: get(&c.figure_counts),
        }
    }

    /// Reads the queue's figures from the tables now (and refreshes [`Queue::depth`]).
    ///
    /// Never a scan of the whole table (whose rows of handled events stay until a vacuum): the
    /// newest 50,000 ids and the queue's front (its smallest id) are counted exactly, through the
    /// primary key; when the front lies further back, `ready`, `retrying` and `bytes` of the ids
    /// between are estimated from 2,000 drawn among them, with a standard error of at most 1.1 %
    /// of their number (2.2 % at 95 %), and [`QueueStats::estimated`] says so. `leased` and
    /// `dead` are always counted (their tables are small).
    ///
    /// # Errors
    ///
    /// Fails when the database fails.
    pub async fn stats(&self) -> Result<QueueStats, Error> {
        self.inner.refresh_stats().await
    }

    /// The queue's figures as last read from the tables (by the maintenance task, or by
    /// [`PgQueue::stats`]), without a statement.
    pub(crate) fn cached_stats(&self) -> QueueStats {
        let s = self.inner.figures();
        let get = |a: &AtomicU64| a.load(AtomicOrdering::Relaxed);
        QueueStats {
            ready: get(&s.ready),
            retrying: get(&s.retrying),
            leased: get(&s.leased),
            dead: get(&s.dead),
            oldest_ready_age: std::time::Duration::from_millis(get(&s.oldest_ready_millis)),
            bytes: get(&s.bytes),
            estimated: s.estimated.load(AtomicOrdering::Relaxed),
        }
    }

    /// Whether the `LISTEN` connection is up (otherwise the queue polls).
    pub fn is_listening(&self) -> bool {
        self.inner.wakeups.listening.load(AtomicOrdering::Acquire)
    }

    /// Returns expired leases to the queue now (the rescuer does it every `rescue_interval`).
    /// Returns how many.
    ///
    /// # Errors
    ///
    /// Fails when the database fails.
    pub async fn rescue_expired(&self) -> Result<u64, Error> {
        self.inner.rescue().await
    }

    /// Deletes dead letters older than `dead_letter_retention` and all but the newest
    /// `dead_letter_capacity` now (the maintenance task does it every `prune_interval`).
    /// Returns how many.
    ///
    /// # Errors
    ///
    /// Fails when the database fails.
    pub async fn prune_dead_letters(&self) -> Result<u64, Error> {
        self.inner.prune_dead_letters().await
    }

    /// Exports the queue's and the pool's figures as metrics of `telemetry` (the bot's):
    /// `bot.queue.events{state}`, `bot.queue.oldest_ready_age`, `bot.queue.claims`,
    /// `bot.queue.push_statements`, `bot.queue.rescued`, `bot.queue.stale_completions`, `bot.queue.dedup_hits`,
    /// `bot.queue.bytes`, `bot.queue.full{outcome="refused"|"dropped"}`,
    /// `bot.dead_letters.pruned`, and the
    /// pool's `db.client.connection.count{state}`, `db.client.connection.max`,
    /// `db.client.connection.pending_requests`, `db.client.connection.timeouts`.
    pub fn register_metrics(&self, telemetry: &Telemetry) {
        let meter = telemetry.meter();
        let weak = Arc::downgrade(&self.inner);
        let w = weak.clone();
        let _events = meter
            .u64_observable_gauge("bot.queue.events")
            .with_description("Events in the PostgreSQL queue by state (all processes)")
            .with_callback(move |o| {
                if let Some(inner) = w.upgrade() {
                    let s = inner.figures();
                    for (state, v) in [
                        ("ready", &s.ready),
                        ("retrying", &s.retrying),
                        ("leased", &s.leased),
                        ("dead", &s.dead),
                    ] {
                        o.observe(
                            v.load(AtomicOrdering::Relaxed),
                            &[KeyValue::new("state", state)],
                        );
                    }
                }
            })
            .build();
        let w = weak.clone();
        let _age = meter
            .f64_observable_gauge("bot.queue.oldest_ready_age")
            .with_unit("s")
            .with_description("How long the oldest ready event has waited")
            .with_callback(move |o| {
                if let Some(inner) = w.upgrade() {
                    let ms = inner
                        .figures()
                        .oldest_ready_millis
                        .load(AtomicOrdering::Relaxed);
                    o.observe(ms as f64 / 1000.0, &[]);
                }
            })
            .build();
        let w = weak.clone();
        let _bytes = meter
            .u64_observable_gauge("bot.queue.bytes")
            .with_unit("By")
            .with_description("Payload bytes in the PostgreSQL queue (all processes)")
            .with_callback(move |o| {
                if let Some(inner) = w.upgrade() {
                    o.observe(inner.figures().bytes.load(AtomicOrdering::Relaxed), &[]);
                }
            })
            .build();
        let w = weak.clone();
        let _full = meter
            .u64_observable_counter("bot.queue.full")
            .with_description("Events refused or dropped because the PostgreSQL queue was full")
            .with_callback(move |o| {
                if let Some(inner) = w.upgrade() {
                    let c = &inner.counters;
                    for (outcome, v) in [("refused", &c.refused_full), ("dropped", &c.dropped_full)]
                    {
                        o.observe(
                            v.load(AtomicOrdering::Relaxed),
                            &[KeyValue::new("outcome", outcome)],
                        );
                    }
                }
            })
            .build();
        let counter =
            |name: &'static str, description: &'static str, pick: fn(&Counters) -> &AtomicU64| {
                let w = weak.clone();
                meter
                    .u64_observable_counter(name)
                    .with_description(description)
                    .with_callback(move |o| {
                        if let Some(inner) = w.upgrade() {
                            o.observe(pick(&inner.counters).load(AtomicOrdering::Relaxed), &[]);
                        }
                    })
                    .build()
            };
        let _ = counter("bot.queue.claims", "Claim statements run", |c| &c.claims);
        let _ = counter(
            "bot.queue.push_statements",
            "Statements that wrote pushes (pushes waiting together share one)",
            |c| &c.push_statements,
        );
        let _ = counter("bot.queue.rescued", "Expired leases returned", |c| {
            &c.rescued
        });
        let _ = counter(
            "bot.queue.stale_completions",
            "Completions whose lease was no longer held",
            |c| &c.stale,
        );
        let _ = counter(
            "bot.queue.dedup_hits",
            "Events skipped as duplicates",
            |c| &c.duplicates,
        );
        let _ = counter(
            "bot.dead_letters.pruned",
            "Dead letters deleted for their age or beyond the count kept",
            |c| &c.dead_letters_pruned,
        );
        self.inner.handlers.register_metrics(telemetry);
    }

    /// Closes the queue (as [`Queue::close`]), returns claimed but unstarted events to the
    /// database at once, and waits for the queue's tasks to end.
    ///
    /// [`crate::Bot::shutdown`] closes the queue, which starts the same release in the
    /// background; await this after it so that the process does not exit before the release
    /// is committed.
    pub async fn shutdown(&self) {
        self.close();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "postgres queue task failed");
            }
        }
    }
}

impl Drop for PgQueue {
    fn drop(&mut self) {
        self.inner.wakeups.closed.cancel();
    }
}
