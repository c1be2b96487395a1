//! One handler attempt in its own task: time-out, panic isolation, cancellation, metrics.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::context::{Context, Shared};
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

/// What a task reports back to the dispatcher.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) lease: Lease,
    pub(crate) attempt: u32,
    pub(crate) failure: Option<TaskFailure>,
    pub(crate) retryable: bool,
    pub(crate) error: Option<String>,
    pub(crate) elapsed: Duration,
    /// The event, handed back when the attempt did not succeed (for a retry or a dead letter).
    pub(crate) event: Option<Event>,
}

/// What every task of one supervisor shares.
pub(crate) struct TaskEnv {
    pub(crate) shared: Arc<Shared>,
    pub(crate) handler: BoxHandler,
    pub(crate) default_timeout: Duration,
    pub(crate) hard_stop: CancellationToken,
    pub(crate) completions: mpsc::Sender<Completion>,
}

/// Spawns the attempt. The dispatcher bounds how many run, so this spawn is bounded too.
pub(crate) fn spawn(env: &Arc<TaskEnv>, delivery: Delivery) {
    let env = env.clone();
    let span = tracing::info_span!(
        "bot.event",
        messaging.system = %delivery.event.platform,
        messaging.message.id = %delivery.event.id,
        messaging.message.conversation_id = %delivery.event.conversation,
        bot.event.kind = delivery.event.kind.name(),
        bot.attempt = delivery.attempt,
        otel.kind = "consumer",
    );
    #[allow(clippy::disallowed_methods)] // bounded by max_in_flight
    tokio::spawn(run(env, delivery).instrument(span));
}

/// How long a handler whose token was cancelled (time-out, shutdown deadline) may still run to
/// wind down before it is dropped.
pub(crate) const CANCEL_GRACE: Duration = Duration::from_secs(1);

type Failure = (TaskFailure, bool, Option<String>);

async fn run(env: Arc<TaskEnv>, delivery: Delivery) {
    let Delivery {
        lease,
        event,
        attempt,
    } = delivery;
    let started = Instant::now();
    // Everything of the attempt runs under catch_unwind, not only the handler's poll: a route
    // predicate, a `timeout()` override or a drop that panics must fail the attempt, never lose
    // the task's completion (which would leak a slot and block the conversation).
    let result = match AssertUnwindSafe(attempt_once(&env, &event, attempt))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => Err((TaskFailure::Panic, true, Some(panic_message(&*panic)))),
    };
    let elapsed = started.elapsed();
    let completion = match result {
        Ok(()) => Completion {
            lease,
            attempt,
            failure: None,
            retryable: false,
            error: None,
            elapsed,
            event: None,
        },
        Err((failure, retryable, error)) => {
            if failure == TaskFailure::Panic {
                tracing::error!(panic = error.as_deref().unwrap_or(""), "handler panicked");
            }
            Completion {
                lease,
                attempt,
                failure: Some(failure),
                retryable,
                error,
                elapsed,
                event: Some(event),
            }
        }
    };
    // The channel holds max_in_flight completions, one per running task: this never waits long,
    // and it only fails when the supervisor is gone, when nobody needs the answer.
    let _ = env.completions.send(completion).await;
}

/// One attempt: the handler with its time-out, cancellation and grace period.
async fn attempt_once(env: &TaskEnv, event: &Event, attempt: u32) -> Result<(), Failure> {
    let cancel = CancellationToken::new();
    let cx = Context::new(env.shared.clone(), event, attempt, cancel.clone());
    let timeout = env.handler.timeout(event).unwrap_or(env.default_timeout);
    // The handler consumes its copy; the original goes back to the queue if the attempt fails.
    // Cloning here, in the task, keeps the copy off the dispatcher.
    let call = AssertUnwindSafe(env.handler.call(cx, event.clone())).catch_unwind();
    tokio::pin!(call);
    let stopped = tokio::select! {
        biased;
        r = &mut call => return outcome(r),
        () = tokio::time::sleep(timeout) => TaskFailure::Timeout,
        () = env.hard_stop.cancelled() => TaskFailure::Cancelled,
    };
    // Tell the handler through `cx.cancellation()` and give it a moment to stop cleanly.
    cancel.cancel();
    let wound_down = tokio::time::timeout(CANCEL_GRACE, &mut call).await;
    match (stopped, wound_down) {
        // It finished its work after all.
        (_, Ok(Ok(Ok(())))) => Ok(()),
        (TaskFailure::Timeout, _) => Err((
            TaskFailure::Timeout,
            true,
            Some(format!("handler timed out after {timeout:?}")),
        )),
        (failure, _) => Err((failure, true, None)),
    }
}

fn outcome(r: std::thread::Result<Result<(), crate::BoxError>>) -> Result<(), Failure> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((TaskFailure::Error, is_retryable(&e), Some(error_chain(&*e)))),
        Err(panic) => Err((TaskFailure::Panic, true, Some(panic_message(&*panic)))),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    format!("handler panicked: {msg}")
}
