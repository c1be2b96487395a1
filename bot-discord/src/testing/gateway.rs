//! [`FakeGateway`]: a WebSocket server on 127.0.0.1 that speaks the gateway protocol.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, FlushCompress};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::{APPLICATION_ID, BOT_USER_ID, WAIT, lock};

/// A frame a client sent to the fake gateway.
#[derive(Debug, Clone)]
pub struct Received {
    /// Which connection, counting from 0.
    pub connection: usize,
    /// The opcode.
    pub op: u64,
    /// The payload.
    pub d: Value,
    /// When it arrived.
    pub at: Instant,
}

/// A connection a client opened.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The request path (`/` for the gateway URL, `/resume` for the resume URL).
    pub path: String,
    /// The query string.
    pub query: String,
    /// When it was opened.
    pub at: Instant,
}

enum Command {
    Frame(Value),
    Text(String),
    Close(u16),
}

#[derive(Default)]
struct SessionState {
    history: Vec<(u64, Value)>,
    live: Option<usize>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, SessionState>,
    newest_session: Option<String>,
    connections: Vec<Connected>,
    senders: HashMap<usize, mpsc::Sender<Command>>,
    received: Vec<Received>,
    readies: usize,
    resumed: usize,
    timed_out: usize,
    next_session: u64,
}

struct Inner {
    addr: SocketAddr,
    token: String,
    heartbeat_interval_ms: AtomicU64,
    acks: AtomicBool,
    state: Mutex<State>,
    notify: Notify,
}

/// A fake Discord gateway on 127.0.0.1, stopped when the last clone is dropped.
#[derive(Clone)]
pub struct FakeGateway {
    inner: Arc<Inner>,
    _stop: Arc<DropGuard>,
}

struct DropGuard(CancellationToken);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl fmt::Debug for FakeGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGateway")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl FakeGateway {
    /// Starts a gateway that accepts `token`, with a heartbeat interval of 41.25 s.
    ///
    /// # Errors
    ///
    /// Fails when no port can be bound.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let inner = Arc::new(Inner {
            addr: listener.local_addr()?,
            token: token.to_owned(),
            heartbeat_interval_ms: AtomicU64::new(41_250),
            acks: AtomicBool::new(true),
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        });
        let stop = CancellationToken::new();
        let accepting = inner.clone();
        let until = stop.clone();
        // The fake's accept loop: one long-lived task; a task per connection below.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = until.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                let inner = accepting.clone();
                let until = until.clone();
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(async move {
                    tokio::select! {
                        () = until.cancelled() => {}
                        () = serve(inner, stream) => {}
                    }
                });
            }
        });
        Ok(Self {
            inner,
            _stop: Arc::new(DropGuard(stop)),
        })
    }

    /// The gateway URL (`ws://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("ws://{}", self.inner.addr)
    }

    /// The URL READY gives as `resume_gateway_url`.
    pub fn resume_url(&self) -> String {
        format!("ws://{}/resume", self.inner.addr)
    }

    /// Sets the heartbeat interval of the next Hello.
    pub fn set_heartbeat_interval(&self, interval: Duration) {
        let ms = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.inner
            .heartbeat_interval_ms
            .store(ms, Ordering::Release);
    }

    /// Stops (false) or resumes (true) acknowledging heartbeats: a silent gateway is a zombie.
    pub fn set_acks(&self, acks: bool) {
        self.inner.acks.store(acks, Ordering::Release);
    }

    /// Sends a dispatch in the newest session; if its connection is gone, it waits in the
    /// session's history and is replayed on resume. Returns its sequence number.
    ///
    /// # Panics
    ///
    /// When no session exists yet.
    pub async fn dispatch(&self, name: &str, data: Value) -> u64 {
        let (frame, sender, sequence) = {
            let mut state = lock(&self.inner.state);
            let id = state
                .newest_session
                .clone()
                .expect("a session (wait_for_ready first)");
            let session = state.sessions.get_mut(&id).expect("the newest session");
            let sequence = session.history.last().map_or(1, |(s, _)| s + 1);
            let frame = json!({"op": 0, "s": sequence, "t": name, "d": data});
            session.history.push((sequence, frame.clone()));
            let live = session.live;
            let sender = live.and_then(|c| state.senders.get(&c).cloned());
            (frame, sender, sequence)
        };
        if let Some(sender) = sender {
            let _ = sender.send(Command::Frame(frame)).await;
        }
        sequence
    }

    /// Sends `text` as it is on the newest connection: a frame written otherwise than Discord
    /// writes them (keys in another order, a key after `d`), or not a frame at all.
    pub async fn send_text(&self, text: impl Into<String>) {
        self.send_newest(Command::Text(text.into())).await;
    }

    /// Sends op 7 Reconnect on the newest connection.
    pub async fn reconnect(&self) {
        self.send_newest(Command::Frame(json!({"op": 7, "d": null})))
            .await;
    }

    /// Sends op 9 Invalid Session on the newest connection; `resumable` is its `d`. A session
    /// declared not resumable is forgotten.
    pub async fn invalid_session(&self, resumable: bool) {
        if !resumable {
            let mut state = lock(&self.inner.state);
            if let Some(id) = state.newest_session.take() {
                state.sessions.remove(&id);
            }
        }
        self.send_newest(Command::Frame(json!({"op": 9, "d": resumable})))
            .await;
    }

    /// Closes the newest connection with `code`.
    pub async fn close(&self, code: u16) {
        self.send_newest(Command::Close(code)).await;
    }

    async fn send_newest(&self, command: Command) {
        let sender = {
            let state = lock(&self.inner.state);
            state
                .connections
                .len()
                .checked_sub(1)
                .and_then(|c| state.senders.get(&c).cloned())
        };
        if let Some(sender) = sender {
            let _ = sender.send(command).await;
        }
    }

    /// Every frame clients sent, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.inner.state).received.clone()
    }

    /// The frames clients sent with opcode `op`.
    pub fn received_op(&self, op: u64) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.op == op).collect()
    }

    /// The connections clients opened.
    pub fn connections(&self) -> Vec<Connected> {
        lock(&self.inner.state).connections.clone()
    }

    /// How many READY the fake sent (new sessions).
    pub fn readies(&self) -> usize {
        lock(&self.inner.state).readies
    }

    /// How many connections the fake closed because their heartbeats stopped.
    pub fn timed_out(&self) -> usize {
        lock(&self.inner.state).timed_out
    }

    /// How many RESUMED the fake sent (successful resumes).
    pub fn resumes(&self) -> usize {
        lock(&self.inner.state).resumed
    }

    /// Waits until `ready` returns true for the fake's state.
    ///
    /// # Panics
    ///
    /// After [`WAIT`], naming `what`.
    pub async fn wait_until(&self, what: &str, ready: impl Fn(&FakeGateway) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "fake gateway: no {what} after {WAIT:?}; received {:#?}",
                    self.received()
                        .iter()
                        .map(|r| (r.connection, r.op))
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    /// Waits for `count` READY.
    pub async fn wait_for_readies(&self, count: usize) {
        self.wait_until(&format!("{count} READY"), |g| g.readies() >= count)
            .await;
    }

    /// Waits for `count` RESUMED.
    pub async fn wait_for_resumes(&self, count: usize) {
        self.wait_until(&format!("{count} RESUMED"), |g| g.resumes() >= count)
            .await;
    }

    /// Waits for `count` frames with opcode `op`.
    pub async fn wait_for_op(&self, op: u64, count: usize) {
        self.wait_until(&format!("{count} frames of op {op}"), |g| {
            g.received_op(op).len() >= count
        })
        .await;
    }
}

struct Outgoing {
    sink: futures::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        Message,
    >,
    deflate: Option<Compress>,
}

impl Outgoing {
    async fn send(&mut self, frame: &Value) -> bool {
        self.send_text(discord_order(frame)).await
    }

    async fn send_text(&mut self, text: String) -> bool {
        let message = match &mut self.deflate {
            Some(context) => {
                // Deflate never grows data by more than a few bytes per 16 KiB block.
                let mut out = Vec::with_capacity(text.len() + text.len() / 16 + 1024);
                let before = context.total_in();
                if context
                    .compress_vec(text.as_bytes(), &mut out, FlushCompress::Sync)
                    .is_err()
                    || context.total_in() - before != text.len() as u64
                {
                    return false;
                }
                Message::Binary(out.into())
            }
            None => Message::text(text),
        };
        self.sink.send(message).await.is_ok()
    }

    async fn close(&mut self, code: u16) {
        let _ = self
            .sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            })))
            .await;
    }
}

async fn serve(inner: Arc<Inner>, stream: tokio::net::TcpStream) {
    let mut path = String::new();
    let mut query = String::new();
    // The handshake callback's error type is tungstenite's, large by its design.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        path = request.uri().path().to_owned();
        query = request.uri().query().unwrap_or_default().to_owned();
        Ok(response)
    };
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let compress = query.contains("compress=zlib-stream");
    let (commands, mut incoming_commands) = mpsc::channel(1024);
    let connection = {
        let mut state = lock(&inner.state);
        state.connections.push(Connected {
            path,
            query,
            at: Instant::now(),
        });
        let connection = state.connections.len() - 1;
        state.senders.insert(connection, commands);
        connection
    };
    inner.notify.notify_waiters();
    let (sink, mut stream) = socket.split();
    let mut out = Outgoing {
        sink,
        deflate: compress.then(|| Compress::new(Compression::fast(), true)),
    };
    let interval = inner.heartbeat_interval_ms.load(Ordering::Acquire);
    if !out
        .send(&json!({"op": 10, "d": {"heartbeat_interval": interval}}))
        .await
    {
        return;
    }
    // Discord drops a connection whose heartbeats stop; so does the fake, after 1.5 intervals.
    let silence = Duration::from_millis(interval + interval / 2);
    let timeout = tokio::time::sleep(silence);
    tokio::pin!(timeout);
    loop {
        tokio::select! {
            () = &mut timeout => {
                lock(&inner.state).timed_out += 1;
                out.close(4009).await;
                break;
            }
            command = incoming_commands.recv() => match command {
                Some(Command::Text(text)) => {
                    if !out.send_text(text).await {
                        break;
                    }
                }
                Some(Command::Frame(frame)) => {
                    if !out.send(&frame).await {
                        break;
                    }
                }
                Some(Command::Close(code)) => {
                    out.close(code).await;
                    break;
                }
                None => break,
            },
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                let op = frame.get("op").and_then(Value::as_u64).unwrap_or(u64::MAX);
                let d = frame.get("d").cloned().unwrap_or(Value::Null);
                lock(&inner.state).received.push(Received { connection, op, d: d.clone(), at: Instant::now() });
                inner.notify.notify_waiters();
                if op == 1 {
                    timeout.as_mut().reset(tokio::time::Instant::now() + silence);
                }
                let keep_going = match op {
                    1 if inner.acks.load(Ordering::Acquire) => out.send(&json!({"op": 11})).await,
                    2 => identify(&inner, connection, &d, &mut out).await,
                    6 => resume(&inner, connection, &d, &mut out).await,
                    _ => true,
                };
                if !keep_going {
                    break;
                }
            }
        }
    }
    let mut state = lock(&inner.state);
    state.senders.remove(&connection);
    for session in state.sessions.values_mut() {
        if session.live == Some(connection) {
            session.live = None;
        }
    }
    drop(state);
    inner.notify.notify_waiters();
}

async fn identify(inner: &Inner, connection: usize, d: &Value, out: &mut Outgoing) -> bool {
    if d.get("token").and_then(Value::as_str) != Some(inner.token.as_str()) {
        out.close(4004).await;
        return false;
    }
    let session_id = {
        let mut state = lock(&inner.state);
        state.next_session += 1;
        let id = format!("session-{}", state.next_session);
        state.sessions.insert(
            id.clone(),
            SessionState {
                history: Vec::new(),
                live: Some(connection),
            },
        );
        state.newest_session = Some(id.clone());
        id
    };
    let ready = json!({"op": 0, "s": 1, "t": "READY", "d": {
        "v": 10,
        "user": {"id": BOT_USER_ID, "username": "fakebot", "bot": true},
        "guilds": [],
        "session_id": session_id,
        "resume_gateway_url": format!("ws://{}/resume", inner.addr),
        "shard": d.get("shard").cloned().unwrap_or(Value::Null),
        "application": {"id": APPLICATION_ID, "flags": 0},
    }});
    {
        let mut state = lock(&inner.state);
        if let Some(session) = state.sessions.get_mut(&session_id) {
            session.history.push((1, ready.clone()));
        }
        state.readies += 1;
    }
    inner.notify.notify_waiters();
    out.send(&ready).await
}

async fn resume(inner: &Inner, connection: usize, d: &Value, out: &mut Outgoing) -> bool {
    let token_ok = d.get("token").and_then(Value::as_str) == Some(inner.token.as_str());
    let id = d
        .get("session_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let after = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let replay = {
        let mut state = lock(&inner.state);
        match state.sessions.get_mut(id).filter(|_| token_ok) {
            Some(session) => {
                session.live = Some(connection);
                let next = session.history.last().map_or(1, |(s, _)| s + 1);
                let resumed = json!({"op": 0, "s": next, "t": "RESUMED", "d": {}});
                session.history.push((next, resumed));
                let frames: Vec<Value> = session
                    .history
                    .iter()
                    .filter(|(s, _)| *s > after)
                    .map(|(_, f)| f.clone())
                    .collect();
                state.newest_session = Some(id.to_owned());
                state.resumed += 1;
                Some(frames)
            }
            None => None,
        }
    };
    inner.notify.notify_waiters();
    match replay {
        Some(frames) => {
            for frame in &frames {
                if !out.send(frame).await {
                    return false;
                }
            }
            true
        }
        None => out.send(&json!({"op": 9, "d": false})).await,
    }
}

/// A frame's text with its keys in the order Discord writes them (`t`, `s`, `op`, `d`, each
/// present, `null` when not given), as the shard reads dispatches fastest.
fn discord_order(frame: &Value) -> String {
    let field = |key| frame.get(key).unwrap_or(&Value::Null);
    format!(
        r#"{{"t":{},"s":{},"op":{},"d":{}}}"#,
        field("t"),
        field("s"),
        field("op"),
        field("d")
    )
}
