//! The runtime's metrics: OpenTelemetry instruments named as in DESIGN.md section 7.
//!
//! Per-event counts are plain atomics read by observable instruments at collection time, so the
//! hot path never takes a lock or hashes an attribute set; per-batch and rare counts go straight
//! to OpenTelemetry counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

use crate::event::Platform;
use crate::queue::Queue;

/// How a handler attempt ended, the `outcome` attribute of `bot.events.processed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler returned `Ok`.
    Ok,
    /// The handler returned `Err`.
    Error,
    /// The handler panicked.
    Panic,
    /// The handler ran past its time-out.
    Timeout,
    /// The runtime stopped waiting for it at shutdown.
    Cancelled,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Panic,
        Outcome::Timeout,
        Outcome::Cancelled,
    ];

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Panic => "panic",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why events were dropped, the `reason` attribute of `bot.events.dropped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// Evicted by [`crate::Overflow::DropOldest`].
    OverflowOldest,
    /// Refused by [`crate::Overflow::DropNewest`].
    OverflowNewest,
    /// A redelivery of an event already accepted.
    Duplicate,
    /// A dead letter pushed out of a full dead-letter store.
    DeadLetterEvicted,
}

impl DropReason {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OverflowOldest => "overflow_oldest",
            DropReason::OverflowNewest => "overflow_newest",
            DropReason::Duplicate => "duplicate",
            DropReason::DeadLetterEvicted => "dead_letter_evicted",
        }
    }
}

/// The bucket bounds of the waits, `bot.db.pool.wait` and `bot.outbound.ratelimit.wait`, in
/// seconds: from no wait (well under 1 ms) to a minute (a pool that makes thousands of handlers
/// queue, a platform's longest `Retry-After` a client waits for).
const WAIT_BOUNDARIES: [f64; 21] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0,
];

/// Hot-path counters, shared with the observable instruments.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) processed: [AtomicU64; 5],
    pub(crate) retried: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) inflight: AtomicI64,
}

/// Buckets of `http.client.request.duration`, as OpenTelemetry's HTTP semantic conventions
/// advise.
const HTTP_CLIENT_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The instruments of one bot.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) counts: Arc<Counts>,
    received: Counter<u64>,
    dropped: Counter<u64>,
    rejected: Counter<u64>,
    skipped: Counter<u64>,
    handler_duration: Histogram<f64>,
    pub(crate) outbound_requests: Counter<u64>,
    pub(crate) outbound_ratelimit_wait: Histogram<f64>,
    pub(crate) http_client_duration: Histogram<f64>,
    pub(crate) db_pool_wait: Histogram<f64>,
    pub(crate) gateway_reconnects: Counter<u64>,
    pub(crate) setup_steps: Counter<u64>,
}

impl Metrics {
    pub(crate) fn new(meter: &Meter, queue: Arc<dyn Queue>) -> Self {
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        meter
            .u64_observable_counter("bot.events.processed")
            .with_description("Handler attempts finished, by outcome")
            .with_callback(move |o| {
                for outcome in Outcome::ALL {
                    o.observe(
                        c.processed[outcome.index()].load(Ordering::Relaxed),
                        &[KeyValue::new("outcome", outcome.as_str())],
                    );
                }
            })
            .build();
        let c = counts.clone();
        meter
            .u64_observable_counter("bot.events.retried")
            .with_description("Failed attempts scheduled for a retry")
            .with_callback(move |o| o.observe(c.retried.load(Ordering::Relaxed), &[]))
            .build();
        let c = counts.clone();
        meter
            .u64_observable_counter("bot.events.dead")
            .with_description("Events dead-lettered after their last attempt")
            .with_callback(move |o| o.observe(c.dead.load(Ordering::Relaxed), &[]))
            .build();
        let c = counts.clone();
        meter
            .i64_observable_gauge("bot.inflight")
            .with_description("Handlers running now")
            .with_callback(move |o| o.observe(c.inflight.load(Ordering::Relaxed), &[]))
            .build();
        meter
            .u64_observable_gauge("bot.queue.depth")
            .with_description("Events waiting in the queue")
            .with_callback(move |o| o.observe(queue.depth(), &[]))
            .build();
        Self {
            counts,
            received: meter
                .u64_counter("bot.events.received")
                .with_description("Events received from platforms, before deduplication")
                .build(),
            dropped: meter
                .u64_counter("bot.events.dropped")
                .with_description("Events dropped, by reason")
                .build(),
            rejected: meter
                .u64_counter("bot.webhook.rejected")
                .with_description("Webhook requests refused, by reason")
                .build(),
            skipped: meter
                .u64_counter("bot.events.skipped")
                .with_description(
                    "Events an adapter acknowledged but did not deliver, by platform and reason",
                )
                .build(),
            handler_duration: meter
                .f64_histogram("bot.handler.duration")
                .with_unit("s")
                .with_description("Duration of handler attempts")
                .with_boundaries(vec![
                    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 300.0,
                ])
                .build(),
            outbound_requests: meter
                .u64_counter("bot.outbound.requests")
                .with_description("Platform API requests, by platform and status")
                .build(),
            outbound_ratelimit_wait: meter
                .f64_histogram("bot.outbound.ratelimit.wait")
                .with_unit("s")
                .with_description("Time outbound calls waited for a rate limiter")
                // OpenTelemetry's default buckets start at 5: every wait under 5 s in one.
                .with_boundaries(WAIT_BOUNDARIES.to_vec())
                .build(),
            http_client_duration: meter
                .f64_histogram("http.client.request.duration")
                .with_unit("s")
                .with_description("Duration of platform API requests (one per attempt)")
                .with_boundaries(HTTP_CLIENT_BOUNDARIES.to_vec())
                .build(),
            db_pool_wait: meter
                .f64_histogram("bot.db.pool.wait")
                .with_unit("s")
                .with_description("Time spent waiting for a database connection")
                // In seconds, from a free connection (well under 1 ms) to a pool that makes
                // thousands of handlers queue; OpenTelemetry's default buckets start at 5.
                .with_boundaries(WAIT_BOUNDARIES.to_vec())
                .build(),
            gateway_reconnects: meter
                .u64_counter("bot.gateway.reconnects")
                .with_description("Gateway reconnections, by platform and reason")
                .build(),
            setup_steps: meter
                .u64_counter("bot.setup.steps")
                .with_description(
                    "Set-up calls an adapter makes at start-up, by platform, step and outcome",
                )
                .build(),
        }
    }

    pub(crate) fn received(&self, platform: &Platform, n: usize) {
        if n > 0 {
            self.received
                .add(n as u64, &[KeyValue::new("platform", platform.name())]);
        }
    }

    pub(crate) fn dropped(&self, reason: DropReason, n: usize) {
        if n > 0 {
            self.dropped
                .add(n as u64, &[KeyValue::new("reason", reason.as_str())]);
        }
    }

    pub(crate) fn skipped(&self, platform: &Platform, reason: &'static str, n: usize) {
        if n > 0 {
            self.skipped.add(
                n as u64,
                &[
                    KeyValue::new("platform", platform.name()),
                    KeyValue::new("reason", reason),
                ],
            );
        }
    }

    pub(crate) fn rejected(&self, platform: &Platform, reason: &'static str) {
        self.rejected.add(
            1,
            &[
                KeyValue::new("platform", platform.name()),
                KeyValue::new("reason", reason),
            ],
        );
    }

    pub(crate) fn processed(&self, outcome: Outcome, duration: Duration) {
        self.counts.processed[outcome.index()].fetch_add(1, Ordering::Relaxed);
        self.handler_duration.record(duration.as_secs_f64(), &[]);
    }

    pub(crate) fn retried(&self, n: usize) {
        self.counts.retried.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn dead(&self, n: usize) {
        self.counts.dead.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_inflight(&self, running: usize) {
        self.counts.inflight.store(
            i64::try_from(running).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }
}
