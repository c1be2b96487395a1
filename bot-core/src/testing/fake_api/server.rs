//! The server: HTTP/1.1 and h2c connections, the answer to each request, faults and records.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use http::StatusCode;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::clock::Clock;
use super::request::{Call, FakeRequest};
use super::response::{FakeResponse, Fault, Latency, Responder};
use crate::testing::lock;

pub(super) struct Shared {
    pub(super) responder: Box<Responder>,
    pub(super) calls: Mutex<Vec<Call>>,
    pub(super) total: AtomicU64,
    pub(super) faults: Mutex<VecDeque<Fault>>,
    pub(super) random_faults: Mutex<Vec<(f64, FakeResponse)>>,
    pub(super) latency: Mutex<Latency>,
    pub(super) record_limit: AtomicU64,
    pub(super) recording: AtomicBool,
    pub(super) in_flight: AtomicUsize,
    pub(super) peak_in_flight: AtomicUsize,
    pub(super) peak_per_connection: AtomicUsize,
    pub(super) connections: AtomicUsize,
    pub(super) notify: Notify,
    /// Nanoseconds from arrival to answer, summed over the answered requests.
    pub(super) held_nanos: AtomicU64,
    /// Of which past each request's latency.
    pub(super) late_nanos: AtomicU64,
    /// The fake's own clock, when [`super::FakeApiBuilder::precise_latency`] asked for one.
    pub(super) clock: Option<Clock>,
}

/// When hyper handed a request to the fake (its headers arrived): what a latency counts from.
#[derive(Clone, Copy)]
struct Arrived(Instant);

/// The HTTP/2 stream limit a fake announces unless told otherwise.
pub(super) const DEFAULT_MAX_STREAMS: u32 = 100_000;

pub(super) async fn serve(
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
            let service =
                hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                    request.extensions_mut().insert(Arrived(Instant::now()));
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
pub(super) struct InFlight {
    pub(super) shared: Arc<Shared>,
    pub(super) connection: Arc<AtomicUsize>,
}

impl InFlight {
    pub(super) fn enter(shared: &Arc<Shared>, connection: Arc<AtomicUsize>) -> Self {
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

pub(super) async fn answer(
    State(shared): State<Arc<Shared>>,
    request: http::Request<Body>,
) -> http::Response<Body> {
    let received_at = request
        .extensions()
        .get::<Arrived>()
        .map_or_else(Instant::now, |a| a.0);
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
        match &shared.clock {
            // From the request's arrival, on a clock precise to tens of microseconds.
            Some(clock) => clock.sleep_until(received_at + delay).await,
            // Tokio's timer, which tests with a paused clock drive.
            None => tokio::time::sleep(delay).await,
        }
    }
    let response = take_fault(&shared, &request.path)
        .or_else(|| random_fault(&shared))
        .unwrap_or_else(|| (shared.responder)(&request));
    let held = received_at.elapsed();
    shared.held_nanos.fetch_add(nanos(held), Ordering::AcqRel);
    shared
        .late_nanos
        .fetch_add(nanos(held.saturating_sub(delay)), Ordering::AcqRel);
    record(&shared, request, response.status);
    let mut out = http::Response::new(Body::from(response.body));
    *out.status_mut() = response.status;
    *out.headers_mut() = response.headers;
    out
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(super) fn take_fault(shared: &Shared, path: &str) -> Option<FakeResponse> {
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

pub(super) fn random_fault(shared: &Shared) -> Option<FakeResponse> {
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

pub(super) fn record(shared: &Shared, request: FakeRequest, status: StatusCode) {
    if shared.recording.load(Ordering::Acquire) {
        let mut calls = lock(&shared.calls);
        if (calls.len() as u64) < shared.record_limit.load(Ordering::Acquire) {
            calls.push(Call { request, status });
        }
    }
    shared.total.fetch_add(1, Ordering::AcqRel);
    shared.notify.notify_waiters();
}

pub(super) fn plain(status: StatusCode, text: &'static str) -> http::Response<Body> {
    let mut out = http::Response::new(Body::from(text));
    *out.status_mut() = status;
    out
}
