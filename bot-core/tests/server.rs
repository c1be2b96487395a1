//! The HTTP server: health and readiness, body limits, malformed bodies, a full buffer, and the
//! graceful shutdown over real TCP.

mod support;

use std::time::Duration;

use axum::body::Body;
use bot_core::{BoxError, Context, Event, EventKind, Limits, Message, Overflow};
use http::{Request, StatusCode, header};
use support::{
    Gate, Served, WEBHOOK_PATH, gated_handler, get, http_get, http_post_events, next,
    raw_webhook_request, send_to, test_bot, text_event, webhook_body, webhook_request,
};
use tokio::sync::mpsc;

async fn ok_handler(_cx: Context, _event: Event) -> Result<(), BoxError> {
    Ok(())
}

#[tokio::test]
async fn healthz_is_always_ok_and_readyz_follows_the_lifecycle() {
    let bot = test_bot(Limits::default(), ok_handler);

    let health = send_to(&bot, get("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK, "alive before start");
    let ready = send_to(&bot, get("/readyz")).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready before start"
    );

    bot.start();
    assert_eq!(send_to(&bot, get("/healthz")).await.status, StatusCode::OK);
    assert_eq!(
        send_to(&bot, get("/readyz")).await.status,
        StatusCode::OK,
        "ready once started"
    );

    let report = bot.shutdown().await;
    assert_eq!(report.not_run(), 0);
    assert_eq!(
        send_to(&bot, get("/readyz")).await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready once shutdown began"
    );
    assert_eq!(
        send_to(&bot, get("/healthz")).await.status,
        StatusCode::OK,
        "still alive while shutting down"
    );
}

/// A JSON body of one valid event, at least `len` bytes long.
fn event_body_of_at_least(len: usize) -> Vec<u8> {
    let mut event = text_event("big", "big-0");
    event.kind = EventKind::Message(Message::text("x".repeat(len)));
    webhook_body(&[event])
}

#[tokio::test]
async fn body_above_max_body_bytes_is_413_and_enqueues_nothing() {
    const LIMIT: usize = 2048;
    // Not started: whatever is accepted stays in the queue, where the test can see it.
    let bot = bot_core::Bot::builder()
        .adapter(support::JsonAdapter)
        .max_body_bytes(LIMIT)
        .handler(ok_handler)
        .build()
        .unwrap();

    // Declared length above the limit.
    let res = send_to(&bot, raw_webhook_request(event_body_of_at_least(LIMIT + 1))).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(bot.queue().depth(), 0);

    // No declared length (chunked upload): the limit applies while streaming.
    let body = event_body_of_at_least(LIMIT + 1);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(256).map(|c| Ok(c.to_vec())).collect();
    let streamed = Request::post(WEBHOOK_PATH)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let res = send_to(&bot, streamed).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(bot.queue().depth(), 0);

    // The same event under the limit is accepted: the 413s were the limit, not the payload.
    let small = webhook_body(&[text_event("big", "big-0")]);
    assert!(small.len() < LIMIT);
    let res = send_to(&bot, raw_webhook_request(small)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["accepted"], 1);
    assert_eq!(bot.queue().depth(), 1);
}

#[tokio::test]
async fn malformed_json_is_400_without_echo_and_enqueues_nothing() {
    let bot = test_bot(Limits::default(), ok_handler);
    let secret = "do-not-echo-3f9a";

    let truncated = format!(r#"[{{"id":"{secret}","platform":"test","conversation":"#);
    let res = send_to(&bot, raw_webhook_request(truncated)).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        !res.text().contains(secret),
        "the 400 echoes the body: {:?}",
        res.text()
    );
    assert_eq!(bot.queue().depth(), 0);

    // Valid JSON, wrong shape: an event missing its kind, in a batch with a valid one.
    let mut batch = serde_json::to_value([text_event("c", "good-1")]).unwrap();
    batch
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"id": secret, "platform": "test", "conversation": "c"}));
    let res = send_to(&bot, raw_webhook_request(batch.to_string())).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(!res.text().contains(secret));
    assert_eq!(bot.queue().depth(), 0, "nothing of a bad batch is enqueued");

    let res = send_to(&bot, webhook_request(&[text_event("c", "good-1")])).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(bot.queue().depth(), 1);
}

#[tokio::test]
async fn full_buffer_rejects_whole_batches_with_retry_after() {
    let gate = Gate::new();
    let (started_tx, mut started) = mpsc::channel(16);
    let bot = test_bot(
        Limits {
            max_in_flight: 1,
            queue_capacity: 3,
            overflow: Overflow::Reject,
            ..Limits::default()
        },
        gated_handler(gate.clone(), started_tx),
    );
    bot.start();

    // e0 runs and blocks, so nothing else drains.
    let res = send_to(&bot, webhook_request(&[text_event("c0", "e0")])).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(next(&mut started).await, "e0");
    assert_eq!(bot.queue().depth(), 0);

    let res = send_to(
        &bot,
        webhook_request(&[text_event("c1", "e1"), text_event("c2", "e2")]),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["accepted"], 2);
    assert_eq!(bot.queue().depth(), 2);

    // Two events, one free slot: the whole batch is refused.
    let rejected = [text_event("c3", "e3"), text_event("c4", "e4")];
    let res = send_to(&bot, webhook_request(&rejected)).await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.text()
    );
    let retry_after = res.retry_after().expect("Retry-After on a full buffer");
    assert!(retry_after >= 1);
    assert_eq!(bot.queue().depth(), 2, "nothing half-accepted");

    let res = send_to(&bot, webhook_request(&[text_event("c3", "e3")])).await;
    assert_eq!(res.status, StatusCode::OK, "one event still fits");
    assert_eq!(bot.queue().depth(), 3);
    let res = send_to(&bot, webhook_request(&[text_event("c5", "e5")])).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.retry_after().is_some());
    assert_eq!(bot.queue().depth(), 3, "exactly what fit");

    // Drain; what was refused was never run, and its redelivery is not taken for a duplicate.
    gate.open();
    let mut ran = vec!["e0".to_owned()];
    for _ in 0..3 {
        ran.push(next(&mut started).await);
    }
    ran.sort();
    assert_eq!(ran, ["e0", "e1", "e2", "e3"]);
    let res = send_to(&bot, webhook_request(&[text_event("c4", "e4")])).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["accepted"], 1);
    assert_eq!(res.json()["duplicates"], 0);
    assert_eq!(next(&mut started).await, "e4");

    let report = bot.shutdown().await;
    assert_eq!(report.not_run(), 0);
}

#[tokio::test]
async fn graceful_shutdown_over_tcp_drains_and_refuses_new_work() {
    let gate = Gate::new();
    let (started_tx, mut started) = mpsc::channel(16);
    let bot = test_bot(Limits::default(), gated_handler(gate.clone(), started_tx));
    let mut served = Served::start(bot.clone()).await;
    let addr = served.addr;

    assert_eq!(
        http_get(addr, "/readyz").await.unwrap().status,
        StatusCode::OK
    );
    let res = http_post_events(addr, &[text_event("c0", "e0")])
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["accepted"], 1);
    assert_eq!(next(&mut started).await, "e0");

    served.signal_shutdown();
    // The server task stops accepting events as soon as it sees the signal; wait for that.
    tokio::time::timeout(Duration::from_secs(10), async {
        while bot.ingress().is_accepting() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("shutdown began");

    // Draining: the handler still runs, the server still answers.
    let ready = http_get(addr, "/readyz").await.unwrap();
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let health = http_get(addr, "/healthz").await.unwrap();
    assert_eq!(health.status, StatusCode::OK);
    let res = http_post_events(addr, &[text_event("c1", "e1")])
        .await
        .unwrap();
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.text()
    );
    assert!(
        res.retry_after().is_some_and(|s| s >= 1),
        "Retry-After while draining: {:?}",
        res.headers
    );
    assert_eq!(bot.queue().depth(), 0, "nothing accepted while draining");

    gate.open();
    let report = served.finished().await.expect("serve returns a report");
    assert_eq!(report.drained, 1);
    assert_eq!(report.cancelled, 0);
    assert_eq!(report.not_started, 0);
    assert!(started.try_recv().is_err(), "e1 never ran");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed once serve returns"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_cancels_a_stuck_handler_and_counts_what_never_ran() {
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
    let (started_tx, mut started) = mpsc::channel(16);
    let handler = move |_cx: Context, event: Event| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(event.id.to_string()).await;
            std::future::pending::<()>().await;
            Ok::<(), BoxError>(())
        }
    };
    let bot = test_bot(
        Limits {
            max_in_flight: 1,
            handler_timeout: Duration::from_secs(3600),
            shutdown_timeout: SHUTDOWN_TIMEOUT,
            ..Limits::default()
        },
        handler,
    );
    let mut served = Served::start(bot.clone()).await;

    let events = [
        text_event("c0", "e0"),
        text_event("c1", "e1"),
        text_event("c2", "e2"),
    ];
    let res = send_to(&bot, webhook_request(&events)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(next(&mut started).await, "e0");
    assert_eq!(bot.queue().depth(), 2);

    served.signal_shutdown();
    let report = served.finished().await.expect("serve returns a report");
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert_eq!(report.drained, 0, "{report:?}");
    assert_eq!(report.not_started, 2, "e1 and e2 never started: {report:?}");
    assert_eq!(report.not_run(), 3, "{report:?}");
    assert!(
        report.drain_time >= SHUTDOWN_TIMEOUT,
        "waited the whole shutdown_timeout: {report:?}"
    );
    assert!(started.try_recv().is_err(), "nothing else started");
}

/// A webhook request that cannot finish in `request_timeout` (here: waiting for room under
/// `Overflow::Wait`) is answered 408, and the abandoned batch leaves nothing behind.
#[tokio::test(start_paused = true)]
async fn slow_requests_time_out_with_408_and_leave_nothing_behind() {
    let gate = Gate::new();
    let (started_tx, mut started) = mpsc::channel(16);
    let bot = bot_core::Bot::builder()
        .adapter(support::JsonAdapter)
        .limits(Limits {
            max_in_flight: 1,
            queue_capacity: 1,
            overflow: Overflow::Wait,
            ..Limits::default()
        })
        .request_timeout(Duration::from_secs(2))
        .handler(gated_handler(gate.clone(), started_tx))
        .build()
        .unwrap();
    bot.start();
    let res = send_to(&bot, webhook_request(&[text_event("c0", "e0")])).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(next(&mut started).await, "e0");
    let res = send_to(&bot, webhook_request(&[text_event("c1", "e1")])).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(bot.queue().depth(), 1);

    let res = send_to(&bot, webhook_request(&[text_event("c2", "e2")])).await;
    assert_eq!(res.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(bot.queue().depth(), 1, "the timed-out batch added nothing");

    gate.open();
    assert_eq!(next(&mut started).await, "e1");
    bot.idle().await;
    // The platform's redelivery of the timed-out event is welcome: it was never accepted.
    let res = send_to(&bot, webhook_request(&[text_event("c2", "e2")])).await;
    assert_eq!(res.json()["accepted"], 1);
    assert_eq!(next(&mut started).await, "e2");
    bot.shutdown().await;
}
