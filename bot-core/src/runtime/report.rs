//! [`ShutdownReport`]: what a graceful shutdown did.

use std::time::Duration;

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Handlers that finished (any outcome) between the shutdown signal and the end of the drain.
    pub drained: u64,
    /// Handlers still running at `shutdown_timeout`, cancelled and returned to the queue.
    pub cancelled: u64,
    /// Handlers that ignored their cancellation (they block their thread) and were left running
    /// so that the shutdown could end; their events were not returned to the queue.
    pub abandoned: u64,
    /// Events still waiting in the queue, not run. With the memory queue they are lost when the
    /// process ends; with a durable queue another process or the next start runs them.
    pub not_started: u64,
    /// How long the drain took.
    pub drain_time: Duration,
}

impl ShutdownReport {
    /// Events accepted but not run to completion by this process.
    pub fn not_run(&self) -> u64 {
        self.cancelled + self.abandoned + self.not_started
    }
}
