//! Identify concurrency and budget: one identify per bucket per 5 seconds, buckets by
//! `shard_id % max_concurrency`, and at most the day's session starts.
//!
//! Spacing is done by an [`IdentifyCoordinator`]: within this process by default, or across
//! processes that run slices of one bot's shards by a shared one (the PostgreSQL
//! `PgIdentifyCoordinator`, feature `postgres`). The budget follows `session_start_limit` of
//! `GET /gateway/bot` and the identifies made since, keeping a reserve.

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::manager::SessionStartLimit;
use crate::error::{Error, ErrorKind};

/// Discord lets one shard per bucket identify every 5 seconds.
pub const IDENTIFY_INTERVAL: Duration = Duration::from_secs(5);
/// Session starts kept back by default when the budget is tracked: left for a restart by hand.
pub const DEFAULT_IDENTIFY_RESERVE: u32 = 10;
/// How long a day of session starts lasts when Discord does not say.
const BUDGET_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The wait before asking a coordinator again after it failed.
const COORDINATOR_RETRY: Duration = Duration::from_secs(1);
/// How often the budget is read again from its source by default.
pub const DEFAULT_BUDGET_REFRESH: Duration = Duration::from_secs(60);

/// Where the day's session start budget is read (`GET /gateway/bot`): what Discord counts,
/// identifies of other processes of the bot included.
#[async_trait]
pub trait SessionStartSource: Send + Sync + fmt::Debug + 'static {
    /// The budget as Discord counts it now.
    ///
    /// # Errors
    ///
    /// When it cannot be read; the count kept so far is used meanwhile.
    async fn session_start_limit(&self) -> Result<SessionStartLimit, Error>;
}

#[async_trait]
impl SessionStartSource for crate::http::DiscordHttp {
    async fn session_start_limit(&self) -> Result<SessionStartLimit, Error> {
        Ok(self.gateway_bot().await?.session_start_limit)
    }
}

/// Grants identify turns per rate-limit bucket, so that the shards of one bucket identify at
/// least an interval apart (like twilight's gateway queue).
///
/// Implement it to share the buckets among processes that run slices of one bot's shards; the
/// default spacing is within one process.
#[async_trait]
pub trait IdentifyCoordinator: Send + Sync + fmt::Debug + 'static {
    /// Waits until a shard of `bucket` may identify (its last identify at least `interval` ago)
    /// and books the bucket's slot now.
    ///
    /// # Errors
    ///
    /// When the coordination cannot be done (a database unreachable); the shard asks again.
    async fn wait_turn(&self, bucket: u32, interval: Duration) -> Result<(), Error>;
}

/// Spaces the identifies of shards (shared by every shard of a manager) and keeps to the day's
/// session start budget.
///
/// Shards fall into `max_concurrency` buckets by `shard_id % max_concurrency`; each bucket lets
/// one identify through per [`IDENTIFY_INTERVAL`]. A shard waits for its bucket before it sends
/// Identify, so a restart of many shards never draws close 4008 or an invalid session. With a
/// [`IdentifyCoordinator`] ([`IdentifyQueue::with_coordinator`]) the buckets are shared with
/// other processes.
///
/// With a session start limit ([`IdentifyQueue::session_start_limit`]), each identify spends one
/// start; once only the reserve is left, [`IdentifyQueue::wait_turn`] refuses until the budget
/// resets (Discord resets the token of a bot that runs out).
#[derive(Clone)]
pub struct IdentifyQueue {
    buckets: Arc<[Mutex<Option<Instant>>]>,
    interval: Duration,
    coordinator: Option<Arc<dyn IdentifyCoordinator>>,
    budget: Option<Arc<StdMutex<Budget>>>,
    source: Option<(Arc<dyn SessionStartSource>, Duration)>,
}

/// The session starts left, tracked from `GET /gateway/bot` and the identifies made since.
#[derive(Debug)]
struct Budget {
    total: u32,
    remaining: u32,
    reset_at: Instant,
    reserve: u32,
    read_at: Instant,
}

impl fmt::Debug for IdentifyQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentifyQueue")
            .field("max_concurrency", &self.buckets.len())
            .field("interval", &self.interval)
            .field("coordinator", &self.coordinator)
            .field("budget", &self.budget)
            .field("source", &self.source)
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
        Self {
            buckets,
            interval,
            coordinator: None,
            budget: None,
            source: None,
        }
    }

    /// A queue whose buckets are spaced by `coordinator` (shared with other processes), with
    /// `interval` between identifies of a bucket.
    pub fn with_coordinator(
        max_concurrency: u32,
        interval: Duration,
        coordinator: Arc<dyn IdentifyCoordinator>,
    ) -> Self {
        Self {
            coordinator: Some(coordinator),
            ..Self::with_interval(max_concurrency, interval)
        }
    }

    /// Tracks the session start budget from `limit` (`GET /gateway/bot`), keeping `reserve`
    /// starts back: identifies are refused once only the reserve is left, until the reset.
    #[must_use]
    pub fn session_start_limit(mut self, limit: &SessionStartLimit, reserve: u32) -> Self {
        let reset_after = match limit.reset_after {
            0 => BUDGET_WINDOW,
            ms => Duration::from_millis(ms),
        };
        self.budget = Some(Arc::new(StdMutex::new(Budget {
            total: limit.total,
            remaining: limit.remaining.min(limit.total),
            reset_at: Instant::now() + reset_after,
            reserve,
            read_at: Instant::now(),
        })));
        self
    }

    /// Reads the budget again from `source` when it is older than `every`, before an identify:
    /// processes that share a bot spend one budget, which only Discord counts whole.
    #[must_use]
    pub fn refresh_budget_from(
        mut self,
        source: Arc<dyn SessionStartSource>,
        every: Duration,
    ) -> Self {
        self.source = Some((source, every));
        self
    }

    /// Reads the budget from the source when it is due; a failure keeps the count.
    async fn refresh_budget(&self) {
        let (Some(budget), Some((source, every))) = (&self.budget, &self.source) else {
            return;
        };
        {
            let budget = budget.lock().unwrap_or_else(|p| p.into_inner());
            if budget.read_at.elapsed() < *every {
                return;
            }
        }
        let read = source.session_start_limit().await;
        let mut budget = budget.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        budget.read_at = now;
        match read {
            Ok(limit) => {
                budget.total = limit.total;
                budget.remaining = limit.remaining.min(limit.total);
                budget.reset_at = now
                    + match limit.reset_after {
                        0 => BUDGET_WINDOW,
                        ms => Duration::from_millis(ms),
                    };
            }
            Err(error) => {
                tracing::warn!(%error, "discord: cannot read the session start budget; counting on");
            }
        }
    }

    /// Waits until shard `shard_id` may identify, books the bucket's slot, and spends one
    /// session start.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::SessionStartLimit`] when only the reserve of the day's session starts is
    /// left, with [`Error::retry_after`] saying when the budget resets.
    pub async fn wait_turn(&self, shard_id: u32) -> Result<(), Error> {
        self.refresh_budget().await;
        self.check_budget()?;
        let bucket_number = shard_id % u32::try_from(self.buckets.len()).unwrap_or(1);
        let bucket = &self.buckets[bucket_number as usize];
        let mut last = bucket.lock().await;
        match &self.coordinator {
            Some(coordinator) => {
                let mut failures = 0_u32;
                while let Err(error) = coordinator.wait_turn(bucket_number, self.interval).await {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(%error, bucket = bucket_number, failures, "discord: the identify coordinator failed; asking again");
                    }
                    tokio::time::sleep(COORDINATOR_RETRY).await;
                }
            }
            None => {
                if let Some(at) = *last {
                    tokio::time::sleep_until(at + self.interval).await;
                }
            }
        }
        *last = Some(Instant::now());
        self.spend()
    }

    /// How many buckets there are.
    pub fn max_concurrency(&self) -> usize {
        self.buckets.len()
    }

    /// Session starts left by this process's count, when the budget is tracked.
    pub fn session_starts_remaining(&self) -> Option<u32> {
        self.budget.as_ref().map(|b| {
            let mut budget = b.lock().unwrap_or_else(|p| p.into_inner());
            budget.refresh(Instant::now());
            budget.remaining
        })
    }

    fn check_budget(&self) -> Result<(), Error> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let mut budget = budget.lock().unwrap_or_else(|p| p.into_inner());
        budget.refresh(Instant::now());
        budget.allows()
    }

    fn spend(&self) -> Result<(), Error> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let mut budget = budget.lock().unwrap_or_else(|p| p.into_inner());
        budget.refresh(Instant::now());
        budget.allows()?;
        budget.remaining -= 1;
        Ok(())
    }
}

impl Budget {
    fn refresh(&mut self, now: Instant) {
        if now >= self.reset_at {
            self.remaining = self.total;
            self.reset_at = now + BUDGET_WINDOW;
        }
    }

    fn allows(&self) -> Result<(), Error> {
        if self.remaining > self.reserve {
            return Ok(());
        }
        let wait = self.reset_at.saturating_duration_since(Instant::now());
        Err(Error::new(
            ErrorKind::SessionStartLimit,
            format!(
                "discord: {} of {} session starts left today, the reserve; no identify until the reset in {}s",
                self.remaining,
                self.total,
                wait.as_secs()
            ),
        )
        .with_retry_after(Some(wait)))
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
            queue.wait_turn(shard).await.unwrap();
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
                queue.wait_turn(shard).await.unwrap();
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

    #[tokio::test(start_paused = true)]
    async fn the_budget_keeps_its_reserve_and_comes_back_at_the_reset() {
        let limit = SessionStartLimit {
            total: 1000,
            remaining: 4,
            reset_after: 60_000,
            max_concurrency: 1,
        };
        let queue = IdentifyQueue::with_interval(1, Duration::ZERO).session_start_limit(&limit, 2);
        queue.wait_turn(0).await.unwrap();
        queue.wait_turn(0).await.unwrap();
        let refused = queue.wait_turn(0).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::SessionStartLimit);
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(60)));
        assert_eq!(
            queue.session_starts_remaining(),
            Some(2),
            "the reserve is kept"
        );

        tokio::time::advance(Duration::from_secs(60)).await;
        queue.wait_turn(0).await.unwrap();
        assert_eq!(queue.session_starts_remaining(), Some(999));
    }

    /// Discord's count, spent by other processes too.
    #[derive(Debug)]
    struct Discord(StdMutex<SessionStartLimit>);

    #[async_trait]
    impl SessionStartSource for Discord {
        async fn session_start_limit(&self) -> Result<SessionStartLimit, Error> {
            Ok(*self.0.lock().unwrap())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_follows_discords_count_spent_by_other_processes() {
        let limit = SessionStartLimit {
            total: 1000,
            remaining: 500,
            reset_after: 3_600_000,
            max_concurrency: 1,
        };
        let discord = Arc::new(Discord(StdMutex::new(limit)));
        let queue = IdentifyQueue::with_interval(1, Duration::ZERO)
            .session_start_limit(&limit, 10)
            .refresh_budget_from(discord.clone(), Duration::from_secs(60));
        queue.wait_turn(0).await.unwrap();
        assert_eq!(queue.session_starts_remaining(), Some(499));
        // The other processes spent all but the reserve meanwhile.
        discord.0.lock().unwrap().remaining = 10;
        tokio::time::advance(Duration::from_secs(60)).await;
        let refused = queue.wait_turn(0).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::SessionStartLimit);
        assert_eq!(queue.session_starts_remaining(), Some(10));
    }
}
