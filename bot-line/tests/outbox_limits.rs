//! The durable outbox under a rate limit lower than its senders' window: the messages in
//! flight wait their turn under the LINE client's push limit longer than a call's deadline.
//! A send that waited out its deadline without sending anything is not an attempt: it waits
//! again, so every message goes out, once, and none becomes a dead letter for waiting.
//!
//! Needs PostgreSQL (`DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/postgres);
//! fails without it.

mod outbox_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bot_core::outbox::{Outbox, OutboxMessage};
use bot_core::{Outbound, Platform, RetryPolicy};
use bot_line::testing::FakeLine;
use bot_line::{ConfigureApi, LineClient, RateLimits};
use outbox_support::{assert_each_recipient_once, pool_without};

const TOKEN: &str = "outbox-limits-token";
const MESSAGES: usize = 30;
const PUSHES_PER_SECOND: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_wait_out_their_deadline_under_a_low_limit_are_sent_not_dead() {
    let schema = "t_outbox_low_limit";
    let pool = pool_without(schema, 4).await;
    let fake = FakeLine::start(TOKEN).await.unwrap();
    // Two attempts at most: a message whose waits counted as attempts would be dead after two.
    let outbox = Outbox::builder(&pool)
        .schema(schema)
        .max_in_flight(MESSAGES)
        .retry(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            jitter: 0.0,
        })
        .build()
        .await
        .unwrap();
    let users: Vec<String> = (0..MESSAGES).map(|n| format!("U{n:032x}")).collect();
    let queued = outbox
        .send_many(
            "low-limit",
            users
                .iter()
                .map(|u| OutboxMessage::new(Platform::LINE, u.as_str(), "hello")),
        )
        .await
        .unwrap();
    assert_eq!(queued.queued, MESSAGES);
    // All 30 in flight at once, 10 pushes a second, and half a second per call: most of them
    // wait out their call's deadline, some several times.
    let client: Arc<dyn Outbound> = Arc::new(
        LineClient::builder(TOKEN)
            .api_base(fake.url())
            .http2_prior_knowledge()
            .rate_limits(RateLimits {
                push_per_second: PUSHES_PER_SECOND,
                ..RateLimits::default()
            })
            .deadline(Duration::from_millis(500))
            .build()
            .unwrap(),
    );
    let senders = outbox.senders([client]).unwrap();
    senders.start();
    let started = Instant::now();
    while outbox.pending("low-limit").await.unwrap() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} messages left after 30 s; counts {:?}",
            outbox.pending("low-limit").await.unwrap(),
            outbox.counts()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    senders.shutdown().await;

    assert_each_recipient_once(&fake, MESSAGES);
    let counts = outbox.counts();
    assert_eq!(counts.dead, 0, "{counts:?}");
    assert_eq!(
        counts.failed, 0,
        "waiting is not a failed attempt: {counts:?}"
    );
    assert_eq!(counts.sent, MESSAGES as u64, "{counts:?}");
    assert!(
        counts.waited >= 10,
        "most messages waited past their deadline: {counts:?}"
    );
    assert!(outbox.dead_letters(10).await.unwrap().is_empty());
}
