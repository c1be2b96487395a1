//! The supervisor and failing handlers: panics, errors, time-outs, retries, dead letters.
#![allow(clippy::disallowed_methods)] // tests spawn producers directly

mod support;

use std::collections::HashMap;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::handler::Permanent;
use bot_core::queue::DeadLetter;
use bot_core::{Bot, Context, Error, ErrorKind, Event, HandlerExt, Limits, RetryPolicy};
use support::supervisor::{Done, event, metric, submit};

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
