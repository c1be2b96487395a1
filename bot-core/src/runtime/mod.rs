//! The supervisor: pulls events as it has free slots, runs handlers, retries, dead-letters, drains.
//!
//! One dispatcher task owns all the bookkeeping, so the hot path has no shared locks besides the
//! queue's: it pulls at most `max_in_flight - running` events (demand-driven, as GenStage does),
//! spawns one task per event, and collects each task's outcome from a channel whose capacity is
//! `max_in_flight`, so it can never grow. Completions are batched into one queue call per kind.

mod task;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::Shared;
use crate::handler::BoxHandler;
use crate::limits::Limits;
use crate::queue::{Dead, DeadLetter, Delivery, Lease, Nack, Queue};
use crate::telemetry::{DropReason, Metrics, Outcome};

use task::{Completion, TaskFailure};

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

    fn finished(&self, n: usize) {
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

/// A function called with every dead letter, for alerting or parking it elsewhere.
pub type DeadLetterHook = Arc<dyn Fn(&DeadLetter) + Send + Sync>;

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

pub(crate) struct Supervisor {
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) handler: BoxHandler,
    pub(crate) limits: Limits,
    pub(crate) shared: Arc<Shared>,
    pub(crate) metrics: Metrics,
    pub(crate) dead_letter_hook: Option<DeadLetterHook>,
    pub(crate) progress: Arc<Progress>,
    /// Dead-letter evictions already counted.
    pub(crate) dead_letters_evicted: AtomicU64,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Completions waiting to be sent to the queue in one call each.
#[derive(Default)]
struct Pending {
    acks: Vec<Lease>,
    nacks: Vec<Nack>,
    dead: Vec<Dead>,
    release: Vec<Delivery>,
}

impl Supervisor {
    /// Runs until `stop` fires, then drains. Returns what the drain did.
    pub(crate) async fn run(self, stop: CancellationToken) -> ShutdownReport {
        let max = self.limits.max_in_flight;
        let (tx, mut rx) = mpsc::channel::<Completion>(max);
        let hard_stop = CancellationToken::new();
        let env = Arc::new(task::TaskEnv {
            shared: self.shared.clone(),
            handler: self.handler.clone(),
            default_timeout: self.limits.handler_timeout,
            hard_stop: hard_stop.clone(),
            completions: tx,
        });
        let mut running = 0usize;
        let mut pending = Pending::default();
        let mut buf = Vec::with_capacity(64);
        let mut keeper = LeaseKeeper::new(self.queue.lease_duration());
        // An empty pull means the queue was closed: stop asking instead of spinning.
        let mut queue_open = true;

        loop {
            while let Ok(c) = rx.try_recv() {
                running -= 1;
                keeper.finished(c.lease);
                self.complete(c, &mut pending);
            }
            self.flush(&mut pending).await;
            self.metrics.set_inflight(running);
            // A backend must not hand out more than asked; stay safe if one does.
            let free = max.saturating_sub(running);
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                pulled = self.queue.pull(free), if free > 0 && queue_open => match pulled {
                    Ok(batch) if batch.is_empty() => {
                        tracing::debug!("queue closed; waiting for the running handlers and the stop");
                        queue_open = false;
                    }
                    Ok(batch) => {
                        for delivery in batch {
                            running += 1;
                            keeper.started(delivery.lease);
                            task::spawn(&env, delivery);
                        }
                        self.metrics.set_inflight(running);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "queue pull failed; retrying in 1 s");
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                },
                n = rx.recv_many(&mut buf, max) => {
                    running -= n;
                    for c in buf.drain(..) {
                        keeper.finished(c.lease);
                        self.complete(c, &mut pending);
                    }
                }
                () = keeper.due() => keeper.extend(&*self.queue).await,
            }
        }

        // Drain: nothing new starts; running handlers get until the deadline. Events a backend
        // claimed ahead go back first, for other processes.
        let started = Instant::now();
        self.queue.stop_pulling().await;
        let deadline = deadline_after(started, self.limits.shutdown_timeout);
        let mut drained = 0u64;
        tracing::info!(running, "shutting down: draining in-flight handlers");
        while running > 0 {
            tokio::select! {
                n = rx.recv_many(&mut buf, max) => {
                    running -= n;
                    drained += n as u64;
                    for c in buf.drain(..) {
                        keeper.finished(c.lease);
                        self.complete(c, &mut pending);
                    }
                    self.flush(&mut pending).await;
                    self.metrics.set_inflight(running);
                }
                () = tokio::time::sleep_until(deadline) => break,
                () = keeper.due() => keeper.extend(&*self.queue).await,
            }
        }
        let mut cancelled = 0u64;
        let mut abandoned = 0u64;
        if running > 0 {
            tracing::warn!(
                running,
                "shutdown_timeout reached: cancelling the remaining handlers"
            );
            hard_stop.cancel();
            // Cancelled handlers get CANCEL_GRACE to wind down; one that blocks its thread and
            // never yields is abandoned after that, so shutdown always ends.
            let abandon_at = deadline_after(
                Instant::now(),
                task::CANCEL_GRACE + Duration::from_millis(500),
            );
            while running > 0 {
                let n = tokio::select! {
                    n = rx.recv_many(&mut buf, max) => n,
                    () = tokio::time::sleep_until(abandon_at) => {
                        tracing::error!(running, "handlers ignored cancellation; abandoning them");
                        abandoned = running as u64;
                        break;
                    }
                };
                if n == 0 {
                    break;
                }
                running -= n;
                for c in buf.drain(..) {
                    if c.failure == Some(TaskFailure::Cancelled) {
                        cancelled += 1;
                    } else {
                        drained += 1;
                    }
                    self.complete(c, &mut pending);
                }
            }
        }
        self.flush(&mut pending).await;
        self.metrics.set_inflight(running);
        self.queue.close();
        let report = ShutdownReport {
            drained,
            cancelled,
            abandoned,
            // Cancelled events went back to the queue; count them once.
            not_started: self.queue.depth().saturating_sub(cancelled),
            drain_time: started.elapsed(),
        };
        // Nothing more will finish here: whoever waits for idle must not wait forever.
        self.progress.stop();
        tracing::info!(?report, "supervisor stopped");
        report
    }

    /// Decides what a finished attempt means for its event.
    ///
    /// Metrics are recorded here, on the dispatcher, rather than in the tasks: one writer means
    /// no contended cache lines and an uncontended histogram lock.
    fn complete(&self, c: Completion, pending: &mut Pending) {
        self.metrics
            .processed(c.failure.map_or(Outcome::Ok, Outcome::from), c.elapsed);
        let Some(failure) = c.failure else {
            pending.acks.push(c.lease);
            return;
        };
        let Some(event) = c.event else {
            // Tasks hand the event back with every failure; without it there is nothing to retry.
            tracing::error!("failed attempt came back without its event; acknowledging it");
            pending.acks.push(c.lease);
            return;
        };
        if failure == TaskFailure::Cancelled {
            pending.release.push(Delivery {
                lease: c.lease,
                event,
                attempt: c.attempt,
            });
            return;
        }
        let error = failure.describe(c.error.as_deref());
        let retry = &self.limits.retry;
        if c.retryable && c.attempt < retry.max_attempts {
            let delay = retry.backoff(c.attempt);
            tracing::warn!(
                attempt = c.attempt,
                retry_in = ?delay,
                %error,
                "handler attempt failed; retrying"
            );
            pending.nacks.push(Nack {
                lease: c.lease,
                delay,
                error,
                event,
            });
        } else {
            tracing::error!(attempt = c.attempt, %error, "handler failed for good; dead-lettering");
            pending.dead.push(Dead {
                lease: c.lease,
                error,
                event,
            });
        }
    }

    async fn flush(&self, pending: &mut Pending) {
        if !pending.acks.is_empty() {
            match self.queue.ack(&pending.acks).await {
                Ok(done) => self.progress.finished(done.applied),
                Err(e) => tracing::error!(error = %e, count = pending.acks.len(), "ack failed"),
            }
            pending.acks.clear();
        }
        if !pending.nacks.is_empty() {
            let n = pending.nacks.len();
            match self.queue.nack(std::mem::take(&mut pending.nacks)).await {
                Ok(done) => self.metrics.retried(done.applied),
                Err(e) => tracing::error!(error = %e, count = n, "nack failed"),
            }
        }
        if !pending.dead.is_empty() {
            let n = pending.dead.len();
            match self.queue.dead(std::mem::take(&mut pending.dead)).await {
                Ok(letters) => {
                    self.metrics.dead(letters.len());
                    let evicted = self.queue.dead_letters_evicted();
                    let before = self
                        .dead_letters_evicted
                        .swap(evicted, AtomicOrdering::Relaxed);
                    self.metrics.dropped(
                        DropReason::DeadLetterEvicted,
                        usize::try_from(evicted.saturating_sub(before)).unwrap_or(usize::MAX),
                    );
                    if let Some(hook) = &self.dead_letter_hook {
                        for letter in &letters {
                            let hook = hook.clone();
                            // A panicking hook must not take the dispatcher down.
                            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                hook(letter)
                            }))
                            .is_err()
                            {
                                tracing::error!("dead letter hook panicked");
                            }
                        }
                    }
                    // Counted after the hook ran, so that `idle` also means "hooks called".
                    self.progress.finished(letters.len());
                }
                Err(e) => tracing::error!(error = %e, count = n, "dead-lettering failed"),
            }
        }
        if !pending.release.is_empty() {
            let n = pending.release.len();
            if let Err(e) = self
                .queue
                .release(std::mem::take(&mut pending.release))
                .await
            {
                tracing::error!(error = %e, count = n, "release failed");
            }
        }
    }
}

/// Keeps the leases of running handlers alive on backends whose leases expire.
struct LeaseKeeper {
    /// The lease duration, if leases expire.
    duration: Option<Duration>,
    held: foldhash::HashSet<Lease>,
    next: Instant,
}

impl LeaseKeeper {
    fn new(duration: Option<Duration>) -> Self {
        let duration = duration.filter(|d| !d.is_zero());
        Self {
            duration,
            held: foldhash::HashSet::default(),
            next: deadline_after(Instant::now(), duration.map_or(Duration::MAX, |d| d / 3)),
        }
    }

    fn started(&mut self, lease: Lease) {
        if self.duration.is_some() {
            self.held.insert(lease);
        }
    }

    fn finished(&mut self, lease: Lease) {
        if self.duration.is_some() {
            self.held.remove(&lease);
        }
    }

    /// Completes when the held leases are due for an extension; never without expiring leases.
    async fn due(&self) {
        if self.duration.is_some() {
            tokio::time::sleep_until(self.next).await;
        } else {
            std::future::pending::<()>().await;
        }
    }

    async fn extend(&mut self, queue: &dyn Queue) {
        let Some(duration) = self.duration else {
            return;
        };
        self.next = deadline_after(Instant::now(), duration / 3);
        if self.held.is_empty() {
            return;
        }
        let leases: Vec<Lease> = self.held.iter().copied().collect();
        match queue.extend_lease(&leases, duration).await {
            Ok(done) if done.stale > 0 => tracing::warn!(
                stale = done.stale,
                "leases of running handlers were lost; their events may run elsewhere too"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, count = leases.len(), "extending leases failed"),
        }
    }
}

/// `now + after`, or a point far enough away when that overflows (`Duration::MAX` means "wait").
pub(crate) fn deadline_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl TaskFailure {
    fn describe(self, error: Option<&str>) -> String {
        match (self, error) {
            (_, Some(e)) => e.to_owned(),
            (TaskFailure::Timeout, None) => "handler timed out".to_owned(),
            (TaskFailure::Cancelled, None) => "cancelled at shutdown".to_owned(),
            (TaskFailure::Panic, None) => "handler panicked".to_owned(),
            (TaskFailure::Error, None) => "handler failed".to_owned(),
        }
    }
}

impl From<TaskFailure> for Outcome {
    fn from(f: TaskFailure) -> Self {
        match f {
            TaskFailure::Error => Outcome::Error,
            TaskFailure::Panic => Outcome::Panic,
            TaskFailure::Timeout => Outcome::Timeout,
            TaskFailure::Cancelled => Outcome::Cancelled,
        }
    }
}
