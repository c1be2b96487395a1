//! The completer: applies acknowledgements, retries, dead letters and releases in a task of its
//! own, retrying each kind with back-off until it applies or its lease is found lost.
//!
//! The dispatcher hands over one batch per turn and goes on pulling (the acknowledgements of a
//! queue that applies them at once, `Queue::ack_now`, it applies itself and never hands over); a failing or slow queue
//! statement never blocks it. Completions that wait for a retry keep their leases (see
//! [`super::lease`]), so that a handled event does not run again because its acknowledgement
//! failed for a while. Every completion is fenced by its lease token: applying one late is safe.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::lease::HeldLeases;
use super::{DeadLetterHook, Progress};
use crate::error::Error;
use crate::queue::{Completed, Dead, Delivery, Lease, Nack, Queue};
use crate::telemetry::{DropReason, Metrics};

/// First wait after a failed completion statement; it doubles up to the completer's cap.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Completions of one or more dispatcher turns, one queue call per kind.
#[derive(Debug, Default)]
pub(crate) struct Completions {
    pub(crate) acks: Vec<Lease>,
    pub(crate) nacks: Vec<Nack>,
    pub(crate) dead: Vec<Dead>,
    pub(crate) release: Vec<Delivery>,
}

impl Completions {
    pub(crate) fn len(&self) -> usize {
        self.acks.len() + self.nacks.len() + self.dead.len() + self.release.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Completions handed over and not yet settled (applied, found stale, or given up at the end),
/// so that the dispatcher stops pulling while they pile up.
#[derive(Debug, Default)]
pub(crate) struct Unsettled {
    count: AtomicUsize,
    settled: Notify,
}

impl Unsettled {
    pub(crate) fn get(&self) -> usize {
        self.count.load(AtomicOrdering::Acquire)
    }

    pub(crate) fn add(&self, n: usize) {
        self.count.fetch_add(n, AtomicOrdering::AcqRel);
    }

    fn settle(&self, n: usize) {
        if n > 0 {
            self.count.fetch_sub(n, AtomicOrdering::AcqRel);
            // A stored permit: a dispatcher that checks and then waits cannot miss it.
            self.settled.notify_one();
        }
    }

    /// Completes after some completions settled (or spuriously).
    pub(crate) async fn changed(&self) {
        self.settled.notified().await;
    }
}

/// One kind of completion waiting for its statement, with its own back-off: a statement that
/// keeps failing for one kind does not hold the others back.
struct Retrying<T> {
    items: Vec<T>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl<T> Default for Retrying<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            failures: 0,
            retry_at: None,
        }
    }
}

impl<T> Retrying<T> {
    fn due(&self, now: Instant) -> bool {
        !self.items.is_empty() && self.retry_at.is_none_or(|at| at <= now)
    }

    fn wake_at(&self) -> Option<Instant> {
        if self.items.is_empty() {
            None
        } else {
            self.retry_at
        }
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// Schedules the next try; returns the wait.
    fn failed(&mut self, max_backoff: Duration) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
            .min(max_backoff);
        self.retry_at = Some(Instant::now() + wait);
        wait
    }
}

/// Every kind of completion not yet applied.
#[derive(Default)]
struct Waiting {
    acks: Retrying<Lease>,
    nacks: Retrying<Nack>,
    dead: Retrying<Dead>,
    release: Retrying<Delivery>,
}

impl Waiting {
    fn take(&mut self, c: Completions) {
        self.acks.items.extend(c.acks);
        self.nacks.items.extend(c.nacks);
        self.dead.items.extend(c.dead);
        self.release.items.extend(c.release);
    }

    fn any_due(&self, now: Instant) -> bool {
        self.acks.due(now) || self.nacks.due(now) || self.dead.due(now) || self.release.due(now)
    }

    fn next_retry(&self) -> Option<Instant> {
        [
            self.acks.wake_at(),
            self.nacks.wake_at(),
            self.dead.wake_at(),
            self.release.wake_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn len(&self) -> usize {
        self.acks.items.len()
            + self.nacks.items.len()
            + self.dead.items.len()
            + self.release.items.len()
    }
}

/// What the completer needs; it owns the dead-letter bookkeeping.
pub(crate) struct Completer {
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) metrics: Metrics,
    pub(crate) progress: Arc<Progress>,
    pub(crate) dead_letter_hook: Option<DeadLetterHook>,
    pub(crate) dead_letters_evicted: u64,
    pub(crate) held: Option<Arc<HeldLeases>>,
    pub(crate) unsettled: Arc<Unsettled>,
    /// The longest wait between two tries of one kind.
    pub(crate) max_backoff: Duration,
    /// How long to keep retrying once the dispatcher has stopped (its sender dropped).
    pub(crate) final_window: Duration,
}

impl Completer {
    /// Starts the completer; it ends once `input` is closed and everything is settled, or
    /// `final_window` after the close.
    pub(crate) fn spawn(self, input: mpsc::Receiver<Completions>) -> JoinHandle<()> {
        // One long-lived task per supervisor, not per-message work.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(self.run(input))
    }

    async fn run(mut self, mut input: mpsc::Receiver<Completions>) {
        let mut waiting = Waiting::default();
        let mut give_up_at: Option<Instant> = None;
        loop {
            if give_up_at.is_none() {
                loop {
                    match input.try_recv() {
                        Ok(c) => waiting.take(c),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            give_up_at =
                                Some(super::deadline_after(Instant::now(), self.final_window));
                            break;
                        }
                    }
                }
            }
            let now = Instant::now();
            if !waiting.any_due(now) {
                match (waiting.next_retry(), give_up_at) {
                    // Nothing waits and nothing more comes: done.
                    (None, Some(_)) => return,
                    (None, None) => match input.recv().await {
                        Some(c) => waiting.take(c),
                        None => return,
                    },
                    (Some(at), Some(end)) => {
                        if at >= end {
                            self.give_up(&waiting);
                            return;
                        }
                        tokio::time::sleep_until(at).await;
                    }
                    (Some(at), None) => {
                        tokio::select! {
                            () = tokio::time::sleep_until(at) => {}
                            got = input.recv() => match got {
                                Some(c) => waiting.take(c),
                                None => {
                                    give_up_at = Some(super::deadline_after(
                                        Instant::now(),
                                        self.final_window,
                                    ));
                                }
                            },
                        }
                    }
                }
                continue;
            }
            if waiting.acks.due(now) {
                self.apply_acks(&mut waiting.acks).await;
            }
            if waiting.nacks.due(now) {
                self.apply_nacks(&mut waiting.nacks).await;
            }
            if waiting.dead.due(now) {
                self.apply_dead(&mut waiting.dead).await;
            }
            if waiting.release.due(now) {
                self.apply_release(&mut waiting.release).await;
            }
        }
    }

    /// The leases of settled completions are no longer held or counted.
    fn settled(&self, leases: impl Iterator<Item = Lease>, n: usize) {
        if let Some(held) = &self.held {
            held.remove(leases);
        }
        self.unsettled.settle(n);
    }

    fn failed<T>(&self, kind: &mut Retrying<T>, what: &str, e: &Error) {
        let retry_in = kind.failed(self.max_backoff);
        let count = kind.items.len();
        // The first failures of a blip are expected; say it louder once they go on.
        if kind.failures <= 3 {
            tracing::warn!(error = %e, count, ?retry_in, "{what} failed; retrying (leases kept)");
        } else {
            tracing::error!(error = %e, count, ?retry_in, failures = kind.failures, "{what} keeps failing; retrying (leases kept)");
        }
    }

    pub(super) fn warn_stale(what: &str, done: Completed) {
        if done.stale > 0 {
            tracing::warn!(
                stale = done.stale,
                "{what}: leases were lost before the completion applied; those events may run again elsewhere"
            );
        }
    }

    async fn apply_acks(&mut self, acks: &mut Retrying<Lease>) {
        match self.queue.ack(&acks.items).await {
            Ok(done) => {
                acks.succeeded();
                Self::warn_stale("acknowledging", done);
                self.progress.finished(done.applied);
                let items = std::mem::take(&mut acks.items);
                self.settled(items.iter().copied(), items.len());
            }
            Err(e) => self.failed(acks, "acknowledging events", &e),
        }
    }

    async fn apply_nacks(&mut self, nacks: &mut Retrying<Nack>) {
        // The trait takes the batch by value: keep a copy for a retry (failures are rare).
        match self.queue.nack(nacks.items.clone()).await {
            Ok(done) => {
                nacks.succeeded();
                Self::warn_stale("scheduling retries", done);
                self.metrics.retried(done.applied);
                let items = std::mem::take(&mut nacks.items);
                self.settled(items.iter().map(|n| n.lease), items.len());
            }
            Err(e) => self.failed(nacks, "scheduling retries", &e),
        }
    }

    async fn apply_dead(&mut self, dead: &mut Retrying<Dead>) {
        let letters = match self.queue.dead(dead.items.clone()).await {
            Ok(letters) => letters,
            Err(e) => {
                self.failed(dead, "dead-lettering events", &e);
                return;
            }
        };
        dead.succeeded();
        let items = std::mem::take(&mut dead.items);
        if letters.len() < items.len() {
            tracing::warn!(
                stale = items.len() - letters.len(),
                "dead-lettering: leases were lost before the completion applied; those events may run again elsewhere"
            );
        }
        self.metrics.dead(letters.len());
        let evicted = self.queue.dead_letters_evicted();
        let before = std::mem::replace(&mut self.dead_letters_evicted, evicted);
        self.metrics.dropped(
            DropReason::DeadLetterEvicted,
            usize::try_from(evicted.saturating_sub(before)).unwrap_or(usize::MAX),
        );
        if let Some(hook) = &self.dead_letter_hook {
            for letter in &letters {
                // A panicking hook must not take the completer down.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(letter))).is_err()
                {
                    tracing::error!("dead letter hook panicked");
                }
            }
        }
        // Counted after the hook ran, so that `idle` also means "hooks called".
        self.progress.finished(letters.len());
        self.settled(items.iter().map(|d| d.lease), items.len());
    }

    async fn apply_release(&mut self, release: &mut Retrying<Delivery>) {
        match self.queue.release(release.items.clone()).await {
            Ok(done) => {
                release.succeeded();
                Self::warn_stale("releasing events", done);
                let items = std::mem::take(&mut release.items);
                self.settled(items.iter().map(|d| d.lease), items.len());
            }
            Err(e) => self.failed(release, "releasing events", &e),
        }
    }

    fn give_up(&self, waiting: &Waiting) {
        tracing::error!(
            acks = waiting.acks.items.len(),
            retries = waiting.nacks.items.len(),
            dead_letters = waiting.dead.items.len(),
            releases = waiting.release.items.len(),
            "completions still failing at the end of the shutdown; their events run again once their leases expire"
        );
        self.unsettled.settle(waiting.len());
    }
}
