//! The supervisor: pulls events as it has free slots, runs handlers, retries, dead-letters, drains.
//!
//! One dispatcher task owns the bookkeeping of running handlers, so the hot path has no shared
//! locks besides the queue's: it pulls at most `max_in_flight - running` events (demand-driven, as
//! GenStage does), hands them to a few long-lived workers that run many attempts each (`task`),
//! and collects their outcomes, one message per worker poll round, from a channel whose capacity
//! is `max_in_flight`, so it can never grow. Completions are batched per turn and
//! handed to the completer (`complete`), which applies them, one queue call per kind, and retries
//! failed ones (a queue that acknowledges at once, `Queue::ack_now`, is acknowledged by the
//! dispatcher itself); on backends whose leases expire the lease keeper (`lease`) extends every lease
//! held, running or waiting for its completion. Both run in tasks of their own, so a busy
//! dispatcher never delays them, and they never block the dispatcher.
//!
//! The rooms: `supervisor.rs` (the dispatcher), `task.rs` (the workers), `alarms.rs` (the
//! workers' watch over their attempts' time-outs and the hard stop), `complete.rs` (the
//! completer), `lease.rs` (the lease keeper), `progress.rs` (what [`crate::Bot::idle`] waits
//! for) and `report.rs` ([`ShutdownReport`]).

mod alarms;
mod complete;
mod lease;
mod progress;
mod report;
mod supervisor;
mod task;

use std::time::Duration;

use tokio::time::Instant;

pub(crate) use progress::Progress;
pub use report::ShutdownReport;
pub use supervisor::DeadLetterHook;
pub(crate) use supervisor::Supervisor;

/// `now + after`, or a point far enough away when that overflows (`Duration::MAX` means "wait").
pub(crate) fn deadline_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
