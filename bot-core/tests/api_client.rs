//! The HTTP client core against a local fake API: what it retries, what it never sends twice,
//! how long it waits, and what it records. Each adapter's client adds only its platform's part;
//! `examples/echo-bot/tests/outbound_clients.rs` runs the same behaviours over the three adapters.

use std::time::{Duration, Instant};

use bot_core::api::{
    Answer, ApiClient, ApiConfig, ApiError, ApiErrorKind, ApiSpec, Call, ConfigureApi,
};
use bot_core::testing::fake_api::{FakeApi, FakeResponse, Fault, Latency};
use bot_core::{Platform, RetryPolicy};
use http::{HeaderName, StatusCode};

// ANCHOR: spec
/// A platform that deduplicates by `x-test-key` and says nothing else of its own.
#[derive(Debug)]
struct TestSpec;

impl ApiSpec for TestSpec {
    type Permit = ();

    fn platform(&self) -> Platform {
        Platform::TEST
    }

    fn user_agent(&self) -> &'static str {
        "api-client-test"
    }

    fn idempotency_header(&self) -> Option<HeaderName> {
        Some(HeaderName::from_static("x-test-key"))
    }

    async fn admit(&self, _call: &Call, _deadline: std::time::Instant) -> Result<(), ApiError> {
        Ok(())
    }

    fn refusal(&self, _call: &Call, answer: &Answer) -> ApiError {
        let (kind, maybe) = match answer.status {
            StatusCode::TOO_MANY_REQUESTS => (ApiErrorKind::RateLimited, false),
            StatusCode::SERVICE_UNAVAILABLE => (ApiErrorKind::Server, false),
            s if s.is_server_error() => (ApiErrorKind::Server, true),
            _ => (ApiErrorKind::Api, false),
        };
        ApiError::new(kind, "test: refused")
            .with_retry_after(answer.retry_after())
            .with_maybe_delivered(maybe)
    }
}
// ANCHOR_END: spec

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

async fn fake() -> FakeApi {
    FakeApi::start(|_| FakeResponse::json(StatusCode::OK, &serde_json::json!({"ok": true})))
        .await
        .unwrap()
}

/// How a test's client reaches the fake: every behaviour below holds over both.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `reqwest` over HTTP/1.1: an `http://` base without other settings.
    Http1,
    /// The client's built-in HTTP/2 transport, without TLS.
    H2c,
}

impl Via {
    fn configure(self, config: ApiConfig) -> ApiConfig {
        match self {
            Via::Http1 => config,
            Via::H2c => config.http2_prior_knowledge(),
        }
    }
}

/// Runs each test once per [`Via`], as `http1::<name>` and `h2c::<name>`.
macro_rules! over_both_transports {
    ($(async fn $name:ident($via:ident: Via) $body:block)*) => {
        $(async fn $name($via: Via) $body)*

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

fn client(
    via: Via,
    api: &FakeApi,
    configure: impl FnOnce(ApiConfig) -> ApiConfig,
) -> ApiClient<TestSpec> {
    let config =
        configure(via.configure(ApiConfig::new(api.url(), "token-1").retry(quick_retries())));
    ApiClient::new(TestSpec, config).unwrap()
}

fn send() -> Call {
    Call::post("send", "/send")
        .json(&serde_json::json!({"text": "hi"}))
        .unwrap()
}

over_both_transports! {
async fn a_refusal_that_did_nothing_is_retried_with_the_token_and_body_each_time(via: Via) {
    let api = fake().await;
    api.inject(Fault::status(StatusCode::SERVICE_UNAVAILABLE).times(2));
    let answer = client(via, &api, |c| c).call(send()).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let calls = api.calls();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        assert_eq!(call.request.bearer(), Some("token-1"));
        assert_eq!(call.request.json()["text"], "hi");
    }
}

async fn a_send_the_platform_cannot_deduplicate_is_not_sent_again_after_a_5xx(via: Via) {
    let api = fake().await;
    api.inject(Fault::status(StatusCode::INTERNAL_SERVER_ERROR));
    let e = client(via, &api, |c| c).call(send()).await.unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Server);
    assert!(e.maybe_delivered(), "{e:?}");
    assert_eq!(e.attempts(), 1);
    assert_eq!(e.platform(), Some(&Platform::TEST));
    assert_eq!(api.call_count(), 1);
    // The runtime must not retry the handler either: it would post the message twice.
    assert!(!bot_core::Error::from(e).is_retryable());
}

async fn a_keyed_send_is_retried_with_the_same_key_on_every_attempt(via: Via) {
    let api = fake().await;
    api.inject(Fault::status(StatusCode::INTERNAL_SERVER_ERROR).times(2));
    client(via, &api, |c| c)
        .call(send().idempotency_key("key-7"))
        .await
        .unwrap();
    let keys: Vec<_> = api
        .calls()
        .iter()
        .map(|c| c.request.header("x-test-key").map(str::to_owned))
        .collect();
    assert_eq!(keys, vec![Some("key-7".to_owned()); 3]);
}

async fn a_read_is_retried_after_a_time_out_and_gives_up_at_the_deadline(via: Via) {
    let api = fake().await;
    api.set_latency(Latency::Fixed(Duration::from_secs(5)));
    let client = client(via, &api, |c| {
        c.timeout(Duration::from_millis(100))
            .deadline(Duration::from_millis(450))
    });
    let started = Instant::now();
    let e = client.call(Call::get("read", "/thing")).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind(), ApiErrorKind::Timeout, "{e:?}");
    assert!(!e.maybe_delivered(), "a read may be sent again: {e:?}");
    assert!(e.attempts() >= 2, "retried: {e:?}");
    assert!(
        took < Duration::from_secs(2),
        "the deadline holds: {took:?}"
    );
}

async fn a_time_out_of_a_send_may_have_delivered_it_and_is_not_repeated(via: Via) {
    let api = fake().await;
    api.set_latency(Latency::Fixed(Duration::from_secs(5)));
    let client = client(via, &api, |c| c.timeout(Duration::from_millis(100)));
    let e = client.call(send()).await.unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Timeout);
    assert!(e.maybe_delivered());
    assert_eq!(e.attempts(), 1);
}

async fn retry_after_is_honoured_up_to_the_cap_and_a_longer_one_fails_at_once_with_its_hint(via: Via) {
    let api = fake().await;
    api.inject(
        Fault::status(StatusCode::TOO_MANY_REQUESTS)
            .header("retry-after", "0.05")
            .times(1),
    );
    let started = Instant::now();
    client(via, &api, |c| c).call(send()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "waited the hint"
    );
    assert_eq!(api.call_count(), 2);

    api.clear();
    api.inject(Fault::status(StatusCode::TOO_MANY_REQUESTS).header("retry-after", "120"));
    let e = client(via, &api, |c| c.max_retry_after(Duration::from_secs(60)))
        .call(send())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(api.call_count(), 1, "not waited for");
    let core = bot_core::Error::from(e);
    assert!(core.is_retryable());
    assert_eq!(core.retry_after(), Some(Duration::from_secs(120)));
}

async fn a_hint_past_the_deadline_fails_the_call_at_once_carrying_it(via: Via) {
    let api = fake().await;
    api.inject(Fault::status(StatusCode::TOO_MANY_REQUESTS).header("retry-after", "5"));
    let started = Instant::now();
    let e = client(via, &api, |c| c.deadline(Duration::from_secs(1)))
        .call(send())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(api.call_count(), 1);
}

async fn a_refused_connection_carried_nothing_so_even_a_send_is_retried(via: Via) {
    // A port that was open a moment ago and is closed now refuses connections.
    let base = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let config = via.configure(ApiConfig::new(base, "t").retry(quick_retries()));
    let e = ApiClient::new(TestSpec, config)
        .unwrap()
        .call(send())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Transport);
    assert_eq!(e.attempts(), 4, "every attempt used: {e:?}");
    assert!(!e.maybe_delivered());
}

async fn unbounded_settings_and_an_enormous_hint_do_not_overflow(via: Via) {
    let api = fake().await;
    let client = client(via, &api, |c| {
        c.deadline(Duration::MAX).max_retry_after(Duration::MAX)
    });
    client.call(send()).await.unwrap();
    api.inject(Fault::status(StatusCode::TOO_MANY_REQUESTS).header("retry-after", "1e19"));
    let e = client.call(send()).await.unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::RateLimited);
    assert!(
        e.retry_after()
            .is_some_and(|hint| hint > Duration::from_secs(1 << 40))
    );
}

async fn a_client_error_is_not_retried_and_is_permanent_for_the_runtime(via: Via) {
    let api = fake().await;
    api.inject(Fault::status(StatusCode::BAD_REQUEST));
    let e = client(via, &api, |c| c)
        .call(Call::get("read", "/x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Api);
    assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(api.call_count(), 1);
    assert!(!bot_core::Error::from(e).is_retryable());
}

async fn an_endpoint_limit_spaces_calls_and_a_refused_configuration_says_why(via: Via) {
    let api = fake().await;
    let client = client(via, &api, |mut c| {
        c.limit("send", 20);
        c
    });
    let started = Instant::now();
    for _ in 0..25 {
        client.call(send()).await.unwrap();
    }
    // A burst of 20, then 20 a second: the last five wait about a quarter of a second.
    assert!(started.elapsed() >= Duration::from_millis(200));

    let refused = |config: ApiConfig| ApiClient::new(TestSpec, config).unwrap_err();
    assert_eq!(
        refused(ApiConfig::new(api.url(), "")).kind(),
        ApiErrorKind::Config
    );
    assert_eq!(
        refused(ApiConfig::new("ftp://x", "t")).kind(),
        ApiErrorKind::Config
    );
    let mut zero = ApiConfig::new(api.url(), "t");
    zero.limit("send", 0);
    assert!(refused(zero).to_string().contains("send"));
    assert!(
        refused(ApiConfig::new(api.url(), "t").deadline(Duration::ZERO))
            .to_string()
            .contains("deadline")
    );
}


async fn a_call_goes_to_the_base_with_its_path_and_query_and_a_base_of_its_own_is_kept(via: Via) {
    let api = fake().await;
    let bare = client(via, &api, |c| c);
    let prefixed = client(via, &api, |c| c.api_base(format!("{}/prefix/", api.url())));
    bare.call(Call::get("read", "/v2/items/U1%20x?start=a%2Fb&limit=2"))
        .await
        .unwrap();
    prefixed.call(Call::get("read", "/v2/items")).await.unwrap();
    prefixed
        .call(Call::get("read", "/content/1").base(format!("{}/data", api.url())))
        .await
        .unwrap();
    let calls = api.calls();
    let seen: Vec<(&str, Option<&str>)> = calls
        .iter()
        .map(|c| (c.request.path.as_str(), c.request.query.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("/v2/items/U1%20x", Some("start=a%2Fb&limit=2")),
            ("/prefix/v2/items", None),
            ("/data/content/1", None),
        ]
    );
    assert_eq!(calls[0].request.query_param("limit"), Some("2"));
}

async fn a_redirect_is_an_answer_never_a_hop_with_the_token(via: Via) {
    let api = fake().await;
    api.inject(Fault::response(
        FakeResponse::empty(StatusCode::FOUND)
            .header("location", format!("{}/elsewhere", api.url())),
    ));
    let e = client(via, &api, |c| c).call(send()).await.unwrap_err();
    assert_eq!(e.status(), Some(StatusCode::FOUND), "{e:?}");
    assert_eq!(api.call_count(), 1, "the redirect was followed");
}
}

#[cfg(feature = "prometheus")]
#[tokio::test]
async fn calls_are_recorded_with_opentelemetry_http_client_names() {
    let bot = bot_core::Bot::builder()
        .handler(|_cx: bot_core::Context, _e: bot_core::Event| async {
            Ok::<(), bot_core::Error>(())
        })
        .build()
        .unwrap();
    let api = fake().await;
    api.inject(Fault::status(StatusCode::SERVICE_UNAVAILABLE));
    let client = client(Via::H2c, &api, |c| c.channel_label("shop-a"))
        .with_telemetry(bot.telemetry().clone());
    client.call(send()).await.unwrap();
    let text = bot.telemetry().render_prometheus();
    let line = |status: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("http_client_request_duration_seconds_count")
                    && l.contains(&format!("http_response_status_code=\"{status}\""))
            })
            .unwrap_or_else(|| panic!("no duration for {status} in\n{text}"))
            .to_owned()
    };
    let ok = line("200");
    for attribute in [
        "http_request_method=\"POST\"",
        "server_address=\"127.0.0.1\"",
        "bot_endpoint=\"send\"",
        "bot_channel=\"shop-a\"",
        "platform=\"test\"",
    ] {
        assert!(ok.contains(attribute), "{attribute} missing from {ok}");
    }
    assert!(line("503").contains("error_type=\"503\""));
    assert!(text.contains("bot_outbound_requests_total"));
}
