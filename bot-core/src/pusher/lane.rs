//! A lane: one sender, at most `window` sends in flight, and how each send ends.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;

use super::buffer::Shared;
use super::report::Counts;

/// Why a send failed: its error, or a panic.
pub(super) enum Failure<E> {
    Error(E),
    Panic(Box<dyn std::any::Any + Send>),
}

impl<E: fmt::Display> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(e) => e.fmt(f),
            Failure::Panic(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("a panic");
                write!(f, "the send panicked: {message}")
            }
        }
    }
}

/// One lane: a sender and its window of sends in flight.
pub(super) struct Lane<T, S, F> {
    pub(super) shared: Arc<Shared<T>>,
    pub(super) sender: S,
    pub(super) send: Arc<F>,
    pub(super) window: usize,
    pub(super) index: usize,
}

/// Counts a lane out when its task ends, however it ends.
pub(super) struct LaneExit<'a>(&'a watch::Sender<usize>);

impl Drop for LaneExit<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl<T, S, F, Fut, E> Lane<T, S, F>
where
    T: Send + 'static,
    S: Clone + Send + Sync + 'static,
    F: Fn(S, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    pub(super) async fn run(self) {
        let shared = self.shared.clone();
        let _exit = LaneExit(&shared.running);
        let counts = &shared.counts;
        let mut in_flight = FuturesUnordered::new();
        // The batch grows to what is taken at once; a huge window must not allocate up front.
        let mut batch = Vec::with_capacity(self.window.min(1024));
        let mut failures = 0_u64;
        loop {
            let room = self.window - in_flight.len();
            if shared.cancel.is_cancelled() {
                break;
            }
            if room > 0 {
                let idle = self.shared.work.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.shared.take(room, &mut batch).is_none() && in_flight.is_empty() {
                    break;
                }
                for item in batch.drain(..) {
                    // A panic in the send function or its future fails that push; the lane
                    // goes on (a dead lane would strand its window and, the last one, the buffer).
                    let sender = self.sender.clone();
                    let send =
                        std::panic::catch_unwind(AssertUnwindSafe(|| (self.send)(sender, item)));
                    in_flight.push(async move {
                        let started = Instant::now();
                        let result = match send {
                            Ok(send) => AssertUnwindSafe(send)
                                .catch_unwind()
                                .await
                                .map_err(Failure::Panic)
                                .and_then(|r| r.map_err(Failure::Error)),
                            Err(panic) => Err(Failure::Panic(panic)),
                        };
                        (result, started.elapsed())
                    });
                }
                if in_flight.is_empty() {
                    tokio::select! {
                        biased;
                        () = shared.cancel.cancelled() => break,
                        () = &mut idle => continue,
                    }
                }
                if in_flight.len() < self.window {
                    tokio::select! {
                        biased;
                        () = shared.cancel.cancelled() => break,
                        Some((result, took)) = in_flight.next() => {
                            self.finished(result, took, &mut failures);
                        }
                        () = &mut idle => {}
                    }
                    continue;
                }
            }
            tokio::select! {
                biased;
                () = shared.cancel.cancelled() => break,
                Some((result, took)) = in_flight.next() => self.finished(result, took, &mut failures),
            }
        }
        let cancelled = in_flight.len();
        drop(in_flight);
        Counts::sub(&counts.in_flight, cancelled);
        Counts::add(&counts.cancelled, cancelled);
        if failures > 0 {
            tracing::debug!(pusher = %shared.name, lane = self.index, failures, "pusher: lane done");
        }
    }

    pub(super) fn finished(
        &self,
        result: Result<(), Failure<E>>,
        took: Duration,
        failures: &mut u64,
    ) {
        let counts = &self.shared.counts;
        match result {
            Ok(()) => {
                Counts::add(&counts.sent, 1);
                if let Some(metrics) = &self.shared.metrics {
                    metrics.sent(took);
                }
            }
            Err(e) => {
                Counts::add(&counts.failed, 1);
                *failures += 1;
                // The first failure of a lane is worth a warning; the rest are in the count.
                if *failures == 1 {
                    tracing::warn!(
                        pusher = %self.shared.name, lane = self.index, error = %e,
                        "pusher: a send failed (further failures are counted, not logged)"
                    );
                } else {
                    tracing::debug!(pusher = %self.shared.name, lane = self.index, error = %e, "pusher: a send failed");
                }
            }
        }
        Counts::sub(&counts.in_flight, 1);
    }
}
