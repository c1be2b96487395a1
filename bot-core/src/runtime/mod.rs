//! The supervisor: pulls events as it has free slots, runs handlers, retries, dead-letters, drains.
//!
//! One dispatcher task owns the bookkeeping of running handlers, so the hot path has no shared
//! locks besides the queue's: it pulls at most `max_in_flight - running` events (demand-driven, as
//! GenStage does), hands them to a few long-lived workers that run many attempts each (`task`),
//! and collects their outcomes, one message per worker poll round, from a channel whose capacity
//! is `max_in_flight`, so it can never grow. Completions are batched per turn and
//! handed to the completer (`complete`), which applies them, one queue call per kind, and retries
//! failed ones; on backends whose leases expire the lease keeper (`lease`) extends every lease
//! held, running or waiting for its completion. Both run in tasks of their own, so a busy
//! dispatcher never delays them, and they never block the dispatcher.

mod complete;
mod lease;
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
use crate::queue::{Dead, DeadLetter, Delivery, Nack, Queue};
use crate::telemetry::{Metrics, Outcome};

use complete::{Completer, Completions, Unsettled};
use lease::{HeldLeases, LeaseKeeper};
use task::{Completion, Finished, TaskFailure, Workers};

/// Handler workers per runtime thread: more than one, so that work spreads over the threads
/// although a worker runs on one thread at a time.
const WORKERS_PER_THREAD: usize = 2;

/// How many handler workers to start on the current runtime.
fn worker_count() -> usize {
    let threads = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
    (threads * WORKERS_PER_THREAD).max(2)
}

/// The longest wait between two tries of a failing completion statement.
const COMPLETION_MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long completions are still retried once the dispatcher has stopped, at most.
const COMPLETION_FINAL_WINDOW: Duration = Duration::from_secs(10);

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

impl Supervisor {
    /// Runs until `stop` fires, then drains. Returns what the drain did.
    pub(crate) async fn run(self, stop: CancellationToken) -> ShutdownReport {
        let max = self.limits.max_in_flight;
        let (tx, mut rx) = mpsc::channel::<Finished>(max);
        let hard_stop = CancellationToken::new();
        let env = Arc::new(task::TaskEnv {
            shared: self.shared.clone(),
            handler: self.handler.clone(),
            default_timeout: self.limits.handler_timeout,
            hard_stop: hard_stop.clone(),
        });
        let mut workers = Workers::start(worker_count(), max, &env, &tx);
        drop(tx);
        let lease_duration = self.queue.lease_duration().filter(|d| !d.is_zero());
        // Leases are held from the pull until their completion is settled, and kept alive by a
        // task of their own: see `lease`.
        let held = lease_duration.map(|_| Arc::new(HeldLeases::default()));
        let keeper_stop = CancellationToken::new();
        let keeper = lease_duration.zip(held.clone()).map(|(duration, held)| {
            LeaseKeeper::spawn(self.queue.clone(), duration, held, keeper_stop.clone())
        });
        let unsettled = Arc::new(Unsettled::default());
        // Every batch holds at least one unsettled completion, and the dispatcher stops pulling
        // at `max` unsettled while at most `max` handlers still finish: sends never wait.
        let (to_completer, completer_input) =
            mpsc::channel::<Completions>(max.saturating_mul(2).max(1));
        let completer = Completer {
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
            progress: self.progress.clone(),
            dead_letter_hook: self.dead_letter_hook.clone(),
            dead_letters_evicted: self.dead_letters_evicted.load(AtomicOrdering::Relaxed),
            held: held.clone(),
            unsettled: unsettled.clone(),
            max_backoff: lease_duration.map_or(COMPLETION_MAX_BACKOFF, |d| {
                (d / 4).clamp(Duration::from_millis(1), COMPLETION_MAX_BACKOFF)
            }),
            final_window: lease_duration
                .map_or(COMPLETION_FINAL_WINDOW, |d| d.min(COMPLETION_FINAL_WINDOW)),
        }
        .spawn(completer_input);
        let mut running = 0usize;
        let mut pending = Completions::default();
        let mut buf = Vec::with_capacity(64);
        // An empty pull means the queue was closed: stop asking instead of spinning.
        let mut queue_open = true;

        loop {
            while let Ok(f) = rx.try_recv() {
                running -= self.finished(f, &mut workers, &mut pending, |_| {});
            }
            hand_over(&mut pending, &to_completer, &unsettled).await;
            self.metrics.set_inflight(running);
            // Completions that cannot be applied pile up: claim nothing more until they settle.
            let stalled = unsettled.get() >= max;
            // A backend must not hand out more than asked; stay safe if one does.
            let free = if stalled {
                0
            } else {
                max.saturating_sub(running)
            };
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                pulled = self.queue.pull(free), if free > 0 && queue_open => match pulled {
                    Ok(batch) if batch.is_empty() => {
                        tracing::debug!("queue closed; waiting for the running handlers and the stop");
                        queue_open = false;
                    }
                    Ok(batch) => {
                        if let Some(held) = &held {
                            held.insert(batch.iter().map(|d| d.lease));
                        }
                        running += batch.len();
                        workers.dispatch(batch);
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
                _ = rx.recv_many(&mut buf, max) => {
                    for f in buf.drain(..) {
                        running -= self.finished(f, &mut workers, &mut pending, |_| {});
                    }
                }
                () = unsettled.changed(), if stalled => {}
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
                _ = rx.recv_many(&mut buf, max) => {
                    for f in buf.drain(..) {
                        let n = self.finished(f, &mut workers, &mut pending, |_| {});
                        running -= n;
                        drained += n as u64;
                    }
                    hand_over(&mut pending, &to_completer, &unsettled).await;
                    self.metrics.set_inflight(running);
                }
                () = tokio::time::sleep_until(deadline) => break,
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
                for f in buf.drain(..) {
                    running -= self.finished(f, &mut workers, &mut pending, |c| {
                        if c.failure == Some(TaskFailure::Cancelled) {
                            cancelled += 1;
                        } else {
                            drained += 1;
                        }
                    });
                }
            }
        }
        hand_over(&mut pending, &to_completer, &unsettled).await;
        self.metrics.set_inflight(running);
        // Idle workers end now; one holding an abandoned handler ends when that handler does.
        drop(workers.close());
        // The completer applies what is left (retrying for a bounded time) while the keeper
        // keeps those leases alive; then the keeper stops.
        drop(to_completer);
        if let Err(e) = completer.await {
            tracing::error!(error = %e, "completer task failed");
        }
        keeper_stop.cancel();
        if let Some(keeper) = keeper
            && let Err(e) = keeper.await
        {
            tracing::error!(error = %e, "lease keeper task failed");
        }
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

    /// Takes one worker's completions; returns how many attempts finished. `each` sees every
    /// completion first.
    fn finished(
        &self,
        f: Finished,
        workers: &mut Workers,
        pending: &mut Completions,
        mut each: impl FnMut(&Completion),
    ) -> usize {
        let n = f.completions.len();
        workers.finished(f.worker, n);
        for c in f.completions {
            each(&c);
            self.complete(c, pending);
        }
        n
    }

    /// Decides what a finished attempt means for its event.
    ///
    /// Metrics are recorded here, on the dispatcher, rather than in the tasks: one writer means
    /// no contended cache lines and an uncontended histogram lock.
    fn complete(&self, c: Completion, pending: &mut Completions) {
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
}

/// Sends the turn's completions to the completer, counting them as unsettled.
async fn hand_over(
    pending: &mut Completions,
    completer: &mpsc::Sender<Completions>,
    unsettled: &Unsettled,
) {
    if pending.is_empty() {
        return;
    }
    let batch = std::mem::take(pending);
    unsettled.add(batch.len());
    if completer.send(batch).await.is_err() {
        // Only when the completer task died (it does not panic): nothing can apply them now.
        tracing::error!(
            "completer gone; completions dropped, their events run again once their leases expire"
        );
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
