//! The bot pipeline through `JetStreamQueue`: webhooks answer once JetStream stored their
//! events, the supervisor runs them from the stream once each, failing events are retried with
//! back-off, dead-lettered after the last attempt and re-driven.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::nats::JetStreamQueue;
use bot_core::{Bot, BoxError, Context, Event, Limits, RetryPolicy};
use http::StatusCode;
use support::nats::{Cleanup, connect, queue_builder, unique_name};
use support::{JsonAdapter, send_to, text_event, webhook_request};

fn bot_on(queue: Arc<JetStreamQueue>, limits: Limits, handler: impl bot_core::Handler) -> Bot {
    Bot::builder()
        .adapter(JsonAdapter)
        .limits(limits)
        .queue(queue)
        .handler(handler)
        .build()
        .expect("bot builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_run_through_jetstream_once_each_in_order() {
    let name = unique_name("bot_e2e");
    let _cleanup = Cleanup::new(&name);
    let queue = Arc::new(queue_builder(connect().await, &name).build().await.unwrap());
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let handler = {
        let seen = seen.clone();
        move |_cx: Context, event: Event| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(event.id.to_string());
                Ok::<(), BoxError>(())
            }
        }
    };
    let bot = bot_on(queue.clone(), Limits::default(), handler);
    bot.start();
    let events: Vec<Event> = (0..50)
        .map(|i| text_event(&format!("c{}", i % 5), &format!("e{i}")))
        .collect();
    let res = send_to(&bot, webhook_request(&events)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["accepted"], 50);
    // The platform redelivers the first ten.
    let res = send_to(&bot, webhook_request(&events[..10])).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["duplicates"], 10);
    tokio::time::timeout(Duration::from_secs(30), bot.idle())
        .await
        .expect("every event handled");
    let seen = seen.lock().unwrap().clone();
    // Each conversation in push order, each event once.
    for conv in 0..5 {
        let order: Vec<&String> = seen
            .iter()
            .filter(|id| id[1..].parse::<usize>().unwrap() % 5 == conv)
            .collect();
        let want: Vec<String> = (0..10).map(|k| format!("e{}", k * 5 + conv)).collect();
        assert_eq!(
            order,
            want.iter().collect::<Vec<_>>(),
            "conversation c{conv}"
        );
    }
    assert_eq!(seen.len(), 50);
    bot.shutdown().await;
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_events_are_retried_then_dead_lettered_and_redriven() {
    let name = unique_name("bot_dead");
    let _cleanup = Cleanup::new(&name);
    let queue = Arc::new(queue_builder(connect().await, &name).build().await.unwrap());
    let attempts = Arc::new(AtomicUsize::new(0));
    let handler = {
        let attempts = attempts.clone();
        move |_cx: Context, _event: Event| {
            let attempts = attempts.clone();
            async move {
                // Fails its three attempts; the re-driven fourth run succeeds.
                if attempts.fetch_add(1, AtomicOrdering::SeqCst) < 3 {
                    return Err::<(), BoxError>("failing".into());
                }
                Ok(())
            }
        }
    };
    let limits = Limits {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        ..Limits::default()
    };
    let bot = bot_on(queue.clone(), limits, handler);
    bot.start();
    let res = send_to(&bot, webhook_request(&[text_event("c1", "e1")])).await;
    assert_eq!(res.status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(30), bot.idle())
        .await
        .expect("dead-lettered");
    assert_eq!(attempts.load(AtomicOrdering::SeqCst), 3);
    let letters = bot.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(queue.counters().nacked, 2);
    assert_eq!(bot.redrive_dead_letters(10).await.unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(30), bot.idle())
        .await
        .expect("re-driven event handled");
    assert_eq!(attempts.load(AtomicOrdering::SeqCst), 4);
    assert!(bot.dead_letters(10).await.unwrap().is_empty());
    bot.shutdown().await;
    queue.shutdown().await;
}
