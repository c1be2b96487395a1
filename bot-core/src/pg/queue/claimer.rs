//! The claimer: claims events when pullers want them and parks them in the buffer.

use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use tokio::time::Instant;

use tokio_postgres::types::{ToSql, Type};

use super::inner::Inner;
use super::sql::{
    CLAIM, CLAIM_WHOLE, DEAD, EXTEND, FLOOR_CHECK_EVERY, FRONT, FULL_CLAIM_EVERY, I8S, RELEASE,
    TEXTS, split, storable_error,
};
use crate::error::{Error, ErrorKind};
use crate::event::{Event, EventData};
use crate::pg::error;
use crate::queue::{Completed, Delivery, Lease};

/// The queue's front as last read (migrations 7, 8 and 12).
#[derive(Debug, Clone, Copy)]
pub(super) struct Front {
    /// The smallest id in the queue (0 when it was empty): where an ordered queue's bounded
    /// claims start until the next full claim.
    pub(super) front: i64,
    /// The xmin of the snapshot `front` was read in (0 when none was read): a candidate written
    /// by a transaction older than this has no older event of its conversation under `front`,
    /// so its lane probe starts there (migration 8 has the argument).
    pub(super) safe: i64,
    /// `front`, or the sequence's next id when the queue was empty: what the queue will hold
    /// under it once every transaction under `mark` has ended is what the snapshot saw
    /// (migration 12 has the argument). None when the queue was empty and the role may not read
    /// the sequence (or no read was made): such a read proves and shows nothing.
    pub(super) low: Option<i64>,
    /// The transaction id the read took after its snapshot.
    pub(super) mark: i64,
}

impl Front {
    /// Nothing read yet: every probe unbounded.
    const NONE: Front = Front {
        front: 0,
        safe: 0,
        low: None,
        mark: 0,
    };
}

/// The front in a row of [`FRONT`].
fn front_of(row: &tokio_postgres::Row) -> Front {
    Front {
        safe: row.get(0),
        front: row.get(1),
        low: row.get(2),
        mark: row.get(3),
    }
}

/// A floor under every id the queue holds or will hold, proven by the claimer's front reads
/// (migration 12): full claims and front reads start there instead of at 0, so they no longer
/// step over the primary key's entries of every event acknowledged since the last vacuum.
///
/// A read's `low` becomes a bound once a later read's snapshot shows every transaction under
/// the first read's `mark` ended (`safe > mark`): the floor is then the smaller `low` of the two
/// reads. Until then (a transaction that stays open, anywhere on the server, holds `safe` back)
/// the floor stays where it was.
///
/// The proof assumes ids never go backwards, which a failover to a lagging standby, a restore, a
/// crash that loses unflushed WAL or a sequence restarted by hand break. So the claimer reads
/// from 0 every [`FLOOR_CHECK_EVERY`] and starts over after a failed claim, and a read that sees
/// anything under the floor (a `low` under it) drops it: full claims start at 0 again until two
/// reads have proven a new one.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Floor {
    /// Proven: nothing lives or will commit under it.
    exact: i64,
    /// The oldest read not proven yet: its `low` and `mark`.
    pending: Option<(i64, i64)>,
}

impl Floor {
    /// Where full claims and front reads start.
    pub(super) fn get(&self) -> i64 {
        self.exact
    }

    /// Takes in a front read made from `from` (the floor then, or 0). Returns whether the read
    /// saw something under the floor, and so dropped it.
    pub(super) fn observe(&mut self, read: Front, from: i64) -> bool {
        let Some(read_low) = read.low else {
            return false;
        };
        if read_low < self.exact {
            // Ids went backwards. Only a read from 0 saw all there is: a proof starts from it.
            self.exact = 0;
            self.pending = (from == 0).then_some((read_low, read.mark));
            return true;
        }
        match self.pending {
            Some((low, mark)) if read.safe > mark => {
                self.exact = self.exact.max(low.min(read_low));
                self.pending = Some((read_low, read.mark));
            }
            Some(_) => {}
            None => self.pending = Some((read_low, read.mark)),
        }
        false
    }
}

/// A claimed delivery waiting in the buffer for a puller.
pub(super) struct Buffered {
    /// When the claim that leased it went out (or, for a claim that took too long, the
    /// extension of its lease): its lease expires a lease's time after that at the earliest
    /// (the server starts it at its transaction's start, after this).
    claimed: Instant,
    delivery: Delivery,
}

impl Inner {
    /// How long a buffered delivery may wait to be handed out. The buffer does not extend
    /// leases; the supervisor's lease keeper extends a delivery's lease once it is pulled, within
    /// a third of the lease. A delivery handed out within the first third therefore has its
    /// lease extended before it expires; one handed out later could have its lease expire
    /// first, be rescued and run by another process, and run here too.
    pub(super) fn handout_window(&self) -> Duration {
        self.lease / 3
    }

    /// One claim statement: up to `n` events under one fresh lease token. A bounded claim (one
    /// between full ones) looks at part of the queue only: an unordered queue's at the events
    /// after the largest leased id, an ordered queue's at those from `front` on. An ordered
    /// claim's lane probes start at the front for the candidates it covers (see [`Front`]).
    ///
    /// `whole`: the previous claim came back short (the queue holds less than is asked, as an
    /// idle queue does), so an ordered claim that finds both claim slots free looks at every
    /// conversation in one query instead of one slot's and then the other's (migration 9).
    ///
    /// `floor`: an ordered claim starts there at the least, a full one exactly there (see
    /// [`Floor`]).
    ///
    /// `read_front`: an ordered full claim that also reads the queue's front for the bounded
    /// claims after it, in the same round trip: the front's statement goes out first on the same
    /// connection and ends before the claim's begins (each has its own `Sync`, hence its own
    /// transaction and snapshot), so an event committed in between with a smaller id is taken
    /// by this claim, not missed by the bounded ones after it. This claim's own lane probes use
    /// `front`, read earlier: a front is a valid bound for as long as its events live (the
    /// argument of migration 8 holds for any snapshot read before the claim's).
    pub(super) async fn claim(
        &self,
        n: usize,
        bounded: bool,
        front: Front,
        floor: i64,
        whole: bool,
        read_front: bool,
    ) -> Result<(Vec<Delivery>, Option<Front>), Error> {
        let token = fastrand::i64(..);
        let limit = i32::try_from(n).unwrap_or(i32::MAX);
        let tail = bounded && !self.ordered;
        let from = match (self.ordered, bounded) {
            (true, true) => front.front.max(floor),
            (true, false) => floor,
            (false, _) => 0,
        };
        let lease_ms = self.lease_millis();
        let claim = if whole && self.ordered {
            CLAIM_WHOLE
        } else {
            CLAIM
        };
        let params: [(&(dyn ToSql + Sync), Type); 8] = [
            (&limit, Type::INT4),
            (&lease_ms, Type::INT8),
            (&token, Type::INT8),
            (&self.ordered, Type::BOOL),
            (&tail, Type::BOOL),
            (&from, Type::INT8),
            (&front.front, Type::INT8),
            (&front.safe, Type::INT8),
        ];
        let (rows, read) = if read_front {
            let what = "claiming events";
            let run = async {
                let (conn, _) = self.pool.get_measured(ErrorKind::Queue, what).await?;
                let fail = |e| error::db(ErrorKind::Queue, what, e);
                // `join` polls its first future first, so the front's request is written first
                // (tokio-postgres writes a request at its future's first poll).
                let (read, rows) = futures::future::join(
                    conn.query_typed(FRONT, &[(&floor, Type::INT8)]),
                    conn.query_typed(claim, &params),
                )
                .await;
                // What the claim leased is handed out whatever became of the front's read; the
                // front read before stays in use until the next full claim reads one.
                let read = match read {
                    Ok(rows) => Some(rows.first().map_or(Front::NONE, front_of)),
                    Err(e) => {
                        tracing::warn!(error = %e, "postgres: reading the queue's front failed");
                        None
                    }
                };
                Ok((rows.map_err(fail)?, read))
            };
            self.bounded(what, run).await?
        } else {
            (self.query(claim, &params, "claiming events").await?, None)
        };
        self.count(&self.counters.claims, 1);
        let rows: Vec<(i64, i32, &str)> = (rows.iter())
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let (out, undecodable) = decoded(rows, token);
        self.count(&self.counters.claimed, out.len() as u64);
        if !undecodable.is_empty() {
            tracing::error!(
                count = undecodable.len(),
                "postgres: stored events do not decode; dead-lettering them"
            );
            let ids: Vec<i64> = undecodable.iter().map(|(id, _)| *id).collect();
            let tokens = vec![token; ids.len()];
            let errors: Vec<String> = undecodable
                .into_iter()
                .map(|(_, e)| storable_error(&e))
                .collect();
            // A failure here must not cost the decoded events their turn: they are leased to
            // this process and handed out; the undecodable rows keep their lease (and, ordered,
            // their conversations) until it expires, come back and are dead-lettered by that
            // claim.
            if let Err(e) = self
                .query(
                    DEAD,
                    &[(&ids, I8S), (&tokens, I8S), (&errors, TEXTS)],
                    "dead-lettering events",
                )
                .await
            {
                tracing::warn!(
                    error = %e,
                    count = ids.len(),
                    "postgres: undecodable events not dead-lettered yet; they are retried when \
                     their lease expires, and hold their conversations until then"
                );
            }
        }
        Ok((out, read))
    }

    pub(super) async fn release_leases(&self, deliveries: &[Delivery]) -> Result<Completed, Error> {
        if deliveries.is_empty() {
            return Ok(Completed::default());
        }
        let (ids, tokens) = split(deliveries.iter().map(|d| d.lease));
        let n = self
            .execute_on(
                &self.reserved,
                RELEASE,
                &[(&ids, I8S), (&tokens, I8S)],
                "releasing events",
            )
            .await?;
        self.count(&self.counters.released, n);
        self.wakeups.wake.notify_one();
        Ok(self.completed(deliveries.len(), n))
    }

    /// Takes up to `max` deliveries to hand out, skipping those that waited past
    /// [`Inner::handout_window`]: those stay (at the front) for the claimer to release, which
    /// this wakes. It never waits, so that a `pull` holds nothing it could drop.
    pub(super) fn take_buffered(&self, max: usize) -> Vec<Delivery> {
        let window = self.handout_window();
        let now = Instant::now();
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        // Oldest claim first: the stale ones are at the front.
        let stale = buffer.partition_point(|b| now.saturating_duration_since(b.claimed) >= window);
        let n = max.min(buffer.len() - stale);
        let fresh = buffer.drain(stale..stale + n).map(|b| b.delivery).collect();
        drop(buffer);
        if stale > 0 {
            self.claim_wanted.notify_one();
        }
        fresh
    }

    /// Takes every buffered delivery that waited past [`Inner::handout_window`].
    fn take_stale(&self) -> Vec<Delivery> {
        let window = self.handout_window();
        let now = Instant::now();
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let stale = buffer.partition_point(|b| now.saturating_duration_since(b.claimed) >= window);
        buffer.drain(..stale).map(|b| b.delivery).collect()
    }

    /// Every buffered delivery, to release at shutdown.
    pub(super) fn drain_buffered(&self) -> Vec<Delivery> {
        self.buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .map(|b| b.delivery)
            .collect()
    }

    /// When the oldest buffered delivery turns stale, if any is buffered.
    fn stale_at(&self) -> Option<Instant> {
        let buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        buffer.front().map(|b| b.claimed + self.handout_window())
    }

    /// Releases deliveries that waited in the buffer too long to be handed out safely, so that
    /// any process claims them again at once (without an attempt counted) rather than after
    /// their leases expire. If the release fails, they come back when their leases expire.
    async fn release_stale(&self, stale: &[Delivery]) {
        if stale.is_empty() {
            return;
        }
        match self.release_leases(stale).await {
            Ok(done) => {
                self.count(&self.counters.released_stale, done.applied as u64);
                if done.applied > 0 {
                    // Other processes may be waiting for exactly these.
                    self.wakeups.notify_wanted.notify_one();
                }
                tracing::debug!(
                released = done.applied,
                window = ?self.handout_window(),
                    "postgres: released claimed events nobody pulled in time"
                );
            }
            Err(e) => tracing::warn!(
                error = %e,
                count = stale.len(),
                "postgres: releasing claimed events nobody pulled in time failed; they come back when their leases expire"
            ),
        }
    }

    pub(super) fn buffered(&self) -> usize {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A claim that took a third of the lease or more: its leases are extended, and it counts
    /// as claimed when the extension went out (`Some`), if that was in time for all of them.
    /// Otherwise (slow or failed, or a lease already lost) the claim is released, not handed
    /// out, and `None` returned.
    async fn extend_late_claim(&self, batch: &[Delivery], claimed_at: Instant) -> Option<Instant> {
        let extended_at = Instant::now();
        let (ids, tokens) = split(batch.iter().map(|d| d.lease));
        let extended = self
            .execute_on(
                &self.reserved,
                EXTEND,
                &[
                    (&ids, I8S),
                    (&tokens, I8S),
                    (&self.lease_millis(), Type::INT8),
                ],
                "extending leases",
            )
            .await;
        let in_time = extended_at.elapsed() < self.handout_window();
        match extended {
            Ok(n) if in_time && n == batch.len() as u64 => {
                tracing::warn!(
                    count = batch.len(),
                    took = ?extended_at.saturating_duration_since(claimed_at),
                    lease = ?self.lease,
                    "postgres: a claim took over a third of the lease; its leases were extended"
                );
                Some(extended_at)
            }
            outcome => {
                tracing::warn!(
                    count = batch.len(),
                    took = ?claimed_at.elapsed(),
                    lease = ?self.lease,
                    extended = ?outcome.as_ref().ok(),
                    error = outcome.as_ref().err().map(tracing::field::display),
                    "postgres: a claim and its extension took over a third of the lease; releasing what it claimed"
                );
                self.release_stale(batch).await;
                None
            }
        }
    }

    /// Waits [`claim_backoff`] after `failures` failed claims in a row; false if the queue
    /// closed meanwhile.
    async fn back_off(&self, failures: u32) -> bool {
        tokio::select! {
            () = tokio::time::sleep(claim_backoff(failures)) => true,
            () = self.wakeups.closed.cancelled() => false,
        }
    }

    /// The claimer: claims when pullers want events, parks them in the buffer, and releases
    /// whatever is left there when the queue closes. Claims run here, not in `pull`, so that a
    /// dropped `pull` future never leaves events leased to nobody.
    pub(super) async fn run_claimer(self: Arc<Self>) {
        let mut failures = 0u32;
        // Claims between full ones are bounded (see `FULL_CLAIM_EVERY`).
        let mut last_full: Option<tokio::time::Instant> = None;
        let mut bounded_came_short = false;
        // Whether the last claim came back short: the next one is a small claim (migration 9).
        let mut came_short = true;
        let mut front = Front::NONE;
        let mut floor = Floor::default();
        // When the last full claim from 0 went out (see `Floor`).
        let mut last_from_zero: Option<tokio::time::Instant> = None;
        'outer: loop {
            // Wait for demand the buffer does not cover.
            loop {
                if self.wakeups.closed.is_cancelled() {
                    break 'outer;
                }
                let wanted = self.claim_wanted.notified();
                tokio::pin!(wanted);
                wanted.as_mut().enable();
                // What waited too long to be handed out goes back first (pullers skip it).
                let stale = self.take_stale();
                if !stale.is_empty() {
                    self.release_stale(&stale).await;
                    // Released events may lie under the front or the largest leased id, where
                    // bounded claims do not look: the next claim is a full one.
                    last_full = None;
                }
                if self.demand.load(AtomicOrdering::Acquire) > self.buffered()
                    && !self.pulls_stopped.load(AtomicOrdering::Acquire)
                {
                    break;
                }
                let stale_at = self.stale_at();
                tokio::select! {
                    () = wanted => {}
                    () = sleep_until_some(stale_at) => {}
                    () = self.wakeups.closed.cancelled() => break 'outer,
                }
            }
            let demand = self.demand.load(AtomicOrdering::Acquire);
            let n = (demand.saturating_sub(self.buffered()) + self.prefetch).min(self.max_batch);
            let claimed_at = Instant::now();
            let bounded =
                !bounded_came_short && last_full.is_some_and(|at| at.elapsed() < FULL_CLAIM_EVERY);
            // An ordered full claim reads the front for the bounded claims after it, before
            // it and in its round trip (see `claim`).
            let read_front = !bounded && self.ordered;
            // A full claim reads from 0 now and then, to find what a rewind of the ids left under
            // the floor.
            let from = if !read_front
                || last_from_zero.is_some_and(|at| at.elapsed() < FLOOR_CHECK_EVERY)
            {
                floor.get()
            } else {
                0
            };
            let claimed = match self
                .claim(n, bounded, front, from, came_short, read_front)
                .await
            {
                Ok((batch, read)) => {
                    if read_front && from == 0 {
                        last_from_zero = Some(tokio::time::Instant::now());
                    }
                    if let Some(read) = read {
                        front = read;
                        let was = floor.get();
                        if floor.observe(read, from) {
                            tracing::warn!(
                                floor = was,
                                seen = read.low,
                                "postgres: the queue holds ids under the claimer's floor (a \
                                 failover, a restore or a restarted sequence); claiming from the \
                                 start again"
                            );
                        }
                    }
                    Ok(batch)
                }
                Err(e) => Err(e),
            };
            if let Ok(batch) = &claimed {
                came_short = batch.len() < n;
                if bounded {
                    bounded_came_short = batch.len() < n;
                } else {
                    last_full = Some(tokio::time::Instant::now());
                    bounded_came_short = false;
                }
            }
            match claimed {
                Ok(batch) if bounded && batch.is_empty() => {
                    // Nothing in the part looked at: the full claim looks at the rest at once.
                    failures = 0;
                }
                Ok(batch) if !batch.is_empty() => {
                    failures = 0;
                    if self.wakeups.closed.is_cancelled()
                        || self.pulls_stopped.load(AtomicOrdering::Acquire)
                    {
                        if let Err(e) = self.release_leases(&batch).await {
                            tracing::error!(error = %e, "postgres: releasing claims at shutdown failed");
                        }
                        if self.wakeups.closed.is_cancelled() {
                            break;
                        }
                        continue;
                    }
                    let mut claimed = claimed_at;
                    if claimed_at.elapsed() >= self.handout_window() {
                        // Too late to hand out as claimed: extended in time, it can still be.
                        match self.extend_late_claim(&batch, claimed_at).await {
                            Some(at) => claimed = at,
                            None => {
                                // Released: see above.
                                last_full = None;
                                failures = failures.saturating_add(1);
                                if !self.back_off(failures).await {
                                    break;
                                }
                                continue;
                            }
                        }
                    }
                    self.buffer
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(
                            batch
                                .into_iter()
                                .map(|delivery| Buffered { claimed, delivery }),
                        );
                    self.delivered.notify_waiters();
                }
                Ok(_) => {
                    failures = 0;
                    // Nothing claimable: wait for a push, a completion, a NOTIFY or the poll.
                    tokio::select! {
                        () = self.wakeups.wake.notified() => {}
                        () = tokio::time::sleep(self.poll_interval) => {}
                        () = self.wakeups.closed.cancelled() => break,
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // The server may have failed over or restarted, its ids gone back with it:
                    // the floor goes, and so does the front, whose bound on the lane probes
                    // holds only while ids go forward. Two events of one conversation under a
                    // front read before a rewind would otherwise both pass their probes in every
                    // full claim, whose lease inserts (migration 13) then fail on the
                    // conversation's unique lease, claim after claim.
                    floor = Floor::default();
                    front = Front::NONE;
                    last_from_zero = None;
                    tracing::error!(error = %e, retry_in = ?claim_backoff(failures), "postgres: claiming events failed");
                    if !self.back_off(failures).await {
                        break;
                    }
                }
            }
        }
        let left = self.drain_buffered();
        if !left.is_empty() {
            match self.release_leases(&left).await {
                Ok(done) => tracing::info!(
                    released = done.applied,
                    "postgres: released claimed, unstarted events"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    count = left.len(),
                    "postgres: releasing claimed events failed; they come back when their leases expire"
                ),
            }
        }
        self.delivered.notify_waiters();
    }
}

/// How long the claimer waits after `failures` failed claims in a row: 200 ms, doubling, up to
/// 3.2 s.
fn claim_backoff(failures: u32) -> Duration {
    Duration::from_millis(100 << failures.min(5))
}

/// Sleeps until `at`, or forever when it is `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One claim's rows (`id`, `attempts`, `payload`), which the function returns in no promised
/// order, as deliveries in arrival order (their ids'), their events' data in shared blocks; and
/// the ids of the rows whose payload does not decode, with why. The ids are sorted, not the
/// decoded events (some 480 bytes each, which a sort would move).
fn decoded(mut rows: Vec<(i64, i32, &str)>, token: i64) -> (Vec<Delivery>, Vec<(i64, String)>) {
    rows.sort_unstable_by_key(|(id, _, _)| *id);
    let mut heads = Vec::with_capacity(rows.len());
    let mut data = Vec::with_capacity(rows.len());
    let mut undecodable = Vec::new();
    for (id, attempts, payload) in rows {
        match serde_json::from_str::<EventData>(payload) {
            Ok(event) => {
                heads.push((
                    Lease {
                        id: id as u64,
                        token: token as u64,
                    },
                    u32::try_from(attempts).unwrap_or(1),
                ));
                data.push(event);
            }
            Err(e) => undecodable.push((id, format!("stored event does not decode: {e}"))),
        }
    }
    (deliveries(heads, data), undecodable)
}

/// The deliveries of one claim's decoded rows, in their order (`heads[i]` the lease and attempt
/// of `data[i]`), their events' data in blocks of at most
/// [`BLOCK_EVENTS`](crate::event::BLOCK_EVENTS) ([`Event::batch`]): one allocation for many events,
/// and a long-running one keeps only a few siblings' data alive.
fn deliveries(heads: Vec<(Lease, u32)>, data: Vec<EventData>) -> Vec<Delivery> {
    heads
        .into_iter()
        .zip(Event::batch(data))
        .map(|((lease, attempt), event)| Delivery {
            lease,
            event,
            attempt,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BLOCK_EVENTS, Platform};

    #[test]
    fn a_claims_events_share_blocks_of_at_most_block_events_in_their_order() {
        let count = BLOCK_EVENTS + 5;
        let (heads, data): (Vec<_>, Vec<_>) = (0..count)
            .map(|i| {
                let lease = Lease {
                    id: i as u64,
                    token: 7,
                };
                let data = Event::text(Platform::TEST, format!("c{i}"), "x").into_data();
                ((lease, 1 + (i % 3) as u32), data)
            })
            .unzip();
        let out = deliveries(heads, data);
        assert_eq!(out.len(), count);
        for (i, d) in out.iter().enumerate() {
            assert_eq!(d.lease.id, i as u64);
            assert_eq!(d.attempt, 1 + (i % 3) as u32);
            assert_eq!(d.event.conversation.as_str(), format!("c{i}"));
            let first = &out[i - i % BLOCK_EVENTS].event;
            assert!(d.event.shares_block_with(first), "delivery {i}");
        }
        assert!(!out[BLOCK_EVENTS].event.shares_block_with(&out[0].event));
        assert!(deliveries(Vec::new(), Vec::new()).is_empty());
    }

    #[test]
    fn a_claims_rows_come_out_in_id_order_each_with_its_attempt_and_the_undecodable_apart() {
        let payloads: Vec<String> = (0..5)
            .map(|i| {
                serde_json::to_string(&Event::text(Platform::TEST, format!("c{i}"), "x")).unwrap()
            })
            .collect();
        // Shuffled ids, an attempt count of its own for each, and one payload that is no event.
        let rows = vec![
            (30, 4, payloads[3].as_str()),
            (10, 2, payloads[1].as_str()),
            (20, 7, "{not an event"),
            (40, 1, payloads[4].as_str()),
            (0, 9, payloads[0].as_str()),
        ];
        let (out, undecodable) = decoded(rows, 5);
        let got: Vec<(u64, u32, &str)> = out
            .iter()
            .map(|d| (d.lease.id, d.attempt, d.event.conversation.as_str()))
            .collect();
        assert_eq!(
            got,
            [(0, 9, "c0"), (10, 2, "c1"), (30, 4, "c3"), (40, 1, "c4")]
        );
        assert!(out.iter().all(|d| d.lease.token == 5));
        assert!(out[0].event.shares_block_with(&out[3].event));
        assert_eq!(undecodable.len(), 1);
        assert_eq!(undecodable[0].0, 20);
        assert!(undecodable[0].1.starts_with("stored event does not decode"));
    }

    /// A front read as [`Floor::observe`] takes it.
    fn read(safe: i64, low: i64, mark: i64) -> Front {
        Front {
            front: low,
            safe,
            low: Some(low),
            mark,
        }
    }

    #[test]
    fn a_floor_rises_only_once_every_transaction_before_a_reads_mark_has_ended() {
        let mut floor = Floor::default();
        assert_eq!(floor.get(), 0);
        // The first read proves nothing yet.
        assert!(!floor.observe(read(100, 5_000, 110), 0));
        assert_eq!(floor.get(), 0);
        // A transaction under the first read's mark (105, say, holding an id under 5,000) is
        // still running: the later snapshot's xmin is at most its id.
        floor.observe(read(105, 9_000, 120), floor.get());
        floor.observe(read(110, 9_000, 130), floor.get());
        assert_eq!(floor.get(), 0, "safe must pass the mark, not reach it");
        // It has ended: what it wrote the later read sees (here from 4,200 on), so the floor is
        // the smaller low of the two reads.
        floor.observe(read(111, 4_200, 140), floor.get());
        assert_eq!(floor.get(), 4_200);
        // The read that proved it waits for its own proof; the next one proves it.
        floor.observe(read(141, 9_500, 150), floor.get());
        assert_eq!(floor.get(), 4_200);
        floor.observe(read(151, 9_700, 160), floor.get());
        assert_eq!(floor.get(), 9_500);
    }

    #[test]
    fn a_read_under_the_floor_drops_it_and_only_a_read_from_zero_starts_a_new_proof() {
        let mut floor = Floor::default();
        floor.observe(read(10, 1_000, 20), 0);
        floor.observe(read(21, 2_000, 30), 0);
        assert_eq!(floor.get(), 1_000);
        // The ids went back (a failover, a restored database): a read from the floor finds the
        // queue empty and the sequence's next id under the floor.
        assert!(floor.observe(read(31, 400, 40), 1_000));
        assert_eq!(floor.get(), 0);
        // That read saw nothing under the floor, so it proves nothing: the next read, from 0,
        // starts the proof, and the one after it ends it.
        assert!(!floor.observe(read(41, 300, 50), 0));
        assert_eq!(floor.get(), 0);
        assert!(!floor.observe(read(51, 350, 60), 0));
        assert_eq!(floor.get(), 300);
        // A read from 0 that finds the floor right changes nothing.
        assert!(!floor.observe(read(61, 300, 70), 0));
        assert_eq!(floor.get(), 300);
        // A read without a low (an empty queue, a role that may not read the sequence) shows
        // nothing under the floor and proves nothing.
        let blind = Front {
            low: None,
            ..read(71, 0, 80)
        };
        assert!(!floor.observe(blind, 0));
        assert_eq!(floor.get(), 300);
        floor.observe(read(81, 900, 90), 300);
        assert_eq!(floor.get(), 300, "the pending read is still the one at 300");
        floor.observe(read(91, 950, 100), 300);
        assert_eq!(floor.get(), 900);
    }
}
