//! A bot with the web chat adapter served over real HTTP on 127.0.0.1, and a WebSocket client.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bot_core::{Bot, BotBuilder, Context, Error, Event, Handler};
use bot_webchat::{WebChat, WebChatBuilder};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-webchat-secret";
/// How long a test waits for a frame the server must send: a bound on a hang, never a pause.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Harness {
    pub bot: Bot,
    pub webchat: WebChat,
    /// `ws://127.0.0.1:port/webchat/ws`.
    pub ws_url: String,
    /// `http://127.0.0.1:port`.
    pub base: String,
    server: JoinHandle<Result<bot_core::ShutdownReport, Error>>,
}

/// Replies to every text message with its text.
pub async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}

impl Harness {
    pub async fn start(handler: impl Handler) -> Self {
        Self::start_with(handler, |w| w, |b| b).await
    }

    pub async fn start_with(
        handler: impl Handler,
        configure_webchat: impl FnOnce(WebChatBuilder) -> WebChatBuilder,
        configure: impl FnOnce(BotBuilder) -> BotBuilder,
    ) -> Self {
        let webchat = configure_webchat(WebChat::builder(SECRET)).build().unwrap();
        let bot = configure(Bot::builder().adapter(webchat.clone()).handler(handler))
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The server under test: one long-lived task.
        #[allow(clippy::disallowed_methods)]
        let server = tokio::spawn(
            bot.clone()
                .serve_with_shutdown(listener, std::future::pending()),
        );
        Self {
            bot,
            ws_url: format!("ws://{addr}{}/ws", webchat.path()),
            base: format!("http://{addr}"),
            webchat,
            server,
        }
    }

    /// A valid token for `user`.
    pub fn token(&self, user: &str) -> String {
        self.webchat
            .issue_token(user, Duration::from_secs(600))
            .unwrap()
    }

    /// An open socket, not joined.
    pub async fn connect(&self) -> Ws {
        tokio_tungstenite::connect_async(self.ws_url.as_str())
            .await
            .unwrap()
            .0
    }

    /// A socket joined as `user`, and its welcome.
    pub async fn join(&self, user: &str, last_seq: Option<u64>) -> (Ws, Value) {
        let mut ws = self.connect().await;
        let mut join = json!({"type": "join", "v": 1, "token": self.token(user)});
        if let Some(seq) = last_seq {
            join["last_seq"] = json!(seq);
        }
        send(&mut ws, join).await;
        let welcome = next(&mut ws).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (ws, welcome)
    }

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

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next text frame, as JSON (pings and pongs skipped).
pub async fn next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within the wait")
            .expect("the socket is open")
            .expect("a frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next frame of `kind`, skipping others (acks, typing).
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = next(ws).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// Reads until the server's close frame; its code.
pub async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a close within the wait");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) => return u16::from(CloseCode::Status),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the socket failed before a close frame: {e}"),
            None => panic!("the socket ended without a close frame"),
        }
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

/// Polls `check` until it returns `Some`, failing after 10 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
