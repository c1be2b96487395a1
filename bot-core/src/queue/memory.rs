//! The in-memory queue: bounded, with per-conversation lanes, no server.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use async_trait::async_trait;
use foldhash::HashMap;
use slab::Slab;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::dedup::{Dedup, DedupKey, KeyHasher};
use super::{Completed, Dead, DeadLetter, Delivery, Lease, Nack, PushReport, Queue};
use crate::error::{Error, ErrorKind};
use crate::event::{ConversationId, Event, Platform, Timestamp};
use crate::limits::{Limits, Ordering, Overflow};
use crate::runtime::deadline_after;

/// How long a producer refused by a full queue is told to wait.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Emptied lane buffers kept for reuse at most.
const MAX_SPARE_LANES: usize = 4096;

/// The lane of a lease in unordered mode (there are no lanes then).
const NO_LANE: usize = usize::MAX;

type LaneKey = (Platform, ConversationId);

/// A waiting event.
struct Entry {
    event: Event,
    /// What it counts against the byte capacity ([`super::event_bytes`]).
    bytes: usize,
    /// Attempts made so far.
    attempts: u32,
    /// Arrival order, unique.
    seq: u64,
}

/// The waiting events of one conversation (ordered mode).
struct Lane {
    key: LaneKey,
    pending: VecDeque<Entry>,
    leased: bool,
    /// Waiting for a retry: nothing of this lane is handed out until then.
    blocked: bool,
    /// In `ready` already.
    queued: bool,
}

/// What the queue keeps of a leased event: the event itself travels with the delivery.
struct Leased {
    lane: usize,
    attempts: u32,
    seq: u64,
    token: u64,
}

enum Delayed {
    /// An ordered lane whose head waits for its retry.
    WakeLane(usize),
    /// An unordered event waiting for its retry.
    Entry(Box<Entry>),
}

struct Inner {
    ordered: bool,
    /// Ordered mode: lanes by conversation, and the lanes that can hand out their head.
    lane_ids: HashMap<LaneKey, usize>,
    lanes: Slab<Lane>,
    ready: VecDeque<usize>,
    /// Emptied lane buffers kept for reuse, so that lanes coming and going do not allocate.
    spare: Vec<VecDeque<Entry>>,
    /// Unordered mode: one line in arrival order (retries go to the front when due).
    fifo: VecDeque<Entry>,
    delayed: BinaryHeap<Reverse<(Instant, u64)>>,
    delayed_items: HashMap<u64, Delayed>,
    leases: Slab<Leased>,
    /// Events waiting: in lanes, in the line and in `delayed`.
    waiting: usize,
    /// Their bytes, as [`super::event_bytes`] counts them.
    waiting_bytes: usize,
    /// Ordered mode with [`Overflow::DropOldest`]: arrival order of waiting first attempts.
    arrival: VecDeque<(u64, usize)>,
    dedup: Dedup,
    dead: VecDeque<DeadLetter>,
    dead_evicted: u64,
    closed: bool,
    next_seq: u64,
    next_token: u64,
}

/// The embedded default [`Queue`]: a bounded buffer in this process.
///
/// With [`Ordering::PerConversation`], events of one conversation wait in a lane that hands out
/// its next event only when the previous one is acknowledged or dead-lettered, so a busy
/// conversation never blocks the others. Lanes are removed as soon as they are empty, so memory
/// follows the events waiting, not the conversations ever seen. With [`Ordering::Unordered`]
/// there are no lanes: one line in arrival order. Leases do not expire: the only consumer is this
/// process's supervisor.
pub struct MemoryQueue {
    inner: Mutex<Inner>,
    /// Fingerprints of (platform, id), made before the lock is taken.
    keys: KeyHasher,
    capacity: usize,
    capacity_bytes: usize,
    overflow: Overflow,
    dead_capacity: usize,
    /// Wakes pullers when events become available.
    available: Notify,
    /// Wakes producers blocked by [`Overflow::Wait`] when room frees up.
    space: Notify,
    depth: AtomicU64,
    stale: AtomicU64,
}

impl fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

impl MemoryQueue {
    /// A queue bounded and configured by `limits` (`queue_capacity`, `queue_capacity_bytes`,
    /// `overflow`, `ordering`, the dedup settings and `dead_letter_capacity`).
    pub fn new(limits: &Limits) -> Self {
        Self {
            inner: Mutex::new(Inner {
                ordered: limits.ordering == Ordering::PerConversation,
                lane_ids: HashMap::default(),
                lanes: Slab::new(),
                ready: VecDeque::new(),
                spare: Vec::new(),
                fifo: VecDeque::new(),
                delayed: BinaryHeap::new(),
                delayed_items: HashMap::default(),
                leases: Slab::new(),
                waiting: 0,
                waiting_bytes: 0,
                arrival: VecDeque::new(),
                dedup: Dedup::new(limits.dedup_ttl, limits.dedup_capacity),
                dead: VecDeque::new(),
                dead_evicted: 0,
                closed: false,
                next_seq: 0,
                next_token: 0,
            }),
            keys: KeyHasher::new(),
            capacity: limits.queue_capacity,
            capacity_bytes: limits.queue_capacity_bytes,
            overflow: limits.overflow,
            dead_capacity: limits.dead_letter_capacity,
            available: Notify::new(),
            space: Notify::new(),
            depth: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update below leaves the structure consistent before it can panic (allocation
        // failure aside), so a poisoned lock still guards good data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Completions that named a lease no longer held.
    pub fn stale_completions(&self) -> u64 {
        self.stale.load(AtomicOrdering::Relaxed)
    }

    /// Events leased and not yet completed.
    pub fn leased(&self) -> usize {
        self.lock().leases.len()
    }

    /// Bytes of the events waiting, as counted against [`Limits::queue_capacity_bytes`].
    pub fn waiting_bytes(&self) -> usize {
        self.lock().waiting_bytes
    }

    /// Conversation lanes currently held in memory (for tests and diagnostics).
    pub fn lanes(&self) -> usize {
        self.lock().lanes.len()
    }

    fn publish_depth(&self, inner: &Inner) {
        self.depth
            .store(inner.waiting as u64, AtomicOrdering::Relaxed);
    }

    fn count(&self, done: Completed) -> Completed {
        if done.stale > 0 {
            self.stale
                .fetch_add(done.stale as u64, AtomicOrdering::Relaxed);
        }
        done
    }

    /// Admits `events` (with their keys and bytes, `sized`): all of them when room was checked
    /// for the whole batch (`checked`), otherwise one by one under [`Overflow::DropNewest`] or
    /// [`Overflow::DropOldest`].
    fn admit(
        &self,
        inner: &mut Inner,
        events: Vec<Event>,
        sized: &[(DedupKey, usize)],
        report: &mut PushReport,
        checked: bool,
    ) {
        let now = Instant::now();
        for (event, &(key, bytes)) in events.into_iter().zip(sized) {
            if inner.dedup.contains(key) {
                report.duplicates += 1;
                continue;
            }
            if !checked && !self.room_for(inner, bytes) {
                // Evict by count and by bytes until the event fits; an event larger than the
                // whole byte capacity still goes into an empty queue (else it never would).
                let mut fits = false;
                if self.overflow == Overflow::DropOldest {
                    let mut evicted = false;
                    while inner.evict_oldest() {
                        evicted = true;
                        report.evicted_oldest += 1;
                        if self.room_for(inner, bytes) {
                            fits = true;
                            break;
                        }
                    }
                    // Every first attempt is gone and retries still fill the room: events were
                    // evicted for this one, so it goes in rather than being lost as well (the
                    // queue overshoots by this event once; with nothing left to evict, the next
                    // one is dropped).
                    fits |= evicted;
                }
                if !fits && inner.waiting > 0 {
                    // A dropped event is not remembered: a redelivery of it is welcome.
                    report.dropped_newest += 1;
                    continue;
                }
            }
            inner.dedup.insert_new(key, now);
            inner.enqueue(event, bytes, self.overflow);
            report.accepted += 1;
        }
    }

    /// Whether one more event of `bytes` fits by count and by bytes.
    fn room_for(&self, inner: &Inner, bytes: usize) -> bool {
        inner.waiting < self.capacity
            && inner.waiting_bytes.saturating_add(bytes) <= self.capacity_bytes
    }

    fn wake_if_ready(&self, inner: std::sync::MutexGuard<'_, Inner>) {
        let wake = inner.has_ready();
        drop(inner);
        if wake {
            self.available.notify_one();
        }
    }
}

impl Inner {
    /// How many events of a batch (their keys and bytes) are neither remembered nor repeated
    /// within the batch, and their bytes.
    fn fresh(
        &self,
        sized: &[(DedupKey, usize)],
        capacity: usize,
        capacity_bytes: usize,
    ) -> (usize, usize) {
        let (mut upper, mut upper_bytes) = (0, 0usize);
        for &(key, bytes) in sized {
            if !self.dedup.contains(key) {
                upper += 1;
                upper_bytes = upper_bytes.saturating_add(bytes);
            }
        }
        if self.waiting + upper <= capacity
            && self.waiting_bytes.saturating_add(upper_bytes) <= capacity_bytes
        {
            return (upper, upper_bytes);
        }
        // Repeats within one batch are rare; only pay for finding them when it matters.
        let mut distinct = foldhash::HashSet::default();
        let (mut fresh, mut fresh_bytes) = (0, 0usize);
        for &(key, bytes) in sized {
            if !self.dedup.contains(key) && distinct.insert(key) {
                fresh += 1;
                fresh_bytes = fresh_bytes.saturating_add(bytes);
            }
        }
        (fresh, fresh_bytes)
    }

    fn has_ready(&self) -> bool {
        if self.ordered {
            !self.ready.is_empty()
        } else {
            !self.fifo.is_empty()
        }
    }

    fn enqueue(&mut self, event: Event, bytes: usize, overflow: Overflow) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.waiting += 1;
        self.waiting_bytes += bytes;
        let entry = Entry {
            event,
            bytes,
            attempts: 0,
            seq,
        };
        if !self.ordered {
            self.fifo.push_back(entry);
            return;
        }
        let key = (
            entry.event.platform.clone(),
            entry.event.conversation.clone(),
        );
        let lanes = &mut self.lanes;
        let spare = &mut self.spare;
        let id = *self.lane_ids.entry(key).or_insert_with_key(|key| {
            lanes.insert(Lane {
                key: key.clone(),
                pending: spare.pop().unwrap_or_default(),
                leased: false,
                blocked: false,
                queued: false,
            })
        });
        let lane = &mut self.lanes[id];
        lane.pending.push_back(entry);
        if !lane.blocked && !lane.leased && !lane.queued {
            lane.queued = true;
            self.ready.push_back(id);
        }
        if overflow == Overflow::DropOldest {
            self.arrival.push_back((seq, id));
            if self.arrival.len() > 2 * self.waiting + 1024 {
                self.compact_arrival();
            }
        }
    }

    /// Forgets arrival records of events no longer waiting, so the log stays proportional to the
    /// buffer (amortised: it runs when the log is twice the buffer).
    fn compact_arrival(&mut self) {
        let lanes = &self.lanes;
        // Lanes are sorted by arrival (retries return to the front, older than the rest).
        self.arrival.retain(|(seq, id)| {
            lanes.get(*id).is_some_and(|l| {
                l.pending
                    .binary_search_by_key(seq, |e| e.seq)
                    .is_ok_and(|i| l.pending[i].attempts == 0)
            })
        });
    }

    /// Removes the oldest waiting first attempt. Returns false if there is none.
    fn evict_oldest(&mut self) -> bool {
        if !self.ordered {
            // Retries sit at the front once due; the oldest first attempt is the first after them.
            let Some(i) = self.fifo.iter().position(|e| e.attempts == 0) else {
                return false;
            };
            if let Some(e) = self.fifo.remove(i) {
                self.waiting -= 1;
                self.waiting_bytes -= e.bytes;
            }
            return true;
        }
        while let Some((seq, id)) = self.arrival.pop_front() {
            let Some(lane) = self.lanes.get_mut(id) else {
                continue;
            };
            // A reused lane id holds other sequence numbers, so this finds nothing there; an
            // event waiting for its retry is not a first attempt and is never evicted.
            if let Ok(i) = lane.pending.binary_search_by_key(&seq, |e| e.seq)
                && lane.pending[i].attempts == 0
            {
                if let Some(e) = lane.pending.remove(i) {
                    self.waiting -= 1;
                    self.waiting_bytes -= e.bytes;
                }
                self.remove_lane_if_idle(id);
                return true;
            }
        }
        false
    }

    fn remove_lane_if_idle(&mut self, id: usize) {
        if let Some(lane) = self.lanes.get(id)
            && lane.pending.is_empty()
            && !lane.leased
            && !lane.blocked
            && !lane.queued
        {
            let lane = self.lanes.remove(id);
            self.lane_ids.remove(&lane.key);
            if self.spare.len() < MAX_SPARE_LANES && lane.pending.capacity() <= 64 {
                self.spare.push(lane.pending);
            }
        }
    }

    /// Puts lane `id` on the ready list if it can hand out an event.
    fn mark_ready(&mut self, id: usize) {
        if let Some(lane) = self.lanes.get_mut(id)
            && !lane.blocked
            && !lane.leased
            && !lane.queued
            && !lane.pending.is_empty()
        {
            lane.queued = true;
            self.ready.push_back(id);
        }
    }

    /// Moves retries whose time has come back into line. Returns the next due time.
    fn promote_due(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((due, id))) = self.delayed.peek().copied() {
            if due > now {
                return Some(due);
            }
            self.delayed.pop();
            match self.delayed_items.remove(&id) {
                Some(Delayed::WakeLane(lane)) => {
                    if let Some(l) = self.lanes.get_mut(lane) {
                        l.blocked = false;
                    }
                    self.mark_ready(lane);
                    self.remove_lane_if_idle(lane);
                }
                Some(Delayed::Entry(entry)) => self.fifo.push_front(*entry),
                None => {}
            }
        }
        None
    }

    fn lease(&mut self, entry: Entry, lane: usize, out: &mut Vec<Delivery>) {
        let token = self.next_token;
        self.next_token += 1;
        let attempts = entry.attempts + 1;
        let id = self.leases.insert(Leased {
            lane,
            attempts,
            seq: entry.seq,
            token,
        });
        self.waiting -= 1;
        self.waiting_bytes -= entry.bytes;
        out.push(Delivery {
            lease: Lease {
                id: id as u64,
                token,
            },
            event: entry.event,
            attempt: attempts,
        });
    }

    fn take(&mut self, max: usize) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(max.min(self.waiting));
        if !self.ordered {
            while out.len() < max {
                let Some(entry) = self.fifo.pop_front() else {
                    break;
                };
                self.lease(entry, NO_LANE, &mut out);
            }
            return out;
        }
        while out.len() < max {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(id) else {
                continue;
            };
            lane.queued = false;
            if lane.blocked || lane.leased {
                continue;
            }
            let Some(entry) = lane.pending.pop_front() else {
                self.remove_lane_if_idle(id);
                continue;
            };
            lane.leased = true;
            self.lease(entry, id, &mut out);
        }
        out
    }

    /// Removes a lease if `lease` still names it.
    fn take_lease(&mut self, lease: Lease) -> Option<Leased> {
        let id = usize::try_from(lease.id).ok()?;
        match self.leases.get(id) {
            Some(l) if l.token == lease.token => Some(self.leases.remove(id)),
            _ => None,
        }
    }

    /// The lane of a finished lease may hand out its next event.
    fn finish_lease(&mut self, lane: usize) {
        if lane == NO_LANE {
            return;
        }
        if let Some(l) = self.lanes.get_mut(lane) {
            l.leased = false;
        }
        self.mark_ready(lane);
        self.remove_lane_if_idle(lane);
    }

    /// Puts a leased event back at the head of its line, to be handed out again at once
    /// (`delay` none) or after `delay`, holding its conversation meanwhile.
    fn requeue(&mut self, leased: Leased, event: Event, attempts: u32, delay: Option<Instant>) {
        // Counted again, without a capacity check: the event was accepted once already.
        let bytes = super::event_bytes(&event);
        let entry = Entry {
            event,
            bytes,
            attempts,
            seq: leased.seq,
        };
        self.waiting += 1;
        self.waiting_bytes += bytes;
        if !self.ordered {
            match delay {
                None => self.fifo.push_front(entry),
                Some(due) => {
                    let id = self.next_seq;
                    self.next_seq += 1;
                    self.delayed_items
                        .insert(id, Delayed::Entry(Box::new(entry)));
                    self.delayed.push(Reverse((due, id)));
                }
            }
            return;
        }
        let Some(lane) = self.lanes.get_mut(leased.lane) else {
            // Cannot happen: a lane with a lease is never removed. Keep the event regardless.
            self.waiting -= 1;
            self.waiting_bytes -= bytes;
            self.enqueue(entry.event, bytes, Overflow::Reject);
            return;
        };
        lane.leased = false;
        lane.pending.push_front(entry);
        match delay {
            None => self.mark_ready(leased.lane),
            Some(due) => {
                lane.blocked = true;
                let id = self.next_seq;
                self.next_seq += 1;
                self.delayed_items
                    .insert(id, Delayed::WakeLane(leased.lane));
                self.delayed.push(Reverse((due, id)));
            }
        }
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn push_batch(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        // Reject and Wait take a batch whole or not at all, so that a refused or cancelled push
        // (a webhook that timed out while waiting) leaves nothing half-accepted behind.
        let whole = matches!(self.overflow, Overflow::Reject | Overflow::Wait);
        // Hashed and measured once, before the lock: the lock is held for the bookkeeping only.
        let sized: Vec<(DedupKey, usize)> = events
            .iter()
            .map(|e| (self.keys.key(e), super::event_bytes(e)))
            .collect();
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            {
                let mut inner = self.lock();
                if inner.closed {
                    return Err(Error::new(ErrorKind::QueueClosed, "queue is closed"));
                }
                inner.dedup.expire(Instant::now());
                let (fresh, fresh_bytes) = if whole {
                    inner.fresh(&sized, self.capacity, self.capacity_bytes)
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
                    self.admit(&mut inner, events, &sized, &mut report, whole);
                    self.publish_depth(&inner);
                    if report.accepted > 0 {
                        self.available.notify_one();
                    }
                    return Ok(report);
                }
                if self.overflow == Overflow::Reject {
                    tracing::debug!(
                        waiting = inner.waiting,
                        waiting_bytes = inner.waiting_bytes,
                        capacity = self.capacity,
                        capacity_bytes = self.capacity_bytes,
                        batch = fresh,
                        batch_bytes = fresh_bytes,
                        "queue full; refusing the batch"
                    );
                    return Err(Error::new(ErrorKind::QueueFull, "queue is full")
                        .with_retry_after(FULL_RETRY_AFTER));
                }
                space.as_mut().enable();
            }
            space.await;
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
                    self.publish_depth(&inner);
                    // Another puller may take the rest.
                    self.wake_if_ready(inner);
                    if self.overflow == Overflow::Wait {
                        self.space.notify_waiters();
                    }
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
        let mut done = Completed::default();
        let mut inner = self.lock();
        for &lease in leases {
            match inner.take_lease(lease) {
                Some(l) => {
                    inner.finish_lease(l.lane);
                    done.applied += 1;
                }
                None => done.stale += 1,
            }
        }
        self.wake_if_ready(inner);
        Ok(self.count(done))
    }

    async fn nack(&self, nacks: Vec<Nack>) -> Result<Completed, Error> {
        let mut done = Completed::default();
        let now = Instant::now();
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

    async fn dead(&self, dead: Vec<Dead>) -> Result<Vec<DeadLetter>, Error> {
        let mut out = Vec::with_capacity(dead.len());
        let mut stale = 0;
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

    async fn release(&self, deliveries: Vec<Delivery>) -> Result<Completed, Error> {
        let mut done = Completed::default();
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
                let bytes = super::event_bytes(&letter.event);
                inner.enqueue(letter.event, bytes, self.overflow);
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests spawn producers and pullers directly
mod tests {
    use super::*;
    use crate::event::Platform;

    fn limits(capacity: usize, overflow: Overflow, ordering: Ordering) -> Limits {
        Limits {
            queue_capacity: capacity,
            overflow,
            ordering,
            ..Limits::default()
        }
    }

    fn ev(conv: &str, id: &str) -> Event {
        Event::text(Platform::TEST, conv, id).with_id(id)
    }

    fn ids(d: &[Delivery]) -> Vec<String> {
        d.iter().map(|d| d.event.id.to_string()).collect()
    }

    #[tokio::test]
    async fn ordered_lanes_hand_out_one_event_per_conversation() {
        let q = MemoryQueue::new(&limits(100, Overflow::Reject, Ordering::PerConversation));
        q.push_batch(vec![ev("a", "a1"), ev("a", "a2"), ev("b", "b1")])
            .await
            .unwrap();
        let first = q.pull(10).await.unwrap();
        assert_eq!(ids(&first), ["a1", "b1"]);
        // a2 waits for a1
        q.ack(&[first[1].lease]).await.unwrap();
        assert_eq!(q.depth(), 1);
        q.ack(&[first[0].lease]).await.unwrap();
        let second = q.pull(10).await.unwrap();
        assert_eq!(ids(&second), ["a2"]);
        q.ack(&[second[0].lease]).await.unwrap();
        assert_eq!(q.lanes(), 0, "idle lanes are evicted");
        assert_eq!(q.leased(), 0);
    }

    #[tokio::test]
    async fn unordered_hands_out_a_conversation_in_parallel() {
        let q = MemoryQueue::new(&limits(100, Overflow::Reject, Ordering::Unordered));
        q.push_batch(vec![ev("a", "a1"), ev("a", "a2"), ev("a", "a3")])
            .await
            .unwrap();
        assert_eq!(ids(&q.pull(10).await.unwrap()), ["a1", "a2", "a3"]);
    }

    #[tokio::test]
    async fn reject_refuses_the_whole_batch() {
        let q = MemoryQueue::new(&limits(3, Overflow::Reject, Ordering::PerConversation));
        q.push_batch(vec![ev("a", "1"), ev("a", "2")])
            .await
            .unwrap();
        let e = q
            .push_batch(vec![ev("b", "3"), ev("b", "4")])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::QueueFull);
        assert_eq!(e.retry_after(), Some(FULL_RETRY_AFTER));
        assert_eq!(q.depth(), 2, "nothing of the refused batch was added");
        // The refused events were not remembered: the platform's redelivery is accepted.
        let r = q.push_batch(vec![ev("b", "3")]).await.unwrap();
        assert_eq!(r.accepted, 1);
    }

    #[tokio::test]
    async fn drop_newest_and_drop_oldest_drop_the_expected_events() {
        let q = MemoryQueue::new(&limits(2, Overflow::DropNewest, Ordering::Unordered));
        let r = q
            .push_batch(vec![ev("a", "1"), ev("b", "2"), ev("c", "3"), ev("d", "4")])
            .await
            .unwrap();
        assert_eq!((r.accepted, r.dropped_newest), (2, 2));
        assert_eq!(ids(&q.pull(10).await.unwrap()), ["1", "2"]);

        let q = MemoryQueue::new(&limits(2, Overflow::DropOldest, Ordering::PerConversation));
        let r = q
            .push_batch(vec![ev("a", "1"), ev("a", "2"), ev("b", "3"), ev("c", "4")])
            .await
            .unwrap();
        assert_eq!((r.accepted, r.evicted_oldest), (4, 2));
        let mut got = ids(&q.pull(10).await.unwrap());
        got.sort();
        assert_eq!(got, ["3", "4"]);
        assert_eq!(q.lanes(), 2, "the emptied lane of a was evicted");
    }

    #[tokio::test(start_paused = true)]
    async fn drop_oldest_never_evicts_an_event_waiting_for_its_retry() {
        let q = MemoryQueue::new(&limits(2, Overflow::DropOldest, Ordering::PerConversation));
        q.push_batch(vec![ev("a", "a1")]).await.unwrap();
        let d = q.pull(1).await.unwrap();
        q.nack(vec![Nack {
            lease: d[0].lease,
            delay: Duration::from_secs(5),
            error: "down".into(),
            event: d[0].event.clone(),
        }])
        .await
        .unwrap();
        // a1 waits for its retry; b1 fills the buffer; c1 must evict b1, not a1.
        let r = q
            .push_batch(vec![ev("b", "b1"), ev("c", "c1")])
            .await
            .unwrap();
        assert_eq!((r.accepted, r.evicted_oldest), (2, 1));
        assert_eq!(q.depth(), 2);
        assert_eq!(ids(&q.pull(10).await.unwrap()), ["c1"]);
        // The retry comes once its delay is over.
        assert_eq!(ids(&q.pull(10).await.unwrap()), ["a1"]);
    }

    #[tokio::test]
    async fn duplicates_are_skipped_and_counted() {
        let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
        let r = q
            .push_batch(vec![ev("a", "1"), ev("a", "1")])
            .await
            .unwrap();
        assert_eq!((r.accepted, r.duplicates), (1, 1));
        let r = q.push_batch(vec![ev("a", "1")]).await.unwrap();
        assert_eq!((r.accepted, r.duplicates), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn nack_delays_the_event_and_blocks_its_conversation() {
        let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
        q.push_batch(vec![ev("a", "1"), ev("a", "2"), ev("b", "3")])
            .await
            .unwrap();
        let d = q.pull(10).await.unwrap();
        assert_eq!(ids(&d), ["1", "3"]);
        q.ack(&[d[1].lease]).await.unwrap();
        q.nack(vec![Nack {
            lease: d[0].lease,
            delay: Duration::from_secs(5),
            error: "boom".into(),
            event: d[0].event.clone(),
        }])
        .await
        .unwrap();
        let start = Instant::now();
        let again = q.pull(10).await.unwrap();
        assert_eq!(ids(&again), ["1"], "the retry comes before a2");
        assert_eq!(again[0].attempt, 2);
        assert!(start.elapsed() >= Duration::from_secs(5));
        // Stale completion of the first lease is ignored and counted.
        let c = q.ack(&[d[0].lease]).await.unwrap();
        assert_eq!(c.stale, 1);
        assert_eq!(q.stale_completions(), 1);
    }

    #[tokio::test]
    async fn dead_letters_are_bounded_and_redrivable() {
        let l = Limits {
            dead_letter_capacity: 1,
            ..limits(10, Overflow::Reject, Ordering::PerConversation)
        };
        let q = MemoryQueue::new(&l);
        q.push_batch(vec![ev("a", "1"), ev("b", "2")])
            .await
            .unwrap();
        let d = q.pull(10).await.unwrap();
        q.dead(
            d.iter()
                .map(|d| Dead {
                    lease: d.lease,
                    error: "x".into(),
                    event: d.event.clone(),
                })
                .collect(),
        )
        .await
        .unwrap();
        assert_eq!(q.dead_letters(10).await.unwrap().len(), 1);
        assert_eq!(q.dead_letters_evicted(), 1);
        assert_eq!(q.redrive(10).await.unwrap(), 1);
        assert_eq!(q.pull(10).await.unwrap()[0].attempt, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_blocks_the_producer_until_room() {
        let q = std::sync::Arc::new(MemoryQueue::new(&limits(
            1,
            Overflow::Wait,
            Ordering::Unordered,
        )));
        q.push_batch(vec![ev("a", "1")]).await.unwrap();
        let q2 = q.clone();
        let mut producer =
            tokio::spawn(async move { q2.push_batch(vec![ev("a", "2")]).await.unwrap() });
        // The producer cannot finish while the buffer is full.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut producer)
                .await
                .is_err()
        );
        let d = q.pull(1).await.unwrap();
        assert_eq!(ids(&d), ["1"]);
        let r = producer.await.unwrap();
        assert_eq!(r.accepted, 1);
        assert_eq!(ids(&q.pull(1).await.unwrap()), ["2"]);
    }

    #[tokio::test]
    async fn release_returns_events_without_counting_an_attempt() {
        let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
        q.push_batch(vec![ev("a", "1")]).await.unwrap();
        let d = q.pull(1).await.unwrap();
        q.release(d).await.unwrap();
        let d = q.pull(1).await.unwrap();
        assert_eq!(d[0].attempt, 1);
        assert_eq!(q.lanes(), 1);
    }

    /// An event whose text is `len` bytes long.
    fn sized(conv: &str, id: &str, len: usize) -> Event {
        Event::text(Platform::TEST, conv, "x".repeat(len)).with_id(id)
    }

    fn bytes_limits(bytes: usize, overflow: Overflow, ordering: Ordering) -> Limits {
        Limits {
            queue_capacity_bytes: bytes,
            ..limits(1000, overflow, ordering)
        }
    }

    #[tokio::test]
    async fn reject_refuses_by_bytes_although_the_count_allows() {
        let one = crate::queue::event_bytes(&sized("a", "1", 5000));
        // Room for two such events by bytes, for a thousand by count.
        let q = MemoryQueue::new(&bytes_limits(
            2 * one + one / 2,
            Overflow::Reject,
            Ordering::PerConversation,
        ));
        q.push_batch(vec![sized("a", "1", 5000), sized("b", "2", 5000)])
            .await
            .unwrap();
        assert_eq!(q.waiting_bytes(), 2 * one);
        let e = q.push_batch(vec![sized("c", "3", 5000)]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::QueueFull);
        assert_eq!(e.retry_after(), Some(FULL_RETRY_AFTER));
        assert_eq!(q.depth(), 2, "nothing of the refused batch was added");
        // A small event still fits in what is left.
        let small = sized("c", "4", 10);
        assert!(crate::queue::event_bytes(&small) < one / 2);
        assert_eq!(q.push_batch(vec![small]).await.unwrap().accepted, 1);
        // Pulling frees the bytes.
        let d = q.pull(10).await.unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(q.waiting_bytes(), 0);
        q.release(d).await.unwrap();
        assert_eq!(
            q.waiting_bytes(),
            2 * one + crate::queue::event_bytes(&sized("c", "4", 10))
        );
    }

    #[tokio::test]
    async fn drop_oldest_evicts_by_bytes_and_counts_each_eviction() {
        let small = crate::queue::event_bytes(&sized("a", "1", 100));
        let q = MemoryQueue::new(&bytes_limits(
            3 * small,
            Overflow::DropOldest,
            Ordering::Unordered,
        ));
        let r = q
            .push_batch(vec![
                sized("a", "1", 100),
                sized("b", "2", 100),
                sized("c", "3", 100),
            ])
            .await
            .unwrap();
        assert_eq!((r.accepted, r.evicted_oldest), (3, 0));
        // An event of twice the size needs two of the oldest to go.
        let big = sized("d", "4", 100 + small);
        assert!(crate::queue::event_bytes(&big) <= 2 * small);
        let r = q.push_batch(vec![big]).await.unwrap();
        assert_eq!((r.accepted, r.evicted_oldest), (1, 2));
        assert_eq!(ids(&q.pull(10).await.unwrap()), ["3", "4"]);
    }

    #[tokio::test(start_paused = true)]
    async fn drop_oldest_never_loses_the_new_event_after_evicting_for_it() {
        let small = crate::queue::event_bytes(&sized("a", "r1", 100));
        let q = MemoryQueue::new(&bytes_limits(
            3 * small,
            Overflow::DropOldest,
            Ordering::Unordered,
        ));
        // Two events wait for their retries (never evicted), one first attempt waits.
        q.push_batch(vec![sized("a", "r1", 100), sized("b", "r2", 100)])
            .await
            .unwrap();
        let d = q.pull(2).await.unwrap();
        let nacks = d
            .iter()
            .map(|d| Nack {
                lease: d.lease,
                delay: Duration::from_secs(5),
                error: "down".into(),
                event: d.event.clone(),
            })
            .collect();
        q.nack(nacks).await.unwrap();
        q.push_batch(vec![sized("c", "f1", 100)]).await.unwrap();
        // A new event twice as large: evicting f1 is not enough room, but f1 is gone for it, so
        // it goes in rather than being lost as well.
        let big = sized("d", "big", 100 + small);
        let r = q.push_batch(vec![big]).await.unwrap();
        assert_eq!((r.accepted, r.evicted_oldest, r.dropped_newest), (1, 1, 0));
        assert_eq!(ids(&q.pull(10).await.unwrap()), ["big"]);
    }

    #[tokio::test]
    async fn drop_newest_drops_by_bytes_but_an_empty_queue_takes_an_oversized_event() {
        let small = crate::queue::event_bytes(&sized("a", "1", 100));
        let q = MemoryQueue::new(&bytes_limits(
            2 * small,
            Overflow::DropNewest,
            Ordering::PerConversation,
        ));
        let r = q
            .push_batch(vec![
                sized("a", "1", 100),
                sized("b", "2", 100),
                sized("c", "3", 100),
            ])
            .await
            .unwrap();
        assert_eq!((r.accepted, r.dropped_newest), (2, 1));
        let d = q.pull(10).await.unwrap();
        assert_eq!(ids(&d), ["1", "2"]);
        // Larger than the whole budget: refused while others wait would be forever, so it goes in.
        let r = q
            .push_batch(vec![sized("d", "4", 10 * small)])
            .await
            .unwrap();
        assert_eq!(r.accepted, 1);
    }

    #[test]
    fn event_bytes_count_the_content() {
        let base = crate::queue::event_bytes(&sized("a", "1", 0));
        assert_eq!(crate::queue::event_bytes(&sized("a", "1", 500)), base + 500);
        let raw = sized("a", "1", 0).with_raw(serde_json::json!({"k": "v".repeat(300)}));
        assert!(crate::queue::event_bytes(&raw) >= base + 300);
    }

    #[tokio::test]
    async fn close_wakes_pullers_and_refuses_pushes() {
        let q = std::sync::Arc::new(MemoryQueue::new(&Limits::default()));
        let q2 = q.clone();
        let puller = tokio::spawn(async move { q2.pull(5).await.unwrap() });
        tokio::task::yield_now().await;
        q.close();
        assert!(puller.await.unwrap().is_empty());
        let e = q.push_batch(vec![ev("a", "1")]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::QueueClosed);
    }
}
