//! The signals a [`PgQueue`](super::PgQueue) shares with its `LISTEN` and `NOTIFY` tasks.
//!
//! They live here, apart from both, so that the dependency goes one way: the queue starts the
//! tasks of [`notify`](super::notify) and hands them these; the tasks know nothing of the queue.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::pool::PgPool;

/// How long no notification must have gone out (past the debounce) for a push to carry one.
const CARRY_AFTER_QUIET: Duration = Duration::from_millis(50);

/// How long no push statement may have started for a push that sends its `NOTIFY` behind it to
/// commit early (see `pg::queue::sql::FLUSH`): on an idle queue the second transaction costs
/// nothing that matters and the pickup is a millisecond sooner; under load, where the pushes
/// go out back to back, it would be one more transaction and one more wait for the disk every
/// `notify_debounce`, for no pickup sooner (5 % fewer events/s end to end, measured).
const EARLY_AFTER_QUIET: Duration = Duration::from_millis(5);

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
    /// No notification before this (microseconds since `epoch`): the last one (sent by the
    /// notifier, carried by a push or sent behind it), plus the debounce.
    quiet_until: AtomicU64,
    /// [`CARRY_AFTER_QUIET`] in microseconds.
    carry_after_quiet: u64,
    /// When the last push statement started (microseconds since `epoch`).
    last_push: AtomicU64,
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
            // As if the last notification were long past: the first push may carry one.
            epoch: Instant::now()
                .checked_sub(CARRY_AFTER_QUIET)
                .unwrap_or_else(Instant::now),
            quiet_until: AtomicU64::new(0),
            carry_after_quiet: u64::try_from(CARRY_AFTER_QUIET.as_micros()).unwrap_or(u64::MAX),
            // As if the last push were long past too.
            last_push: AtomicU64::new(0),
        }
    }

    fn now_micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn debounce_micros(&self) -> u64 {
        u64::try_from(self.notify_debounce.as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether a push may carry a notification now: none went out for [`CARRY_AFTER_QUIET`]
    /// past the debounce, so the queue was idle and this push starts a burst. If so, the next
    /// notification waits for the debounce from now.
    ///
    /// Only then: a commit that carries a `NOTIFY` holds the database's notification lock
    /// through its commit, and every other notifying commit waits for it. Under a stream of
    /// pushes the notifier's statements, which write no WAL, hold it for far less; pushes
    /// carrying it stalled one another (measured: 17,500 against 23,000 events/s end to end,
    /// when such a push still waited for its disk flush before its commit ended; since
    /// migration 11 it commits early and a transaction behind it waits for the disk, which has
    /// not been measured against this rule).
    pub(super) fn take_notification(&self) -> bool {
        self.take_after(self.carry_after_quiet)
    }

    /// Notes that a push statement starts now; whether none started for [`EARLY_AFTER_QUIET`]
    /// before it.
    pub(super) fn push_after_quiet(&self) -> bool {
        let now = self.now_micros();
        let last = self.last_push.swap(now, Ordering::AcqRel);
        now.saturating_sub(last) >= u64::try_from(EARLY_AFTER_QUIET.as_micros()).unwrap_or(0)
    }

    /// Whether a notification may go out now (the debounce is over), as the push's own
    /// statement behind it: if so, the next waits for the debounce from now.
    pub(super) fn take_notification_now(&self) -> bool {
        self.take_after(0)
    }

    /// Whether `quiet_for` microseconds passed since the debounce ended; if so, a notification goes
    /// out now, and the next waits for the debounce from now.
    fn take_after(&self, quiet_for: u64) -> bool {
        let now = self.now_micros();
        let quiet = self.quiet_until.load(Ordering::Acquire);
        now >= quiet.saturating_add(quiet_for)
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
    async fn one_notification_per_debounce_and_a_push_carries_it_only_after_a_quiet_time() {
        let w = wakeups(Duration::from_secs(60));
        assert!(w.take_notification(), "the first push carries one");
        assert!(!w.take_notification(), "the next does not");
        assert!(w.quiet_for() > Duration::from_secs(59));
        let w = wakeups(Duration::from_secs(60));
        w.notified_now();
        assert!(!w.take_notification(), "the notifier's counts too");
        // No debounce: the notifier may send at once, yet a push carries one only after the
        // quiet time (an hour here, so that no pause of this thread can pass it).
        let w = Wakeups {
            carry_after_quiet: 3_600_000_000,
            epoch: Instant::now(),
            ..wakeups(Duration::ZERO)
        };
        w.notified_now();
        assert_eq!(w.quiet_for(), Duration::ZERO);
        assert!(
            !w.take_notification(),
            "a stream of pushes leaves it to the notifier"
        );
        let w = Wakeups {
            carry_after_quiet: 0,
            ..wakeups(Duration::ZERO)
        };
        assert!(w.take_notification() && w.take_notification());
    }
}
