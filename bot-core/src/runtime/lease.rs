//! The lease keeper: extends the leases this process holds, in a task of its own.
//!
//! It runs beside the dispatcher rather than inside its `select!`, so that no amount of work on
//! the dispatcher (pulls, completions, a slow acknowledgement) can delay an extension. A lease is
//! held from the pull until its completion is applied (or found lost), so events whose
//! acknowledgement is still being retried keep their leases too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::queue::{Lease, Queue};

/// The leases this process holds: inserted by the dispatcher when it pulls, removed by the
/// completer once a completion is settled (or by the dispatcher, for the acknowledgements it
/// applies itself through `Queue::ack_now`).
#[derive(Debug, Default)]
pub(crate) struct HeldLeases {
    leases: Mutex<foldhash::HashSet<Lease>>,
}

impl HeldLeases {
    pub(crate) fn insert(&self, leases: impl IntoIterator<Item = Lease>) {
        self.lock().extend(leases);
    }

    pub(crate) fn remove(&self, leases: impl IntoIterator<Item = Lease>) {
        let mut held = self.lock();
        for lease in leases {
            held.remove(&lease);
        }
    }

    fn snapshot(&self) -> Vec<Lease> {
        self.lock().iter().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, foldhash::HashSet<Lease>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Extends every held lease by the lease duration, every third of it.
pub(crate) struct LeaseKeeper {
    queue: Arc<dyn Queue>,
    duration: Duration,
    held: Arc<HeldLeases>,
}

impl LeaseKeeper {
    /// Starts the keeper; it runs until `stop` fires.
    pub(crate) fn spawn(
        queue: Arc<dyn Queue>,
        duration: Duration,
        held: Arc<HeldLeases>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let keeper = Self {
            queue,
            duration,
            held,
        };
        // One long-lived task per supervisor, not per-message work.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(keeper.run(stop))
    }

    async fn run(self, stop: CancellationToken) {
        let period = self.duration / 3;
        // After a failure, try again soon: the lease still has two thirds of its time at least.
        let retry = (self.duration / 10).max(Duration::from_millis(1));
        let mut next = super::deadline_after(Instant::now(), period);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(next) => {}
            }
            let leases = self.held.snapshot();
            let started = Instant::now();
            if leases.is_empty() {
                next = super::deadline_after(started, period);
                continue;
            }
            // A hung statement must not hold the next attempt back past the lease.
            let extended =
                tokio::time::timeout(period, self.queue.extend_lease(&leases, self.duration)).await;
            next = match extended {
                Ok(Ok(done)) => {
                    // Completions applied during the extension made some of it stale: harmless.
                    let lost = if done.stale > 0 {
                        let held = self.held.lock();
                        let settled = leases.iter().filter(|l| !held.contains(l)).count();
                        done.stale.saturating_sub(settled)
                    } else {
                        0
                    };
                    if lost > 0 {
                        tracing::warn!(
                            lost,
                            "leases of running handlers were lost; their events may run elsewhere too"
                        );
                    }
                    super::deadline_after(started, period)
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, count = leases.len(), retry_in = ?retry, "extending leases failed");
                    super::deadline_after(Instant::now(), retry)
                }
                Err(_) => {
                    tracing::error!(count = leases.len(), timeout = ?period, retry_in = ?retry, "extending leases timed out");
                    super::deadline_after(Instant::now(), retry)
                }
            };
        }
    }
}
