//! A handler's error that says when to retry (a platform's `Retry-After`) is retried no sooner
//! than that, even when the retry policy's back-off is shorter.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bot_core::testing::{self, TestBot};
use bot_core::{Context, Error, ErrorKind, Event, Limits, RetryPolicy};

#[tokio::test]
async fn a_retry_waits_for_the_hint_of_the_error_not_only_the_backoff() {
    let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = attempts.clone();
    let handler = move |_cx: Context, _event: Event| {
        let seen = seen.clone();
        async move {
            let mut seen = seen.lock().unwrap();
            seen.push(Instant::now());
            if seen.len() == 1 {
                return Err(Error::new(ErrorKind::RateLimited, "rate limited")
                    .with_retry_after(Duration::from_millis(400)));
            }
            Ok(())
        }
    };
    let limits = Limits {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            multiplier: 1.0,
            jitter: 0.0,
        },
        ..Limits::default()
    };
    let bot = TestBot::builder()
        .limits(limits)
        .handler(handler)
        .build()
        .unwrap();
    bot.send(testing::text("U1", "hi")).await.unwrap();
    bot.idle().await;
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 2, "retried once, then succeeded");
    let gap = attempts[1] - attempts[0];
    assert!(
        gap >= Duration::from_millis(400),
        "retried after {gap:?}, before the error's hint"
    );
}
