//! Acceptance tests of the supervisor: bounds, ordering, failures, overflow, dedup, shutdown.
#![allow(clippy::disallowed_methods)] // tests spawn producers directly

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::handler::Permanent;
use bot_core::queue::{DeadLetter, PushReport};
use bot_core::{
    Bot, Context, Error, ErrorKind, Event, HandlerExt, Limits, MemoryQueue, Ordering, Overflow,
    Platform, RetryPolicy,
};
use tokio::sync::{Notify, Semaphore};

/// Counts handled events and wakes the test when `target` is reached.
#[derive(Default)]
struct Done {
    count: AtomicUsize,
    notify: Notify,
}

impl Done {
    fn add(&self) {
        self.count.fetch_add(1, AtomicOrdering::SeqCst);
        self.notify.notify_waiters();
    }

    async fn wait(&self, target: usize) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(AtomicOrdering::SeqCst) >= target {
                return;
            }
            notified.await;
        }
    }
}

/// Tracks concurrency: the current and the highest number of handlers inside a section.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let n = self.now.fetch_add(1, AtomicOrdering::SeqCst) + 1;
        self.max.fetch_max(n, AtomicOrdering::SeqCst);
    }

    fn exit(&self) {
        self.now.fetch_sub(1, AtomicOrdering::SeqCst);
    }
}

fn event(conversation: &str, id: String) -> Event {
    Event::text(Platform::TEST, conversation, id.clone()).with_id(id)
}

async fn submit(bot: &Bot, events: Vec<Event>) {
    for chunk in events.chunks(500) {
        bot.ingress().submit(chunk.to_vec()).await.unwrap();
    }
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == name_and_labels).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("metric {name_and_labels} not found in:\n{text}"))
}

#[tokio::test(start_paused = true)]
async fn in_flight_never_exceeds_max_and_every_event_runs_once() {
    let gauge = Arc::new(Gauge::default());
    let done = Arc::new(Done::default());
    let seen = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let (g, d, s) = (gauge.clone(), done.clone(), seen.clone());
    let bot = Bot::builder()
        .limits(Limits {
            max_in_flight: 100,
            queue_capacity: 20_000,
            queue_capacity_bytes: usize::MAX,
            ordering: Ordering::Unordered,
            ..Limits::default()
        })
        .handler(move |_cx: Context, e: Event| {
            let (g, d, s) = (g.clone(), d.clone(), s.clone());
            async move {
                g.enter();
                tokio::time::sleep(Duration::from_millis(5)).await;
                g.exit();
                *s.lock().unwrap().entry(e.id.to_string()).or_default() += 1;
                d.add();
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    let events: Vec<Event> = (0..10_000)
        .map(|i| event(&format!("c{}", i % 997), format!("e{i}")))
        .collect();
    submit(&bot, events).await;
    done.wait(10_000).await;
    let report = bot.shutdown().await;
    let max = gauge.max.load(AtomicOrdering::SeqCst);
    assert!(max <= 100, "observed {max} handlers at once, limit 100");
    assert_eq!(
        max, 100,
        "the limit was never reached: the runtime is not concurrent"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10_000);
    assert!(seen.values().all(|&n| n == 1), "an event ran twice");
    assert_eq!(report.not_run(), 0);
}

/// 1,000 conversations x 20 events, interleaved across conversations.
fn interleaved_load() -> Vec<Event> {
    let mut events = Vec::with_capacity(20_000);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut next = vec![0usize; 1000];
    let mut open: Vec<usize> = (0..1000).collect();
    while !open.is_empty() {
        let i = rng.usize(..open.len());
        let c = open[i];
        events.push(event(&format!("conv{c}"), format!("conv{c}-{}", next[c])));
        next[c] += 1;
        if next[c] == 20 {
            open.swap_remove(i);
        }
    }
    events
}

struct OrderProbe {
    active: Mutex<HashMap<String, usize>>,
    max_per_conversation: AtomicUsize,
    order: Mutex<HashMap<String, Vec<usize>>>,
    done: Done,
}

async fn run_interleaved(ordering: Ordering) -> Arc<OrderProbe> {
    let probe = Arc::new(OrderProbe {
        active: Mutex::new(HashMap::new()),
        max_per_conversation: AtomicUsize::new(0),
        order: Mutex::new(HashMap::new()),
        done: Done::default(),
    });
    let p = probe.clone();
    let limits = Limits {
        max_in_flight: 4096,
        queue_capacity: 20_000,
        // All 20,000 events are queued at once: bound them by count, not by the default bytes.
        queue_capacity_bytes: usize::MAX,
        ordering,
        ..Limits::default()
    };
    let queue = Arc::new(MemoryQueue::new(&limits));
    let bot = Bot::builder()
        .limits(limits)
        .queue(queue.clone())
        .handler(move |cx: Context, e: Event| {
            let p = p.clone();
            async move {
                let conv = cx.conversation().to_string();
                let seq: usize = e.id.as_str().rsplit('-').next().unwrap().parse().unwrap();
                {
                    let mut active = p.active.lock().unwrap();
                    let n = active.entry(conv.clone()).or_default();
                    *n += 1;
                    p.max_per_conversation.fetch_max(*n, AtomicOrdering::SeqCst);
                    p.order
                        .lock()
                        .unwrap()
                        .entry(conv.clone())
                        .or_default()
                        .push(seq);
                }
                // Vary the duration so that a broken lane would reorder events.
                tokio::time::sleep(Duration::from_millis((seq as u64 * 7919) % 5 + 1)).await;
                *p.active.lock().unwrap().get_mut(&conv).unwrap() -= 1;
                p.done.add();
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    submit(&bot, interleaved_load()).await;
    probe.done.wait(20_000).await;
    bot.idle().await;
    // Lanes go as soon as they are empty: memory follows what waits, not what was ever seen.
    assert_eq!(queue.lanes(), 0);
    assert_eq!(queue.leased(), 0);
    bot.shutdown().await;
    probe
}

#[tokio::test(start_paused = true)]
async fn conversations_run_one_at_a_time_in_arrival_order() {
    let probe = run_interleaved(Ordering::PerConversation).await;
    assert_eq!(
        probe.max_per_conversation.load(AtomicOrdering::SeqCst),
        1,
        "two handlers of one conversation overlapped"
    );
    let order = probe.order.lock().unwrap();
    assert_eq!(order.len(), 1000);
    let expected: Vec<usize> = (0..20).collect();
    for (conv, seqs) in order.iter() {
        assert_eq!(seqs, &expected, "{conv} ran out of order");
    }
}

#[tokio::test(start_paused = true)]
async fn unordered_runs_a_conversation_concurrently() {
    let probe = run_interleaved(Ordering::Unordered).await;
    assert!(
        probe.max_per_conversation.load(AtomicOrdering::SeqCst) > 1,
        "unordered never ran two events of a conversation at once"
    );
    let order = probe.order.lock().unwrap();
    assert_eq!(order.values().map(Vec::len).sum::<usize>(), 20_000);
}

#[tokio::test(start_paused = true)]
async fn panics_are_retried_then_dead_lettered_and_counted() {
    let done = Arc::new(Done::default());
    let dead = Arc::new(Mutex::new(Vec::<DeadLetter>::new()));
    let attempts = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let (d, a) = (done.clone(), attempts.clone());
    let (d2, dl) = (done.clone(), dead.clone());
    let bot = Bot::builder()
        .limits(Limits {
            max_in_flight: 16,
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_secs(1),
                multiplier: 2.0,
                jitter: 0.0,
            },
            ..Limits::default()
        })
        .on_dead_letter(move |letter| {
            dl.lock().unwrap().push(letter.clone());
            d2.add();
        })
        .handler(move |cx: Context, e: Event| {
            let (d, a) = (d.clone(), a.clone());
            async move {
                let n: usize = e.id.as_str()[1..].parse().unwrap();
                *a.lock().unwrap().entry(e.id.to_string()).or_default() = cx.attempt();
                if n.is_multiple_of(10) {
                    panic!("boom on {n}");
                }
                d.add();
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    submit(
        &bot,
        (0..100)
            .map(|i| event(&format!("c{}", i % 7), format!("e{i}")))
            .collect(),
    )
    .await;
    done.wait(100).await;
    let report = bot.shutdown().await;
    assert_eq!(report.not_run(), 0);

    let mut dead_ids: Vec<String> = dead
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.event.id.to_string())
        .collect();
    dead_ids.sort();
    let mut expected: Vec<String> = (0..100).step_by(10).map(|i| format!("e{i}")).collect();
    expected.sort();
    assert_eq!(dead_ids, expected);
    for letter in dead.lock().unwrap().iter() {
        assert_eq!(letter.attempts, 3);
        assert!(letter.error.contains("boom"), "{}", letter.error);
    }
    let attempts = attempts.lock().unwrap();
    assert_eq!(attempts["e10"], 3);
    assert_eq!(attempts["e11"], 1);

    let text = bot.telemetry().render_prometheus();
    assert_eq!(
        metric(&text, "bot_events_processed_total{outcome=\"ok\"}"),
        90.0
    );
    assert_eq!(
        metric(&text, "bot_events_processed_total{outcome=\"panic\"}"),
        30.0
    );
    assert_eq!(metric(&text, "bot_events_retried_total"), 20.0);
    assert_eq!(metric(&text, "bot_events_dead_total"), 10.0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_event_holds_its_conversation_until_retried() {
    let order = Arc::new(Mutex::new(Vec::<(String, u32)>::new()));
    let done = Arc::new(Done::default());
    let (o, d) = (order.clone(), done.clone());
    let bot = Bot::builder()
        .limits(Limits {
            retry: RetryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_secs(1),
                jitter: 0.0,
                ..RetryPolicy::default()
            },
            ..Limits::default()
        })
        .handler(move |cx: Context, e: Event| {
            let (o, d) = (o.clone(), d.clone());
            async move {
                o.lock().unwrap().push((e.id.to_string(), cx.attempt()));
                if e.id.as_str() == "a1" && cx.attempt() == 1 {
                    return Err(Error::new(ErrorKind::Outbound, "platform down"));
                }
                d.add();
                Ok(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    submit(
        &bot,
        vec![
            event("a", "a1".into()),
            event("a", "a2".into()),
            event("b", "b1".into()),
        ],
    )
    .await;
    done.wait(3).await;
    bot.shutdown().await;
    let order = order.lock().unwrap();
    let a: Vec<_> = order.iter().filter(|(id, _)| id.starts_with('a')).collect();
    assert_eq!(
        a,
        [
            &("a1".to_string(), 1),
            &("a1".to_string(), 2),
            &("a2".to_string(), 1)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_fail_attempts_and_routes_can_set_their_own() {
    let done = Arc::new(Done::default());
    let dead = Arc::new(Mutex::new(Vec::<String>::new()));
    let (d, dl, d2) = (done.clone(), dead.clone(), done.clone());
    let slow = move |_cx: Context, e: Event| {
        let d = d.clone();
        async move {
            if e.id.as_str() == "slow" {
                tokio::time::sleep(Duration::from_secs(60)).await;
            } else {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            d.add();
            Ok::<_, Error>(())
        }
    };
    let bot = Bot::builder()
        .limits(Limits {
            handler_timeout: Duration::from_secs(1),
            retry: RetryPolicy::none(),
            ..Limits::default()
        })
        .on_dead_letter(move |l| {
            dl.lock().unwrap().push(l.event.id.to_string());
            d2.add();
        })
        .handler(slow.with_timeout(Duration::from_secs(10)))
        .build()
        .unwrap();
    bot.start();
    submit(
        &bot,
        vec![event("a", "slow".into()), event("b", "fine".into())],
    )
    .await;
    done.wait(2).await;
    bot.shutdown().await;
    // The route's own 10 s time-out let "fine" (3 s) finish although the default is 1 s,
    // and cut "slow" (60 s).
    assert_eq!(*dead.lock().unwrap(), ["slow"]);
    let text = bot.telemetry().render_prometheus();
    assert_eq!(
        metric(&text, "bot_events_processed_total{outcome=\"timeout\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "bot_events_processed_total{outcome=\"ok\"}"),
        1.0
    );
}

#[tokio::test]
async fn permanent_errors_skip_retries() {
    let dead = Arc::new(Done::default());
    let d = dead.clone();
    let bot = Bot::builder()
        .on_dead_letter(move |_| d.add())
        .handler(|_cx: Context, _e: Event| async move { Err::<(), _>(Permanent::new("bad input")) })
        .build()
        .unwrap();
    bot.start();
    submit(&bot, vec![event("a", "x".into())]).await;
    dead.wait(1).await;
    bot.shutdown().await;
    let text = bot.telemetry().render_prometheus();
    assert_eq!(
        metric(&text, "bot_events_processed_total{outcome=\"error\"}"),
        1.0
    );
    assert_eq!(metric(&text, "bot_events_retried_total"), 0.0);
}

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

#[tokio::test(start_paused = true)]
async fn shutdown_drains_then_cancels_and_reports() {
    let started = Arc::new(Done::default());
    let s = started.clone();
    let bot = Bot::builder()
        .limits(Limits {
            max_in_flight: 2,
            shutdown_timeout: Duration::from_secs(5),
            ..Limits::default()
        })
        .handler(move |cx: Context, e: Event| {
            let s = s.clone();
            async move {
                s.add();
                let secs = if e.id.as_str() == "quick" { 1 } else { 3600 };
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(secs)) => {}
                    () = cx.cancellation().cancelled() => return Err(Error::new(ErrorKind::Other, "cancelled")),
                }
                Ok(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    submit(
        &bot,
        vec![
            event("a", "quick".into()),
            event("b", "stuck".into()),
            event("c", "waiting-1".into()),
            event("d", "waiting-2".into()),
        ],
    )
    .await;
    started.wait(2).await;
    let before = tokio::time::Instant::now();
    let report = bot.shutdown().await;
    assert_eq!(
        report.drained, 1,
        "the quick handler finished during the drain"
    );
    assert_eq!(
        report.cancelled, 1,
        "the stuck handler was cancelled at the deadline"
    );
    assert_eq!(report.not_started, 2);
    assert_eq!(report.not_run(), 3);
    assert!(before.elapsed() >= Duration::from_secs(5));
    assert!(before.elapsed() < Duration::from_secs(6));
    // Once shut down, ingress refuses.
    let err = bot
        .ingress()
        .submit(vec![event("e", "late".into())])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QueueClosed);
    assert_eq!(bot.shutdown().await, report, "shutdown is idempotent");
}

#[tokio::test(start_paused = true)]
async fn idle_waits_for_retries_and_dead_letters_can_be_redriven() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handled = Arc::new(Done::default());
    let (f, h) = (fail.clone(), handled.clone());
    let bot = Bot::builder()
        .limits(Limits {
            retry: RetryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_secs(5),
                jitter: 0.0,
                ..RetryPolicy::default()
            },
            ..Limits::default()
        })
        .handler(move |_cx: Context, _e: Event| {
            let (f, h) = (f.clone(), h.clone());
            async move {
                if f.load(AtomicOrdering::SeqCst) {
                    return Err(Error::new(ErrorKind::Outbound, "down"));
                }
                h.add();
                Ok(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    submit(&bot, vec![event("a", "x".into()), event("b", "y".into())]).await;
    let before = tokio::time::Instant::now();
    // Idle only once both events failed twice (5 s apart) and were dead-lettered.
    bot.idle().await;
    assert!(before.elapsed() >= Duration::from_secs(5));
    let dead = bot.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.attempts == 2 && d.error == "down"));
    fail.store(false, AtomicOrdering::SeqCst);
    assert_eq!(bot.redrive_dead_letters(10).await.unwrap(), 2);
    bot.idle().await;
    assert_eq!(handled.count.load(AtomicOrdering::SeqCst), 2);
    assert!(bot.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(bot.shutdown().await.not_run(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panic_outside_the_handler_poll_fails_the_attempt_only() {
    let done = Arc::new(Done::default());
    let d = done.clone();
    let router = bot_core::Router::new()
        .route(
            |e: &Event| {
                assert!(e.id.as_str() != "boom", "predicate panicked on purpose");
                false
            },
            |_cx: Context, _e: Event| async { Ok::<_, Error>(()) },
        )
        .fallback(move |_cx: Context, _e: Event| {
            let d = d.clone();
            async move {
                d.add();
                Ok::<_, Error>(())
            }
        });
    let bot = Bot::builder()
        .limits(Limits {
            retry: RetryPolicy::none(),
            ..Limits::default()
        })
        .handler(router)
        .build()
        .unwrap();
    bot.start();
    submit(
        &bot,
        vec![event("a", "boom".into()), event("a", "after".into())],
    )
    .await;
    // The conversation moves on past the failed event, and shutdown ends.
    done.wait(1).await;
    bot.idle().await;
    let dead = bot.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].error.contains("predicate panicked"),
        "{}",
        dead[0].error
    );
    assert_eq!(bot.shutdown().await.not_run(), 0);
}

#[tokio::test(start_paused = true)]
async fn handlers_see_their_cancellation_on_timeout() {
    let saw = Arc::new(Done::default());
    let s = saw.clone();
    let bot = Bot::builder()
        .limits(Limits {
            handler_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::MAX,
            retry: RetryPolicy::none(),
            ..Limits::default()
        })
        .handler(move |cx: Context, _e: Event| {
            let s = s.clone();
            async move {
                cx.cancellation().cancelled().await;
                s.add();
                Err::<(), _>(Error::new(ErrorKind::Other, "stopped"))
            }
        })
        .build()
        .unwrap();
    bot.start();
    submit(&bot, vec![event("a", "slow".into())]).await;
    saw.wait(1).await;
    bot.idle().await;
    let dead = bot.dead_letters(10).await.unwrap();
    assert!(dead[0].error.contains("timed out"), "{}", dead[0].error);
    // `Duration::MAX` as shutdown_timeout means "wait": no overflow, and a quick drain.
    assert_eq!(bot.shutdown().await.not_run(), 0);
}

#[tokio::test]
async fn shutdown_stops_a_running_server() {
    let bot = Bot::builder()
        .handler(|_cx: Context, _e: Event| async { Ok::<_, Error>(()) })
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let serving = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    while !bot.is_ready() {
        tokio::task::yield_now().await;
    }
    let report = bot.shutdown().await;
    let served = tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("serve returned after shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(served, report);
}

#[tokio::test]
async fn evicted_dead_letters_are_counted() {
    let dead = Arc::new(Done::default());
    let d = dead.clone();
    let bot = Bot::builder()
        .limits(Limits {
            dead_letter_capacity: 2,
            retry: RetryPolicy::none(),
            ..Limits::default()
        })
        .on_dead_letter(move |_| d.add())
        .handler(|_cx: Context, _e: Event| async {
            Err::<(), _>(Error::new(ErrorKind::Other, "no"))
        })
        .build()
        .unwrap();
    bot.start();
    submit(
        &bot,
        (0..5)
            .map(|i| event(&format!("c{i}"), format!("e{i}")))
            .collect(),
    )
    .await;
    dead.wait(5).await;
    bot.idle().await;
    assert_eq!(bot.dead_letters(10).await.unwrap().len(), 2);
    let text = bot.telemetry().render_prometheus();
    assert_eq!(metric(&text, "bot_events_dead_total"), 5.0);
    assert_eq!(
        metric(
            &text,
            "bot_events_dropped_total{reason=\"dead_letter_evicted\"}"
        ),
        3.0
    );
    bot.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn tower_layers_wrap_handlers() {
    let gauge = Arc::new(Gauge::default());
    let done = Arc::new(Done::default());
    let (g, d) = (gauge.clone(), done.clone());
    let handler = move |_cx: Context, _e: Event| {
        let (g, d) = (g.clone(), d.clone());
        async move {
            g.enter();
            tokio::time::sleep(Duration::from_millis(10)).await;
            g.exit();
            d.add();
            Ok::<_, Error>(())
        }
    };
    // The runtime would run 64 at once; a tower concurrency limit of 2 shared by every call
    // (GlobalConcurrencyLimitLayer) holds it to 2.
    let layered = handler.layer(tower::limit::GlobalConcurrencyLimitLayer::new(2));
    let bot = Bot::builder()
        .limits(Limits {
            max_in_flight: 64,
            ordering: Ordering::Unordered,
            ..Limits::default()
        })
        .handler(layered)
        .build()
        .unwrap();
    bot.start();
    submit(&bot, (0..40).map(|i| event("c", format!("e{i}"))).collect()).await;
    done.wait(40).await;
    bot.shutdown().await;
    assert_eq!(gauge.max.load(AtomicOrdering::SeqCst), 2);
}

/// A memory queue whose leases "expire", to see the supervisor keep them alive.
#[derive(Debug)]
struct ExpiringLeases {
    inner: MemoryQueue,
    extended: Mutex<Vec<(bot_core::queue::Lease, tokio::time::Instant)>>,
    /// How long each acknowledgement takes (a slow database).
    ack_delay: Duration,
    /// Acknowledgements fail until then (a database refusing them for a while).
    acks_fail_until: Option<tokio::time::Instant>,
    /// Acknowledgement calls that failed.
    failed_acks: AtomicUsize,
}

impl ExpiringLeases {
    fn new() -> Self {
        Self {
            inner: MemoryQueue::new(&Limits::default()),
            extended: Mutex::new(Vec::new()),
            ack_delay: Duration::ZERO,
            acks_fail_until: None,
            failed_acks: AtomicUsize::new(0),
        }
    }

    /// When `lease` was extended.
    fn extensions_of(&self, lease: bot_core::queue::Lease) -> Vec<tokio::time::Instant> {
        self.extended
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| *l == lease)
            .map(|(_, at)| *at)
            .collect()
    }
}

#[async_trait::async_trait]
impl bot_core::Queue for ExpiringLeases {
    async fn push_batch(&self, events: Vec<Event>) -> Result<bot_core::queue::PushReport, Error> {
        self.inner.push_batch(events).await
    }
    async fn pull(&self, max: usize) -> Result<Vec<bot_core::queue::Delivery>, Error> {
        self.inner.pull(max).await
    }
    async fn ack(
        &self,
        leases: &[bot_core::queue::Lease],
    ) -> Result<bot_core::queue::Completed, Error> {
        tokio::time::sleep(self.ack_delay).await;
        if self
            .acks_fail_until
            .is_some_and(|until| tokio::time::Instant::now() < until)
        {
            self.failed_acks.fetch_add(1, AtomicOrdering::SeqCst);
            return Err(Error::new(
                ErrorKind::Queue,
                "injected: acknowledgement refused",
            ));
        }
        self.inner.ack(leases).await
    }
    async fn nack(
        &self,
        nacks: Vec<bot_core::queue::Nack>,
    ) -> Result<bot_core::queue::Completed, Error> {
        self.inner.nack(nacks).await
    }
    async fn dead(&self, dead: Vec<bot_core::queue::Dead>) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead(dead).await
    }
    async fn release(
        &self,
        deliveries: Vec<bot_core::queue::Delivery>,
    ) -> Result<bot_core::queue::Completed, Error> {
        self.inner.release(deliveries).await
    }
    async fn extend_lease(
        &self,
        leases: &[bot_core::queue::Lease],
        by: Duration,
    ) -> Result<bot_core::queue::Completed, Error> {
        assert_eq!(by, Duration::from_secs(3));
        let now = tokio::time::Instant::now();
        self.extended
            .lock()
            .unwrap()
            .extend(leases.iter().map(|l| (*l, now)));
        self.inner.extend_lease(leases, by).await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead_letters(limit).await
    }
    async fn redrive(&self, max: usize) -> Result<usize, Error> {
        self.inner.redrive(max).await
    }
    fn lease_duration(&self) -> Option<Duration> {
        Some(Duration::from_secs(3))
    }
    fn close(&self) {
        self.inner.close();
    }
    fn depth(&self) -> u64 {
        self.inner.depth()
    }
}

#[tokio::test(start_paused = true)]
async fn leases_of_long_handlers_are_extended_while_they_run() {
    let queue = Arc::new(ExpiringLeases::new());
    let done = Arc::new(Done::default());
    let d = done.clone();
    let bot = Bot::builder()
        .queue(queue.clone())
        .handler(move |_cx: Context, e: Event| {
            let d = d.clone();
            async move {
                let secs = if e.id.as_str() == "long" { 10 } else { 0 };
                tokio::time::sleep(Duration::from_secs(secs)).await;
                d.add();
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    let start = tokio::time::Instant::now();
    submit(
        &bot,
        vec![event("a", "long".into()), event("b", "quick".into())],
    )
    .await;
    done.wait(2).await;
    bot.idle().await;
    // Let time pass after the handler finished: its lease must not be extended any more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    bot.shutdown().await;
    let extended = queue.extended.lock().unwrap();
    let leases: std::collections::HashSet<_> = extended.iter().map(|(l, _)| *l).collect();
    assert_eq!(leases.len(), 1, "only the long handler's lease is extended");
    // Every third of the 3 s lease while the 10 s handler ran, and never after it finished.
    assert!(extended.len() >= 9, "extended {} times", extended.len());
    assert!(
        extended
            .iter()
            .all(|(_, at)| *at <= start + Duration::from_secs(10))
    );
}

/// The lease keeper used to be the last branch of the dispatcher's biased `select!`: while
/// completions kept arriving during each (slow) acknowledgement, it never ran and a long handler's
/// lease lapsed. A steady stream of quick handlers and 200 ms acknowledgements must not delay it.
#[tokio::test(start_paused = true)]
async fn the_lease_keeper_extends_on_time_under_a_saturated_dispatcher() {
    let queue = Arc::new(ExpiringLeases {
        ack_delay: Duration::from_millis(200),
        ..ExpiringLeases::new()
    });
    let long_lease = Arc::new(Mutex::new(None));
    let done = Arc::new(Done::default());
    let (d, l) = (done.clone(), long_lease.clone());
    let bot = Bot::builder()
        .queue(queue.clone())
        .limits(Limits {
            max_in_flight: 100,
            queue_capacity: 20_000,
            ..Limits::default()
        })
        .handler(move |cx: Context, e: Event| {
            let (d, l) = (d.clone(), l.clone());
            async move {
                let millis = if e.id.as_str() == "long" {
                    *l.lock().unwrap() = Some(tokio::time::Instant::now());
                    10_000
                } else {
                    // Spread over 0-3 s, so that some handler finishes during every ack.
                    let n: u64 = e.id.as_str()[1..].parse().unwrap();
                    (n * 7919) % 3000
                };
                let _ = cx.attempt();
                tokio::time::sleep(Duration::from_millis(millis)).await;
                d.add();
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    let mut events = vec![event("long", "long".into())];
    events.extend((0..3000).map(|i| event(&format!("c{i}"), format!("q{i}"))));
    submit(&bot, events).await;
    done.wait(3001).await;
    bot.idle().await;
    bot.shutdown().await;
    let started = long_lease.lock().unwrap().expect("the long handler ran");
    let extended = queue.extended.lock().unwrap().clone();
    // The long handler's lease is the one extended at its start + 1 s.
    let lease = extended
        .iter()
        .filter(|(_, at)| *at > started && *at <= started + Duration::from_millis(1500))
        .map(|(l, _)| *l)
        .find(|l| {
            let ats = queue.extensions_of(*l);
            ats.iter().any(|at| *at >= started + Duration::from_secs(9))
        })
        .expect("the long handler's lease was extended while it ran");
    let mut previous = started;
    for at in queue
        .extensions_of(lease)
        .into_iter()
        .filter(|at| *at <= started + Duration::from_secs(10))
    {
        assert!(
            at - previous <= Duration::from_millis(1100),
            "{:?} without an extension of a 3 s lease",
            at - previous
        );
        previous = at;
    }
    assert!(previous >= started + Duration::from_secs(9));
}

/// A failed acknowledgement is retried (its lease still extended meanwhile) until it applies:
/// the event is done once, and `idle` sees it finish.
#[tokio::test(start_paused = true)]
async fn a_failed_ack_is_retried_and_its_lease_kept_until_it_applies() {
    let t0 = tokio::time::Instant::now();
    let queue = Arc::new(ExpiringLeases {
        acks_fail_until: Some(t0 + Duration::from_secs(8)),
        ..ExpiringLeases::new()
    });
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let bot = Bot::builder()
        .queue(queue.clone())
        .handler(move |_cx: Context, _e: Event| {
            r.fetch_add(1, AtomicOrdering::SeqCst);
            async { Ok::<_, Error>(()) }
        })
        .build()
        .unwrap();
    bot.start();
    submit(&bot, vec![event("a", "only".into())]).await;
    tokio::time::timeout(Duration::from_secs(60), bot.idle())
        .await
        .expect("the acknowledgement was never applied");
    let acked_at = tokio::time::Instant::now();
    assert!(
        acked_at >= t0 + Duration::from_secs(8),
        "acked while refused"
    );
    assert!(
        acked_at <= t0 + Duration::from_secs(10),
        "the retry came late: {:?}",
        acked_at - t0
    );
    assert!(queue.failed_acks.load(AtomicOrdering::SeqCst) >= 3);
    // The lease of the finished, not yet acknowledged event was kept alive all along.
    let extended = queue.extended.lock().unwrap().clone();
    let mut ats: Vec<_> = extended.iter().map(|(_, at)| *at).collect();
    ats.sort();
    assert!(ats.len() >= 7, "extended {} times in 8 s", ats.len());
    assert!(
        ats.windows(2)
            .all(|w| w[1] - w[0] <= Duration::from_millis(1100))
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        queue.extensions_of(extended[0].0).len(),
        ats.len(),
        "not extended after its ack applied"
    );
    let report = bot.shutdown().await;
    assert_eq!(runs.load(AtomicOrdering::SeqCst), 1);
    assert_eq!(report.not_run(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_closed_queue_stops_the_pulls_without_spinning() {
    let queue = Arc::new(MemoryQueue::new(&Limits::default()));
    let bot = Bot::builder()
        .queue(queue.clone())
        .handler(|_cx: Context, _e: Event| async { Ok::<_, Error>(()) })
        .build()
        .unwrap();
    bot.start();
    bot_core::Queue::close(&*queue);
    // A dispatcher spinning on empty pulls would never let paused time move on.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(bot.shutdown().await.not_run(), 0);
    // Starting after a shutdown does nothing.
    bot.start();
    assert!(!bot.is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_ignores_cancellation_is_dropped_after_the_grace() {
    let started = Arc::new(Done::default());
    let s = started.clone();
    let bot = Bot::builder()
        .limits(Limits {
            shutdown_timeout: Duration::from_secs(2),
            ..Limits::default()
        })
        .handler(move |_cx: Context, _e: Event| {
            let s = s.clone();
            async move {
                s.add();
                // Ignores its cancellation token; only dropping it would stop it, and the
                // runtime stops waiting for it instead.
                loop {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                #[allow(unreachable_code)]
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    submit(
        &bot,
        vec![
            event("a", "stuck".into()),
            event("a", "behind-1".into()),
            event("a", "behind-2".into()),
        ],
    )
    .await;
    started.wait(1).await;
    let report = bot.shutdown().await;
    // A future that only sleeps is dropped after the grace, so it counts as cancelled; its two
    // followers never started.
    assert_eq!(
        (report.cancelled, report.abandoned, report.not_started),
        (1, 0, 2)
    );
    assert_eq!(report.not_run(), 3);
    // idle does not hang once the bot is down, whatever was left.
    bot.idle().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_waits_for_the_dead_letter_hook() {
    let hooked = Arc::new(AtomicUsize::new(0));
    let h = hooked.clone();
    let bot = Bot::builder()
        .limits(Limits {
            retry: RetryPolicy::none(),
            ..Limits::default()
        })
        .on_dead_letter(move |_| {
            // A slow hook (it blocks the dispatcher on purpose, which the docs warn against).
            std::thread::sleep(Duration::from_millis(100));
            h.fetch_add(1, AtomicOrdering::SeqCst);
        })
        .handler(|_cx: Context, _e: Event| async {
            Err::<(), _>(Error::new(ErrorKind::Other, "no"))
        })
        .build()
        .unwrap();
    bot.start();
    submit(&bot, vec![event("a", "x".into())]).await;
    bot.idle().await;
    assert_eq!(hooked.load(AtomicOrdering::SeqCst), 1);
    bot.shutdown().await;
}

/// A handler that blocks its thread cannot even be dropped: the shutdown leaves it behind after
/// the grace period and says so, instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_blocks_its_thread_is_abandoned_and_the_shutdown_ends() {
    let started = Arc::new(Done::default());
    let s = started.clone();
    let bot = Bot::builder()
        .limits(Limits {
            shutdown_timeout: Duration::from_millis(100),
            ..Limits::default()
        })
        .handler(move |_cx: Context, _e: Event| {
            let s = s.clone();
            async move {
                s.add();
                // Blocks the worker thread well past the drain, the grace and the abandon point.
                std::thread::sleep(Duration::from_secs(4));
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    submit(&bot, vec![event("a", "blocking".into())]).await;
    started.wait(1).await;
    let report = bot.shutdown().await;
    assert_eq!((report.cancelled, report.abandoned), (0, 1));
    assert_eq!(report.not_run(), 1);
}
