//! The pusher's counts: every push ends in exactly one of them, as a metric and in the report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;

use crate::telemetry::Telemetry;

/// Hot-path counters, plain atomics read by observable instruments at collection time.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) offered: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dropped_oldest: AtomicU64,
    pub(super) dropped_newest: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) unsent: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) buffered: AtomicU64,
    pub(super) in_flight: AtomicU64,
}

impl Counts {
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    pub(super) fn sub(counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_sub(n as u64, Ordering::Relaxed);
        }
    }

    pub(super) fn report(&self, elapsed: Duration) -> PushReport {
        let get = |c: &AtomicU64| c.load(Ordering::Acquire);
        PushReport {
            offered: get(&self.offered),
            sent: get(&self.sent),
            failed: get(&self.failed),
            dropped_oldest: get(&self.dropped_oldest),
            dropped_newest: get(&self.dropped_newest),
            rejected: get(&self.rejected),
            unsent: get(&self.unsent),
            cancelled: get(&self.cancelled),
            buffered: get(&self.buffered),
            in_flight: get(&self.in_flight),
            elapsed,
        }
    }
}

/// Where the pushes went, so far ([`super::Pusher::stats`]) or in the end ([`super::Pusher::close`]).
///
/// Every push the pusher took is in exactly one field, so
/// `offered == sent + failed + dropped() + buffered + in_flight` at any time, and after a close
/// `buffered` and `in_flight` are zero ([`PushReport::is_balanced`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PushReport {
    /// Pushes offered, refused ones included (pushes after the close are not counted).
    pub offered: u64,
    /// Sent: the send function returned `Ok`.
    pub sent: u64,
    /// Failed: the send function returned `Err` (after the client's own retries).
    pub failed: u64,
    /// Evicted from a full buffer by newer pushes ([`crate::Overflow::DropOldest`]).
    pub dropped_oldest: u64,
    /// Dropped because the buffer was full ([`crate::Overflow::DropNewest`]).
    pub dropped_newest: u64,
    /// Refused because the buffer was full ([`crate::Overflow::Reject`]); the caller got them back.
    pub rejected: u64,
    /// Still buffered when a bounded shutdown ran out of time: never attempted.
    pub unsent: u64,
    /// In flight when a bounded shutdown ran out of time: their outcome is unknown (the platform
    /// may have received them; LINE's retry keys make a later retry safe).
    pub cancelled: u64,
    /// Waiting in the buffer now.
    pub buffered: u64,
    /// Being sent now.
    pub in_flight: u64,
    /// Since the pusher started.
    pub elapsed: Duration,
}

impl PushReport {
    /// Pushes shed by the pusher: dropped (oldest or newest), rejected, never attempted at
    /// shutdown, or cancelled in flight.
    pub fn dropped(&self) -> u64 {
        self.dropped_oldest + self.dropped_newest + self.rejected + self.unsent + self.cancelled
    }

    /// Whether every offered push is accounted for exactly once.
    pub fn is_balanced(&self) -> bool {
        self.offered == self.sent + self.failed + self.dropped() + self.buffered + self.in_flight
    }

    /// Sent pushes per second since the start.
    pub fn sent_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.sent as f64 / seconds
        } else {
            0.0
        }
    }
}

/// The pusher's instruments: counters observed from [`Counts`], and the duration of each send.
#[derive(Debug, Clone)]
pub(super) struct Metrics {
    duration: Histogram<f64>,
    attributes: [KeyValue; 1],
}

impl Metrics {
    /// Registers the instruments of the pusher `name` with `telemetry`'s meter.
    ///
    /// The meter keeps its callbacks for its whole life; they hold the counts weakly, so a
    /// dropped pusher's counts are freed and no longer reported. Two live pushers of one name
    /// would report the same series twice: each pusher needs its own name.
    pub(super) fn register(telemetry: &Telemetry, name: &str, counts: &Arc<Counts>) -> Self {
        let meter = telemetry.meter();
        let pusher = KeyValue::new("pusher", name.to_owned());
        let observe =
            |metric: &'static str, description: &'static str, read: fn(&Counts) -> u64| {
                let counts = Arc::downgrade(counts);
                let attributes = [pusher.clone()];
                meter
                    .u64_observable_counter(metric)
                    .with_description(description)
                    .with_callback(move |o| {
                        if let Some(counts) = counts.upgrade() {
                            o.observe(read(&counts), &attributes);
                        }
                    })
                    .build();
            };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        observe("bot.push.offered", "Pushes offered to a pusher", |c| {
            c.offered.load(Ordering::Relaxed)
        });
        observe("bot.push.sent", "Pushes sent", |c| {
            c.sent.load(Ordering::Relaxed)
        });
        observe("bot.push.failed", "Pushes whose send failed", |c| {
            c.failed.load(Ordering::Relaxed)
        });
        let weak = Arc::downgrade(counts);
        let attributes = pusher.clone();
        meter
            .u64_observable_counter("bot.push.dropped")
            .with_description("Pushes shed by a pusher, by reason")
            .with_callback(move |o| {
                let Some(c) = weak.upgrade() else { return };
                for (reason, counter) in [
                    ("overflow_oldest", &c.dropped_oldest),
                    ("overflow_newest", &c.dropped_newest),
                    ("rejected", &c.rejected),
                    ("unsent_at_shutdown", &c.unsent),
                    ("cancelled_at_shutdown", &c.cancelled),
                ] {
                    o.observe(
                        load(counter),
                        &[attributes.clone(), KeyValue::new("reason", reason)],
                    );
                }
            })
            .build();
        let weak = Arc::downgrade(counts);
        let attributes = [pusher.clone()];
        meter
            .u64_observable_gauge("bot.push.buffered")
            .with_description("Pushes waiting in a pusher's buffer")
            .with_callback(move |o| {
                if let Some(c) = weak.upgrade() {
                    o.observe(load(&c.buffered), &attributes);
                }
            })
            .build();
        let weak = Arc::downgrade(counts);
        let attributes = [pusher.clone()];
        meter
            .u64_observable_gauge("bot.push.inflight")
            .with_description("Pushes being sent")
            .with_callback(move |o| {
                if let Some(c) = weak.upgrade() {
                    o.observe(load(&c.in_flight), &attributes);
                }
            })
            .build();
        Self {
            duration: meter
                .f64_histogram("bot.push.duration")
                .with_unit("s")
                .with_description("Time from a push's send to its answer")
                .with_boundaries(vec![
                    0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .build(),
            attributes: [pusher],
        }
    }

    pub(super) fn sent(&self, took: Duration) {
        self.duration.record(took.as_secs_f64(), &self.attributes);
    }
}
