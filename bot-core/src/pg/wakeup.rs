//! The signals a [`PgQueue`](super::PgQueue) shares with its `LISTEN` and `NOTIFY` tasks.
//!
//! They live here, apart from both, so that the dependency goes one way: the queue starts the
//! tasks of [`notify`](super::notify) and hands them these; the tasks know nothing of the queue.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::pool::PgPool;

/// What the queue and its wake-up tasks share.
pub(super) struct Wakeups {
    /// The queue's own connections, for `NOTIFY` and the settings of the `LISTEN` connection.
    pub(super) pool: PgPool,
    /// The channel of the queue's schema.
    pub(super) channel: String,
    /// The shortest pause between two notifications.
    pub(super) notify_debounce: Duration,
    /// New events may be claimable (a push, a completion, a `NOTIFY`): wakes the idle claimer.
    pub(super) wake: Notify,
    /// A push committed: the notifier tells the other processes.
    pub(super) notify_wanted: Notify,
    /// The queue closed: every task ends.
    pub(super) closed: CancellationToken,
    /// Whether the `LISTEN` connection is up.
    pub(super) listening: AtomicBool,
    /// `NOTIFY` wake-ups received.
    pub(super) notifications: AtomicU64,
    /// What `quiet_until` counts from.
    epoch: Instant,
    /// No notification before this (microseconds since `epoch`): the last one, sent by the
    /// notifier or carried by a push, plus the debounce.
    quiet_until: AtomicU64,
}

impl Wakeups {
    /// Signals for a queue on `pool`'s schema, none raised.
    pub(super) fn new(pool: PgPool, notify_debounce: Duration) -> Self {
        Self {
            channel: format!("botrt_events_{}", pool.schema()),
            pool,
            notify_debounce,
            wake: Notify::new(),
            notify_wanted: Notify::new(),
            closed: CancellationToken::new(),
            listening: AtomicBool::new(false),
            notifications: AtomicU64::new(0),
            epoch: Instant::now(),
            quiet_until: AtomicU64::new(0),
        }
    }

    fn now_micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn debounce_micros(&self) -> u64 {
        u64::try_from(self.notify_debounce.as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether a push may carry a notification now (none was sent within the debounce); if so,
    /// the next one waits for the debounce from now.
    pub(super) fn take_notification(&self) -> bool {
        let now = self.now_micros();
        let quiet = self.quiet_until.load(Ordering::Acquire);
        now >= quiet
            && self
                .quiet_until
                .compare_exchange(
                    quiet,
                    now.saturating_add(self.debounce_micros()),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// How long until the next notification may go out.
    pub(super) fn quiet_for(&self) -> Duration {
        let wait = self
            .quiet_until
            .load(Ordering::Acquire)
            .saturating_sub(self.now_micros());
        Duration::from_micros(wait)
    }

    /// A notification goes out now: the next waits for the debounce.
    pub(super) fn notified_now(&self) {
        let until = self.now_micros().saturating_add(self.debounce_micros());
        self.quiet_until.fetch_max(until, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wakeups(debounce: Duration) -> Wakeups {
        let pool = PgPool::builder("postgres://127.0.0.1/none")
            .build()
            .expect("a pool is only configured here");
        Wakeups::new(pool, debounce)
    }

    #[tokio::test]
    async fn one_notification_per_debounce_whoever_sends_it() {
        let w = wakeups(Duration::from_secs(60));
        assert!(w.take_notification(), "the first push carries one");
        assert!(
            !w.take_notification(),
            "the next within the debounce does not"
        );
        assert!(w.quiet_for() > Duration::from_secs(59));
        let w = wakeups(Duration::from_secs(60));
        w.notified_now();
        assert!(!w.take_notification(), "the notifier's counts too");
        let w = wakeups(Duration::ZERO);
        assert!(w.take_notification() && w.take_notification());
        assert_eq!(w.quiet_for(), Duration::ZERO);
    }
}
