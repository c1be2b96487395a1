//! The outbox's counts and figures, and their metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;

use super::handle::Outbox;
use crate::pg::QueueStats;
use crate::telemetry::Telemetry;

/// This process's counters, plain atomics read by observable instruments.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) queued: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) dropped_newest: AtomicU64,
    pub(super) evicted_oldest: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dead: AtomicU64,
    pub(super) waited: AtomicU64,
}

impl Counts {
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    pub(super) fn snapshot(&self) -> OutboxCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        OutboxCounts {
            queued: get(&self.queued),
            duplicates: get(&self.duplicates),
            dropped_newest: get(&self.dropped_newest),
            evicted_oldest: get(&self.evicted_oldest),
            rejected: get(&self.rejected),
            cancelled: get(&self.cancelled),
            sent: get(&self.sent),
            failed: get(&self.failed),
            waited: get(&self.waited),
            dead: get(&self.dead),
        }
    }
}

/// What this process's outbox did since it was built: every message it was given is in exactly
/// one of `queued`, `duplicates`, `dropped_newest` and `rejected`; every send attempt of its
/// senders ends in `sent` or `failed` (a failed one is retried or becomes `dead`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OutboxCounts {
    /// Messages committed to the outbox.
    pub queued: u64,
    /// Messages not queued because their key was queued before.
    pub duplicates: u64,
    /// Messages dropped because the outbox was full ([`crate::Overflow::DropNewest`]).
    pub dropped_newest: u64,
    /// Waiting messages evicted to make room ([`crate::Overflow::DropOldest`]).
    pub evicted_oldest: u64,
    /// Messages refused because the outbox was full ([`crate::Overflow::Reject`] or
    /// [`crate::Overflow::Wait`]); the caller got an error.
    pub rejected: u64,
    /// Messages deleted by [`Outbox::cancel`].
    pub cancelled: u64,
    /// Messages the platform accepted (this process's senders).
    pub sent: u64,
    /// Send attempts that failed (this process's senders); each is retried or dead.
    pub failed: u64,
    /// Messages given up on by this process's senders (dead letters).
    pub dead: u64,
    /// Times a send waited for the client's rate limits past the call's deadline and waited
    /// again, nothing sent (this process's senders): not an attempt, neither failed nor retried.
    /// Often: the senders' window (`max_in_flight`) holds more than the limit sends in a
    /// call's deadline.
    pub waited: u64,
}

/// The outbox's tables now (all processes), and this process's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OutboxStats {
    /// Messages due and waiting for a sender.
    pub ready: u64,
    /// Messages waiting for their retry (or for their time to come).
    pub retrying: u64,
    /// Messages being sent.
    pub sending: u64,
    /// Dead letters kept.
    pub dead_letters: u64,
    /// How long the oldest due message has waited.
    pub oldest_age: Duration,
    /// This process's counts.
    pub counts: OutboxCounts,
}

impl OutboxStats {
    pub(super) fn from_queue(stats: QueueStats, counts: OutboxCounts) -> Self {
        Self {
            ready: stats.ready,
            retrying: stats.retrying,
            sending: stats.leased,
            dead_letters: stats.dead,
            oldest_age: stats.oldest_ready_age,
            counts,
        }
    }

    /// Messages in the outbox, in any state but dead.
    pub fn queued(&self) -> u64 {
        self.ready + self.retrying + self.sending
    }
}

pub(super) fn register(telemetry: &Telemetry, outbox: &Outbox) {
    let meter = telemetry.meter();
    let weak = std::sync::Arc::downgrade(&outbox.inner);
    let w = weak.clone();
    let _messages = meter
        .u64_observable_counter("bot.outbox.messages")
        .with_description("Outbox messages by outcome (this process)")
        .with_callback(move |o| {
            if let Some(inner) = w.upgrade() {
                let c = inner.counts.snapshot();
                for (outcome, v) in [
                    ("queued", c.queued),
                    ("duplicate", c.duplicates),
                    ("dropped", c.dropped_newest),
                    ("evicted", c.evicted_oldest),
                    ("rejected", c.rejected),
                    ("cancelled", c.cancelled),
                    ("sent", c.sent),
                    ("failed", c.failed),
                    ("dead", c.dead),
                ] {
                    o.observe(v, &[KeyValue::new("outcome", outcome)]);
                }
            }
        })
        .build();
    let w = weak.clone();
    let _depth = meter
        .u64_observable_gauge("bot.outbox.depth")
        .with_description("Messages in the outbox by state (all processes)")
        .with_callback(move |o| {
            if let Some(inner) = w.upgrade() {
                let s = inner.queue.cached_stats();
                for (state, v) in [
                    ("ready", s.ready),
                    ("retrying", s.retrying),
                    ("sending", s.leased),
                    ("dead", s.dead),
                ] {
                    o.observe(v, &[KeyValue::new("state", state)]);
                }
            }
        })
        .build();
    let _age = meter
        .f64_observable_gauge("bot.outbox.oldest_age")
        .with_unit("s")
        .with_description("How long the oldest due outbox message has waited")
        .with_callback(move |o| {
            if let Some(inner) = weak.upgrade() {
                o.observe(
                    inner.queue.cached_stats().oldest_ready_age.as_secs_f64(),
                    &[],
                );
            }
        })
        .build();
}
