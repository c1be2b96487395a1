//! Maintenance: the rescuer of expired leases, the pruning of old rows, and the figures.

use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::types::{ToSql, Type};

use super::capacity::SizeBase;
use super::counters::{QueueStats, StatsCell};
use super::inner::Inner;
use super::sql::{
    DEDUP_PRUNE_STEPS, LANE_IDLE, LEASES_VACUUM_EVERY, PRUNE_BATCH, PRUNE_DEAD, PRUNE_DEDUP,
    PRUNE_FLUSHES, PRUNE_LANES, PRUNE_ROUNDS, RESCUE, STATS, STATS_COST_SHARE, STATS_EXACT_SPAN,
    STATS_SAMPLES, VACUUM_LEASES, interval_millis,
};
use crate::error::{Error, ErrorKind};

impl Inner {
    /// Vacuums `botrt_leases`. Every event leaves a dead row there, and autovacuum visits a
    /// table at most once per `autovacuum_naptime` (a minute by default): long enough for a busy
    /// queue to leave a million dead rows, which every claim's hash of the leases and every
    /// lease insert then walk. The live rows are only the leases held now, so the vacuum is
    /// short. `SKIP_LOCKED`: when another process is vacuuming it, that one is enough.
    pub(super) async fn vacuum_leases(&self) -> Result<(), Error> {
        let what = "vacuuming the leases";
        let run = async {
            let (conn, _) = self.pool.get_measured(ErrorKind::Queue, what).await?;
            // VACUUM cannot run in a transaction: the simple protocol, not a prepared statement.
            conn.batch_execute(VACUUM_LEASES)
                .await
                .map_err(|e| crate::pg::error::db(ErrorKind::Queue, what, e))
        };
        self.bounded(what, run).await
    }

    pub(super) async fn rescue(&self) -> Result<u64, Error> {
        let max_attempts = i32::try_from(self.max_attempts).unwrap_or(i32::MAX);
        let rows = self
            .query(
                RESCUE,
                &[(&max_attempts, Type::INT4)],
                "returning expired leases",
            )
            .await?;
        let (back, dead) = rows.first().map_or((0, 0), |r| {
            (
                u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            )
        });
        if back > 0 {
            self.count(&self.counters.rescued, back);
            tracing::warn!(
                count = back,
                "postgres: returned expired leases to the queue"
            );
        }
        if dead > 0 {
            self.count(&self.counters.dead, dead);
            tracing::error!(
                count = dead,
                "postgres: leases of last attempts expired; dead-lettered those events"
            );
        }
        if back + dead > 0 {
            self.wakeups.wake.notify_one();
        }
        Ok(back)
    }

    /// The figures as last counted, for a reader: reading them calls for the next count (see
    /// `figures_needed`).
    pub(super) fn figures(&self) -> &StatsCell {
        self.figures_read.store(true, AtomicOrdering::Relaxed);
        &self.stats
    }

    /// Whether the periodic count has a reader: pushes find the queue full, this process pushed
    /// (or put dead letters back) since the last count began, or the figures were read since.
    /// Nothing else needs them: a process that only consumes and is not watched does not count.
    fn figures_needed(&self) -> bool {
        if self.wants_room.load(AtomicOrdering::Relaxed)
            || self.figures_read.load(AtomicOrdering::Relaxed)
        {
            return true;
        }
        let base = *self.size.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.local_counts();
        now.pushed != base.pushed || now.redriven != base.redriven
    }

    pub(super) async fn refresh_stats(&self) -> Result<QueueStats, Error> {
        // One at a time, so that an older count never replaces a newer one.
        let _one = self.refreshing.lock().await;
        // Additions are read before the count and removals after it: what this process does
        // meanwhile is then counted twice or not subtracted (an over-estimate until the next
        // count), never missed.
        let before = self.local_counts();
        let rows = self
            .query(
                STATS,
                &[
                    (&STATS_EXACT_SPAN, Type::INT8),
                    (&STATS_SAMPLES, Type::INT4),
                ],
                "reading queue figures",
            )
            .await?;
        let after = self.local_counts();
        self.count(&self.counters.figure_counts, 1);
        let base = SizeBase {
            acked: after.acked,
            dead: after.dead,
            ..before
        };
        let row = rows
            .first()
            .ok_or_else(|| Error::new(ErrorKind::Queue, "postgres: queue figures missing"))?;
        let to_u64 = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
        let age: f64 = row.get(3);
        let stats = QueueStats {
            ready: to_u64(0),
            retrying: to_u64(1),
            leased: to_u64(2),
            dead: to_u64(4),
            oldest_ready_age: Duration::try_from_secs_f64(age.max(0.0)).unwrap_or_default(),
            bytes: to_u64(5),
            estimated: !row.get::<_, bool>(6),
        };
        *self.size.lock().unwrap_or_else(|p| p.into_inner()) = SizeBase {
            events: stats.ready + stats.retrying + stats.leased,
            bytes: stats.bytes,
            ..base
        };
        self.wants_room.store(false, AtomicOrdering::Relaxed);
        self.stats_refreshed.notify_waiters();
        let s = &self.stats;
        s.ready.store(stats.ready, AtomicOrdering::Relaxed);
        s.retrying.store(stats.retrying, AtomicOrdering::Relaxed);
        s.leased.store(stats.leased, AtomicOrdering::Relaxed);
        s.dead.store(stats.dead, AtomicOrdering::Relaxed);
        s.bytes.store(stats.bytes, AtomicOrdering::Relaxed);
        s.estimated.store(stats.estimated, AtomicOrdering::Relaxed);
        s.oldest_ready_millis.store(
            u64::try_from(stats.oldest_ready_age.as_millis()).unwrap_or(u64::MAX),
            AtomicOrdering::Relaxed,
        );
        Ok(stats)
    }

    /// Runs `sql` (a pruning statement returning its count) until it prunes less than a batch,
    /// [`PRUNE_ROUNDS`] times at most.
    pub(super) async fn prune(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        what: &str,
    ) -> Result<u64, Error> {
        let mut total = 0;
        for _ in 0..PRUNE_ROUNDS {
            let rows = self.query(sql, params, what).await?;
            let n = rows.first().map_or(0, |r| r.get::<_, i64>(0));
            total += u64::try_from(n).unwrap_or(0);
            if n < PRUNE_BATCH {
                break;
            }
        }
        Ok(total)
    }

    pub(super) async fn prune_dead_letters(&self) -> Result<u64, Error> {
        let age = interval_millis(self.dead_letter_retention);
        let keep = i64::try_from(self.dead_letter_capacity).unwrap_or(i64::MAX);
        let n = self
            .prune(
                PRUNE_DEAD,
                &[
                    (&age, Type::INT8),
                    (&keep, Type::INT8),
                    (&PRUNE_BATCH, Type::INT8),
                ],
                "pruning dead letters",
            )
            .await?;
        if n > 0 {
            self.count(&self.counters.dead_letters_pruned, n);
            tracing::info!(count = n, "postgres: pruned dead letters");
        }
        Ok(n)
    }

    /// Prunes dead letters, dedup keys (with `dedup`) and idle conversation locks, logging
    /// failures. Returns whether the dedup keys were pruned to the end (`false` when not asked,
    /// when pruning failed, or when more are left than one round prunes).
    pub(super) async fn prune_all(&self, dedup: bool) -> bool {
        let ttl = interval_millis(self.dedup_ttl);
        let mut dedup_done = false;
        if dedup {
            match self
                .prune(
                    PRUNE_DEDUP,
                    &[(&ttl, Type::INT8), (&PRUNE_BATCH, Type::INT8)],
                    "pruning dedup keys",
                )
                .await
            {
                Ok(n) => {
                    dedup_done = n < PRUNE_BATCH.unsigned_abs() * PRUNE_ROUNDS as u64;
                }
                Err(e) => tracing::warn!(error = %e, "postgres: pruning dedup keys failed"),
            }
        }
        if let Err(e) = self.prune_dead_letters().await {
            tracing::warn!(error = %e, "postgres: pruning dead letters failed");
        }
        let idle = interval_millis(LANE_IDLE);
        if let Err(e) = self
            .prune(
                PRUNE_LANES,
                &[(&idle, Type::INT8), (&PRUNE_BATCH, Type::INT8)],
                "pruning conversation locks",
            )
            .await
        {
            tracing::warn!(error = %e, "postgres: pruning conversation locks failed");
        }
        if let Err(e) = self
            .prune(
                PRUNE_FLUSHES,
                &[],
                "pruning the flush rows of gone backends",
            )
            .await
        {
            tracing::warn!(error = %e, "postgres: pruning flush rows failed");
        }
        dedup_done
    }

    /// The rescuer: returns expired leases, prunes dedup keys, dead letters and idle
    /// conversation locks, and refreshes the figures. (Buffered claims are not extended: the
    /// claimer releases those nobody pulls within a third of their lease.)
    pub(super) async fn run_maintenance(self: Arc<Self>) {
        let mut last_prune = Instant::now();
        let mut last_dedup_prune: Option<Instant> = None;
        let mut last_stats: Option<Instant> = None;
        // How long the last count took: a large table is counted less often (see below).
        let mut count_took = Duration::ZERO;
        let mut acked_at_vacuum = self.counters.acked.load(AtomicOrdering::Relaxed);
        // Count at once: until the first count, the capacity check knows only this process's
        // pushes.
        tokio::select! {
            r = self.refresh_stats() => match r {
                Ok(_) => last_stats = Some(Instant::now()),
                Err(e) => tracing::debug!(error = %e, "postgres: reading queue figures failed"),
            },
            () = self.wakeups.closed.cancelled() => return,
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.rescue_interval) => {}
                () = self.wakeups.closed.cancelled() => return,
            }
            if let Err(e) = self.rescue().await {
                tracing::warn!(error = %e, "postgres: rescuing expired leases failed");
            }
            let acked = self.counters.acked.load(AtomicOrdering::Relaxed);
            if acked.saturating_sub(acked_at_vacuum) >= LEASES_VACUUM_EVERY {
                acked_at_vacuum = acked;
                if let Err(e) = self.vacuum_leases().await {
                    // Autovacuum still comes by: slower claims at depth, nothing wrong. (A
                    // role that does not own the table gets a warning, not an error, and no
                    // vacuum.)
                    tracing::debug!(error = %e, "postgres: vacuuming the leases failed");
                }
            }
            if last_prune.elapsed() >= self.prune_interval {
                last_prune = Instant::now();
                // Keys are pruned in steps of a sixtieth of their time to live: an outbox's
                // week-long keys every few hours, not every few seconds (each prune reads the
                // pages written since the last summary of their index).
                // Until a prune gets to the end (it failed, or more were left than a round
                // prunes), the next one comes after `prune_interval`.
                let dedup = last_dedup_prune.is_none_or(|t: Instant| {
                    t.elapsed() >= self.prune_interval.max(self.dedup_ttl / DEDUP_PRUNE_STEPS)
                });
                let started = Instant::now();
                if self.prune_all(dedup).await {
                    last_dedup_prune = Some(started);
                }
            }
            // Counting the table costs a scan: every few seconds is enough for gauges and for
            // the capacity check, unless pushes find the queue full (then a drain shows soon).
            // Not merely when it is nearly full: a backlog would then be counted every second.
            // A count that takes long (a backlog of millions, every process counting it) is
            // repeated at most every `STATS_COST_SHARE` times its duration, so that counting
            // stays a small share of the database's time. And only while something needs the
            // figures: with many worker processes that only consume, their counts were the
            // largest part of what each process added to the server's work.
            let stats_every = if self.wants_room.load(AtomicOrdering::Relaxed) {
                self.rescue_interval
            } else {
                self.figures_interval.max(count_took * STATS_COST_SHARE)
            };
            if last_stats.is_none_or(|t| t.elapsed() >= stats_every) && self.figures_needed() {
                let started = Instant::now();
                last_stats = Some(started);
                // Cleared before the count: a read during it calls for the next one.
                self.figures_read.store(false, AtomicOrdering::Relaxed);
                // A count that failed (a time-out on a huge table) spaces the next one too, and
                // a read's call for it stands.
                if let Err(e) = self.refresh_stats().await {
                    self.figures_read.store(true, AtomicOrdering::Relaxed);
                    tracing::debug!(error = %e, "postgres: reading queue figures failed");
                }
                count_took = started.elapsed();
            }
        }
    }
}
