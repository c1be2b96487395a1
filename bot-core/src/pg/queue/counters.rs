//! What the queue counts: this process's counters and the figures read from the tables.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

/// What the queue has done so far in this process.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) pushed: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) claims: AtomicU64,
    pub(super) claimed: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) nacked: AtomicU64,
    pub(super) dead: AtomicU64,
    pub(super) released: AtomicU64,
    pub(super) released_stale: AtomicU64,
    pub(super) rescued: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) redriven: AtomicU64,
    pub(super) pushed_bytes: AtomicU64,
    pub(super) push_statements: AtomicU64,
    pub(super) refused_full: AtomicU64,
    pub(super) dropped_full: AtomicU64,
    pub(super) dead_letters_pruned: AtomicU64,
    pub(super) figure_counts: AtomicU64,
}

/// The last figures read from the tables, for sync gauges.
#[derive(Debug, Default)]
pub(super) struct StatsCell {
    pub(super) ready: AtomicU64,
    pub(super) retrying: AtomicU64,
    pub(super) leased: AtomicU64,
    pub(super) dead: AtomicU64,
    pub(super) oldest_ready_millis: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) estimated: AtomicBool,
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
    /// Of those, claimed events released because no puller took them within a third of their
    /// lease (a buffered delivery's lease is not extended, so it is never handed out later).
    pub released_stale: u64,
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
    /// Events dropped because the queue was full
    /// ([`Overflow::DropNewest`](crate::Overflow::DropNewest)).
    pub dropped_full: u64,
    /// Dead letters deleted by this process's maintenance (age or count).
    pub dead_letters_pruned: u64,
    /// Statements that wrote pushes: fewer than the pushes when pushes that waited for a
    /// writer went out together.
    pub push_statements: u64,
    /// Counts of the queue's figures from the tables (by the maintenance task, while they are
    /// needed, and by [`PgQueue::stats`](crate::pg::PgQueue::stats)).
    pub figure_counts: u64,
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
    /// Whether `ready`, `retrying` and `bytes` are partly estimates: the newest 50,000 ids and the
    /// front are counted exactly; when the front lies further back, the ids between are
    /// estimated from 2,000 drawn among them (a standard error of at most 1.1 % of the number of
    /// ids between; see [`PgQueue::stats`](crate::pg::PgQueue::stats)). `leased` and `dead` are
    /// always counted.
    pub estimated: bool,
}
