//! The server under unauthenticated load and queue faults: status codes of failed and shedding
//! pushes, the connection and request limits, rate-limited refusal logs with exact counts, and
//! the operational routes on their own address.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use bot_core::adapter::{EVENTS_DROPPED_HEADER, EVENTS_EVICTED_HEADER};
use bot_core::queue::{Completed, Dead, DeadLetter, Delivery, Lease, Nack, PushReport};
use bot_core::{
    Adapter, Bot, BoxError, Context, Error, ErrorKind, Event, Ingress, Limits, MemoryQueue,
    Overflow, Platform, Queue,
};
use http::{Method, Request, StatusCode};
use support::{http_get, numbered_events, send, text_event, webhook_body};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(10);

/// An adapter whose webhook answers with [`Ingress::submit_and_answer`], a route that always
/// refuses as a bad signature would, and a route that waits at a gate.
#[derive(Debug, Default, Clone)]
struct Routes {
    gate: Arc<Gate>,
}

#[derive(Debug, Default)]
struct Gate {
    entered: Notify,
    open: Notify,
}

impl Adapter for Routes {
    fn platform(&self) -> Platform {
        Platform::TEST
    }

    fn routes(&self, ingress: Ingress) -> Option<axum::Router> {
        let gate = self.gate.clone();
        Some(
            axum::Router::new()
                .route("/t/events", post(events))
                .route("/t/signed", post(bad_signature))
                .route(
                    "/t/hooks/{token}",
                    axum::routing::get(|| async {
                        tracing::info!("inside");
                        "ok"
                    }),
                )
                .with_state(ingress)
                .route(
                    "/t/slow",
                    post(move || async move {
                        gate.entered.notify_one();
                        gate.open.notified().await;
                        "done"
                    }),
                ),
        )
    }
}

async fn events(State(ingress): State<Ingress>, body: Bytes) -> Response {
    let events: Vec<Event> = serde_json::from_slice(&body).expect("test sends valid events");
    ingress.submit_and_answer(events).await
}

async fn bad_signature(State(ingress): State<Ingress>) -> Response {
    ingress.refuse(&Platform::TEST, StatusCode::UNAUTHORIZED, "signature")
}

async fn ignore(_: Context, _: Event) -> Result<(), BoxError> {
    Ok(())
}

fn bot_with(
    configure: impl FnOnce(bot_core::BotBuilder) -> bot_core::BotBuilder,
) -> (Bot, Arc<Gate>) {
    let routes = Routes::default();
    let gate = routes.gate.clone();
    let bot = configure(Bot::builder().adapter(routes).handler(ignore))
        .build()
        .expect("bot builds");
    (bot, gate)
}

fn post_to(path: &str, body: impl Into<Bytes>) -> Request<Body> {
    let body = body.into();
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap()
}

/// The value of the first sample of `name` whose labels contain every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && labels.iter().all(|w| l.contains(w)))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// A queue that takes nothing: every push fails with `kind`.
#[derive(Debug)]
struct FailingQueue {
    kind: ErrorKind,
    inner: MemoryQueue,
}

#[async_trait]
impl Queue for FailingQueue {
    async fn push_batch(&self, _events: Vec<Event>) -> Result<PushReport, Error> {
        Err(Error::new(
            self.kind,
            "insert refused: relation does not exist",
        ))
    }
    async fn pull(&self, max: usize) -> Result<Vec<Delivery>, Error> {
        self.inner.pull(max).await
    }
    async fn ack(&self, leases: &[Lease]) -> Result<Completed, Error> {
        self.inner.ack(leases).await
    }
    async fn nack(&self, nacks: Vec<Nack>) -> Result<Completed, Error> {
        self.inner.nack(nacks).await
    }
    async fn dead(&self, dead: Vec<Dead>) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead(dead).await
    }
    async fn release(&self, deliveries: Vec<Delivery>) -> Result<Completed, Error> {
        self.inner.release(deliveries).await
    }
    async fn extend_lease(&self, leases: &[Lease], by: Duration) -> Result<Completed, Error> {
        self.inner.extend_lease(leases, by).await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead_letters(limit).await
    }
    async fn redrive(&self, max: usize) -> Result<usize, Error> {
        self.inner.redrive(max).await
    }
    fn close(&self) {
        self.inner.close();
    }
    fn depth(&self) -> u64 {
        self.inner.depth()
    }
}

#[tokio::test]
async fn any_queue_failure_answers_503_with_retry_after() {
    let _logs = LOG_CAPTURE.read().await;
    for kind in [ErrorKind::Queue, ErrorKind::Timeout, ErrorKind::Other] {
        let queue = Arc::new(FailingQueue {
            kind,
            inner: MemoryQueue::new(&Limits::default()),
        });
        let (bot, _) = bot_with(|b| b.queue(queue));
        let events = [text_event("c", "e1")];
        let res = send(&bot.router(), post_to("/t/events", webhook_body(&events))).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{kind:?}");
        assert_eq!(res.retry_after(), Some(5), "{kind:?}: Retry-After");
        assert!(
            !res.text().contains("relation"),
            "the platform is not told the database's message: {}",
            res.text()
        );
    }
}

#[tokio::test]
async fn shed_events_are_answered_200_with_headers_counting_them() {
    let _logs = LOG_CAPTURE.read().await;
    let newest = Limits {
        queue_capacity: 2,
        overflow: Overflow::DropNewest,
        ..Limits::default()
    };
    // Not started: nothing leaves the queue.
    let (bot, _) = bot_with(|b| b.limits(newest));
    let res = send(
        &bot.router(),
        post_to("/t/events", webhook_body(&numbered_events("n", 5))),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header(EVENTS_DROPPED_HEADER), Some("3"));
    assert_eq!(res.header(EVENTS_EVICTED_HEADER), None);

    let oldest = Limits {
        queue_capacity: 2,
        overflow: Overflow::DropOldest,
        ..Limits::default()
    };
    let (bot, _) = bot_with(|b| b.limits(oldest));
    let first = send(
        &bot.router(),
        post_to("/t/events", webhook_body(&numbered_events("a", 2))),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK);
    // Accepted: 200 with nothing to read, as the platforms need (no body, no content type).
    assert!(first.body.is_empty(), "{:?}", first.body);
    assert_eq!(first.header(http::header::CONTENT_TYPE), None);
    assert_eq!(first.header(EVENTS_DROPPED_HEADER), None);
    let second = send(
        &bot.router(),
        post_to("/t/events", webhook_body(&numbered_events("b", 1))),
    )
    .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header(EVENTS_EVICTED_HEADER), Some("1"));
}

/// Lines written by the capturing subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The tests that capture logs run alone (the others take this lock to read): tracing caches, per
/// callsite, what the subscribers alive when it was first hit wanted, so a span first seen by a
/// test without a subscriber, or with one at another level, would stay off in theirs.
static LOG_CAPTURE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[tokio::test]
async fn a_thousand_bad_signatures_make_one_log_line_and_an_exact_count() {
    let _logs = LOG_CAPTURE.write().await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    let (bot, _) = bot_with(|b| b.max_body_bytes(1024));
    let router = bot.router();
    for _ in 0..1000 {
        let res = send(&router, post_to("/t/signed", "{}")).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..10 {
        let res = send(&router, post_to("/t/events", vec![b' '; 4096])).await;
        assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
    let logs = captured.text();
    let refusals = logs.lines().filter(|l| l.contains("refused")).count();
    assert!(
        (1..=2).contains(&refusals),
        "1,010 refusals within the interval log one line, not {refusals}:\n{logs}"
    );
    let metrics = bot.telemetry().render_prometheus();
    assert_eq!(
        sample(
            &metrics,
            "bot_webhook_rejected",
            &["platform=\"test\"", "reason=\"signature\""]
        ),
        Some(1000.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "bot_webhook_rejected",
            &["platform=\"unknown\"", "reason=\"body_too_large\""]
        ),
        Some(10.0),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_refusal_log_lets_one_line_through_per_interval_and_counts_the_rest() {
    let _logs = LOG_CAPTURE.read().await;
    let log = bot_core::telemetry::RateLimitedLog::new(Duration::from_secs(10));
    assert_eq!(log.check(), Some(0));
    for _ in 0..99 {
        assert_eq!(log.check(), None);
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        log.check(),
        Some(99),
        "the next line says how many were held back"
    );
    assert_eq!(log.check(), None);
}

/// Starts `bot` on a local port; returns the address and a way to stop it.
async fn serve(bot: Bot) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, Bot) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = bot.clone();
    #[allow(clippy::disallowed_methods)] // the server under test, for the test's length
    tokio::spawn(async move {
        served
            .serve_with_shutdown(listener, async move {
                let _ = stopped.await;
            })
            .await
    });
    (addr, stop, bot)
}

/// A keep-alive connection that has been served once, so that it holds its place.
async fn served_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"ok") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("the server answers")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_and_counted() {
    let _logs = LOG_CAPTURE.read().await;
    let (bot, _) = bot_with(|b| b.max_connections(2));
    let (addr, stop, bot) = serve(bot).await;
    let first = served_connection(addr).await;
    let _second = served_connection(addr).await;

    // The third is answered 503 and closed at once, without waiting for its request.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, third.read_to_end(&mut answer))
        .await
        .expect("the excess connection is closed, not left waiting");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_err() || answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "refused: {read:?} {answer:?}"
    );
    let metrics = bot.telemetry().render_prometheus();
    assert_eq!(
        sample(&metrics, "bot_server_connections_refused", &[]),
        Some(1.0),
        "{metrics}"
    );

    // A closed connection gives its place back.
    drop(first);
    let until = Instant::now() + DEADLINE;
    loop {
        if let Ok(res) = http_get(addr, "/healthz").await
            && res.status == StatusCode::OK
        {
            break;
        }
        assert!(Instant::now() < until, "a place never came free");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
}

/// Sockets that connect and then say nothing must not hold every place for ever: each is closed
/// after the idle time-out and its place serves a real request.
#[tokio::test]
async fn silent_connections_are_closed_after_the_idle_timeout_and_free_their_places() {
    let _logs = LOG_CAPTURE.read().await;
    let idle = Duration::from_secs(1);
    let (bot, _) = bot_with(|b| b.max_connections(2).idle_timeout(idle));
    let (addr, stop, _bot) = serve(bot).await;
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let opened = Instant::now();
    for stream in &mut silent {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
            .await
            .expect("a silent connection is closed by the server");
        assert!(read.is_err() || rest.is_empty(), "closed without an answer");
    }
    assert!(opened.elapsed() >= idle, "closed before the idle time-out");
    // A kept-alive connection in use stays open past the time-out (1.5 s in all) while it talks.
    let mut talking = served_connection(addr).await;
    for _ in 0..6 {
        tokio::time::sleep(idle / 4).await;
        talking
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .expect("still open while it talks");
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(DEADLINE, talking.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(n > 0, "closed while in use");
    }
    stop.send(()).unwrap();
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_get_503_and_health_still_answers() {
    let _logs = LOG_CAPTURE.read().await;
    let (bot, gate) = bot_with(|b| b.max_concurrent_requests(1));
    let router = bot.router();
    let slow = send(&router, post_to("/t/slow", ""));
    let others = async {
        gate.entered.notified().await;
        let refused = send(
            &router,
            post_to("/t/events", webhook_body(&[text_event("c", "x")])),
        )
        .await;
        let health = send(&router, support::get("/healthz")).await;
        gate.open.notify_one();
        (refused, health)
    };
    let (slow, (refused, health)) = tokio::join!(slow, others);
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.retry_after(), Some(1));
    assert_eq!(
        health.status,
        StatusCode::OK,
        "health checks are not limited"
    );
    let metrics = bot.telemetry().render_prometheus();
    assert_eq!(
        sample(&metrics, "bot_server_requests_refused", &[]),
        Some(1.0)
    );
    // With the slow request done, the place is free again.
    let res = send(
        &router,
        post_to("/t/events", webhook_body(&[text_event("c", "y")])),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_move_to_the_ops_address_when_configured() {
    let _logs = LOG_CAPTURE.read().await;
    let (bot, _) = bot_with(|b| b.ops_addr("127.0.0.1:0".parse().unwrap()));
    // In process too: the webhook router has no operational routes.
    assert_eq!(
        send(&bot.router(), support::get("/metrics")).await.status,
        StatusCode::NOT_FOUND
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, ops_addr) = (listener.local_addr().unwrap(), ops.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = bot.clone();
    #[allow(clippy::disallowed_methods)] // the server under test, for the test's length
    let server = tokio::spawn(async move {
        served
            .serve_with_ops(listener, ops, async move {
                let _ = stopped.await;
            })
            .await
    });
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(
            http_get(addr, path).await.unwrap().status,
            StatusCode::NOT_FOUND,
            "{path} on the webhook port"
        );
        assert_eq!(
            http_get(ops_addr, path).await.unwrap().status,
            StatusCode::OK,
            "{path} on the ops port"
        );
    }
    assert!(
        http_get(ops_addr, "/metrics")
            .await
            .unwrap()
            .text()
            .contains("bot_")
    );
    // Webhooks stay on the webhook port only.
    let events = webhook_body(&[text_event("c", "ops")]);
    let res = support::http_request(addr, Method::POST, "/t/events", &events)
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::OK);
    let res = support::http_request(ops_addr, Method::POST, "/t/events", &events)
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("both servers stop")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn request_spans_show_the_route_template_never_the_query_or_path_tokens() {
    let _logs = LOG_CAPTURE.write().await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Another test's subscriber (info and above) may have been the only one when the request
    // span's callsite was first seen, and its "never" is cached: ask again now that ours exists.
    tracing::callsite::rebuild_interest_cache();
    let (bot, _) = bot_with(|b| b);
    let router = bot.router();
    let res = send(
        &router,
        Request::builder()
            .uri("/t/hooks/path-secret-1?verify_token=query-secret-2")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let logs = captured.text();
    assert!(logs.contains("route=/t/hooks/{token}"), "{logs}");
    assert!(!logs.contains("path-secret-1"), "{logs}");
    assert!(!logs.contains("query-secret-2"), "{logs}");
}
