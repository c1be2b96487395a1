//! Identify concurrency: one identify per bucket per 5 seconds, buckets by `shard_id % max_concurrency`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Discord lets one shard per bucket identify every 5 seconds.
pub const IDENTIFY_INTERVAL: Duration = Duration::from_secs(5);

/// Spaces the identifies of the shards of one process (shared by every shard of a manager).
///
/// Shards fall into `max_concurrency` buckets by `shard_id % max_concurrency`; each bucket lets
/// one identify through per [`IDENTIFY_INTERVAL`]. A shard waits for its bucket before it sends
/// Identify, so a restart of many shards never draws close 4008 or an invalid session.
#[derive(Clone)]
pub struct IdentifyQueue {
    buckets: Arc<[Mutex<Option<Instant>>]>,
    interval: Duration,
}

impl fmt::Debug for IdentifyQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentifyQueue")
            .field("max_concurrency", &self.buckets.len())
            .field("interval", &self.interval)
            .finish()
    }
}

impl IdentifyQueue {
    /// A queue for `max_concurrency` buckets (from `GET /gateway/bot`; at least 1).
    pub fn new(max_concurrency: u32) -> Self {
        Self::with_interval(max_concurrency, IDENTIFY_INTERVAL)
    }

    /// As [`IdentifyQueue::new`] with another spacing (tests; a gateway proxy with its own rule).
    pub fn with_interval(max_concurrency: u32, interval: Duration) -> Self {
        let buckets = (0..max_concurrency.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        Self { buckets, interval }
    }

    /// Waits until shard `shard_id` may identify, and books the bucket's slot.
    pub async fn wait_turn(&self, shard_id: u32) {
        let bucket = &self.buckets[shard_id as usize % self.buckets.len()];
        let mut last = bucket.lock().await;
        if let Some(at) = *last {
            tokio::time::sleep_until(at + self.interval).await;
        }
        *last = Some(Instant::now());
    }

    /// How many buckets there are.
    pub fn max_concurrency(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sixteen_shards_with_one_bucket_identify_five_seconds_apart() {
        let queue = IdentifyQueue::new(1);
        let start = Instant::now();
        let mut turns = Vec::new();
        for shard in 0..16 {
            queue.wait_turn(shard).await;
            turns.push(start.elapsed());
        }
        for (i, pair) in turns.windows(2).enumerate() {
            assert!(
                pair[1] - pair[0] >= IDENTIFY_INTERVAL,
                "shard {} after {:?}",
                i + 1,
                pair[1] - pair[0]
            );
        }
        assert_eq!(turns[15], IDENTIFY_INTERVAL * 15);
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_run_side_by_side() {
        let queue = IdentifyQueue::new(4);
        let start = Instant::now();
        let waits = (0..8).map(|shard| {
            let queue = queue.clone();
            async move {
                queue.wait_turn(shard).await;
                (shard, start.elapsed())
            }
        });
        let turns = futures::future::join_all(waits).await;
        for (shard, at) in turns {
            // Shards 0-3 go at once, 4-7 (the same buckets) five seconds later.
            let expected = if shard < 4 {
                Duration::ZERO
            } else {
                IDENTIFY_INTERVAL
            };
            assert_eq!(at, expected, "shard {shard}");
        }
    }
}
