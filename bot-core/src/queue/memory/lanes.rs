//! The waiting events, their per-conversation lanes, the delayed retries and the leases.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use foldhash::HashMap;
use slab::Slab;
use tokio::time::Instant;

use super::handle::Measured;
use crate::event::Event;
use crate::limits::Overflow;
use crate::queue::dedup::{Dedup, FingerprintMap, KeyHasher};
use crate::queue::{DeadLetter, Delivery, Lease};

/// How long a producer refused by a full queue is told to wait.
pub(super) const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

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

/// A lane's waiting events, oldest first (retries at the front, older than the rest).
///
/// A lane without a buffer holds its one event in itself: a new lane (most lanes hold one event
/// for their whole life) allocates nothing, and its event sits in the lane's own cache lines,
/// which the pushing thread and the dispatcher's thread hand back and forth for every event (a
/// buffer per lane, or a pool of spare buffers, was one or two cache misses more per event for
/// each of them). A second event moves both into a buffer, where the lane's events stay, as
/// before, until it runs empty; it then keeps a buffer of up to [`KEPT_BUFFER`] entries for its
/// next burst while it lives (its next events go there, even one alone: a busy conversation
/// would otherwise allocate it on the pushing thread and free it on the dispatcher's every few
/// events), and frees a larger one, after which a lone event is held in the lane again.
pub(super) struct Pending(Events);

enum Events {
    /// One event, and no buffer.
    One(Entry),
    /// Any number of events in a buffer, or none and no buffer (capacity 0).
    Many(VecDeque<Entry>),
}

impl Pending {
    /// A lane's waiting events, starting with `entry`.
    fn one(entry: Entry) -> Self {
        Self(Events::One(entry))
    }

    pub(super) fn is_empty(&self) -> bool {
        match &self.0 {
            Events::One(_) => false,
            Events::Many(events) => events.is_empty(),
        }
    }

    /// How many events wait.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        match &self.0 {
            Events::One(_) => 1,
            Events::Many(events) => events.len(),
        }
    }

    /// Room held in the lane's buffer, in events (none while it holds one event in itself).
    #[cfg(test)]
    pub(super) fn buffered_capacity(&self) -> usize {
        match &self.0 {
            Events::One(_) => 0,
            Events::Many(events) => events.capacity(),
        }
    }

    /// Adds `entry` at the back (`back`) or the front.
    fn push(&mut self, entry: Entry, back: bool) {
        if let Events::Many(events) = &mut self.0
            && events.capacity() > 0
        {
            if back {
                events.push_back(entry);
            } else {
                events.push_front(entry);
            }
            return;
        }
        self.0 = match std::mem::replace(&mut self.0, Events::Many(VecDeque::new())) {
            Events::One(first) => {
                let mut events = VecDeque::with_capacity(KEPT_BUFFER);
                let (front, behind) = if back { (first, entry) } else { (entry, first) };
                events.push_back(front);
                events.push_back(behind);
                Events::Many(events)
            }
            // Empty and without a buffer: the event is held in the lane.
            Events::Many(_) => Events::One(entry),
        };
    }

    fn push_back(&mut self, entry: Entry) {
        self.push(entry, true);
    }

    fn push_front(&mut self, entry: Entry) {
        self.push(entry, false);
    }

    fn pop_front(&mut self) -> Option<Entry> {
        match &mut self.0 {
            Events::One(_) => match std::mem::replace(&mut self.0, Events::Many(VecDeque::new())) {
                Events::One(first) => Some(first),
                Events::Many(_) => None,
            },
            Events::Many(events) => {
                let first = events.pop_front();
                self.shrink_when_empty();
                first
            }
        }
    }

    /// Frees the buffer of a lane run empty if it is larger than [`KEPT_BUFFER`].
    fn shrink_when_empty(&mut self) {
        if let Events::Many(events) = &mut self.0
            && events.is_empty()
            && events.capacity() > KEPT_BUFFER
        {
            *events = VecDeque::new();
        }
    }

    /// Where the event of arrival number `seq` waits, if it does.
    fn position(&self, seq: u64) -> Option<usize> {
        match &self.0 {
            Events::One(entry) => (entry.seq == seq).then_some(0),
            Events::Many(events) => events.binary_search_by_key(&seq, |e| e.seq).ok(),
        }
    }

    fn get(&self, i: usize) -> Option<&Entry> {
        match &self.0 {
            Events::One(entry) => (i == 0).then_some(entry),
            Events::Many(events) => events.get(i),
        }
    }

    /// The first attempt of arrival number `seq`, if it waits here (a retry is never one).
    fn is_first_attempt(&self, seq: u64) -> bool {
        self.position(seq)
            .and_then(|i| self.get(i))
            .is_some_and(|e| e.attempts == 0)
    }

    /// Takes out the event of arrival number `seq` if it is a first attempt.
    fn remove_first_attempt(&mut self, seq: u64) -> Option<Entry> {
        let i = self.position(seq)?;
        if self.get(i)?.attempts != 0 {
            return None;
        }
        match &mut self.0 {
            Events::One(_) => self.pop_front(),
            Events::Many(events) => {
                let entry = events.remove(i);
                self.shrink_when_empty();
                entry
            }
        }
    }
}

/// The largest buffer, in entries, a lane keeps once it runs empty (an [`Entry`] is 48 bytes).
pub(super) const KEPT_BUFFER: usize = 4;

/// The waiting events of one conversation (ordered mode).
pub(super) struct Lane {
    pub(super) key: LaneKey,
    pub(super) pending: Pending,
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
    /// Makes lane keys (a clone of [`MemoryQueue::keys`](super::handle::MemoryQueue), the same
    /// seed): pushes and redrives make theirs before the lock; only a requeue that finds no
    /// lane (which cannot happen) makes one here.
    pub(super) lane_keys: KeyHasher,
    pub(super) lanes: Slab<Lane>,
    pub(super) ready: VecDeque<usize>,
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
    pub(super) fn remembered(&self, sized: &[Measured], out: &mut Vec<bool>) {
        out.clear();
        out.extend(sized.iter().map(|s| self.dedup.contains(s.key)));
    }

    /// How many events of a batch (their keys and bytes, and whether each is remembered, as
    /// [`Inner::remembered`] says) are neither remembered nor repeated within the batch, and
    /// their bytes.
    pub(super) fn fresh(
        &self,
        sized: &[Measured],
        remembered: &[bool],
        capacity: usize,
        capacity_bytes: usize,
    ) -> (usize, usize) {
        let (mut upper, mut upper_bytes) = (0, 0usize);
        for (&Measured { bytes, .. }, &remembered) in sized.iter().zip(remembered) {
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
        for (&Measured { key, bytes, .. }, &remembered) in sized.iter().zip(remembered) {
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

    /// Adds `event` (of `bytes`, in the lane of key `lane`, [`KeyHasher::lane`], which an
    /// unordered queue does not read) to the waiting events.
    pub(super) fn enqueue(
        &mut self,
        event: Event,
        bytes: usize,
        lane: LaneKey,
        overflow: Overflow,
    ) {
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
        let key = lane;
        let id = match self.lane_ids.entry(key) {
            std::collections::hash_map::Entry::Occupied(id) => {
                let id = *id.get();
                self.lanes[id].pending.push_back(entry);
                id
            }
            std::collections::hash_map::Entry::Vacant(vacant) => {
                *vacant.insert(self.lanes.insert(Lane {
                    key,
                    pending: Pending::one(entry),
                    leased: false,
                    blocked: false,
                    queued: false,
                }))
            }
        };
        let lane = &mut self.lanes[id];
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
            lanes
                .get(*id)
                .is_some_and(|l| l.pending.is_first_attempt(*seq))
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
            if let Some(e) = lane.pending.remove_first_attempt(seq) {
                self.waiting -= 1;
                self.waiting_bytes -= e.bytes;
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
            let lane = self.lane_keys.lane(&entry.event);
            self.enqueue(entry.event, bytes, lane, Overflow::Reject);
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

#[cfg(test)]
mod tests {
    use super::{Entry, KEPT_BUFFER, Pending};
    use crate::event::{Event, Platform};

    fn entry(seq: u64, attempts: u32) -> Entry {
        Entry {
            event: Event::text(Platform::TEST, "c", "x"),
            bytes: 1,
            attempts,
            seq,
        }
    }

    fn seqs(p: &Pending) -> Vec<u64> {
        (0..p.len())
            .filter_map(|i| p.get(i))
            .map(|e| e.seq)
            .collect()
    }

    #[test]
    fn a_lone_event_is_held_inline_and_a_second_moves_both_into_a_buffer() {
        let mut p = Pending::one(entry(1, 0));
        assert_eq!(p.buffered_capacity(), 0);
        p.push_back(entry(2, 0));
        p.push_back(entry(3, 0));
        assert_eq!(seqs(&p), [1, 2, 3]);
        assert!(p.buffered_capacity() >= 2);
        // A retry goes back to the front, before the rest.
        let first = p.pop_front().unwrap();
        assert_eq!(first.seq, 1);
        p.push_front(entry(1, 1));
        assert_eq!(seqs(&p), [1, 2, 3]);
        assert_eq!(p.get(0).unwrap().attempts, 1);
        for expected in [1, 2, 3] {
            assert_eq!(p.pop_front().unwrap().seq, expected);
        }
        assert!(p.is_empty());
        assert!(p.pop_front().is_none());
        let kept = p.buffered_capacity();
        assert_eq!(
            kept, KEPT_BUFFER,
            "a lane run empty keeps a small buffer for its next burst"
        );
        // A lone event then goes into the kept buffer.
        p.push_back(entry(3, 0));
        assert_eq!((seqs(&p), p.buffered_capacity()), (vec![3], KEPT_BUFFER));
        assert_eq!(p.pop_front().unwrap().seq, 3);
        p.push_front(entry(4, 1));
        p.push_back(entry(5, 0));
        assert_eq!(seqs(&p), [4, 5]);
        assert_eq!(p.buffered_capacity(), kept, "and uses it");
        // A burst's larger buffer goes once the lane runs empty.
        for seq in 6..40 {
            p.push_back(entry(seq, 0));
        }
        assert!(p.buffered_capacity() > KEPT_BUFFER);
        while p.pop_front().is_some() {}
        assert_eq!(p.buffered_capacity(), 0, "a burst's buffer is freed");
    }

    #[test]
    fn a_retry_goes_before_an_event_that_came_while_it_ran() {
        // The lane's only event runs (the lane holds nothing), a new event comes and is held in
        // the lane, then the first comes back for a retry: it goes first.
        let mut p = Pending::one(entry(1, 0));
        let running = p.pop_front().unwrap();
        assert!(p.is_empty());
        assert_eq!(p.buffered_capacity(), 0);
        p.push_back(entry(2, 0));
        assert_eq!((seqs(&p), p.buffered_capacity()), (vec![2], 0));
        p.push_front(Entry {
            attempts: 1,
            ..running
        });
        assert_eq!(seqs(&p), [1, 2]);
        assert_eq!(p.get(0).unwrap().attempts, 1);
        assert!(!p.is_first_attempt(1) && p.is_first_attempt(2));
        // A lone event that is not the one asked for, and a lone retry: neither is taken out.
        let mut lone = Pending::one(entry(7, 1));
        assert!(lone.position(8).is_none());
        assert!(lone.remove_first_attempt(7).is_none());
        assert_eq!(seqs(&lone), [7]);
    }

    #[test]
    fn only_first_attempts_are_found_and_removed_wherever_they_wait() {
        // A retry at the head, first attempts behind it.
        let mut p = Pending::one(entry(5, 2));
        p.push_back(entry(7, 0));
        p.push_back(entry(9, 0));
        assert!(!p.is_first_attempt(5), "a retry is not a first attempt");
        assert!(p.remove_first_attempt(5).is_none());
        assert!(!p.is_first_attempt(4) && !p.is_first_attempt(8) && !p.is_first_attempt(10));
        assert!(p.is_first_attempt(7) && p.is_first_attempt(9));
        assert_eq!(p.remove_first_attempt(9).unwrap().seq, 9);
        assert_eq!(seqs(&p), [5, 7]);
        assert_eq!(p.remove_first_attempt(7).unwrap().seq, 7);
        assert_eq!(seqs(&p), [5]);
        // A first attempt at the front is removed, and the next one is then first.
        let mut p = Pending::one(entry(1, 0));
        p.push_back(entry(2, 0));
        assert_eq!(p.remove_first_attempt(1).unwrap().seq, 1);
        assert_eq!(seqs(&p), [2]);
        assert_eq!(p.remove_first_attempt(2).unwrap().seq, 2);
        assert!(p.is_empty());
    }
}
