//! The waiting events, their per-conversation lanes, the delayed retries and the leases.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use foldhash::HashMap;
use slab::Slab;
use tokio::time::Instant;

use crate::event::Event;
use crate::limits::Overflow;
use crate::queue::dedup::{Dedup, DedupKey, FingerprintMap, KeyHasher};
use crate::queue::{DeadLetter, Delivery, Lease};

/// How long a producer refused by a full queue is told to wait.
pub(super) const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Emptied lane buffers kept for reuse at most.
pub(super) const MAX_SPARE_LANES: usize = 4096;

/// The largest lane buffer kept for reuse, in events: most lanes hold one event at a time, and
/// a larger buffer kept idle would cost its whole capacity (an [`Entry`] is 32 bytes: the
/// event's handle and its counts).
pub(super) const SPARE_LANE_CAPACITY: usize = 4;

/// The lane of a lease in unordered mode (there are no lanes then).
pub(super) const NO_LANE: usize = usize::MAX;

/// A conversation's lane key: the fingerprint of its (platform, conversation), no strings
/// cloned, hashed again or compared per event ([`KeyHasher::lane`] says what a collision does).
pub(super) type LaneKey = u64;

/// A waiting event.
pub(super) struct Entry {
    pub(super) event: Event,
    /// What it counts against the byte capacity ([`crate::queue::event_bytes`]).
    pub(super) bytes: usize,
    /// Attempts made so far.
    pub(super) attempts: u32,
    /// Arrival order, unique.
    pub(super) seq: u64,
}

/// The waiting events of one conversation (ordered mode).
pub(super) struct Lane {
    pub(super) key: LaneKey,
    pub(super) pending: VecDeque<Entry>,
    pub(super) leased: bool,
    /// Waiting for a retry: nothing of this lane is handed out until then.
    pub(super) blocked: bool,
    /// In `ready` already.
    pub(super) queued: bool,
}

/// What the queue keeps of a leased event: the event itself travels with the delivery.
pub(super) struct Leased {
    pub(super) lane: usize,
    pub(super) attempts: u32,
    pub(super) seq: u64,
    pub(super) token: u64,
}

pub(super) enum Delayed {
    /// An ordered lane whose head waits for its retry.
    WakeLane(usize),
    /// An unordered event waiting for its retry.
    Entry(Box<Entry>),
}

pub(super) struct Inner {
    pub(super) ordered: bool,
    /// Ordered mode: lanes by conversation, and the lanes that can hand out their head.
    pub(super) lane_ids: FingerprintMap<usize>,
    /// Makes lane keys (the queue's hasher, seeded once).
    pub(super) lane_keys: KeyHasher,
    pub(super) lanes: Slab<Lane>,
    pub(super) ready: VecDeque<usize>,
    /// Emptied lane buffers kept for reuse, so that lanes coming and going do not allocate.
    pub(super) spare: Vec<VecDeque<Entry>>,
    /// Unordered mode: one line in arrival order (retries go to the front when due).
    pub(super) fifo: VecDeque<Entry>,
    pub(super) delayed: BinaryHeap<Reverse<(Instant, u64)>>,
    pub(super) delayed_items: HashMap<u64, Delayed>,
    pub(super) leases: Slab<Leased>,
    /// Events waiting: in lanes, in the line and in `delayed`.
    pub(super) waiting: usize,
    /// Their bytes, as [`crate::queue::event_bytes`] counts them.
    pub(super) waiting_bytes: usize,
    /// Ordered mode with [`Overflow::DropOldest`]: arrival order of waiting first attempts.
    pub(super) arrival: VecDeque<(u64, usize)>,
    pub(super) dedup: Dedup,
    pub(super) dead: VecDeque<DeadLetter>,
    pub(super) dead_evicted: u64,
    pub(super) closed: bool,
    pub(super) next_seq: u64,
    pub(super) next_token: u64,
}

impl Inner {
    /// Whether each event of a batch (by its key) is remembered, into `out` (cleared first).
    pub(super) fn remembered(&self, sized: &[(DedupKey, usize)], out: &mut Vec<bool>) {
        out.clear();
        out.extend(sized.iter().map(|&(key, _)| self.dedup.contains(key)));
    }

    /// How many events of a batch (their keys and bytes, and whether each is remembered, as
    /// [`Inner::remembered`] says) are neither remembered nor repeated within the batch, and
    /// their bytes.
    pub(super) fn fresh(
        &self,
        sized: &[(DedupKey, usize)],
        remembered: &[bool],
        capacity: usize,
        capacity_bytes: usize,
    ) -> (usize, usize) {
        let (mut upper, mut upper_bytes) = (0, 0usize);
        for (&(_, bytes), &remembered) in sized.iter().zip(remembered) {
            if !remembered {
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
        for (&(key, bytes), &remembered) in sized.iter().zip(remembered) {
            if !remembered && distinct.insert(key) {
                fresh += 1;
                fresh_bytes = fresh_bytes.saturating_add(bytes);
            }
        }
        (fresh, fresh_bytes)
    }

    pub(super) fn has_ready(&self) -> bool {
        if self.ordered {
            !self.ready.is_empty()
        } else {
            !self.fifo.is_empty()
        }
    }

    pub(super) fn enqueue(&mut self, event: Event, bytes: usize, overflow: Overflow) {
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
        let key = self.lane_keys.lane(&entry.event);
        let lanes = &mut self.lanes;
        let spare = &mut self.spare;
        let id = *self.lane_ids.entry(key).or_insert_with(|| {
            lanes.insert(Lane {
                key,
                // Room for the one event most lanes ever hold; it grows when a second comes.
                pending: spare.pop().unwrap_or_else(|| VecDeque::with_capacity(1)),
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
    pub(super) fn compact_arrival(&mut self) {
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
    pub(super) fn evict_oldest(&mut self) -> bool {
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

    pub(super) fn remove_lane_if_idle(&mut self, id: usize) {
        if let Some(lane) = self.lanes.get(id)
            && lane.pending.is_empty()
            && !lane.leased
            && !lane.blocked
            && !lane.queued
        {
            let lane = self.lanes.remove(id);
            self.lane_ids.remove(&lane.key);
            self.recycle(lane.pending);
        }
    }

    /// Keeps an emptied lane buffer for the next new lane, if it is small and the spares are
    /// not full; frees it otherwise.
    fn recycle(&mut self, buffer: VecDeque<Entry>) {
        debug_assert!(buffer.is_empty());
        if self.spare.len() < MAX_SPARE_LANES
            && (1..=SPARE_LANE_CAPACITY).contains(&buffer.capacity())
        {
            self.spare.push(buffer);
        }
    }

    /// Puts lane `id` on the ready list if it can hand out an event.
    pub(super) fn mark_ready(&mut self, id: usize) {
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
    pub(super) fn promote_due(&mut self, now: Instant) -> Option<Instant> {
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

    pub(super) fn lease(&mut self, entry: Entry, lane: usize, out: &mut Vec<Delivery>) {
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

    pub(super) fn take(&mut self, max: usize) -> Vec<Delivery> {
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
            // A lane whose only event runs keeps no buffer for the seconds its handler may take:
            // an empty buffer of four entries is 1.8 KB held per running event.
            let emptied = lane
                .pending
                .is_empty()
                .then(|| std::mem::take(&mut lane.pending));
            if let Some(buffer) = emptied {
                self.recycle(buffer);
            }
            self.lease(entry, id, &mut out);
        }
        out
    }

    /// Removes a lease if `lease` still names it.
    pub(super) fn take_lease(&mut self, lease: Lease) -> Option<Leased> {
        let id = usize::try_from(lease.id).ok()?;
        match self.leases.get(id) {
            Some(l) if l.token == lease.token => Some(self.leases.remove(id)),
            _ => None,
        }
    }

    /// The lane of a finished lease may hand out its next event.
    pub(super) fn finish_lease(&mut self, lane: usize) {
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
    /// (`delay` none) or after `delay`, holding its conversation meanwhile. The caller readied
    /// the event for its wait first, before taking the lock ([`Event::shed_caches`], a copy of
    /// its data that shares nothing), so that nothing it no longer needs stays alive uncounted.
    pub(super) fn requeue(
        &mut self,
        leased: Leased,
        event: Event,
        attempts: u32,
        delay: Option<Instant>,
    ) {
        // Counted again, without a capacity check: the event was accepted once already.
        let bytes = crate::queue::event_bytes(&event);
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
        if lane.pending.capacity() == 0 {
            // Its buffer went when the event was leased: room for this one, as a new lane has.
            lane.pending = self
                .spare
                .pop()
                .unwrap_or_else(|| VecDeque::with_capacity(1));
        }
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
