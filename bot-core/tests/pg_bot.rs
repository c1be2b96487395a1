//! The bot pipeline through `PgQueue`: webhooks commit before they answer, the supervisor runs
//! events from PostgreSQL, and two bots sharing one schema keep every conversation sequential
//! and in order.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::pg::{PgPool, PgQueue};
use bot_core::{BoxError, Context, Event, Limits};
use http::StatusCode;
use support::bot_contract::{
    an_event_failing_three_times_is_dead_lettered_and_redriven, bot_on,
    fifty_events_with_ten_redelivered,
};
use support::pg::{eventually, fresh_pool, queue_builder};
use support::{send_to, text_event, webhook_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_run_through_postgres_once_each() {
    let pool = fresh_pool("bot_e2e").await;
    let queue = Arc::new(queue_builder(&pool).build().unwrap());
    let mut seen = fifty_events_with_ten_redelivered(queue.clone()).await;
    let events: Vec<Event> = (0..50)
        .map(|i| text_event(&format!("c{}", i % 5), &format!("e{i}")))
        .collect();
    seen.sort();
    let mut expected: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    expected.sort();
    assert_eq!(seen, expected, "each event handled exactly once");
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.ready, stats.leased, stats.dead), (0, 0, 0));
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_events_are_retried_then_dead_lettered_and_redriven() {
    let pool = fresh_pool("bot_dead").await;
    let queue = Arc::new(queue_builder(&pool).build().unwrap());
    an_event_failing_three_times_is_dead_lettered_and_redriven(queue.clone(), || {}).await;
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answers_503_with_retry_after_when_postgres_is_unreachable() {
    let pool = PgPool::builder("postgres://postgres@127.0.0.1:1/postgres")
        .create_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let queue = Arc::new(
        PgQueue::builder(&pool)
            .listen(false)
            .retry_after(Duration::from_secs(3))
            .build()
            .unwrap(),
    );
    let bot = bot_on(
        queue.clone(),
        Limits::default(),
        |_cx: Context, _e: Event| async { Ok::<(), BoxError>(()) },
    );
    let res = send_to(&bot, webhook_request(&[text_event("c1", "e1")])).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.retry_after(), Some(3));
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answers_503_with_retry_after_when_the_postgres_queue_is_full() {
    let pool = fresh_pool("bot_full").await;
    let limits = Limits {
        queue_capacity: 2,
        ..Limits::default()
    };
    let queue = Arc::new(
        queue_builder(&pool)
            .limits(&limits)
            .retry_after(Duration::from_secs(4))
            .build()
            .unwrap(),
    );
    // Not started: nothing drains the queue.
    let bot = bot_on(queue.clone(), limits, |_cx: Context, _e: Event| async {
        Ok::<(), BoxError>(())
    });
    let first = [text_event("c1", "e1"), text_event("c2", "e2")];
    let res = send_to(&bot, webhook_request(&first)).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = send_to(&bot, webhook_request(&[text_event("c3", "e3")])).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.retry_after(), Some(4));
    assert_eq!(queue.counters().refused_full, 1);
    // Once handled, the redelivery is taken.
    bot.start();
    eventually(
        "the queued events to be handled",
        Duration::from_secs(30),
        || async { (queue.counters().acked == 2).then_some(()) },
    )
    .await;
    queue.stats().await.unwrap();
    let res = send_to(&bot, webhook_request(&[text_event("c3", "e3")])).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["accepted"], 1);
    bot.shutdown().await;
    queue.shutdown().await;
}

/// Per conversation: is a handler running, and which sequence number comes next.
#[derive(Default)]
struct Lanes {
    lanes: Mutex<HashMap<String, (bool, usize)>>,
    violations: Mutex<Vec<String>>,
    handled: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bots_keep_200_conversations_sequential_and_in_order() {
    const CONVERSATIONS: usize = 200;
    const PER_CONVERSATION: usize = 50;
    let pool = fresh_pool("bot_order").await;
    let lanes = Arc::new(Lanes::default());
    let handler = {
        let lanes = lanes.clone();
        move |_cx: Context, event: Event| {
            let lanes = lanes.clone();
            async move {
                let conv = event.conversation.to_string();
                let seq: usize = event
                    .id
                    .as_str()
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                {
                    let mut map = lanes.lanes.lock().unwrap();
                    let lane = map.entry(conv.clone()).or_default();
                    if lane.0 {
                        lanes
                            .violations
                            .lock()
                            .unwrap()
                            .push(format!("{conv}: {seq} overlapped"));
                    }
                    if lane.1 != seq {
                        lanes
                            .violations
                            .lock()
                            .unwrap()
                            .push(format!("{conv}: got {seq}, expected {}", lane.1));
                    }
                    lane.0 = true;
                }
                // Some work, so that an overlap would show.
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                {
                    let mut map = lanes.lanes.lock().unwrap();
                    let lane = map.get_mut(&conv).unwrap();
                    lane.0 = false;
                    lane.1 = seq + 1;
                }
                lanes.handled.fetch_add(1, AtomicOrdering::SeqCst);
                Ok::<(), BoxError>(())
            }
        }
    };
    let limits = Limits {
        max_in_flight: 64,
        ..Limits::default()
    };
    let qa = Arc::new(queue_builder(&pool).build().unwrap());
    let qb = Arc::new(queue_builder(&pool).build().unwrap());
    let a = bot_on(qa.clone(), limits.clone(), handler.clone());
    let b = bot_on(qb.clone(), limits, handler);
    a.start();
    b.start();
    // One webhook per conversation with all its events, alternating between the two bots, so
    // that the queue holds long runs of one conversation: anything but a per-conversation claim
    // would hand several of them out at once.
    for c in 0..CONVERSATIONS {
        let events: Vec<Event> = (0..PER_CONVERSATION)
            .map(|seq| text_event(&format!("c{c}"), &format!("c{c}-{seq}")))
            .collect();
        let bot = if c % 2 == 0 { &a } else { &b };
        let res = send_to(bot, webhook_request(&events)).await;
        assert_eq!(res.status, StatusCode::OK);
    }
    let total = CONVERSATIONS * PER_CONVERSATION;
    eventually("every event handled", Duration::from_secs(90), || async {
        (lanes.handled.load(AtomicOrdering::SeqCst) >= total).then_some(())
    })
    .await;
    let violations = lanes.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "ordering broken: {:?}",
        &violations[..violations.len().min(10)]
    );
    assert_eq!(
        lanes.handled.load(AtomicOrdering::SeqCst),
        total,
        "handled twice"
    );
    let map = lanes.lanes.lock().unwrap().clone();
    assert_eq!(map.len(), CONVERSATIONS);
    assert!(
        map.values()
            .all(|&(running, next)| !running && next == PER_CONVERSATION)
    );
    // Both processes did a share of the work.
    assert!(qa.counters().acked > 0 && qb.counters().acked > 0);
    a.shutdown().await;
    b.shutdown().await;
    qa.shutdown().await;
    qb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_answer_503_while_postgres_is_down_and_nothing_acknowledged_is_lost() {
    use support::pg::PgProxy;
    // The schema, made directly; the bot reaches the database through a proxy we can cut.
    let direct = fresh_pool("bot_outage").await;
    let proxy = PgProxy::start().await;
    let pool = PgPool::builder(proxy.url())
        .schema(direct.schema())
        .create_timeout(Duration::from_secs(1))
        .wait_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let queue = Arc::new(
        queue_builder(&pool)
            // Acknowledgements that fail while the database is down leave their leases to
            // expire; a short lease makes those events come back quickly.
            .lease_duration(Duration::from_secs(1))
            .push_timeout(Duration::from_secs(2))
            .retry_after(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let seen = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
    let handler = {
        let seen = seen.clone();
        move |_cx: Context, event: Event| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().insert(event.id.to_string());
                Ok::<(), BoxError>(())
            }
        }
    };
    let bot = bot_on(queue.clone(), Limits::default(), handler);
    bot.start();
    let batch = |n: usize| -> Vec<Event> {
        (0..10)
            .map(|i| text_event(&format!("c{i}"), &format!("b{n}-{i}")))
            .collect()
    };
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for n in 0..5 {
        let events = batch(n);
        let res = send_to(&bot, webhook_request(&events)).await;
        assert_eq!(res.status, StatusCode::OK);
        acknowledged.extend(events.iter().map(|e| e.id.to_string()));
    }
    proxy.cut();
    // While it is down: 503 with Retry-After, never a 2xx.
    for n in 5..8 {
        let events = batch(n);
        let res = send_to(&bot, webhook_request(&events)).await;
        assert_eq!(
            res.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            res.text()
        );
        assert_eq!(res.retry_after(), Some(1));
        refused.push(events);
    }
    proxy.resume();
    // Back: the platform redelivers what was refused, and new events come.
    for events in refused.into_iter().chain((8..10).map(batch)) {
        let res = eventually("the database back", Duration::from_secs(30), || {
            let bot = bot.clone();
            let events = events.clone();
            async move {
                let res = send_to(&bot, webhook_request(&events)).await;
                (res.status == StatusCode::OK).then_some(res)
            }
        })
        .await;
        assert_eq!(res.status, StatusCode::OK);
        acknowledged.extend(events.iter().map(|e| e.id.to_string()));
    }
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let missing: Vec<String> = {
                let seen = seen.lock().unwrap();
                acknowledged
                    .iter()
                    .filter(|id| !seen.contains(*id))
                    .cloned()
                    .collect()
            };
            if missing.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if outcome.is_err() {
        let missing: Vec<String> = {
            let seen = seen.lock().unwrap();
            acknowledged
                .iter()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect()
        };
        panic!(
            "acknowledged events not handled: {missing:?}; stats {:?}; counters {:?}",
            queue.stats().await,
            queue.counters()
        );
    }
    assert_eq!(seen.lock().unwrap().len(), 100);
    bot.shutdown().await;
    queue.shutdown().await;
}
