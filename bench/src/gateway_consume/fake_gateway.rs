//! [`FastGateway`]: the fake gateway, HELLO, IDENTIFY, READY, heartbeat ACKs, then dispatches as
//! fast as the client reads them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::frames::{message_create, ready};
use super::{FLUSH_EVERY, HEARTBEAT_INTERVAL_MS};

/// What the fake saw of its client.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) connections: AtomicU64,
    pub(super) heartbeats: AtomicU64,
    pub(super) written: AtomicU64,
}

/// A fake gateway on 127.0.0.1 that dispatches `messages` MESSAGE_CREATE as fast as its one
/// client reads, once told to [`FastGateway::go`].
#[derive(Debug)]
pub(crate) struct FastGateway {
    pub(super) url: String,
    pub(super) ready: CancellationToken,
    pub(super) go: CancellationToken,
    pub(super) stop: CancellationToken,
    pub(super) counters: Arc<Counters>,
}

impl Drop for FastGateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FastGateway {
    /// Binds 127.0.0.1 and serves clients (the first one in full; a second one is counted, a
    /// sign that the client reconnected and the run is void).
    pub(crate) async fn start(messages: u64, channels: u64) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the fake gateway: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no address for the fake gateway: {e}"))?;
        let url = format!("ws://{addr}");
        let gateway = Self {
            url: url.clone(),
            ready: CancellationToken::new(),
            go: CancellationToken::new(),
            stop: CancellationToken::new(),
            counters: Arc::new(Counters::default()),
        };
        let (ready, go, stop, counters) = (
            gateway.ready.clone(),
            gateway.go.clone(),
            gateway.stop.clone(),
            gateway.counters.clone(),
        );
        // One long-lived task for the fake, ended by `stop` (on drop).
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((socket, _)) = accepted else { continue };
                let _ = socket.set_nodelay(true);
                let first = counters.connections.fetch_add(1, Ordering::Relaxed) == 0;
                if !first {
                    continue;
                }
                let session = Session {
                    url: url.clone(),
                    messages,
                    channels,
                    ready: ready.clone(),
                    go: go.clone(),
                    stop: stop.clone(),
                    counters: counters.clone(),
                };
                // One task for the one client; ended by `stop` or its disconnecting.
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(async move {
                    if let Err(e) = session.serve(socket).await {
                        eprintln!("fake gateway: {e}");
                    }
                });
            }
        });
        Ok(gateway)
    }

    /// The URL to give the client.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Waits until READY was sent, or `alive` says the client is gone, or 30 s.
    pub(crate) async fn wait_for_ready(
        &self,
        alive: impl FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        self.wait_for_ready_within(Duration::from_secs(30), alive)
            .await
    }

    /// Waits until READY was sent, or `alive` says the client is gone, or `limit` has passed.
    pub(crate) async fn wait_for_ready_within(
        &self,
        limit: Duration,
        mut alive: impl FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while !self.ready.is_cancelled() {
            alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "the client did not identify on the fake gateway within {limit:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Starts dispatching.
    pub(crate) fn go(&self) {
        self.go.cancel();
    }

    /// Connections accepted so far (1 in a good run).
    pub(crate) fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Dispatches written to the socket so far.
    pub(crate) fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }
}

/// The fake's side of one connection.
pub(super) struct Session {
    pub(super) url: String,
    pub(super) messages: u64,
    pub(super) channels: u64,
    pub(super) ready: CancellationToken,
    pub(super) go: CancellationToken,
    pub(super) stop: CancellationToken,
    pub(super) counters: Arc<Counters>,
}

/// The op code of a client's frame.
pub(super) fn op_of(message: &Message) -> Option<u64> {
    let text = message.to_text().ok()?;
    serde_json::from_str::<serde_json::Value>(text)
        .ok()?
        .get("op")?
        .as_u64()
}

pub(super) const HEARTBEAT_ACK: &str = r#"{"op":11,"d":null}"#;

impl Session {
    pub(super) async fn serve(self, socket: tokio::net::TcpStream) -> Result<(), String> {
        let mut ws = tokio_tungstenite::accept_async(socket)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let hello = json!({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}});
        ws.send(Message::text(hello.to_string()))
            .await
            .map_err(|e| format!("hello: {e}"))?;
        // IDENTIFY, answering heartbeats meanwhile.
        loop {
            let Some(Ok(message)) = ws.next().await else {
                return Err("the client left before identifying".into());
            };
            match op_of(&message) {
                Some(2) => break,
                Some(1) => {
                    self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                    ws.send(Message::text(HEARTBEAT_ACK))
                        .await
                        .map_err(|e| format!("ack: {e}"))?;
                }
                _ => {}
            }
        }
        ws.send(Message::text(ready(&self.url)))
            .await
            .map_err(|e| format!("ready: {e}"))?;
        self.ready.cancel();
        let (mut sink, mut stream) = ws.split();
        let (acks, mut ack_queue) = tokio::sync::mpsc::channel::<()>(64);
        let heartbeats = &self.counters.heartbeats;
        let reader = async {
            while let Some(Ok(message)) = stream.next().await {
                if op_of(&message) == Some(1) {
                    heartbeats.fetch_add(1, Ordering::Relaxed);
                    let _ = acks.try_send(());
                }
            }
        };
        let writer = async {
            // Idle until told to go, answering heartbeats.
            loop {
                tokio::select! {
                    () = self.go.cancelled() => break,
                    () = self.stop.cancelled() => return Ok(()),
                    ack = ack_queue.recv() => {
                        if ack.is_none() { return Ok(()) }
                        sink.send(Message::text(HEARTBEAT_ACK)).await.map_err(|e| format!("ack: {e}"))?;
                    }
                }
            }
            for number in 0..self.messages {
                while ack_queue.try_recv().is_ok() {
                    sink.feed(Message::text(HEARTBEAT_ACK))
                        .await
                        .map_err(|e| format!("ack: {e}"))?;
                }
                let mut frame = String::with_capacity(1280);
                message_create(&mut frame, number + 2, number, self.channels);
                sink.feed(Message::text(frame))
                    .await
                    .map_err(|e| format!("dispatch: {e}"))?;
                if number % FLUSH_EVERY == FLUSH_EVERY - 1 {
                    sink.flush().await.map_err(|e| format!("dispatch: {e}"))?;
                    self.counters.written.store(number + 1, Ordering::Relaxed);
                }
            }
            sink.flush().await.map_err(|e| format!("dispatch: {e}"))?;
            self.counters
                .written
                .store(self.messages, Ordering::Relaxed);
            // Keep the connection (and heartbeats) until the run ends.
            loop {
                tokio::select! {
                    () = self.stop.cancelled() => return Ok::<(), String>(()),
                    ack = ack_queue.recv() => {
                        if ack.is_none() { return Ok(()) }
                        sink.send(Message::text(HEARTBEAT_ACK)).await.map_err(|e| format!("ack: {e}"))?;
                    }
                }
            }
        };
        tokio::select! {
            result = writer => result,
            () = reader => Ok(()),
        }
    }
}
