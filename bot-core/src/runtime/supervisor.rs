//! The supervisor's dispatcher: pulls as it has free slots, hands events to the workers,
//! collects their outcomes, acknowledges them when the queue can do it at once, and hands the
//! other completions over.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::complete::{Completer, Completions, Unsettled};
use super::lease::{HeldLeases, LeaseKeeper};
use super::task::{self, Completion, Failed, Finished, TaskFailure, Workers};
use super::{Progress, ShutdownReport, deadline_after};
use crate::context::Shared;
use crate::handler::BoxHandler;
use crate::limits::Limits;
use crate::queue::{Dead, DeadLetter, Delivery, Nack, Queue};
use crate::telemetry::{Metrics, Outcome};

/// The longest a handler error's retry hint (a platform's `Retry-After`) defers its retry.
const MAX_RETRY_HINT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

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

/// A function called with every dead letter, for alerting or parking it elsewhere.
pub type DeadLetterHook = Arc<dyn Fn(&DeadLetter) + Send + Sync>;
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
            self.hand_over(&mut pending, &to_completer, &unsettled, held.as_deref())
                .await;
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
                    self.hand_over(&mut pending, &to_completer, &unsettled, held.as_deref())
                .await;
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
                        if c.failure() == Some(TaskFailure::Cancelled) {
                            cancelled += 1;
                        } else {
                            drained += 1;
                        }
                    });
                }
            }
        }
        self.hand_over(&mut pending, &to_completer, &unsettled, held.as_deref())
            .await;
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
            not_started: self.queue.depth_now().await.saturating_sub(cancelled),
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
        // Most attempts succeed; the turn's acknowledgements start from an empty vector.
        pending.acks.reserve(n);
        for c in f.completions {
            each(&c);
            self.complete(c, f.at, pending);
        }
        n
    }

    /// Decides what a finished attempt means for its event.
    ///
    /// Metrics are recorded here, on the dispatcher, rather than in the tasks: one writer means
    /// no contended cache lines and an uncontended histogram lock.
    /// `ended`: when its worker reported it.
    fn complete(&self, c: Completion, ended: Instant, pending: &mut Completions) {
        self.metrics.processed(
            c.failure().map_or(Outcome::Ok, Outcome::from),
            ended.saturating_duration_since(c.started),
        );
        let Some(failed) = c.failed else {
            pending.acks.push(c.lease);
            return;
        };
        // Every failure hands its event back, for the retry or the dead letter.
        let Failed {
            why: (failure, retryable, error, retry_after),
            event,
        } = *failed;
        if failure == TaskFailure::Cancelled {
            pending.release.push(Delivery {
                lease: c.lease,
                event,
                attempt: c.attempt,
            });
            return;
        }
        let error = failure.describe(error.as_deref());
        let retry = &self.limits.retry;
        if retryable && c.attempt < retry.max_attempts {
            // A platform's word on when to retry (a rate limit's `Retry-After`) wins over a
            // shorter back-off: retrying sooner would only be refused again.
            // Capped below what clients remember of sends (LINE's 20-minute reply window, the
            // sent parts' hour), so that a retry after a long hint still skips what went out.
            let hint = retry_after.unwrap_or_default().min(MAX_RETRY_HINT);
            let delay = retry.backoff(c.attempt).max(hint);
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

impl Supervisor {
    /// Applies the turn's acknowledgements here when the queue can do it at once
    /// ([`Queue::ack_now`]: an in-memory queue), then sends the rest of its completions to the
    /// completer, counting them as unsettled.
    ///
    /// Applied here, a successful attempt costs no hand-over to the completer task (a message
    /// and a wake-up, often of the other thread) and no second pass under the queue's lock.
    async fn hand_over(
        &self,
        pending: &mut Completions,
        completer: &mpsc::Sender<Completions>,
        unsettled: &Unsettled,
        held: Option<&HeldLeases>,
    ) {
        if !pending.acks.is_empty()
            && let Some(done) = self.queue.ack_now(&pending.acks)
        {
            Completer::warn_stale("acknowledging", done);
            if let Some(held) = held {
                held.remove(pending.acks.iter().copied());
            }
            pending.acks.clear();
            self.progress.finished(done.applied);
        }
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
