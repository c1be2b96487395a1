//! Acceptance tests of the supervisor: the in-flight bound, per-conversation order, tower
//! layers. Failures, overflow, shutdown and leases have files of their own (`supervisor_*.rs`).
#![allow(clippy::disallowed_methods)] // tests spawn producers directly

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::{Bot, Context, Error, Event, HandlerExt, Limits, MemoryQueue, Ordering};
use support::supervisor::{Done, Gauge, event, submit};

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
