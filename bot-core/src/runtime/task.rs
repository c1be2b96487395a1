//! Handler attempts run by a bounded set of worker tasks: time-out, panic isolation,
//! cancellation, and completions reported in batches.
//!
//! Why workers rather than a task per event: a noop handler costs less than the spawn, the
//! scheduling and the completion message around it. A worker polls each attempt once as it
//! takes it, so an attempt that finishes at its first poll is never scheduled or stored on its
//! own; those that wait are kept in one `FuturesUnordered` and polled in place, and the
//! completions of one batch or poll round go back to the dispatcher as one message. There are
//! a few workers per runtime thread, so work still spreads over the threads; the dispatcher
//! gives a batch of up to [`MIN_SHARE`] whole to the least busy worker (one message, one
//! wake-up) and shares a larger one out among the least busy workers.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::alarms::{Alarm, Alarms};
use crate::context::{AttemptCancel, Context, Shared};
use crate::event::Event;
use crate::handler::{BoxHandler, Handler as _, is_retryable};
use crate::queue::{Delivery, Lease};

/// Why an attempt did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskFailure {
    Error,
    Panic,
    Timeout,
    Cancelled,
}

/// What an attempt reports back to the dispatcher: 48 bytes for a success, a failure's details
/// boxed. With them inline (104 bytes) a ten-event round's vector was past glibc's per-thread
/// cache (1,032 bytes), and took an arena's lock to be allocated and freed.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) lease: Lease,
    pub(crate) attempt: u32,
    /// When the attempt started (its worker read the clock once for the batch it came in).
    pub(crate) started: Instant,
    /// How the attempt failed, if it did.
    pub(crate) failed: Option<Box<Failed>>,
}

/// What a failed attempt reports beyond its [`Completion`].
#[derive(Debug)]
pub(crate) struct Failed {
    /// What failed, whether a retry may succeed, the error's text, and when it said to retry.
    pub(crate) why: Failure,
    /// The event, handed back for a retry or a dead letter.
    pub(crate) event: Event,
}

impl Completion {
    /// How the attempt ended: `None` for a success.
    pub(crate) fn failure(&self) -> Option<TaskFailure> {
        self.failed.as_ref().map(|f| f.why.0)
    }
}

/// The completions of one worker's poll round.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) worker: usize,
    /// When the worker sent them: the end of each of their attempts, for its duration (the
    /// clock read once per message, not once per attempt).
    pub(crate) at: Instant,
    pub(crate) completions: Vec<Completion>,
}

/// What every attempt of one supervisor shares.
pub(crate) struct TaskEnv {
    pub(crate) shared: Arc<Shared>,
    pub(crate) handler: BoxHandler,
    pub(crate) default_timeout: Duration,
    pub(crate) hard_stop: CancellationToken,
}

/// What the attempts of one worker share: the supervisor's environment, and the worker's alarms
/// (its attempts' time-outs and the hard stop, which the worker watches for them).
pub(crate) struct WorkerEnv {
    pub(crate) env: Arc<TaskEnv>,
    pub(crate) alarms: Alarms,
}

/// The most deliveries of one batch that go to one worker before the batch is shared out
/// ([`Workers::dispatch`]): a batch of up to this many goes whole to one worker, a larger one
/// over `ceil(n / MIN_SHARE)` workers (all of them at most).
///
/// Each message to a worker costs a wake-up of its task (often on the other thread), a poll
/// round and a message of completions back. Spread one by one over four workers, a webhook's
/// ten events cost four of each; whole, one (in `perf`, the dispatcher's and the workers' share
/// of noop-bot's CPU under Messenger webhooks fell from 16.6 % to 11.7 %, and `gateway-consume`'s
/// CPU per event by about 8 %, BENCHMARKS.md). The price: a small batch's attempts start one after
/// another on one thread, so handlers that compute for long before their first wait (which
/// should not, see the book's supervisor chapter) finish later than when spread over the
/// threads.
pub(crate) const MIN_SHARE: usize = 16;

/// The workers of one supervisor and how many attempts each holds.
pub(crate) struct Workers {
    inputs: Vec<mpsc::Sender<Vec<Delivery>>>,
    load: Vec<usize>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers. Each input holds up to `max_in_flight` messages and every message
    /// carries at least one of at most `max_in_flight` running attempts, so sending never waits.
    pub(crate) fn start(
        count: usize,
        max_in_flight: usize,
        env: &Arc<TaskEnv>,
        completions: &mpsc::Sender<Finished>,
    ) -> Self {
        let count = count.clamp(1, max_in_flight.max(1));
        let mut inputs = Vec::with_capacity(count);
        let mut handles = Vec::with_capacity(count);
        for worker in 0..count {
            let (tx, rx) = mpsc::channel(max_in_flight.max(1));
            inputs.push(tx);
            // A fixed number of long-lived tasks per supervisor, not per-message work.
            #[allow(clippy::disallowed_methods)]
            // Unconstrained: Tokio's per-task budget is meant for one future, not the thousands
            // a worker polls in one round; under it, attempts whose answers had arrived kept
            // seeing Pending and their HTTP calls timed out (slow-api). A worker still yields
            // after polling each attempt once (FuturesUnordered does), and after first-polling
            // the batches waiting in its input (at most max_in_flight attempts).
            handles.push(tokio::spawn(tokio::task::unconstrained(work(
                Arc::new(WorkerEnv {
                    env: env.clone(),
                    alarms: Alarms::default(),
                }),
                worker,
                rx,
                completions.clone(),
            ))));
        }
        Self {
            load: vec![0; count],
            inputs,
            handles,
        }
    }

    /// Hands a batch to the least busy workers: a batch of up to [`MIN_SHARE`] deliveries goes
    /// whole to the worker with the fewest attempts, in one message; a larger one to the
    /// `ceil(n / MIN_SHARE)` least busy workers (all of them at most), each delivery to the one
    /// of those with the fewest attempts at the time (so about `n / sharers` each when they
    /// were equally busy).
    pub(crate) fn dispatch(&mut self, batch: Vec<Delivery>) {
        if batch.is_empty() {
            return;
        }
        let sharers = batch
            .len()
            .div_ceil(MIN_SHARE)
            .clamp(1, self.inputs.len().max(1));
        if sharers == 1 {
            let worker = self.least_busy(0..self.load.len());
            self.load[worker] += batch.len();
            self.send(worker, batch);
            return;
        }
        let mut chosen: Vec<usize> = (0..self.load.len()).collect();
        chosen.sort_by_key(|&worker| self.load[worker]);
        chosen.truncate(sharers);
        // Each delivery's worker first, then vectors of the right size: grown one push at a
        // time, they moved every delivery again at each doubling.
        let mut counts = vec![0usize; self.inputs.len()];
        let workers: Vec<usize> = (0..batch.len())
            .map(|_| {
                let worker = self.least_busy(chosen.iter().copied());
                self.load[worker] += 1;
                if let Some(count) = counts.get_mut(worker) {
                    *count += 1;
                }
                worker
            })
            .collect();
        let mut per_worker: Vec<Vec<Delivery>> =
            counts.into_iter().map(Vec::with_capacity).collect();
        for (delivery, worker) in batch.into_iter().zip(workers) {
            per_worker[worker].push(delivery);
        }
        for (worker, deliveries) in per_worker.into_iter().enumerate() {
            if !deliveries.is_empty() {
                self.send(worker, deliveries);
            }
        }
    }

    /// The worker of `among` with the fewest attempts (the first of them on a tie).
    fn least_busy(&self, among: impl Iterator<Item = usize>) -> usize {
        among.min_by_key(|&worker| self.load[worker]).unwrap_or(0)
    }

    fn send(&self, worker: usize, deliveries: Vec<Delivery>) {
        if let Err(e) = self.inputs[worker].try_send(deliveries) {
            // Only when the worker is gone (it does not panic) or, against the bound above,
            // full: the attempts cannot run; their leases stay held until shutdown.
            tracing::error!(worker, error = %e, "handler worker refused attempts");
        }
    }

    /// `n` attempts of `worker` finished.
    pub(crate) fn finished(&mut self, worker: usize, n: usize) {
        if let Some(load) = self.load.get_mut(worker) {
            *load = load.saturating_sub(n);
        }
    }

    /// No more attempts: workers end once their running attempts have finished. Workers still
    /// holding abandoned attempts are left to end on their own.
    pub(crate) fn close(self) -> Vec<JoinHandle<()>> {
        drop(self.inputs);
        self.handles
    }
}

/// One worker: takes attempts from `input`, runs them side by side, reports each poll round's
/// completions in one message, and watches its attempts' time-outs and the hard stop for them
/// (one timer and one wait for the stop, [`Alarms`]). Ends when `input` is closed and nothing
/// runs.
///
/// An attempt is polled once where it arrives ([`start`]): one that finishes there (most, in a
/// busy bot) goes into the round's completions without a place among the running ones (a
/// `FuturesUnordered` node, allocated and freed per attempt, and its queue of tasks to wake);
/// only the others are kept and polled again. The clock is read once per batch of arrivals
/// (their start) and once per message of completions (their end), not twice per attempt.
async fn work(
    env: Arc<WorkerEnv>,
    worker: usize,
    mut input: mpsc::Receiver<Vec<Delivery>>,
    completions: mpsc::Sender<Finished>,
) {
    // The attempts borrow the worker's environment (declared after it, dropped before it):
    // no reference count taken and dropped per attempt.
    let env: &WorkerEnv = &env;
    let mut running: FuturesUnordered<Running<'_>> = FuturesUnordered::new();
    let mut open = true;
    let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
    let mut armed = None;
    let hard_stop = env.env.hard_stop.clone();
    let mut stop = std::pin::pin!(hard_stop.cancelled());
    let mut stopped = false;
    loop {
        // Every turn, not only when nothing else is ready: under a steady load the input or an
        // attempt is ready at every turn, and the time-outs and the hard stop must not wait for
        // a quiet moment. Cheap: an atomic load, and the alarms' lock once.
        if !running.is_empty() {
            if !stopped && hard_stop.is_cancelled() {
                stopped = true;
                env.alarms.stop(Instant::now());
            }
            std::future::poll_fn(|task| {
                let _ = env.alarms.poll_timer(timer.as_mut(), &mut armed, task);
                Poll::Ready(())
            })
            .await;
        }
        tokio::select! {
            biased;
            got = input.recv(), if open => match got {
                Some(batch) => {
                    let mut done = Vec::with_capacity(batch.len());
                    let mut batch = Some(batch);
                    std::future::poll_fn(|task| {
                        // The batches already waiting start with this one, in the same message.
                        while let Some(arrived) = batch.take().or_else(|| input.try_recv().ok()) {
                            let started = Instant::now();
                            for delivery in arrived {
                                match start(env, delivery, started, task) {
                                    Started::Done(c) => done.push(c),
                                    Started::Running(attempt) => keep(&mut running, attempt),
                                }
                            }
                        }
                        // The running ones too, in this turn: the input may be ready at every
                        // turn of a steady load, and this arm comes first. Those kept above get
                        // their second poll (which sets their time-out's alarm), and those whose
                        // answers came go in the same message. FuturesUnordered yields after
                        // polling each once.
                        while let Poll::Ready(Some(c)) = running.poll_next_unpin(task) {
                            done.push(c);
                        }
                        Poll::Ready(())
                    })
                    .await;
                    if !done.is_empty() {
                        let finished = Finished { worker, at: Instant::now(), completions: done };
                        // As below: this never waits long.
                        if completions.send(finished).await.is_err() {
                            return;
                        }
                    }
                }
                None => open = false,
            },
            Some(first) = running.next(), if !running.is_empty() => {
                // Room for a typical round at once (grown one by one, this showed in the
                // webhook's profile), bounded: with thousands waiting, few finish per round.
                let mut done = Vec::with_capacity(running.len().min(63) + 1);
                done.push(first);
                // Whatever else is ready now goes in the same message.
                while let Some(Some(c)) = running.next().now_or_never() {
                    done.push(c);
                }
                let finished = Finished { worker, at: Instant::now(), completions: done };
                // The channel holds max_in_flight messages, each with at least one of at most
                // max_in_flight attempts: this never waits long, and it only fails when the
                // supervisor is gone, when nobody needs the answer.
                if completions.send(finished).await.is_err() {
                    return;
                }
            }
            // After the attempts: the alarms they set in this round arm the timer before the
            // worker waits (the check above runs before them).
            () = &mut stop, if !stopped && !running.is_empty() => {
                stopped = true;
                env.alarms.stop(Instant::now());
            }
            () = std::future::poll_fn(|task| {
                env.alarms.poll_timer(timer.as_mut(), &mut armed, task)
            }), if !running.is_empty() => {}
            else => return,
        }
    }
}

/// Adds `attempt` to the running ones. Through `&mut`: `push` takes `&self`, and a closure
/// calling it would hold a shared reference, which the worker's future, sent between threads,
/// may only hold to what is `Sync` (attempts are not).
fn keep<'a>(running: &mut FuturesUnordered<Running<'a>>, attempt: Running<'a>) {
    running.push(attempt);
}

/// An attempt still running after its first poll, boxed: the worker's running attempts hold a
/// pointer each.
type Running<'a> = std::pin::Pin<Box<dyn Future<Output = Completion> + Send + 'a>>;

/// What [`start`] made of a delivery.
enum Started<'a> {
    /// The attempt finished at its first poll.
    Done(Completion),
    /// The attempt waits: poll it again when it is woken.
    Running(Running<'a>),
}

/// Starts one attempt: its context, the handler's call and its first poll, under
/// `catch_unwind` (a route predicate, a `timeout()` override or a drop that panics must fail
/// the attempt, never lose its completion, which would leak a slot and block the
/// conversation), in its span when the span is enabled (with no subscriber interested, no span
/// is made). `task` is the worker's: a handler that waits registers it, and is polled again
/// at once among the running attempts, which wake it on their own.
fn start<'a>(
    env: &'a WorkerEnv,
    delivery: Delivery,
    started: Instant,
    task: &mut std::task::Context<'_>,
) -> Started<'a> {
    let span = tracing::info_span!(
        "bot.event",
        messaging.system = %delivery.event.platform,
        messaging.message.id = %delivery.event.id,
        messaging.message.conversation_id = %delivery.event.conversation,
        bot.event.kind = delivery.event.kind.name(),
        bot.attempt = delivery.attempt,
        otel.kind = "consumer",
    );
    let entered = span.enter();
    let first = {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            let cx =
                Context::for_attempt(env.env.shared.clone(), &delivery.event, delivery.attempt);
            let cancel = cx.canceller();
            // The handler takes a handle to the attempt's event, a reference count and no copy
            // of its data; the delivery keeps its own for a retry or a dead letter if the
            // attempt fails.
            let mut call: Call<'a> =
                AssertUnwindSafe(env.env.handler.call(cx, delivery.event.clone())).catch_unwind();
            match call.poll_unpin(task) {
                Poll::Ready(r) => {
                    // Its drop too, under the catch.
                    drop(call);
                    Ok(outcome(r))
                }
                Poll::Pending => {
                    // Asked here, under the catch: a router's time-out runs its predicates.
                    let timeout = env
                        .env
                        .handler
                        .timeout(&delivery.event)
                        .unwrap_or(env.env.default_timeout);
                    Err((call, cancel, timeout))
                }
            }
        }))
    };
    let result = match first {
        Ok(Ok(result)) => result,
        Ok(Err((call, cancel, timeout))) => {
            drop(entered);
            // Only the attempts that wait pay for the time-out's alarm, the route's time-out
            // lookup and the shutdown watch.
            let waiting = async move {
                let result = AssertUnwindSafe(watch(env, call, cancel, started, timeout))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| Err(panicked(&*panic)));
                completion(delivery, result, started)
            };
            return Started::Running(if span.is_disabled() {
                Box::pin(waiting)
            } else {
                Box::pin(waiting.instrument(span))
            });
        }
        Err(panic) => Err(panicked(&*panic)),
    };
    // In the span: a panic's log names the event.
    let done = completion(delivery, result, started);
    drop(entered);
    Started::Done(done)
}

/// What a panic means for its attempt.
fn panicked(panic: &(dyn std::any::Any + Send)) -> Failure {
    (TaskFailure::Panic, true, Some(panic_message(panic)), None)
}

/// The completion of an attempt that started at `started` and ended with `result`.
fn completion(delivery: Delivery, result: Result<(), Failure>, started: Instant) -> Completion {
    let failed = match result {
        Ok(()) => None,
        Err(why) => {
            if let (TaskFailure::Panic, _, error, _) = &why {
                tracing::error!(panic = error.as_deref().unwrap_or(""), "handler panicked");
            }
            Some(Box::new(Failed {
                why,
                event: delivery.event,
            }))
        }
    };
    Completion {
        lease: delivery.lease,
        attempt: delivery.attempt,
        started,
        failed,
    }
}

/// How long a handler whose token was cancelled (time-out, shutdown deadline) may still run to
/// wind down before it is dropped.
pub(crate) const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// What failed, whether a retry may succeed, the error's text, and when the error said to retry.
pub(crate) type Failure = (TaskFailure, bool, Option<String>, Option<Duration>);

/// A handler attempt still running after its first poll: its time-out, the shutdown's
/// cancellation and the grace period after either.
// Not an `async fn`, which would keep its arguments twice: this future is boxed and held by
// every attempt that waits, for as long as it waits. Its deadline and the hard stop are its
// worker's alarm (a slot in the worker's alarms, not a timer and a waiter of its own), and the
// grace period's timer is boxed apart, so that what waits holds little more than the handler's
// future and the alarm.
fn watch<'a>(
    env: &'a WorkerEnv,
    mut call: Call<'a>,
    cancel: AttemptCancel,
    started: Instant,
    timeout: Duration,
) -> impl Future<Output = Result<(), Failure>> + Send + 'a {
    let alarm = env.alarms.set(super::deadline_after(started, timeout));
    async move {
        // The handler first: one that finishes as its alarm rings has finished.
        let stopped = std::future::poll_fn(|task| match call.poll_unpin(task) {
            Poll::Ready(r) => Poll::Ready(Err(r)),
            Poll::Pending => alarm.poll(task).map(Ok),
        })
        .await;
        let stopped = match stopped {
            Ok(stopped) => stopped,
            Err(r) => return outcome(r),
        };
        drop::<Alarm<'_>>(alarm);
        // Tell the handler through `cx.cancellation()` and give it a moment to stop cleanly.
        cancel.cancel();
        Box::pin(wind_down(call, stopped, timeout)).await
    }
}

/// The grace period of a handler told to stop (`stopped`: its time-out, or the hard stop), and
/// the attempt's outcome.
async fn wind_down(call: Call<'_>, stopped: TaskFailure, timeout: Duration) -> Result<(), Failure> {
    let wound_down = tokio::time::timeout(CANCEL_GRACE, call).await;
    match (stopped, wound_down) {
        // It finished its work after all.
        (_, Ok(Ok(Ok(())))) => Ok(()),
        (TaskFailure::Timeout, _) => Err((
            TaskFailure::Timeout,
            true,
            Some(format!("handler timed out after {timeout:?}")),
            None,
        )),
        (failure, _) => Err((failure, true, None, None)),
    }
}

/// A handler's future, with its panics caught.
type Call<'a> = futures::future::CatchUnwind<
    AssertUnwindSafe<
        std::pin::Pin<Box<dyn Future<Output = Result<(), crate::BoxError>> + Send + 'a>>,
    >,
>;

fn outcome(r: std::thread::Result<Result<(), crate::BoxError>>) -> Result<(), Failure> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((
            TaskFailure::Error,
            is_retryable(&e),
            Some(crate::ErrorChain(&*e).to_string()),
            retry_hint(&e),
        )),
        Err(panic) => Err((TaskFailure::Panic, true, Some(panic_message(&*panic)), None)),
    }
}

/// The retry hint of a handler's error (a rate limit's `Retry-After`), if it carries one.
fn retry_hint(e: &crate::BoxError) -> Option<Duration> {
    e.downcast_ref::<crate::Error>()
        .and_then(crate::Error::retry_after)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    format!("handler panicked: {msg}")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::context::TypeMap;
    use crate::event::Platform;
    use crate::queue::Lease;

    async fn reply(cx: Context, _event: Event) -> Result<(), crate::Error> {
        cx.reply("ok").await
    }

    fn env() -> Arc<WorkerEnv> {
        Arc::new(WorkerEnv {
            env: task_env(BoxHandler::new(reply)),
            alarms: Alarms::default(),
        })
    }

    /// The completions of a round of up to 21 attempts (a webhook's ten, a pull of up to 16
    /// to one worker) stay within glibc's per-thread cache (1,032 bytes).
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_success_reports_in_48_bytes() {
        assert_eq!(std::mem::size_of::<Completion>(), 48);
        assert!(21 * std::mem::size_of::<Completion>() <= 1032);
    }

    fn task_env(handler: BoxHandler) -> Arc<TaskEnv> {
        let mut outbounds: HashMap<Platform, Arc<dyn crate::Outbound>> = HashMap::new();
        outbounds.insert(
            Platform::TEST,
            Arc::new(crate::testing::RecordingOutbound::new(Platform::TEST)),
        );
        Arc::new(TaskEnv {
            shared: Arc::new(Shared {
                outbounds,
                app_state: TypeMap::default(),
                clients: TypeMap::default(),
                state_store: Arc::new(crate::state::MemoryStateStore::new()),
                #[cfg(feature = "postgres")]
                db: None,
            }),
            handler,
            default_timeout: Duration::from_secs(10),
            hard_stop: CancellationToken::new(),
        })
    }

    /// A handler that never finishes, not even when told to stop, with a time-out in seconds
    /// per event: the event's text.
    struct NeverDone;

    #[async_trait::async_trait]
    impl crate::Handler for NeverDone {
        async fn call(&self, _cx: Context, _event: Event) -> Result<(), crate::BoxError> {
            std::future::pending().await
        }

        fn timeout(&self, event: &Event) -> Option<Duration> {
            let seconds = event.text_content()?.parse().ok()?;
            Some(Duration::from_secs(seconds))
        }
    }

    /// One worker's attempts share its timer and its wait for the hard stop: an attempt that
    /// comes later with an earlier deadline times out at its own deadline, not at the one the
    /// timer was armed for, and the hard stop cancels the attempts still running.
    #[tokio::test(start_paused = true)]
    async fn each_attempt_times_out_at_its_own_deadline_and_the_hard_stop_ends_the_rest() {
        let env = task_env(BoxHandler::new(NeverDone));
        let (done, mut finished) = mpsc::channel(8);
        let mut workers = Workers::start(1, 8, &env, &done);
        let delivery = |id: u64, seconds: &str| Delivery {
            lease: Lease { id, token: 1 },
            event: Event::text(Platform::TEST, "a", seconds),
            attempt: 1,
        };
        let mut next = async || {
            let finished = finished.recv().await.expect("a completion");
            assert_eq!(finished.completions.len(), 1);
            let completion = finished.completions.into_iter().next().unwrap();
            (completion.lease.id, completion.failure())
        };
        let t0 = Instant::now();
        workers.dispatch(vec![delivery(1, "60")]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        workers.dispatch(vec![delivery(2, "5"), delivery(3, "600")]);
        // Each after its time-out and the grace period.
        assert_eq!(next().await, (2, Some(TaskFailure::Timeout)));
        assert_eq!(t0.elapsed(), Duration::from_secs(1 + 5) + CANCEL_GRACE);
        assert_eq!(next().await, (1, Some(TaskFailure::Timeout)));
        assert_eq!(t0.elapsed(), Duration::from_secs(60) + CANCEL_GRACE);
        let stop = Instant::now();
        env.hard_stop.cancel();
        assert_eq!(next().await, (3, Some(TaskFailure::Cancelled)));
        assert_eq!(stop.elapsed(), CANCEL_GRACE);
        // An attempt that comes after the hard stop is cancelled at once.
        workers.dispatch(vec![delivery(4, "600")]);
        assert_eq!(next().await, (4, Some(TaskFailure::Cancelled)));
        drop(workers.close());
    }

    /// A first attempt at a text event of conversation "a", under lease `id`.
    fn delivery(id: u64, text: &str) -> Delivery {
        Delivery {
            lease: Lease { id, token: 1 },
            event: Event::text(Platform::TEST, "a", text),
            attempt: 1,
        }
    }

    /// A handler that waits for `go` on "wait" and finishes at once otherwise, and whose
    /// time-out lookup panics for "wait" (as a router's predicate may).
    struct PanickyTimeout(Arc<tokio::sync::Notify>);

    #[async_trait::async_trait]
    impl crate::Handler for PanickyTimeout {
        async fn call(&self, _cx: Context, event: Event) -> Result<(), crate::BoxError> {
            if event.text_content() == Some("wait") {
                self.0.notified().await;
            }
            Ok(())
        }

        fn timeout(&self, event: &Event) -> Option<Duration> {
            assert!(
                event.text_content() != Some("wait"),
                "the time-out lookup panics"
            );
            None
        }
    }

    /// A waiting attempt whose handler's `timeout()` panics (it is asked once the attempt
    /// waits) fails alone, with its event handed back; the worker goes on with the next.
    #[tokio::test(start_paused = true)]
    async fn a_waiting_attempt_whose_timeout_lookup_panics_fails_alone() {
        let go = Arc::new(tokio::sync::Notify::new());
        let env = task_env(BoxHandler::new(PanickyTimeout(go)));
        let (done, mut finished) = mpsc::channel(8);
        let mut workers = Workers::start(1, 8, &env, &done);
        let mut next = async || {
            // Paused clock: a worker gone would let the runtime jump to this limit.
            tokio::time::timeout(Duration::from_secs(60), finished.recv())
                .await
                .expect("a completion: the worker is alive")
                .expect("the channel is open")
        };
        workers.dispatch(vec![delivery(1, "wait")]);
        let failed = next().await;
        let c = &failed.completions[..];
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].lease.id, c[0].failure()),
            (1, Some(TaskFailure::Panic))
        );
        assert!(
            c[0].failed.is_some(),
            "its event is handed back for a retry"
        );
        workers.dispatch(vec![delivery(2, "now")]);
        let ok = next().await;
        assert_eq!(ok.completions.len(), 1);
        assert_eq!(
            (ok.completions[0].lease.id, ok.completions[0].failure()),
            (2, None)
        );
        drop(workers.close());
    }

    /// An attempt whose answer came while new batches arrive is reported with them: the input,
    /// ready at every turn of a steady load, does not hold back the running ones.
    #[tokio::test(start_paused = true)]
    async fn a_running_attempt_ready_when_a_batch_arrives_goes_out_with_it() {
        let go = Arc::new(tokio::sync::Notify::new());
        let env = task_env(BoxHandler::new(Mixed(go.clone())));
        let (done, mut finished) = mpsc::channel(8);
        let mut workers = Workers::start(1, 8, &env, &done);
        workers.dispatch(vec![delivery(1, "wait")]);
        // The worker takes it and it waits (no completion comes).
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        assert!(finished.try_recv().is_err());
        // Its answer comes, and a batch arrives before the worker's next turn.
        go.notify_waiters();
        workers.dispatch(vec![delivery(2, "now")]);
        let first = tokio::time::timeout(Duration::from_secs(60), finished.recv())
            .await
            .expect("a completion")
            .expect("the channel is open");
        let mut ids: Vec<_> = first.completions.iter().map(|c| c.lease.id).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [1, 2],
            "the waiting attempt's answer went out with the batch's"
        );
        drop(workers.close());
    }

    /// A handler that finishes at its first poll, waits for `go`, or panics at its first poll,
    /// by the event's text.
    struct Mixed(Arc<tokio::sync::Notify>);

    #[async_trait::async_trait]
    impl crate::Handler for Mixed {
        async fn call(&self, _cx: Context, event: Event) -> Result<(), crate::BoxError> {
            match event.text_content() {
                Some("wait") => {
                    self.0.notified().await;
                    Ok(())
                }
                Some("panic") => panic!("at its first poll"),
                _ => Ok(()),
            }
        }
    }

    /// Attempts are polled once where they arrive: those that finish there (or panic there)
    /// come back together in one message without being kept, with the batch's start and the
    /// message's end as their times; one that waits is kept, woken through the running ones,
    /// and reported with its own duration.
    #[tokio::test(start_paused = true)]
    async fn attempts_done_at_once_come_back_together_and_one_that_waits_is_woken() {
        let go = Arc::new(tokio::sync::Notify::new());
        let env = task_env(BoxHandler::new(Mixed(go.clone())));
        let (done, mut finished) = mpsc::channel(8);
        let mut workers = Workers::start(1, 8, &env, &done);
        let t0 = Instant::now();
        workers.dispatch(vec![
            delivery(1, "now"),
            delivery(2, "wait"),
            delivery(3, "panic"),
        ]);
        let first = finished.recv().await.expect("a completion");
        let mut got: Vec<_> = first
            .completions
            .iter()
            .map(|c| {
                let took = first.at.duration_since(c.started);
                (c.lease.id, c.failure(), c.failed.is_some(), took)
            })
            .collect();
        got.sort_by_key(|g| g.0);
        assert_eq!(
            got,
            [
                (1, None, false, Duration::ZERO),
                // A failed attempt hands its event back, for the retry.
                (3, Some(TaskFailure::Panic), true, Duration::ZERO),
            ]
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        go.notify_waiters();
        // Paused clock: were the waiting attempt lost, the runtime would jump to this limit.
        let second = tokio::time::timeout(Duration::from_secs(60), finished.recv())
            .await
            .expect("the waiting attempt finishes once woken")
            .expect("a completion");
        assert_eq!(second.completions.len(), 1);
        let waited = &second.completions[0];
        assert_eq!((waited.lease.id, waited.failure()), (2, None));
        assert_eq!(waited.started, t0);
        assert_eq!(
            second.at.duration_since(waited.started),
            Duration::from_secs(3)
        );
        drop(workers.close());
    }

    /// What every running event holds for as long as its handler waits (50,000 of them in
    /// `slow-api`): each of these grew by an `Event` or a `Context` once, and must not again.
    // Sizes in bytes depend on the target and on how the compiler lays out futures: the bounds
    // were measured on x86-64 in the dev profile, which CI's tests use. When one fails after a
    // toolchain or dependency upgrade, measure again and update BENCHMARKS.md's figures.
    #[cfg(all(target_pointer_width = "64", debug_assertions))]
    #[test]
    fn an_attempt_in_flight_holds_its_event_and_context_once() {
        let env = env();
        let event = Event::text(Platform::TEST, "a", "hi");
        let context = std::mem::size_of::<Context>();
        // The event is a handle to its data in its batch's shared block: what every copy below
        // holds is three words (the block's pointer and length, the index).
        let event_bytes = std::mem::size_of::<Event>();
        assert_eq!(event_bytes, 3 * std::mem::size_of::<usize>());
        let delivery_bytes = std::mem::size_of::<Delivery>();
        assert!(
            delivery_bytes <= 32 + 2 * std::mem::size_of::<usize>(),
            "a delivery is {delivery_bytes} bytes"
        );
        // The context's event fields live in its shared part: a handler holds four words.
        assert!(
            context <= 4 * std::mem::size_of::<usize>(),
            "a context is {context} bytes"
        );

        // An `async fn` handler holds its arguments twice (as they came and as its locals),
        // and its reply: that is the compiler's layout, not ours. The runtime's box around it
        // adds nothing more (through #[async_trait] it added the context and the event again).
        let cx = Context::for_attempt(env.env.shared.clone(), &event, 1);
        let own = std::mem::size_of_val(&reply(cx.clone(), event.clone()));
        // The reply it waits on is a pointer to the client's future, which took the target
        // (136 bytes in a debug build: the arguments twice and that pointer; 448 when the reply
        // held the 248-byte target and the messages beside the client's future, which borrowed
        // the target).
        assert!(
            own <= 2 * (context + event_bytes) + 32,
            "a handler that replies holds {own} bytes"
        );
        let boxed = env.env.handler.call(cx.clone(), event.clone());
        let boxed_bytes = std::mem::size_of_val(&*boxed);
        assert!(
            boxed_bytes <= own + 32,
            "the handler's box is {boxed_bytes} bytes, its future {own}"
        );
        drop(boxed);

        // An attempt that finishes at its first poll is never stored. One that waits is boxed
        // once with all it holds: the delivery (for a retry), the handler's future, its alarm
        // in the worker's alarms, the handle that cancels it and its start: 208 bytes in a
        // debug build (304 when the attempt's future, 200, was a node of the worker's running
        // ones and boxed the 104 of its watch apart; bound by 936 when the delivery held the
        // event inline), with room for two words of new state.
        let delivery = Delivery {
            lease: Lease { id: 1, token: 1 },
            event: event.clone(),
            attempt: 1,
        };
        let waits = WorkerEnv {
            env: task_env(BoxHandler::new(NeverDone)),
            alarms: Alarms::default(),
        };
        let mut task = std::task::Context::from_waker(std::task::Waker::noop());
        let Started::Running(running) = start(&waits, delivery, Instant::now(), &mut task) else {
            panic!("a handler that never finishes must wait");
        };
        let running_bytes = std::mem::size_of_val(&*running);
        assert!(
            running_bytes <= 208 + 16,
            "a waiting attempt boxes {running_bytes} bytes, a delivery {delivery_bytes}"
        );
        drop(running);

        // What an attempt still running after its first poll boxes: the handler's future, its
        // alarm in the worker's alarms and the handle that cancels it (104 bytes in a debug
        // build; 280 with a Tokio timer and a wait for the hard stop of its own, 312 when it
        // held the event's reference and the timeout twice).
        let call: Call<'_> =
            AssertUnwindSafe(env.env.handler.call(cx.clone(), event.clone())).catch_unwind();
        let watch = watch(
            &env,
            call,
            cx.canceller(),
            Instant::now(),
            Duration::from_secs(1),
        );
        let watch_bytes = std::mem::size_of_val(&watch);
        assert!(watch_bytes <= 104 + 16, "the watch is {watch_bytes} bytes");
    }

    /// A batch of up to [`MIN_SHARE`] goes whole to one worker, in one message (one wake-up,
    /// one message of completions back); a larger one is shared out among `ceil(n / MIN_SHARE)`
    /// of the least busy workers (all of them at most), and a busy worker is passed over.
    #[tokio::test(start_paused = true)]
    async fn a_small_batch_goes_to_one_worker_and_a_large_one_is_shared_out() {
        let go = Arc::new(tokio::sync::Notify::new());
        let env = task_env(BoxHandler::new(Mixed(go.clone())));
        let (done, mut finished) = mpsc::channel(64);
        let mut workers = Workers::start(4, 256, &env, &done);
        // Completions by worker until `n` attempts are in, and in how many messages.
        async fn collect(
            workers: &mut Workers,
            finished: &mut mpsc::Receiver<Finished>,
            n: usize,
        ) -> (Vec<usize>, usize) {
            let mut by_worker = std::collections::BTreeMap::<usize, usize>::new();
            let mut messages = 0;
            while by_worker.values().sum::<usize>() < n {
                let f = tokio::time::timeout(Duration::from_secs(60), finished.recv())
                    .await
                    .expect("completions")
                    .expect("the channel is open");
                workers.finished(f.worker, f.completions.len());
                messages += 1;
                *by_worker.entry(f.worker).or_default() += f.completions.len();
            }
            (by_worker.into_values().collect::<Vec<_>>(), messages)
        }
        let batch = |from: u64, n: u64, text: &str| -> Vec<Delivery> {
            (from..from + n).map(|id| delivery(id, text)).collect()
        };
        workers.dispatch(batch(0, 10, "now"));
        assert_eq!(
            collect(&mut workers, &mut finished, 10).await,
            (vec![10], 1),
            "ten attempts, one worker, one message"
        );
        let whole = MIN_SHARE as u64;
        workers.dispatch(batch(20, whole, "now"));
        assert_eq!(
            collect(&mut workers, &mut finished, MIN_SHARE).await,
            (vec![MIN_SHARE], 1),
            "up to MIN_SHARE, whole"
        );
        workers.dispatch(batch(50, whole + 1, "now"));
        let (shares, _) = collect(&mut workers, &mut finished, MIN_SHARE + 1).await;
        assert_eq!(
            shares,
            [MIN_SHARE / 2 + 1, MIN_SHARE / 2],
            "one more, two workers"
        );
        workers.dispatch(batch(100, 2 * MIN_SHARE as u64 + 1, "now"));
        let (shares, _) = collect(&mut workers, &mut finished, 2 * MIN_SHARE + 1).await;
        assert_eq!(shares, [11, 11, 11], "three workers share 33 attempts");
        workers.dispatch(batch(200, 100, "now"));
        let (shares, _) = collect(&mut workers, &mut finished, 100).await;
        assert_eq!(
            shares,
            [25, 25, 25, 25],
            "never more workers than there are"
        );
        // A worker holding a waiting attempt is passed over for a small batch.
        // The dispatcher counts it at once: no need to let the worker take it first.
        workers.dispatch(batch(300, 1, "wait"));
        let busy = workers
            .load
            .iter()
            .position(|&load| load == 1)
            .expect("one busy worker");
        workers.dispatch(batch(400, 5, "now"));
        let f = tokio::time::timeout(Duration::from_secs(60), finished.recv())
            .await
            .expect("completions")
            .expect("the channel is open");
        assert_ne!(f.worker, busy);
        assert_eq!(f.completions.len(), 5);
        go.notify_waiters();
        drop(workers.close());
    }
}
