//! Shutdown and idleness: the drain, cancellation, abandoned handlers, `idle`.
#![allow(clippy::disallowed_methods)] // tests spawn producers directly

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use bot_core::{Bot, Context, Error, ErrorKind, Event, Limits, MemoryQueue, RetryPolicy};
use support::supervisor::{Done, event, metric, submit};

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
