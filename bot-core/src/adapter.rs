//! Adapters plug platforms into the runtime; [`Ingress`] is how they hand events over.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tokio_util::sync::CancellationToken;

use crate::context::TypeMap;
use crate::error::{Error, ErrorKind};
use crate::event::{Event, Platform};
use crate::outbound::Outbound;
use crate::queue::{PushReport, Queue};
use crate::readiness::Readiness;
use crate::runtime::Progress;
use crate::telemetry::{DropReason, RateLimitedLog, Telemetry};

/// A platform integration: webhook routes, long-running tasks (gateways, stdin), an outbound client.
///
/// Every method but [`Adapter::platform`] has a default that does nothing, so an adapter implements
/// only what its platform needs.
#[async_trait]
pub trait Adapter: Send + Sync + fmt::Debug + 'static {
    /// The platform this adapter serves.
    fn platform(&self) -> Platform;

    /// Called once by [`crate::BotBuilder::build`], after the bot's telemetry and ingress exist
    /// and before any other method: the adapter takes what it needs (its clients record their
    /// calls in the bot's telemetry from then on).
    ///
    /// # Errors
    ///
    /// The bot is not built, with this error.
    fn attach(&mut self, _bot: &Attach) -> Result<(), Error> {
        Ok(())
    }

    /// The client that sends this platform's replies.
    fn outbound(&self) -> Option<Arc<dyn Outbound>> {
        None
    }

    /// Typed clients that handlers can reach with [`crate::Context::client`].
    fn register_clients(&self, _clients: &mut Clients) {}

    /// The adapter's HTTP routes (webhooks), which submit to `ingress`.
    fn routes(&self, _ingress: Ingress) -> Option<axum::Router> {
        None
    }

    /// A long-running task (a gateway connection, a stdin reader), started with the bot and asked
    /// to stop through `shutdown`.
    ///
    /// # Errors
    ///
    /// An error is logged; it does not stop the bot.
    async fn run(&self, _ingress: Ingress, _shutdown: CancellationToken) -> Result<(), Error> {
        Ok(())
    }
}

/// What a bot hands each adapter once, when it is built ([`Adapter::attach`]).
#[derive(Debug, Clone)]
pub struct Attach {
    pub(crate) telemetry: Telemetry,
    pub(crate) ingress: Ingress,
}

impl Attach {
    /// The bot's telemetry, for the adapter's clients and metrics.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The bot's ingress, which the adapter's webhooks and gateways submit events to.
    pub fn ingress(&self) -> &Ingress {
        &self.ingress
    }
}

/// Typed adapter clients, by type.
#[derive(Default)]
pub struct Clients(pub(crate) TypeMap);

impl Clients {
    /// Registers `client`; handlers get it with `cx.client::<C>()`.
    pub fn insert<C: Any + Send + Sync>(&mut self, client: Arc<C>) {
        self.0.insert_arc(client);
    }
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients").finish_non_exhaustive()
    }
}

/// A webhook's body in an allocation of its own size, for the events parsed from it to keep
/// slices of.
///
/// A body the HTTP server hands over is a slice of the connection's read buffer, 8 KiB or more
/// whatever the body's size; an event that keeps a slice of it (its raw payload, a long id)
/// keeps that whole buffer for as long as the event waits or runs. One copy of the body per
/// request, made once its signature is checked, lets the buffer go back to the connection.
///
/// # Examples
///
/// ```
/// let read_buffer = bytes::Bytes::from(vec![0u8; 16 * 1024]);
/// let body = read_buffer.slice(100..2_100);
/// let own = bot_core::body_for_events(&body);
/// assert_eq!(own, body);
/// ```
pub fn body_for_events(body: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(body)
}

/// A webhook request as its handler reads it: the headers and the whole body, under the body
/// limit ([`axum::extract::DefaultBodyLimit`]; a larger body is refused with 413, as by the
/// `Bytes` extractor).
///
/// The headers are moved out of the request: axum's `HeaderMap` extractor clones them (an
/// allocation or two and a reference count per header, then as many frees), which every
/// webhook request would pay for a signature header read once.
///
/// # Examples
///
/// ```
/// use axum::response::IntoResponse;
/// use bot_core::adapter::WebhookRequest;
///
/// async fn receive(request: WebhookRequest) -> impl IntoResponse {
///     let signed = request.headers.contains_key("x-signature");
///     format!("{signed} {}", request.body.len())
/// }
/// let app: axum::Router = axum::Router::new().route("/hook", axum::routing::post(receive));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct WebhookRequest {
    /// The request's headers.
    pub headers: http::HeaderMap,
    /// The request's body, whole.
    pub body: bytes::Bytes,
}

impl WebhookRequest {
    /// A request of these headers and body: for an adapter's own unit tests of its handler,
    /// which the extractor builds from the HTTP request otherwise.
    pub fn new(headers: http::HeaderMap, body: bytes::Bytes) -> Self {
        Self { headers, body }
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for WebhookRequest {
    type Rejection = axum::extract::rejection::BytesRejection;

    async fn from_request(
        mut request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let headers = std::mem::take(request.headers_mut());
        // Boxed apart: inline, it made the handler's future (which axum boxes per request) too
        // large for glibc's per-thread cache, so each took an arena's lock; both parts fit it.
        let body = Box::pin(bytes::Bytes::from_request(request, state)).await?;
        Ok(Self { headers, body })
    }
}

/// How adapters submit events: deduplication, overflow policy and counting happen behind it.
///
/// Cloning is cheap.
#[derive(Clone)]
pub struct Ingress {
    inner: Arc<IngressInner>,
}

struct IngressInner {
    queue: Arc<dyn Queue>,
    telemetry: Telemetry,
    accepting: AtomicBool,
    progress: Arc<Progress>,
    readiness: Readiness,
    refused_log: RateLimitedLog,
    queue_error_log: RateLimitedLog,
}

impl fmt::Debug for Ingress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ingress")
            .field("accepting", &self.is_accepting())
            .finish_non_exhaustive()
    }
}

/// Seconds a platform is told to wait when the bot is shutting down.
const DRAINING_RETRY_AFTER_SECS: u64 = 5;
/// Seconds a platform is told to wait when the queue failed without saying when to retry.
const QUEUE_ERROR_RETRY_AFTER_SECS: u64 = 5;
/// At most one line per interval for refused requests and failed pushes; metrics count them all.
pub(crate) const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The response header saying how many events of the request a full queue shed
/// ([`crate::Overflow::DropNewest`]) although the answer is 200.
pub const EVENTS_DROPPED_HEADER: &str = "x-bot-events-dropped";
/// The response header saying how many older, already acknowledged events a full queue evicted
/// to take this request's ([`crate::Overflow::DropOldest`]).
pub const EVENTS_EVICTED_HEADER: &str = "x-bot-events-evicted";

impl Ingress {
    pub(crate) fn new(
        queue: Arc<dyn Queue>,
        telemetry: Telemetry,
        progress: Arc<Progress>,
    ) -> Self {
        Self {
            inner: Arc::new(IngressInner {
                queue,
                telemetry,
                accepting: AtomicBool::new(true),
                progress,
                readiness: Readiness::default(),
                refused_log: RateLimitedLog::new(REFUSAL_LOG_INTERVAL),
                queue_error_log: RateLimitedLog::new(REFUSAL_LOG_INTERVAL),
            }),
        }
    }

    /// Submits the events of one platform request, all or nothing under [`crate::Overflow::Reject`].
    ///
    /// Answer the platform with 2xx only after this returns `Ok`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::QueueFull`] with a retry hint when the buffer refuses the batch;
    /// [`ErrorKind::QueueClosed`] while the bot shuts down. [`rejection`] turns both into the
    /// right HTTP answer.
    pub async fn submit(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        let platform = events.first().map(|e| e.platform.clone());
        let Some(platform) = platform else {
            return Ok(PushReport::default());
        };
        let metrics = self.inner.telemetry.metrics();
        metrics.received(&platform, events.len());
        if !self.is_accepting() {
            metrics.rejected(&platform, "draining");
            return Err(draining());
        }
        // Counted as accepted before the push, so that `Bot::idle` never sees these events
        // finished before they were counted; corrected once the push says what it took, and
        // undone by the guard if the push fails or its future is dropped.
        let pending = self.inner.progress.count_ahead(events.len());
        match self.inner.queue.push_batch(events).await {
            Ok(report) => {
                pending.settle(report.accepted);
                self.inner.progress.evicted(report.evicted_oldest);
                metrics.dropped(DropReason::Duplicate, report.duplicates);
                metrics.dropped(DropReason::OverflowNewest, report.dropped_newest);
                metrics.dropped(DropReason::OverflowOldest, report.evicted_oldest);
                if report.duplicates > 0 {
                    tracing::debug!(count = report.duplicates, %platform, "skipped redelivered events");
                }
                Ok(report)
            }
            Err(e) => {
                let reason = match e.kind() {
                    ErrorKind::QueueFull => "queue_full",
                    ErrorKind::QueueClosed => "draining",
                    _ => "queue_error",
                };
                metrics.rejected(&platform, reason);
                // A full queue is load, answered by design; any other failure is a fault.
                if reason == "queue_error"
                    && let Some(suppressed) = self.inner.queue_error_log.check()
                {
                    tracing::error!(
                        error = %e,
                        %platform,
                        suppressed,
                        "cannot push events; answered 503 so that the platform delivers again"
                    );
                }
                Err(e)
            }
        }
    }

    /// Submits the events of one webhook request and answers the platform: 200 once all are
    /// accepted (or were duplicates), otherwise what [`rejection`] says (503 with `Retry-After`).
    ///
    /// Under [`crate::Overflow::DropNewest`] and [`crate::Overflow::DropOldest`] a full queue
    /// sheds events and the answer is still 200 (the platform must not redeliver them, or the
    /// load would not go down); [`accepted`] says so in the response's headers.
    pub async fn submit_and_answer(&self, events: Vec<Event>) -> Response {
        match self.submit(events).await {
            Ok(report) => accepted(&report),
            Err(e) => rejection(&e),
        }
    }

    /// Refuses a webhook request before its events reach the queue (a bad signature, a malformed
    /// body), counted as `bot.webhook.rejected{platform, reason}`.
    pub fn refuse(
        &self,
        platform: &Platform,
        status: StatusCode,
        reason: &'static str,
    ) -> Response {
        self.note_refused(platform, status, reason);
        (status, reason).into_response()
    }

    /// Refuses a webhook body that is not the platform's JSON with 400 (`malformed_json`), as
    /// [`Ingress::refuse`]; the debug line says where and what kind of error, never the body's
    /// content (serde_json's message may quote its values).
    pub fn refuse_malformed(
        &self,
        platform: &Platform,
        error: &serde_json::Error,
        body_len: usize,
    ) -> Response {
        tracing::debug!(
            %platform,
            category = ?error.classify(),
            line = error.line(),
            column = error.column(),
            bytes = body_len,
            "webhook body is not the platform's JSON"
        );
        self.refuse(platform, StatusCode::BAD_REQUEST, "malformed_json")
    }

    /// Counts a refused request and logs it, at most once per interval.
    pub(crate) fn note_refused(
        &self,
        platform: &Platform,
        status: StatusCode,
        reason: &'static str,
    ) {
        self.inner.telemetry.webhook_rejected(platform, reason);
        // Anyone can send these: one line per interval, never a flood.
        if let Some(suppressed) = self.inner.refused_log.check() {
            tracing::warn!(
                %platform,
                reason,
                status = status.as_u16(),
                suppressed,
                "webhook request refused (one line per {:?}; bot.webhook.rejected counts each)",
                REFUSAL_LOG_INTERVAL
            );
        }
    }

    /// Counts `count` events of one request that the adapter acknowledges but does not deliver,
    /// by its configuration (Messenger echoes, LINE standby events, messages of other bots), as
    /// `bot.events.skipped{platform, reason}`.
    pub fn skipped(&self, platform: &Platform, reason: &'static str, count: usize) {
        self.inner
            .telemetry
            .metrics()
            .skipped(platform, reason, count);
    }

    /// Whether the bot accepts events (false once shutdown began).
    pub fn is_accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::Acquire)
    }

    pub(crate) fn stop_accepting(&self) {
        self.inner.accepting.store(false, Ordering::Release);
    }

    /// The bot's readiness: adapters register their components here and report when one cannot
    /// take events (`/readyz` answers 503 naming it).
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// The bot's telemetry, for adapter metrics.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }
}

fn draining() -> Error {
    Error::new(ErrorKind::QueueClosed, "bot is shutting down")
        .with_retry_after(std::time::Duration::from_secs(DRAINING_RETRY_AFTER_SECS))
}

/// The HTTP answer to a successful [`Ingress::submit`]: 200 with an empty body (all LINE,
/// Messenger and the other platforms read is the status; a body and its content type were bytes
/// to write and for the platform to read on every webhook), with [`EVENTS_DROPPED_HEADER`] and
/// [`EVENTS_EVICTED_HEADER`] when the overflow policy shed events to make room.
pub fn accepted(report: &PushReport) -> Response {
    let mut res = StatusCode::OK.into_response();
    for (name, count) in [
        (EVENTS_DROPPED_HEADER, report.dropped_newest),
        (EVENTS_EVICTED_HEADER, report.evicted_oldest),
    ] {
        if count > 0 {
            res.headers_mut()
                .insert(name, HeaderValue::from(count as u64));
        }
    }
    res
}

/// The HTTP answer to a failed [`Ingress::submit`]: 503 with `Retry-After`, so that the platform
/// delivers the events again later, whatever failed: a full queue and a draining bot say when
/// (the error's retry hint), any other queue failure (a statement the database refused, a
/// time-out) waits 5 seconds. Nothing of the request was acknowledged.
pub fn rejection(error: &Error) -> Response {
    let secs = match (error.kind(), error.retry_after()) {
        (_, Some(d)) => d.as_secs() + u64::from(d.subsec_nanos() > 0),
        (ErrorKind::QueueFull | ErrorKind::QueueClosed, None) => 1,
        (_, None) => QUEUE_ERROR_RETRY_AFTER_SECS,
    }
    .max(1);
    let body = match error.kind() {
        ErrorKind::QueueFull | ErrorKind::QueueClosed => error.to_string(),
        // The details are in the log; the platform needs none of them.
        _ => "cannot accept events now".to_owned(),
    };
    let mut res = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_for_events_holds_no_part_of_the_read_buffer() {
        let read_buffer = bytes::Bytes::from(vec![7u8; 16 * 1024]);
        let body = read_buffer.slice(100..2_100);
        let own = body_for_events(&body);
        assert_eq!(own, body);
        let buffer = read_buffer.as_ptr_range();
        assert!(
            !buffer.contains(&own.as_ptr()),
            "the body must be a copy, not a slice of the connection's buffer"
        );
        drop(read_buffer);
        drop(body);
        assert_eq!(own.len(), 2_000);
    }

    /// A webhook handler sees the request's headers and whole body; a body over the limit that
    /// did not say its length up front (so no layer refused it early) is refused with 413.
    #[tokio::test]
    async fn a_webhook_request_has_the_headers_and_the_body_within_the_limit() {
        use axum::body::Body;
        use tower::ServiceExt as _;

        async fn receive(request: WebhookRequest) -> String {
            let signature = request
                .headers
                .get("x-signature")
                .map(|v| v.to_str().unwrap());
            format!("{signature:?} {}", String::from_utf8_lossy(&request.body))
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .layer(axum::extract::DefaultBodyLimit::max(16));
        let streamed = |parts: &'static [&'static str]| {
            let chunks = parts.iter().map(|p| Ok::<_, std::io::Error>(*p));
            Body::from_stream(futures::stream::iter(chunks))
        };
        let post = |body: Body| {
            http::Request::post("/hook")
                .header("x-signature", "sha256=00")
                .body(body)
                .unwrap()
        };
        let response = app
            .clone()
            .oneshot(post(streamed(&["hello, ", "bot"])))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&text[..], br#"Some("sha256=00") hello, bot"#);
        let response = app
            .oneshot(post(streamed(&["0123456789", "0123456789"])))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
