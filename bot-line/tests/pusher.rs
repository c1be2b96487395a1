//! Bulk pushes through `bot_core::pusher::Pusher`, one LINE client per HTTP/2 connection.

use std::collections::HashSet;
use std::time::Duration;

use bot_core::Overflow;
use bot_core::pusher::Pusher;
use bot_core::testing::fake_api::{FakeApi, FakeResponse, Latency};
use bot_line::model::send::Message;
use bot_line::testing::FakeLine;
use bot_line::{ConfigureApi, LineClient, RateLimits, RetryKey};
use http::StatusCode;

const TOKEN: &str = "token";

/// `k` clients, each on its own h2c connection, without LINE's push limit.
fn clients(fake: &FakeLine, k: usize) -> Vec<LineClient> {
    (0..k)
        .map(|_| {
            LineClient::builder(TOKEN)
                .api_base(fake.url())
                .http2_prior_knowledge()
                .rate_limits(RateLimits {
                    push_per_second: 1_000_000,
                    ..RateLimits::default()
                })
                .build()
                .unwrap()
        })
        .collect()
}

async fn push(client: LineClient, to: String) -> Result<(), bot_line::Error> {
    client
        .push(&to, &[Message::text("sale")], Some(RetryKey::random()))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_keep_to_the_window_of_each_connection_and_each_arrives_once() {
    // The fake allows 50 streams per connection; the pusher's window of 10 is what holds.
    let fake = FakeLine::start_with(
        TOKEN,
        FakeApi::builder()
            .max_concurrent_streams(50)
            .latency(Latency::Fixed(Duration::from_millis(10))),
    )
    .await
    .unwrap();
    let pusher = Pusher::builder()
        .window(10)
        .capacity(100)
        .overflow(Overflow::Wait)
        .start(clients(&fake, 3), push)
        .unwrap();
    for n in 0..900 {
        pusher.push(format!("U{n:032x}")).await.unwrap();
    }
    let report = pusher.close().await;
    assert_eq!((report.sent, report.failed, report.dropped()), (900, 0, 0));
    let pushes = fake.pushes();
    assert_eq!(pushes.len(), 900);
    let users: HashSet<&str> = pushes.iter().map(|p| p.to.as_str()).collect();
    assert_eq!(users.len(), 900);
    assert!(pushes.iter().all(|p| p.status == StatusCode::OK));
    assert_eq!(fake.api().connections(), 3);
    assert_eq!(fake.api().peak_in_flight_per_connection(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_stream_limit_caps_a_larger_window_and_failures_are_counted() {
    // A window above the announced 4 streams: the client queues, the connection never has more.
    let fake = FakeLine::start_with(
        TOKEN,
        FakeApi::builder()
            .max_concurrent_streams(4)
            .latency(Latency::Fixed(Duration::from_millis(5))),
    )
    .await
    .unwrap();
    // 400s are not retried by the client: each is one failed push.
    fake.api().add_failure_rate(
        0.2,
        FakeResponse::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"message": "bad"}),
        ),
    );
    let pusher = Pusher::builder()
        .window(16)
        .capacity(1_000)
        .start(clients(&fake, 2), push)
        .unwrap();
    for n in 0..400 {
        pusher.try_push(format!("U{n}")).unwrap();
    }
    let report = pusher.close().await;
    let refused = fake
        .api()
        .calls()
        .iter()
        .filter(|c| c.status == StatusCode::BAD_REQUEST)
        .count() as u64;
    assert!(refused > 40, "{refused} of 400 at 20 %");
    assert_eq!((report.sent, report.failed), (400 - refused, refused));
    assert!(report.is_balanced(), "{report:?}");
    assert!(fake.api().peak_in_flight_per_connection() <= 4);
}
