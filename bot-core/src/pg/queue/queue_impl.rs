//! The [`Queue`] implementation of [`PgQueue`]: push, pull, complete, extend, dead letters.

use std::collections::HashMap;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::types::Type;

use super::handle::PgQueue;
use super::push::Part;
use super::sql::{
    ACK, DEAD, DEAD_LETTERS, EXTEND, I8S, NACK, REDRIVE, TEXTS, millis, split, storable_error,
};
use crate::error::{Error, ErrorKind};
use crate::event::{Event, Timestamp};
use crate::pg::error;
use crate::queue::{Completed, Dead, DeadLetter, Delivery, Lease, Nack, PushReport, Queue};

/// How long a shutdown's report waits for a count of the queue ([`Queue::depth_now`]).
const DEPTH_NOW_WAIT: Duration = Duration::from_secs(1);

#[async_trait]
impl Queue for PgQueue {
    async fn push_batch(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        let inner = &self.inner;
        if inner.wakeups.closed.is_cancelled() {
            return Err(Error::new(ErrorKind::QueueClosed, "queue is closed"));
        }
        if events.is_empty() {
            return Ok(PushReport::default());
        }
        let n = events.len();
        let mut payloads = Vec::with_capacity(n);
        for event in &events {
            payloads.push(serde_json::to_string(event).map_err(|e| {
                Error::new(ErrorKind::Queue, "postgres: event does not serialise").with_source(e)
            })?);
        }
        let sizes: Vec<usize> = payloads.iter().map(String::len).collect();
        let admitted = inner.room_for(&sizes).await?;
        let dropped = n - admitted;
        if admitted == 0 {
            return Ok(PushReport {
                dropped_newest: dropped,
                ..PushReport::default()
            });
        }
        // Under `DropNewest` the events beyond the room are left out (and not remembered, so a
        // redelivery of them is welcome).
        let mut events = events;
        events.truncate(admitted);
        payloads.truncate(admitted);
        let bytes: usize = sizes[..admitted].iter().sum();
        let n = admitted;
        // Written by the queue's writers, with the pushes that wait beside it (`push.rs`), which
        // also count what they wrote.
        let (done, written) = tokio::sync::oneshot::channel();
        let joined = inner.push_line.join(Part {
            events,
            payloads,
            bytes,
            done,
        });
        if joined.is_err() {
            return Err(Error::new(ErrorKind::QueueClosed, "queue is closed"));
        }
        let timed_out = || {
            error::unavailable(
                "pushing events",
                inner.retry_after,
                Error::new(
                    ErrorKind::Timeout,
                    format!("no commit within {:?}", inner.push_timeout),
                ),
            )
        };
        // The writer bounds its statement by the same time-out; this bounds the wait in line.
        // A push that gave up here may still commit; the platform's retry of it is then a
        // duplicate, as with any answer lost after a commit.
        let inserted = match tokio::time::timeout(inner.push_timeout, written).await {
            Ok(Ok(r)) => r?,
            // The writers stopped (the queue closed) without writing it.
            Ok(Err(_)) => return Err(Error::new(ErrorKind::QueueClosed, "queue is closed")),
            Err(_) => return Err(timed_out()),
        };
        let accepted = inserted.min(n);
        // The writer woke the claimer and told the other processes (`push.rs`).
        Ok(PushReport {
            accepted,
            duplicates: n - accepted,
            dropped_newest: dropped,
            ..PushReport::default()
        })
    }

    async fn pull(&self, max: usize) -> Result<Vec<Delivery>, Error> {
        let inner = &self.inner;
        if max == 0 {
            return Ok(Vec::new());
        }
        // Someone pulls again after `stop_pulling`: claim for them.
        inner.pulls_stopped.store(false, AtomicOrdering::Release);
        loop {
            let delivered = inner.delivered.notified();
            tokio::pin!(delivered);
            delivered.as_mut().enable();
            if inner.wakeups.closed.is_cancelled() {
                return Ok(Vec::new());
            }
            let batch = inner.take_buffered(max);
            if !batch.is_empty() {
                inner.demand.store(0, AtomicOrdering::Release);
                return Ok(batch);
            }
            inner.demand.store(max, AtomicOrdering::Release);
            inner.claim_wanted.notify_one();
            delivered.await;
        }
    }

    async fn ack(&self, leases: &[Lease]) -> Result<Completed, Error> {
        if leases.is_empty() {
            return Ok(Completed::default());
        }
        let inner = &self.inner;
        let (ids, tokens) = split(leases.iter().copied());
        let n = inner
            .execute_on(
                &inner.reserved,
                ACK,
                &[(&ids, I8S), (&tokens, I8S)],
                "acknowledging events",
            )
            .await?;
        inner.count(&inner.counters.acked, n);
        inner.wakeups.wake.notify_one();
        Ok(inner.completed(leases.len(), n))
    }

    async fn nack(&self, nacks: Vec<Nack>) -> Result<Completed, Error> {
        if nacks.is_empty() {
            return Ok(Completed::default());
        }
        let inner = &self.inner;
        let (ids, tokens) = split(nacks.iter().map(|n| n.lease));
        let delays: Vec<i64> = nacks.iter().map(|n| millis(n.delay)).collect();
        let errors: Vec<String> = nacks.iter().map(|n| storable_error(&n.error)).collect();
        let n = inner
            .execute_on(
                &inner.reserved,
                NACK,
                &[
                    (&ids, I8S),
                    (&tokens, I8S),
                    (&delays, I8S),
                    (&errors, TEXTS),
                ],
                "scheduling retries",
            )
            .await?;
        inner.count(&inner.counters.nacked, n);
        Ok(inner.completed(nacks.len(), n))
    }

    async fn dead(&self, dead: Vec<Dead>) -> Result<Vec<DeadLetter>, Error> {
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let (ids, tokens) = split(dead.iter().map(|d| d.lease));
        let errors: Vec<String> = dead.iter().map(|d| storable_error(&d.error)).collect();
        let rows = inner
            .query_on(
                &inner.reserved,
                DEAD,
                &[(&ids, I8S), (&tokens, I8S), (&errors, TEXTS)],
                "dead-lettering events",
            )
            .await?;
        let asked = dead.len();
        let mut by_id: HashMap<u64, Dead> = dead.into_iter().map(|d| (d.lease.id, d)).collect();
        let mut letters = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.get::<_, i64>(0) as u64;
            if let Some(d) = by_id.remove(&id) {
                letters.push(DeadLetter {
                    event: d.event,
                    attempts: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
                    error: d.error,
                    failed_at: Timestamp::from_millis(row.get(2)),
                });
            }
        }
        inner.count(&inner.counters.dead, letters.len() as u64);
        let _ = inner.completed(asked, letters.len() as u64);
        inner.wakeups.wake.notify_one();
        Ok(letters)
    }

    async fn release(&self, deliveries: Vec<Delivery>) -> Result<Completed, Error> {
        let done = self.inner.release_leases(&deliveries).await?;
        self.inner.wakeups.notify_wanted.notify_one();
        Ok(done)
    }

    async fn extend_lease(&self, leases: &[Lease], by: Duration) -> Result<Completed, Error> {
        if leases.is_empty() {
            return Ok(Completed::default());
        }
        let inner = &self.inner;
        let (ids, tokens) = split(leases.iter().copied());
        let n = inner
            .execute_on(
                &inner.reserved,
                EXTEND,
                &[(&ids, I8S), (&tokens, I8S), (&millis(by), Type::INT8)],
                "extending leases",
            )
            .await?;
        Ok(inner.completed(leases.len(), n))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .inner
            .query(
                DEAD_LETTERS,
                &[(&limit, Type::INT8)],
                "reading dead letters",
            )
            .await?;
        let mut letters = Vec::with_capacity(rows.len());
        for row in rows {
            match serde_json::from_str::<Event>(row.get(0)) {
                Ok(event) => letters.push(DeadLetter {
                    event,
                    attempts: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
                    error: row.get(2),
                    failed_at: Timestamp::from_millis(row.get(3)),
                }),
                Err(e) => tracing::error!(error = %e, "postgres: a dead letter does not decode"),
            }
        }
        Ok(letters)
    }

    async fn redrive(&self, max: usize) -> Result<usize, Error> {
        let inner = &self.inner;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = inner
            .query(REDRIVE, &[(&max, Type::INT8)], "re-driving dead letters")
            .await?;
        let n = rows.first().map_or(0, |r| r.get::<_, i64>(0));
        let n = usize::try_from(n).unwrap_or(0);
        inner.count(&inner.counters.redriven, n as u64);
        if n > 0 {
            inner.wakeups.wake.notify_one();
            inner.wakeups.notify_wanted.notify_one();
        }
        Ok(n)
    }

    async fn stop_pulling(&self) {
        let inner = &self.inner;
        inner.pulls_stopped.store(true, AtomicOrdering::Release);
        inner.demand.store(0, AtomicOrdering::Release);
        let held = inner.drain_buffered();
        match inner.release_leases(&held).await {
            Ok(done) if done.applied > 0 => {
                inner.wakeups.notify_wanted.notify_one();
                tracing::info!(
                    released = done.applied,
                    "postgres: released claimed, unstarted events for other processes"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(
                error = %e,
                count = held.len(),
                "postgres: releasing claimed events failed; they come back when their leases expire"
            ),
        }
    }

    fn lease_duration(&self) -> Option<Duration> {
        Some(self.inner.lease)
    }

    fn close(&self) {
        self.inner.wakeups.closed.cancel();
        self.inner.delivered.notify_waiters();
    }

    /// Dead letters this process's maintenance pruned (for their age or beyond
    /// `dead_letter_capacity`).
    fn dead_letters_evicted(&self) -> u64 {
        self.inner
            .counters
            .dead_letters_pruned
            .load(AtomicOrdering::Relaxed)
    }

    /// Counts the figures now (waiting a second at most; the last count when that fails).
    async fn depth_now(&self) -> u64 {
        match tokio::time::timeout(DEPTH_NOW_WAIT, self.inner.refresh_stats()).await {
            Ok(Ok(s)) => s.ready + s.retrying,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "postgres: counting the queue failed; its last count reported");
                self.depth()
            }
            Err(_) => {
                tracing::debug!(
                    "postgres: counting the queue took too long; its last count reported"
                );
                self.depth()
            }
        }
    }

    fn depth(&self) -> u64 {
        let s = self.inner.figures();
        s.ready.load(AtomicOrdering::Relaxed) + s.retrying.load(AtomicOrdering::Relaxed)
    }
}
