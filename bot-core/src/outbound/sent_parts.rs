//! [`SentParts`]: the parts of sends a client made for handlers, so that retries skip them.

use crate::event::EventId;

/// How long a [`SentParts`] remembers a part by default: far beyond the runtime's retry schedule
/// (by default 5 attempts, backoff up to 5 minutes).
pub const SENT_PARTS_TTL: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// How many parts a [`SentParts`] remembers at most by default; the oldest are forgotten first.
pub const MAX_SENT_PARTS: usize = 100_000;

/// An event, the index of a send for it ([`Target::send_index`](super::Target::send_index)), and the part of that send.
pub type PartKey = (EventId, u32, usize);

/// The parts, and the order they came in for expiry.
type PartSet = (
    std::collections::HashSet<PartKey>,
    std::collections::VecDeque<(std::time::Instant, PartKey)>,
);

/// Parts of sends a client made (or may have made) for handlers, by (event, send index, part),
/// so that a retried handler skips them instead of sending them twice where the platform offers
/// no idempotency key. Bounded in count and age.
#[derive(Debug, Default)]
pub struct SentParts {
    parts: std::sync::Mutex<PartSet>,
}

impl SentParts {
    /// Whether `key` was sent (or may have been) and is still remembered.
    pub fn contains(&self, key: &PartKey) -> bool {
        let guard = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.contains(key)
    }

    /// Remembers `key` for [`SENT_PARTS_TTL`], among at most [`MAX_SENT_PARTS`].
    pub fn insert(&self, key: PartKey) {
        self.insert_at(
            key,
            std::time::Instant::now(),
            SENT_PARTS_TTL,
            MAX_SENT_PARTS,
        );
    }

    /// Remembers `key` as sent at `now`, first forgetting parts older than `ttl` and the oldest
    /// beyond `max`.
    pub fn insert_at(
        &self,
        key: PartKey,
        now: std::time::Instant,
        ttl: std::time::Duration,
        max: usize,
    ) {
        let mut guard = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        while let Some((at, _)) = order.front() {
            if now.saturating_duration_since(*at) < ttl && order.len() < max {
                break;
            }
            if let Some((_, old)) = order.pop_front() {
                set.remove(&old);
            }
        }
        if set.insert(key.clone()) {
            order.push_back((now, key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_parts_are_bounded_in_count_and_age() {
        let sent = SentParts::default();
        let key = |i: usize| (EventId::new("m_1"), 0, i);
        let start = std::time::Instant::now();
        let ttl = std::time::Duration::from_secs(10);
        for i in 0..3 {
            sent.insert_at(key(i), start, ttl, 3);
        }
        assert!((0..3).all(|i| sent.contains(&key(i))));
        sent.insert_at(key(3), start, ttl, 3);
        assert!(!sent.contains(&key(0)), "the oldest goes first when full");
        assert!((1..4).all(|i| sent.contains(&key(i))));
        sent.insert_at(key(4), start + ttl, ttl, 3);
        assert!(
            (1..4).all(|i| !sent.contains(&key(i))),
            "expired parts are forgotten"
        );
        assert!(sent.contains(&key(4)));
        assert!(!sent.contains(&(EventId::new("m_1"), 1, 4)));
    }
}
