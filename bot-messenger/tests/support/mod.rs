//! Helpers shared by bot-messenger's integration tests: a bot served over real HTTP on
//! 127.0.0.1:0 against a fake Graph API, handlers that record what they saw, and metric reads.
//!
//! Each test crate uses a different subset, hence `dead_code` is allowed.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::{
    Bot, BotBuilder, Context, Error, Event, Handler, RetryPolicy, Secret, ShutdownReport,
};
use bot_messenger::testing::FakeMessenger;
use bot_messenger::{ConfigureApi, Messenger, MessengerBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub(crate) const APP_SECRET: &str = "test-app-secret";
pub(crate) const VERIFY_TOKEN: &str = "test-verify-token";
pub(crate) const PAGE_TOKEN: &str = "test-page-token";

pub(crate) fn app_secret() -> Secret {
    Secret::new(APP_SECRET)
}

/// Retries fast, so that tests about retries take milliseconds.
pub(crate) fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

/// The adapter, talking to `fake`, with fast retries.
pub(crate) fn messenger(fake: &FakeMessenger) -> MessengerBuilder {
    Messenger::builder(APP_SECRET, VERIFY_TOKEN, PAGE_TOKEN)
        .api_base(fake.url())
        .client(|c| c.retry(fast_retries(3)))
}

/// Replies with the text of text messages.
pub(crate) async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}

/// Every event a handler saw, in the order it saw them.
#[derive(Clone, Default)]
pub(crate) struct Seen(Arc<Mutex<Vec<Event>>>);

impl Seen {
    pub(crate) fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// A handler that records each event and does nothing else.
    pub(crate) fn recorder(&self) -> impl Handler {
        let seen = self.clone();
        move |_cx: Context, event: Event| {
            seen.0.lock().unwrap().push(event);
            std::future::ready(Ok::<(), Error>(()))
        }
    }

    /// A handler that records each event, then echoes text messages.
    pub(crate) fn echo_handler(&self) -> impl Handler {
        let seen = self.clone();
        move |cx: Context, event: Event| {
            seen.0.lock().unwrap().push(event.clone());
            echo(cx, event)
        }
    }
}

/// A bot served over real HTTP until [`Served::stop`].
pub(crate) struct Served {
    pub(crate) bot: Bot,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// The webhook's URL.
    pub(crate) webhook: String,
    server: JoinHandle<Result<ShutdownReport, Error>>,
}

impl Served {
    pub(crate) async fn stop(self) -> ShutdownReport {
        self.bot.request_shutdown();
        self.server.await.expect("server task").expect("server")
    }
}

/// Builds the bot and serves it on 127.0.0.1:0.
pub(crate) async fn serve(builder: BotBuilder) -> Served {
    let bot = builder.build().expect("bot builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    // The server under test: one long-lived task for the whole test.
    #[allow(clippy::disallowed_methods)]
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    Served {
        webhook: format!("{base}/messenger/webhook"),
        base,
        bot,
        server,
    }
}

/// The value of the first Prometheus sample whose line starts with `name` and holds every
/// `label` fragment (0 when there is none).
pub(crate) fn metric(bot: &Bot, name: &str, labels: &[&str]) -> f64 {
    let text = bot.telemetry().render_prometheus();
    text.lines()
        .filter(|line| line.starts_with(name))
        .find(|line| labels.iter().all(|l| line.contains(l)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Posts `body` to `url` with `signature` (or none) and returns the status.
pub(crate) async fn post_raw(
    url: &str,
    body: impl Into<reqwest::Body>,
    signature: Option<&str>,
) -> u16 {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    request.send().await.expect("request").status().as_u16()
}

/// An API that reads each request, counts it, and never answers (the connection stays open
/// until the client drops it): every call times out after its request went out. Returns the
/// base URL and the count of requests received.
pub(crate) async fn unanswering_api() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    // The test's server: it lives as long as the test's runtime.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let count = count.clone();
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let mut counted = false;
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    if !counted {
                        counted = true;
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (url, received)
}
