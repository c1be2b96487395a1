//! The supervisor's bounded buffer: each overflow policy, and deduplication.
#![allow(clippy::disallowed_methods)] // tests spawn producers directly

mod support;

use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::queue::PushReport;
use bot_core::{Bot, Context, Error, ErrorKind, Event, Limits, Ordering, Overflow};
use support::supervisor::{Done, event, metric};
use tokio::sync::Semaphore;

/// A handler that waits for permits, to keep events in the buffer.
fn gated(
    gate: Arc<Semaphore>,
    handled: Arc<Mutex<Vec<String>>>,
    done: Arc<Done>,
) -> impl bot_core::Handler {
    move |_cx: Context, e: Event| {
        let (gate, handled, done) = (gate.clone(), handled.clone(), done.clone());
        async move {
            gate.acquire().await.unwrap().forget();
            handled.lock().unwrap().push(e.id.to_string());
            done.add();
            Ok::<_, Error>(())
        }
    }
}

async fn overflow_bot(
    overflow: Overflow,
) -> (Bot, Arc<Semaphore>, Arc<Mutex<Vec<String>>>, Arc<Done>) {
    let gate = Arc::new(Semaphore::new(0));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Done::default());
    let bot = Bot::builder()
        .limits(Limits {
            max_in_flight: 1,
            queue_capacity: 2,
            overflow,
            ordering: Ordering::Unordered,
            ..Limits::default()
        })
        .handler(gated(gate.clone(), handled.clone(), done.clone()))
        .build()
        .unwrap();
    bot.start();
    // e0 is taken by the single slot; the buffer (2) is then empty.
    bot.ingress()
        .submit(vec![event("a", "e0".into())])
        .await
        .unwrap();
    while bot.queue().depth() > 0 {
        tokio::task::yield_now().await;
    }
    (bot, gate, handled, done)
}

#[tokio::test]
async fn overflow_reject_refuses_without_enqueuing() {
    let (bot, gate, handled, done) = overflow_bot(Overflow::Reject).await;
    bot.ingress()
        .submit(vec![event("a", "e1".into()), event("a", "e2".into())])
        .await
        .unwrap();
    let err = bot
        .ingress()
        .submit(vec![event("a", "e3".into())])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QueueFull);
    assert!(err.retry_after().is_some());
    assert_eq!(bot.queue().depth(), 2);
    gate.add_permits(10);
    done.wait(3).await;
    bot.shutdown().await;
    assert_eq!(*handled.lock().unwrap(), ["e0", "e1", "e2"]);
    let text = bot.telemetry().render_prometheus();
    assert_eq!(
        metric(
            &text,
            "bot_webhook_rejected_total{platform=\"test\",reason=\"queue_full\"}"
        ),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn overflow_reject_waits_for_room_before_refusing() {
    let (bot, gate, handled, done) = overflow_bot(Overflow::Reject).await;
    bot.ingress()
        .submit(vec![event("a", "e1".into()), event("a", "e2".into())])
        .await
        .unwrap();
    let waits = Limits::default().reject_wait;
    assert!(!waits.is_zero());
    // The buffer is full; a push waits for room, and gets it when the handler of e0 finishes
    // and the supervisor takes e1.
    let ingress = bot.ingress();
    let mut late = tokio::spawn(async move { ingress.submit(vec![event("a", "e3".into())]).await });
    assert!(
        tokio::time::timeout(waits / 2, &mut late).await.is_err(),
        "still waiting for room"
    );
    gate.add_permits(1);
    assert_eq!(late.await.unwrap().unwrap().accepted, 1);
    // Full again, and no handler finishes: refused once the wait is over.
    let start = tokio::time::Instant::now();
    let err = bot
        .ingress()
        .submit(vec![event("a", "e4".into())])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QueueFull);
    assert!(err.retry_after().is_some());
    assert_eq!(start.elapsed(), waits);
    gate.add_permits(10);
    done.wait(4).await;
    bot.shutdown().await;
    assert_eq!(*handled.lock().unwrap(), ["e0", "e1", "e2", "e3"]);
}

/// Sheds e1..e5 into a buffer of 2 (e0 holds the only slot) and checks what ran and what was
/// counted under `reason`.
async fn shed_five(overflow: Overflow, reason: &str, handled_expected: [&str; 3]) -> PushReport {
    let (bot, gate, handled, done) = overflow_bot(overflow).await;
    let report = bot
        .ingress()
        .submit((1..=5).map(|i| event("a", format!("e{i}"))).collect())
        .await
        .unwrap();
    gate.add_permits(10);
    done.wait(3).await;
    bot.shutdown().await;
    assert_eq!(*handled.lock().unwrap(), handled_expected);
    let text = bot.telemetry().render_prometheus();
    assert_eq!(
        metric(
            &text,
            &format!("bot_events_dropped_total{{reason=\"{reason}\"}}")
        ),
        3.0
    );
    report
}

#[tokio::test]
async fn overflow_drop_newest_and_drop_oldest_drop_the_expected_events() {
    let r = shed_five(Overflow::DropNewest, "overflow_newest", ["e0", "e1", "e2"]).await;
    assert_eq!((r.accepted, r.dropped_newest), (2, 3));
    let r = shed_five(Overflow::DropOldest, "overflow_oldest", ["e0", "e4", "e5"]).await;
    assert_eq!((r.accepted, r.evicted_oldest), (5, 3));
}

#[tokio::test(start_paused = true)]
async fn overflow_wait_blocks_the_producer() {
    let (bot, gate, handled, done) = overflow_bot(Overflow::Wait).await;
    // The buffer (2) fills up while e0 holds the only slot.
    let r = bot
        .ingress()
        .submit(vec![event("a", "e1".into()), event("a", "e2".into())])
        .await
        .unwrap();
    assert_eq!(r.accepted, 2);
    let ingress = bot.ingress();
    let mut producer = tokio::spawn(async move {
        ingress
            .submit(vec![event("a", "e3".into()), event("a", "e4".into())])
            .await
            .unwrap()
    });
    // Paused time: ten seconds (less than the handler time-out) pass at once when nothing can
    // run; the producer must still be waiting.
    assert!(
        tokio::time::timeout(Duration::from_secs(10), &mut producer)
            .await
            .is_err(),
        "the producer was not blocked"
    );
    assert_eq!(
        bot.queue().depth(),
        2,
        "nothing of the waiting batch got in early"
    );
    // A waiting producer whose request is abandoned (a webhook time-out) leaves nothing behind.
    let ingress = bot.ingress();
    let abandoned = tokio::time::timeout(
        Duration::from_secs(1),
        ingress.submit(vec![event("b", "x1".into())]),
    )
    .await;
    assert!(abandoned.is_err());
    assert_eq!(bot.queue().depth(), 2);
    gate.add_permits(10);
    let report = producer.await.unwrap();
    assert_eq!(report.accepted, 2);
    done.wait(5).await;
    bot.idle().await;
    bot.shutdown().await;
    assert_eq!(*handled.lock().unwrap(), ["e0", "e1", "e2", "e3", "e4"]);
}

#[tokio::test]
async fn redelivered_events_are_skipped_and_counted() {
    let done = Arc::new(Done::default());
    let d = done.clone();
    let bot = Bot::builder()
        .handler(move |_cx: Context, _e: Event| {
            let d = d.clone();
            async move {
                d.add();
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    let first = event("a", "evt-1".into());
    let mut again = first.clone();
    again.redelivered = true;
    let r1 = bot.ingress().submit(vec![first]).await.unwrap();
    done.wait(1).await;
    let r2 = bot.ingress().submit(vec![again]).await.unwrap();
    assert_eq!((r1.accepted, r2.accepted, r2.duplicates), (1, 0, 1));
    bot.shutdown().await;
    assert_eq!(done.count.load(AtomicOrdering::SeqCst), 1);
    let text = bot.telemetry().render_prometheus();
    assert_eq!(
        metric(&text, "bot_events_dropped_total{reason=\"duplicate\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "bot_events_received_total{platform=\"test\"}"),
        2.0
    );
}
#[tokio::test]
async fn events_dropped_by_drop_newest_are_welcome_again() {
    let (bot, gate, handled, done) = overflow_bot(Overflow::DropNewest).await;
    let r = bot
        .ingress()
        .submit((1..=3).map(|i| event("a", format!("e{i}"))).collect())
        .await
        .unwrap();
    assert_eq!((r.accepted, r.dropped_newest), (2, 1));
    gate.add_permits(10);
    done.wait(3).await;
    bot.idle().await;
    // The platform sends e3 again: it was dropped, not accepted, so it is not a duplicate.
    let r = bot
        .ingress()
        .submit(vec![event("a", "e3".into())])
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (1, 0));
    done.wait(4).await;
    bot.shutdown().await;
    assert_eq!(*handled.lock().unwrap(), ["e0", "e1", "e2", "e3"]);
}

#[test]
fn a_reject_wait_over_half_the_request_timeout_is_refused_at_build() {
    let build = |wait: Duration, overflow: Overflow| {
        Bot::builder()
            .handler(|_cx: Context, _event: Event| async { Ok::<(), Error>(()) })
            .limits(Limits {
                reject_wait: wait,
                overflow,
                ..Limits::default()
            })
            .request_timeout(Duration::from_secs(2))
            .build()
    };
    let err = build(Duration::from_millis(1001), Overflow::Reject).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("reject_wait"), "{err}");
    // Half the request's time at most: the rest reads the body and checks its signature.
    build(Duration::from_secs(1), Overflow::Reject).unwrap();
    // Only `Reject` waits that way.
    build(Duration::from_secs(2), Overflow::Wait).unwrap();
}
