//! The history in PostgreSQL: each user's bot messages numbered cluster-wide and kept in
//! `webchat_history`, so that a browser resumes exactly on any node.
//!
//! Sends are written in batches: one writer per node takes every send waiting in its queue
//! (up to [`MAX_BATCH`]) and stores them in one statement (up to [`MAX_IN_FLIGHT`] at once), which numbers each user's messages
//! from the user's `webchat_seqs` row. That row stays locked until the statement commits, so
//! numbers commit in order for each user even when two nodes send to one user at once. The
//! writer then delivers the batch to this node's sockets, answers the senders, and publishes it
//! to the other nodes in one round trip. A node that sees a number before the ones preceding it
//! holds it for [`REORDER_WAIT`], then reads the missing ones from the table (they committed
//! first). The statement keeps each user's rows within the count bound; the same loop drops the
//! rows older than the resume window, and those past the byte bound of the users it wrote to.
//! Every read applies all three bounds, so a resume is exact whenever the trim ran.
//!
//! A retried handler send is recognised by its origin, part by part: in the stored rows, and
//! within one batch (an attempt queued while the one before waited is given the first one's
//! numbers). A send whose sender gave up waiting (the time-out passed while PostgreSQL was slow)
//! is not stored: the sender was answered with an error and its handler sends again. Two
//! attempts of one handler event in two statements that run at the very same moment (two
//! nodes, or two of this node's statements) are stored once: the unique index on the origin
//! fails the later statement, which runs again and finds the earlier one's rows.
//!
//! A statement PostgreSQL refuses for a conflict (a deadlock, a serialization failure, that
//! origin) runs again, at most [`MAX_ATTEMPTS`] times in all, after a back-off that doubles
//! from [`RETRY_BACKOFF`] (with jitter); each run again is counted
//! (`bot.webchat.history.retries`).
//!
//! The retention also prunes `webchat_seqs`: the rows of users whose history it emptied and
//! who have no socket on any node go, and the `seq_floor` rises to the highest number they
//! reached. Such a user's next send counts from the floor, so a browser that saw the user's old
//! numbers still sees higher ones (see [`sql::PRUNE_SEQS`]).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bot_core::EventId;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::error::SqlState;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::{PgCluster, db, sql};
use crate::config::WebChatConfig;
use crate::error::{Error, ErrorKind};
use crate::fanout::{Envelope, Fanout};
use crate::hub::{Delivery, Hub, Stored, message_frame};

/// The most sends stored in one statement.
pub(super) const MAX_BATCH: usize = 512;
/// The most statements of one node's writer running at once. Two batches of one user wait for
/// each other on the user's row; the sockets still get the numbers in order (see the hub).
pub(super) const MAX_IN_FLIGHT: usize = 4;
/// How many sends may wait for the writer; a sender past it waits for room.
pub(super) const QUEUE_CAPACITY: usize = 8192;
/// How long a message that came before the ones preceding it waits for them to come through
/// the fan-out before they are read from the table.
pub(super) const REORDER_WAIT: Duration = Duration::from_millis(100);
/// How many times a batch's statement runs at most when PostgreSQL refuses it for a conflict.
pub(super) const MAX_ATTEMPTS: u32 = 5;
/// The back-off before the first run again; it doubles each time, with up to as much again of
/// jitter (10, 20, 40, 80 ms and their jitter: at most 300 ms in all).
pub(super) const RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// How many users one prune of `webchat_seqs` looks at (one transaction each).
const PRUNE_CHUNK: usize = 1000;

/// One send waiting for the writer.
#[derive(Debug)]
pub(crate) struct StoreRequest {
    user: String,
    messages: Vec<Box<RawValue>>,
    origin: Option<(EventId, u32)>,
    at: u64,
    reply: oneshot::Sender<Result<Delivery, Error>>,
}

/// A message of a send stored before (a retried handler's): its id, time and JSON.
type StoredBefore = (String, u64, String);

/// One stored message: its number, id, time and JSON.
struct Numbered {
    seq: u64,
    id: String,
    at: u64,
    message: Box<RawValue>,
}

impl PgCluster {
    /// Stores `messages` for `user` (numbered cluster-wide) and delivers them to the user's
    /// sockets on this node, waiting at most the write time-out; the writer publishes them to
    /// the other nodes after answering. A send of `origin` stored before is delivered again with its numbers, which
    /// every socket skips if it has them.
    ///
    /// Once the writer has stopped (the bot shuts down while handlers finish), each send is
    /// stored on its own: what the handlers still send is kept for the browsers, which resume
    /// on another node.
    pub(crate) async fn send(
        &self,
        user: &str,
        messages: Vec<Box<RawValue>>,
        origin: Option<(EventId, u32)>,
        hub: &Hub,
        fanout: Option<&dyn Fanout>,
    ) -> Result<Delivery, Error> {
        let (reply, answer) = oneshot::channel();
        let request = StoreRequest {
            user: user.to_owned(),
            messages,
            origin,
            at: crate::token::unix_now_ms(),
            reply,
        };
        let timeout = self.inner.config.history_write_timeout;
        let outcome = tokio::time::timeout(timeout, async {
            if let Err(refused) = self.inner.history_tx.send(request).await {
                self.store_batch(vec![refused.0], hub, fanout).await;
            }
            answer.await.map_err(|_| {
                Error::new(ErrorKind::Database, "webchat: the history writer stopped")
            })?
        })
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Database,
                format!("webchat: storing a send took longer than {timeout:?}"),
            ))
        });
        if outcome.is_err() {
            self.inner.history_errors.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// The numbering's epoch (the welcome's `epoch`): the same on every node of the schema,
    /// made by [`PgCluster::migrate`] and read once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Database`] when PostgreSQL cannot be reached or was not migrated.
    pub async fn epoch(&self) -> Result<&str, Error> {
        self.inner
            .epoch
            .get_or_try_init(|| async {
                let conn = self.conn().await?;
                let row = conn
                    .query_opt(sql::EPOCH, &[])
                    .await
                    .map_err(|e| db("reading the history's epoch", e))?;
                row.map(|row| row.get::<_, String>(0)).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Database,
                        "webchat: no history epoch; run PgCluster::migrate first",
                    )
                })
            })
            .await
            .map(String::as_str)
    }

    /// What `user` has in the table after `last_seq` (0 when not resuming), within `config`'s
    /// history bounds.
    pub(crate) async fn stored(
        &self,
        user: &str,
        last_seq: Option<u64>,
        config: &WebChatConfig,
    ) -> Result<Stored, Error> {
        let after = i64::try_from(last_seq.unwrap_or(0)).unwrap_or(i64::MAX);
        let max_messages = i64::try_from(config.history_messages).unwrap_or(i64::MAX);
        let max_bytes = i64::try_from(config.history_bytes).unwrap_or(i64::MAX);
        let window = config.resume_window.as_secs_f64();
        let conn = self.conn().await?;
        let statement = (conn.prepare_cached(sql::RESUME).await)
            .map_err(|e| db("preparing to read a user's history", e))?;
        let rows = conn
            .query(
                &statement,
                &[&user, &after, &max_messages, &max_bytes, &window],
            )
            .await
            .map_err(|e| db("reading a user's history", e))?;
        let latest = rows.first().map_or(0, |row| row.get::<_, i64>(0)) as u64;
        let frames: Vec<(u64, Utf8Bytes)> = (rows.iter())
            .filter_map(|row| {
                let seq: Option<i64> = row.get(1);
                let seq = seq? as u64;
                let message: String = row.get(2);
                let id: String = row.get(3);
                let at: i64 = row.get(4);
                Some((seq, message_frame(seq, &id, at as u64, &message)))
            })
            .collect();
        let gap = last_seq.is_some_and(|last| {
            let oldest = frames.first().map_or(latest + 1, |(seq, _)| *seq);
            last < latest && oldest > last + 1
        });
        Ok(Stored {
            latest,
            rows: frames,
            gap,
        })
    }

    /// History errors counted since start (sends not stored in time, batches not published,
    /// joins that could not read the history).
    pub(crate) fn history_errors(&self) -> u64 {
        self.inner.history_errors.load(Ordering::Relaxed)
    }

    /// Statements that stored sends, since start.
    pub(crate) fn history_batches(&self) -> u64 {
        self.inner.history_batches.load(Ordering::Relaxed)
    }

    /// Reads of what the sockets' users have beyond what reached them, since start.
    pub(crate) fn history_catch_ups(&self) -> u64 {
        self.inner.history_catch_ups.load(Ordering::Relaxed)
    }

    /// `webchat_seqs` rows this node pruned, since start.
    pub(crate) fn seqs_pruned(&self) -> u64 {
        self.inner.seqs_pruned.load(Ordering::Relaxed)
    }

    /// Statements that stored sends run again after a conflict, since start.
    pub(crate) fn history_retries(&self) -> u64 {
        self.inner.history_retries.load(Ordering::Relaxed)
    }

    /// Records the history's counters in `telemetry`: `bot.webchat.history.errors`,
    /// `bot.webchat.history.batches` and `bot.webchat.history.retries`.
    pub(crate) fn register_metrics(&self, telemetry: &bot_core::Telemetry) {
        let meter = telemetry.meter();
        let (errors, batches) = (Arc::downgrade(&self.inner), Arc::downgrade(&self.inner));
        let retries = Arc::downgrade(&self.inner);
        let _retries = meter
            .u64_observable_counter("bot.webchat.history.retries")
            .with_description(
                "Statements that stored web chat sends run again after a deadlock, a serialization failure or the same send stored at once",
            )
            .with_callback(move |o| {
                if let Some(inner) = retries.upgrade() {
                    o.observe(inner.history_retries.load(Ordering::Relaxed), &[]);
                }
            })
            .build();
        let _errors = meter
            .u64_observable_counter("bot.webchat.history.errors")
            .with_description(
                "Web chat sends not stored in time, batches not published, joins that could not read the history",
            )
            .with_callback(move |o| {
                if let Some(inner) = errors.upgrade() {
                    o.observe(inner.history_errors.load(Ordering::Relaxed), &[]);
                }
            })
            .build();
        let _batches = meter
            .u64_observable_counter("bot.webchat.history.batches")
            .with_description("Statements that stored web chat sends in PostgreSQL")
            .with_callback(move |o| {
                if let Some(inner) = batches.upgrade() {
                    o.observe(inner.history_batches.load(Ordering::Relaxed), &[]);
                }
            })
            .build();
    }

    /// Counts one history error.
    pub(crate) fn count_history_error(&self) {
        self.inner.history_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The writer: stores the waiting sends in batches and delivers them, reads what this
    /// node's sockets wait for, and trims the table, until `shutdown`.
    pub(crate) async fn run_history(
        &self,
        hub: Arc<Hub>,
        fanout: Option<Arc<dyn Fanout>>,
        shutdown: CancellationToken,
    ) {
        let Some(mut queue) = self.inner.history_rx.lock().await.take() else {
            tracing::error!("webchat: this cluster's history writer runs already");
            return;
        };
        let mut tick = tokio::time::interval(REORDER_WAIT);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let trim_every = self.inner.config.dead_node_sweep_interval;
        let mut next_trim = Instant::now();
        // The fan-out (`NOTIFY`, NATS) delivers at most once, and a lost publish of a user's
        // last message leaves no later number to reveal the hole: read now and then.
        let catch_up_every = self.inner.config.history_catch_up_interval;
        let mut next_catch_up = Instant::now() + catch_up_every;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut was_listening = false;
        // Batches whose statements run at once, each on a connection of its own.
        let mut in_flight = FuturesUnordered::new();
        // The upkeep of a tick (catching up, filling holes, trimming) runs beside the batches,
        // one at a time: a slow or unreachable database holds it back, not the sends.
        let mut upkeep: Option<Pin<Box<dyn Future<Output = bool> + Send + '_>>> = None;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                taken = queue.recv_many(&mut batch, MAX_BATCH), if in_flight.len() < MAX_IN_FLIGHT => {
                    if taken == 0 {
                        break;
                    }
                    let sends = std::mem::take(&mut batch);
                    in_flight.push(self.store_batch(sends, &hub, fanout.as_deref()));
                }
                listening = async { upkeep.as_mut().expect("checked").await }, if upkeep.is_some() => {
                    upkeep = None;
                    was_listening = listening;
                }
                _ = tick.tick(), if upkeep.is_none() => {
                    let listening = fanout.as_ref().is_none_or(|f| f.is_listening());
                    let catch_up =
                        (listening && !was_listening) || Instant::now() >= next_catch_up;
                    if catch_up {
                        next_catch_up = Instant::now() + catch_up_every;
                    }
                    let trim = Instant::now() >= next_trim;
                    if trim {
                        next_trim = Instant::now() + trim_every;
                    }
                    upkeep = Some(Box::pin(self.upkeep(&hub, listening, catch_up, trim)));
                }
            }
        }
        drop(upkeep);
        while in_flight.next().await.is_some() {}
        // What was queued still gets stored: the senders wait for it.
        queue.close();
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let sends = std::mem::take(&mut batch);
            self.store_batch(sends, &hub, fanout.as_deref()).await;
        }
    }

    /// One tick's upkeep: what the sockets' users have in the table beyond what reached them
    /// (`catch_up`: the fan-out listens again, or the catch-up interval passed), what sockets wait
    /// on, and the trim (`trim`). Returns `listening`.
    async fn upkeep(&self, hub: &Hub, listening: bool, catch_up: bool, trim: bool) -> bool {
        if catch_up && let Err(e) = self.catch_up(hub).await {
            tracing::warn!(error = %e, "webchat: reading what sockets missed failed");
            self.count_history_error();
        }
        self.fill_holes(hub).await;
        if trim && let Err(e) = self.trim(&hub.config).await {
            tracing::warn!(error = %e, "webchat: trimming the history failed");
        }
        listening
    }

    /// Stores `sends`, delivers them here, answers each sender, and publishes them.
    async fn store_batch(
        &self,
        mut sends: Vec<StoreRequest>,
        hub: &Hub,
        fanout: Option<&dyn Fanout>,
    ) {
        // A sender that gave up (its time-out passed while PostgreSQL was slow) was answered
        // with an error, and its handler's retry sends again: storing it now would show it
        // twice.
        sends.retain(|send| !send.reply.is_closed());
        if sends.is_empty() {
            return;
        }
        let mut attempt = 1;
        let outcome = loop {
            match self.store(&sends, &hub.config).await {
                // Two nodes' batches locked the same users in another order, or stored the
                // same origin at once: again, after a back-off.
                Err(e) if e.is_conflict() && attempt < MAX_ATTEMPTS => {
                    self.inner.history_retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, attempt, "webchat: storing sends again");
                    let backoff = RETRY_BACKOFF * 2u32.pow(attempt - 1);
                    let jitter = backoff.mul_f64(fastrand::f64());
                    tokio::time::sleep(backoff + jitter).await;
                    attempt += 1;
                    sends.retain(|send| !send.reply.is_closed());
                    if sends.is_empty() {
                        return;
                    }
                }
                outcome => break outcome,
            }
        };
        let numbered = match outcome {
            Ok(numbered) => numbered,
            Err(e) => {
                // Each sender counts its failure.
                tracing::warn!(error = %e, sends = sends.len(), "webchat: storing sends failed");
                let message = e.to_string();
                for send in sends {
                    let _ = send
                        .reply
                        .send(Err(Error::new(ErrorKind::Database, message.clone())));
                }
                return;
            }
        };
        self.written()
            .extend(sends.iter().map(|send| send.user.clone()));
        let mut envelopes = Vec::with_capacity(sends.len());
        let mut deliveries = Vec::with_capacity(sends.len());
        for (send, numbered) in sends.into_iter().zip(numbered) {
            let frames = (numbered.iter())
                .map(|m| (m.seq, message_frame(m.seq, &m.id, m.at, m.message.get())))
                .collect();
            let sockets = hub.deliver_numbered(&send.user, frames);
            let seqs: Vec<u64> = numbered.iter().map(|m| m.seq).collect();
            if let Some(fanout) = fanout {
                envelopes.push(Envelope {
                    node: fanout.node().to_owned(),
                    user: send.user,
                    typing: false,
                    origin: (send.origin).map(|(id, index)| (id.as_str().to_owned(), index)),
                    seqs: seqs.clone(),
                    ids: numbered.iter().map(|m| m.id.clone()).collect(),
                    at: numbered.first().map(|m| m.at),
                    messages: numbered.into_iter().map(|m| m.message).collect(),
                });
            }
            deliveries.push((send.reply, Delivery { seqs, sockets }));
        }
        // Stored and delivered here: the senders have what they wait for. The other nodes'
        // sockets follow: a lost publish is read from the table by a node that sees the hole
        // it leaves or listens again, and by every browser on resume.
        for (reply, delivery) in deliveries {
            let _ = reply.send(Ok(delivery));
        }
        if let Some(fanout) = fanout
            && !envelopes.is_empty()
            && let Err(e) = fanout.publish_batch(&envelopes).await
        {
            tracing::warn!(error = %e, sends = envelopes.len(), "webchat: publishing stored sends failed");
            self.count_history_error();
        }
    }

    /// One statement for every send of the batch; each send's messages as numbered.
    async fn store(
        &self,
        sends: &[StoreRequest],
        config: &WebChatConfig,
    ) -> Result<Vec<Vec<Numbered>>, Error> {
        let max_messages = i64::try_from(config.history_messages).unwrap_or(i64::MAX);
        let rows: usize = sends.iter().map(|s| s.messages.len()).sum();
        let mut users = Vec::with_capacity(rows);
        let mut messages = Vec::with_capacity(rows);
        let mut ids = Vec::with_capacity(rows);
        let mut ats = Vec::with_capacity(rows);
        let mut events: Vec<Option<&str>> = Vec::with_capacity(rows);
        let mut indexes: Vec<Option<i32>> = Vec::with_capacity(rows);
        let mut parts: Vec<Option<i32>> = Vec::with_capacity(rows);
        // A part of one origin that comes twice in the batch: the row of its first coming.
        let mut first_of = std::collections::HashMap::new();
        let mut duplicate_of: Vec<Option<usize>> = Vec::with_capacity(rows);
        for send in sends {
            for (part, message) in send.messages.iter().enumerate() {
                duplicate_of.push(send.origin.as_ref().and_then(|(id, index)| {
                    let key = (send.user.as_str(), id.as_str(), *index, part);
                    let first = *first_of.entry(key).or_insert(users.len());
                    (first != users.len()).then_some(first)
                }));
                users.push(send.user.as_str());
                messages.push(message.get());
                ids.push(uuid::Uuid::new_v4().simple().to_string());
                ats.push(send.at as i64);
                events.push(send.origin.as_ref().map(|(id, _)| id.as_str()));
                indexes.push(send.origin.as_ref().map(|(_, i)| *i as i32));
                parts.push(send.origin.as_ref().map(|_| part as i32));
            }
        }
        let conn = self.conn().await?;
        // Prepared once per connection: planning the statement costs more than running it.
        let statement = (conn.prepare_cached(sql::STORE_SENDS).await)
            .map_err(|e| db("preparing to store sends", e))?;
        self.inner.history_batches.fetch_add(1, Ordering::Relaxed);
        let answer = conn
            .query(
                &statement,
                &[
                    &users,
                    &messages,
                    &ids,
                    &ats,
                    &events,
                    &indexes,
                    &parts,
                    &max_messages,
                ],
            )
            .await
            .map_err(|e| db("storing sends", e))?;
        // By the row's place in the arrays (from 1): its number, and what was stored before.
        let mut by_row: Vec<Option<(u64, Option<StoredBefore>)>> = vec![None; rows];
        for row in &answer {
            let ord: i64 = row.get(0);
            let seq: i64 = row.get(1);
            let before = row
                .get::<_, Option<String>>(2)
                .map(|id| (id, row.get::<_, i64>(3) as u64, row.get::<_, String>(4)));
            if let Some(slot) = by_row.get_mut((ord - 1) as usize) {
                *slot = Some((seq as u64, before));
            }
        }
        // The second coming of a part is stored once, under its first coming's number.
        for (row, first) in duplicate_of.iter().enumerate() {
            if let Some(first) = *first
                && by_row[row].is_none()
            {
                by_row[row] = by_row[first].clone().map(|(seq, before)| {
                    let before = before.or_else(|| {
                        Some((
                            ids[first].clone(),
                            ats[first] as u64,
                            messages[first].to_owned(),
                        ))
                    });
                    (seq, before)
                });
            }
        }
        let mut row = 0;
        let mut out = Vec::with_capacity(sends.len());
        for send in sends {
            let mut numbered = Vec::with_capacity(send.messages.len());
            for message in &send.messages {
                let (seq, before) = by_row[row].take().ok_or_else(|| {
                    Error::new(ErrorKind::Database, "webchat: a stored send has no number")
                })?;
                numbered.push(match before {
                    Some((id, at, message)) => Numbered {
                        seq,
                        id,
                        at,
                        message: RawValue::from_string(message).map_err(|e| {
                            Error::new(ErrorKind::Database, "webchat: a stored message is not JSON")
                                .with_source(e)
                        })?,
                    },
                    None => Numbered {
                        seq,
                        id: std::mem::take(&mut ids[row]),
                        at: send.at,
                        message: message.clone(),
                    },
                });
                row += 1;
            }
            out.push(numbered);
        }
        Ok(out)
    }

    /// Reads from the table the messages this node's sockets wait on (another node's
    /// notification was lost or is slow).
    async fn fill_holes(&self, hub: &Hub) {
        for (user, delivered, first_waiting) in hub.stalled(REORDER_WAIT) {
            match self.between(&user, delivered, first_waiting).await {
                Ok(frames) => {
                    hub.deliver_numbered_through(&user, frames, Some(first_waiting - 1));
                }
                Err(e) => tracing::warn!(error = %e, "webchat: reading missed messages failed"),
            }
        }
    }

    /// Delivers to this node's sockets what is stored after what they have (the fan-out was
    /// down, so other nodes' sends did not come), a thousand users per query.
    async fn catch_up(&self, hub: &Hub) -> Result<(), Error> {
        self.inner.history_catch_ups.fetch_add(1, Ordering::Relaxed);
        let watermarks = hub.watermarks();
        if watermarks.is_empty() {
            return Ok(());
        }
        let conn = self.conn().await?;
        for chunk in watermarks.chunks(1000) {
            let users: Vec<&str> = chunk.iter().map(|(u, _)| u.as_str()).collect();
            let seqs: Vec<i64> = chunk.iter().map(|(_, s)| *s as i64).collect();
            let rows = conn
                .query(sql::AFTER_EACH, &[&users, &seqs])
                .await
                .map_err(|e| db("reading what sockets missed", e))?;
            let mut current: Option<(String, Vec<(u64, Utf8Bytes)>)> = None;
            for row in &rows {
                let user: String = row.get(0);
                let seq = row.get::<_, i64>(1) as u64;
                let message: String = row.get(2);
                let id: String = row.get(3);
                let at = row.get::<_, i64>(4) as u64;
                let frame = (seq, message_frame(seq, &id, at, &message));
                match &mut current {
                    Some((u, frames)) if *u == user => frames.push(frame),
                    _ => {
                        if let Some((u, frames)) = current.replace((user, vec![frame])) {
                            hub.deliver_numbered(&u, frames);
                        }
                    }
                }
            }
            if let Some((u, frames)) = current {
                hub.deliver_numbered(&u, frames);
            }
        }
        Ok(())
    }

    /// The kept messages of `user` numbered above `after` and below `before`, as frames.
    pub(crate) async fn between(
        &self,
        user: &str,
        after: u64,
        before: u64,
    ) -> Result<Vec<(u64, Utf8Bytes)>, Error> {
        let conn = self.conn().await?;
        let rows = conn
            .query(sql::BETWEEN, &[&user, &(after as i64), &(before as i64)])
            .await
            .map_err(|e| db("reading missed messages", e))?;
        Ok(rows
            .iter()
            .map(|row| {
                let seq = row.get::<_, i64>(0) as u64;
                let message: String = row.get(1);
                let id: String = row.get(2);
                let at = row.get::<_, i64>(3) as u64;
                (seq, message_frame(seq, &id, at, &message))
            })
            .collect())
    }

    /// Drops what is older than `config`'s resume window, and the messages past the byte bound
    /// of the users this node wrote to since the last trim (the count bound is kept as sends are
    /// stored); then prunes the number rows of the users left with no history (see
    /// [`PgCluster::prune_seqs`]): those whose rows it dropped, and those who left this node
    /// since. How many messages went.
    pub(crate) async fn trim(&self, config: &WebChatConfig) -> Result<u64, Error> {
        let mut conn = self.conn().await?;
        let window = config.resume_window.as_secs_f64();
        let rows = conn
            .query(sql::TRIM_OLD, &[&window])
            .await
            .map_err(|e| db("trimming old history", e))?;
        let mut trimmed: u64 = rows.iter().map(|row| row.get::<_, i64>(1) as u64).sum();
        let mut emptied: HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
        let written: Vec<String> = std::mem::take(&mut *self.written()).into_iter().collect();
        let max_bytes = i64::try_from(config.history_bytes).unwrap_or(i64::MAX);
        for (i, chunk) in written.chunks(1000).enumerate() {
            match conn.query(sql::TRIM_BYTES, &[&chunk, &max_bytes]).await {
                Ok(rows) => {
                    trimmed += rows.len() as u64;
                    emptied.extend(rows.iter().map(|row| row.get::<_, String>(0)));
                }
                Err(e) => {
                    // Tried again at the next trim.
                    self.written().extend(written[i * 1000..].iter().cloned());
                    return Err(db("trimming the history to its byte bound", e));
                }
            }
        }
        // Whose rows may go: users whose history the trim emptied, or who left while it was
        // empty already (the prune checks both again).
        emptied.extend(std::mem::take(&mut *self.went_offline()));
        let emptied: Vec<String> = emptied.into_iter().collect();
        for (i, chunk) in emptied.chunks(PRUNE_CHUNK).enumerate() {
            if let Err(e) = self.prune_seqs(&mut conn, chunk).await {
                // Looked at again at the next trim.
                (self.went_offline()).extend(emptied[i * PRUNE_CHUNK..].iter().cloned());
                return Err(e);
            }
        }
        Ok(trimmed)
    }

    pub(super) fn went_offline(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        (self.inner.went_offline.lock()).unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes the `webchat_seqs` rows of `users` (whose history rows the retention dropped)
    /// that have no history left and no socket on any node, and raises the `seq_floor` to the
    /// highest number they reached, in one transaction that holds the floor's row: a send that
    /// reads the floor meanwhile waits and then reads the raised one. How many rows went.
    pub(crate) async fn prune_seqs(
        &self,
        conn: &mut bot_core::pg::PgConnection,
        users: &[String],
    ) -> Result<u64, Error> {
        // Most users sent to have history left: look without the lock first.
        let candidates: Vec<String> = (conn.query(sql::PRUNE_CANDIDATES, &[&users]).await)
            .map_err(|e| db("looking for number rows to prune", e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if candidates.is_empty() {
            return Ok(0);
        }
        let tx = (conn.transaction().await).map_err(|e| db("pruning number rows", e))?;
        (tx.query(sql::LOCK_SEQ_FLOOR, &[]).await)
            .map_err(|e| db("locking the number floor", e))?;
        let row = (tx.query_one(sql::PRUNE_SEQS, &[&candidates]).await)
            .map_err(|e| db("pruning number rows", e))?;
        tx.commit()
            .await
            .map_err(|e| db("pruning number rows", e))?;
        let pruned = row.get::<_, i64>(0) as u64;
        self.inner.seqs_pruned.fetch_add(pruned, Ordering::Relaxed);
        Ok(pruned)
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        (self.inner.written.lock()).unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Error {
    /// Whether PostgreSQL refused a statement that may succeed if run again: a deadlock, a
    /// serialization failure, or a send's origin that another statement stored at the same
    /// moment (run again, the statement finds it stored).
    fn is_conflict(&self) -> bool {
        let Some(e) =
            std::error::Error::source(self).and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
        else {
            return false;
        };
        match e.code() {
            Some(c)
                if *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
            {
                true
            }
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => e
                .as_db_error()
                .and_then(|d| d.constraint())
                .is_some_and(|name| name == "webchat_history_origin"),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use bot_core::pg::PgPool;

    use super::*;

    fn database_url() -> String {
        std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
    }

    /// A migrated cluster on a fresh schema named after `test`.
    async fn fresh_cluster(test: &str) -> (PgPool, PgCluster) {
        let url = database_url();
        let schema = format!("t_webchat_unit_{test}");
        let admin = PgPool::builder(&url).max_size(1).build().unwrap();
        let conn = admin.get().await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {url} ({e}); start it or set DATABASE_URL")
        });
        conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .unwrap();
        let pool = PgPool::builder(&url).schema(&schema).build().unwrap();
        let cluster = PgCluster::builder(&pool).node("node-a").build().unwrap();
        cluster.migrate().await.unwrap();
        (pool, cluster)
    }

    /// Stores one send of `texts` for `user`; their numbers.
    async fn store(cluster: &PgCluster, user: &str, texts: &[&str]) -> Vec<u64> {
        let (reply, _answer) = oneshot::channel();
        let send = StoreRequest {
            user: user.to_owned(),
            messages: (texts.iter())
                .map(|t| RawValue::from_string(format!("{{\"text\":\"{t}\"}}")).unwrap())
                .collect(),
            origin: None,
            at: 0,
            reply,
        };
        let numbered = cluster
            .store(&[send], &WebChatConfig::default())
            .await
            .unwrap();
        numbered[0].iter().map(|m| m.seq).collect()
    }

    /// A prune that removes a user's row commits while a send to that user waits for it: the
    /// send counts from the raised floor, never from the floor its snapshot saw.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_send_racing_the_prune_of_its_users_row_counts_above_the_pruned_number() {
        let (pool, cluster) = fresh_cluster("prune_race").await;
        assert_eq!(
            store(&cluster, "u", &["one", "two", "three"]).await,
            [1, 2, 3]
        );
        let mut pruner = pool.get().await.unwrap();
        // The retention dropped the user's history.
        (pruner
            .execute("DELETE FROM webchat_history WHERE user_id = 'u'", &[])
            .await)
            .unwrap();
        // The prune's transaction, stopped before its commit.
        let tx = pruner.transaction().await.unwrap();
        tx.query(sql::LOCK_SEQ_FLOOR, &[]).await.unwrap();
        let users = vec!["u".to_owned()];
        let pruned = tx.query_one(sql::PRUNE_SEQS, &[&users]).await.unwrap();
        assert_eq!(pruned.get::<_, i64>(0), 1);
        let pruner_pid: i32 = (tx.query_one("SELECT pg_backend_pid()", &[]).await)
            .unwrap()
            .get(0);
        let watcher = pool.get().await.unwrap();
        let commit = async {
            // The send's statement has started and waits for the prune.
            let until = Instant::now() + Duration::from_secs(10);
            loop {
                assert!(
                    Instant::now() < until,
                    "the send never waited for the prune"
                );
                let row = watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                        &[&pruner_pid],
                    )
                    .await
                    .unwrap();
                if row.get::<_, i64>(0) > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tx.commit().await.unwrap();
        };
        let (seqs, ()) = tokio::join!(store(&cluster, "u", &["four"]), commit);
        assert_eq!(seqs, [4], "above 3, which the browser saw");
        let row = (watcher.query_one("SELECT seq FROM webchat_seqs WHERE user_id = 'u'", &[]))
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 4);
    }
}
