//! [`Progress`]: events accepted versus events finished, for [`crate::Bot::idle`].

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use tokio::sync::Notify;

/// Events accepted through the ingress versus events finished (acknowledged or dead-lettered) by
/// this process's supervisor, so that [`crate::Bot::idle`] can wait for the two to meet.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    accepted: AtomicU64,
    finished: AtomicU64,
    /// The supervisor has stopped: nothing more will finish.
    stopped: std::sync::atomic::AtomicBool,
    changed: Notify,
}

impl Progress {
    pub(crate) fn accepted(&self, n: usize) {
        self.accepted.fetch_add(n as u64, AtomicOrdering::AcqRel);
    }

    /// Takes back events counted by [`Progress::accepted`] that the queue did not take.
    pub(crate) fn unaccepted(&self, n: usize) {
        if n > 0 {
            self.accepted.fetch_sub(n as u64, AtomicOrdering::AcqRel);
            self.changed.notify_waiters();
        }
    }

    /// Accepted events that will never finish (evicted by `DropOldest`).
    pub(crate) fn evicted(&self, n: usize) {
        self.finished.fetch_add(n as u64, AtomicOrdering::AcqRel);
        self.changed.notify_waiters();
    }

    pub(super) fn finished(&self, n: usize) {
        if n > 0 {
            self.finished.fetch_add(n as u64, AtomicOrdering::AcqRel);
            self.changed.notify_waiters();
        }
    }

    /// Counts `n` events as accepted ahead of a push; [`CountedAhead::settle`] corrects the count
    /// to what the push took, and dropping the guard unsettled (the push failed, or its future
    /// was dropped) takes them all back.
    pub(crate) fn count_ahead(&self, n: usize) -> CountedAhead<'_> {
        self.accepted(n);
        CountedAhead {
            progress: self,
            counted: n,
        }
    }

    /// Nothing more will finish: wake and release every waiter.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, AtomicOrdering::Release);
        self.changed.notify_waiters();
    }

    pub(crate) async fn wait_idle(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.stopped.load(AtomicOrdering::Acquire)
                || self.finished.load(AtomicOrdering::Acquire)
                    >= self.accepted.load(AtomicOrdering::Acquire)
            {
                return;
            }
            changed.await;
        }
    }
}

/// Events counted as accepted ahead of a push; see [`Progress::count_ahead`].
pub(crate) struct CountedAhead<'a> {
    progress: &'a Progress,
    counted: usize,
}

impl CountedAhead<'_> {
    /// The push took `accepted` events.
    pub(crate) fn settle(mut self, accepted: usize) {
        if accepted > self.counted {
            self.progress.accepted(accepted - self.counted);
        } else {
            self.progress.unaccepted(self.counted - accepted);
        }
        self.counted = 0;
    }
}

impl Drop for CountedAhead<'_> {
    fn drop(&mut self) {
        self.progress.unaccepted(self.counted);
    }
}
