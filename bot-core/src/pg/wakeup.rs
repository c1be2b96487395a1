//! The signals a [`PgQueue`](super::PgQueue) shares with its `LISTEN` and `NOTIFY` tasks.
//!
//! They live here, apart from both, so that the dependency goes one way: the queue starts the
//! tasks of [`notify`](super::notify) and hands them these; the tasks know nothing of the queue.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

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
        }
    }
}
