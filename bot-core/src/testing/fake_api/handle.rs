//! [`FakeApi`] and [`FakeApiBuilder`]: starting the fake, reading its calls, steering its answers.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::request::{Call, FakeRequest};
use super::response::{FakeResponse, Fault, Latency};
use super::server::{DEFAULT_MAX_STREAMS, Shared, answer, serve};
use super::{DEFAULT_RECORD_LIMIT, DEFAULT_WAIT};
use crate::testing::{lock, wait_until};

/// A fake platform API served on 127.0.0.1 until dropped.
///
/// Cloning is cheap; the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeApi {
    pub(super) addr: SocketAddr,
    pub(super) shared: Arc<Shared>,
    pub(super) _stop: Arc<StopOnDrop>,
}

pub(super) struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl fmt::Debug for FakeApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeApi")
            .field("addr", &self.addr)
            .field("calls", &self.call_count())
            .finish_non_exhaustive()
    }
}

/// Sets a [`FakeApi`] up before it starts: the HTTP/2 stream limit, a first latency.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct FakeApiBuilder {
    pub(super) max_concurrent_streams: Option<u32>,
    pub(super) latency: Latency,
    pub(super) precise_latency: bool,
}

impl FakeApiBuilder {
    /// Announces `SETTINGS_MAX_CONCURRENT_STREAMS = streams` on HTTP/2 connections, so a client
    /// keeps at most that many requests unanswered per connection (as APNs and other push
    /// gateways do). Default: 100,000, far above what a test sends.
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_concurrent_streams = Some(streams);
        self
    }

    /// Starts with this latency (see [`FakeApi::set_latency`]).
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Times each answer's latency from the request's arrival (its headers) on a thread of the
    /// fake's own, so that it goes out within tens of microseconds after it is due, never before.
    /// By default the latency is a wait on Tokio's timer after the body is read, which rounds it
    /// up to whole milliseconds (a 20 ms latency answers after 21-22 ms on average): fine for
    /// tests, too coarse for a load test whose limit is `window / latency`. Real time only: a
    /// test that pauses Tokio's clock needs the default.
    pub fn precise_latency(mut self, precise: bool) -> Self {
        self.precise_latency = precise;
        self
    }

    /// Serves on a free port of 127.0.0.1, answering each request with `responder`. HTTP/1.1 and
    /// HTTP/2 with prior knowledge (h2c) are both served.
    ///
    /// # Errors
    ///
    /// Fails when no port can be bound, or the clock's thread cannot start.
    pub async fn start(
        self,
        responder: impl Fn(&FakeRequest) -> FakeResponse + Send + Sync + 'static,
    ) -> std::io::Result<FakeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            responder: Box::new(responder),
            calls: Mutex::new(Vec::new()),
            total: AtomicU64::new(0),
            faults: Mutex::new(VecDeque::new()),
            random_faults: Mutex::new(Vec::new()),
            latency: Mutex::new(self.latency),
            record_limit: AtomicU64::new(DEFAULT_RECORD_LIMIT as u64),
            recording: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            peak_per_connection: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            notify: Notify::new(),
            held_nanos: AtomicU64::new(0),
            late_nanos: AtomicU64::new(0),
            clock: if self.precise_latency {
                Some(Clock::start()?)
            } else {
                None
            },
        });
        let stop = CancellationToken::new();
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        let streams = self.max_concurrent_streams.unwrap_or(DEFAULT_MAX_STREAMS);
        // The fake's accept loop: one long-lived task, stopped when the fake is dropped.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(serve(listener, app, shared.clone(), streams, stop.clone()));
        Ok(FakeApi {
            addr,
            shared,
            _stop: Arc::new(StopOnDrop(stop)),
        })
    }
}

impl FakeApi {
    /// Serves on a free port of 127.0.0.1, answering each request with `responder` (see
    /// [`FakeApi::builder`] for the options).
    ///
    /// # Errors
    ///
    /// Fails when no port can be bound.
    pub async fn start(
        responder: impl Fn(&FakeRequest) -> FakeResponse + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        FakeApiBuilder::default().start(responder).await
    }

    /// Sets a fake up before it starts.
    pub fn builder() -> FakeApiBuilder {
        FakeApiBuilder::default()
    }

    /// Requests received and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// The most requests that were unanswered at once, in all.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak_in_flight.load(Ordering::Acquire)
    }

    /// The most requests that were unanswered at once on one connection.
    pub fn peak_in_flight_per_connection(&self) -> usize {
        self.shared.peak_per_connection.load(Ordering::Acquire)
    }

    /// How long the fake held an answered request on average, from its arrival (its headers,
    /// handed over by the HTTP stack) to its answer (handed back): the latency, how late the
    /// fake's timer woke, and the responder. `None` before the first answer.
    pub fn mean_hold(&self) -> Option<Duration> {
        self.mean_of(&self.shared.held_nanos)
    }

    /// Of [`FakeApi::mean_hold`], how much was past each request's latency on average: the
    /// fake's own lateness (its timer and its share of the CPU). `None` before the first answer.
    pub fn mean_late(&self) -> Option<Duration> {
        self.mean_of(&self.shared.late_nanos)
    }

    fn mean_of(&self, sum: &AtomicU64) -> Option<Duration> {
        let count = self.shared.total.load(Ordering::Acquire);
        (count > 0).then(|| Duration::from_nanos(sum.load(Ordering::Acquire) / count))
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Answers a random `probability` (0 to 1) of the requests with `response` instead of the
    /// responder, on top of the rates set before (for example 1 % of 429s and 0.1 % of 500s).
    /// Injected [`Fault`]s come first.
    ///
    /// # Panics
    ///
    /// When `probability` is not within 0 and 1.
    pub fn add_failure_rate(&self, probability: f64, response: FakeResponse) {
        assert!(
            (0.0..=1.0).contains(&probability),
            "a failure rate is a probability, not {probability}"
        );
        lock(&self.shared.random_faults).push((probability, response));
    }

    /// Forgets the failure rates.
    pub fn clear_failure_rates(&self) {
        lock(&self.shared.random_faults).clear();
    }

    /// The base URL, `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The calls recorded so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// The calls recorded so far whose path is `path`.
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        lock(&self.shared.calls)
            .iter()
            .filter(|c| c.request.path == path)
            .cloned()
            .collect()
    }

    /// How many requests arrived (also those past the record limit).
    pub fn call_count(&self) -> usize {
        usize::try_from(self.shared.total.load(Ordering::Acquire)).unwrap_or(usize::MAX)
    }

    /// Waits until `count` requests arrived and returns the recorded calls.
    ///
    /// # Panics
    ///
    /// After [`DEFAULT_WAIT`] without `count` calls, listing what did arrive.
    pub async fn wait_for_calls(&self, count: usize) -> Vec<Call> {
        self.wait_for_calls_within(count, DEFAULT_WAIT).await
    }

    /// As [`FakeApi::wait_for_calls`], giving up after `limit`.
    ///
    /// # Panics
    ///
    /// After `limit` without `count` calls, listing what did arrive.
    pub async fn wait_for_calls_within(&self, count: usize, limit: Duration) -> Vec<Call> {
        let wait = wait_until(&self.shared.notify, || {
            (self.call_count() >= count).then(|| self.calls())
        });
        match tokio::time::timeout(limit, wait).await {
            Ok(calls) => calls,
            Err(_) => panic!(
                "fake api: {} of {count} calls after {limit:?}: {:#?}",
                self.call_count(),
                self.summary()
            ),
        }
    }

    /// Waits until `check` finds what it looks for in the fake (checked at every call), and
    /// returns it.
    ///
    /// # Panics
    ///
    /// After [`DEFAULT_WAIT`] without it, naming `what` and listing the calls that arrived.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        mut check: impl FnMut(&FakeApi) -> Option<T>,
    ) -> T {
        let wait = wait_until(&self.shared.notify, || check(self));
        match tokio::time::timeout(DEFAULT_WAIT, wait).await {
            Ok(found) => found,
            Err(_) => panic!(
                "fake api: no {what} after {DEFAULT_WAIT:?}; calls: {:#?}",
                self.summary()
            ),
        }
    }

    pub(super) fn summary(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| format!("{} {} -> {}", c.request.method, c.request.path, c.status))
            .collect()
    }

    /// Waits, without limit, until `count` requests arrived (for demos and tools that watch a
    /// fake; tests use [`FakeApi::wait_for_calls`], which gives up).
    pub async fn wait_for_count(&self, count: usize) {
        wait_until(&self.shared.notify, || {
            (self.call_count() >= count).then_some(())
        })
        .await;
    }

    /// Answers the next matching requests with `fault` instead of the responder. Faults apply in
    /// the order injected.
    pub fn inject(&self, fault: Fault) {
        if fault.times > 0 {
            lock(&self.shared.faults).push_back(fault);
        }
    }

    /// Slows every answer down.
    pub fn set_latency(&self, latency: Latency) {
        *lock(&self.shared.latency) = latency;
    }

    /// Keeps at most `limit` calls (the count goes on). Load tests set it low.
    pub fn set_record_limit(&self, limit: usize) {
        self.shared
            .record_limit
            .store(limit as u64, Ordering::Release);
    }

    /// Forgets the recorded calls and resets the count (and the hold times).
    pub fn clear(&self) {
        let mut calls = lock(&self.shared.calls);
        calls.clear();
        self.shared.total.store(0, Ordering::Release);
        self.shared.held_nanos.store(0, Ordering::Release);
        self.shared.late_nanos.store(0, Ordering::Release);
    }

    /// Stops or resumes recording calls (counting goes on).
    pub fn set_recording(&self, recording: bool) {
        self.shared.recording.store(recording, Ordering::Release);
    }
}
