//! The [`Queue`] implementation of [`MemoryQueue`].

use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::handle::{Measured, MemoryQueue, SpaceWaiter};
use super::lanes::FULL_RETRY_AFTER;
use crate::error::{Error, ErrorKind};
use crate::event::{Event, Timestamp};
use crate::limits::Overflow;
use crate::queue::{Completed, Dead, DeadLetter, Delivery, Lease, Nack, PushReport, Queue};
use crate::runtime::deadline_after;

#[async_trait]
impl Queue for MemoryQueue {
    async fn push_batch(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        // Reject and Wait take a batch whole or not at all, so that a refused or cancelled push
        // (a webhook that timed out while waiting) leaves nothing half-accepted behind.
        let whole = matches!(self.overflow, Overflow::Reject | Overflow::Wait);
        // Hashed and measured once, before the lock: the lock is held for the bookkeeping only.
        let sized: Vec<Measured> = events
            .iter()
            .map(|e| Measured {
                key: self.keys.key(e),
                bytes: crate::queue::event_bytes(e),
                lane: self.lane_key(e),
            })
            .collect();
        // Reject: when the push first finds no room, it waits for some until this deadline.
        let mut deadline: Option<Instant> = None;
        // Counted in while this push waits for room, so that pulls wake it.
        let mut waiter: Option<SpaceWaiter<'_>> = None;
        // The pulls that freed room (`space_epoch`) as of this push's last look for room.
        let mut seen_epoch = 0;
        // Whether each event's id is remembered, looked up once per look for room.
        let mut remembered: Vec<bool> = Vec::with_capacity(sized.len());
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            let pass_on = {
                let mut inner = self.lock();
                if inner.closed {
                    return Err(Error::new(ErrorKind::QueueClosed, "queue is closed"));
                }
                let now = Instant::now();
                inner.dedup.expire(now);
                inner.remembered(&sized, &mut remembered);
                let (fresh, fresh_bytes) = if whole {
                    inner.fresh(&sized, &remembered, self.capacity, self.capacity_bytes)
                } else {
                    (0, 0)
                };
                // A batch larger than the whole buffer goes in once the buffer is empty (else a
                // platform would be refused, or kept waiting, forever): the bound is then exceeded
                // by at most one batch, which the body limit bounds. A batch of redeliveries only
                // always "fits".
                let fits = (inner.waiting + fresh <= self.capacity
                    && inner.waiting_bytes.saturating_add(fresh_bytes) <= self.capacity_bytes)
                    || inner.waiting == 0
                    || fresh == 0;
                if !whole || fits {
                    let mut report = PushReport::default();
                    self.admit(&mut inner, events, &sized, &remembered, &mut report, whole);
                    self.publish_depth(&inner);
                    if report.accepted > 0 {
                        self.available.notify_one();
                    }
                    if waiter.take().is_some() {
                        // Woken alone (see `wake_producers`): the next waiting push looks for
                        // room in turn.
                        drop(inner);
                        self.wake_producers();
                    }
                    return Ok(report);
                }
                // A waiting push that finds no room since a pull freed some passes the wake-up
                // on (see `wake_producers`): a push behind it may fit where it does not. Once per
                // pull each, so two that do not fit do not wake each other round and round.
                let epoch = self.space_epoch.load(AtomicOrdering::Relaxed);
                let pass_on = waiter.is_some()
                    && epoch != seen_epoch
                    && self.space_waiters.load(AtomicOrdering::Relaxed) > 1;
                seen_epoch = epoch;
                // A push that does not wait yet may start to only while the pushes waiting hold
                // less than their share of the byte budget (one alone always may).
                let no_room_to_wait = waiter.is_none() && {
                    let held = self.space_waiting_bytes.load(AtomicOrdering::Relaxed);
                    held > 0 && held.saturating_add(fresh_bytes) > self.reject_wait_bytes
                };
                if self.overflow == Overflow::Reject
                    && (no_room_to_wait
                        || now
                            >= *deadline
                                .get_or_insert_with(|| deadline_after(now, self.reject_wait)))
                {
                    tracing::debug!(
                        waiting = inner.waiting,
                        waiting_bytes = inner.waiting_bytes,
                        capacity = self.capacity,
                        capacity_bytes = self.capacity_bytes,
                        batch = fresh,
                        batch_bytes = fresh_bytes,
                        waited = ?deadline.map(|due| {
                            self.reject_wait.saturating_sub(due.saturating_duration_since(now))
                        }),
                        share_full = no_room_to_wait,
                        "queue full; refusing the batch"
                    );
                    if waiter.take().is_some() {
                        // It may have taken a wake-up meant for a push that fits.
                        drop(inner);
                        self.wake_producers();
                    }
                    return Err(Error::new(ErrorKind::QueueFull, "queue is full")
                        .with_retry_after(FULL_RETRY_AFTER));
                }
                space.as_mut().enable();
                if waiter.is_none() {
                    waiter = Some(SpaceWaiter::new(self, fresh_bytes));
                }
                pass_on
            };
            if pass_on {
                // Registered again (at the back), so the wake-up goes to the next in line.
                self.space.notify_one();
            }
            match deadline {
                Some(due) => {
                    tokio::select! {
                        () = &mut space => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                None => space.await,
            }
        }
    }

    async fn pull(&self, max: usize) -> Result<Vec<Delivery>, Error> {
        if max == 0 {
            return Ok(Vec::new());
        }
        loop {
            let available = self.available.notified();
            tokio::pin!(available);
            let next_due = {
                let mut inner = self.lock();
                if inner.closed {
                    return Ok(Vec::new());
                }
                let next_due = inner.promote_due(Instant::now());
                let out = inner.take(max);
                if !out.is_empty() {
                    // Room freed: each push waiting may pass the wake-up on once more.
                    self.space_epoch.fetch_add(1, AtomicOrdering::Relaxed);
                    self.publish_depth(&inner);
                    // Another puller may take the rest.
                    self.wake_if_ready(inner);
                    self.wake_producers();
                    return Ok(out);
                }
                available.as_mut().enable();
                next_due
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        () = &mut available => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                None => available.await,
            }
        }
    }

    async fn ack(&self, leases: &[Lease]) -> Result<Completed, Error> {
        Ok(self.acknowledge(leases))
    }

    fn ack_now(&self, leases: &[Lease]) -> Option<Completed> {
        Some(self.acknowledge(leases))
    }

    async fn nack(&self, mut nacks: Vec<Nack>) -> Result<Completed, Error> {
        let mut done = Completed::default();
        let now = Instant::now();
        // Readied for their wait before the lock (a copy each): see `Inner::requeue`.
        for nack in &mut nacks {
            nack.event.shed_caches();
        }
        let mut inner = self.lock();
        for nack in nacks {
            let Some(l) = inner.take_lease(nack.lease) else {
                done.stale += 1;
                continue;
            };
            done.applied += 1;
            let attempts = l.attempts;
            inner.requeue(
                l,
                nack.event,
                attempts,
                Some(deadline_after(now, nack.delay)),
            );
        }
        self.publish_depth(&inner);
        drop(inner);
        // A puller may need to wake earlier for the new due time.
        self.available.notify_one();
        Ok(self.count(done))
    }

    async fn dead(&self, mut dead: Vec<Dead>) -> Result<Vec<DeadLetter>, Error> {
        let mut out = Vec::with_capacity(dead.len());
        let mut stale = 0;
        // Kept in memory: without what the handler's reads cached in it, its block's siblings
        // or its request's body (a copy each, made before the lock). Not kept (no room for dead
        // letters): handed back as they are.
        if self.dead_capacity > 0 {
            for d in &mut dead {
                d.event.shed_caches();
            }
        }
        let mut inner = self.lock();
        for d in dead {
            let Some(l) = inner.take_lease(d.lease) else {
                stale += 1;
                continue;
            };
            inner.finish_lease(l.lane);
            let letter = DeadLetter {
                event: d.event,
                attempts: l.attempts,
                error: d.error,
                failed_at: Timestamp::now(),
            };
            if inner.dead.len() >= self.dead_capacity
                && (inner.dead.pop_front().is_some() || self.dead_capacity == 0)
            {
                inner.dead_evicted += 1;
            }
            if self.dead_capacity > 0 {
                inner.dead.push_back(letter.clone());
            }
            out.push(letter);
        }
        self.wake_if_ready(inner);
        self.count(Completed {
            applied: out.len(),
            stale,
        });
        Ok(out)
    }

    async fn release(&self, mut deliveries: Vec<Delivery>) -> Result<Completed, Error> {
        let mut done = Completed::default();
        // Readied for their wait before the lock (a copy each): see `Inner::requeue`.
        for d in &mut deliveries {
            d.event.shed_caches();
        }
        let mut inner = self.lock();
        // Returned to the front one by one: go backwards to keep their order.
        for d in deliveries.into_iter().rev() {
            let Some(l) = inner.take_lease(d.lease) else {
                done.stale += 1;
                continue;
            };
            done.applied += 1;
            let attempts = l.attempts.saturating_sub(1);
            inner.requeue(l, d.event, attempts, None);
        }
        self.publish_depth(&inner);
        self.wake_if_ready(inner);
        Ok(self.count(done))
    }

    async fn extend_lease(&self, leases: &[Lease], _by: Duration) -> Result<Completed, Error> {
        // Memory leases do not expire; report which ones are still held.
        let inner = self.lock();
        let mut done = Completed::default();
        for lease in leases {
            let held = usize::try_from(lease.id)
                .ok()
                .and_then(|id| inner.leases.get(id))
                .is_some_and(|l| l.token == lease.token);
            if held {
                done.applied += 1;
            } else {
                done.stale += 1;
            }
        }
        Ok(done)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        Ok(self.lock().dead.iter().take(limit).cloned().collect())
    }

    async fn redrive(&self, max: usize) -> Result<usize, Error> {
        let mut inner = self.lock();
        let n = max.min(inner.dead.len());
        for _ in 0..n {
            if let Some(letter) = inner.dead.pop_front() {
                // Re-driven events bypass deduplication and the capacity check: they were
                // accepted once already.
                let bytes = crate::queue::event_bytes(&letter.event);
                let lane = self.lane_key(&letter.event);
                inner.enqueue(letter.event, bytes, lane, self.overflow);
            }
        }
        self.publish_depth(&inner);
        self.wake_if_ready(inner);
        Ok(n)
    }

    fn dead_letters_evicted(&self) -> u64 {
        self.lock().dead_evicted
    }

    fn close(&self) {
        self.lock().closed = true;
        self.available.notify_waiters();
        self.available.notify_one();
        self.space.notify_waiters();
    }

    fn depth(&self) -> u64 {
        self.depth.load(AtomicOrdering::Relaxed)
    }
}
