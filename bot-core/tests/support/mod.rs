//! Helpers shared by bot-core's integration tests: a JSON webhook adapter for [`Platform::TEST`],
//! event builders, a gate handlers can wait at, and two ways to send requests (in process with
//! `oneshot`, or over real TCP with a minimal HTTP/1.1 client).
//!
//! Each test crate uses a different subset, hence `dead_code` is allowed.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bot_core::adapter::rejection;
use bot_core::{
    Adapter, Bot, BoxError, Context, Error, Event, Handler, Ingress, Limits, Platform,
    ShutdownReport,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

/// Where [`JsonAdapter`] listens.
pub(crate) const WEBHOOK_PATH: &str = "/test/webhook";

/// A webhook adapter for [`Platform::TEST`]: `POST /test/webhook` takes a JSON array of core
/// [`Event`]s, submits them in one batch and answers `{"accepted":n,"duplicates":m}`.
///
/// Malformed JSON is a 400 whose body never echoes the request; a refused batch gets
/// [`rejection`] (503 with `Retry-After` when full or draining).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JsonAdapter;

impl Adapter for JsonAdapter {
    fn platform(&self) -> Platform {
        Platform::TEST
    }

    fn routes(&self, ingress: Ingress) -> Option<axum::Router> {
        Some(
            axum::Router::new()
                .route(WEBHOOK_PATH, post(webhook))
                .with_state(ingress),
        )
    }
}

async fn webhook(State(ingress): State<Ingress>, body: Bytes) -> Response {
    let Ok(events) = serde_json::from_slice::<Vec<Event>>(&body) else {
        ingress
            .telemetry()
            .webhook_rejected(&Platform::TEST, "malformed_json");
        return (StatusCode::BAD_REQUEST, "malformed json").into_response();
    };
    match ingress.submit(events).await {
        Ok(report) => Json(serde_json::json!({
            "accepted": report.accepted,
            "duplicates": report.duplicates,
        }))
        .into_response(),
        Err(e) => rejection(&e),
    }
}

/// A bot with a [`JsonAdapter`], `limits` and `handler`.
///
/// # Panics
///
/// When the limits do not validate.
pub(crate) fn test_bot(limits: Limits, handler: impl Handler) -> Bot {
    Bot::builder()
        .adapter(JsonAdapter)
        .limits(limits)
        .handler(handler)
        .build()
        .expect("test bot builds")
}

/// A text event of [`Platform::TEST`] with the given id, in `conversation`.
pub(crate) fn text_event(conversation: &str, id: &str) -> Event {
    Event::text(Platform::TEST, conversation, format!("text of {id}")).with_id(id)
}

/// `count` text events with ids `{prefix}-{i}`, each in a conversation of its own, so that none
/// waits for another under per-conversation ordering.
pub(crate) fn numbered_events(prefix: &str, count: usize) -> Vec<Event> {
    (0..count)
        .map(|i| text_event(&format!("{prefix}-conv-{i}"), &format!("{prefix}-{i}")))
        .collect()
}

/// The JSON body [`JsonAdapter`] expects for `events`.
pub(crate) fn webhook_body(events: &[Event]) -> Vec<u8> {
    serde_json::to_vec(events).expect("events serialise")
}

/// `POST /test/webhook` with `events` as its body.
pub(crate) fn webhook_request(events: &[Event]) -> Request<Body> {
    raw_webhook_request(webhook_body(events))
}

/// `POST /test/webhook` with any body, declaring its length as real clients do.
pub(crate) fn raw_webhook_request(body: impl Into<Bytes>) -> Request<Body> {
    let body = body.into();
    Request::post(WEBHOOK_PATH)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .expect("valid request")
}

/// `GET path`.
pub(crate) fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .body(Body::empty())
        .expect("valid request")
}

/// A response with its body read.
#[derive(Debug)]
pub(crate) struct TestResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl TestResponse {
    /// The body as UTF-8 text.
    ///
    /// # Panics
    ///
    /// When the body is not UTF-8.
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// When the body is not JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not json ({e}): {:?}", self.body))
    }

    /// A header as text.
    pub(crate) fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Retry-After` header in seconds.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        self.header(header::RETRY_AFTER)?.parse().ok()
    }
}

/// Sends `request` to `router` in process and reads the whole response.
pub(crate) async fn send(router: &axum::Router, request: Request<Body>) -> TestResponse {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    TestResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Sends `request` to everything [`Bot::serve`] would serve, in process.
pub(crate) async fn send_to(bot: &Bot, request: Request<Body>) -> TestResponse {
    send(&bot.router(), request).await
}

/// Sends one HTTP/1.1 request over a fresh TCP connection (`Connection: close`) and reads the
/// response to the end.
///
/// # Errors
///
/// When the connection fails; a response that cannot be parsed panics.
pub(crate) async fn http_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &[u8],
) -> std::io::Result<TestResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(parse_response(&raw))
}

/// `GET path` over TCP.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<TestResponse> {
    http_request(addr, Method::GET, path, &[]).await
}

/// `POST /test/webhook` with `events` over TCP.
pub(crate) async fn http_post_events(
    addr: SocketAddr,
    events: &[Event],
) -> std::io::Result<TestResponse> {
    http_request(addr, Method::POST, WEBHOOK_PATH, &webhook_body(events)).await
}

fn parse_response(raw: &[u8]) -> TestResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("utf-8 response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad header line {line:?}"));
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("header name"),
            HeaderValue::from_str(value.trim()).expect("header value"),
        );
    }
    let rest = &raw[split + 4..];
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        decode_chunked(rest)
    } else {
        rest.to_vec()
    };
    TestResponse {
        status: StatusCode::from_u16(code).expect("status code"),
        headers,
        body: Bytes::from(body),
    }
}

fn decode_chunked(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("chunk size");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A bot served over real TCP on `127.0.0.1:0` by [`Bot::serve_with_shutdown`].
#[derive(Debug)]
pub(crate) struct Served {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<ShutdownReport, Error>>,
}

impl Served {
    /// Binds `127.0.0.1:0` and serves `bot` in a task of its own.
    ///
    /// # Panics
    ///
    /// When the address cannot be bound.
    pub(crate) async fn start(bot: Bot) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let signal = async move {
            // A dropped sender also means stop.
            let _ = stopped.await;
        };
        #[allow(clippy::disallowed_methods)] // the server under test, one long-lived task
        let task = tokio::spawn(bot.serve_with_shutdown(listener, signal));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Fires the shutdown signal, as SIGTERM would.
    pub(crate) fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the server to finish its graceful shutdown (after [`Served::signal_shutdown`] or
    /// [`Bot::request_shutdown`]) and returns its report.
    ///
    /// # Panics
    ///
    /// When the server task failed.
    pub(crate) async fn finished(self) -> Result<ShutdownReport, Error> {
        let Self { task, stop, .. } = self;
        // Held until the end: dropping the sender would fire the signal.
        let result = task.await.expect("server task");
        drop(stop);
        result
    }
}

/// A gate handlers wait at until the test lets them through: [`Gate::release`] lets `n` pass,
/// [`Gate::open`] lets everyone pass from now on. Cloning shares the gate.
#[derive(Debug, Clone)]
pub(crate) struct Gate(Arc<Semaphore>);

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate.
    pub(crate) fn new() -> Self {
        Self(Arc::new(Semaphore::new(0)))
    }

    /// Waits until the gate lets this caller through.
    pub(crate) async fn pass(&self) {
        // A closed semaphore is an open gate: acquire fails at once for everyone.
        if let Ok(permit) = self.0.acquire().await {
            permit.forget();
        }
    }

    /// Lets `n` waiting (or future) callers through.
    pub(crate) fn release(&self, n: usize) {
        self.0.add_permits(n);
    }

    /// Lets every caller through, now and later.
    pub(crate) fn open(&self) {
        self.0.close();
    }
}

/// A handler that reports each event id on `started`, then waits at `gate` and succeeds.
pub(crate) fn gated_handler(gate: Gate, started: mpsc::Sender<String>) -> impl Handler {
    move |_cx: Context, event: Event| {
        let gate = gate.clone();
        let started = started.clone();
        async move {
            let _ = started.send(event.id.to_string()).await;
            gate.pass().await;
            Ok::<(), BoxError>(())
        }
    }
}

/// The next message of `rx`, failing the test instead of hanging if none comes.
///
/// # Panics
///
/// When nothing arrives within 10 s (of test time) or the channel is closed.
pub(crate) async fn next<T>(rx: &mut mpsc::Receiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("timed out waiting for the next message")
        .expect("channel closed")
}

pub(crate) mod bot_contract;
#[cfg(feature = "nats")]
pub(crate) mod nats;
#[cfg(feature = "nats")]
pub(crate) mod nats_server;
#[cfg(feature = "postgres")]
pub(crate) mod pg;
pub(crate) mod queue;
pub(crate) mod ratelimit;
#[cfg(feature = "redis")]
pub(crate) mod redis_server;
pub(crate) mod supervisor;
