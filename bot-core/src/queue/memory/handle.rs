//! [`MemoryQueue`]: its construction, its figures and the admission of pushes.

use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use foldhash::HashMap;
use slab::Slab;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::lanes::{Inner, LaneKey};
use crate::event::Event;
use crate::limits::{Limits, Ordering, Overflow};
use crate::queue::dedup::{Dedup, DedupKey, FingerprintMap, KeyHasher};
use crate::queue::{Completed, PushReport, Queue};

/// The [`Overflow::Reject`] pushes waiting for room hold at most this share of
/// [`Limits::queue_capacity_bytes`] between them (an eighth: 2 MiB by default, about a hundred
/// webhooks of 10 LINE text events); past it a push is refused at once, as with no wait.
pub(super) const REJECT_WAIT_SHARE: usize = 8;

/// What a push works out for each of its events before it takes the lock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Measured {
    /// The fingerprint of its (platform, id), for deduplication.
    pub(super) key: DedupKey,
    /// What it counts against the byte capacity ([`crate::queue::event_bytes`]).
    pub(super) bytes: usize,
    /// Its lane's key ([`KeyHasher::lane`]; 0 in an unordered queue, which has no lanes).
    pub(super) lane: LaneKey,
}

/// The embedded default [`Queue`]: a bounded buffer in this process.
///
/// With [`Ordering::PerConversation`], events of one conversation wait in a lane that hands out
/// its next event only when the previous one is acknowledged or dead-lettered, so a busy
/// conversation never blocks the others (barring a collision of two conversations' 64-bit lane
/// fingerprints, about one chance in 4×10^9 among 100,000 conversations waiting at once, which
/// makes them one lane: in order, nothing lost). Lanes are removed as soon as they are empty, so memory
/// follows the events waiting, not the conversations ever seen. With [`Ordering::Unordered`]
/// there are no lanes: one line in arrival order. Leases do not expire: the only consumer is this
/// process's supervisor.
pub struct MemoryQueue {
    pub(super) inner: Mutex<Inner>,
    /// Fingerprints of (platform, id), made before the lock is taken.
    pub(super) keys: KeyHasher,
    /// [`Ordering::PerConversation`]: events wait in per-conversation lanes (the same
    /// `limits.ordering` as [`Inner::ordered`], which the lock guards).
    pub(super) ordered: bool,
    pub(super) capacity: usize,
    pub(super) capacity_bytes: usize,
    pub(super) overflow: Overflow,
    /// [`Limits::reject_wait`]: how long a [`Overflow::Reject`] push waits for room.
    pub(super) reject_wait: Duration,
    pub(super) dead_capacity: usize,
    /// Wakes pullers when events become available.
    pub(super) available: Notify,
    /// Wakes producers waiting for room ([`Overflow::Wait`], or [`Overflow::Reject`] within
    /// its `reject_wait`) when room frees up.
    pub(super) space: Notify,
    /// Producers waiting for room: a pull wakes them only when there are some. Counted up under
    /// the lock (by a push that found no room), so a pull that frees room after it, under the
    /// same lock, sees it.
    pub(super) space_waiters: AtomicUsize,
    /// The bytes of the batches of the pushes waiting for room (as
    /// [`crate::queue::event_bytes`] counts them); only [`Overflow::Reject`] reads it (its
    /// share), and a queue has one policy.
    pub(super) space_waiting_bytes: AtomicUsize,
    /// How many bytes of batches may wait for room at once ([`REJECT_WAIT_SHARE`]): a push that
    /// would go past it is refused at once, so that the requests waiting stay few past
    /// saturation.
    pub(super) reject_wait_bytes: usize,
    /// Pulls that freed room so far (changed under the lock): a waiting push that finds no
    /// room passes its wake-up on once per pull at most.
    pub(super) space_epoch: AtomicU64,
    pub(super) depth: AtomicU64,
    pub(super) stale: AtomicU64,
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
    /// `overflow`, `reject_wait`, `ordering`, the dedup settings and `dead_letter_capacity`).
    pub fn new(limits: &Limits) -> Self {
        let keys = KeyHasher::new();
        Self {
            inner: Mutex::new(Inner {
                ordered: limits.ordering == Ordering::PerConversation,
                lane_ids: FingerprintMap::default(),
                lane_keys: keys.clone(),
                lanes: Slab::new(),
                ready: VecDeque::new(),
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
            keys,
            ordered: limits.ordering == Ordering::PerConversation,
            capacity: limits.queue_capacity,
            capacity_bytes: limits.queue_capacity_bytes,
            overflow: limits.overflow,
            reject_wait: limits.reject_wait,
            dead_capacity: limits.dead_letter_capacity,
            available: Notify::new(),
            space: Notify::new(),
            space_waiters: AtomicUsize::new(0),
            space_waiting_bytes: AtomicUsize::new(0),
            reject_wait_bytes: (limits.queue_capacity_bytes / REJECT_WAIT_SHARE).max(1),
            space_epoch: AtomicU64::new(0),
            depth: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
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

    /// The key of `event`'s lane, made outside the lock (0 when the queue is unordered).
    pub(super) fn lane_key(&self, event: &Event) -> LaneKey {
        if self.ordered {
            self.keys.lane(event)
        } else {
            0
        }
    }

    pub(super) fn publish_depth(&self, inner: &Inner) {
        self.depth
            .store(inner.waiting as u64, AtomicOrdering::Relaxed);
    }

    pub(super) fn count(&self, done: Completed) -> Completed {
        if done.stale > 0 {
            self.stale
                .fetch_add(done.stale as u64, AtomicOrdering::Relaxed);
        }
        done
    }

    /// Admits `events` (with their keys and bytes, `sized`): all of them when room was checked
    /// for the whole batch (`checked`), otherwise one by one under [`Overflow::DropNewest`] or
    /// [`Overflow::DropOldest`].
    ///
    /// `remembered` says, for each event, whether its id was remembered when the push looked for
    /// room ([`Inner::remembered`]), before any of its own is: an insert below may turn the
    /// dedup set's generation and forget the oldest ids, and a redelivery the room was reckoned
    /// without must not become new halfway through.
    pub(super) fn admit(
        &self,
        inner: &mut Inner,
        events: Vec<Event>,
        sized: &[Measured],
        remembered: &[bool],
        report: &mut PushReport,
        checked: bool,
    ) {
        let now = Instant::now();
        let since = inner.dedup.turns();
        for ((event, &Measured { key, bytes, lane }), &remembered) in
            events.into_iter().zip(sized).zip(remembered)
        {
            if remembered {
                report.duplicates += 1;
                continue;
            }
            if checked {
                // Room was checked for the whole batch: the event goes in unless an earlier one
                // of this batch had its id, which the insert itself tells (one lookup).
                if !inner.dedup.insert_new(key, now, since) {
                    report.duplicates += 1;
                    continue;
                }
                inner.enqueue(event, bytes, lane, self.overflow);
                report.accepted += 1;
                continue;
            }
            // Also an id repeated within this batch, remembered by its first.
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
            // Not remembered (looked up just above): the insert adds it.
            inner.dedup.insert_new(key, now, since);
            inner.enqueue(event, bytes, lane, self.overflow);
            report.accepted += 1;
        }
    }

    /// Completes `leases` successfully (both [`Queue::ack`] and [`Queue::ack_now`]): it takes
    /// the lock and never waits for anything else.
    pub(super) fn acknowledge(&self, leases: &[crate::queue::Lease]) -> Completed {
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
        self.count(done)
    }

    /// Whether one more event of `bytes` fits by count and by bytes.
    pub(super) fn room_for(&self, inner: &Inner, bytes: usize) -> bool {
        inner.waiting < self.capacity
            && inner.waiting_bytes.saturating_add(bytes) <= self.capacity_bytes
    }

    /// Wakes the producer that has waited longest for room, if any waits (after a pull freed
    /// some): one, not all, so that a pull past saturation does not send every waiting push
    /// through the lock at once. The wake-up goes down the line: a woken push that gets room
    /// wakes the next; one that finds no room waits again, at the back, and wakes the next
    /// (once per pull, see `space_epoch`); one refused at its deadline wakes the next; one
    /// dropped or timed out before it looked passes it on (`Notify::notify_one`'s permit goes
    /// to the next waiter).
    pub(super) fn wake_producers(&self) {
        if self.space_waiters.load(AtomicOrdering::Relaxed) > 0 {
            self.space.notify_one();
        }
    }

    pub(super) fn wake_if_ready(&self, inner: std::sync::MutexGuard<'_, Inner>) {
        let wake = inner.has_ready();
        drop(inner);
        if wake {
            self.available.notify_one();
        }
    }
}

/// One producer counted in [`MemoryQueue::space_waiters`] (and its batch's bytes in
/// [`MemoryQueue::space_waiting_bytes`]) while it waits for room; counted out when it stops
/// waiting, whether it got room, gave up or was dropped (a webhook whose client went away).
pub(super) struct SpaceWaiter<'a> {
    queue: &'a MemoryQueue,
    bytes: usize,
}

impl<'a> SpaceWaiter<'a> {
    /// Counts a waiting producer in, with its batch's `bytes`; call it under the queue's lock.
    pub(super) fn new(queue: &'a MemoryQueue, bytes: usize) -> Self {
        queue.space_waiters.fetch_add(1, AtomicOrdering::Relaxed);
        queue
            .space_waiting_bytes
            .fetch_add(bytes, AtomicOrdering::Relaxed);
        Self { queue, bytes }
    }
}

impl Drop for SpaceWaiter<'_> {
    fn drop(&mut self) {
        self.queue
            .space_waiting_bytes
            .fetch_sub(self.bytes, AtomicOrdering::Relaxed);
        self.queue
            .space_waiters
            .fetch_sub(1, AtomicOrdering::Relaxed);
    }
}
