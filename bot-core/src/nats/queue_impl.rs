//! The [`Queue`] implementation of [`JetStreamQueue`]: push, pull, complete, dead letters.

use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use async_nats::jetstream::message::AckKind;
use async_trait::async_trait;

use super::handle::JetStreamQueue;
use super::{dead, publish};
use crate::error::{Error, ErrorKind};
use crate::event::{Event, Timestamp};
use crate::queue::{Completed, Dead, DeadLetter, Delivery, Lease, Nack, PushReport, Queue};

#[async_trait]
impl Queue for JetStreamQueue {
    async fn push_batch(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        if self.inner.closed.is_cancelled() {
            return Err(Error::new(ErrorKind::QueueClosed, "queue is closed"));
        }
        if events.is_empty() {
            return Ok(PushReport::default());
        }
        publish::push(&self.inner, events).await
    }

    async fn pull(&self, max: usize) -> Result<Vec<Delivery>, Error> {
        let inner = &self.inner;
        if max == 0 {
            return Ok(Vec::new());
        }
        // Someone pulls again after `stop_pulling`: own partitions for them again.
        if inner.stopping.swap(false, AtomicOrdering::AcqRel) {
            inner.owner_wake.notify_one();
        }
        loop {
            let delivered = inner.delivered.notified();
            tokio::pin!(delivered);
            delivered.as_mut().enable();
            if inner.closed.is_cancelled() {
                return Ok(Vec::new());
            }
            let batch = inner.board().take(max);
            if !batch.is_empty() {
                return Ok(batch);
            }
            delivered.await;
        }
    }

    async fn ack(&self, leases: &[Lease]) -> Result<Completed, Error> {
        let inner = &self.inner;
        let live: Vec<_> = {
            let board = inner.board();
            leases
                .iter()
                .filter_map(|&l| board.acker(l).cloned().map(|a| (l, a)))
                .collect()
        };
        // Sent before the leases end: a partition is given up only once its leases ended, so
        // its acknowledgements are on their way before its consumer is deleted.
        for (_, ack) in &live {
            inner.send_ack(ack, AckKind::Ack).await;
        }
        let applied = {
            let mut board = inner.board();
            live.iter()
                .filter(|(l, _)| board.finish(*l).is_some())
                .count()
        };
        if applied > 0 {
            // The conversations' next events are heads now.
            inner.delivered.notify_waiters();
        }
        inner.count(&inner.counters.acked, applied as u64);
        Ok(self.completed(leases.len(), applied))
    }

    async fn nack(&self, nacks: Vec<Nack>) -> Result<Completed, Error> {
        let inner = &self.inner;
        let taken: Vec<_> = {
            let mut board = inner.board();
            nacks
                .iter()
                .filter_map(|n| board.retry(n.lease).map(|t| (t, n.delay)))
                .collect()
        };
        for (t, delay) in &taken {
            // JetStream redelivers it after the delay; its conversation waits for it.
            inner.send_ack(&t.acker, AckKind::Nak(Some(*delay))).await;
        }
        inner.count(&inner.counters.nacked, taken.len() as u64);
        Ok(self.completed(nacks.len(), taken.len()))
    }

    async fn dead(&self, dead: Vec<Dead>) -> Result<Vec<DeadLetter>, Error> {
        let inner = &self.inner;
        let mut letters = Vec::with_capacity(dead.len());
        let asked = dead.len();
        for d in dead {
            let Some(attempts) = inner.board().attempt(d.lease) else {
                continue;
            };
            let letter = DeadLetter {
                event: d.event,
                attempts,
                error: d.error,
                failed_at: Timestamp::now(),
            };
            // Stored before the acknowledgement: a crash in between leaves the event to run
            // again (and maybe a second letter), never neither.
            dead::store(inner, &letter).await?;
            let ack = inner.board().acker(d.lease).cloned();
            if let Some(ack) = ack {
                inner.send_ack(&ack, AckKind::Ack).await;
                if inner.board().finish(d.lease).is_some() {
                    inner.delivered.notify_waiters();
                    letters.push(letter);
                }
            }
        }
        inner.count(&inner.counters.dead, letters.len() as u64);
        let _ = self.completed(asked, letters.len());
        Ok(letters)
    }

    async fn release(&self, deliveries: Vec<Delivery>) -> Result<Completed, Error> {
        let inner = &self.inner;
        let n = deliveries.len();
        let applied = {
            let mut board = inner.board();
            deliveries
                .into_iter()
                .filter(|d| board.release(d.lease, d.event.clone()))
                .count()
        };
        if applied > 0 {
            inner.delivered.notify_waiters();
        }
        inner.count(&inner.counters.released, applied as u64);
        Ok(self.completed(n, applied))
    }

    async fn stop_pulling(&self) {
        let inner = &self.inner;
        inner.stopping.store(true, AtomicOrdering::Release);
        inner.owner_wake.notify_one();
    }

    async fn extend_lease(&self, leases: &[Lease], _by: Duration) -> Result<Completed, Error> {
        // `+WPI` restarts the message's AckWait; leases themselves last while the partition
        // is owned.
        let live: Vec<_> = {
            let board = self.inner.board();
            leases
                .iter()
                .filter_map(|&l| board.acker(l).cloned())
                .collect()
        };
        for ack in &live {
            self.inner.send_ack(ack, AckKind::Progress).await;
        }
        let applied = live.len();
        Ok(self.completed(leases.len(), applied))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        Ok(dead::read(&self.inner, limit)
            .await?
            .into_iter()
            .map(|(_, letter)| letter)
            .collect())
    }

    async fn redrive(&self, max: usize) -> Result<usize, Error> {
        dead::redrive(&self.inner, max).await
    }

    fn lease_duration(&self) -> Option<Duration> {
        Some(self.inner.settings.ack_wait)
    }

    fn close(&self) {
        self.inner.closed.cancel();
        self.inner.delivered.notify_waiters();
    }

    fn depth(&self) -> u64 {
        let held = self.inner.board().waiting() as u64;
        held.max(self.inner.stream_depth.load(AtomicOrdering::Relaxed))
    }
}

impl JetStreamQueue {
    fn completed(&self, asked: usize, applied: usize) -> Completed {
        let stale = asked - applied;
        self.inner.count(&self.inner.counters.stale, stale as u64);
        Completed { applied, stale }
    }
}
