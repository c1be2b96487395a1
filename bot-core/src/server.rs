//! The HTTP server: adapters' webhooks plus `/healthz`, `/readyz` and `/metrics`, on axum.
//!
//! Anyone can reach a webhook port, so it is bounded: open connections (excess ones are answered
//! 503 and closed), requests in progress (503 with `Retry-After`), body size (413); refusals are
//! counted in metrics and logged at most once per interval. `/metrics` and the health routes can
//! move to a private address of their own ([`OPS_ADDR_ENV`], [`crate::BotBuilder::ops_addr`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::layer::util::{Identity, Stack};
use tower::{Layer, Service, ServiceBuilder};
use tower_http::classify::{ServerErrorsAsFailures, ServerErrorsFailureClass, SharedClassifier};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::{
    DefaultOnBodyChunk, DefaultOnEos, DefaultOnRequest, DefaultOnResponse, TraceLayer,
};

use crate::adapter::REFUSAL_LOG_INTERVAL;
use crate::bot::Bot;
use crate::error::Error;
use crate::event::Platform;
use crate::runtime::ShutdownReport;
use crate::telemetry::RateLimitedLog;

/// The environment variable naming the address for `/healthz`, `/readyz` and `/metrics` apart
/// from the webhooks (`127.0.0.1:9090`); when set, the webhook port serves none of them.
pub const OPS_ADDR_ENV: &str = "BOT_OPS_ADDR";
/// Open connections a server keeps at most unless set otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Requests a server handles at once unless set otherwise.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;
/// Default time a connection may stay without a byte read or written before the server closes
/// it (see [`crate::BotBuilder::idle_timeout`]).
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The platform label of refusals that happen before a request reaches an adapter.
const UNKNOWN_PLATFORM: Platform = Platform::from_static("unknown");

/// The server's bounds and addresses, from the builder and the environment.
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    pub(crate) ops_addr: Option<SocketAddr>,
    pub(crate) max_connections: usize,
    pub(crate) max_concurrent_requests: usize,
    pub(crate) idle_timeout: std::time::Duration,
    /// Shared by every router built from the bot.
    requests: Arc<Semaphore>,
    refusal_log: Arc<RateLimitedLog>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            ops_addr: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            requests: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT_REQUESTS)),
            refusal_log: Arc::new(RateLimitedLog::new(REFUSAL_LOG_INTERVAL)),
        }
    }
}

impl ServerSettings {
    /// Validates the limits and reads [`OPS_ADDR_ENV`] when no address was set.
    pub(crate) fn resolve(&mut self) -> Result<(), Error> {
        if self.max_connections == 0
            || self.max_concurrent_requests == 0
            || self.idle_timeout.is_zero()
        {
            return Err(Error::config(
                "bot: max_connections, max_concurrent_requests and idle_timeout must be above zero",
            ));
        }
        if self.ops_addr.is_none()
            && let Ok(value) = std::env::var(OPS_ADDR_ENV)
            && !value.trim().is_empty()
        {
            let addr = value.trim().parse().map_err(|e| {
                Error::config(format!("bot: {OPS_ADDR_ENV} {value:?} is not an address"))
                    .with_source(e)
            })?;
            self.ops_addr = Some(addr);
        }
        self.requests = Arc::new(Semaphore::new(self.max_concurrent_requests));
        Ok(())
    }
}

impl Bot {
    /// The adapters' webhook routes, with the body-size limit, for mounting in your own axum app.
    ///
    /// Call [`Bot::start`] to run the supervisor and [`Bot::shutdown`] to drain it.
    pub fn webhooks(&self) -> Router {
        self.adapter_routes()
            .layer(axum::middleware::map_response_with_state(
                self.clone(),
                count_too_large,
            ))
    }

    /// The adapters' routes under the body-size limit.
    fn adapter_routes(&self) -> Router {
        self.merged_adapter_routes().layer(self.body_limits())
    }

    /// Every adapter's routes, merged, without any layer.
    fn merged_adapter_routes(&self) -> Router {
        let mut router = Router::new();
        for adapter in &self.inner.adapters {
            if let Some(routes) = adapter.routes(self.inner.ingress.clone()) {
                router = router.merge(routes);
            }
        }
        router
    }

    /// The body-size limit: 413 past it (`RequestBodyLimit`), and the extractors told the same
    /// limit (`DefaultBodyLimit`, whose own default is 2 MiB).
    fn body_limits(&self) -> BodyLimits {
        ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(self.inner.max_body_bytes))
            .layer(DefaultBodyLimit::max(self.inner.max_body_bytes))
            .into_inner()
    }

    /// The operational routes: `/healthz` (alive), `/readyz` (accepting events) and `/metrics`.
    pub fn ops_routes(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }

    /// Everything [`Bot::serve`] serves on the webhook port: webhooks, the operational routes
    /// unless an ops address is configured, the limit of requests in progress, request time-out
    /// and tracing.
    pub fn router(&self) -> Router {
        if self.inner.server.ops_addr.is_some() {
            self.served_webhooks()
        } else {
            self.served_webhooks().merge(self.served_ops())
        }
    }

    /// The webhooks as served: traced, under the request time-out, the limit of requests in
    /// progress (health checks and scrapes are not: they must answer under load) and the body
    /// limit.
    ///
    /// The layers are stacked once, into one service per route: axum boxes a route again for
    /// every `Router::layer` and clones each box on every request, so five layers applied one by
    /// one cost some twenty allocations per request, which this path does not pay.
    fn served_webhooks(&self) -> Router {
        let limit = RequestLimitLayer(Arc::new(RequestLimit {
            permits: self.inner.server.requests.clone(),
            refused: self
                .telemetry()
                .meter()
                .u64_counter("bot.server.requests.refused")
                .with_description("Requests refused because too many were in progress")
                .build(),
            log: self.inner.server.refusal_log.clone(),
            bot: self.clone(),
        }));
        self.merged_adapter_routes().layer(
            ServiceBuilder::new()
                .layer(self.tracing())
                .layer(self.request_timeout())
                .layer(limit)
                .layer(self.body_limits()),
        )
    }

    /// The operational routes as served: traced, under the request time-out.
    fn served_ops(&self) -> Router {
        self.ops_routes().layer(
            ServiceBuilder::new()
                .layer(self.tracing())
                .layer(self.request_timeout()),
        )
    }

    /// The span and failure log of every request.
    fn tracing(&self) -> RequestTracing {
        TraceLayer::new_for_http()
            .make_span_with(request_span as SpanMaker)
            .on_failure(on_failure as FailureLog)
    }

    /// 408 past the request time-out.
    fn request_timeout(&self) -> RequestTimeoutLayer {
        RequestTimeoutLayer(self.inner.request_timeout)
    }

    /// Serves on `addr` until SIGTERM, ctrl-c or [`Bot::request_shutdown`], then shuts down
    /// gracefully (see [`Bot::shutdown`]) and returns the report.
    ///
    /// # Errors
    ///
    /// Fails when the address cannot be bound.
    pub async fn serve(self, addr: impl ToSocketAddrs) -> Result<ShutdownReport, Error> {
        let listener = TcpListener::bind(addr).await?;
        let requested = self.inner.shutdown_requested.clone();
        self.serve_with_shutdown(listener, async move {
            tokio::select! {
                () = termination_signal() => {}
                () = requested.cancelled() => {}
            }
        })
        .await
    }

    /// As [`Bot::serve_with_shutdown`], with `/healthz`, `/readyz` and `/metrics` on
    /// `ops_listener` and only the webhooks on `listener`.
    ///
    /// # Errors
    ///
    /// Fails when a server cannot run.
    pub async fn serve_with_ops(
        self,
        listener: TcpListener,
        ops_listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ShutdownReport, Error> {
        self.serve_listeners(listener, Some(ops_listener), signal)
            .await
    }

    /// Serves on `listener` until `signal` completes or [`Bot::request_shutdown`] is called;
    /// with an ops address configured, binds it for the operational routes.
    ///
    /// While the supervisor drains, the server keeps answering: `/readyz` says 503 so load
    /// balancers stop sending, and webhooks answer 503 with `Retry-After` so platforms redeliver
    /// later. The listener closes once the drain is over.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot run.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ShutdownReport, Error> {
        let ops = match self.inner.server.ops_addr {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        self.serve_listeners(listener, ops, signal).await
    }

    async fn serve_listeners(
        self,
        listener: TcpListener,
        ops_listener: Option<TcpListener>,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ShutdownReport, Error> {
        let addr = listener.local_addr()?;
        self.start();
        let app = match ops_listener {
            Some(_) => self.served_webhooks(),
            None => self.router(),
        };
        let listener = self.limited(listener);
        let server_stop = tokio_util::sync::CancellationToken::new();
        let stop = server_stop.clone();
        // The HTTP servers themselves: long-lived tasks.
        #[allow(clippy::disallowed_methods)]
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        let ops_server = match ops_listener {
            Some(ops_listener) => {
                let ops_addr = ops_listener.local_addr()?;
                let ops_app = self.served_ops();
                let stop = server_stop.clone();
                tracing::info!(%ops_addr, "health and metrics listening");
                #[allow(clippy::disallowed_methods)]
                let task = tokio::spawn(async move {
                    axum::serve(ops_listener, ops_app)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await
                });
                Some(task)
            }
            None => None,
        };
        tracing::info!(%addr, "bot listening");
        let requested = self.inner.shutdown_requested.clone();
        tokio::select! {
            () = signal => {}
            () = requested.cancelled() => {}
        }
        tracing::info!("shutdown requested");
        let report = self.shutdown().await;
        server_stop.cancel();
        let joined = [Some(server), ops_server];
        for task in joined.into_iter().flatten() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => {
                    return Err(
                        Error::new(crate::ErrorKind::Other, "server task failed").with_source(e)
                    );
                }
            }
        }
        Ok(report)
    }

    /// `listener` bounded to the configured number of open connections.
    fn limited(&self, listener: TcpListener) -> LimitedListener {
        let max = self.inner.server.max_connections;
        let permits = Arc::new(Semaphore::new(max));
        let meter = self.telemetry().meter();
        let weak = Arc::downgrade(&permits);
        let _open = meter
            .u64_observable_gauge("bot.server.connections.open")
            .with_description("Open connections to the webhook port")
            .with_callback(move |o| {
                if let Some(p) = weak.upgrade() {
                    o.observe(max.saturating_sub(p.available_permits()) as u64, &[]);
                }
            })
            .build();
        LimitedListener {
            inner: listener,
            permits,
            max,
            idle_timeout: self.inner.server.idle_timeout,
            refused: meter
                .u64_counter("bot.server.connections.refused")
                .with_description("Connections closed at once because too many were open")
                .build(),
            log: self.inner.server.refusal_log.clone(),
        }
    }
}

/// Counts and logs (at most once per interval) a body over the size limit: the request was
/// refused before any adapter saw it.
async fn count_too_large(State(bot): State<Bot>, response: Response) -> Response {
    note_too_large(&bot, &response);
    response
}

fn note_too_large(bot: &Bot, response: &Response) {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        bot.ingress()
            .note_refused(&UNKNOWN_PLATFORM, response.status(), "body_too_large");
    }
}

/// The layers of [`Bot::body_limits`].
type BodyLimits = Stack<DefaultBodyLimit, Stack<RequestBodyLimitLayer, Identity>>;
/// [`request_span`] as the trace layer's span maker.
type SpanMaker = fn(&http::Request<axum::body::Body>) -> tracing::Span;
/// [`on_failure`] as the trace layer's failure log.
type FailureLog = fn(ServerErrorsFailureClass, std::time::Duration, &tracing::Span);
/// The trace layer of every request.
type RequestTracing = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    SpanMaker,
    DefaultOnRequest,
    DefaultOnResponse,
    DefaultOnBodyChunk,
    DefaultOnEos,
    FailureLog,
>;

/// The limit of requests in progress, and the count of bodies over the size limit.
struct RequestLimit {
    permits: Arc<Semaphore>,
    refused: Counter<u64>,
    log: Arc<RateLimitedLog>,
    /// Counts bodies over the size limit.
    bot: Bot,
}

impl RequestLimit {
    /// 503 with `Retry-After`: too many requests in progress. Counted, and logged at most once
    /// per interval.
    fn refuse(&self) -> Response {
        self.refused.add(1, &[]);
        if let Some(suppressed) = self.log.check() {
            tracing::warn!(
                suppressed,
                "request refused: too many in progress (one line per {:?}; \
                 bot.server.requests.refused counts each)",
                self.log.interval()
            );
        }
        too_many_in_progress()
    }
}

/// The answer to a request over the limit of requests in progress: 503 with `Retry-After`.
fn too_many_in_progress() -> Response {
    let mut res = (
        StatusCode::SERVICE_UNAVAILABLE,
        "too many requests in progress",
    )
        .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// [`RequestLimit`] as a tower layer: a plain service and future, where axum's `from_fn` would
/// box the rest of the stack and the future on every request.
#[derive(Clone)]
struct RequestLimitLayer(Arc<RequestLimit>);

impl<S> Layer<S> for RequestLimitLayer {
    type Service = RequestLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLimited {
            inner,
            limit: self.0.clone(),
        }
    }
}

/// A service under [`RequestLimit`].
#[derive(Clone)]
struct RequestLimited<S> {
    inner: S,
    limit: Arc<RequestLimit>,
}

impl<S, B> Service<Request> for RequestLimited<S>
where
    S: Service<Request, Response = http::Response<B>>,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = LimitedResponse<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.limit.permits.clone().try_acquire_owned() {
            Ok(permit) => LimitedResponse::Running {
                inner: self.inner.call(request),
                permit: Some(permit),
                limit: self.limit.clone(),
            },
            Err(_) => LimitedResponse::Refused {
                response: Some(self.limit.refuse()),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a [`RequestLimited`] service: the inner one's, its permit held until it
    /// is ready, or the refusal.
    #[project = LimitedResponseProj]
    enum LimitedResponse<F> {
        Running {
            #[pin]
            inner: F,
            permit: Option<OwnedSemaphorePermit>,
            limit: Arc<RequestLimit>,
        },
        Refused {
            response: Option<Response>,
        },
    }
}

impl<F, B, E> Future for LimitedResponse<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LimitedResponseProj::Running {
                inner,
                permit,
                limit,
            } => {
                let output = std::task::ready!(inner.poll(cx))
                    .map(|response| response.map(axum::body::Body::new));
                drop(permit.take());
                if let Ok(response) = &output {
                    note_too_large(&limit.bot, response);
                }
                Poll::Ready(output)
            }
            // Polled again after it completed (a contract violation): the same answer again,
            // not counted twice, rather than a future that never wakes.
            LimitedResponseProj::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(too_many_in_progress)))
            }
        }
    }
}

/// The request time-out as a tower layer: 408 (empty body) when the request is not answered
/// within the time-out of its first poll. Unlike `tower_http`'s `TimeoutLayer`, it arms its timer
/// only when that first poll leaves the request pending: most webhook requests, their body
/// already read with their head, are answered in that poll, and pay no timer.
#[derive(Clone, Copy)]
struct RequestTimeoutLayer(std::time::Duration);

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            timeout: self.0,
        }
    }
}

/// A service under [`RequestTimeoutLayer`].
#[derive(Clone)]
struct RequestTimeout<S> {
    inner: S,
    timeout: std::time::Duration,
}

impl<S, R, B> Service<R> for RequestTimeout<S>
where
    S: Service<R, Response = http::Response<B>>,
    B: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TimedResponse<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        TimedResponse {
            inner: self.inner.call(request),
            timeout: self.timeout,
            sleep: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a [`RequestTimeout`] service: the inner one's, or 408 once the timer,
    /// armed at the first poll that left the inner one pending, fires.
    struct TimedResponse<F> {
        #[pin]
        inner: F,
        timeout: std::time::Duration,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

impl<F, B, E> Future for TimedResponse<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: Default,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            return Poll::Ready(output);
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.timeout)));
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => {
                std::task::ready!(sleep.poll(cx));
                let mut response = http::Response::new(B::default());
                *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
                Poll::Ready(Ok(response))
            }
            None => Poll::Pending,
        }
    }
}

/// A listener that keeps at most `max` connections open; a connection beyond them is answered
/// 503 (when the socket takes it at once) and closed, never queued.
struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    max: usize,
    idle_timeout: std::time::Duration,
    refused: Counter<u64>,
    log: Arc<RateLimitedLog>,
}

/// What a connection over the limit is told before it is closed.
const OVER_LIMIT_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
content-length: 0\r\nconnection: close\r\n\r\n";

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        LimitedStream {
                            stream,
                            _permit: permit,
                            idle_timeout: self.idle_timeout,
                            last_active: tokio::time::Instant::now(),
                            idle: Box::pin(tokio::time::sleep(self.idle_timeout)),
                        },
                        addr,
                    );
                }
                Err(_) => {
                    // Counted before the answer: whoever sees the socket closed sees it counted.
                    self.refused.add(1, &[KeyValue::new("reason", "limit")]);
                    // Never wait on this socket: the accept loop serves everyone.
                    let _ = stream.try_write(OVER_LIMIT_RESPONSE);
                    drop(stream);
                    if let Some(suppressed) = self.log.check() {
                        tracing::warn!(
                            max_connections = self.max,
                            suppressed,
                            "connection refused: too many open (one line per {:?}; \
                             bot.server.connections.refused counts each)",
                            self.log.interval()
                        );
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection holding its place under the connection limit until it closes.
/// A connection holding one of the listener's permits. It is closed after `idle_timeout` without
/// a byte read or written, so that sockets that connect and then say nothing cannot hold every
/// permit for ever (hyper, as axum serves it, has no header-read or keep-alive time-out).
struct LimitedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle_timeout: std::time::Duration,
    /// The last byte read or written. Kept apart from the timer so that the hot path only reads
    /// the clock; the timer moves when it fires early.
    last_active: tokio::time::Instant,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl LimitedStream {
    fn active(&mut self) {
        self.last_active = tokio::time::Instant::now();
    }

    /// An error once the connection has been idle for too long; registers for the deadline.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.idle.as_mut().poll(cx).is_ready() {
            let deadline = self.last_active + self.idle_timeout;
            if deadline <= tokio::time::Instant::now() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                )));
            }
            self.idle.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => self.check_idle(cx),
            other => other,
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
        {
            self.active();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
        {
            self.active();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

async fn readyz(State(bot): State<Bot>) -> Response {
    if bot.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        // Names the components that are stuck (a Discord shard whose queue refuses events).
        let components: String = (bot.ingress().readiness().not_ready().iter())
            .map(|(component, reason)| format!("\n{component}: {reason}"))
            .collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready{components}"),
        )
            .into_response()
    }
}

async fn metrics(State(bot): State<Bot>) -> Response {
    #[cfg(feature = "prometheus")]
    {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            bot.telemetry().render_prometheus(),
        )
            .into_response()
    }
    #[cfg(not(feature = "prometheus"))]
    {
        let _ = bot;
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "the prometheus feature is off",
        )
            .into_response()
    }
}

/// The span of one request: its method and route, never its query, which can carry secrets
/// (Messenger's subscription handshake sends `hub.verify_token` in it). The route is the
/// template it matched (`/hooks/{token}`, not the token itself); the path only when none did.
fn request_span(request: &http::Request<axum::body::Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| request.uri().path(), |matched| matched.as_str());
    tracing::debug_span!(
        "request",
        method = %request.method(),
        route = %route,
        version = ?request.version(),
    )
}

/// Completes on SIGTERM or ctrl-c.
async fn termination_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Logs a failed request: an error, except a 503 (a full queue or a stopping bot answers it by
/// design, with `Retry-After`, and counts it in `bot.webhook.rejected`), logged at debug so that
/// an overloaded bot does not spend its time logging each refusal.
fn on_failure(
    class: ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(?latency, "request refused with 503");
        }
        class => tracing::error!(classification = %class, ?latency, "request failed"),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use super::*;

    /// A request answered at its first poll is answered, no timer armed; one still pending is
    /// answered 408 once it has been pending for the time-out, and not before.
    #[tokio::test(start_paused = true)]
    async fn the_request_timeout_answers_408_only_to_requests_pending_that_long() {
        let timeout = Duration::from_secs(5);
        let ready = RequestTimeoutLayer(timeout).layer(tower::service_fn(|(): ()| async {
            Ok::<_, Infallible>(http::Response::new(String::from("done")))
        }));
        let mut first = std::pin::pin!(ready.clone().call(()));
        let waker = std::task::Waker::noop();
        match first.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(Ok(response)) => assert_eq!(response.status(), StatusCode::OK),
            _ => panic!("a request ready at its first poll not answered at once"),
        }
        assert!(first.sleep.is_none(), "a timer armed for a ready request");

        let gate = Arc::new(tokio::sync::Notify::new());
        let waiting = gate.clone();
        let slow = RequestTimeoutLayer(timeout).layer(tower::service_fn(move |(): ()| {
            let waiting = waiting.clone();
            async move {
                waiting.notified().await;
                Ok::<_, Infallible>(http::Response::new(String::from("late")))
            }
        }));
        let started = tokio::time::Instant::now();
        let response = slow.clone().call(()).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(response.body().is_empty());
        assert_eq!(started.elapsed(), timeout, "answered 408 early or late");

        // Answered in time: the inner answer, not 408.
        let mut call = std::pin::pin!(slow.clone().call(()));
        assert!(
            futures::poll!(call.as_mut()).is_pending(),
            "the slow request answered before its gate opened"
        );
        tokio::time::advance(timeout - Duration::from_millis(1)).await;
        gate.notify_one();
        let response = call.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "late");
    }
}
