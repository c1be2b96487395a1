//! A fake platform API on 127.0.0.1 that records every call and can inject latency and failures.
//!
//! Each adapter's `testing` feature builds its platform's fake on [`FakeApi`]: the adapter supplies
//! a responder (what the platform would answer), and tests read what the bot sent with
//! [`FakeApi::calls`] or [`FakeApi::wait_for_calls`], slow the API down with
//! [`FakeApi::set_latency`] and make it fail with [`FakeApi::inject`].
//!
//! # Examples
//!
//! ```
//! use bot_core::testing::fake_api::{FakeApi, FakeResponse, Fault};
//! use http::StatusCode;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let api = FakeApi::start(|_request| {
//!     FakeResponse::json(StatusCode::OK, &serde_json::json!({}))
//! })
//! .await?;
//! // The next request to /v2/ answers 429; later ones get the responder's answer.
//! api.inject(Fault::status(StatusCode::TOO_MANY_REQUESTS).on_path("/v2/"));
//! let base_url = api.url(); // give it to the client under test
//! # let _ = base_url;
//! assert_eq!(api.call_count(), 0);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::{lock, wait_until};

/// How long [`FakeApi::wait_for_calls`] waits by default before it gives up.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// How many calls a fake keeps by default (the count goes on past it).
pub const DEFAULT_RECORD_LIMIT: usize = 100_000;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    /// The HTTP method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// When the fake received it.
    pub received_at: Instant,
}

impl FakeRequest {
    /// A header's value as a string, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub fn bearer(&self) -> Option<&str> {
        self.header(header::AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer "))
    }

    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A query parameter's value (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

/// A request and the status the fake answered it with.
#[derive(Debug, Clone)]
pub struct Call {
    /// What arrived.
    pub request: FakeRequest,
    /// What the fake answered.
    pub status: StatusCode,
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub struct FakeResponse {
    /// The status.
    pub status: StatusCode,
    /// Extra headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl FakeResponse {
    /// A JSON answer.
    pub fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Self {
            status,
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    /// An answer without a body.
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    ///
    /// # Panics
    ///
    /// When `value` is not a valid header value (a test's own mistake).
    #[must_use]
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let name = HeaderName::try_from(name.as_ref()).expect("a valid header name");
        let value = HeaderValue::try_from(value.as_ref()).expect("a valid header value");
        self.headers.insert(name, value);
        self
    }
}

/// A failure to answer instead of the responder's answer, for the next matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    path_prefix: Option<String>,
    times: usize,
    response: FakeResponse,
}

impl Fault {
    /// Answers with `status` and an empty JSON object.
    pub fn status(status: StatusCode) -> Self {
        Self::response(FakeResponse::json(status, &serde_json::json!({})))
    }

    /// Answers with `response`.
    pub fn response(response: FakeResponse) -> Self {
        Self {
            path_prefix: None,
            times: 1,
            response,
        }
    }

    /// Applies to this many matching requests (default 1).
    #[must_use]
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// Applies only to requests whose path starts with `prefix`.
    #[must_use]
    pub fn on_path(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Replaces the body with `body` as JSON.
    #[must_use]
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        let status = self.response.status;
        let headers = std::mem::take(&mut self.response.headers);
        self.response = FakeResponse::json(status, body);
        self.response.headers.extend(headers);
        self
    }

    /// Adds a header to the answer.
    #[must_use]
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.response = self.response.header(name, value);
        self
    }
}

/// How long the fake takes to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latency {
    /// At once.
    #[default]
    None,
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between the two.
    Uniform(Duration, Duration),
}

impl Latency {
    fn sample(self) -> Duration {
        match self {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Uniform(low, high) if high > low => {
                let span = u64::try_from((high - low).as_micros()).unwrap_or(u64::MAX);
                low + Duration::from_micros(fastrand::u64(0..=span))
            }
            Latency::Uniform(low, _) => low,
        }
    }
}

type Responder = dyn Fn(&FakeRequest) -> FakeResponse + Send + Sync;

struct Shared {
    responder: Box<Responder>,
    calls: Mutex<Vec<Call>>,
    total: AtomicU64,
    faults: Mutex<VecDeque<Fault>>,
    random_faults: Mutex<Vec<(f64, FakeResponse)>>,
    latency: Mutex<Latency>,
    record_limit: AtomicU64,
    recording: AtomicBool,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    peak_per_connection: AtomicUsize,
    connections: AtomicUsize,
    notify: Notify,
}

/// A fake platform API served on 127.0.0.1 until dropped.
///
/// Cloning is cheap; the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

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
    max_concurrent_streams: Option<u32>,
    latency: Latency,
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

    /// Serves on a free port of 127.0.0.1, answering each request with `responder`. HTTP/1.1 and
    /// HTTP/2 with prior knowledge (h2c) are both served.
    ///
    /// # Errors
    ///
    /// Fails when no port can be bound.
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

/// The HTTP/2 stream limit a fake announces unless told otherwise.
const DEFAULT_MAX_STREAMS: u32 = 100_000;

async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shared: Arc<Shared>,
    streams: u32,
    stop: CancellationToken,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(streams)
        .initial_connection_window_size(8 << 20)
        .initial_stream_window_size(1 << 20);
    let builder = Arc::new(builder);
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "fake api: accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::AcqRel);
        let builder = builder.clone();
        let app = app.clone();
        let shared = shared.clone();
        let stop = stop.clone();
        // One task per connection, ended with the connection or when the fake is dropped.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            let open = Arc::new(AtomicUsize::new(0));
            let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let app = app.clone();
                let guard = InFlight::enter(&shared, open.clone());
                async move {
                    let response = app.oneshot(request.map(Body::new)).await;
                    drop(guard);
                    response
                }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

/// Counts a request as unanswered, in all and on its connection, until dropped.
struct InFlight {
    shared: Arc<Shared>,
    connection: Arc<AtomicUsize>,
}

impl InFlight {
    fn enter(shared: &Arc<Shared>, connection: Arc<AtomicUsize>) -> Self {
        let all = shared.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        shared.peak_in_flight.fetch_max(all, Ordering::AcqRel);
        let here = connection.fetch_add(1, Ordering::AcqRel) + 1;
        shared.peak_per_connection.fetch_max(here, Ordering::AcqRel);
        Self {
            shared: shared.clone(),
            connection,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.connection.fetch_sub(1, Ordering::AcqRel);
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

    fn summary(&self) -> Vec<String> {
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

    /// Forgets the recorded calls and resets the count.
    pub fn clear(&self) {
        let mut calls = lock(&self.shared.calls);
        calls.clear();
        self.shared.total.store(0, Ordering::Release);
    }

    /// Stops or resumes recording calls (counting goes on).
    pub fn set_recording(&self, recording: bool) {
        self.shared.recording.store(recording, Ordering::Release);
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    request: http::Request<Body>,
) -> http::Response<Body> {
    let received_at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return plain(StatusCode::BAD_REQUEST, "cannot read body"),
    };
    let request = FakeRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        received_at,
    };
    let latency = *lock(&shared.latency);
    let delay = latency.sample();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = take_fault(&shared, &request.path)
        .or_else(|| random_fault(&shared))
        .unwrap_or_else(|| (shared.responder)(&request));
    record(&shared, request, response.status);
    let mut out = http::Response::new(Body::from(response.body));
    *out.status_mut() = response.status;
    *out.headers_mut() = response.headers;
    out
}

fn take_fault(shared: &Shared, path: &str) -> Option<FakeResponse> {
    let mut faults = lock(&shared.faults);
    let index = faults.iter().position(|f| {
        f.path_prefix
            .as_deref()
            .is_none_or(|prefix| path.starts_with(prefix))
    })?;
    let fault = &mut faults[index];
    fault.times -= 1;
    let response = fault.response.clone();
    if fault.times == 0 {
        faults.remove(index);
    }
    Some(response)
}

fn random_fault(shared: &Shared) -> Option<FakeResponse> {
    let faults = lock(&shared.random_faults);
    if faults.is_empty() {
        return None;
    }
    let draw = fastrand::f64();
    let mut below = 0.0;
    faults.iter().find_map(|(probability, response)| {
        below += probability;
        (draw < below).then(|| response.clone())
    })
}

fn record(shared: &Shared, request: FakeRequest, status: StatusCode) {
    if shared.recording.load(Ordering::Acquire) {
        let mut calls = lock(&shared.calls);
        if (calls.len() as u64) < shared.record_limit.load(Ordering::Acquire) {
            calls.push(Call { request, status });
        }
    }
    shared.total.fetch_add(1, Ordering::AcqRel);
    shared.notify.notify_waiters();
}

fn plain(status: StatusCode, text: &'static str) -> http::Response<Body> {
    let mut out = http::Response::new(Body::from(text));
    *out.status_mut() = status;
    out
}

#[cfg(test)]
mod tests;
