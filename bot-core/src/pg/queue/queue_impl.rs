//! The [`Queue`] implementation of [`PgQueue`]: push, pull, complete, extend, dead letters.

use std::collections::HashMap;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::types::Type;

use super::handle::PgQueue;
use super::sql::{
    ACK, DEAD, DEAD_LETTERS, EXTEND, I8S, NACK, PUSH, PUSH_UNORDERED, REDRIVE, TEXTS, millis,
    split, storable_error,
};
use crate::error::{Error, ErrorKind};
use crate::event::{Event, Timestamp};
use crate::pg::error;
use crate::queue::{Completed, Dead, DeadLetter, Delivery, Lease, Nack, PushReport, Queue};

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
        let mut platforms = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut conversations = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        for event in &events {
            payloads.push(serde_json::to_string(event).map_err(|e| {
                Error::new(ErrorKind::Queue, "postgres: event does not serialise").with_source(e)
            })?);
            platforms.push(event.platform.as_str());
            ids.push(event.id.as_str());
            conversations.push(event.conversation.as_str());
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
        platforms.truncate(admitted);
        ids.truncate(admitted);
        conversations.truncate(admitted);
        payloads.truncate(admitted);
        let sent_bytes: u64 = sizes[..admitted].iter().map(|&b| b as u64).sum();
        let n = admitted;
        let push = async {
            let (conn, _) = inner
                .pool
                .get_measured(ErrorKind::Queue, "pushing events")
                .await
                .map_err(|e| error::unavailable("pushing events", inner.retry_after, e))?;
            let map = |e: tokio_postgres::Error| {
                let unavailable = error::is_unavailable(&e);
                let e = error::db(ErrorKind::Queue, "pushing events", e);
                if unavailable {
                    error::unavailable("pushing events", inner.retry_after, e)
                } else {
                    e
                }
            };
            let row = conn
                .query_typed_one(
                    if inner.ordered { PUSH } else { PUSH_UNORDERED },
                    &[
                        (&platforms, TEXTS),
                        (&ids, TEXTS),
                        (&conversations, TEXTS),
                        (&payloads, TEXTS),
                    ],
                )
                .await
                .map_err(map)?;
            Ok::<i64, Error>(row.get(0))
        };
        let inserted = match tokio::time::timeout(inner.push_timeout, push).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(error::unavailable(
                    "pushing events",
                    inner.retry_after,
                    Error::new(
                        ErrorKind::Timeout,
                        format!("no commit within {:?}", inner.push_timeout),
                    ),
                ));
            }
        };
        let accepted = usize::try_from(inserted).unwrap_or(0).min(n);
        // Duplicates add nothing: count the bytes of the accepted share of the batch.
        inner.count(
            &inner.counters.pushed_bytes,
            sent_bytes * accepted as u64 / n as u64,
        );
        inner.count(&inner.counters.pushed, accepted as u64);
        inner.count(&inner.counters.duplicates, (n - accepted) as u64);
        if accepted > 0 {
            inner.wakeups.wake.notify_one();
            inner.wakeups.notify_wanted.notify_one();
        }
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
        let held: Vec<Delivery> = inner
            .buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
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

    fn depth(&self) -> u64 {
        let s = &self.inner.stats;
        s.ready.load(AtomicOrdering::Relaxed) + s.retrying.load(AtomicOrdering::Relaxed)
    }
}
