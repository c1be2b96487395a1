//! Bulk outbound sending: campaigns and notifications to many users outside a conversation.
//!
//! A [`Pusher`] holds a bounded buffer of pushes and `k` lanes. Each lane owns one sender (for
//! example one [`bot_line::LineClient`](https://docs.rs/bot-line) on its own HTTP/2 connection)
//! and keeps at most `window` sends of it in flight, so the pusher sends at most
//! `k · window / latency` a second and never holds more than `capacity` pushes in memory. When
//! producers offer more than that, the [`Overflow`] policy decides: refuse with a clear error
//! ([`Overflow::Reject`], the default), make the producer wait ([`Overflow::Wait`]), or shed load
//! ([`Overflow::DropOldest`], [`Overflow::DropNewest`]). Every push ends in exactly one count of
//! the [`PushReport`] (sent, failed, dropped by reason) and of the `bot.push.*` metrics.
//!
//! - **Lanes** are tasks, one per sender; a lane runs its sends as futures inside its own task,
//!   so a million pushes never spawn more than `k` tasks.
//! - **Retries** are the sender's business: the platform clients already retry 429, 5xx and
//!   time-outs with their [`crate::RetryPolicy`] (LINE with an `X-Line-Retry-Key`, so a retry
//!   never delivers twice). What still fails is counted as failed, and logged.
//! - **Closing** ([`Pusher::close`]) refuses new pushes and waits until the buffer is drained and
//!   every send answered; [`Pusher::shutdown`] waits at most a time-out, then cancels what is left
//!   and counts it (`unsent`, `cancelled`).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use bot_core::Overflow;
//! use bot_core::pusher::Pusher;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bot_core::Error> {
//! // Two lanes; a lane's sender here is just its number.
//! let pusher = Pusher::builder()
//!     .window(10)
//!     .capacity(1_000)
//!     .overflow(Overflow::Wait)
//!     .start(vec![0_u32, 1], |_lane: u32, user: String| async move {
//!         // Send to `user` here; an `Err` is counted as failed.
//!         Ok::<(), bot_core::Error>(())
//!     })?;
//! for n in 0..100 {
//!     pusher.push(format!("U{n}")).await?;
//! }
//! let report = pusher.close().await;
//! assert_eq!(report.sent, 100);
//! assert!(report.is_balanced());
//! # Ok(()) }
//! ```

mod error;
mod report;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

pub use error::{PushError, PushErrorKind};
pub use report::PushReport;

use crate::error::Error;
use crate::limits::Overflow;
use crate::outbound::{Outbound, OutgoingMessage, Target};
use crate::telemetry::Telemetry;
use report::{Counts, Metrics};

/// Sends in flight per lane by default, the stream limit most HTTP/2 servers announce.
pub const DEFAULT_WINDOW: usize = 100;
/// Pushes buffered by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// What happened to a push the pusher took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushed {
    /// Buffered; a lane will send it.
    Queued,
    /// Buffered, and the oldest buffered push was dropped to make room
    /// ([`Overflow::DropOldest`]; counted in `dropped_oldest`).
    QueuedDroppingOldest,
    /// Dropped because the buffer was full ([`Overflow::DropNewest`]; counted in
    /// `dropped_newest`).
    Dropped,
}

/// Sets a [`Pusher`] up: its window, buffer and overflow policy.
#[derive(Debug, Clone)]
#[must_use]
pub struct PusherBuilder {
    name: String,
    window: usize,
    capacity: usize,
    overflow: Overflow,
    telemetry: Option<Telemetry>,
}

impl Default for PusherBuilder {
    fn default() -> Self {
        Self {
            name: "push".to_owned(),
            window: DEFAULT_WINDOW,
            capacity: DEFAULT_CAPACITY,
            overflow: Overflow::Reject,
            telemetry: None,
        }
    }
}

impl PusherBuilder {
    /// Names the pusher in metrics (the `pusher` attribute) and logs. Default `push`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// At most this many sends in flight per lane (per connection). Default 100.
    pub fn window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// At most this many pushes waiting in the buffer. Default 10,000.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// What a push into a full buffer does. Default [`Overflow::Reject`].
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Records the `bot.push.*` metrics in `telemetry` (a bot's, from [`crate::Bot::telemetry`]).
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Starts one lane per sender; each lane calls `send(sender, item)` for the pushes it takes,
    /// with at most `window` calls unanswered.
    ///
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`crate::ErrorKind::Config`] error when there is no sender, or the window or capacity
    /// is zero.
    pub fn start<T, S, F, Fut, E>(self, senders: Vec<S>, send: F) -> Result<Pusher<T>, Error>
    where
        T: Send + 'static,
        S: Clone + Send + Sync + 'static,
        F: Fn(S, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        if senders.is_empty() {
            return Err(Error::config(
                "pusher: at least one sender (lane) is needed",
            ));
        }
        if self.window == 0 {
            return Err(Error::config("pusher: window must be at least 1"));
        }
        if self.capacity == 0 {
            return Err(Error::config("pusher: capacity must be at least 1"));
        }
        let counts = Arc::new(Counts::default());
        let metrics = self
            .telemetry
            .as_ref()
            .map(|t| Metrics::register(t, &self.name, &counts));
        let (running, _) = watch::channel(senders.len());
        let shared = Arc::new(Shared {
            name: self.name,
            buffer: Mutex::new(Buffer {
                items: VecDeque::with_capacity(self.capacity.min(1 << 16)),
                closed: false,
            }),
            capacity: self.capacity,
            overflow: self.overflow,
            counts,
            metrics,
            work: Notify::new(),
            room: Notify::new(),
            cancel: CancellationToken::new(),
            running,
            started: Instant::now(),
        });
        let send = Arc::new(send);
        for (index, sender) in senders.into_iter().enumerate() {
            let lane = Lane {
                shared: shared.clone(),
                sender,
                send: send.clone(),
                window: self.window,
                index,
            };
            // One long-lived task per lane, as many as the caller gave senders: bounded.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(lane.run());
        }
        Ok(Pusher {
            close_on_drop: Arc::new(CloseOnDrop(shared.clone())),
            shared,
        })
    }

    /// Starts one lane per [`Outbound`] client, sending each [`Push`] with
    /// [`Outbound::send`]; see [`PusherBuilder::start`].
    ///
    /// # Errors
    ///
    /// As [`PusherBuilder::start`].
    pub fn start_outbound(self, clients: Vec<Arc<dyn Outbound>>) -> Result<Pusher<Push>, Error> {
        self.start(
            clients,
            |client: Arc<dyn Outbound>, push: Push| async move {
                client.send(&push.target, push.messages).await
            },
        )
    }
}

/// A message to push through [`Outbound::send`]: a pusher started with
/// [`PusherBuilder::start_outbound`] takes these.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// Where to send (a conversation, usually without a reply token).
    pub target: Target,
    /// What to send.
    pub messages: Vec<OutgoingMessage>,
}

impl Push {
    /// `message` to `conversation`.
    pub fn new(
        conversation: impl Into<crate::event::ConversationId>,
        message: impl Into<OutgoingMessage>,
    ) -> Self {
        Self {
            target: Target::conversation(conversation),
            messages: vec![message.into()],
        }
    }
}

/// Sends many pushes through `k` lanes with a bounded window each, from a bounded buffer; see the
/// [module docs](self).
///
/// Cloning is cheap: clones share the buffer and lanes. Dropping the last clone closes it (as
/// [`Pusher::close`], without waiting): what is buffered is still sent.
pub struct Pusher<T> {
    shared: Arc<Shared<T>>,
    close_on_drop: Arc<CloseOnDrop<T>>,
}

impl<T> Clone for Pusher<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            close_on_drop: self.close_on_drop.clone(),
        }
    }
}

impl<T> fmt::Debug for Pusher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pusher")
            .field("name", &self.shared.name)
            .field("capacity", &self.shared.capacity)
            .field("overflow", &self.shared.overflow)
            .field(
                "stats",
                &self.shared.counts.report(self.shared.started.elapsed()),
            )
            .finish()
    }
}

struct CloseOnDrop<T>(Arc<Shared<T>>);

impl<T> Drop for CloseOnDrop<T> {
    fn drop(&mut self) {
        self.0.close_intake();
    }
}

impl Pusher<()> {
    /// Sets a pusher up.
    pub fn builder() -> PusherBuilder {
        PusherBuilder::default()
    }
}

impl<T: Send + 'static> Pusher<T> {
    /// Offers `item` without waiting: buffered, or handled by the overflow policy when the buffer
    /// is full ([`Overflow::Wait`] refuses like [`Overflow::Reject`] here).
    ///
    /// # Errors
    ///
    /// [`PushErrorKind::Full`] when the buffer is full under [`Overflow::Reject`] or
    /// [`Overflow::Wait`] (counted as rejected); [`PushErrorKind::Closed`] once the pusher is
    /// closed (not counted). The item comes back in the error.
    pub fn try_push(&self, item: T) -> Result<Pushed, PushError<T>> {
        self.shared.offer(item, false)
    }

    /// Offers `item`; under [`Overflow::Wait`], waits for room when the buffer is full.
    ///
    /// # Errors
    ///
    /// As [`Pusher::try_push`], except that [`Overflow::Wait`] waits instead of refusing.
    pub async fn push(&self, item: T) -> Result<Pushed, PushError<T>> {
        if self.shared.overflow != Overflow::Wait {
            return self.shared.offer(item, false);
        }
        let mut item = item;
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.shared.offer(item, true) {
                Err(e) if e.is_full() => item = e.into_inner(),
                done => return done,
            }
            room.await;
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> PushReport {
        self.shared.counts.report(self.shared.started.elapsed())
    }

    /// Refuses new pushes and waits until every buffered push is sent or has failed; returns the
    /// final counts.
    pub async fn close(&self) -> PushReport {
        self.shared.close_intake();
        self.shared.lanes_done().await;
        self.stats()
    }

    /// As [`Pusher::close`], waiting at most `timeout`: then the sends in flight are cancelled
    /// (counted as `cancelled`) and what is still buffered is dropped (counted as `unsent`).
    pub async fn shutdown(&self, timeout: Duration) -> PushReport {
        self.shared.close_intake();
        if tokio::time::timeout(timeout, self.shared.lanes_done())
            .await
            .is_err()
        {
            self.shared.cancel.cancel();
            self.shared.lanes_done().await;
            let left = {
                let mut buffer = self.shared.lock();
                let left = buffer.items.len();
                buffer.items.clear();
                left
            };
            Counts::sub(&self.shared.counts.buffered, left);
            Counts::add(&self.shared.counts.unsent, left);
            tracing::warn!(
                pusher = %self.shared.name,
                unsent = left,
                "pusher: shutdown time-out; buffered pushes dropped, sends in flight cancelled"
            );
        }
        self.stats()
    }
}

/// The buffer and what the lanes and producers share.
struct Shared<T> {
    name: String,
    buffer: Mutex<Buffer<T>>,
    capacity: usize,
    overflow: Overflow,
    counts: Arc<Counts>,
    metrics: Option<Metrics>,
    /// Pushes arrived, or the pusher is closing: wakes idle lanes.
    work: Notify,
    /// Room freed in the buffer: wakes producers under [`Overflow::Wait`].
    room: Notify,
    /// Cancels the lanes at a shutdown's time-out.
    cancel: CancellationToken,
    /// Lanes still running.
    running: watch::Sender<usize>,
    started: Instant,
}

struct Buffer<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Buffer<T>> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn offer(&self, item: T, waiting: bool) -> Result<Pushed, PushError<T>> {
        let counts = &self.counts;
        let mut evicted = None;
        let outcome = {
            let mut buffer = self.lock();
            if buffer.closed {
                return Err(PushError::new(PushErrorKind::Closed, self.capacity, item));
            }
            // Counted under the lock, as `take` counts, so that no report ever sees a push
            // taken before it was buffered.
            let outcome = if buffer.items.len() < self.capacity {
                buffer.items.push_back(item);
                Counts::add(&counts.buffered, 1);
                Ok(Pushed::Queued)
            } else {
                match self.overflow {
                    Overflow::DropOldest => {
                        // The evicted push is freed outside the lock.
                        evicted = buffer.items.pop_front();
                        buffer.items.push_back(item);
                        Counts::add(&counts.dropped_oldest, 1);
                        Ok(Pushed::QueuedDroppingOldest)
                    }
                    Overflow::DropNewest => {
                        Counts::add(&counts.dropped_newest, 1);
                        Ok(Pushed::Dropped)
                    }
                    // A waiting producer comes back when there is room; it is counted once, then.
                    Overflow::Wait if waiting => {
                        return Err(PushError::new(PushErrorKind::Full, self.capacity, item));
                    }
                    _ => {
                        Counts::add(&counts.rejected, 1);
                        Err(PushError::new(PushErrorKind::Full, self.capacity, item))
                    }
                }
            };
            Counts::add(&counts.offered, 1);
            outcome
        };
        drop(evicted);
        if matches!(outcome, Ok(Pushed::Queued | Pushed::QueuedDroppingOldest)) {
            self.work.notify_one();
        }
        outcome
    }

    /// Moves up to `room` pushes into `batch`; `None` once closed and empty.
    fn take(&self, room: usize, batch: &mut Vec<T>) -> Option<()> {
        let more = {
            let mut buffer = self.lock();
            if buffer.items.is_empty() && buffer.closed {
                return None;
            }
            let n = room.min(buffer.items.len());
            batch.extend(buffer.items.drain(..n));
            // Counted under the lock, so a concurrent eviction never sees a push in two counts.
            Counts::sub(&self.counts.buffered, n);
            Counts::add(&self.counts.in_flight, n);
            !buffer.items.is_empty()
        };
        if !batch.is_empty() {
            if more {
                // Pass the baton: another idle lane may take the rest.
                self.work.notify_one();
            }
            if self.overflow == Overflow::Wait {
                self.room.notify_waiters();
            }
        }
        Some(())
    }

    fn close_intake(&self) {
        self.lock().closed = true;
        self.work.notify_waiters();
        self.room.notify_waiters();
    }

    async fn lanes_done(&self) {
        let mut running = self.running.subscribe();
        let _ = running.wait_for(|n| *n == 0).await;
    }
}

/// Why a send failed: its error, or a panic.
enum Failure<E> {
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
struct Lane<T, S, F> {
    shared: Arc<Shared<T>>,
    sender: S,
    send: Arc<F>,
    window: usize,
    index: usize,
}

/// Counts a lane out when its task ends, however it ends.
struct LaneExit<'a>(&'a watch::Sender<usize>);

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
    async fn run(self) {
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

    fn finished(&self, result: Result<(), Failure<E>>, took: Duration, failures: &mut u64) {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::StatusCode;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::testing::fake_api::{FakeApi, FakeResponse, Latency};

    /// One HTTP/2 (h2c) client per lane: one connection each.
    fn lanes(k: usize) -> Vec<reqwest::Client> {
        (0..k)
            .map(|_| {
                reqwest::Client::builder()
                    .http2_prior_knowledge()
                    .build()
                    .unwrap()
            })
            .collect()
    }

    async fn fake(latency: Duration) -> FakeApi {
        FakeApi::builder()
            .latency(Latency::Fixed(latency))
            .start(|_| FakeResponse::json(StatusCode::OK, &serde_json::json!({})))
            .await
            .unwrap()
    }

    /// Posts `n` to the fake; a non-2xx answer is an error.
    fn post_to(
        url: String,
    ) -> impl Fn(reqwest::Client, u64) -> futures::future::BoxFuture<'static, Result<(), String>>
    + Send
    + Sync
    + 'static {
        move |client, n| {
            let url = format!("{url}/push/{n}");
            Box::pin(async move {
                let response = client.post(url).send().await.map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("status {}", response.status()))
                }
            })
        }
    }

    /// Polls `check` until it holds, for at most 10 s.
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_window_per_connection_is_never_exceeded_and_is_used() {
        let api = fake(Duration::from_millis(20)).await;
        let pusher = Pusher::builder()
            .window(8)
            .capacity(10_000)
            .overflow(Overflow::Wait)
            .start(lanes(3), post_to(api.url()))
            .unwrap();
        for n in 0..600 {
            assert_eq!(pusher.push(n).await.unwrap(), Pushed::Queued);
        }
        let report = pusher.close().await;
        assert_eq!(report.sent, 600, "{report:?}");
        assert!(report.is_balanced(), "{report:?}");
        assert_eq!(api.call_count(), 600);
        assert_eq!(api.connections(), 3);
        // The fake announced far more streams than 8: only the pusher's window holds it back.
        assert_eq!(api.peak_in_flight_per_connection(), 8);
        assert!(api.peak_in_flight() <= 24, "{}", api.peak_in_flight());
    }

    /// A lane's sender that answers only when the test lets it, and records what it sent.
    #[derive(Clone)]
    struct Gate {
        open: Arc<Semaphore>,
        sent: Arc<Mutex<Vec<u32>>>,
    }

    impl Gate {
        fn new() -> Self {
            Self {
                open: Arc::new(Semaphore::new(0)),
                sent: Arc::new(Mutex::new(Vec::new())),
            }
        }

        fn start(&self, overflow: Overflow, window: usize, capacity: usize) -> Pusher<u32> {
            Pusher::builder()
                .window(window)
                .capacity(capacity)
                .overflow(overflow)
                .start(vec![self.clone()], |gate: Gate, n: u32| async move {
                    let permit = gate.open.acquire().await.map_err(|e| e.to_string())?;
                    permit.forget();
                    gate.sent.lock().unwrap().push(n);
                    if n == 59 {
                        return Err(format!("{n} refused"));
                    }
                    Ok::<(), String>(())
                })
                .unwrap()
        }

        fn sent(&self) -> Vec<u32> {
            let mut sent = self.sent.lock().unwrap().clone();
            sent.sort_unstable();
            sent
        }
    }

    /// Fills the window (2) of a gated pusher, then offers 48 more to a buffer of 10.
    async fn overflow_50(gate: &Gate, pusher: &Pusher<u32>) -> Vec<Result<Pushed, PushErrorKind>> {
        let mut outcomes = Vec::new();
        for n in 0..2 {
            outcomes.push(pusher.try_push(n).map_err(|e| e.kind()));
        }
        eventually("the window filled", || pusher.stats().in_flight == 2).await;
        for n in 2..50 {
            outcomes.push(pusher.try_push(n).map_err(|e| e.kind()));
        }
        let stats = pusher.stats();
        assert_eq!((stats.buffered, stats.in_flight), (10, 2), "{stats:?}");
        assert!(stats.is_balanced(), "{stats:?}");
        gate.open.add_permits(1_000);
        outcomes
    }

    #[tokio::test]
    async fn drop_newest_counts_every_drop_and_sends_the_first() {
        let gate = Gate::new();
        let pusher = gate.start(Overflow::DropNewest, 2, 10);
        let outcomes = overflow_50(&gate, &pusher).await;
        let dropped = outcomes
            .iter()
            .filter(|o| **o == Ok(Pushed::Dropped))
            .count();
        assert_eq!(dropped, 38);
        let report = pusher.close().await;
        assert_eq!(report.offered, 50);
        assert_eq!(report.dropped_newest, 38);
        assert_eq!(report.sent, 12);
        assert_eq!(report.dropped(), 38);
        assert!(report.is_balanced(), "{report:?}");
        assert_eq!(gate.sent(), (0..12).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn drop_oldest_counts_every_eviction_and_sends_the_latest() {
        let gate = Gate::new();
        let pusher = gate.start(Overflow::DropOldest, 2, 10);
        let outcomes = overflow_50(&gate, &pusher).await;
        let evicting = outcomes
            .iter()
            .filter(|o| **o == Ok(Pushed::QueuedDroppingOldest))
            .count();
        assert_eq!(evicting, 38);
        let report = pusher.close().await;
        assert_eq!((report.offered, report.dropped_oldest), (50, 38));
        assert_eq!(report.sent, 12);
        assert!(report.is_balanced(), "{report:?}");
        let expected: Vec<u32> = (0..2).chain(40..50).collect();
        assert_eq!(gate.sent(), expected);
    }

    #[tokio::test]
    async fn reject_gives_the_push_back_with_a_clear_error() {
        let gate = Gate::new();
        let pusher = gate.start(Overflow::Reject, 2, 10);
        let outcomes = overflow_50(&gate, &pusher).await;
        let full = outcomes
            .iter()
            .filter(|o| **o == Err(PushErrorKind::Full))
            .count();
        assert_eq!(full, 38);
        let report = pusher.close().await;
        assert_eq!((report.offered, report.rejected, report.sent), (50, 38, 12));
        assert!(report.is_balanced(), "{report:?}");
        let error = pusher.try_push(7).unwrap_err();
        assert!(error.is_closed());
        assert_eq!(error.into_inner(), 7);
        let full = PushError::new(PushErrorKind::Full, 10, 1_u32);
        assert!(
            full.to_string()
                .contains("buffer is full (10 pushes waiting)")
        );
        assert_eq!(Error::from(full).kind(), crate::ErrorKind::QueueFull);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_makes_producers_wait_and_loses_nothing() {
        let gate = Gate::new();
        let pusher = gate.start(Overflow::Wait, 4, 5);
        let producer = {
            let pusher = pusher.clone();
            async move {
                for n in 0..60 {
                    assert_eq!(pusher.push(n).await.unwrap(), Pushed::Queued);
                }
            }
        };
        let stats = pusher.clone();
        let opener = async {
            eventually("the producer waits", || {
                let s = stats.stats();
                s.buffered == 5 && s.in_flight == 4
            })
            .await;
            gate.open.add_permits(1_000);
        };
        tokio::join!(producer, opener);
        let report = pusher.close().await;
        assert_eq!((report.offered, report.dropped()), (60, 0));
        // 59 is refused by the gate: a failure, counted as such.
        assert_eq!((report.sent, report.failed), (59, 1));
        assert!(report.is_balanced(), "{report:?}");
        assert_eq!(gate.sent().len(), 60);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_drains_the_buffer_and_errors_are_counted() {
        let api = fake(Duration::from_millis(2)).await;
        api.add_failure_rate(0.3, FakeResponse::empty(StatusCode::INTERNAL_SERVER_ERROR));
        let pusher = Pusher::builder()
            .window(16)
            .capacity(2_000)
            .start(lanes(2), post_to(api.url()))
            .unwrap();
        for n in 0..2_000 {
            pusher.try_push(n).unwrap();
        }
        let report = pusher.close().await;
        let calls = api.calls();
        let failed = calls.iter().filter(|c| c.status.is_server_error()).count() as u64;
        assert_eq!(calls.len(), 2_000);
        assert!(failed > 400 && failed < 800, "{failed} of 2,000 at 30 %");
        assert_eq!((report.sent, report.failed), (2_000 - failed, failed));
        assert_eq!((report.buffered, report.in_flight), (0, 0));
        assert!(report.is_balanced(), "{report:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_send_fails_its_push_and_the_lane_goes_on() {
        // One lane: were it to die with the panics, the rest would never be sent.
        let pusher = Pusher::builder()
            .window(4)
            .capacity(1_000)
            .start(vec![()], |(), n: u32| {
                assert!(n % 100 != 7, "push {n} panics before its future");
                async move {
                    assert!(n % 100 != 42, "push {n} panics in its future");
                    Ok::<(), String>(())
                }
            })
            .unwrap();
        for n in 0..1_000 {
            pusher.try_push(n).unwrap();
        }
        let report = pusher.close().await;
        assert_eq!((report.sent, report.failed), (980, 20), "{report:?}");
        assert_eq!((report.buffered, report.in_flight), (0, 0));
        assert!(report.is_balanced(), "{report:?}");
    }

    #[tokio::test]
    async fn shutdown_is_bounded_and_counts_what_it_cuts() {
        let gate = Gate::new();
        let pusher = gate.start(Overflow::Reject, 2, 10);
        for n in 0..7 {
            pusher.try_push(n).unwrap();
        }
        eventually("the window filled", || pusher.stats().in_flight == 2).await;
        let started = Instant::now();
        let report = pusher.shutdown(Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!((report.cancelled, report.unsent, report.sent), (2, 5, 0));
        assert!(report.is_balanced(), "{report:?}");
    }

    #[tokio::test]
    async fn dropping_the_last_clone_closes_and_still_sends() {
        let sent = Arc::new(AtomicUsize::new(0));
        let count = sent.clone();
        let pusher = Pusher::builder()
            .start(vec![()], move |(), _n: u32| {
                let count = count.clone();
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            })
            .unwrap();
        for n in 0..100 {
            pusher.try_push(n).unwrap();
        }
        drop(pusher);
        eventually("the buffer drained", || sent.load(Ordering::SeqCst) == 100).await;
    }

    #[tokio::test]
    async fn bad_settings_are_refused() {
        let send = |(), _n: u32| async { Ok::<(), String>(()) };
        let e = Pusher::builder()
            .window(0)
            .start(vec![()], send)
            .unwrap_err();
        assert!(e.to_string().contains("window"));
        let e = Pusher::builder()
            .capacity(0)
            .start(vec![()], send)
            .unwrap_err();
        assert!(e.to_string().contains("capacity"));
        let e = Pusher::builder().start(Vec::<()>::new(), send).unwrap_err();
        assert!(e.to_string().contains("sender"));
    }

    #[tokio::test]
    async fn metrics_and_outbound_lanes() {
        let limits = crate::Limits::default();
        let queue: Arc<dyn crate::Queue> = Arc::new(crate::MemoryQueue::new(&limits));
        let telemetry = Telemetry::new(queue).unwrap();
        let recorder = Arc::new(crate::testing::RecordingOutbound::new(
            crate::Platform::LINE,
        ));
        recorder.fail_next(1);
        let pusher = Pusher::builder()
            .name("campaign")
            .capacity(3)
            .overflow(Overflow::DropNewest)
            .telemetry(telemetry.clone())
            .start_outbound(vec![recorder.clone() as Arc<dyn Outbound>])
            .unwrap();
        let mut dropped = 0;
        for n in 0..10 {
            if pusher.try_push(Push::new(format!("U{n}"), "sale")).unwrap() == Pushed::Dropped {
                dropped += 1;
            }
        }
        let report = pusher.close().await;
        assert_eq!(report.dropped_newest, dropped);
        assert_eq!(report.failed, 1);
        assert_eq!(recorder.len() as u64, report.sent);
        assert!(report.is_balanced(), "{report:?}");
        let text = telemetry.render_prometheus();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {text}"))
                .to_owned()
        };
        assert!(line("bot_push_offered_total{pusher=\"campaign\"}").ends_with(" 10"));
        assert!(
            line("bot_push_sent_total{pusher=\"campaign\"}")
                .ends_with(&format!(" {}", report.sent))
        );
        assert!(
            line("bot_push_dropped_total{pusher=\"campaign\",reason=\"overflow_newest\"}")
                .ends_with(&format!(" {dropped}"))
        );
        assert!(line("bot_push_failed_total{pusher=\"campaign\"}").ends_with(" 1"));
        assert!(text.contains("bot_push_duration_seconds_count{pusher=\"campaign\"}"));
    }
}
