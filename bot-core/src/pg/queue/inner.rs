//! The state shared by the queue's handle and its tasks, and how it runs one statement.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::types::{ToSql, Type};

use super::capacity::SizeBase;
use super::counters::{Counters, StatsCell};
use crate::error::{Error, ErrorKind};
use crate::limits::Overflow;
use crate::pg::error;
use crate::pg::pool::PgPool;
use crate::pg::wakeup::Wakeups;
use crate::queue::Completed;

use super::claimer::Buffered;

/// The queue's settings and state, shared by its handle and its tasks.
pub(super) struct Inner {
    /// The queue's own connections for pushes, claims and upkeep (not the handlers' pool).
    pub(super) pool: PgPool,
    /// Two more for completions and lease extensions alone (one statement of each at a time),
    /// so that neither a burst of pushes nor busy handlers can delay them.
    pub(super) reserved: PgPool,
    /// The pool the queue was built on, for handlers.
    pub(super) handlers: PgPool,
    /// How long the client waits for one queue statement (including its connection).
    pub(super) client_timeout: Duration,
    pub(super) ordered: bool,
    pub(super) lease: Duration,
    /// Attempts after which an expired lease dead-letters its event.
    pub(super) max_attempts: u32,
    pub(super) prefetch: usize,
    pub(super) max_batch: usize,
    pub(super) poll_interval: Duration,
    pub(super) rescue_interval: Duration,
    pub(super) dedup_ttl: Duration,
    pub(super) push_timeout: Duration,
    pub(super) retry_after: Duration,
    /// Events the queue holds at most (all states), as estimated by [`Inner::estimated_size`].
    pub(super) capacity: u64,
    /// Payload bytes the queue holds at most, as estimated.
    pub(super) capacity_bytes: u64,
    pub(super) overflow: Overflow,
    /// Dead letters kept at most (the newest).
    pub(super) dead_letter_capacity: u64,
    /// Dead letters older than this are pruned.
    pub(super) dead_letter_retention: Duration,
    /// How often dead letters, dedup keys and idle conversation locks are pruned.
    pub(super) prune_interval: Duration,
    /// How often the figures are counted while they are needed.
    pub(super) figures_interval: Duration,
    /// Claimed events not yet handed out, oldest claim first. Their leases are not extended:
    /// one that waits here past [`Inner::handout_window`] is released, not handed out.
    pub(super) buffer: Mutex<VecDeque<Buffered>>,
    /// Events the latest waiting `pull` asked for.
    pub(super) demand: AtomicUsize,
    /// A puller wants events: wakes the claimer.
    pub(super) claim_wanted: Notify,
    /// The buffer got events, or the queue closed: wakes pullers.
    pub(super) delivered: Notify,
    /// The signals shared with the `LISTEN` and `NOTIFY` tasks, and the queue's closing.
    pub(super) wakeups: Arc<Wakeups>,
    /// The supervisor stopped pulling (shutdown began): claim nothing more, hold nothing.
    pub(super) pulls_stopped: AtomicBool,
    pub(super) counters: Counters,
    pub(super) stats: StatsCell,
    /// The last counted size of the queue and this process's counters at that time.
    pub(super) size: Mutex<SizeBase>,
    /// A push was refused or waited for room since the last refresh: refresh sooner.
    pub(super) wants_room: AtomicBool,
    /// The figures were read since the last count began (a gauge, `depth`): count them again
    /// when due.
    pub(super) figures_read: AtomicBool,
    /// The figures were refreshed: wakes pushes waiting for room.
    pub(super) stats_refreshed: Notify,
    /// Held while the figures are refreshed.
    pub(super) refreshing: tokio::sync::Mutex<()>,
    /// Pushes waiting for a writer.
    pub(super) push_line: super::push::PushLine,
}

impl Inner {
    // Statements go out typed and unprepared (one round trip each), so PostgreSQL plans them
    // with the actual values and the table's current size every time. A prepared statement's
    // cached plan, made while the queue was empty (as it is most of the time), turns into a scan
    // per call once a burst fills the table. (The push, which reads no table, is prepared: see
    // `push.rs`.)
    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        what: &str,
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        self.query_on(&self.pool, sql, params, what).await
    }

    /// One statement on `pool`, bounded on the client as the server bounds it.
    pub(super) async fn execute_on(
        &self,
        pool: &PgPool,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        what: &str,
    ) -> Result<u64, Error> {
        let run = async {
            let (conn, _) = pool.get_measured(ErrorKind::Queue, what).await?;
            conn.execute_typed(sql, params)
                .await
                .map_err(|e| error::db(ErrorKind::Queue, what, e))
        };
        self.bounded(what, run).await
    }

    pub(super) async fn query_on(
        &self,
        pool: &PgPool,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        what: &str,
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let run = async {
            let (conn, _) = pool.get_measured(ErrorKind::Queue, what).await?;
            conn.query_typed(sql, params)
                .await
                .map_err(|e| error::db(ErrorKind::Queue, what, e))
        };
        self.bounded(what, run).await
    }

    /// A statement that the server does not answer in time (a cut connection, a stalled
    /// server) fails here; fenced completions can then be retried safely.
    pub(super) async fn bounded<T>(
        &self,
        what: &str,
        run: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout(self.client_timeout, run)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "postgres: {what}: no answer within {:?}",
                        self.client_timeout
                    ),
                ))
            })
    }

    pub(super) fn count(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, AtomicOrdering::Relaxed);
    }

    pub(super) fn completed(&self, asked: usize, applied: u64) -> Completed {
        let applied = usize::try_from(applied).unwrap_or(usize::MAX).min(asked);
        let stale = asked - applied;
        if stale > 0 {
            self.count(&self.counters.stale, stale as u64);
        }
        Completed { applied, stale }
    }

    pub(super) fn lease_millis(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}
