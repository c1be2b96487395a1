//! A LINE bot served over real HTTP on 127.0.0.1, answering through the fake LINE API.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bot_core::{Bot, BotBuilder, Context, Error, Event, Handler, Secret};
use bot_line::testing::FakeLine;
use bot_line::{ConfigureApi, Line, LineBuilder};
use tokio::task::JoinHandle;

pub const SECRET: &str = "test-channel-secret";
pub const TOKEN: &str = "test-access-token";

pub struct Harness {
    pub fake: FakeLine,
    pub bot: Bot,
    /// The webhook's URL.
    pub url: String,
    /// The server's base URL.
    pub base: String,
    server: JoinHandle<Result<bot_core::ShutdownReport, Error>>,
}

pub fn secret() -> Secret {
    Secret::new(SECRET)
}

/// Replies to every text message with its text.
pub async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}

/// A handler that counts the events it sees, then echoes.
#[derive(Clone, Default)]
pub struct Counting(pub Arc<AtomicUsize>);

impl Counting {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    pub fn handler(&self) -> impl Handler + use<> {
        let seen = self.0.clone();
        move |cx: Context, event: Event| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                echo(cx, event).await
            }
        }
    }
}

impl Harness {
    /// Starts the fake LINE API and a bot with the LINE adapter pointed at it.
    pub async fn start(
        handler: impl Handler,
        configure: impl FnOnce(BotBuilder) -> BotBuilder,
    ) -> Self {
        Self::start_with(handler, |line| line, configure).await
    }

    // ANCHOR: harness
    pub async fn start_with(
        handler: impl Handler,
        configure_line: impl FnOnce(LineBuilder) -> LineBuilder,
        configure: impl FnOnce(BotBuilder) -> BotBuilder,
    ) -> Self {
        let fake = FakeLine::start(TOKEN).await.unwrap();
        let line = configure_line(Line::builder(SECRET, TOKEN).api_base(fake.url()))
            .build()
            .unwrap();
        let bot = configure(Bot::builder().adapter(line).handler(handler))
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // The server under test: one long-lived task.
        #[allow(clippy::disallowed_methods)]
        let server = tokio::spawn(
            bot.clone()
                .serve_with_shutdown(listener, std::future::pending()),
        );
        Self {
            fake,
            bot,
            url: format!("{base}/line/webhook"),
            base,
            server,
        }
    }
    // ANCHOR_END: harness

    /// Shuts the bot down and waits for the server to end.
    pub async fn stop(self) -> bot_core::ShutdownReport {
        self.bot.request_shutdown();
        self.server.await.unwrap().unwrap()
    }

    /// The bot's Prometheus text.
    pub fn metrics(&self) -> String {
        self.bot.telemetry().render_prometheus()
    }
}

/// The value of one Prometheus sample, 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}
