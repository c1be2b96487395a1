//! The LINE client against the fake LINE API: retries, retry keys, limits, fallbacks, errors.

mod support;

use std::time::Duration;

use bot_core::outbound::Target;
use bot_core::testing::fake_api::{FakeApi, FakeResponse, Fault, Latency};
use bot_core::{EventId, Outbound, OutgoingMessage, RetryPolicy};
use bot_line::model::send::ApiError as LineErrorBody;
use bot_line::model::send::Message;
use bot_line::testing::{FakeLine, LOADING_PATH, PUSH_PATH, REPLY_PATH};
use bot_line::{ConfigureApi, ErrorKind, LineClient, RateLimits, RetryKey};
use http::StatusCode;
use serde_json::json;
use support::{TOKEN, sample};

/// How a test's client reaches the fake LINE API: the tests that take a [`Via`] run over both,
/// as `http1::<name>` and `h2c::<name>`.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `reqwest` over HTTP/1.1: an `http://` base without other settings.
    Http1,
    /// The client's built-in HTTP/2 transport, without TLS.
    H2c,
}

impl Via {
    fn configure<B: ConfigureApi>(self, builder: B) -> B {
        match self {
            Via::Http1 => builder,
            Via::H2c => builder.http2_prior_knowledge(),
        }
    }
}

fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

async fn setup(via: Via, max_attempts: u32, push_fallback: bool) -> (FakeLine, LineClient) {
    let fake = FakeLine::start(TOKEN).await.unwrap();
    let client = via
        .configure(LineClient::builder(TOKEN))
        .api_base(fake.url())
        .retry(quick_retries(max_attempts))
        .push_fallback(push_fallback)
        .build()
        .unwrap();
    (fake, client)
}

fn text(t: &str) -> Vec<Message> {
    vec![Message::text(t)]
}

#[tokio::test]
async fn a_supplied_http2_client_multiplexes_pushes_on_one_connection() {
    let fake = FakeLine::start_with(
        TOKEN,
        FakeApi::builder()
            .max_concurrent_streams(8)
            .latency(Latency::Fixed(Duration::from_millis(100))),
    )
    .await
    .unwrap();
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let client = LineClient::builder(TOKEN)
        .api_base(fake.url())
        .http_client(http)
        .build()
        .unwrap();
    let pushes = (0..32).map(|i| {
        let client = client.clone();
        async move { client.push(&format!("U{i}"), &text("hi"), None).await }
    });
    let outcomes = futures::future::join_all(pushes).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(fake.pushes().len(), 32);
    assert_eq!(fake.api().connections(), 1);
    assert_eq!(fake.api().peak_in_flight_per_connection(), 8);
}

// ANCHOR: faults
async fn push_retries_429_and_5xx_with_one_retry_key_until_it_goes_through(via: Via) {
    let (fake, client) = setup(via, 4, false).await;
    fake.api().inject(
        Fault::status(StatusCode::TOO_MANY_REQUESTS)
            .json(&json!({"message": "The API rate limit has been exceeded. Try again later."})),
    );
    fake.api()
        .inject(Fault::status(StatusCode::INTERNAL_SERVER_ERROR));
    fake.api().inject(Fault::status(StatusCode::BAD_GATEWAY));

    let outcome = client.push("Uuser", &text("hi"), None).await.unwrap();
    assert_eq!(outcome.sent_messages.len(), 1);
    assert!(outcome.request_id.is_some());

    let pushes = fake.pushes();
    let statuses: Vec<u16> = pushes.iter().map(|p| p.status.as_u16()).collect();
    assert_eq!(statuses, [429, 500, 502, 200]);
    let key = pushes[0]
        .retry_key
        .clone()
        .expect("push carries X-Line-Retry-Key");
    assert!(uuid::Uuid::parse_str(&key).is_ok(), "{key}");
    assert!(
        pushes
            .iter()
            .all(|p| p.retry_key.as_deref() == Some(key.as_str())),
        "one key for every attempt"
    );
}
// ANCHOR_END: faults

async fn push_gives_up_after_the_configured_attempts_with_a_typed_error(via: Via) {
    let (fake, client) = setup(via, 3, false).await;
    fake.api().inject(
        Fault::status(StatusCode::SERVICE_UNAVAILABLE)
            .json(&json!({"message": "temporarily unavailable"}))
            .times(3),
    );
    let error = client.push("Uuser", &text("hi"), None).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(error.attempts(), 3);
    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        error.details::<LineErrorBody>().unwrap().message,
        "temporarily unavailable"
    );
    assert!(error.is_retryable());
    assert_eq!(fake.pushes().len(), 3);
    let keys: std::collections::HashSet<_> =
        fake.pushes().into_iter().map(|p| p.retry_key).collect();
    assert_eq!(keys.len(), 1);

    fake.api()
        .inject(Fault::status(StatusCode::TOO_MANY_REQUESTS).times(10));
    let error = client.push("Uuser", &text("hi"), None).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.attempts(), 3);
    let core: bot_core::Error = error.into();
    assert_eq!(core.kind(), bot_core::ErrorKind::RateLimited);
    assert!(
        core.is_retryable(),
        "the runtime may try the event again later"
    );
}

async fn retry_after_is_honoured(via: Via) {
    let (fake, client) = setup(via, 2, false).await;
    fake.api()
        .inject(Fault::status(StatusCode::TOO_MANY_REQUESTS).header("retry-after", "1"));
    client.push("Uuser", &text("hi"), None).await.unwrap();
    let calls = fake.api().calls();
    let waited = calls[1].request.received_at - calls[0].request.received_at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
}

async fn the_monthly_quota_and_other_refusals_are_not_retried(via: Via) {
    let (fake, client) = setup(via, 4, false).await;
    fake.api().inject(
        Fault::status(StatusCode::TOO_MANY_REQUESTS)
            .json(&json!({"message": "You have reached your monthly limit."})),
    );
    let error = client.push("Uuser", &text("hi"), None).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::QuotaExceeded);
    assert_eq!(error.attempts(), 1);
    assert!(!bot_core::Error::from(error).is_retryable());

    fake.api().inject(Fault::response(FakeResponse::json(
        StatusCode::BAD_REQUEST,
        &json!({"message": "The request body has 1 error(s)", "details": [{"message": "must be specified", "property": "to"}]}),
    )));
    let error = client.push("", &text("hi"), None).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Api);
    assert_eq!(
        error.details::<LineErrorBody>().unwrap().details[0]
            .property
            .as_deref(),
        Some("to")
    );
    assert_eq!(fake.pushes().len(), 2, "one call each");

    let stranger = via
        .configure(LineClient::builder("wrong-token"))
        .api_base(fake.url())
        .retry(quick_retries(4))
        .build()
        .unwrap();
    let error = stranger.profile("U1").await.unwrap_err();
    assert_eq!(
        (error.kind(), error.status()),
        (ErrorKind::Authentication, Some(StatusCode::UNAUTHORIZED))
    );
    assert!(
        error.to_string().contains("Authentication failed"),
        "{error}"
    );
    assert!(
        error.request_id().is_some_and(|id| id.starts_with("req-")),
        "x-line-request-id is kept for LINE support: {error:?}"
    );
}

async fn a_push_retried_after_it_was_accepted_is_not_sent_twice(via: Via) {
    let (fake, client) = setup(via, 2, false).await;
    let key = RetryKey::random();
    client
        .push("Uuser", &text("once"), Some(key))
        .await
        .unwrap();
    // The answer was lost (say), so the caller sends it again with the same key.
    let again = client
        .push("Uuser", &text("once"), Some(key))
        .await
        .unwrap();
    assert!(
        again.accepted_request_id.is_some(),
        "409 names the request that was accepted"
    );
    let pushes = fake.pushes();
    let statuses: Vec<u16> = pushes.iter().map(|p| p.status.as_u16()).collect();
    assert_eq!(statuses, [200, 409]);
}

async fn replies_carry_one_to_five_messages_and_tokens_are_single_use(via: Via) {
    let (fake, client) = setup(via, 3, false).await;
    let six: Vec<Message> = (0..6).map(|i| Message::text(i.to_string())).collect();
    let error = client.reply("rt-1", &six).await.unwrap_err();
    assert_eq!(
        (error.kind(), error.attempts()),
        (ErrorKind::InvalidRequest, 0)
    );
    assert_eq!(fake.api().call_count(), 0, "refused before sending");

    client.reply("rt-1", &six[..5]).await.unwrap();
    let error = client.reply("rt-1", &text("again")).await.unwrap_err();
    assert!(error.is_invalid_reply_token());
    assert_eq!(error.attempts(), 1, "a refused token is not retried");
    let replies = fake.replies();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].messages.len(), 5);
    assert!(
        fake.api()
            .calls_to(REPLY_PATH)
            .iter()
            .all(|c| c.request.header("x-line-retry-key").is_none())
    );
}

fn reply_target(token: &str, event: &str) -> Target {
    let mut target = Target::conversation("Uchat");
    target.reply_token = Some(bot_core::event::ReplyToken::new(token));
    target.in_reply_to = Some(EventId::new(event));
    target.origin = Some(EventId::new(event));
    target
}

#[tokio::test(start_paused = true)]
async fn a_concurrent_attempt_waits_for_the_reply_instead_of_using_its_token_again() {
    let (fake, client) = setup(Via::Http1, 1, true).await;
    fake.api()
        .set_latency(Latency::Fixed(Duration::from_millis(500)));
    // The same reply sent by two attempts of one handler at once (a redelivery while the first
    // still runs): the second waits for the first's reply, then finds it made.
    let target = reply_target("rt-concurrent", "01CONC");
    let (first, second) = tokio::join!(client.send(&target, vec!["once".into()]), async {
        tokio::task::yield_now().await;
        client.send(&target, vec!["once".into()]).await
    });
    assert!(first.is_ok(), "{first:?}");
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(fake.replies().len(), 1, "the token is used once");
    assert!(fake.pushes().is_empty(), "nothing pushed twice");
}

async fn an_expired_reply_token_falls_back_to_push_only_when_enabled(via: Via) {
    let (fake, strict) = setup(via, 3, false).await;
    strict.reply("rt-used", &text("first")).await.unwrap();
    let error = strict
        .send(&reply_target("rt-used", "01EV1"), vec!["late".into()])
        .await
        .unwrap_err();
    assert!(
        !error.is_retryable(),
        "a refused token cannot succeed later"
    );
    assert!(fake.pushes().is_empty());

    let lenient = via
        .configure(LineClient::builder(TOKEN))
        .api_base(fake.url())
        .retry(quick_retries(3))
        .push_fallback(true)
        .build()
        .unwrap();
    lenient
        .send(&reply_target("rt-used", "01EV1"), vec!["late".into()])
        .await
        .unwrap();
    let pushes = fake.pushes();
    assert_eq!(pushes.len(), 1);
    assert_eq!(
        (pushes[0].to.as_str(), pushes[0].texts()),
        ("Uchat", vec!["late"])
    );
    assert_eq!(
        pushes[0].retry_key.as_deref(),
        Some(
            RetryKey::for_send(&EventId::new("01EV1"), 0, 0)
                .as_uuid()
                .to_string()
                .as_str()
        )
    );
}

async fn sends_without_a_token_push_in_fives_and_a_retried_handler_sends_nothing_twice(via: Via) {
    let (fake, client) = setup(via, 3, false).await;
    let mut target = Target::conversation("Cgroup");
    target.in_reply_to = Some(EventId::new("01EVENT"));
    target.origin = Some(EventId::new("01EVENT"));
    let seven: Vec<OutgoingMessage> = (0..7)
        .map(|i| OutgoingMessage::text(format!("m{i}")))
        .collect();
    client.send(&target, seven.clone()).await.unwrap();
    // The handler runs again (the runtime retried the event): same keys, LINE answers 409.
    client.send(&target, seven).await.unwrap();
    let pushes = fake.pushes();
    let summary: Vec<(usize, u16)> = pushes
        .iter()
        .map(|p| (p.messages.len(), p.status.as_u16()))
        .collect();
    assert_eq!(summary, [(5, 200), (2, 200), (5, 409), (2, 409)]);
    assert_eq!(pushes[0].texts(), ["m0", "m1", "m2", "m3", "m4"]);

    // More than five messages with a reply token and no fallback: refused before sending.
    let error = client
        .send(
            &reply_target("rt-9", "01EV9"),
            (0..6)
                .map(|i| OutgoingMessage::text(i.to_string()))
                .collect(),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("at most 5"), "{error}");
    assert!(fake.replies().is_empty());
}

async fn profile_content_and_typing_use_their_endpoints(via: Via) {
    let (fake, client) = setup(via, 1, false).await;
    let content = client.content("3257").await.unwrap();
    assert_eq!(content.bytes.as_ref(), b"content of message 3257");
    assert_eq!(content.content_type.as_deref(), Some("image/jpeg"));
    let profile = client.profile("Ualice").await.unwrap();
    assert_eq!(
        (profile.display_name.as_str(), profile.user_id.as_str()),
        ("User Ualice", "Ualice")
    );
    client.typing(&"Ualice".into()).await.unwrap();
    client.typing(&"Cgroup".into()).await.unwrap();
    let loading = fake.api().calls_to(LOADING_PATH);
    assert_eq!(loading.len(), 1, "groups have no loading animation");
    assert_eq!(
        loading[0].request.json(),
        json!({"chatId": "Ualice", "loadingSeconds": 20})
    );
    assert!(client.show_loading("Ualice", 7).await.is_err());
}

#[tokio::test]
async fn the_rate_limiter_spaces_calls_and_records_the_wait() {
    let fake = FakeLine::start(TOKEN).await.unwrap();
    let client = LineClient::builder(TOKEN)
        .api_base(fake.url())
        .rate_limits(RateLimits {
            push_per_second: 2,
            ..RateLimits::default()
        })
        .build()
        .unwrap();
    let bot = bot_core::Bot::builder()
        .handler(|_cx: bot_core::Context, _e: bot_core::Event| async {
            Ok::<_, bot_core::Error>(())
        })
        .build()
        .unwrap();
    let client = client.with_telemetry(bot.telemetry().clone());
    for i in 0..4 {
        client
            .push("Uuser", &text(&i.to_string()), None)
            .await
            .unwrap();
    }
    let calls = fake.api().calls_to(PUSH_PATH);
    let spread = calls[3].request.received_at - calls[0].request.received_at;
    // Two at once (the burst), then one every 500 ms.
    assert!(
        spread >= Duration::from_millis(900),
        "4 pushes at 2/s took {spread:?}"
    );
    let waits = sample(
        &bot.telemetry().render_prometheus(),
        r#"bot_outbound_ratelimit_wait_seconds_count{platform="line"}"#,
    );
    assert!(waits >= 1.0, "recorded {waits} waits");
}

async fn two_sends_of_one_handler_are_two_messages_and_a_retry_sends_neither_again(via: Via) {
    let (fake, client) = setup(via, 3, true).await;
    let mut first = Target::conversation("Ugroupless");
    first.in_reply_to = Some(EventId::new("01TWO"));
    first.origin = Some(EventId::new("01TWO"));
    let mut second = first.clone();
    second.send_index = 1;
    client
        .send(&first, vec!["working on it".into()])
        .await
        .unwrap();
    client.send(&second, vec!["done".into()]).await.unwrap();
    // The runtime retries the handler: the same two sends again.
    client
        .send(&first, vec!["working on it".into()])
        .await
        .unwrap();
    client.send(&second, vec!["done".into()]).await.unwrap();
    let pushes = fake.pushes();
    let summary: Vec<(Vec<&str>, u16)> = pushes
        .iter()
        .map(|p| (p.texts(), p.status.as_u16()))
        .collect();
    assert_eq!(
        summary,
        [
            (vec!["working on it"], 200),
            (vec!["done"], 200),
            (vec!["working on it"], 409),
            (vec!["done"], 409)
        ]
    );
}

async fn a_retried_handler_skips_the_reply_it_made_and_never_falls_back_to_a_push(via: Via) {
    let (fake, client) = setup(via, 3, true).await;
    let target = reply_target("rt-retried", "01RETRY");
    client.send(&target, vec!["once".into()]).await.unwrap();
    // The handler failed after replying; on its retry the same reply is asked for again.
    client.send(&target, vec!["once".into()]).await.unwrap();
    assert_eq!(fake.replies().len(), 1, "the used token is not tried again");
    assert!(fake.pushes().is_empty(), "and nothing is pushed instead");
}

async fn a_reply_refused_after_an_attempt_that_may_have_used_the_token_is_never_pushed(via: Via) {
    let (fake, client) = setup(via, 3, true).await;
    // Within one call: the first attempt's answer is a 502 (LINE may have sent it), and the
    // retry finds the token used.
    client.reply("rt-lost", &text("meanwhile")).await.unwrap();
    fake.api()
        .inject(Fault::status(StatusCode::BAD_GATEWAY).on_path(REPLY_PATH));
    let error = client
        .send(&reply_target("rt-lost", "01LOST"), vec!["hi".into()])
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(fake.pushes().is_empty(), "no push after an ambiguous reply");

    // Across a handler's retries: the reply failed with 502s that may hide a delivery; when the
    // handler runs again and the token is refused, nothing is pushed either.
    fake.api().inject(
        Fault::status(StatusCode::BAD_GATEWAY)
            .on_path(REPLY_PATH)
            .times(3),
    );
    let target = reply_target("rt-ambiguous", "01AMBIG");
    let error = client.send(&target, vec!["hi".into()]).await.unwrap_err();
    assert!(
        error.is_retryable(),
        "the runtime may run the handler again"
    );
    client.reply("rt-ambiguous", &text("used")).await.unwrap();
    let error = client.send(&target, vec!["hi".into()]).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(fake.pushes().is_empty(), "no push after an ambiguous reply");

    // A reply refused on its first try with nothing ambiguous before still falls back.
    client.reply("rt-plain", &text("used")).await.unwrap();
    client
        .send(&reply_target("rt-plain", "01PLAIN"), vec!["late".into()])
        .await
        .unwrap();
    assert_eq!(fake.pushes().len(), 1);
}

/// A client whose calls share a deadline of 600 ms, against a fake LINE that answers each call
/// after 400 ms.
async fn slow_setup(via: Via) -> (FakeLine, LineClient) {
    let fake = FakeLine::start(TOKEN).await.unwrap();
    fake.api()
        .set_latency(Latency::Fixed(Duration::from_millis(400)));
    let client = via
        .configure(LineClient::builder(TOKEN))
        .api_base(fake.url())
        .retry(quick_retries(3))
        .deadline(Duration::from_millis(600))
        .push_fallback(true)
        .build()
        .unwrap();
    (fake, client)
}

fn numbered(count: usize) -> Vec<OutgoingMessage> {
    (0..count)
        .map(|i| OutgoingMessage::text(format!("m{i}")))
        .collect()
}

async fn a_reply_and_its_pushes_share_one_deadline(via: Via) {
    let (fake, client) = slow_setup(via).await;
    let error = client
        .send(&reply_target("rt-slow", "01SLOW"), numbered(7))
        .await
        .unwrap_err();
    // The reply takes 400 ms of the 600; the push cannot finish in the 200 left, though a
    // deadline of its own would have let it.
    assert_eq!(error.kind(), bot_core::ErrorKind::Timeout, "{error}");
    let replies = fake.replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, StatusCode::OK);
}

async fn the_loading_animation_counts_against_its_sends_deadline(via: Via) {
    let (fake, client) = slow_setup(via).await;
    let typing_then_text = vec![OutgoingMessage::typing(), "hi".into()];
    let error = client
        .send(&reply_target("rt-loading", "01LOADING"), typing_then_text)
        .await
        .unwrap_err();
    // The loading animation takes 400 ms of the 600; the reply cannot finish in the 200 left,
    // though a deadline of its own would have let it.
    assert_eq!(error.kind(), bot_core::ErrorKind::Timeout, "{error}");
    assert_eq!(fake.api().calls_to(LOADING_PATH).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn sibling_retries_after_an_ambiguous_reply_use_the_token_once_and_push_only_the_rest() {
    let (fake, client) = setup(Via::Http1, 3, true).await;
    // The first attempt's reply answers 502 each time: LINE may have used the token (here it
    // did not), so the reply is remembered as maybe made and the handler is retried.
    fake.api().inject(
        Fault::status(StatusCode::BAD_GATEWAY)
            .on_path(REPLY_PATH)
            .times(3),
    );
    let target = reply_target("rt-siblings", "01SIBLINGS");
    let error = client.send(&target, numbered(7)).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    // Two retries at once (the event redelivered while the runtime retries it): one uses the
    // token; the other waits for its outcome, finds the reply made, and pushes only the rest.
    fake.api()
        .set_latency(Latency::Fixed(Duration::from_millis(500)));
    let (first, second) = tokio::join!(client.send(&target, numbered(7)), async {
        tokio::task::yield_now().await;
        client.send(&target, numbered(7)).await
    });
    assert!(first.is_ok(), "{first:?}");
    assert!(second.is_ok(), "{second:?}");
    let replies = fake.replies();
    assert!(
        replies.iter().all(|r| r.status != StatusCode::BAD_REQUEST),
        "the token was used by one retry only"
    );
    assert_eq!(
        replies
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count(),
        1
    );
    let pushed: Vec<_> = fake
        .pushes()
        .into_iter()
        .filter(|p| p.status == StatusCode::OK)
        .collect();
    assert_eq!(pushed.len(), 1, "the rest pushed once");
    assert_eq!(pushed[0].texts(), ["m5", "m6"]);
}

async fn a_reply_cut_off_mid_call_is_never_pushed_by_the_retried_handler(via: Via) {
    let (fake, client) = setup(via, 3, true).await;
    fake.api()
        .set_latency(Latency::Fixed(Duration::from_millis(300)));
    let target = reply_target("rt-cut", "01CUT");
    // The handler's time-out drops the send while LINE is carrying out the reply.
    let cut = tokio::time::timeout(
        Duration::from_millis(50),
        client.send(&target, vec!["hello".into()]),
    )
    .await;
    assert!(cut.is_err(), "the send was cut off");
    fake.api().set_latency(Latency::None);
    // The retried handler: LINE refuses the token the first reply used, and the client must not
    // push instead (that reply may have been shown).
    fake.api().inject(
        Fault::status(StatusCode::BAD_REQUEST)
            .json(&serde_json::json!({"message": "Invalid reply token"}))
            .on_path("/v2/bot/message/reply"),
    );
    let error = client
        .send(&target, vec!["hello".into()])
        .await
        .unwrap_err();
    assert!(
        fake.pushes().is_empty(),
        "pushed after a reply that may have gone out"
    );
    assert!(!error.is_retryable(), "{error}");
}

/// A client whose limits are shared across processes builds with LINE's default quotas — the
/// webhook test's one call a second is too small to share and stays per process — and its pushes
/// go through the shared limit.
#[tokio::test]
async fn a_client_with_shared_limits_builds_with_every_default_quota_and_pushes() {
    use bot_core::ratelimit::{MemoryRateStore, SharedLimits};
    let fake = FakeLine::start(TOKEN).await.unwrap();
    let store = std::sync::Arc::new(MemoryRateStore::new());
    let client = LineClient::builder(TOKEN)
        .api_base(fake.url())
        .shared_limits(SharedLimits::new(store.clone()))
        .build()
        .unwrap();
    client.push("U1", &text("shared"), None).await.unwrap();
    assert_eq!(fake.wait_for_pushes(1).await[0].texts(), ["shared"]);
    assert!(
        store.reservations() >= 1,
        "the push reserved its token in the store"
    );
}

/// Each test that takes a [`Via`], once over each.
macro_rules! over_both_transports {
    ($($name:ident),* $(,)?) => {
        mod http1 {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Via::Http1).await
            })*
        }

        mod h2c {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Via::H2c).await
            })*
        }
    };
}

over_both_transports!(
    push_retries_429_and_5xx_with_one_retry_key_until_it_goes_through,
    push_gives_up_after_the_configured_attempts_with_a_typed_error,
    retry_after_is_honoured,
    the_monthly_quota_and_other_refusals_are_not_retried,
    a_push_retried_after_it_was_accepted_is_not_sent_twice,
    replies_carry_one_to_five_messages_and_tokens_are_single_use,
    an_expired_reply_token_falls_back_to_push_only_when_enabled,
    sends_without_a_token_push_in_fives_and_a_retried_handler_sends_nothing_twice,
    profile_content_and_typing_use_their_endpoints,
    two_sends_of_one_handler_are_two_messages_and_a_retry_sends_neither_again,
    a_retried_handler_skips_the_reply_it_made_and_never_falls_back_to_a_push,
    a_reply_refused_after_an_attempt_that_may_have_used_the_token_is_never_pushed,
    a_reply_and_its_pushes_share_one_deadline,
    the_loading_animation_counts_against_its_sends_deadline,
    a_reply_cut_off_mid_call_is_never_pushed_by_the_retried_handler,
);
