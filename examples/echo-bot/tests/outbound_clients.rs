//! The client core's behaviours, run by one generic test over the three adapters' clients, each
//! against its platform's fake: the deadline bounds a send whatever the platform does, a
//! `Retry-After` over the cap fails at once carrying the hint, a server error is sent again only
//! where the platform deduplicates, and a send's idempotency key is the same on every attempt and
//! every re-run of its handler (or the client remembers the send and does not repeat it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bot_core::api::ConfigureApi;
use bot_core::outbound::Target;
use bot_core::testing::fake_api::{Call, FakeApi, Fault, Latency};
use bot_core::{ErrorKind, EventId, Outbound, OutgoingMessage, RetryPolicy};
use bot_discord::interactions::Pending;
use bot_discord::testing::FakeDiscordApi;
use bot_discord::{DiscordClient, DiscordHttp};
use bot_line::LineClient;
use bot_line::client::RETRY_KEY_HEADER;
use bot_line::testing::FakeLine;
use bot_messenger::MessengerClient;
use bot_messenger::testing::FakeMessenger;
use http::StatusCode;

const TOKEN: &str = "outbound-clients-token";
/// A Discord channel, a LINE user, a Messenger PSID: each platform's conversation.
const DISCORD_CHANNEL: &str = "1000000000000000009";

/// How long a test lets a client try: short, so that a deadline test stays quick.
#[derive(Clone, Copy)]
struct Settings {
    timeout: Duration,
    deadline: Duration,
    max_retry_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl Settings {
    /// `builder` sending to `url` with these settings and quick retries.
    fn apply<B: ConfigureApi>(self, builder: B, url: String) -> B {
        builder
            .api_base(url)
            .retry(quick())
            .timeout(self.timeout)
            .deadline(self.deadline)
            .max_retry_after(self.max_retry_after)
    }
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

/// One platform, as the generic tests see it.
trait Platform {
    /// The platform's name, for messages.
    const NAME: &'static str;
    /// The fake's recording API.
    fn api(&self) -> &FakeApi;
    /// The path prefix of the platform's send calls.
    fn send_path(&self) -> &'static str;
    /// The platform's client as the runtime sees it, configured by `settings`.
    fn client(&self, settings: Settings) -> Arc<dyn Outbound>;
    /// The conversation sends go to.
    fn conversation(&self) -> &'static str;
    /// The idempotency key a send carried, if the platform has one.
    fn key(&self, call: &Call) -> Option<String>;
}

struct Line(FakeLine);
struct Messenger(FakeMessenger);
struct Discord(FakeDiscordApi);

impl Platform for Line {
    const NAME: &'static str = "line";
    fn api(&self) -> &FakeApi {
        self.0.api()
    }
    fn send_path(&self) -> &'static str {
        "/v2/bot/message/push"
    }
    fn client(&self, s: Settings) -> Arc<dyn Outbound> {
        Arc::new(
            s.apply(LineClient::builder(TOKEN), self.0.url())
                .build()
                .unwrap(),
        )
    }
    fn conversation(&self) -> &'static str {
        "U4af4980629aaaaaaaaaaaaaaaaaaaaaa"
    }
    fn key(&self, call: &Call) -> Option<String> {
        call.request.header(RETRY_KEY_HEADER).map(str::to_owned)
    }
}

impl Platform for Messenger {
    const NAME: &'static str = "messenger";
    fn api(&self) -> &FakeApi {
        self.0.api()
    }
    fn send_path(&self) -> &'static str {
        "/me/messages"
    }
    fn client(&self, s: Settings) -> Arc<dyn Outbound> {
        Arc::new(
            s.apply(MessengerClient::builder(TOKEN), self.0.url())
                .build()
                .unwrap(),
        )
    }
    fn conversation(&self) -> &'static str {
        "1254459154682919"
    }
    fn key(&self, _call: &Call) -> Option<String> {
        None
    }
}

impl Platform for Discord {
    const NAME: &'static str = "discord";
    fn api(&self) -> &FakeApi {
        self.0.api()
    }
    fn send_path(&self) -> &'static str {
        "/channels/"
    }
    fn client(&self, s: Settings) -> Arc<dyn Outbound> {
        let http = s
            .apply(DiscordHttp::builder(TOKEN), self.0.url())
            .build()
            .unwrap();
        Arc::new(DiscordClient::new(http, None, Arc::new(Pending::default())))
    }
    fn conversation(&self) -> &'static str {
        DISCORD_CHANNEL
    }
    fn key(&self, call: &Call) -> Option<String> {
        call.request.json()["nonce"].as_str().map(str::to_owned)
    }
}

async fn line() -> Line {
    Line(FakeLine::start(TOKEN).await.unwrap())
}

async fn messenger() -> Messenger {
    Messenger(FakeMessenger::start(TOKEN).await.unwrap())
}

async fn discord() -> Discord {
    Discord(
        FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1)
            .await
            .unwrap(),
    )
}

/// The `index`-th send of the handler of event `event` (the same whenever it is re-run).
fn send<P: Platform>(platform: &P, event: &str, index: u32) -> Target {
    let mut target = Target::conversation(platform.conversation());
    target.origin = Some(EventId::new(event));
    target.send_index = index;
    target
}

fn hello() -> Vec<OutgoingMessage> {
    vec![OutgoingMessage::text("hello")]
}

fn sends<P: Platform>(platform: &P) -> Vec<Call> {
    platform
        .api()
        .calls()
        .into_iter()
        .filter(|c| c.request.path.starts_with(platform.send_path()))
        .collect()
}

async fn the_deadline_bounds_a_send<P: Platform>(platform: P) {
    platform
        .api()
        .set_latency(Latency::Fixed(Duration::from_secs(30)));
    let client = platform.client(Settings {
        timeout: Duration::from_millis(150),
        deadline: Duration::from_millis(500),
        ..Settings::default()
    });
    let started = Instant::now();
    let error = client
        .send(&send(&platform, "ev-deadline", 0), hello())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{}: {error:?}", P::NAME);
    assert!(
        took < Duration::from_secs(3),
        "{}: the send took {took:?}",
        P::NAME
    );
}

async fn a_retry_after_over_the_cap_fails_at_once_with_its_hint<P: Platform>(platform: P) {
    platform.api().inject(
        Fault::status(StatusCode::TOO_MANY_REQUESTS)
            .header("retry-after", "120")
            .on_path(platform.send_path()),
    );
    let client = platform.client(Settings::default());
    let started = Instant::now();
    let error = client
        .send(&send(&platform, "ev-429", 0), hello())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{}", P::NAME);
    assert_eq!(
        error.kind(),
        ErrorKind::RateLimited,
        "{}: {error:?}",
        P::NAME
    );
    assert_eq!(
        error.retry_after(),
        Some(Duration::from_secs(120)),
        "{}: the hint goes to the runtime",
        P::NAME
    );
    assert!(error.is_retryable(), "{}", P::NAME);
    assert_eq!(sends(&platform).len(), 1, "{}: not waited for", P::NAME);
}

async fn a_server_error_is_sent_again_only_where_the_platform_deduplicates<P: Platform>(
    platform: P,
) {
    platform.api().inject(
        Fault::status(StatusCode::INTERNAL_SERVER_ERROR)
            .times(1)
            .on_path(platform.send_path()),
    );
    let client = platform.client(Settings::default());
    let target = send(&platform, "ev-500", 0);
    let first = client.send(&target, hello()).await;
    let calls = sends(&platform);
    match platform.key(&calls[0]) {
        Some(key) => {
            // Deduplicated by its key: sent again at once, with the same key.
            first.unwrap_or_else(|e| panic!("{}: {e:?}", P::NAME));
            assert_eq!(calls.len(), 2, "{}", P::NAME);
            assert_eq!(platform.key(&calls[1]).as_deref(), Some(key.as_str()));
        }
        None => {
            // Nothing deduplicates it: a 500 may hide a delivery, so the client does not send it
            // again, and the handler's re-run skips it instead of posting it twice.
            let error = first.unwrap_err();
            assert_eq!(calls.len(), 1, "{}: {error:?}", P::NAME);
            client.send(&target, hello()).await.unwrap();
            assert_eq!(sends(&platform).len(), 1, "{}: re-run skipped it", P::NAME);
        }
    }
}

async fn a_sends_key_is_stable_across_handler_reruns<P: Platform>(platform: P) {
    let client = platform.client(Settings::default());
    for _ in 0..2 {
        client
            .send(&send(&platform, "ev-rerun", 0), hello())
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", P::NAME));
    }
    let calls = sends(&platform);
    let keys: Vec<_> = calls.iter().map(|c| platform.key(c)).collect();
    assert!(
        calls.len() == 1 || (keys[0].is_some() && keys.iter().all(|k| *k == keys[0])),
        "{}: a re-run is either not sent or sent with the same key: {keys:?}",
        P::NAME
    );
    // Another send of the same handler is another message.
    platform.api().clear();
    client
        .send(&send(&platform, "ev-rerun", 1), hello())
        .await
        .unwrap();
    let other = sends(&platform);
    assert_eq!(other.len(), 1, "{}", P::NAME);
    assert_ne!(platform.key(&other[0]).or(Some(String::new())), keys[0]);
}

macro_rules! over_the_three_platforms {
    ($($test:ident),* $(,)?) => {
        mod each_platform {
            use super::*;
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(line().await).await;
                    super::$test(messenger().await).await;
                    super::$test(discord().await).await;
                }
            )*
        }
    };
}

over_the_three_platforms!(
    the_deadline_bounds_a_send,
    a_retry_after_over_the_cap_fails_at_once_with_its_hint,
    a_server_error_is_sent_again_only_where_the_platform_deduplicates,
    a_sends_key_is_stable_across_handler_reruns,
);
