//! The REST client against the fake API: buckets, the global limit, retries, the invalid
//! request guard, nonces.
#![allow(clippy::disallowed_methods)] // concurrent calls run in spawned tasks

use std::sync::Arc;
use std::time::Duration;

use bot_core::RetryPolicy;
use bot_core::testing::fake_api::{FakeResponse, Fault};
use bot_discord::ConfigureApi as _;
use bot_discord::testing::FakeDiscordApi;
use bot_discord::{DiscordHttp, ErrorKind};
use http::StatusCode;
use serde_json::json;

const TOKEN: &str = "rest-token";

fn quick(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

async fn setup(max_attempts: u32) -> (FakeDiscordApi, DiscordHttp) {
    let api = FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1)
        .await
        .unwrap();
    let http = DiscordHttp::builder(TOKEN)
        .api_base(api.url())
        .retry(quick(max_attempts))
        .build()
        .unwrap();
    (api, http)
}

#[tokio::test]
async fn an_empty_bucket_holds_its_route_until_reset_while_other_routes_go() {
    let (api, http) = setup(3).await;
    api.api().inject(
        Fault::response(FakeResponse::json(StatusCode::OK, &json!({"id": "1"})))
            .on_path("/channels/111/")
            .header("x-ratelimit-bucket", "messages-bucket")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset-after", "1.000"),
    );
    http.create_message("111", &json!({"content": "first"}))
        .await
        .unwrap();
    let held = tokio::spawn({
        let http = http.clone();
        async move {
            http.create_message("111", &json!({"content": "second"}))
                .await
        }
    });
    http.create_message("222", &json!({"content": "elsewhere"}))
        .await
        .unwrap();
    held.await.unwrap().unwrap();

    let calls = api.api().calls();
    let at = |content: &str| {
        calls
            .iter()
            .find(|c| c.request.json()["content"] == content)
            .unwrap()
            .request
            .received_at
    };
    assert!(
        at("elsewhere") - at("first") < Duration::from_millis(500),
        "another channel is not held"
    );
    assert!(
        at("second") - at("first") >= Duration::from_millis(990),
        "held {:?}",
        at("second") - at("first")
    );
}

#[tokio::test]
async fn a_global_429_pauses_every_route_for_retry_after() {
    let (api, http) = setup(3).await;
    api.api().inject(
        Fault::status(StatusCode::TOO_MANY_REQUESTS)
            .json(&json!({"message": "You are being rate limited.", "retry_after": 1.0, "global": true}))
            .header("x-ratelimit-global", "true")
            .header("x-ratelimit-scope", "global"),
    );
    let first = tokio::spawn({
        let http = http.clone();
        async move {
            http.create_message("111", &json!({"content": "limited"}))
                .await
        }
    });
    // Once the client has read the 429 (it counts it as invalid), the other route must wait.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while http.invalid_requests() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 429 never came back"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    http.create_message("222", &json!({"content": "other route"}))
        .await
        .unwrap();
    first.await.unwrap().unwrap();

    let calls = api.api().calls();
    assert_eq!(calls[0].status, 429);
    let other = calls
        .iter()
        .find(|c| c.request.json()["content"] == "other route")
        .unwrap();
    let paused = other.request.received_at - calls[0].request.received_at;
    assert!(
        paused >= Duration::from_millis(950),
        "other route went after {paused:?}"
    );
    assert_eq!(http.invalid_requests(), 1, "a global 429 counts as invalid");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_with_a_typed_error() {
    let (api, http) = setup(3).await;
    api.api()
        .inject(Fault::status(StatusCode::BAD_GATEWAY).times(2));
    // With a nonce a retry cannot post twice: retried.
    http.create_message(
        "1",
        &json!({"content": "x", "nonce": "x1", "enforce_nonce": true}),
    )
    .await
    .unwrap();
    let statuses: Vec<u16> = api
        .api()
        .calls()
        .iter()
        .map(|c| c.status.as_u16())
        .collect();
    assert_eq!(statuses, [502, 502, 200]);

    api.api()
        .inject(Fault::status(StatusCode::SERVICE_UNAVAILABLE).times(3));
    let error = http
        .create_message("1", &json!({"content": "y"}))
        .await
        .unwrap_err();
    assert_eq!((error.kind(), error.attempts()), (ErrorKind::Server, 3));
    assert!(!error.maybe_delivered(), "a 503 says nothing was done");

    // Without a nonce, a 502 may hide a posted message: not sent again.
    api.api().inject(Fault::status(StatusCode::BAD_GATEWAY));
    let error = http
        .create_message("1", &json!({"content": "w"}))
        .await
        .unwrap_err();
    assert_eq!((error.kind(), error.attempts()), (ErrorKind::Server, 1));
    assert!(error.maybe_delivered());

    api.api().inject(Fault::response(FakeResponse::json(
        StatusCode::BAD_REQUEST,
        &json!({"code": 50035, "message": "Invalid Form Body"}),
    )));
    let error = http
        .create_message("1", &json!({"content": "z"}))
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind(), error.code(), error.attempts()),
        (ErrorKind::Api, Some(50035), 1)
    );
}

#[tokio::test]
async fn the_client_stops_sending_before_the_invalid_request_ban() {
    let api = FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1)
        .await
        .unwrap();
    let http = DiscordHttp::builder(TOKEN)
        .api_base(api.url())
        .retry(quick(1))
        .invalid_budget(3)
        .build()
        .unwrap();
    api.api()
        .inject(Fault::status(StatusCode::FORBIDDEN).times(3));
    for _ in 0..3 {
        assert_eq!(
            http.create_message("1", &json!({"content": "x"}))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Api
        );
    }
    let error = http
        .create_message("1", &json!({"content": "x"}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequestLimit);
    assert!(error.retry_after().unwrap() > Duration::from_secs(590));
    assert_eq!(api.api().call_count(), 3, "the refused call never left");

    let stranger = DiscordHttp::builder("wrong")
        .api_base(api.url())
        .retry(quick(3))
        .build()
        .unwrap();
    let error = stranger.gateway_bot().await.unwrap_err();
    assert_eq!(
        (error.kind(), error.attempts()),
        (ErrorKind::Authentication, 1)
    );
}

#[tokio::test]
async fn nonces_let_a_retried_send_through_once_and_two_sends_twice() {
    let (api, http) = setup(3).await;
    // Two processes: the handler's retry runs in the other one, which has not seen the sends
    // (the same process would skip them from its memory without asking Discord).
    let client = bot_discord::DiscordClient::new(http.clone(), None, Arc::default());
    let other = bot_discord::DiscordClient::new(http, None, Arc::default());
    let event = bot_core::EventId::new("1180000000000000000");
    let working = bot_core::OutgoingMessage::text("working on it");
    let done = bot_core::OutgoingMessage::text("done");
    let reference = Some("1180000000000000000");
    client
        .post(
            "c1",
            std::slice::from_ref(&working),
            Some((&event, 0)),
            reference,
        )
        .await
        .unwrap();
    client
        .post("c1", std::slice::from_ref(&done), Some((&event, 1)), None)
        .await
        .unwrap();
    // The runtime retries the handler: the same two sends, with the same nonces.
    other
        .post(
            "c1",
            std::slice::from_ref(&working),
            Some((&event, 0)),
            reference,
        )
        .await
        .unwrap();
    other
        .post("c1", std::slice::from_ref(&done), Some((&event, 1)), None)
        .await
        .unwrap();
    // In the same process, the retry is skipped before it reaches Discord.
    client
        .post("c1", std::slice::from_ref(&done), Some((&event, 1)), None)
        .await
        .unwrap();

    assert_eq!(
        api.messages_in("c1"),
        ["working on it", "done"],
        "two messages, each once"
    );
    let bodies: Vec<_> = api
        .api()
        .calls_to("/channels/c1/messages")
        .iter()
        .map(|c| c.request.json())
        .collect();
    assert_eq!(bodies.len(), 4);
    assert_eq!(bodies[0]["nonce"], bodies[2]["nonce"]);
    assert_ne!(bodies[0]["nonce"], bodies[1]["nonce"]);
    assert_eq!(bodies[0]["enforce_nonce"], true);
    assert_eq!(
        bodies[0]["message_reference"]["message_id"],
        "1180000000000000000"
    );
    let info = client.http().gateway_bot().await.unwrap();
    assert_eq!(
        (info.shards, info.session_start_limit.max_concurrency),
        (1, 1)
    );
}

#[tokio::test]
async fn many_concurrent_calls_on_one_bucket_never_overrun_it() {
    let (api, http) = setup(3).await;
    let window = Duration::from_millis(300);
    api.set_bucket_limit(5, window);
    let started = std::time::Instant::now();
    let calls = (0..30).map(|i| {
        let http = http.clone();
        tokio::spawn(async move {
            http.create_message("busy", &json!({"content": format!("m{i}")}))
                .await
        })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    assert_eq!(api.messages_in("busy").len(), 30);
    // Only the first call of each new window may find the fake's window a little early; a
    // stampede at each reset would draw dozens.
    assert!(
        api.rate_limited() <= 6,
        "{} calls drew 429",
        api.rate_limited()
    );
    assert!(
        started.elapsed() >= window * 5,
        "30 calls at 5 per window take 6 windows"
    );
}

/// A send to `@<user>` opens the user's DM channel once and posts there; later sends reuse it,
/// and a typing indicator goes to the same channel.
#[tokio::test]
async fn a_send_to_a_user_goes_to_their_dm_channel_opened_once() {
    use bot_core::Outbound as _;
    use bot_core::outbound::{OutgoingMessage, Target};
    let (api, http) = setup(1).await;
    let client = bot_discord::DiscordClient::new(http, None, Arc::default());
    let user = "80351110224678912";
    let to = Target::conversation(bot_discord::client::dm(user));
    client
        .send(&to, vec![OutgoingMessage::text("your report is ready")])
        .await
        .unwrap();
    client
        .send(
            &to,
            vec![
                OutgoingMessage::typing(),
                OutgoingMessage::text("and another"),
            ],
        )
        .await
        .unwrap();
    let opened = api.api().calls_to("/users/@me/channels");
    assert_eq!(opened.len(), 1, "the DM channel is opened once");
    assert_eq!(opened[0].request.json()["recipient_id"], user);
    let channel = client.dm_channel(user).await.unwrap();
    assert_eq!(
        api.messages_in(&channel),
        ["your report is ready", "and another"]
    );
    assert_eq!(
        api.api()
            .calls_to(&format!("/channels/{channel}/typing"))
            .len(),
        1
    );
    assert!(
        api.api().calls_to("/channels/@").is_empty(),
        "nothing posted to the raw id"
    );
}
