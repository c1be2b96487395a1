//! Helpers of the queue tests: pulling with a deadline, and the ids of what came.

use std::time::Duration;

use bot_core::queue::{Delivery, Queue};

/// How long a test waits for events it expects.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Pulls until `n` deliveries came, failing after [`DEADLINE`].
pub(crate) async fn pull_n(queue: &dyn Queue, n: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = tokio::time::timeout(DEADLINE, queue.pull(n - got.len()))
            .await
            .expect("events come within the deadline")
            .expect("pull");
        assert!(!batch.is_empty(), "queue closed while pulling");
        got.extend(batch);
    }
    got
}

/// What one pull hands out within `wait` (empty when nothing comes).
pub(crate) async fn pull_within(queue: &dyn Queue, max: usize, wait: Duration) -> Vec<Delivery> {
    tokio::time::timeout(wait, queue.pull(max))
        .await
        .map(|r| r.expect("pull"))
        .unwrap_or_default()
}

/// The ids of `deliveries`, in order.
pub(crate) fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.event.id.to_string()).collect()
}

/// Pulls and acknowledges until `n` deliveries came, failing after [`DEADLINE`] without one:
/// under per-conversation ordering a conversation's next event comes only once its head is
/// acknowledged.
pub(crate) async fn drain_acking(queue: &dyn Queue, n: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = tokio::time::timeout(DEADLINE, queue.pull(n - got.len()))
            .await
            .expect("events come within the deadline")
            .expect("pull");
        assert!(!batch.is_empty(), "queue closed while pulling");
        let leases: Vec<_> = batch.iter().map(|d| d.lease).collect();
        queue.ack(&leases).await.expect("ack");
        got.extend(batch);
    }
    got
}
