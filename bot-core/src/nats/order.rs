//! Per-conversation ordering inside one process: the board of the partitions this process owns.
//!
//! A partition's consumer delivers its messages in stream order, which within a conversation is
//! push order. The board keeps them in one lane per conversation and hands out only a lane's
//! head, and only while no other event of that lane is leased or waiting for its retry. A nacked
//! head stays at the front as `Retrying` until JetStream redelivers it (after the `nak` delay),
//! so the conversation waits for it. Redeliveries of messages already held (their `AckWait`
//! ran out while they waited behind a head) are recognised by their stream sequence and
//! ignored.
//!
//! Generic over the acknowledgement handle so that the rules are unit-tested without a server.

use std::collections::{HashMap, VecDeque};

use crate::event::Event;
use crate::queue::{Delivery, Lease};

/// Bits of a lease id that hold the stream sequence; the partition (below 1,024) is above them.
const SEQ_BITS: u32 = 53;

/// The id of a message of `partition` in this process (its leases, its slots): each partition's
/// stream numbers its messages from 1, so the id carries the partition too. A partition's
/// stream would have to take 2^53 messages before two ids could meet.
fn message_id(partition: u32, seq: u64) -> u64 {
    (u64::from(partition) << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1))
}

/// A message as its partition's consumer delivered it.
#[derive(Debug)]
pub(super) struct Arrival<A> {
    /// Its sequence in its partition's stream.
    pub(super) seq: u64,
    /// JetStream's delivery count: the attempt.
    pub(super) delivered: u32,
    pub(super) event: Event,
    pub(super) acker: A,
}

/// A lane's key: the conversation (ordered) or the message itself (unordered).
type LaneKey = Box<str>;

#[derive(Debug)]
enum Slot<A> {
    /// Waiting to be handed out.
    Held {
        seq: u64,
        attempt: u32,
        /// Boxed: lanes hold many slots, most of them small.
        event: Box<Event>,
        acker: A,
    },
    /// Handed out; its record is in `Board::leases`.
    Leased(u64),
    /// Nacked; JetStream redelivers it after its delay.
    Retrying(u64),
}

impl<A> Slot<A> {
    fn seq(&self) -> u64 {
        match self {
            Self::Held { seq, .. } | Self::Leased(seq) | Self::Retrying(seq) => *seq,
        }
    }
}

#[derive(Debug)]
struct Partition<A> {
    /// The ownership's generation (the KV revision that won it); leases carry it as their token.
    generation: u64,
    lanes: HashMap<LaneKey, VecDeque<Slot<A>>>,
    /// Every sequence held, leased or retrying, with its lane.
    seqs: HashMap<u64, LaneKey>,
    leased: usize,
    /// Being given up: nothing more is handed out.
    leaving: bool,
}

#[derive(Debug)]
struct LeaseRecord<A> {
    partition: u32,
    generation: u64,
    attempt: u32,
    acker: A,
}

/// A lease taken back from the board by a completion.
#[derive(Debug)]
pub(super) struct Taken<A> {
    /// Where to send the completion.
    pub(super) acker: A,
}

/// The partitions this process owns and what they hold.
#[derive(Debug)]
pub(super) struct Board<A> {
    ordered: bool,
    partitions: HashMap<u32, Partition<A>>,
    /// Lanes whose head can be handed out, in arrival order.
    ready: VecDeque<(u32, u64, LaneKey)>,
    leases: HashMap<u64, LeaseRecord<A>>,
    /// Messages held and not leased (for the depth gauge).
    waiting: usize,
}

impl<A> Board<A> {
    pub(super) fn new(ordered: bool) -> Self {
        Self {
            ordered,
            partitions: HashMap::new(),
            ready: VecDeque::new(),
            leases: HashMap::new(),
            waiting: 0,
        }
    }

    /// Starts holding `partition` under `generation`.
    pub(super) fn own(&mut self, partition: u32, generation: u64) {
        self.drop_partition(partition);
        self.partitions.insert(
            partition,
            Partition {
                generation,
                lanes: HashMap::new(),
                seqs: HashMap::new(),
                leased: 0,
                leaving: false,
            },
        );
    }

    /// Forgets `partition` and everything it held: its next owner gets those messages from
    /// JetStream. Its leases become stale. Returns how many messages it held unacknowledged.
    pub(super) fn drop_partition(&mut self, partition: u32) -> usize {
        let Some(p) = self.partitions.remove(&partition) else {
            return 0;
        };
        let held = p.lanes.values().flatten();
        self.waiting -= held.filter(|s| matches!(s, Slot::Held { .. })).count();
        self.leases.retain(|_, l| l.partition != partition);
        p.seqs.len()
    }

    /// Stops handing out events of `partition`; returns whether none is leased (it can go).
    pub(super) fn leave(&mut self, partition: u32) -> bool {
        self.partitions.get_mut(&partition).is_none_or(|p| {
            p.leaving = true;
            p.leased == 0
        })
    }

    /// Hands out events of `partition` again after [`Board::leave`] (it stays after all).
    /// Returns whether a lane became ready.
    pub(super) fn stay(&mut self, partition: u32) -> bool {
        let Some(p) = self.partitions.get_mut(&partition) else {
            return false;
        };
        if !p.leaving {
            return false;
        }
        p.leaving = false;
        let before = self.ready.len();
        for (key, lane) in &p.lanes {
            if matches!(lane.front(), Some(Slot::Held { .. })) {
                self.ready.push_back((partition, p.generation, key.clone()));
            }
        }
        self.ready.len() > before
    }

    /// Whether `partition` is owned here under `generation`.
    pub(super) fn owns(&self, partition: u32, generation: u64) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|p| p.generation == generation)
    }

    /// Whether `partition` is owned here, under any generation.
    pub(super) fn owns_any(&self, partition: u32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Messages held and not handed out.
    pub(super) fn waiting(&self) -> usize {
        self.waiting
    }

    /// Takes a delivered message. Returns whether a lane became ready (wake a puller).
    pub(super) fn arrive(&mut self, partition: u32, generation: u64, arrival: Arrival<A>) -> bool {
        let Some(p) = self.partitions.get_mut(&partition) else {
            return false;
        };
        if p.generation != generation {
            return false;
        }
        let Arrival {
            seq,
            delivered,
            event,
            acker,
        } = arrival;
        let seq = message_id(partition, seq);
        if let Some(key) = p.seqs.get(&seq) {
            // The redelivery of a nacked head, or a copy of a message already held.
            let lane = p.lanes.get_mut(key).expect("a held sequence has its lane");
            let Some(front) = lane.front_mut() else {
                return false;
            };
            if !matches!(front, Slot::Retrying(s) if *s == seq) {
                return false;
            }
            *front = Slot::Held {
                seq,
                attempt: delivered,
                event: Box::new(event),
                acker,
            };
            self.waiting += 1;
            self.ready.push_back((partition, generation, key.clone()));
            return true;
        }
        let key: LaneKey = if self.ordered {
            format!(
                "{}\u{0}{}",
                event.platform.as_str(),
                event.conversation.as_str()
            )
            .into()
        } else {
            format!("#{seq}").into()
        };
        let lane = p.lanes.entry(key.clone()).or_default();
        lane.push_back(Slot::Held {
            seq,
            attempt: delivered,
            event: Box::new(event),
            acker,
        });
        p.seqs.insert(seq, key.clone());
        self.waiting += 1;
        if lane.len() == 1 {
            self.ready.push_back((partition, generation, key));
            return true;
        }
        false
    }

    /// Hands out up to `max` lane heads.
    pub(super) fn take(&mut self, max: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some((partition, generation, key)) = self.ready.pop_front() else {
                break;
            };
            let Some(p) = self.partitions.get_mut(&partition) else {
                continue;
            };
            if p.generation != generation || p.leaving {
                continue;
            }
            let Some(front) = p.lanes.get_mut(&key).and_then(VecDeque::front_mut) else {
                continue;
            };
            // A lane can be listed twice (after `stay`); only a held head is handed out.
            if !matches!(front, Slot::Held { .. }) {
                continue;
            }
            let seq = front.seq();
            let Slot::Held {
                attempt,
                event,
                acker,
                ..
            } = std::mem::replace(front, Slot::Leased(seq))
            else {
                continue;
            };
            p.leased += 1;
            self.waiting -= 1;
            self.leases.insert(
                seq,
                LeaseRecord {
                    partition,
                    generation,
                    attempt,
                    acker,
                },
            );
            out.push(Delivery {
                lease: Lease {
                    id: seq,
                    token: generation,
                },
                event: *event,
                attempt,
            });
        }
        out
    }

    /// Whether `lease` is held here now (not stale).
    pub(super) fn holds(&self, lease: Lease) -> bool {
        self.leases
            .get(&lease.id)
            .is_some_and(|l| l.generation == lease.token && self.owns(l.partition, l.generation))
    }

    /// The acknowledgement handle of a live lease, without completing it.
    pub(super) fn acker(&self, lease: Lease) -> Option<&A> {
        self.holds(lease)
            .then(|| self.leases.get(&lease.id).map(|l| &l.acker))
            .flatten()
    }

    /// The attempt of a live lease.
    pub(super) fn attempt(&self, lease: Lease) -> Option<u32> {
        self.holds(lease)
            .then(|| self.leases.get(&lease.id).map(|l| l.attempt))
            .flatten()
    }

    /// Completes `lease` for good (acknowledged or dead-lettered): its lane moves on.
    pub(super) fn finish(&mut self, lease: Lease) -> Option<Taken<A>> {
        let (record, key) = self.unlease(lease)?;
        let p = self.partitions.get_mut(&record.partition)?;
        p.seqs.remove(&lease.id);
        let lane = p.lanes.get_mut(&key)?;
        lane.pop_front();
        if lane.is_empty() {
            p.lanes.remove(&key);
        } else if matches!(lane.front(), Some(Slot::Held { .. })) {
            self.ready
                .push_back((record.partition, record.generation, key));
        }
        Some(Taken {
            acker: record.acker,
        })
    }

    /// Completes `lease` with a retry: its head waits for JetStream's redelivery.
    pub(super) fn retry(&mut self, lease: Lease) -> Option<Taken<A>> {
        let (record, key) = self.unlease(lease)?;
        if let Some(front) = self.front(record.partition, &key) {
            *front = Slot::Retrying(lease.id);
        }
        Some(Taken {
            acker: record.acker,
        })
    }

    /// Gives a lease back unrun: its event is the head again, with the same attempt.
    pub(super) fn release(&mut self, lease: Lease, event: Event) -> bool {
        let Some((record, key)) = self.unlease(lease) else {
            return false;
        };
        if let Some(front) = self.front(record.partition, &key) {
            *front = Slot::Held {
                seq: lease.id,
                attempt: record.attempt,
                event: Box::new(event),
                acker: record.acker,
            };
            self.waiting += 1;
            self.ready
                .push_front((record.partition, record.generation, key));
        }
        true
    }

    fn front(&mut self, partition: u32, key: &LaneKey) -> Option<&mut Slot<A>> {
        self.partitions
            .get_mut(&partition)?
            .lanes
            .get_mut(key)?
            .front_mut()
    }

    /// Removes a live lease's record; returns it and its lane, whose front is that lease's slot.
    fn unlease(&mut self, lease: Lease) -> Option<(LeaseRecord<A>, LaneKey)> {
        if !self.holds(lease) {
            return None;
        }
        let record = self.leases.remove(&lease.id)?;
        let p = self.partitions.get_mut(&record.partition)?;
        p.leased -= 1;
        let key = p.seqs.get(&lease.id)?.clone();
        Some((record, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Platform;

    fn arrival(seq: u64, conversation: &str, delivered: u32) -> Arrival<u64> {
        Arrival {
            seq,
            delivered,
            event: Event::text(Platform::from_static("demo"), conversation, "hi")
                .with_id(format!("e{seq}")),
            acker: seq,
        }
    }

    fn seqs(deliveries: &[Delivery]) -> Vec<u64> {
        deliveries.iter().map(|d| d.lease.id).collect()
    }

    #[test]
    fn a_conversation_hands_out_one_event_at_a_time_in_order() {
        let mut board = Board::new(true);
        board.own(0, 7);
        for (seq, conv) in [(1, "a"), (2, "a"), (3, "b"), (4, "a")] {
            board.arrive(0, 7, arrival(seq, conv, 1));
        }
        let first = board.take(10);
        assert_eq!(seqs(&first), [1, 3]);
        assert_eq!(first[0].lease.token, 7);
        assert!(board.take(10).is_empty(), "a's next waits for its head");
        assert_eq!(board.finish(first[0].lease).map(|t| t.acker), Some(1));
        assert_eq!(seqs(&board.take(10)), [2]);
        assert_eq!(board.waiting(), 1);
    }

    #[test]
    fn the_same_sequence_in_two_partitions_makes_two_leases() {
        // Each partition's stream numbers its messages from 1.
        let mut board = Board::new(true);
        board.own(0, 1);
        board.own(1, 1);
        board.arrive(0, 1, arrival(1, "a", 1));
        board.arrive(
            1,
            1,
            Arrival {
                acker: 101,
                ..arrival(1, "b", 1)
            },
        );
        let d = board.take(10);
        assert_eq!(d.len(), 2);
        assert_ne!(d[0].lease.id, d[1].lease.id);
        let ackers: Vec<u64> = d
            .iter()
            .map(|d| board.finish(d.lease).expect("both leases held").acker)
            .collect();
        assert_eq!(ackers, [1, 101]);
        assert_eq!(board.waiting(), 0);
    }

    #[test]
    fn unordered_hands_out_everything() {
        let mut board = Board::new(false);
        board.own(0, 1);
        for seq in 1..=3 {
            board.arrive(0, 1, arrival(seq, "a", 1));
        }
        assert_eq!(seqs(&board.take(10)), [1, 2, 3]);
    }

    #[test]
    fn a_retried_head_holds_its_conversation_until_redelivered() {
        let mut board = Board::new(true);
        board.own(0, 1);
        board.arrive(0, 1, arrival(1, "a", 1));
        board.arrive(0, 1, arrival(2, "a", 1));
        let d = board.take(10);
        assert!(board.retry(d[0].lease).is_some());
        assert!(board.take(10).is_empty());
        // A copy of the waiting message (its AckWait ran out) changes nothing.
        assert!(!board.arrive(0, 1, arrival(2, "a", 2)));
        assert!(board.take(10).is_empty());
        assert!(board.arrive(0, 1, arrival(1, "a", 2)));
        let again = board.take(10);
        assert_eq!((seqs(&again), again[0].attempt), (vec![1], 2));
    }

    #[test]
    fn a_released_event_comes_back_first_with_the_same_attempt() {
        let mut board = Board::new(true);
        board.own(0, 1);
        board.arrive(0, 1, arrival(1, "a", 3));
        board.arrive(0, 1, arrival(2, "b", 1));
        let d = board.take(1);
        assert!(board.release(d[0].lease, d[0].event.clone()));
        let again = board.take(1);
        assert_eq!((seqs(&again), again[0].attempt), (vec![1], 3));
    }

    #[test]
    fn leases_of_a_lost_partition_or_generation_are_stale() {
        let mut board = Board::new(true);
        board.own(0, 1);
        board.arrive(0, 1, arrival(1, "a", 1));
        let d = board.take(1);
        assert!(!board.holds(Lease { id: 1, token: 2 }));
        board.drop_partition(0);
        assert!(board.finish(d[0].lease).is_none());
        board.own(0, 2);
        assert!(!board.arrive(0, 1, arrival(5, "a", 1)), "old generation");
        assert!(board.take(1).is_empty());
    }

    #[test]
    fn a_leaving_partition_hands_out_nothing_and_goes_when_idle() {
        let mut board = Board::new(true);
        board.own(0, 1);
        board.arrive(0, 1, arrival(1, "a", 1));
        board.arrive(0, 1, arrival(2, "b", 1));
        let d = board.take(1);
        assert!(!board.leave(0), "one is leased");
        assert!(board.take(10).is_empty());
        board.finish(d[0].lease);
        assert!(board.leave(0));
        // It stays after all: what waited is handed out again.
        assert!(board.stay(0));
        assert_eq!(seqs(&board.take(10)), [2]);
    }
}
