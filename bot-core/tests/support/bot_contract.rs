//! What every durable queue backend must do under a whole bot, written once and run against each
//! (`pg_bot.rs`, `nats_bot.rs`): webhook events handled once each with redeliveries dropped, and
//! a failing event retried, dead-lettered after its last attempt and re-driven.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::queue::Queue;
use bot_core::{Bot, BoxError, Context, Event, Limits, RetryPolicy};
use http::StatusCode;

use super::{JsonAdapter, send_to, text_event, webhook_request};

/// A bot on `queue` with the JSON test adapter.
pub(crate) fn bot_on(
    queue: Arc<dyn Queue>,
    limits: Limits,
    handler: impl bot_core::Handler,
) -> Bot {
    Bot::builder()
        .adapter(JsonAdapter)
        .limits(limits)
        .queue(queue)
        .handler(handler)
        .build()
        .expect("bot builds")
}

/// Fifty events of five conversations (`e{i}` in `c{i % 5}`) posted as one webhook, the first ten
/// posted again (the platform redelivers): the ids the handler saw, in the order it saw them,
/// once every event was handled. The bot is shut down; the queue is the caller's.
pub(crate) async fn fifty_events_with_ten_redelivered(queue: Arc<dyn Queue>) -> Vec<String> {
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
    let bot = bot_on(queue, Limits::default(), handler);
    bot.start();
    let events: Vec<Event> = (0..50)
        .map(|i| text_event(&format!("c{}", i % 5), &format!("e{i}")))
        .collect();
    let res = send_to(&bot, webhook_request(&events)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["accepted"], 50);
    let res = send_to(&bot, webhook_request(&events[..10])).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["duplicates"], 10);
    tokio::time::timeout(Duration::from_secs(30), bot.idle())
        .await
        .expect("every event handled");
    bot.shutdown().await;
    seen.lock().unwrap().clone()
}

/// One event whose handler fails its three attempts: it is dead-lettered with three attempts,
/// `dead_lettered` runs (the backend's own checks), and once re-driven its fourth run succeeds
/// and no dead letter is left. The bot is shut down; the queue is the caller's.
pub(crate) async fn an_event_failing_three_times_is_dead_lettered_and_redriven(
    queue: Arc<dyn Queue>,
    dead_lettered: impl FnOnce(),
) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let handler = {
        let attempts = attempts.clone();
        move |_cx: Context, _event: Event| {
            let attempts = attempts.clone();
            async move {
                if attempts.fetch_add(1, Ordering::SeqCst) < 3 {
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
    let bot = bot_on(queue, limits, handler);
    bot.start();
    let res = send_to(&bot, webhook_request(&[text_event("c1", "e1")])).await;
    assert_eq!(res.status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(30), bot.idle())
        .await
        .expect("dead-lettered");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let letters = bot.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    dead_lettered();
    assert_eq!(bot.redrive_dead_letters(10).await.unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(30), bot.idle())
        .await
        .expect("re-driven event handled");
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert!(bot.dead_letters(10).await.unwrap().is_empty());
    bot.shutdown().await;
}
