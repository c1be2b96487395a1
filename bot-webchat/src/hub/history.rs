//! [`UserState`]: one user's open sockets on this node and the latest messages sent to them,
//! numbered, so that a reconnecting browser gets what it missed.
//!
//! With cluster-wide numbering (PostgreSQL history) the numbers come from the database and
//! messages may reach this node out of order (two nodes' sends to one user): `watermark` is the
//! last number delivered here, and `pending` holds what came early until the ones before it
//! come (or are read from the database).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bot_core::EventId;
use smallvec::SmallVec;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::conn::Conn;

/// One message kept for resume: its number, its frame, and the handler send it came from.
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) seq: u64,
    pub(crate) frame: Utf8Bytes,
    /// The event whose handler sent it and the index of that send, so that a retried handler's
    /// send is not shown twice.
    pub(crate) origin: Option<(EventId, u32)>,
}

/// A user's sockets on this node: most users have one, held without an allocation of its own.
pub(crate) type Sockets = SmallVec<[Arc<Conn>; 1]>;

/// One user on this node.
#[derive(Debug, Default)]
pub(crate) struct UserState {
    pub(crate) sockets: Sockets,
    /// The number of the latest message (0 before the first).
    pub(crate) seq: u64,
    history: VecDeque<Kept>,
    history_bytes: usize,
    /// The hub clock when the last socket left or the last message came (for the resume window).
    pub(crate) last_active_ms: u64,
    /// Cluster-wide numbering: joins waiting for the database (messages are held meanwhile).
    pub(crate) joining: u32,
    /// Cluster-wide numbering: the last number delivered to this node's sockets, once known.
    pub(crate) watermark: Option<u64>,
    /// Cluster-wide numbering: messages that came before the ones preceding them.
    pub(crate) pending: BTreeMap<u64, Utf8Bytes>,
}

/// What a resume sends: the kept frames after the browser's number, and whether some were no
/// longer kept.
#[derive(Debug)]
pub(crate) struct Replay {
    pub(crate) frames: Vec<Utf8Bytes>,
    pub(crate) gap: bool,
}

impl UserState {
    /// Keeps `kept`, dropping the oldest past `max_messages` or `max_bytes`.
    pub(crate) fn keep(&mut self, kept: Kept, max_messages: usize, max_bytes: usize) {
        self.history_bytes += kept.frame.len();
        self.history.push_back(kept);
        while self.history.len() > max_messages || self.history_bytes > max_bytes {
            match self.history.pop_front() {
                Some(old) => self.history_bytes -= old.frame.len(),
                None => break,
            }
        }
    }

    /// Whether a send of this handler event was already kept.
    pub(crate) fn already_sent(&self, origin: &(EventId, u32)) -> bool {
        (self.history.iter()).any(|k| k.origin.as_ref() == Some(origin))
    }

    /// The frames after `last_seq`.
    pub(crate) fn replay(&self, last_seq: u64) -> Replay {
        let frames: Vec<Utf8Bytes> = (self.history.iter())
            .filter(|k| k.seq > last_seq)
            .map(|k| k.frame.clone())
            .collect();
        let oldest_kept = self.history.front().map_or(self.seq + 1, |k| k.seq);
        Replay {
            frames,
            // Something between `last_seq` and the oldest kept message is gone.
            gap: last_seq < self.seq && oldest_kept > last_seq + 1,
        }
    }

    pub(crate) fn has_history(&self) -> bool {
        !self.history.is_empty()
    }

    /// The kept frames numbered above `after`, up to `through`, and whether they start right
    /// after `after` (nothing between is missing).
    pub(crate) fn kept_between(&self, after: u64, through: u64) -> (Vec<Utf8Bytes>, bool) {
        let frames: Vec<&Kept> = (self.history.iter())
            .filter(|k| k.seq > after && k.seq <= through)
            .collect();
        let contiguous = through <= after || frames.first().is_some_and(|k| k.seq == after + 1);
        (
            frames.into_iter().map(|k| k.frame.clone()).collect(),
            contiguous,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(seq: u64) -> Kept {
        Kept {
            seq,
            frame: Utf8Bytes::from(format!("frame-{seq}")),
            origin: None,
        }
    }

    #[test]
    fn history_is_bounded_and_replay_reports_a_gap() {
        let mut user = UserState::default();
        for seq in 1..=5 {
            user.seq = seq;
            user.keep(kept(seq), 3, 1024);
        }
        let replay = user.replay(3);
        assert_eq!(
            replay.frames,
            vec![Utf8Bytes::from("frame-4"), Utf8Bytes::from("frame-5")]
        );
        assert!(!replay.gap);
        let replay = user.replay(1);
        assert_eq!(replay.frames.len(), 3);
        assert!(replay.gap, "2 is gone");
        let replay = user.replay(5);
        assert!(replay.frames.is_empty() && !replay.gap);
        // The byte bound: each frame is 7 bytes.
        user.keep(kept(6), 10, 14);
        assert_eq!(user.replay(0).frames.len(), 2);
    }
}
