//! The memory queue's byte budget seen from the ingress, and the handler workers' independence.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::{Bot, Context, Error, ErrorKind, Event, Limits, Ordering, Overflow, Platform};
use tokio::sync::{Notify, Semaphore};

/// Text of this many bytes makes an event far larger than its fixed overhead.
const LARGE: usize = 20_000;
/// Room for two large events by bytes (and for a hundred by count).
const BUDGET: usize = 2 * LARGE + LARGE / 2;

fn event(id: &str, text_bytes: usize) -> Event {
    Event::text(Platform::TEST, "a", "x".repeat(text_bytes)).with_id(id)
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == name_and_labels).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("metric {name_and_labels} not found in:\n{text}"))
}

/// A bot with one slot, held by a first event until `gate` opens, and a byte budget of
/// [`BUDGET`]; returns once that first event runs, so the buffer is empty.
async fn budget_bot(overflow: Overflow) -> (Bot, Arc<Semaphore>, Arc<Mutex<Vec<String>>>) {
    let gate = Arc::new(Semaphore::new(0));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let (g, h) = (gate.clone(), handled.clone());
    let bot = Bot::builder()
        .limits(Limits {
            max_in_flight: 1,
            queue_capacity: 100,
            queue_capacity_bytes: BUDGET,
            overflow,
            ordering: Ordering::Unordered,
            ..Limits::default()
        })
        .handler(move |_cx: Context, e: Event| {
            let (g, h) = (g.clone(), h.clone());
            async move {
                g.acquire().await.unwrap().forget();
                h.lock().unwrap().push(e.id.to_string());
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    bot.ingress().submit(vec![event("e0", 1)]).await.unwrap();
    while bot.queue().depth() > 0 {
        tokio::task::yield_now().await;
    }
    (bot, gate, handled)
}

#[tokio::test]
async fn a_batch_over_the_byte_budget_is_refused_whole_although_the_count_allows() {
    let (bot, gate, handled) = budget_bot(Overflow::Reject).await;
    bot.ingress()
        .submit(vec![event("e1", LARGE), event("e2", LARGE)])
        .await
        .unwrap();
    let err = bot
        .ingress()
        .submit(vec![event("e3", 10), event("e4", LARGE)])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QueueFull);
    assert!(
        err.retry_after().is_some(),
        "webhooks answer 503 with Retry-After"
    );
    assert_eq!(
        bot.queue().depth(),
        2,
        "nothing of the refused batch went in"
    );
    gate.add_permits(10);
    bot.idle().await;
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

#[tokio::test]
async fn drop_oldest_evicts_as_many_waiting_events_as_the_bytes_need_and_counts_them() {
    let (bot, gate, handled) = budget_bot(Overflow::DropOldest).await;
    // Five small events wait; a large one needs the room of at least two of them.
    let small = LARGE / 3;
    let r = bot
        .ingress()
        .submit((1..=5).map(|i| event(&format!("e{i}"), small)).collect())
        .await
        .unwrap();
    assert_eq!((r.accepted, r.evicted_oldest), (5, 0));
    let r = bot
        .ingress()
        .submit(vec![event("big", LARGE)])
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
    assert!(
        r.evicted_oldest >= 2,
        "evicted {} events for one twice their size",
        r.evicted_oldest
    );
    let evicted = r.evicted_oldest;
    gate.add_permits(10);
    bot.idle().await;
    bot.shutdown().await;
    let got = handled.lock().unwrap().clone();
    assert_eq!(got.len(), 1 + 5 + 1 - evicted);
    assert_eq!(got.last().map(String::as_str), Some("big"));
    assert!(
        !got.contains(&"e1".to_owned()),
        "the oldest went first: {got:?}"
    );
    let text = bot.telemetry().render_prometheus();
    assert_eq!(
        metric(
            &text,
            "bot_events_dropped_total{reason=\"overflow_oldest\"}"
        ),
        evicted as f64
    );
}

#[tokio::test]
async fn drop_newest_drops_what_the_bytes_do_not_allow_and_counts_it() {
    let (bot, gate, handled) = budget_bot(Overflow::DropNewest).await;
    let r = bot
        .ingress()
        .submit(vec![
            event("e1", LARGE),
            event("e2", LARGE),
            event("e3", LARGE),
            event("e4", 10),
        ])
        .await
        .unwrap();
    // e3 does not fit by bytes; e4, small, still does.
    assert_eq!((r.accepted, r.dropped_newest), (3, 1));
    gate.add_permits(10);
    bot.idle().await;
    bot.shutdown().await;
    assert_eq!(*handled.lock().unwrap(), ["e0", "e1", "e2", "e4"]);
    let text = bot.telemetry().render_prometheus();
    assert_eq!(
        metric(
            &text,
            "bot_events_dropped_total{reason=\"overflow_newest\"}"
        ),
        1.0
    );
}

/// Handlers run side by side in a few workers: handlers that wait do not hold up the ones that
/// finish at once, whichever worker they share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_handlers_do_not_hold_up_quick_ones() {
    const WAITING: usize = 200;
    const QUICK: usize = 1000;
    let release = Arc::new(Semaphore::new(0));
    let quick_done = Arc::new(AtomicUsize::new(0));
    let all_quick = Arc::new(Notify::new());
    let (r, q, a) = (release.clone(), quick_done.clone(), all_quick.clone());
    let bot = Bot::builder()
        .limits(Limits {
            max_in_flight: WAITING + QUICK,
            ordering: Ordering::Unordered,
            ..Limits::default()
        })
        .handler(move |_cx: Context, e: Event| {
            let (r, q, a) = (r.clone(), q.clone(), a.clone());
            async move {
                if e.id.as_str().starts_with("wait") {
                    r.acquire().await.unwrap().forget();
                } else if q.fetch_add(1, AtomicOrdering::SeqCst) + 1 == QUICK {
                    a.notify_one();
                }
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    let waiting: Vec<Event> = (0..WAITING)
        .map(|i| event(&format!("wait{i}"), 1))
        .collect();
    bot.ingress().submit(waiting).await.unwrap();
    let quick: Vec<Event> = (0..QUICK).map(|i| event(&format!("quick{i}"), 1)).collect();
    bot.ingress().submit(quick).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), all_quick.notified())
        .await
        .expect("quick handlers finished while the others wait");
    release.add_permits(WAITING);
    let report = bot.shutdown().await;
    assert_eq!(report.not_run(), 0);
}

/// A handler that blocks its thread after its first `.await` (synchronous code where it should
/// not be) should hold up no other handler. Today the calls sharing its worker wait until the
/// thread is free (300 of 400 ran here); with a task per attempt all 400 run. Kept, ignored, as
/// the statement of what is still to fix (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known: calls sharing a worker with a handler that blocks its thread wait for it (issue 12)"]
async fn a_handler_blocking_its_thread_holds_up_no_other() {
    const OTHERS: usize = 400;
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let blocking = Arc::new(Notify::new());
    let others_done = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let all_others = Arc::new(Notify::new());
    let (r, b, d, a, st) = (
        release.clone(),
        blocking.clone(),
        others_done.clone(),
        all_others.clone(),
        started.clone(),
    );
    let bot = Bot::builder()
        .limits(Limits {
            max_in_flight: OTHERS + 1,
            ordering: Ordering::Unordered,
            ..Limits::default()
        })
        .handler(move |_cx: Context, e: Event| {
            let (r, b, d, a, st) = (r.clone(), b.clone(), d.clone(), a.clone(), st.clone());
            async move {
                st.fetch_add(1, AtomicOrdering::SeqCst);
                tokio::task::yield_now().await;
                if e.id.as_str() == "blocker" {
                    b.notify_one();
                    // Blocks this thread until the test has seen every other handler finish.
                    while !r.load(AtomicOrdering::SeqCst) {
                        std::thread::park_timeout(Duration::from_millis(1));
                    }
                } else if d.fetch_add(1, AtomicOrdering::SeqCst) + 1 == OTHERS {
                    a.notify_one();
                }
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    bot.ingress()
        .submit(vec![event("blocker", 1)])
        .await
        .unwrap();
    blocking.notified().await;
    let others: Vec<Event> = (0..OTHERS).map(|i| event(&format!("o{i}"), 1)).collect();
    bot.ingress().submit(others).await.unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(10), all_others.notified()).await;
    release.store(true, AtomicOrdering::SeqCst);
    finished.unwrap_or_else(|_| {
        panic!(
            "only {} of {OTHERS} handlers finished ({} started) while one blocked its thread",
            others_done.load(AtomicOrdering::SeqCst),
            started.load(AtomicOrdering::SeqCst) - 1,
        )
    });
    let report = bot.shutdown().await;
    assert_eq!(report.not_run(), 0);
}
