// Over 700 lines on purpose: a connection is one state machine (`Connection::serve` and its frame
// handling share the heartbeat, batch and session state); its parts without that state live in
// frame.rs, batch.rs and status.rs.
//! One shard: one gateway connection at a time, kept alive, resumed, and fed into the runtime.
//!
//! The lifecycle:
//!
//! ```text
//!            connect ──► Hello ──► Identify (waits for its identify bucket) ──► READY ──┐
//!               ▲                  or Resume (session kept)           ──► RESUMED ─┤
//!               │                                                                  ▼
//!   backoff ◄───┤◄── connection lost / op 7 Reconnect / zombie / close 4000-like ◄── dispatches
//!               │◄── op 9 Invalid Session: resumable → resume; else wait 1-5 s, identify
//!               └─── close 4004, 4010-4014 ──► the shard stops with a typed error
//! ```
//!
//! Heartbeats run on their own timer (the first after `heartbeat_interval × jitter`). A heartbeat
//! whose ACK has not arrived by the next one means a zombie connection: the shard closes it with a
//! code that keeps the session (never 1000/1001) and resumes on `resume_gateway_url`.
//!
//! Hand-over in batches, within a window: dispatches are read into a batch (at most
//! [`ShardConfig::max_batch_dispatches`] or [`ShardConfig::max_batch_bytes`]) that goes to the
//! runtime in one submit. While one batch is being handed over the shard keeps reading into the
//! next; once that one is full it is mapped at once, on a task of its own, and submitted as soon
//! as the one before it is accepted (submits keep the order of reading), while the shard reads
//! into a third; when that one is full too, reading stops until the oldest is accepted. So a full
//! queue slows the shard down instead of growing a buffer (at most three batches are read and
//! not yet accepted, two of them mapped), while heartbeats keep going out on time. Zombie
//! detection is suspended while reading is held up, since an ACK may be waiting unread. The
//! sequence advances only once the runtime accepted a batch (to its last dispatch), so a resume
//! replays anything not accepted yet; deduplication drops what was accepted twice.
//!
//! A dispatch is parsed once: its envelope (`t`, `s`, `op`, written before `d`) is read from its
//! first bytes, and its data, a slice of one exact-size copy of the message (the event's raw
//! payload), is parsed when its batch is mapped, into a view that borrows from it. A frame written
//! otherwise (another op, `d` not last, data that is not JSON as cut) is parsed whole. A batch is
//! mapped and submitted on a task of its own, so the shard reads on while it is handed over, and
//! the next batch is mapped while this one is submitted.
//!
//! A queue that fails (a database that is read-only, full or unreachable) is back-pressure too:
//! the shard keeps its session and its heartbeats, reads nothing more, and offers the dispatch
//! again with a capped back-off ([`ShardConfig::queue_retry_backoff`]). Meanwhile it logs an
//! error (at the first failure, then at most every [`QUEUE_ERROR_LOG_INTERVAL`]) and reports its
//! component `discord shard N/M` not ready, so `/readyz` answers 503 naming it. Only a queue
//! closed for shutdown ends the shard.

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bot_core::readiness::Component;
use bot_core::{Ingress, Platform};
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, BatchLimits, Dispatch, HandOver, HandOvers, hand_over};
use super::compression::Inflater;
use super::config::{ShardConfig, ShardId};
use super::frame::{close, gateway_url, next_payload, parse_frame, quick_dispatch};
use super::identify::IdentifyQueue;
use super::session::Session;
use super::status::ShardStatus;
use crate::error::{Error, ErrorKind};
use crate::event::DispatchContext;

/// The gateway API version.
pub const GATEWAY_VERSION: u8 = 10;
const OP_DISPATCH: u8 = 0;
const OP_HEARTBEAT: u8 = 1;
const OP_IDENTIFY: u8 = 2;
const OP_RESUME: u8 = 6;
const OP_RECONNECT: u8 = 7;
const OP_INVALID_SESSION: u8 = 9;
const OP_HELLO: u8 = 10;
const OP_HEARTBEAT_ACK: u8 = 11;
/// Closing with this code keeps the session resumable (1000 and 1001 end it).
const RESUMABLE_CLOSE: u16 = 4000;
/// Commands other than heartbeats per minute: Discord allows 120, heartbeats take the rest.
const COMMANDS_PER_MINUTE: u32 = 110;
/// Commands queued ahead of the connection.
const COMMAND_BUFFER: usize = 16;
/// Most bytes waiting to be written on a connection.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;
/// The wait before submitting again when the queue is full and says nothing.
pub(super) const FULL_QUEUE_WAIT: Duration = Duration::from_millis(50);
/// A session that lasted this long after READY was no invalid-session loop: the next invalid
/// session waits the short wait again.
const STABLE_SESSION: Duration = Duration::from_secs(60);
/// The longest a connection that ended waits for the hand-over of what it read.
const FINISH_WAIT: Duration = Duration::from_secs(2);
/// While the queue keeps failing, its error is logged at most this often (the first at once).
pub const QUEUE_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// One shard of a bot's gateway connection.
pub struct Shard {
    id: ShardId,
    config: Arc<ShardConfig>,
    identify: IdentifyQueue,
    status: Arc<ShardStatus>,
    commands: mpsc::Sender<String>,
    command_queue: tokio::sync::Mutex<mpsc::Receiver<String>>,
    command_limiter: DefaultDirectRateLimiter,
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard")
            .field("id", &self.id)
            .field("config", &self.config)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Why a connection ended, and what comes next.
pub(super) enum Next {
    Shutdown,
    Resume {
        reason: &'static str,
        at_once: bool,
    },
    Reidentify {
        reason: &'static str,
        wait: Duration,
    },
    Fatal(Error),
}

/// A shard's wait for its identify turn (and budget).
type IdentifyTurn<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

impl Shard {
    /// A shard that identifies through `identify` (shared by the shards of one process).
    pub fn new(id: ShardId, config: Arc<ShardConfig>, identify: IdentifyQueue) -> Self {
        let (commands, queue) = mpsc::channel(COMMAND_BUFFER);
        let per_minute = NonZeroU32::new(COMMANDS_PER_MINUTE).expect("not zero");
        Self {
            id,
            config,
            identify,
            status: Arc::default(),
            commands,
            command_queue: tokio::sync::Mutex::new(queue),
            command_limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
        }
    }

    /// Which shard this is.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// What the shard is doing.
    pub fn status(&self) -> &ShardStatus {
        &self.status
    }

    /// Sends a gateway command (`{"op": 3, "d": ...}` presence update, op 8 request guild
    /// members), waiting for room under Discord's 120 commands per minute.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when the payload is over Discord's 4096 bytes.
    pub async fn send(&self, command: Value) -> Result<(), Error> {
        let text = command.to_string();
        if text.len() > 4096 {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "discord gateway: a command is at most 4096 bytes",
            ));
        }
        self.command_limiter.until_ready().await;
        self.commands
            .send(text)
            .await
            .map_err(|_| Error::new(ErrorKind::Gateway, "discord gateway: the shard is gone"))
    }

    /// Runs the shard until `shutdown` or a fatal close code, handing every dispatch to `ingress`.
    ///
    /// # Errors
    ///
    /// A fatal gateway refusal ([`Error::is_fatal`]): a bad token (4004), invalid shard (4010),
    /// sharding required (4011), invalid version (4012), invalid or disallowed intents
    /// (4013, 4014). Everything else is retried.
    pub async fn run(&self, ingress: Ingress, shutdown: CancellationToken) -> Result<(), Error> {
        let mut commands = self.command_queue.lock().await;
        let readiness = Arc::new(
            ingress
                .readiness()
                .component(self.config.part_name(self.id)),
        );
        let mut session: Option<Session> = None;
        let mut failures: u32 = 0;
        // Invalid sessions in a row (READY, then op 9 soon after): each waits twice as long.
        let mut invalid_streak: u32 = 0;
        let mut context = Arc::new(self.config.dispatch_context());
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let mut connection = Connection {
                shard: self,
                ingress: &ingress,
                shutdown: &shutdown,
                session: &mut session,
                context: &mut context,
                readiness: &readiness,
                healthy: false,
                ready_at: None,
            };
            let next = connection.run(&mut commands).await;
            let healthy = connection.healthy;
            if connection
                .ready_at
                .is_some_and(|at| at.elapsed() >= STABLE_SESSION)
            {
                invalid_streak = 0;
            }
            if healthy {
                failures = 0;
            }
            let (reason, wait, prompt) = match next {
                Next::Shutdown => return Ok(()),
                Next::Fatal(error) => {
                    tracing::error!(shard = self.id.number, %error, "discord shard stopped");
                    return Err(error);
                }
                Next::Resume { reason, at_once } => {
                    if healthy {
                        invalid_streak = 0;
                    }
                    (reason, Duration::ZERO, at_once)
                }
                Next::Reidentify { reason, wait } => {
                    session = None;
                    self.status.set_session(None);
                    let wait = if reason == INVALID_SESSION {
                        invalid_streak += 1;
                        let wait = self.config.invalid_session_backoff(wait, invalid_streak);
                        if invalid_streak > 1 {
                            tracing::warn!(
                                shard = self.id.number,
                                in_a_row = invalid_streak,
                                ?wait,
                                "discord: invalid sessions in a row; waiting longer before identifying"
                            );
                        }
                        wait
                    } else {
                        wait
                    };
                    (reason, wait, true)
                }
            };
            self.reconnected(&ingress, reason);
            // A working connection asked to reconnect goes back at once (or after the wait it
            // was told); anything else, and anything before READY or RESUMED, backs off, so a
            // gateway that keeps refusing never sees a storm of connections or identifies.
            let delay = if healthy && prompt {
                wait
            } else {
                failures += 1;
                wait.max(self.config.backoff_for(failures))
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn reconnected(&self, ingress: &Ingress, reason: &'static str) {
        tracing::info!(shard = self.id.number, reason, "discord shard reconnecting");
        ingress
            .telemetry()
            .gateway_reconnect(&Platform::DISCORD, reason);
    }
}

struct Connection<'a> {
    shard: &'a Shard,
    ingress: &'a Ingress,
    shutdown: &'a CancellationToken,
    session: &'a mut Option<Session>,
    /// Shared with the hand-overs in flight, which map their dispatches with it.
    context: &'a mut Arc<DispatchContext>,
    readiness: &'a Arc<Component>,
    /// When READY arrived on this connection.
    ready_at: Option<Instant>,
    /// Set once READY or RESUMED arrived: the connection worked, so the backoff starts over.
    healthy: bool,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Connection<'_> {
    async fn run(&mut self, commands: &mut mpsc::Receiver<String>) -> Next {
        let config = &self.shard.config;
        let base = self
            .session
            .as_ref()
            .map_or(config.url.as_str(), |s| s.resume_url.as_str());
        let url = gateway_url(base, config.compress);
        let socket_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer_bytes)
            // Heartbeats and commands go out at once; a stalled socket cannot grow the buffer.
            .write_buffer_size(0)
            .max_write_buffer_size(MAX_WRITE_BUFFER);
        let connect =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(socket_config), true);
        let socket = tokio::select! {
            () = self.shutdown.cancelled() => return Next::Shutdown,
            connected = tokio::time::timeout(config.hello_timeout, connect) => match connected {
                Ok(Ok((socket, _))) => socket,
                Ok(Err(error)) => {
                    tracing::warn!(shard = self.shard.id.number, %error, "discord gateway connection failed");
                    return Next::Resume { reason: "connect_failed", at_once: false };
                }
                Err(_) => return Next::Resume { reason: "connect_timeout", at_once: false },
            },
        };
        self.shard
            .status
            .connections
            .fetch_add(1, Ordering::Relaxed);
        self.serve(socket, commands).await
    }

    async fn serve(&mut self, socket: Socket, commands: &mut mpsc::Receiver<String>) -> Next {
        let shutdown = self.shutdown;
        let (mut sink, mut stream) = socket.split();
        let mut inflater = self.shard.config.compress.then(Inflater::new);

        // Hello first (op 7 may come before it).
        let hello = async {
            loop {
                let payload = next_payload(&mut stream, &mut inflater).await?;
                let Some(frame) = parse_frame(payload.bytes(inflater.as_ref())) else {
                    continue;
                };
                return match frame.op {
                    OP_HELLO => heartbeat_interval(frame.data()).ok_or(Next::Resume {
                        reason: "bad_hello",
                        at_once: false,
                    }),
                    OP_RECONNECT => Err(Next::Resume {
                        reason: "reconnect",
                        at_once: true,
                    }),
                    _ => Err(Next::Resume {
                        reason: "no_hello",
                        at_once: false,
                    }),
                };
            }
        };
        let interval = tokio::select! {
            () = self.shutdown.cancelled() => return Next::Shutdown,
            hello = tokio::time::timeout(self.shard.config.hello_timeout, hello) => match hello {
                Ok(Ok(interval)) => interval,
                Ok(Err(next)) => return next,
                Err(_) => return Next::Resume { reason: "hello_timeout", at_once: false },
            },
        };

        // A new session waits for its identify bucket with the heartbeat already running, so a
        // long wait (many shards, one bucket) never lets the connection time out.
        let shard = self.shard;
        let mut identify_turn: Option<IdentifyTurn<'_>> = None;
        match self.session.as_ref() {
            Some(session) => {
                shard.status.resumes.fetch_add(1, Ordering::Relaxed);
                let resume = json!({"op": OP_RESUME, "d": {
                    "token": shard.config.token.expose(),
                    "session_id": session.id,
                    "seq": session.sequence,
                }});
                if sink.send(Message::text(resume.to_string())).await.is_err() {
                    return Next::Resume {
                        reason: "send_failed",
                        at_once: false,
                    };
                }
            }
            None => identify_turn = Some(Box::pin(shard.identify.wait_turn(shard.id.number))),
        }

        let beat = tokio::time::sleep(interval.mul_f64(fastrand::f64()));
        tokio::pin!(beat);
        let mut beats = Beats::default();
        let limits = BatchLimits {
            dispatches: shard.config.max_batch_dispatches,
            bytes: shard.config.max_batch_bytes,
        };
        // How long reading was held up since the last beat (an ACK may be waiting unread
        // meanwhile), and since when it is held now.
        let mut held_for = Duration::ZERO;
        let mut held_since: Option<Instant> = None;
        // The batches being handed over (mapped, or with the queue), and the one filling.
        let mut hand_overs = HandOvers::default();
        let mut batch = Batch::default();

        loop {
            let reading = !(hand_overs.is_full() && batch.is_full(limits));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // Finish handing over what was read: it is in no one's hands otherwise.
                    self.hand_over_rest(&mut hand_overs, &mut batch).await;
                    let _ = sink.send(close(1000)).await;
                    return Next::Shutdown;
                }
                turn = async { identify_turn.as_mut().expect("guarded").await }, if identify_turn.is_some() => {
                    identify_turn = None;
                    if let Err(error) = turn {
                        // The day's session starts are spent down to the reserve: identifying
                        // now could get the token reset. Wait for the budget, not ready.
                        tracing::error!(shard = shard.id.number, %error, "discord shard cannot identify");
                        self.readiness.set_not_ready(error.to_string());
                        let _ = sink.send(close(1000)).await;
                        return Next::Reidentify {
                            reason: "session_start_limit",
                            wait: error.retry_after().unwrap_or(Duration::from_secs(60)),
                        };
                    }
                    shard.status.identifies.fetch_add(1, Ordering::Relaxed);
                    let identify = identify_payload(&shard.config, shard.id);
                    if sink.send(Message::text(identify.to_string())).await.is_err() {
                        return Next::Resume { reason: "send_failed", at_once: false };
                    }
                }
                () = &mut beat => {
                    let now = Instant::now();
                    let held = held_for + held_since.map_or(Duration::ZERO, |at| now - at);
                    // A missing ACK means a zombie unless reading is held right now or was held
                    // for much of the interval: then the ACK may simply not be read yet.
                    if beats.awaiting_ack && held_since.is_none() && held < interval / 2 {
                        tracing::warn!(shard = self.shard.id.number, "discord heartbeat not acknowledged: zombie connection");
                        let _ = sink.send(close(RESUMABLE_CLOSE)).await;
                        return Next::Resume { reason: "zombie", at_once: true };
                    }
                    let sequence = self.session.as_ref().map(|s| s.sequence);
                    let heartbeat = json!({"op": OP_HEARTBEAT, "d": sequence});
                    if sink.send(Message::text(heartbeat.to_string())).await.is_err() {
                        return Next::Resume { reason: "send_failed", at_once: false };
                    }
                    beats.sent_at = Some(now);
                    beats.awaiting_ack = true;
                    held_for = Duration::ZERO;
                    held_since = held_since.map(|_| now);
                    beat.as_mut().reset(now + interval);
                }
                (accepted, sequence) = hand_overs.oldest_settled(), if !hand_overs.is_empty() => {
                    if let Some(at) = held_since.take() {
                        held_for += at.elapsed();
                    }
                    if accepted.is_err() {
                        // The runtime is shutting down and takes nothing more.
                        let _ = sink.send(close(1000)).await;
                        return Next::Shutdown;
                    }
                    self.shard.status.hand_overs.fetch_add(1, Ordering::Relaxed);
                    self.advance(sequence);
                    self.flush_if_due(&mut hand_overs, &mut batch, limits);
                }
                Some(command) = commands.recv() => {
                    if sink.send(Message::text(command)).await.is_err() {
                        return Next::Resume { reason: "send_failed", at_once: false };
                    }
                }
                payload = next_payload(&mut stream, &mut inflater), if reading => {
                    let mut payload = match payload {
                        Ok(payload) => payload,
                        Err(next) => {
                            return self.finish(hand_overs, batch, next).await;
                        }
                    };
                    // Then whatever else is already readable, up to a full batch: a queue that
                    // accepts at once still gets batches, not one dispatch per submit.
                    loop {
                        let outstanding = !hand_overs.is_empty();
                        // One copy of the message, of its exact size, which its dispatches'
                        // payloads share: a slice of the WebSocket layer's buffer would keep its
                        // whole read buffer (16 KiB, or what a large frame made it reserve)
                        // alive for as long as one of its events is queued, and the inflater's
                        // buffer is reused for the next message.
                        // A text message's copy is UTF-8 without a check (the WebSocket layer
                        // checked it); a binary or inflated one is checked once, here. One that
                        // is not UTF-8 is no JSON: logged and ignored, as a frame that does
                        // not parse.
                        if let Some(message) = payload.text_copy(inflater.as_ref()) {
                            if self.on_quick_dispatch(&message, &mut batch) {
                                // A dispatch, read from its envelope; its data is parsed when
                                // mapped.
                            } else if let Some(next) = self
                                .on_frame(&message, &mut sink, &mut beats, &mut batch, outstanding)
                                .await
                            {
                                return self.finish(hand_overs, batch, next).await;
                            }
                        } else {
                            tracing::warn!(
                                shard = self.shard.id.number,
                                "discord gateway frame is not a payload: not UTF-8"
                            );
                        }
                        if batch.is_full(limits) {
                            break;
                        }
                        match next_payload(&mut stream, &mut inflater).now_or_never() {
                            None => break,
                            Some(Ok(next)) => payload = next,
                            Some(Err(next)) => {
                                return self.finish(hand_overs, batch, next).await;
                            }
                        }
                    }
                    self.flush_if_due(&mut hand_overs, &mut batch, limits);
                    if hand_overs.is_full() && batch.is_full(limits) && held_since.is_none() {
                        held_since = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// The connection ended (`next`): hands over what was read, unless the queue is failing
    /// or this takes longer than [`FINISH_WAIT`]; what is not accepted then is replayed by the
    /// resume, or delivered again by Discord.
    async fn finish(&mut self, mut hand_overs: HandOvers, mut batch: Batch, next: Next) -> Next {
        if self.shard.status.queue_failing.load(Ordering::Acquire) {
            return next;
        }
        let work = self.hand_over_rest(&mut hand_overs, &mut batch);
        let _ = tokio::time::timeout(FINISH_WAIT, work).await;
        next
    }

    /// Hands over the filling batch as soon as there is room for it (mapped while the ones
    /// before it are submitted, submitted after them) and waits for the hand-overs in flight,
    /// oldest first; stops at the first one not accepted, so the sequence never passes it.
    async fn hand_over_rest(&mut self, hand_overs: &mut HandOvers, batch: &mut Batch) {
        loop {
            if !hand_overs.is_full() {
                self.flush(hand_overs, batch);
            }
            if hand_overs.is_empty() {
                return;
            }
            let (accepted, sequence) = hand_overs.oldest_settled().await;
            if accepted.is_err() {
                return;
            }
            self.shard.status.hand_overs.fetch_add(1, Ordering::Relaxed);
            self.advance(sequence);
        }
    }

    /// Takes a dispatch read from its envelope alone (see [`quick_dispatch`]): its data is
    /// parsed once, by the hand-over's mapping, which parses the frame whole if the data is not
    /// JSON as cut. `false` when the frame needs the whole parse now: another op, READY or
    /// RESUMED, a frame written otherwise.
    fn on_quick_dispatch(&mut self, message: &Utf8Bytes, batch: &mut Batch) -> bool {
        let Some(quick) = quick_dispatch(message.as_str()) else {
            return false;
        };
        if matches!(quick.name, "READY" | "RESUMED") {
            return false;
        }
        let dispatch = Dispatch::new(quick.name, quick.sequence, message, quick.data, true);
        self.shard.status.dispatches.fetch_add(1, Ordering::Relaxed);
        batch.push(dispatch);
        true
    }

    /// Handles one frame; `Some` when the connection ends. `outstanding`: a batch is being
    /// handed over, so a sequence without a dispatch to hand over waits for it.
    async fn on_frame(
        &mut self,
        message: &Utf8Bytes,
        sink: &mut futures::stream::SplitSink<Socket, Message>,
        beats: &mut Beats,
        batch: &mut Batch,
        outstanding: bool,
    ) -> Option<Next> {
        let frame = parse_frame(message.as_bytes())?;
        match frame.op {
            OP_DISPATCH => {
                self.shard.status.dispatches.fetch_add(1, Ordering::Relaxed);
                match frame.name() {
                    "READY" => {
                        self.ready(frame.data());
                        self.after_others(batch, outstanding, frame.s);
                    }
                    "RESUMED" => {
                        self.healthy = true;
                        tracing::info!(shard = self.shard.id.number, "discord shard resumed");
                        self.after_others(batch, outstanding, frame.s);
                    }
                    name => {
                        // A range of the message, or (no `d`: its default `null`) a copy.
                        batch.push(Dispatch::new(
                            name,
                            frame.s,
                            message,
                            frame.data().get(),
                            false,
                        ));
                    }
                }
            }
            OP_HEARTBEAT => {
                let sequence = self.session.as_ref().map(|s| s.sequence);
                let heartbeat = json!({"op": OP_HEARTBEAT, "d": sequence});
                if sink
                    .send(Message::text(heartbeat.to_string()))
                    .await
                    .is_err()
                {
                    return Some(Next::Resume {
                        reason: "send_failed",
                        at_once: false,
                    });
                }
                beats.sent_at = Some(Instant::now());
                beats.awaiting_ack = true;
            }
            OP_HEARTBEAT_ACK => {
                beats.awaiting_ack = false;
                if let Some(sent) = beats.sent_at {
                    let micros = u64::try_from(sent.elapsed().as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    self.shard
                        .status
                        .latency_micros
                        .store(micros, Ordering::Relaxed);
                }
            }
            OP_RECONNECT => {
                let _ = sink.send(close(RESUMABLE_CLOSE)).await;
                return Some(Next::Resume {
                    reason: "reconnect",
                    at_once: true,
                });
            }
            OP_INVALID_SESSION => {
                let resumable = frame.data().get().trim() == "true";
                let _ = sink.send(close(RESUMABLE_CLOSE)).await;
                return Some(if resumable && self.session.is_some() {
                    Next::Resume {
                        reason: "invalid_session_resumable",
                        at_once: true,
                    }
                } else {
                    Next::Reidentify {
                        reason: INVALID_SESSION,
                        wait: self.shard.config.invalid_session_delay(),
                    }
                });
            }
            _ => {}
        }
        None
    }

    /// Keeps what READY says about the session.
    fn ready(&mut self, data: &RawValue) {
        // Once per session: the tree is fine here.
        let data: Value = serde_json::from_str(data.get()).unwrap_or_default();
        let id = data.get("session_id").and_then(Value::as_str);
        let url = data.get("resume_gateway_url").and_then(Value::as_str);
        let bot_user_id = data
            .pointer("/user/id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let context = Arc::make_mut(self.context);
        context.session_id = id.map(str::to_owned);
        context.bot_user_id = bot_user_id;
        if let (Some(id), Some(url)) = (id, url) {
            *self.session = Some(Session {
                id: id.to_owned(),
                resume_url: url.to_owned(),
                sequence: 0,
            });
        }
        self.healthy = true;
        self.ready_at = Some(Instant::now());
        if !self.shard.status.queue_failing.load(Ordering::Acquire) {
            // Not ready only for want of a session start (the queue's own state aside).
            self.readiness.set_ready();
        }
        tracing::info!(shard = self.shard.id.number, "discord shard ready");
    }

    /// The sequence of a dispatch that is not handed over (READY, RESUMED): accepted at once,
    /// unless dispatches before it still wait for the queue.
    fn after_others(&mut self, batch: &mut Batch, outstanding: bool, sequence: Option<u64>) {
        if outstanding || !batch.is_empty() {
            batch.last_sequence = batch.last_sequence.max(sequence);
        } else {
            self.advance(sequence);
        }
    }

    /// Starts handing over the filling batch when it is due: at once when nothing is in
    /// flight, else once it is full and there is room for a second hand-over (mapped while the
    /// one before it is submitted). Smaller batches wait: fewer, larger submits.
    fn flush_if_due(&mut self, hand_overs: &mut HandOvers, batch: &mut Batch, limits: BatchLimits) {
        if hand_overs.is_empty() || (!hand_overs.is_full() && batch.is_full(limits)) {
            self.flush(hand_overs, batch);
        }
    }

    /// Starts handing over the filling batch, if it holds dispatches; a batch of sequences
    /// only is accepted with the newest hand-over in flight, or at once if there is none.
    fn flush(&mut self, hand_overs: &mut HandOvers, batch: &mut Batch) {
        if batch.dispatches.is_empty() {
            let sequence = batch.last_sequence.take();
            if sequence.is_some() && !hand_overs.extend_newest(sequence) {
                self.advance(sequence);
            }
            return;
        }
        let batch = std::mem::take(batch);
        // Mapped at once and submitted after the batch before it, on a task of its own, so that
        // reading the next batch, mapping this one and submitting the one before use both cores.
        hand_overs.start(batch.last_sequence, |after, accepted| {
            self.hand_over(batch.dispatches, after, accepted)
        });
    }

    /// The hand-over of one batch, as a future that owns what it needs.
    fn hand_over(
        &self,
        dispatches: Vec<Dispatch>,
        after: Option<oneshot::Receiver<()>>,
        accepted: oneshot::Sender<()>,
    ) -> impl Future<Output = Result<(), ()>> + Send + 'static {
        let (initial, max) = self.shard.config.queue_retry_backoff;
        hand_over(
            HandOver {
                ingress: self.ingress.clone(),
                readiness: self.readiness.clone(),
                status: self.shard.status.clone(),
                context: self.context.clone(),
                shard: self.shard.id.number,
                initial_wait: initial,
                max_wait: max,
                stop: self.shutdown.clone(),
            },
            dispatches,
            after,
            accepted,
        )
    }

    fn advance(&mut self, sequence: Option<u64>) {
        if let (Some(session), Some(sequence)) = (self.session.as_mut(), sequence) {
            session.sequence = session.sequence.max(sequence);
        }
        self.shard.status.set_session(self.session.as_ref());
    }
}

/// The heartbeat's state on one connection.
#[derive(Default)]
struct Beats {
    sent_at: Option<Instant>,
    awaiting_ack: bool,
}

/// `heartbeat_interval` of Hello, when it is a positive number of milliseconds.
fn heartbeat_interval(data: &RawValue) -> Option<Duration> {
    let data: Value = serde_json::from_str(data.get()).ok()?;
    match data.get("heartbeat_interval").and_then(Value::as_u64) {
        Some(ms) if ms > 0 => Some(Duration::from_millis(ms)),
        _ => None,
    }
}

/// Why a connection ends with op 9 that cannot resume: counted for the back-off.
const INVALID_SESSION: &str = "invalid_session";

fn identify_payload(config: &ShardConfig, id: ShardId) -> Value {
    json!({"op": OP_IDENTIFY, "d": {
        "token": config.token.expose(),
        "intents": config.intents.bits(),
        "shard": [id.number, id.total],
        "large_threshold": config.large_threshold,
        "properties": {"os": std::env::consts::OS, "browser": "botrt", "device": "botrt"},
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_keep_under_the_gateway_limit_and_its_size() {
        let shard = Shard::new(
            ShardId::ONE,
            Arc::new(ShardConfig::new("t")),
            IdentifyQueue::new(1),
        );
        // 110 go at once; the 111th must wait (Discord allows 120 a minute, heartbeats included).
        for _ in 0..COMMANDS_PER_MINUTE {
            assert!(shard.command_limiter.check().is_ok());
        }
        assert!(shard.command_limiter.check().is_err());
        let big = json!({"op": 3, "d": {"activities": [{"name": "x".repeat(5000)}]}});
        let error = shard.send(big).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn identify_carries_token_intents_and_shard() {
        let config = ShardConfig::new("secret-token");
        let payload = identify_payload(&config, ShardId::new(3, 16).unwrap());
        assert_eq!(payload["op"], 2);
        assert_eq!(payload["d"]["token"], "secret-token");
        assert_eq!(payload["d"]["shard"], json!([3, 16]));
        assert_eq!(payload["d"]["intents"], config.intents.bits());
        assert!(payload["d"]["properties"]["os"].is_string());
    }
}
