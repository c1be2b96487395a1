//! [`PgQueue`]: the durable queue, shared by any number of processes.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::KeyValue;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::types::{ToSql, Type};
use tokio_util::sync::CancellationToken;

use super::error;
use super::notify;
use super::pool::PgPool;
use crate::error::{Error, ErrorKind};
use crate::event::{Event, Timestamp};
use crate::limits::{Limits, Ordering, Overflow};
use crate::queue::{Completed, Dead, DeadLetter, Delivery, Lease, Nack, PushReport, Queue};
use crate::telemetry::Telemetry;

// The push locks the row of each of its conversations in `botrt_lanes` (in lane order, so that
// two batches never wait for each other in a circle) before anything else: the lock is held to
// the commit, so a later push of the same conversation takes its ids only after this one
// committed, and ids within a conversation follow commit order. The gate `(SELECT count(*) FROM
// locked)` is an init plan, run once before the first row of the dedup insert.
const PUSH: &str = "
WITH input AS (
    SELECT i.*, hashtextextended(i.platform || chr(31) || i.conversation, 0) AS lane
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
        WITH ORDINALITY AS i(platform, event_id, conversation, payload, ord)
), locked AS (
    INSERT INTO botrt_lanes AS l (lane)
    SELECT DISTINCT lane FROM input ORDER BY lane
    ON CONFLICT (lane) DO UPDATE SET pushed_at = excluded.pushed_at
    RETURNING 1
), fresh AS (
    INSERT INTO botrt_dedup (platform, event_id)
    SELECT platform, event_id FROM input
    WHERE (SELECT count(*) FROM locked) > 0
    ON CONFLICT DO NOTHING
    RETURNING platform, event_id
), firsts AS (
    SELECT DISTINCT ON (i.platform, i.event_id) i.*
    FROM input i JOIN fresh f ON f.platform = i.platform AND f.event_id = i.event_id
    ORDER BY i.platform, i.event_id, i.ord
), inserted AS (
    INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
    SELECT lane, platform, event_id, conversation, payload::json
    FROM firsts ORDER BY ord
    RETURNING 1
)
SELECT count(*) FROM inserted";

// Imported rows come from a temporary table filled by `COPY`, in the order they were written:
// a temporary table is never scanned in parallel nor from a synchronised starting point.
const IMPORT_TABLE: &str = "
CREATE TEMPORARY TABLE botrt_import (platform text, event_id text, conversation text, payload text)
ON COMMIT DROP";
const IMPORT_COPY: &str = "COPY botrt_import FROM STDIN (FORMAT binary)";
// Locks its conversations as a push does, so that pushes of them commit before or after it.
const IMPORT: &str = "
WITH locked AS (
    INSERT INTO botrt_lanes AS l (lane)
    SELECT DISTINCT hashtextextended(platform || chr(31) || conversation, 0) FROM botrt_import
    ORDER BY 1
    ON CONFLICT (lane) DO UPDATE SET pushed_at = excluded.pushed_at
    RETURNING 1
)
INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
SELECT hashtextextended(platform || chr(31) || conversation, 0), platform, event_id,
       conversation, payload::json
FROM botrt_import
WHERE (SELECT count(*) FROM locked) > 0";

const CLAIM: &str = "SELECT id, attempts, payload FROM botrt_claim($1, $2, $3, $4)";

// Completions find their rows through the primary key (`e.id = ANY($1)`) and join the tokens
// in a hash, whatever the size of the table: joined on `e.id = c.id` alone the planner picks a
// sequential scan once a batch is large. They test no `state`: only a leased row has a token
// (every way back to waiting clears it), and a state filter, estimated from statistics taken
// while everything was waiting, makes the planner expect one row and compare every row with
// every id.
const ACK: &str = "
DELETE FROM botrt_events e USING unnest($1::bigint[], $2::bigint[]) AS c(id, token)
WHERE e.id = ANY($1::bigint[]) AND e.id = c.id AND e.lease_token = c.token";

const NACK: &str = "
UPDATE botrt_events e
SET state = 0, run_at = now() + c.delay_ms * interval '1 millisecond', last_error = c.error,
    lease_token = NULL, lease_expires_at = NULL
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[]) AS c(id, token, delay_ms, error)
WHERE e.id = ANY($1::bigint[]) AND e.id = c.id AND e.lease_token = c.token";

const DEAD: &str = "
WITH d AS (
    DELETE FROM botrt_events e USING unnest($1::bigint[], $2::bigint[], $3::text[]) AS c(id, token, error)
    WHERE e.id = ANY($1::bigint[]) AND e.id = c.id AND e.lease_token = c.token
    RETURNING e.id, e.platform, e.event_id, e.conversation, e.payload, e.attempts, c.error
)
INSERT INTO botrt_dead_letters (queue_id, platform, event_id, conversation, payload, attempts, error)
SELECT id, platform, event_id, conversation, payload, attempts, error FROM d ORDER BY id
RETURNING queue_id, attempts, (extract(epoch FROM failed_at) * 1000)::bigint";

const RELEASE: &str = "
UPDATE botrt_events e
SET state = 0, run_at = now(), attempts = greatest(e.attempts - 1, 0), lease_token = NULL,
    lease_expires_at = NULL
FROM unnest($1::bigint[], $2::bigint[]) AS c(id, token)
WHERE e.id = ANY($1::bigint[]) AND e.id = c.id AND e.lease_token = c.token";

const EXTEND: &str = "
UPDATE botrt_events e SET lease_expires_at = now() + $3::bigint * interval '1 millisecond'
FROM unnest($1::bigint[], $2::bigint[]) AS c(id, token)
WHERE e.id = ANY($1::bigint[]) AND e.id = c.id AND e.lease_token = c.token";

// Expired leases go back to the queue, except those of a last attempt: an event whose handler
// takes its process down every time would otherwise crash one process after another forever.
const RESCUE: &str = "
WITH expired AS (
    SELECT id FROM botrt_events
    WHERE state = 1 AND lease_expires_at < now()
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM botrt_events e USING expired x
    WHERE e.id = x.id AND e.attempts >= $1
    RETURNING e.id, e.platform, e.event_id, e.conversation, e.payload, e.attempts
), dead AS (
    INSERT INTO botrt_dead_letters (queue_id, platform, event_id, conversation, payload, attempts, error)
    SELECT id, platform, event_id, conversation, payload, attempts,
           'lease expired on the last attempt (did its process die?)'
    FROM gone ORDER BY id
    RETURNING 1
), back AS (
    UPDATE botrt_events e
    SET state = 0, run_at = now(), lease_token = NULL, lease_expires_at = NULL,
        last_error = 'lease expired'
    FROM expired x
    WHERE e.id = x.id AND e.attempts < $1
    RETURNING 1
)
SELECT (SELECT count(*) FROM back), (SELECT count(*) FROM dead)";

const DEAD_LETTERS: &str = "
SELECT payload::text, attempts, error, (extract(epoch FROM failed_at) * 1000)::bigint
FROM botrt_dead_letters ORDER BY id LIMIT $1";

const REDRIVE: &str = "
WITH d AS (
    DELETE FROM botrt_dead_letters WHERE id IN (
        SELECT id FROM botrt_dead_letters ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
    )
    RETURNING id, platform, event_id, conversation, payload,
              hashtextextended(platform || chr(31) || conversation, 0) AS lane
), locked AS (
    -- As a push: re-driven events join the end of their conversations in commit order.
    INSERT INTO botrt_lanes AS l (lane)
    SELECT DISTINCT lane FROM d ORDER BY lane
    ON CONFLICT (lane) DO UPDATE SET pushed_at = excluded.pushed_at
    RETURNING 1
), inserted AS (
    INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
    SELECT lane, platform, event_id, conversation, payload
    FROM d
    WHERE (SELECT count(*) FROM locked) > 0
    ORDER BY id
    RETURNING 1
)
SELECT count(*) FROM inserted";

const PRUNE_DEDUP: &str =
    "DELETE FROM botrt_dedup WHERE seen_at < now() - $1::bigint * interval '1 millisecond'";

// Dead letters older than $1 ms, and all but the newest $2, at most $3 per statement (short
// transactions; the maintenance task runs a few in a row when there are more).
const PRUNE_DEAD: &str = "
WITH doomed AS (
    SELECT id FROM botrt_dead_letters
    WHERE failed_at < now() - $1::bigint * interval '1 millisecond'
       OR id <= (SELECT id FROM botrt_dead_letters ORDER BY id DESC OFFSET $2 LIMIT 1)
    ORDER BY id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM botrt_dead_letters d USING doomed x WHERE d.id = x.id
    RETURNING 1
)
SELECT count(*) FROM gone";

// A conversation's lock row is only a lock: deleting it is safe at any time (a push holding it
// makes the delete wait, and the next push makes it again), so idle ones go.
const PRUNE_LANES: &str = "
WITH idle AS (
    SELECT lane FROM botrt_lanes
    WHERE pushed_at < now() - $1::bigint * interval '1 millisecond'
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM botrt_lanes l USING idle i WHERE l.lane = i.lane
    RETURNING 1
)
SELECT count(*) FROM gone";

/// Rows one pruning statement deletes at most.
const PRUNE_BATCH: i64 = 10_000;
/// Pruning statements per table and maintenance round at most.
const PRUNE_ROUNDS: usize = 10;
/// How long a conversation's lock row outlives its last push.
const LANE_IDLE: Duration = Duration::from_secs(600);

const STATS: &str = "
SELECT count(*) FILTER (WHERE state = 0 AND run_at <= now()),
       count(*) FILTER (WHERE state = 0 AND run_at > now()),
       count(*) FILTER (WHERE state = 1),
       coalesce(extract(epoch FROM now() - min(enqueued_at)
           FILTER (WHERE state = 0 AND run_at <= now())), 0)::float8,
       (SELECT count(*) FROM botrt_dead_letters),
       coalesce(sum(pg_column_size(payload)), 0)::bigint
FROM botrt_events";

/// How often the rescuer refreshes the figures behind [`Queue::depth`], the capacity check and
/// the gauges; every `rescue_interval` instead while pushes find the queue full.
const STATS_INTERVAL: Duration = Duration::from_secs(5);
/// Durations in SQL intervals are capped at this (about 100 years), so that none overflows.
const MAX_INTERVAL_MILLIS: i64 = 3_153_600_000_000;

const I8S: Type = Type::INT8_ARRAY;
const TEXTS: Type = Type::TEXT_ARRAY;

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

/// The durable [`Queue`]: PostgreSQL tables shared by any number of processes.
///
/// Same semantics as [`crate::MemoryQueue`], and across processes: an event whose push returned
/// `Ok` is committed; it runs until acknowledged or dead-lettered, on whichever process claims
/// it; a process that dies loses nothing (its leases expire and the rescuer returns them);
/// events of one conversation run one at a time, in the order their pushes committed, across
/// all processes. The queue is bounded ([`PgQueueBuilder::queue_capacity`]) and so are its dead
/// letters. See the [module docs](super) for how.
///
/// Build it with [`PgQueue::builder`] (after [`super::migrate`]) or [`PgQueue::from_env`]. It
/// runs four long-lived tasks (claimer, `LISTEN` connection, debounced `NOTIFY`, rescuer);
/// [`PgQueue::shutdown`] closes the queue, returns the claimed but unstarted events at once and
/// waits for the tasks.
pub struct PgQueue {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

pub(super) struct Inner {
    /// The queue's own connections for pushes, claims and upkeep (not the handlers' pool).
    pub(super) pool: PgPool,
    /// Two more for completions and lease extensions alone (one statement of each at a time),
    /// so that neither a burst of pushes nor busy handlers can delay them.
    reserved: PgPool,
    /// The pool the queue was built on, for handlers.
    handlers: PgPool,
    /// How long the client waits for one queue statement (including its connection).
    client_timeout: Duration,
    pub(super) channel: String,
    ordered: bool,
    lease: Duration,
    /// Attempts after which an expired lease dead-letters its event.
    max_attempts: u32,
    prefetch: usize,
    max_batch: usize,
    poll_interval: Duration,
    rescue_interval: Duration,
    dedup_ttl: Duration,
    push_timeout: Duration,
    retry_after: Duration,
    pub(super) notify_debounce: Duration,
    /// Events the queue holds at most (all states), as estimated by [`Inner::estimated_size`].
    capacity: u64,
    /// Payload bytes the queue holds at most, as estimated.
    capacity_bytes: u64,
    overflow: Overflow,
    /// Dead letters kept at most (the newest).
    dead_letter_capacity: u64,
    /// Dead letters older than this are pruned.
    dead_letter_retention: Duration,
    /// How often dead letters, dedup keys and idle conversation locks are pruned.
    prune_interval: Duration,
    /// Claimed events not yet handed out.
    buffer: Mutex<VecDeque<Delivery>>,
    /// Events the latest waiting `pull` asked for.
    demand: AtomicUsize,
    /// A puller wants events: wakes the claimer.
    claim_wanted: Notify,
    /// New events may be claimable (a push, a completion, a `NOTIFY`): wakes the idle claimer.
    pub(super) wake: Notify,
    /// The buffer got events, or the queue closed: wakes pullers.
    delivered: Notify,
    /// A push committed: the notifier tells the other processes.
    pub(super) notify_wanted: Notify,
    pub(super) closed: CancellationToken,
    /// The supervisor stopped pulling (shutdown began): claim nothing more, hold nothing.
    pulls_stopped: AtomicBool,
    pub(super) listening: AtomicBool,
    pub(super) counters: Counters,
    stats: StatsCell,
    /// The last counted size of the queue and this process's counters at that time.
    size: Mutex<SizeBase>,
    /// A push was refused or waited for room since the last refresh: refresh sooner.
    wants_room: AtomicBool,
    /// The figures were refreshed: wakes pushes waiting for room.
    stats_refreshed: Notify,
    /// Held while the figures are refreshed.
    refreshing: tokio::sync::Mutex<()>,
}

/// The queue's size at the last refresh, and this process's counters read around it (additions
/// before, removals after): the estimate adds what this process did since (other processes'
/// pushes are seen at the next refresh).
#[derive(Debug, Default, Clone, Copy)]
struct SizeBase {
    events: u64,
    bytes: u64,
    pushed: u64,
    pushed_bytes: u64,
    redriven: u64,
    acked: u64,
    dead: u64,
}

/// What the queue has done so far in this process.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pushed: AtomicU64,
    duplicates: AtomicU64,
    claims: AtomicU64,
    claimed: AtomicU64,
    acked: AtomicU64,
    nacked: AtomicU64,
    dead: AtomicU64,
    released: AtomicU64,
    rescued: AtomicU64,
    stale: AtomicU64,
    redriven: AtomicU64,
    pub(super) notifications: AtomicU64,
    pushed_bytes: AtomicU64,
    refused_full: AtomicU64,
    dropped_full: AtomicU64,
    dead_letters_pruned: AtomicU64,
}

/// The last figures read from the tables, for sync gauges.
#[derive(Debug, Default)]
struct StatsCell {
    ready: AtomicU64,
    retrying: AtomicU64,
    leased: AtomicU64,
    dead: AtomicU64,
    oldest_ready_millis: AtomicU64,
    bytes: AtomicU64,
}

/// Counts of what this process's queue did since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueCounters {
    /// Events pushed and committed.
    pub pushed: u64,
    /// Events skipped by deduplication.
    pub duplicates: u64,
    /// Claim statements run.
    pub claims: u64,
    /// Events claimed.
    pub claimed: u64,
    /// Events acknowledged.
    pub acked: u64,
    /// Events put back for a retry.
    pub nacked: u64,
    /// Events dead-lettered.
    pub dead: u64,
    /// Claimed events released unstarted.
    pub released: u64,
    /// Expired leases returned by this process's rescuer.
    pub rescued: u64,
    /// Completions and extensions whose lease was no longer held.
    pub stale: u64,
    /// Dead letters put back.
    pub redriven: u64,
    /// `NOTIFY` wake-ups received.
    pub notifications: u64,
    /// Events refused because the queue was full (capacity in events or bytes).
    pub refused_full: u64,
    /// Events dropped because the queue was full ([`Overflow::DropNewest`]).
    pub dropped_full: u64,
    /// Dead letters deleted by this process's maintenance (age or count).
    pub dead_letters_pruned: u64,
}

/// The queue's tables right now (all processes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueStats {
    /// Events ready to run.
    pub ready: u64,
    /// Events waiting for their retry.
    pub retrying: u64,
    /// Events leased (running or claimed).
    pub leased: u64,
    /// Dead letters kept.
    pub dead: u64,
    /// How long the oldest ready event has waited.
    pub oldest_ready_age: Duration,
    /// Bytes of the queued events' payloads, as stored (compressed when large).
    pub bytes: u64,
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
    /// Starts configuring a queue on `pool`'s schema (migrated with [`super::migrate`]).
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
        }
    }

    /// A queue with default settings on the database in `DATABASE_URL`, migrated.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when `DATABASE_URL` is missing or invalid; [`ErrorKind::Queue`]
    /// when the database cannot be reached or migrated.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub async fn from_env() -> Result<Self, Error> {
        let pool = PgPool::from_env()?;
        super::migrate(&pool).await?;
        Self::builder(&pool).build()
    }

    /// The pool the queue was built on (share it with [`super::PgStateStore`] and handlers).
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
            rescued: get(&c.rescued),
            stale: get(&c.stale),
            redriven: get(&c.redriven),
            notifications: get(&c.notifications),
            refused_full: get(&c.refused_full),
            dropped_full: get(&c.dropped_full),
            dead_letters_pruned: get(&c.dead_letters_pruned),
        }
    }

    /// Reads the queue's figures from the tables now (and refreshes [`Queue::depth`]).
    ///
    /// # Errors
    ///
    /// Fails when the database fails.
    pub async fn stats(&self) -> Result<QueueStats, Error> {
        self.inner.refresh_stats().await
    }

    /// Whether the `LISTEN` connection is up (otherwise the queue polls).
    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(AtomicOrdering::Acquire)
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
    /// `bot.queue.rescued`, `bot.queue.stale_completions`, `bot.queue.dedup_hits`,
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
                    let s = &inner.stats;
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
                        .stats
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
                    o.observe(inner.stats.bytes.load(AtomicOrdering::Relaxed), &[]);
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
        self.inner.closed.cancel();
    }
}

impl Inner {
    // Statements go out typed and unprepared (one round trip each), so PostgreSQL plans them
    // with the actual values and the table's current size every time. A prepared statement's
    // cached plan, made while the queue was empty (as it is most of the time), turns into a scan
    // per call once a burst fills the table.
    async fn execute(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        what: &str,
    ) -> Result<u64, Error> {
        self.execute_on(&self.pool, sql, params, what).await
    }

    async fn query(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        what: &str,
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        self.query_on(&self.pool, sql, params, what).await
    }

    /// One statement on `pool`, bounded on the client as the server bounds it.
    async fn execute_on(
        &self,
        pool: &PgPool,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        what: &str,
    ) -> Result<u64, Error> {
        let run = async {
            let (conn, _) = pool.get_measured(ErrorKind::Queue, what).await?;
            conn.execute_typed(sql, params)
                .await
                .map_err(|e| error::db(ErrorKind::Queue, what, e))
        };
        self.bounded(what, run).await
    }

    async fn query_on(
        &self,
        pool: &PgPool,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        what: &str,
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let run = async {
            let (conn, _) = pool.get_measured(ErrorKind::Queue, what).await?;
            conn.query_typed(sql, params)
                .await
                .map_err(|e| error::db(ErrorKind::Queue, what, e))
        };
        self.bounded(what, run).await
    }

    /// A statement that the server does not answer in time (a cut connection, a stalled
    /// server) fails here; fenced completions can then be retried safely.
    async fn bounded<T>(
        &self,
        what: &str,
        run: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout(self.client_timeout, run)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "postgres: {what}: no answer within {:?}",
                        self.client_timeout
                    ),
                ))
            })
    }

    fn count(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, AtomicOrdering::Relaxed);
    }

    fn completed(&self, asked: usize, applied: u64) -> Completed {
        let applied = usize::try_from(applied).unwrap_or(usize::MAX).min(asked);
        let stale = asked - applied;
        if stale > 0 {
            self.count(&self.counters.stale, stale as u64);
        }
        Completed { applied, stale }
    }

    fn lease_millis(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// One claim statement: up to `n` events under one fresh lease token.
    async fn claim(&self, n: usize) -> Result<Vec<Delivery>, Error> {
        let token = fastrand::i64(..);
        let limit = i32::try_from(n).unwrap_or(i32::MAX);
        let rows = self
            .query(
                CLAIM,
                &[
                    (&limit, Type::INT4),
                    (&self.lease_millis(), Type::INT8),
                    (&token, Type::INT8),
                    (&self.ordered, Type::BOOL),
                ],
                "claiming events",
            )
            .await?;
        self.count(&self.counters.claims, 1);
        let mut out = Vec::with_capacity(rows.len());
        let mut undecodable = Vec::new();
        for row in rows {
            let id: i64 = row.get(0);
            let attempts: i32 = row.get(1);
            let payload: &str = row.get(2);
            match serde_json::from_str::<Event>(payload) {
                Ok(event) => out.push(Delivery {
                    lease: Lease {
                        id: id as u64,
                        token: token as u64,
                    },
                    event,
                    attempt: u32::try_from(attempts).unwrap_or(1),
                }),
                Err(e) => undecodable.push((id, format!("stored event does not decode: {e}"))),
            }
        }
        self.count(&self.counters.claimed, out.len() as u64);
        if !undecodable.is_empty() {
            tracing::error!(
                count = undecodable.len(),
                "postgres: stored events do not decode; dead-lettering them"
            );
            let ids: Vec<i64> = undecodable.iter().map(|(id, _)| *id).collect();
            let tokens = vec![token; ids.len()];
            let errors: Vec<String> = undecodable
                .into_iter()
                .map(|(_, e)| storable_error(&e))
                .collect();
            self.query(
                DEAD,
                &[(&ids, I8S), (&tokens, I8S), (&errors, TEXTS)],
                "dead-lettering events",
            )
            .await?;
        }
        // The function returns rows in no promised order; hand them out in arrival order.
        out.sort_unstable_by_key(|d| d.lease.id);
        Ok(out)
    }

    async fn release_leases(&self, deliveries: &[Delivery]) -> Result<Completed, Error> {
        if deliveries.is_empty() {
            return Ok(Completed::default());
        }
        let (ids, tokens) = split(deliveries.iter().map(|d| d.lease));
        let n = self
            .execute_on(
                &self.reserved,
                RELEASE,
                &[(&ids, I8S), (&tokens, I8S)],
                "releasing events",
            )
            .await?;
        self.count(&self.counters.released, n);
        self.wake.notify_one();
        Ok(self.completed(deliveries.len(), n))
    }

    async fn rescue(&self) -> Result<u64, Error> {
        let max_attempts = i32::try_from(self.max_attempts).unwrap_or(i32::MAX);
        let rows = self
            .query(
                RESCUE,
                &[(&max_attempts, Type::INT4)],
                "returning expired leases",
            )
            .await?;
        let (back, dead) = rows.first().map_or((0, 0), |r| {
            (
                u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            )
        });
        if back > 0 {
            self.count(&self.counters.rescued, back);
            tracing::warn!(
                count = back,
                "postgres: returned expired leases to the queue"
            );
        }
        if dead > 0 {
            self.count(&self.counters.dead, dead);
            tracing::error!(
                count = dead,
                "postgres: leases of last attempts expired; dead-lettered those events"
            );
        }
        if back + dead > 0 {
            self.wake.notify_one();
        }
        Ok(back)
    }

    async fn refresh_stats(&self) -> Result<QueueStats, Error> {
        // One at a time, so that an older count never replaces a newer one.
        let _one = self.refreshing.lock().await;
        // Additions are read before the count and removals after it: what this process does
        // meanwhile is then counted twice or not subtracted (an over-estimate until the next
        // count), never missed.
        let before = self.local_counts();
        let rows = self.query(STATS, &[], "reading queue figures").await?;
        let after = self.local_counts();
        let base = SizeBase {
            acked: after.acked,
            dead: after.dead,
            ..before
        };
        let row = rows
            .first()
            .ok_or_else(|| Error::new(ErrorKind::Queue, "postgres: queue figures missing"))?;
        let to_u64 = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
        let age: f64 = row.get(3);
        let stats = QueueStats {
            ready: to_u64(0),
            retrying: to_u64(1),
            leased: to_u64(2),
            dead: to_u64(4),
            oldest_ready_age: Duration::try_from_secs_f64(age.max(0.0)).unwrap_or_default(),
            bytes: to_u64(5),
        };
        *self.size.lock().unwrap_or_else(|p| p.into_inner()) = SizeBase {
            events: stats.ready + stats.retrying + stats.leased,
            bytes: stats.bytes,
            ..base
        };
        self.wants_room.store(false, AtomicOrdering::Relaxed);
        self.stats_refreshed.notify_waiters();
        let s = &self.stats;
        s.ready.store(stats.ready, AtomicOrdering::Relaxed);
        s.retrying.store(stats.retrying, AtomicOrdering::Relaxed);
        s.leased.store(stats.leased, AtomicOrdering::Relaxed);
        s.dead.store(stats.dead, AtomicOrdering::Relaxed);
        s.bytes.store(stats.bytes, AtomicOrdering::Relaxed);
        s.oldest_ready_millis.store(
            u64::try_from(stats.oldest_ready_age.as_millis()).unwrap_or(u64::MAX),
            AtomicOrdering::Relaxed,
        );
        Ok(stats)
    }

    /// This process's counters that change the queue's size.
    fn local_counts(&self) -> SizeBase {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(AtomicOrdering::Relaxed);
        SizeBase {
            events: 0,
            bytes: 0,
            pushed: get(&c.pushed),
            pushed_bytes: get(&c.pushed_bytes),
            redriven: get(&c.redriven),
            acked: get(&c.acked),
            dead: get(&c.dead),
        }
    }

    /// The queue's size (events in any state, payload bytes) as estimated: the last count plus
    /// what this process pushed, completed and dead-lettered since. Bytes only grow between
    /// counts (completions do not say how large their events were).
    fn estimated_size(&self) -> (u64, u64) {
        let base = *self.size.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.local_counts();
        let added =
            now.pushed.saturating_sub(base.pushed) + now.redriven.saturating_sub(base.redriven);
        let removed = now.acked.saturating_sub(base.acked) + now.dead.saturating_sub(base.dead);
        let events = (base.events + added).saturating_sub(removed);
        let bytes = base.bytes + now.pushed_bytes.saturating_sub(base.pushed_bytes);
        (events, bytes)
    }

    /// How many of a batch whose payloads are `sizes` long go in, by the capacity and the
    /// overflow policy: all, the first few ([`Overflow::DropNewest`]), or none (an error).
    /// [`Overflow::Wait`] waits for room up to `push_timeout`.
    async fn room_for(&self, sizes: &[usize]) -> Result<usize, Error> {
        let deadline = Instant::now() + self.push_timeout;
        loop {
            let refreshed = self.stats_refreshed.notified();
            tokio::pin!(refreshed);
            refreshed.as_mut().enable();
            let (events, bytes) = self.estimated_size();
            let fitting = sizes
                .iter()
                .scan((events, bytes), |(n, b), &size| {
                    *n += 1;
                    *b += size as u64;
                    (*n <= self.capacity && *b <= self.capacity_bytes).then_some(())
                })
                .count();
            if fitting == sizes.len() {
                return Ok(fitting);
            }
            self.wants_room.store(true, AtomicOrdering::Relaxed);
            match self.overflow {
                Overflow::DropNewest => {
                    // One event larger than the byte capacity still goes into an empty queue.
                    let fitting = if events == 0 { fitting.max(1) } else { fitting };
                    self.count(&self.counters.dropped_full, (sizes.len() - fitting) as u64);
                    return Ok(fitting);
                }
                // A batch larger than the whole capacity goes in once the queue is empty (else
                // it would be refused forever): the bound is then exceeded by at most one batch.
                _ if events == 0 => return Ok(sizes.len()),
                Overflow::Wait if Instant::now() < deadline => {
                    tokio::select! {
                        () = refreshed => {}
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.closed.cancelled() => {
                            return Err(Error::new(ErrorKind::QueueClosed, "queue is closed"));
                        }
                    }
                }
                _ => {
                    self.count(&self.counters.refused_full, sizes.len() as u64);
                    tracing::debug!(
                        events,
                        bytes,
                        capacity = self.capacity,
                        capacity_bytes = self.capacity_bytes,
                        batch = sizes.len(),
                        "postgres: queue full; refusing the batch"
                    );
                    return Err(Error::new(
                        ErrorKind::QueueFull,
                        format!(
                            "postgres queue is full (about {events} events and {bytes} payload \
                             bytes; capacity {} events, {} bytes)",
                            self.capacity, self.capacity_bytes
                        ),
                    )
                    .with_retry_after(self.retry_after));
                }
            }
        }
    }

    /// Runs `sql` (a pruning statement returning its count) until it prunes less than a batch,
    /// [`PRUNE_ROUNDS`] times at most.
    async fn prune(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        what: &str,
    ) -> Result<u64, Error> {
        let mut total = 0;
        for _ in 0..PRUNE_ROUNDS {
            let rows = self.query(sql, params, what).await?;
            let n = rows.first().map_or(0, |r| r.get::<_, i64>(0));
            total += u64::try_from(n).unwrap_or(0);
            if n < PRUNE_BATCH {
                break;
            }
        }
        Ok(total)
    }

    async fn prune_dead_letters(&self) -> Result<u64, Error> {
        let age = interval_millis(self.dead_letter_retention);
        let keep = i64::try_from(self.dead_letter_capacity).unwrap_or(i64::MAX);
        let n = self
            .prune(
                PRUNE_DEAD,
                &[
                    (&age, Type::INT8),
                    (&keep, Type::INT8),
                    (&PRUNE_BATCH, Type::INT8),
                ],
                "pruning dead letters",
            )
            .await?;
        if n > 0 {
            self.count(&self.counters.dead_letters_pruned, n);
            tracing::info!(count = n, "postgres: pruned dead letters");
        }
        Ok(n)
    }

    /// Prunes dead letters, dedup keys and idle conversation locks, logging failures.
    async fn prune_all(&self) {
        let ttl = interval_millis(self.dedup_ttl);
        if let Err(e) = self
            .execute(PRUNE_DEDUP, &[(&ttl, Type::INT8)], "pruning dedup keys")
            .await
        {
            tracing::warn!(error = %e, "postgres: pruning dedup keys failed");
        }
        if let Err(e) = self.prune_dead_letters().await {
            tracing::warn!(error = %e, "postgres: pruning dead letters failed");
        }
        let idle = interval_millis(LANE_IDLE);
        if let Err(e) = self
            .prune(
                PRUNE_LANES,
                &[(&idle, Type::INT8), (&PRUNE_BATCH, Type::INT8)],
                "pruning conversation locks",
            )
            .await
        {
            tracing::warn!(error = %e, "postgres: pruning conversation locks failed");
        }
    }

    fn take_buffered(&self, max: usize) -> Vec<Delivery> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let n = max.min(buffer.len());
        buffer.drain(..n).collect()
    }

    fn buffered(&self) -> usize {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The claimer: claims when pullers want events, parks them in the buffer, and releases
    /// whatever is left there when the queue closes. Claims run here, not in `pull`, so that a
    /// dropped `pull` future never leaves events leased to nobody.
    async fn run_claimer(self: Arc<Self>) {
        let mut failures = 0u32;
        'outer: loop {
            // Wait for demand the buffer does not cover.
            loop {
                if self.closed.is_cancelled() {
                    break 'outer;
                }
                let wanted = self.claim_wanted.notified();
                tokio::pin!(wanted);
                wanted.as_mut().enable();
                if self.demand.load(AtomicOrdering::Acquire) > self.buffered()
                    && !self.pulls_stopped.load(AtomicOrdering::Acquire)
                {
                    break;
                }
                tokio::select! {
                    () = wanted => {}
                    () = self.closed.cancelled() => break 'outer,
                }
            }
            let demand = self.demand.load(AtomicOrdering::Acquire);
            let n = (demand.saturating_sub(self.buffered()) + self.prefetch).min(self.max_batch);
            match self.claim(n).await {
                Ok(batch) if !batch.is_empty() => {
                    failures = 0;
                    if self.closed.is_cancelled()
                        || self.pulls_stopped.load(AtomicOrdering::Acquire)
                    {
                        if let Err(e) = self.release_leases(&batch).await {
                            tracing::error!(error = %e, "postgres: releasing claims at shutdown failed");
                        }
                        if self.closed.is_cancelled() {
                            break;
                        }
                        continue;
                    }
                    self.buffer
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(batch);
                    self.delivered.notify_waiters();
                }
                Ok(_) => {
                    failures = 0;
                    // Nothing claimable: wait for a push, a completion, a NOTIFY or the poll.
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.poll_interval) => {}
                        () = self.closed.cancelled() => break,
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_millis(100 << failures.min(5));
                    tracing::error!(error = %e, retry_in = ?backoff, "postgres: claiming events failed");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.closed.cancelled() => break,
                    }
                }
            }
        }
        let left: Vec<Delivery> = self
            .buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        if !left.is_empty() {
            match self.release_leases(&left).await {
                Ok(done) => tracing::info!(
                    released = done.applied,
                    "postgres: released claimed, unstarted events"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    count = left.len(),
                    "postgres: releasing claimed events failed; they come back when their leases expire"
                ),
            }
        }
        self.delivered.notify_waiters();
    }

    /// The rescuer: returns expired leases, keeps buffered claims alive, prunes dedup keys, dead
    /// letters and idle conversation locks, and refreshes the figures.
    async fn run_maintenance(self: Arc<Self>) {
        let mut last_prune = Instant::now();
        let mut last_extend = Instant::now();
        let mut last_stats: Option<Instant> = None;
        // Count at once: until the first count, the capacity check knows only this process's
        // pushes.
        tokio::select! {
            r = self.refresh_stats() => match r {
                Ok(_) => last_stats = Some(Instant::now()),
                Err(e) => tracing::debug!(error = %e, "postgres: reading queue figures failed"),
            },
            () = self.closed.cancelled() => return,
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.rescue_interval) => {}
                () = self.closed.cancelled() => return,
            }
            if let Err(e) = self.rescue().await {
                tracing::warn!(error = %e, "postgres: rescuing expired leases failed");
            }
            if last_extend.elapsed() >= self.lease / 3 {
                last_extend = Instant::now();
                let held: Vec<Lease> = self
                    .buffer
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .map(|d| d.lease)
                    .collect();
                if !held.is_empty() {
                    let (ids, tokens) = split(held.into_iter());
                    if let Err(e) = self
                        .execute(
                            EXTEND,
                            &[
                                (&ids, I8S),
                                (&tokens, I8S),
                                (&self.lease_millis(), Type::INT8),
                            ],
                            "extending leases",
                        )
                        .await
                    {
                        tracing::warn!(error = %e, "postgres: extending buffered leases failed");
                    }
                }
            }
            if last_prune.elapsed() >= self.prune_interval {
                last_prune = Instant::now();
                self.prune_all().await;
            }
            // Counting the table costs a scan: every few seconds is enough for gauges and for
            // the capacity check, unless pushes find the queue full (then a drain shows soon).
            // Not merely when it is nearly full: a backlog would then be counted every second.
            let stats_every = if self.wants_room.load(AtomicOrdering::Relaxed) {
                self.rescue_interval
            } else {
                STATS_INTERVAL
            };
            if last_stats.is_none_or(|t| t.elapsed() >= stats_every) {
                last_stats = Some(Instant::now());
                if let Err(e) = self.refresh_stats().await {
                    tracing::debug!(error = %e, "postgres: reading queue figures failed");
                }
            }
        }
    }
}

/// Loads `events` into the queue of `pool`'s schema in one transaction, through `COPY`: for
/// backfills and benchmarks, where pushing batch after batch would take minutes for millions of
/// events. Returns how many were loaded.
///
/// Unlike [`Queue::push_batch`] it skips deduplication (the events' ids are not recorded, and an
/// id already in the queue is loaded again) and the capacity check, and wakes nobody: running
/// queues find the events at their next poll. Events keep their order, so conversations run in
/// it; it locks its conversations as a push does, so that pushes of them running meanwhile wait
/// for its commit. The table is analysed afterwards, so that claims are planned for its new
/// size.
///
/// # Errors
///
/// [`ErrorKind::Queue`] when the database fails or an event does not serialise; nothing is
/// loaded then.
pub async fn import(pool: &PgPool, events: impl IntoIterator<Item = Event>) -> Result<u64, Error> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;

    let fail = |what: &str, e| error::db(ErrorKind::Queue, what, e);
    let (mut conn, _) = pool
        .get_measured(ErrorKind::Queue, "importing events")
        .await?;
    let tx = conn
        .transaction()
        .await
        .map_err(|e| fail("starting the import", e))?;
    tx.batch_execute(IMPORT_TABLE)
        .await
        .map_err(|e| fail("creating the import table", e))?;
    let sink = tx
        .copy_in(IMPORT_COPY)
        .await
        .map_err(|e| fail("starting the copy", e))?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT]);
    tokio::pin!(writer);
    for event in events {
        let payload = serde_json::to_string(&event).map_err(|e| {
            Error::new(ErrorKind::Queue, "postgres: event does not serialise").with_source(e)
        })?;
        writer
            .as_mut()
            .write(&[
                &event.platform.as_str(),
                &event.id.as_str(),
                &event.conversation.as_str(),
                &payload,
            ])
            .await
            .map_err(|e| fail("copying events", e))?;
    }
    writer
        .finish()
        .await
        .map_err(|e| fail("copying events", e))?;
    let loaded = tx
        .execute(IMPORT, &[])
        .await
        .map_err(|e| fail("importing events", e))?;
    tx.commit()
        .await
        .map_err(|e| fail("committing the import", e))?;
    conn.batch_execute("ANALYZE botrt_events")
        .await
        .map_err(|e| fail("analysing the queue table", e))?;
    Ok(loaded)
}

/// Longest error text kept with a retry or a dead letter, in bytes.
const MAX_ERROR_BYTES: usize = 4096;

/// `error` as PostgreSQL can store it: a text value cannot hold a NUL byte, and a handler's
/// error message is arbitrary; one such message must not make every completion of its batch fail
/// again and again. Cut to [`MAX_ERROR_BYTES`] at a character boundary.
fn storable_error(error: &str) -> String {
    let mut text: String = error.chars().filter(|&c| c != '\0').collect();
    if text.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn split(leases: impl Iterator<Item = Lease>) -> (Vec<i64>, Vec<i64>) {
    leases.map(|l| (l.id as i64, l.token as i64)).unzip()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `d` in milliseconds for `$n * interval '1 millisecond'`, capped so that the interval exists.
fn interval_millis(d: Duration) -> i64 {
    millis(d).min(MAX_INTERVAL_MILLIS)
}

#[async_trait]
impl Queue for PgQueue {
    async fn push_batch(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(Error::new(ErrorKind::QueueClosed, "queue is closed"));
        }
        if events.is_empty() {
            return Ok(PushReport::default());
        }
        let n = events.len();
        let mut platforms = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut conversations = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        for event in &events {
            payloads.push(serde_json::to_string(event).map_err(|e| {
                Error::new(ErrorKind::Queue, "postgres: event does not serialise").with_source(e)
            })?);
            platforms.push(event.platform.as_str());
            ids.push(event.id.as_str());
            conversations.push(event.conversation.as_str());
        }
        let sizes: Vec<usize> = payloads.iter().map(String::len).collect();
        let admitted = inner.room_for(&sizes).await?;
        let dropped = n - admitted;
        if admitted == 0 {
            return Ok(PushReport {
                dropped_newest: dropped,
                ..PushReport::default()
            });
        }
        // Under `DropNewest` the events beyond the room are left out (and not remembered, so a
        // redelivery of them is welcome).
        platforms.truncate(admitted);
        ids.truncate(admitted);
        conversations.truncate(admitted);
        payloads.truncate(admitted);
        let sent_bytes: u64 = sizes[..admitted].iter().map(|&b| b as u64).sum();
        let n = admitted;
        let push = async {
            let (conn, _) = inner
                .pool
                .get_measured(ErrorKind::Queue, "pushing events")
                .await
                .map_err(|e| error::unavailable("pushing events", inner.retry_after, e))?;
            let map = |e: tokio_postgres::Error| {
                let unavailable = error::is_unavailable(&e);
                let e = error::db(ErrorKind::Queue, "pushing events", e);
                if unavailable {
                    error::unavailable("pushing events", inner.retry_after, e)
                } else {
                    e
                }
            };
            let row = conn
                .query_typed_one(
                    PUSH,
                    &[
                        (&platforms, TEXTS),
                        (&ids, TEXTS),
                        (&conversations, TEXTS),
                        (&payloads, TEXTS),
                    ],
                )
                .await
                .map_err(map)?;
            Ok::<i64, Error>(row.get(0))
        };
        let inserted = match tokio::time::timeout(inner.push_timeout, push).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(error::unavailable(
                    "pushing events",
                    inner.retry_after,
                    Error::new(
                        ErrorKind::Timeout,
                        format!("no commit within {:?}", inner.push_timeout),
                    ),
                ));
            }
        };
        let accepted = usize::try_from(inserted).unwrap_or(0).min(n);
        // Duplicates add nothing: count the bytes of the accepted share of the batch.
        inner.count(
            &inner.counters.pushed_bytes,
            sent_bytes * accepted as u64 / n as u64,
        );
        inner.count(&inner.counters.pushed, accepted as u64);
        inner.count(&inner.counters.duplicates, (n - accepted) as u64);
        if accepted > 0 {
            inner.wake.notify_one();
            inner.notify_wanted.notify_one();
        }
        Ok(PushReport {
            accepted,
            duplicates: n - accepted,
            dropped_newest: dropped,
            ..PushReport::default()
        })
    }

    async fn pull(&self, max: usize) -> Result<Vec<Delivery>, Error> {
        let inner = &self.inner;
        if max == 0 {
            return Ok(Vec::new());
        }
        // Someone pulls again after `stop_pulling`: claim for them.
        inner.pulls_stopped.store(false, AtomicOrdering::Release);
        loop {
            let delivered = inner.delivered.notified();
            tokio::pin!(delivered);
            delivered.as_mut().enable();
            if inner.closed.is_cancelled() {
                return Ok(Vec::new());
            }
            let batch = inner.take_buffered(max);
            if !batch.is_empty() {
                inner.demand.store(0, AtomicOrdering::Release);
                return Ok(batch);
            }
            inner.demand.store(max, AtomicOrdering::Release);
            inner.claim_wanted.notify_one();
            delivered.await;
        }
    }

    async fn ack(&self, leases: &[Lease]) -> Result<Completed, Error> {
        if leases.is_empty() {
            return Ok(Completed::default());
        }
        let inner = &self.inner;
        let (ids, tokens) = split(leases.iter().copied());
        let n = inner
            .execute_on(
                &inner.reserved,
                ACK,
                &[(&ids, I8S), (&tokens, I8S)],
                "acknowledging events",
            )
            .await?;
        inner.count(&inner.counters.acked, n);
        inner.wake.notify_one();
        Ok(inner.completed(leases.len(), n))
    }

    async fn nack(&self, nacks: Vec<Nack>) -> Result<Completed, Error> {
        if nacks.is_empty() {
            return Ok(Completed::default());
        }
        let inner = &self.inner;
        let (ids, tokens) = split(nacks.iter().map(|n| n.lease));
        let delays: Vec<i64> = nacks.iter().map(|n| millis(n.delay)).collect();
        let errors: Vec<String> = nacks.iter().map(|n| storable_error(&n.error)).collect();
        let n = inner
            .execute_on(
                &inner.reserved,
                NACK,
                &[
                    (&ids, I8S),
                    (&tokens, I8S),
                    (&delays, I8S),
                    (&errors, TEXTS),
                ],
                "scheduling retries",
            )
            .await?;
        inner.count(&inner.counters.nacked, n);
        Ok(inner.completed(nacks.len(), n))
    }

    async fn dead(&self, dead: Vec<Dead>) -> Result<Vec<DeadLetter>, Error> {
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let (ids, tokens) = split(dead.iter().map(|d| d.lease));
        let errors: Vec<String> = dead.iter().map(|d| storable_error(&d.error)).collect();
        let rows = inner
            .query_on(
                &inner.reserved,
                DEAD,
                &[(&ids, I8S), (&tokens, I8S), (&errors, TEXTS)],
                "dead-lettering events",
            )
            .await?;
        let asked = dead.len();
        let mut by_id: HashMap<u64, Dead> = dead.into_iter().map(|d| (d.lease.id, d)).collect();
        let mut letters = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.get::<_, i64>(0) as u64;
            if let Some(d) = by_id.remove(&id) {
                letters.push(DeadLetter {
                    event: d.event,
                    attempts: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
                    error: d.error,
                    failed_at: Timestamp::from_millis(row.get(2)),
                });
            }
        }
        inner.count(&inner.counters.dead, letters.len() as u64);
        let _ = inner.completed(asked, letters.len() as u64);
        inner.wake.notify_one();
        Ok(letters)
    }

    async fn release(&self, deliveries: Vec<Delivery>) -> Result<Completed, Error> {
        let done = self.inner.release_leases(&deliveries).await?;
        self.inner.notify_wanted.notify_one();
        Ok(done)
    }

    async fn extend_lease(&self, leases: &[Lease], by: Duration) -> Result<Completed, Error> {
        if leases.is_empty() {
            return Ok(Completed::default());
        }
        let inner = &self.inner;
        let (ids, tokens) = split(leases.iter().copied());
        let n = inner
            .execute_on(
                &inner.reserved,
                EXTEND,
                &[(&ids, I8S), (&tokens, I8S), (&millis(by), Type::INT8)],
                "extending leases",
            )
            .await?;
        Ok(inner.completed(leases.len(), n))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .inner
            .query(
                DEAD_LETTERS,
                &[(&limit, Type::INT8)],
                "reading dead letters",
            )
            .await?;
        let mut letters = Vec::with_capacity(rows.len());
        for row in rows {
            match serde_json::from_str::<Event>(row.get(0)) {
                Ok(event) => letters.push(DeadLetter {
                    event,
                    attempts: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
                    error: row.get(2),
                    failed_at: Timestamp::from_millis(row.get(3)),
                }),
                Err(e) => tracing::error!(error = %e, "postgres: a dead letter does not decode"),
            }
        }
        Ok(letters)
    }

    async fn redrive(&self, max: usize) -> Result<usize, Error> {
        let inner = &self.inner;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = inner
            .query(REDRIVE, &[(&max, Type::INT8)], "re-driving dead letters")
            .await?;
        let n = rows.first().map_or(0, |r| r.get::<_, i64>(0));
        let n = usize::try_from(n).unwrap_or(0);
        inner.count(&inner.counters.redriven, n as u64);
        if n > 0 {
            inner.wake.notify_one();
            inner.notify_wanted.notify_one();
        }
        Ok(n)
    }

    async fn stop_pulling(&self) {
        let inner = &self.inner;
        inner.pulls_stopped.store(true, AtomicOrdering::Release);
        inner.demand.store(0, AtomicOrdering::Release);
        let held: Vec<Delivery> = inner
            .buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        match inner.release_leases(&held).await {
            Ok(done) if done.applied > 0 => {
                inner.notify_wanted.notify_one();
                tracing::info!(
                    released = done.applied,
                    "postgres: released claimed, unstarted events for other processes"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(
                error = %e,
                count = held.len(),
                "postgres: releasing claimed events failed; they come back when their leases expire"
            ),
        }
    }

    fn lease_duration(&self) -> Option<Duration> {
        Some(self.inner.lease)
    }

    fn close(&self) {
        self.inner.closed.cancel();
        self.inner.delivered.notify_waiters();
    }

    /// Dead letters this process's maintenance pruned (for their age or beyond
    /// `dead_letter_capacity`).
    fn dead_letters_evicted(&self) -> u64 {
        self.inner
            .counters
            .dead_letters_pruned
            .load(AtomicOrdering::Relaxed)
    }

    fn depth(&self) -> u64 {
        let s = &self.inner.stats;
        s.ready.load(AtomicOrdering::Relaxed) + s.retrying.load(AtomicOrdering::Relaxed)
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
    /// 5 s, every `rescue_interval` while pushes find the queue full) plus what
    /// this process pushed and completed since. So the queue can exceed it by what the other
    /// processes push between two counts, and a queue drained by other processes takes up to one
    /// refresh to accept pushes again. [`import`] ignores it.
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
    /// - [`Overflow::Reject`]: the batch is refused whole as [`ErrorKind::QueueFull`] with
    ///   `retry_after` (webhooks answer 503 with `Retry-After`).
    /// - [`Overflow::Wait`]: waits for room (re-checking at each refresh of the figures) up to
    ///   `push_timeout`, then refuses as `Reject` does.
    /// - [`Overflow::DropNewest`]: the events of the batch beyond the room are dropped and
    ///   counted in [`PushReport::dropped_newest`].
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

    /// How often the maintenance task prunes dead letters, dedup keys and idle conversation
    /// locks (default 10 s).
    pub fn prune_interval(mut self, interval: Duration) -> Self {
        self.prune_interval = interval;
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
    /// [`ErrorKind::Config`] when a duration is zero, `max_batch`, `connections` or a capacity is
    /// zero, the statement time-out is not shorter than the lease, or no Tokio runtime is running.
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
        {
            return Err(Error::config(
                "postgres queue: max_batch, poll_interval, rescue_interval, push_timeout and prune_interval must be above zero",
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
            channel: format!("botrt_events_{}", self.pool.schema()),
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
            notify_debounce: self.notify_debounce,
            capacity: u64::try_from(self.capacity).unwrap_or(u64::MAX),
            capacity_bytes: self.capacity_bytes,
            overflow: self.overflow,
            dead_letter_capacity: u64::try_from(self.dead_letter_capacity).unwrap_or(u64::MAX),
            dead_letter_retention: self.dead_letter_retention,
            prune_interval: self.prune_interval,
            buffer: Mutex::new(VecDeque::new()),
            demand: AtomicUsize::new(0),
            claim_wanted: Notify::new(),
            wake: Notify::new(),
            delivered: Notify::new(),
            notify_wanted: Notify::new(),
            closed: CancellationToken::new(),
            pulls_stopped: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            counters: Counters::default(),
            stats: StatsCell::default(),
            size: Mutex::new(SizeBase::default()),
            wants_room: AtomicBool::new(false),
            stats_refreshed: Notify::new(),
            refreshing: tokio::sync::Mutex::new(()),
        });
        // Four long-lived tasks per queue, not per-message work; they end when it closes.
        #[allow(clippy::disallowed_methods)]
        let mut tasks = vec![
            runtime.spawn(inner.clone().run_claimer()),
            runtime.spawn(inner.clone().run_maintenance()),
            runtime.spawn(notify::run_notifier(inner.clone())),
        ];
        if self.listen {
            #[allow(clippy::disallowed_methods)]
            tasks.push(runtime.spawn(notify::run_listener(inner.clone())));
        }
        Ok(PgQueue {
            inner,
            tasks: Mutex::new(tasks),
        })
    }
}
