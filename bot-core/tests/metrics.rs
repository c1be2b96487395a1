//! `/metrics`: the Prometheus text after a known load carries the DESIGN.md section 7 names with
//! exactly the expected figures.

mod support;

use std::time::Duration;

use bot_core::{BoxError, Context, Event, Limits, Overflow, RetryPolicy};
use http::StatusCode;
use support::{
    Gate, gated_handler, get, next, numbered_events, raw_webhook_request, send_to, test_bot,
    webhook_request,
};
use tokio::sync::mpsc;

/// The value of the sample `name{labels}` (labels as rendered, without braces; "" for none).
///
/// # Panics
///
/// When the sample is missing, naming what the exposition does have under that name.
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let wanted = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((series, value)) = line.rsplit_once(' ')
            && series == wanted
        {
            return value
                .parse()
                .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        }
    }
    let family: Vec<&str> = text.lines().filter(|l| l.contains(name)).collect();
    panic!(
        "no sample {wanted} in /metrics; lines with {name}: {family:#?}\n--- full text ---\n{text}"
    )
}

async fn scrape(bot: &bot_core::Bot) -> String {
    let res = send_to(bot, get("/metrics")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.header(http::header::CONTENT_TYPE)
            .is_some_and(|ct| ct.starts_with("text/plain")),
        "content type {:?}",
        res.headers
    );
    res.text().to_owned()
}

/// What the handler does with event `m-{i}`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Script {
    /// `Err` on every attempt: retried once, then dead.
    AlwaysErr,
    /// Panics on the first attempt, succeeds on the second.
    PanicThenOk,
    /// Panics on every attempt: retried once, then dead.
    AlwaysPanic,
    /// `Err` on the first attempt, succeeds on the second.
    ErrThenOk,
    /// Succeeds at once.
    Ok,
}

fn script(id: &str) -> Script {
    let i: usize = id
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("numbered id");
    match i % 10 {
        0 => Script::AlwaysErr,
        1 => Script::PanicThenOk,
        2 => Script::AlwaysPanic,
        3 => Script::ErrThenOk,
        _ => Script::Ok,
    }
}

async fn scripted(
    cx: Context,
    event: Event,
    calls: mpsc::Sender<(String, u32)>,
) -> Result<(), BoxError> {
    let id = event.id.to_string();
    let attempt = cx.attempt();
    // Report before acting, so that every call is seen even when it panics.
    calls
        .send((id.clone(), attempt))
        .await
        .expect("test listens");
    match (script(&id), attempt) {
        (Script::AlwaysErr, _) | (Script::ErrThenOk, 1) => Err(format!("{id} failed").into()),
        (Script::AlwaysPanic, _) | (Script::PanicThenOk, 1) => panic!("{id} panicked"),
        _ => Ok(()),
    }
}

#[tokio::test]
async fn metrics_after_a_known_load_have_the_exact_figures() {
    const EVENTS: usize = 50;
    const DUPLICATES: usize = 7;
    const OVERFLOW: usize = 3;
    // Per ten events: one always Err, one panic-then-ok, one always panics, one Err-then-ok, six ok.
    const ATTEMPTS: usize = 70; // 30 x 1 + 20 x 2
    const OK: u64 = 40; // 30 + 5 + 5
    const ERRORS: u64 = 15; // 5 x 2 + 5
    const PANICS: u64 = 15; // 5 + 5 x 2
    const RETRIED: u64 = 20;
    const DEAD: u64 = 10;

    let (calls_tx, mut calls) = mpsc::channel(2 * ATTEMPTS);
    let (dead_tx, mut dead) = mpsc::channel(EVENTS);
    let bot = bot_core::Bot::builder()
        .adapter(support::JsonAdapter)
        .limits(Limits {
            max_in_flight: 8,
            queue_capacity: EVENTS,
            overflow: Overflow::DropNewest,
            retry: RetryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(1),
                multiplier: 1.0,
                jitter: 0.0,
            },
            ..Limits::default()
        })
        .handler(move |cx: Context, event: Event| scripted(cx, event, calls_tx.clone()))
        .on_dead_letter(move |letter| {
            dead_tx
                .try_send(letter.event.id.to_string())
                .expect("room for every dead letter");
        })
        .build()
        .unwrap();

    // Not started yet: the buffer fills up exactly, and nothing drains while we look.
    let events = numbered_events("m", EVENTS);
    let res = send_to(&bot, webhook_request(&events)).await;
    assert_eq!(res.json()["accepted"], EVENTS);
    let res = send_to(&bot, webhook_request(&events[..DUPLICATES])).await;
    assert_eq!(res.json()["duplicates"], DUPLICATES);
    let extra = numbered_events("extra", OVERFLOW);
    let res = send_to(&bot, webhook_request(&extra)).await;
    assert_eq!(res.status, StatusCode::OK, "DropNewest answers 200");
    assert_eq!(res.json()["accepted"], 0);
    let res = send_to(&bot, raw_webhook_request("[{not json")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    let text = scrape(&bot).await;
    let received = (EVENTS + DUPLICATES + OVERFLOW) as f64;
    assert_eq!(
        sample(&text, "bot_events_received_total", r#"platform="test""#),
        received
    );
    assert_eq!(
        sample(&text, "bot_events_dropped_total", r#"reason="duplicate""#),
        DUPLICATES as f64
    );
    assert_eq!(
        sample(
            &text,
            "bot_events_dropped_total",
            r#"reason="overflow_newest""#
        ),
        OVERFLOW as f64
    );
    assert_eq!(
        sample(
            &text,
            "bot_webhook_rejected_total",
            r#"platform="test",reason="malformed_json""#
        ),
        1.0
    );
    assert_eq!(sample(&text, "bot_queue_depth", ""), EVENTS as f64);
    assert_eq!(sample(&text, "bot_inflight", ""), 0.0);
    assert_eq!(
        sample(&text, "bot_events_processed_total", r#"outcome="ok""#),
        0.0
    );

    bot.start();
    for _ in 0..ATTEMPTS {
        next(&mut calls).await;
    }
    let mut dead_ids = Vec::new();
    for _ in 0..DEAD {
        dead_ids.push(next(&mut dead).await);
    }
    dead_ids.sort();
    let mut expected_dead: Vec<String> = events
        .iter()
        .map(|e| e.id.to_string())
        .filter(|id| matches!(script(id), Script::AlwaysErr | Script::AlwaysPanic))
        .collect();
    expected_dead.sort();
    assert_eq!(dead_ids, expected_dead);
    // Every attempt has started and every event reached its last attempt: the drain finishes
    // whatever still runs.
    let report = bot.shutdown().await;
    assert_eq!(report.cancelled, 0, "{report:?}");
    assert_eq!(report.not_started, 0, "{report:?}");
    assert!(calls.try_recv().is_err(), "no attempt beyond the expected");

    let text = scrape(&bot).await;
    assert_eq!(
        sample(&text, "bot_events_received_total", r#"platform="test""#),
        received,
        "processing does not count as receiving"
    );
    assert_eq!(
        sample(&text, "bot_events_processed_total", r#"outcome="ok""#),
        OK as f64
    );
    assert_eq!(
        sample(&text, "bot_events_processed_total", r#"outcome="error""#),
        ERRORS as f64
    );
    assert_eq!(
        sample(&text, "bot_events_processed_total", r#"outcome="panic""#),
        PANICS as f64
    );
    assert_eq!(
        sample(&text, "bot_events_processed_total", r#"outcome="timeout""#),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "bot_events_processed_total",
            r#"outcome="cancelled""#
        ),
        0.0
    );
    assert_eq!(
        sample(&text, "bot_events_retried_total", ""),
        RETRIED as f64
    );
    assert_eq!(sample(&text, "bot_events_dead_total", ""), DEAD as f64);
    assert_eq!(
        sample(&text, "bot_handler_duration_seconds_count", ""),
        ATTEMPTS as f64
    );
    assert_eq!(sample(&text, "bot_inflight", ""), 0.0);
    assert_eq!(sample(&text, "bot_queue_depth", ""), 0.0);
    assert_eq!(
        sample(&text, "bot_events_dropped_total", r#"reason="duplicate""#),
        DUPLICATES as f64
    );
    assert_eq!(
        sample(
            &text,
            "bot_events_dropped_total",
            r#"reason="overflow_newest""#
        ),
        OVERFLOW as f64
    );
}

#[tokio::test]
async fn inflight_and_queue_depth_gauges_follow_running_handlers() {
    let gate = Gate::new();
    let (started_tx, mut started) = mpsc::channel(16);
    let bot = test_bot(
        Limits {
            max_in_flight: 2,
            ..Limits::default()
        },
        gated_handler(gate.clone(), started_tx),
    );
    bot.start();
    let res = send_to(&bot, webhook_request(&numbered_events("g", 5))).await;
    assert_eq!(res.json()["accepted"], 5);
    next(&mut started).await;
    next(&mut started).await;

    let text = scrape(&bot).await;
    assert_eq!(sample(&text, "bot_inflight", ""), 2.0);
    assert_eq!(sample(&text, "bot_queue_depth", ""), 3.0);

    gate.open();
    for _ in 0..3 {
        next(&mut started).await;
    }
    let report = bot.shutdown().await;
    assert_eq!(report.not_run(), 0);
    let text = scrape(&bot).await;
    assert_eq!(sample(&text, "bot_inflight", ""), 0.0);
    assert_eq!(sample(&text, "bot_queue_depth", ""), 0.0);
    assert_eq!(
        sample(&text, "bot_events_processed_total", r#"outcome="ok""#),
        5.0
    );
}

/// The adapter-level instruments of DESIGN.md section 7 render under their names once recorded.
#[tokio::test]
async fn adapter_instruments_render_under_their_design_names() {
    let bot = bot_core::Bot::builder()
        .handler(|_cx: Context, _e: Event| async { Ok::<_, BoxError>(()) })
        .build()
        .unwrap();
    let t = bot.telemetry();
    let line = bot_core::Platform::LINE;
    t.outbound_request(&line, "200");
    t.outbound_request(&line, "200");
    t.outbound_request(&line, "429");
    t.outbound_ratelimit_wait(&line, Duration::from_millis(250));
    t.db_pool_wait(Duration::from_millis(3));
    t.gateway_reconnect(&bot_core::Platform::DISCORD, "zombie");
    t.webhook_rejected(&line, "bad_signature");
    let text = scrape(&bot).await;
    assert_eq!(
        sample(
            &text,
            "bot_outbound_requests_total",
            "platform=\"line\",status=\"200\""
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "bot_outbound_requests_total",
            "platform=\"line\",status=\"429\""
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "bot_outbound_ratelimit_wait_seconds_count",
            "platform=\"line\""
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "bot_outbound_ratelimit_wait_seconds_sum",
            "platform=\"line\""
        ),
        0.25
    );
    assert_eq!(sample(&text, "bot_db_pool_wait_seconds_count", ""), 1.0);
    // Pool waits have buckets in seconds fine enough for their percentiles.
    let bucket = |le: &str| {
        sample(
            &text,
            "bot_db_pool_wait_seconds_bucket",
            &format!("le=\"{le}\""),
        )
    };
    assert_eq!(bucket("0.0025"), 0.0);
    assert_eq!(bucket("0.005"), 1.0);
    // So have rate-limit waits: the 250 ms one is not lumped with every wait under 5 s.
    let wait_bucket = |le: &str| {
        sample(
            &text,
            "bot_outbound_ratelimit_wait_seconds_bucket",
            &format!("platform=\"line\",le=\"{le}\""),
        )
    };
    assert_eq!(wait_bucket("0.1"), 0.0);
    assert_eq!(wait_bucket("0.25"), 1.0);
    assert_eq!(
        sample(
            &text,
            "bot_gateway_reconnects_total",
            "platform=\"discord\",reason=\"zombie\""
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "bot_webhook_rejected_total",
            "platform=\"line\",reason=\"bad_signature\""
        ),
        1.0
    );
}
