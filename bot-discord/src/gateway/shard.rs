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
//! next; when that one is full too, reading stops until the first is accepted. So a full queue
//! slows the shard down instead of growing a buffer (at most two batches are read and not yet
//! accepted), while heartbeats keep going out on time. Zombie detection is suspended while
//! reading is held up, since an ACK may be waiting unread. The sequence advances only once the
//! runtime accepted a batch (to its last dispatch), so a resume replays anything not accepted
//! yet; deduplication drops what was accepted twice.
//!
//! A frame is parsed once: the envelope borrows from the message's bytes, the dispatch data is
//! kept as its JSON text (the event's raw payload) and mapped from a view that borrows from it.
//!
//! A queue that fails (a database that is read-only, full or unreachable) is back-pressure too:
//! the shard keeps its session and its heartbeats, reads nothing more, and offers the dispatch
//! again with a capped back-off ([`ShardConfig::queue_retry_backoff`]). Meanwhile it logs an
//! error (at the first failure, then at most every [`QUEUE_ERROR_LOG_INTERVAL`]) and reports its
//! component `discord shard N/M` not ready, so `/readyz` answers 503 naming it. Only a queue
//! closed for shutdown ends the shard.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::event::Raw;
use bot_core::readiness::Component;
use bot_core::{ErrorKind as CoreKind, Event, Ingress, Platform};
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::close::{CloseAction, classify, fatal_error};
use super::compression::Inflater;
use super::config::{ShardConfig, ShardId};
use super::identify::IdentifyQueue;
use super::session::Session;
use crate::error::{Error, ErrorKind};
use crate::event::{DispatchContext, Text, map_dispatch};

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
const FULL_QUEUE_WAIT: Duration = Duration::from_millis(50);
/// A session that lasted this long after READY was no invalid-session loop: the next invalid
/// session waits the short wait again.
const STABLE_SESSION: Duration = Duration::from_secs(60);
/// The longest a connection that ended waits for the hand-over of what it read.
const FINISH_WAIT: Duration = Duration::from_secs(2);
/// While the queue keeps failing, its error is logged at most this often (the first at once).
pub const QUEUE_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// One gateway frame, borrowed from the message's bytes; `d` stays JSON text.
#[derive(Deserialize)]
pub(super) struct Frame<'a> {
    pub(super) op: u8,
    #[serde(borrow, default)]
    pub(super) d: Option<&'a RawValue>,
    #[serde(default)]
    pub(super) s: Option<u64>,
    #[serde(borrow, default)]
    pub(super) t: Option<Text<'a>>,
}

impl<'a> Frame<'a> {
    /// `d`, `null` when missing.
    pub(super) fn data(&self) -> &'a RawValue {
        self.d.unwrap_or(RawValue::NULL)
    }

    /// `t`, empty when missing.
    pub(super) fn name(&self) -> &str {
        self.t.as_ref().map_or("", |t| &t.0)
    }
}

/// Parses a frame; an unreadable one is logged (its category only: the message may quote the
/// frame's content) and skipped, and the connection goes on.
pub(super) fn parse_frame(bytes: &[u8]) -> Option<Frame<'_>> {
    match serde_json::from_slice::<Frame<'_>>(bytes) {
        Ok(frame) => Some(frame),
        Err(error) => {
            tracing::warn!(category = ?error.classify(), "discord gateway frame is not a payload");
            None
        }
    }
}

/// What a shard is doing, for health checks and tests.
#[derive(Debug, Default)]
pub struct ShardStatus {
    connections: AtomicU64,
    identifies: AtomicU64,
    resumes: AtomicU64,
    dispatches: AtomicU64,
    hand_overs: AtomicU64,
    hand_over_retries: AtomicU64,
    /// Set while the queue refuses dispatches, across reconnections.
    queue_failing: AtomicBool,
    latency_micros: AtomicU64,
    session: Mutex<Option<Session>>,
}

impl ShardStatus {
    /// Connections opened so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Identify payloads sent so far (new sessions).
    pub fn identifies(&self) -> u64 {
        self.identifies.load(Ordering::Relaxed)
    }

    /// Resume payloads sent so far.
    pub fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Relaxed)
    }

    /// Dispatches received so far.
    pub fn dispatches(&self) -> u64 {
        self.dispatches.load(Ordering::Relaxed)
    }

    /// Batches of dispatches the queue accepted so far.
    pub fn hand_overs(&self) -> u64 {
        self.hand_overs.load(Ordering::Relaxed)
    }

    /// Batches of dispatches offered to the queue again after it failed with an error other than full.
    pub fn hand_over_retries(&self) -> u64 {
        self.hand_over_retries.load(Ordering::Relaxed)
    }

    /// The time between the last heartbeat and its ACK.
    pub fn latency(&self) -> Option<Duration> {
        match self.latency_micros.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    /// The current session, once READY arrived.
    pub fn session(&self) -> Option<Session> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_session(&self, session: Option<&Session>) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = session.cloned();
    }
}

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
enum Next {
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

type Pending = Pin<Box<dyn Future<Output = Result<(), ()>> + Send>>;
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
        let readiness = Arc::new(ingress.readiness().component(format!(
            "discord shard {}/{}",
            self.id.number, self.id.total
        )));
        let mut session: Option<Session> = None;
        let mut failures: u32 = 0;
        // Invalid sessions in a row (READY, then op 9 soon after): each waits twice as long.
        let mut invalid_streak: u32 = 0;
        let mut context = Arc::new(DispatchContext {
            bot_user_id: None,
            session_id: None,
            deliver_bot_messages: self.config.deliver_bot_messages,
        });
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
        // The batch being handed over, the sequence it accepts up to, and the one filling.
        let mut pending: Option<Pending> = None;
        let mut pending_sequence: Option<u64> = None;
        let mut batch = Batch::default();

        loop {
            let reading = pending.is_none() || !batch.is_full(limits);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // Finish handing over what was read: it is in no one's hands otherwise.
                    if let Some(pending) = pending.take() {
                        if pending.await.is_err() {
                            // Not accepted: the next batch must not move the sequence past it.
                            let _ = sink.send(close(1000)).await;
                            return Next::Shutdown;
                        }
                        self.shard.status.hand_overs.fetch_add(1, Ordering::Relaxed);
                        self.advance(pending_sequence.take());
                    }
                    if let Some(rest) = self.flush(&mut batch, &mut pending_sequence)
                        && rest.await.is_ok()
                    {
                        self.shard.status.hand_overs.fetch_add(1, Ordering::Relaxed);
                        self.advance(pending_sequence.take());
                    }
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
                accepted = async { pending.as_mut().expect("guarded").await }, if pending.is_some() => {
                    // Completed: replaced below, or dropped with the connection.
                    if let Some(at) = held_since.take() {
                        held_for += at.elapsed();
                    }
                    if accepted.is_err() {
                        // The runtime is shutting down and takes nothing more.
                        let _ = sink.send(close(1000)).await;
                        return Next::Shutdown;
                    }
                    self.shard.status.hand_overs.fetch_add(1, Ordering::Relaxed);
                    self.advance(pending_sequence.take());
                    pending = self.flush(&mut batch, &mut pending_sequence);
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
                            return self.finish(pending, pending_sequence, batch, next).await;
                        }
                    };
                    // Then whatever else is already readable, up to a full batch: a queue that
                    // accepts at once still gets batches, not one dispatch per submit.
                    loop {
                        let bytes = payload.bytes(inflater.as_ref());
                        let outstanding = pending.is_some();
                        if let Some(next) = self
                            .on_frame(bytes, &mut sink, &mut beats, &mut batch, outstanding)
                            .await
                        {
                            return self.finish(pending, pending_sequence, batch, next).await;
                        }
                        if batch.is_full(limits) {
                            break;
                        }
                        match next_payload(&mut stream, &mut inflater).now_or_never() {
                            None => break,
                            Some(Ok(next)) => payload = next,
                            Some(Err(next)) => {
                                return self.finish(pending, pending_sequence, batch, next).await;
                            }
                        }
                    }
                    if pending.is_none() {
                        pending = self.flush(&mut batch, &mut pending_sequence);
                    }
                    if pending.is_some() && batch.is_full(limits) && held_since.is_none() {
                        held_since = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// The connection ended (`next`): hands over what was read, unless the queue is failing
    /// or this takes longer than [`FINISH_WAIT`]; what is not accepted then is replayed by the
    /// resume, or delivered again by Discord.
    async fn finish(
        &mut self,
        pending: Option<Pending>,
        mut pending_sequence: Option<u64>,
        mut batch: Batch,
        next: Next,
    ) -> Next {
        if self.shard.status.queue_failing.load(Ordering::Acquire) {
            return next;
        }
        let work = async {
            if let Some(pending) = pending {
                if pending.await.is_err() {
                    return;
                }
                self.shard.status.hand_overs.fetch_add(1, Ordering::Relaxed);
                self.advance(pending_sequence.take());
            }
            if let Some(rest) = self.flush(&mut batch, &mut pending_sequence)
                && rest.await.is_ok()
            {
                self.shard.status.hand_overs.fetch_add(1, Ordering::Relaxed);
                self.advance(pending_sequence.take());
            }
        };
        let _ = tokio::time::timeout(FINISH_WAIT, work).await;
        next
    }

    /// Handles one frame; `Some` when the connection ends. `outstanding`: a batch is being
    /// handed over, so a sequence without a dispatch to hand over waits for it.
    async fn on_frame(
        &mut self,
        bytes: &[u8],
        sink: &mut futures::stream::SplitSink<Socket, Message>,
        beats: &mut Beats,
        batch: &mut Batch,
        outstanding: bool,
    ) -> Option<Next> {
        let frame = parse_frame(bytes)?;
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
                    name => batch.push(Dispatch {
                        name: dispatch_name(name),
                        sequence: frame.s,
                        raw: Raw::from_json(frame.data().to_owned()),
                    }),
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

    /// Starts handing over the filling batch, if it holds dispatches; a batch of sequences
    /// only is accepted at once.
    fn flush(&mut self, batch: &mut Batch, pending_sequence: &mut Option<u64>) -> Option<Pending> {
        if batch.dispatches.is_empty() {
            if let Some(sequence) = batch.last_sequence.take() {
                self.advance(Some(sequence));
            }
            return None;
        }
        let batch = std::mem::take(batch);
        *pending_sequence = batch.last_sequence;
        Some(Box::pin(self.hand_over(batch.dispatches)))
    }

    /// The hand-over of one batch, as a future that owns what it needs.
    fn hand_over(
        &self,
        dispatches: Vec<Dispatch>,
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

/// How large a batch may grow.
#[derive(Clone, Copy)]
struct BatchLimits {
    dispatches: usize,
    bytes: usize,
}

/// A dispatch read and not yet accepted: its name, sequence and data (the event's raw payload,
/// shared with the event, so that a batch refused by the queue is mapped again, not copied).
struct Dispatch {
    name: Cow<'static, str>,
    sequence: Option<u64>,
    raw: Raw,
}

impl Dispatch {
    fn event(&self, context: &DispatchContext) -> Option<Event> {
        match map_dispatch(&self.name, self.raw.json(), self.sequence, context) {
            Ok(event) => event.map(|mut event| {
                event.raw = self.raw.clone();
                event
            }),
            Err(error) => {
                // JSON, but more deeply nested than a tree may be (or a lone surrogate).
                tracing::warn!(category = ?error.classify(), name = %self.name, "discord dispatch cannot be read");
                None
            }
        }
    }
}

/// Dispatches read since the last hand-over began.
#[derive(Default)]
struct Batch {
    dispatches: Vec<Dispatch>,
    bytes: usize,
    /// The highest sequence read into it, dispatches handed over or not.
    last_sequence: Option<u64>,
}

impl Batch {
    fn push(&mut self, dispatch: Dispatch) {
        self.bytes += dispatch.raw.json().len();
        self.last_sequence = self.last_sequence.max(dispatch.sequence);
        self.dispatches.push(dispatch);
    }

    fn is_empty(&self) -> bool {
        self.dispatches.is_empty() && self.last_sequence.is_none()
    }

    fn is_full(&self, limits: BatchLimits) -> bool {
        self.dispatches.len() >= limits.dispatches || self.bytes >= limits.bytes
    }
}

/// The names Discord sends most, kept without an allocation per dispatch.
const KNOWN_DISPATCHES: [&str; 12] = [
    "MESSAGE_CREATE",
    "MESSAGE_UPDATE",
    "MESSAGE_DELETE",
    "MESSAGE_REACTION_ADD",
    "MESSAGE_REACTION_REMOVE",
    "GUILD_MEMBER_ADD",
    "GUILD_MEMBER_REMOVE",
    "INTERACTION_CREATE",
    "TYPING_START",
    "PRESENCE_UPDATE",
    "GUILD_CREATE",
    "VOICE_STATE_UPDATE",
];

fn dispatch_name(name: &str) -> Cow<'static, str> {
    KNOWN_DISPATCHES
        .iter()
        .find(|known| **known == name)
        .map_or_else(
            || Cow::Owned(name.to_owned()),
            |known| Cow::Borrowed(*known),
        )
}

/// `heartbeat_interval` of Hello, when it is a positive number of milliseconds.
fn heartbeat_interval(data: &RawValue) -> Option<Duration> {
    let data: Value = serde_json::from_str(data.get()).ok()?;
    match data.get("heartbeat_interval").and_then(Value::as_u64) {
        Some(ms) if ms > 0 => Some(Duration::from_millis(ms)),
        _ => None,
    }
}

/// What a hand-over needs, owned, so that the pending future outlives no borrow.
struct HandOver {
    ingress: Ingress,
    readiness: Arc<Component>,
    status: Arc<ShardStatus>,
    context: Arc<DispatchContext>,
    shard: u32,
    initial_wait: Duration,
    max_wait: Duration,
    stop: CancellationToken,
}

/// Hands one batch to the runtime, waiting while the queue is full and retrying with a capped
/// back-off while it fails otherwise (the shard reports itself not ready meanwhile). Fails only
/// once the runtime stops taking events (or the shard stops). Each offer maps the batch from its
/// raw payloads, since a refused submit consumed the events.
async fn hand_over(h: HandOver, dispatches: Vec<Dispatch>) -> Result<(), ()> {
    let mut failures: u32 = 0;
    let mut failing_since: Option<Instant> = None;
    let mut logged_at: Option<Instant> = None;
    loop {
        let events: Vec<Event> = dispatches
            .iter()
            .filter_map(|d| d.event(&h.context))
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        let wait = match h.ingress.submit(events).await {
            Ok(_) => {
                // Also after a reconnection: the failure may have begun on the last connection.
                if h.status.queue_failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        shard = h.shard, retries = failures,
                        after = ?failing_since.map(|at| at.elapsed()),
                        "discord shard: the queue takes dispatches again"
                    );
                    h.readiness.set_ready();
                }
                return Ok(());
            }
            Err(e) if e.kind() == CoreKind::QueueFull => e
                .retry_after()
                .unwrap_or(FULL_QUEUE_WAIT)
                .min(Duration::from_secs(1)),
            Err(e) if e.kind() == CoreKind::QueueClosed || !h.ingress.is_accepting() => {
                return Err(());
            }
            Err(error) => {
                failures += 1;
                let now = Instant::now();
                if failing_since.is_none() {
                    failing_since = Some(now);
                    h.status.queue_failing.store(true, Ordering::Release);
                    h.readiness
                        .set_not_ready(format!("the queue refuses dispatches: {error}"));
                } else {
                    h.status.hand_over_retries.fetch_add(1, Ordering::Relaxed);
                }
                if logged_at.is_none_or(|at| now - at >= QUEUE_ERROR_LOG_INTERVAL) {
                    logged_at = Some(now);
                    tracing::error!(
                        shard = h.shard, %error, retries = failures - 1,
                        "discord shard: the queue refuses a dispatch; holding the session and retrying"
                    );
                }
                let exp = (failures - 1).min(16);
                h.initial_wait.saturating_mul(1 << exp).min(h.max_wait)
            }
        };
        tokio::select! {
            () = h.stop.cancelled() => return Err(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Why a connection ends with op 9 that cannot resume: counted for the back-off.
const INVALID_SESSION: &str = "invalid_session";

/// A whole message as received: its bytes are in the message, or in the inflater.
enum Payload {
    Message(Message),
    Inflated,
}

impl Payload {
    fn bytes<'a>(&'a self, inflater: Option<&'a Inflater>) -> &'a [u8] {
        match self {
            Self::Message(Message::Text(text)) => text.as_bytes(),
            Self::Message(Message::Binary(bytes)) => bytes,
            Self::Message(_) => &[],
            Self::Inflated => inflater.map_or(&[], Inflater::last),
        }
    }
}

/// The next whole gateway message; the error says how the connection ended. Cancel-safe: a
/// compressed message's first parts stay in the inflater.
async fn next_payload<S>(stream: &mut S, inflater: &mut Option<Inflater>) -> Result<Payload, Next>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = match stream.next().await {
            None => {
                return Err(Next::Resume {
                    reason: "connection_closed",
                    at_once: false,
                });
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "discord gateway read failed");
                return Err(Next::Resume {
                    reason: "connection_error",
                    at_once: false,
                });
            }
            Some(Ok(message)) => message,
        };
        match &message {
            Message::Text(_) => return Ok(Payload::Message(message)),
            Message::Binary(bytes) => match inflater {
                Some(inflater) => match inflater.push(bytes) {
                    Ok(Some(_)) => return Ok(Payload::Inflated),
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "discord gateway compression broke");
                        return Err(Next::Resume {
                            reason: "decompress_failed",
                            at_once: false,
                        });
                    }
                },
                None => return Ok(Payload::Message(message)),
            },
            Message::Close(frame) => {
                let (code, reason) = frame.as_ref().map_or((1006, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                return Err(match classify(code) {
                    CloseAction::Resume => Next::Resume {
                        reason: "closed_by_gateway",
                        at_once: false,
                    },
                    CloseAction::Reidentify => Next::Reidentify {
                        reason: "session_closed",
                        wait: Duration::ZERO,
                    },
                    CloseAction::Fatal(kind) => Next::Fatal(fatal_error(kind, code, &reason)),
                });
            }
            _ => continue,
        }
    }
}

fn close(code: u16) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    }))
}

fn gateway_url(base: &str, compress: bool) -> String {
    let base = base.trim_end_matches('/');
    let compression = if compress {
        "&compress=zlib-stream"
    } else {
        ""
    };
    format!("{base}/?v={GATEWAY_VERSION}&encoding=json{compression}")
}

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

    #[test]
    fn urls_keep_version_encoding_and_compression() {
        assert_eq!(
            gateway_url("wss://gateway.discord.gg/", false),
            "wss://gateway.discord.gg/?v=10&encoding=json"
        );
        assert_eq!(
            gateway_url("wss://resume.discord.gg", true),
            "wss://resume.discord.gg/?v=10&encoding=json&compress=zlib-stream"
        );
    }

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
