//! Fault suite, Discord outbound: sends that cannot be made idempotent are never sent twice
//! after an ambiguous failure, and a long rate limit fails the call with its hint instead of
//! holding the handler.
#![allow(clippy::disallowed_methods)] // the cutting server runs in a spawned task

/// Prints what a fault case counted straight to stderr, past the test harness's capture, so
/// that CI's log shows it for passing tests too.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::event::ReplyToken;
use bot_core::outbound::Target;
use bot_core::testing::fake_api::{FakeResponse, Fault};
use bot_core::{EventId, Outbound, OutgoingMessage, RetryPolicy};
use bot_discord::ConfigureApi as _;
use bot_discord::interactions::Pending;
use bot_discord::testing::FakeDiscordApi;
use bot_discord::{DiscordClient, DiscordHttp, ErrorKind};
use http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const TOKEN: &str = "outbound-faults-token";
const APPLICATION: &str = "1000000000000000002";

fn quick(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

/// An HTTP/1.1 server that reads each request whole, records `METHOD path`, then answers 204,
/// except for follow-ups (`/webhooks/...`): it cuts their connection without a word, as a proxy
/// or Discord's edge may after passing the request on.
async fn cutting_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let calls = recorded.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0_u8; 4096];
                let (head_end, length) = loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while request.len() < head_end + length {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let line = String::from_utf8_lossy(&request[..head_end]);
                let mut words = line.split_whitespace();
                let call = format!(
                    "{} {}",
                    words.next().unwrap_or_default(),
                    words.next().unwrap_or_default()
                );
                let cut = call.contains(" /webhooks/");
                calls.lock().unwrap().push(call);
                if !cut {
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                }
                // Dropped: the connection closes, answered or not.
            });
        }
    });
    (url, calls)
}

fn interaction_target(event: &str) -> Target {
    let mut target = Target::conversation("5000");
    target.reply_token = Some(ReplyToken::new("interaction-token-1"));
    target.in_reply_to = Some(EventId::new("1300000000000000001"));
    target.origin = Some(EventId::new(event));
    target
}

#[tokio::test]
async fn a_follow_up_cut_after_it_was_sent_is_not_sent_again_by_the_client_or_a_retried_handler() {
    let (url, calls) = cutting_server().await;
    let http = DiscordHttp::builder(TOKEN)
        .api_base(&url)
        .retry(quick(4))
        .build()
        .unwrap();
    let client = DiscordClient::new(
        http.clone(),
        Some(APPLICATION.to_owned()),
        Arc::new(Pending::default()),
    );
    let target = interaction_target("1300000000000000001");
    let reply = vec![
        OutgoingMessage::text("first"),
        OutgoingMessage::text("second"),
    ];

    // The callback goes through; the follow-up's connection is cut after the request.
    let error = client.send(&target, reply.clone()).await.unwrap_err();
    let count = |calls: &Arc<Mutex<Vec<String>>>, prefix: &str| {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    };
    assert_eq!(count(&calls, "POST /interactions/"), 1);
    assert_eq!(
        count(&calls, "POST /webhooks/"),
        1,
        "the follow-up may have been delivered: not sent again"
    );
    assert!(
        error.is_retryable(),
        "the part is remembered, so the handler may run again: {error}"
    );

    // The runtime runs the handler again: both parts are known as sent, nothing goes out.
    client.send(&target, reply.clone()).await.unwrap();
    assert_eq!(
        count(&calls, "POST /interactions/"),
        1,
        "no second response"
    );
    assert_eq!(
        count(&calls, "POST /webhooks/"),
        1,
        "no duplicate follow-up"
    );

    // Another send of the same handler (send index 1) is a new message.
    let mut next = target.clone();
    next.send_index = 1;
    let _ = client
        .send(&next, vec![OutgoingMessage::text("third")])
        .await;
    assert_eq!(
        count(&calls, "POST /webhooks/"),
        1,
        "index 1 answers by callback"
    );
    assert_eq!(count(&calls, "POST /interactions/"), 2);

    // Straight through the REST client: one attempt, flagged, and permanent for the runtime.
    let direct = http
        .create_followup(APPLICATION, "interaction-token-2", &json!({"content": "x"}))
        .await
        .unwrap_err();
    assert!(direct.maybe_delivered());
    assert_eq!(direct.attempts(), 1);
    assert_eq!(count(&calls, "POST /webhooks/"), 2);
    assert!(!bot_core::Error::from(direct).is_retryable());
    report!(
        "faults_outbound: calls {:?}",
        calls.lock().unwrap().as_slice()
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_since_nothing_was_sent() {
    // A port with nothing listening: the connection is refused before any request is written.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = DiscordHttp::builder(TOKEN)
        .api_base(format!("http://127.0.0.1:{port}"))
        .retry(quick(3))
        .build()
        .unwrap();
    let error = http
        .create_followup(APPLICATION, "t", &json!({"content": "x"}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transport);
    assert!(!error.maybe_delivered());
    assert_eq!(error.attempts(), 3, "retried: nothing went out");
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_cap_fails_at_once_with_its_hint() {
    let api = FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1)
        .await
        .unwrap();
    let http = DiscordHttp::builder(TOKEN)
        .api_base(api.url())
        .retry(quick(4))
        .max_retry_after(Duration::from_secs(2))
        .build()
        .unwrap();
    api.api().inject(
        Fault::response(FakeResponse::json(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"message": "You are being rate limited.", "retry_after": 3600.0, "global": false}),
        ))
        .on_path("/channels/111/")
        .header("x-ratelimit-bucket", "slow-bucket")
        .header("x-ratelimit-limit", "5")
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset-after", "3600.000")
        .header("x-ratelimit-scope", "user"),
    );
    let body = json!({"content": "hi", "nonce": "n1", "enforce_nonce": true});
    let started = tokio::time::Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(10), http.create_message("111", &body))
        .await
        .expect("the call gives up instead of waiting an hour")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(error.attempts(), 1);
    // The runtime gets a retryable rate limit with the hint, to retry the handler later.
    let core = bot_core::Error::from(error);
    assert!(core.is_retryable());
    assert!(core.retry_after().unwrap() >= Duration::from_secs(3599));

    // The bucket stays paused: the next call is refused at once with what is left of the wait.
    let again = tokio::time::timeout(Duration::from_secs(10), http.create_message("111", &body))
        .await
        .expect("refused at once")
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::RateLimited);
    assert!(again.retry_after().unwrap() > Duration::from_secs(3500));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(api.api().calls_to("/channels/111/messages").len(), 1);

    // A short one is still waited and retried.
    api.api().inject(
        Fault::response(FakeResponse::json(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"message": "You are being rate limited.", "retry_after": 0.05, "global": false}),
        ))
        .on_path("/channels/222/"),
    );
    http.create_message(
        "222",
        &json!({"content": "x", "nonce": "n2", "enforce_nonce": true}),
    )
    .await
    .unwrap();
}
