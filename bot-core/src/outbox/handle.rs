//! [`Outbox`]: queueing messages, cancelling campaigns, dead letters and figures; and
//! [`OutboxSenders`]: the senders of one process.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::builder::OutboxBuilder;
use super::message::{MAX_CAMPAIGN_BYTES, OutboxMessage, Queued};
use super::metrics::{Counts, OutboxCounts, OutboxStats};
use super::sender::SendHandler;
use crate::bot::Bot;
use crate::error::{Error, ErrorKind};
use crate::event::{Event, Platform};
use crate::limits::Limits;
use crate::outbound::Outbound;
use crate::pg::{PgPool, PgQueue};
use crate::queue::{DeadLetter, Queue};
use crate::runtime::ShutdownReport;

/// Messages queued per statement by [`Outbox::send_many`].
const CHUNK: usize = 1_000;

/// A durable outbox of proactive messages in PostgreSQL; see the [module docs](super).
///
/// Cloning is cheap: clones share the queue and its connections.
#[derive(Clone)]
pub struct Outbox {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) queue: Arc<PgQueue>,
    /// Connections on the outbox's schema for what the queue does not do (cancel).
    pub(super) admin: PgPool,
    pub(super) settings: OutboxBuilder,
    pub(super) counts: Arc<Counts>,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("schema", &self.inner.admin.schema())
            .field("ordering", &self.inner.settings.ordering)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

/// What the outbox needs beside the queue's tables: the campaign of each message in a column of
/// its own (generated from the payload, so that the queue's statements need not know it) and an
/// index of it, made once, under a lock so that processes starting together do not race to make
/// them. A column, not an index on the payload's expression: counting or cancelling a campaign
/// then reads the column instead of parsing every message's JSON again.
pub(super) async fn prepare(admin: &PgPool) -> Result<(), Error> {
    let fail = |what: &str, e| crate::pg::db_error(ErrorKind::Queue, what, e);
    let mut conn = admin.get().await?;
    // Made once: `ADD COLUMN IF NOT EXISTS` and `CREATE INDEX IF NOT EXISTS` would lock the
    // table for writes at every start before they found them there.
    let exists = conn
        .query_one(
            "SELECT count(*) FROM pg_indexes
             WHERE schemaname = current_schema() AND indexname = 'botrt_outbox_campaign_column'",
            &[],
        )
        .await
        .map_err(|e| fail("outbox: looking for the campaign index", e))?
        .get::<_, i64>(0)
        > 0;
    if exists {
        return Ok(());
    }
    let tx = conn
        .transaction()
        .await
        .map_err(|e| fail("outbox: starting its preparation", e))?;
    // An outbox made by an earlier version has an index of the expression instead: replaced.
    // Adding the column rewrites a table that holds messages, under a lock every sender waits
    // for: it gives up after 5 s rather than stop senders of the earlier version for long (the
    // start fails with the lock's error; stop or drain those senders, then start again).
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('botrt.outbox.' || current_schema(), 0));
         SET LOCAL lock_timeout = '5s';
         ALTER TABLE botrt_events ADD COLUMN IF NOT EXISTS campaign text
             GENERATED ALWAYS AS (payload -> 'raw' ->> 'campaign') STORED;
         DROP INDEX IF EXISTS botrt_outbox_campaign;
         CREATE INDEX IF NOT EXISTS botrt_outbox_campaign_column ON botrt_events (campaign)
             WHERE campaign IS NOT NULL;",
    )
    .await
    .map_err(|e| fail("outbox: creating the campaign column", e))?;
    tx.commit()
        .await
        .map_err(|e| fail("outbox: committing its preparation", e))
}

impl Outbox {
    /// Queues `message`, committed when this returns; a fresh key unless it has one
    /// ([`OutboxMessage::key`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a message without parts or recipient, or an invalid key;
    /// [`ErrorKind::QueueFull`] when the outbox is full under [`crate::Overflow::Reject`] (or
    /// stayed full under [`crate::Overflow::Wait`]); [`ErrorKind::Queue`] when the database
    /// fails. After a time-out the message may have been committed all the same: send it again
    /// with the same key, which queues it only if it was not.
    pub async fn send(&self, message: OutboxMessage) -> Result<Queued, Error> {
        let event = message.into_event(None)?;
        self.push(vec![event]).await
    }

    /// Queues the messages of campaign `campaign`, each with a key derived from the campaign,
    /// the channel and the recipient unless it has its own: running the same campaign again
    /// (after a crash, or a time-out of this call) queues only the messages not queued the first
    /// time, so each recipient gets one message of a campaign. Messages are committed in
    /// batches of 1,000, in order.
    ///
    /// # Errors
    ///
    /// As [`Outbox::send`]; the batches before a failed one stay queued (run the campaign
    /// again to queue the rest), and the error says how many were queued.
    pub async fn send_many(
        &self,
        campaign: &str,
        messages: impl IntoIterator<Item = OutboxMessage>,
    ) -> Result<Queued, Error> {
        if campaign.is_empty() || campaign.len() > MAX_CAMPAIGN_BYTES {
            return Err(Error::config(format!(
                "outbox: a campaign name must be 1 to {MAX_CAMPAIGN_BYTES} bytes"
            )));
        }
        let mut report = Queued::default();
        let mut batch = Vec::with_capacity(CHUNK);
        let mut messages = messages.into_iter().peekable();
        while messages.peek().is_some() {
            batch.clear();
            for message in messages.by_ref().take(CHUNK) {
                let event = message.into_event(Some(campaign)).map_err(|e| {
                    Error::new(
                        e.kind(),
                        format!(
                            "outbox: campaign {campaign}: {} messages queued, then one was invalid",
                            report.queued
                        ),
                    )
                    .with_source(e)
                    .permanent()
                })?;
                batch.push(event);
            }
            match self.push(std::mem::take(&mut batch)).await {
                Ok(queued) => report.add(queued),
                Err(e) => {
                    let kind = e.kind();
                    return Err(Error::new(
                        kind,
                        format!(
                            "outbox: campaign {campaign}: {} messages queued, then a batch failed",
                            report.queued
                        ),
                    )
                    .with_source(e));
                }
            }
        }
        Ok(report)
    }

    async fn push(&self, events: Vec<Event>) -> Result<Queued, Error> {
        let n = events.len();
        let counts = &self.inner.counts;
        match self.inner.queue.push_batch(events).await {
            Ok(r) => {
                Counts::add(&counts.queued, r.accepted);
                Counts::add(&counts.duplicates, r.duplicates);
                Counts::add(&counts.dropped_newest, r.dropped_newest);
                Counts::add(&counts.evicted_oldest, r.evicted_oldest);
                Ok(Queued {
                    queued: r.accepted,
                    duplicates: r.duplicates,
                    dropped_newest: r.dropped_newest,
                    evicted_oldest: r.evicted_oldest,
                })
            }
            Err(e) => {
                if e.kind() == ErrorKind::QueueFull {
                    Counts::add(&counts.rejected, n);
                }
                Err(e)
            }
        }
    }

    /// Cancels campaign `campaign`: deletes its messages not yet being sent (those a sender has
    /// claimed may still go out) and forgets their keys, so that running the campaign again
    /// queues them again. Returns how many were cancelled.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Queue`] when the database fails (nothing was cancelled then).
    pub async fn cancel(&self, campaign: &str) -> Result<u64, Error> {
        let fail = |what: &str, e| crate::pg::db_error(ErrorKind::Queue, what, e);
        let mut conn = self.inner.admin.get().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(|e| fail("outbox: cancelling a campaign", e))?;
        // First lock the campaign's rows that no claim holds (a claim locks its rows as this
        // does, with SKIP LOCKED): from here on no sender can claim them. Then, in a statement
        // whose snapshot is taken after those locks, delete the locked rows that a claim
        // committed a lease for before them. A single statement would not do: its snapshot,
        // taken before it waited for a claim's lock, would miss that claim's lease and delete a
        // message being sent.
        let locked: Vec<i64> = tx
            .query(
                "SELECT id FROM botrt_events
                 WHERE campaign = $1
                 FOR UPDATE SKIP LOCKED",
                &[&campaign],
            )
            .await
            .map_err(|e| fail("outbox: locking a campaign", e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let row = tx
            .query_one(
                "WITH gone AS (
                     DELETE FROM botrt_events e
                     WHERE e.id = ANY($1)
                       AND NOT EXISTS (SELECT 1 FROM botrt_leases l WHERE l.id = e.id)
                     RETURNING e.platform, e.event_id
                 ), forgotten AS (
                     DELETE FROM botrt_dedup d USING gone g
                     WHERE d.platform = g.platform AND d.event_id = g.event_id
                 )
                 SELECT count(*) FROM gone",
                &[&locked],
            )
            .await
            .map_err(|e| fail("outbox: cancelling a campaign", e))?;
        tx.commit()
            .await
            .map_err(|e| fail("outbox: committing a cancel", e))?;
        let cancelled = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        Counts::add(&self.inner.counts.cancelled, cancelled as usize);
        Ok(cancelled)
    }

    /// Messages of campaign `campaign` still in the outbox (waiting, retrying or being sent).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Queue`] when the database fails.
    pub async fn pending(&self, campaign: &str) -> Result<u64, Error> {
        let conn = self.inner.admin.get().await?;
        let row = conn
            .query_one(
                "SELECT count(*) FROM botrt_events WHERE campaign = $1",
                &[&campaign],
            )
            .await
            .map_err(|e| crate::pg::db_error(ErrorKind::Queue, "outbox: counting a campaign", e))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// The newest `limit` messages given up on: refused by the platform, or out of attempts.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Queue`] when the database fails.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        self.inner.queue.dead_letters(limit).await
    }

    /// Queues up to `max` dead letters again (oldest first), with fresh attempts; returns how many.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Queue`] when the database fails.
    pub async fn redrive(&self, max: usize) -> Result<usize, Error> {
        self.inner.queue.redrive(max).await
    }

    /// What this process's outbox did so far.
    pub fn counts(&self) -> OutboxCounts {
        self.inner.counts.snapshot()
    }

    /// The outbox's figures now, read from its tables (all processes), with this process's counts.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Queue`] when the database fails.
    pub async fn stats(&self) -> Result<OutboxStats, Error> {
        let stats = self.inner.queue.stats().await?;
        Ok(OutboxStats::from_queue(stats, self.counts()))
    }

    /// The outbox's queue (its figures, counters and metrics as a queue).
    pub fn queue(&self) -> &PgQueue {
        &self.inner.queue
    }

    /// Exports the outbox's figures as metrics of `telemetry` (a bot does it for its outbox):
    /// `bot.outbox.messages{outcome}` (queued, duplicate, dropped, evicted, rejected, cancelled,
    /// sent, failed, dead), `bot.outbox.depth{state}` and `bot.outbox.oldest_age`.
    pub fn register_metrics(&self, telemetry: &crate::Telemetry) {
        super::metrics::register(telemetry, self);
    }

    /// The senders of this process: they send the outbox's messages through `clients`, one per
    /// platform (a later client of a platform replaces an earlier one), with the outbox's
    /// in-flight limit, ordering and retries. Start them with [`OutboxSenders::start`].
    ///
    /// Every process that sends must have a client for each platform the outbox has messages
    /// for: a message for a platform this process has no client of is a dead letter.
    ///
    /// Senders run this way, outside a bot (a process that only sends), have telemetry of
    /// their own ([`OutboxSenders::telemetry`]), with the outbox's metrics in it, pushed to
    /// OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. A bot's outbox
    /// ([`crate::BotBuilder::outbox`]) runs its senders with its metrics in the bot's telemetry
    /// instead: one stream per process.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the outbox's settings make invalid limits.
    pub fn senders(
        &self,
        clients: impl IntoIterator<Item = Arc<dyn Outbound>>,
    ) -> Result<OutboxSenders, Error> {
        let senders = self.make_senders(clients, true)?;
        self.register_metrics(senders.telemetry());
        Ok(senders)
    }

    /// The senders of a bot's outbox: their telemetry is not pushed (the bot's has the outbox's
    /// metrics), so the process exports one stream, not two of the same names.
    pub(crate) fn senders_in_bot(
        &self,
        clients: impl IntoIterator<Item = Arc<dyn Outbound>>,
    ) -> Result<OutboxSenders, Error> {
        self.make_senders(clients, false)
    }

    fn make_senders(
        &self,
        clients: impl IntoIterator<Item = Arc<dyn Outbound>>,
        export_telemetry: bool,
    ) -> Result<OutboxSenders, Error> {
        let outbounds: HashMap<Platform, Arc<dyn Outbound>> = clients
            .into_iter()
            .map(|client| (client.platform(), client))
            .collect();
        let settings = &self.inner.settings;
        let limits = Limits {
            max_in_flight: settings.max_in_flight,
            retry: settings.retry.clone(),
            ordering: settings.ordering,
            shutdown_timeout: settings.shutdown_timeout,
            handler_timeout: settings.max_send_wait,
            ..Limits::default()
        };
        let counts = self.inner.counts.clone();
        let dead = self.inner.counts.clone();
        // A queue of the senders' own, on the same tables: stopping the senders closes it, not the
        // one this process queues messages through.
        let queue = Arc::new(settings.queue(&self.inner.admin, true)?);
        let shared: Arc<dyn Queue> = queue.clone();
        let mut bot = Bot::builder();
        if !export_telemetry {
            bot = bot.unexported_telemetry();
        }
        let bot = bot
            .limits(limits)
            .queue(shared)
            .handler(SendHandler::new(outbounds, counts))
            .on_dead_letter(move |letter| {
                Counts::add(&dead.dead, 1);
                tracing::warn!(
                    platform = %letter.event.platform,
                    attempts = letter.attempts,
                    error = %letter.error,
                    "outbox: a message was given up on (a dead letter)"
                );
            })
            .build()?;
        Ok(OutboxSenders { bot, queue })
    }
}

/// The senders of one process ([`Outbox::senders`]): they claim due messages as they have room,
/// send them, and record the outcome.
#[derive(Debug, Clone)]
pub struct OutboxSenders {
    bot: Bot,
    queue: Arc<PgQueue>,
}

impl OutboxSenders {
    /// The senders' telemetry: their supervisor's figures (`bot.events.*`, `bot.queue.*` of
    /// the outbox's queue) and, for senders run outside a bot ([`Outbox::senders`]), the
    /// outbox's metrics; render it with `render_prometheus` (feature `prometheus`) in a
    /// process that only sends.
    pub fn telemetry(&self) -> &crate::Telemetry {
        self.bot.telemetry()
    }

    /// Starts sending. Idempotent.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(&self) {
        self.bot.start();
    }

    /// Stops claiming, waits for the sends in flight up to the outbox's shutdown time-out (then
    /// cancels them: their messages are sent again later, by this key), returns the claimed but
    /// unsent messages to the outbox at once, and reports. The [`Outbox`] itself still queues
    /// messages.
    pub async fn shutdown(&self) -> ShutdownReport {
        // Boxed: a bot's shutdown awaits its outbox senders', whose bot has none.
        let report = Box::pin(self.bot.shutdown()).await;
        self.queue.shutdown().await;
        report
    }
}
