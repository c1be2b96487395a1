//! A bounded set of recently seen (platform, event id) keys with a time to live.
//!
//! Keys are kept as 128-bit fingerprints made of two differently seeded 64-bit hashes of the
//! platform and the id: no strings are cloned or compared. For ids that platforms assign (not
//! ones an attacker picks to collide), a false "seen" needs both halves to collide at once, which
//! with 100,000 keys remembered is far rarer than any hardware error.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::time::Duration;

use foldhash::quality::RandomState;
use tokio::time::Instant;

use crate::event::{Event, EventId, Platform};

/// The fingerprint of a (platform, event id) key.
pub(crate) type DedupKey = u128;

/// Fingerprints are already uniformly random: hash them by taking their low bits.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(buf);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// Makes fingerprints. It holds no state that changes, so producers hash their batch before
/// they take the queue's lock.
#[derive(Clone)]
pub(crate) struct KeyHasher {
    low: RandomState,
    high: RandomState,
}

impl KeyHasher {
    pub(crate) fn new() -> Self {
        Self {
            low: RandomState::default(),
            high: RandomState::default(),
        }
    }

    /// The fingerprint of an event's (platform, id).
    pub(crate) fn key(&self, event: &Event) -> DedupKey {
        self.key_of(&event.platform, &event.id)
    }

    pub(crate) fn key_of(&self, platform: &Platform, id: &EventId) -> DedupKey {
        let hash = |state: &RandomState| {
            let mut h = state.build_hasher();
            h.write(platform.as_str().as_bytes());
            h.write_u8(0xff);
            h.write(id.as_str().as_bytes());
            h.finish()
        };
        (u128::from(hash(&self.high)) << 64) | u128::from(hash(&self.low))
    }
}

/// Remembers keys for `ttl`, at most `capacity` of them (the oldest are forgotten first).
pub(crate) struct Dedup {
    ttl: Duration,
    capacity: usize,
    seen: HashSet<DedupKey, BuildHasherDefault<IdentityHasher>>,
    order: VecDeque<(Instant, DedupKey)>,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("len", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl Dedup {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            seen: HashSet::default(),
            order: VecDeque::new(),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < self.ttl {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.seen.remove(&key);
            }
        }
    }

    pub(crate) fn contains(&self, key: DedupKey) -> bool {
        self.enabled() && self.seen.contains(&key)
    }

    /// Remembers `key`, which [`Dedup::contains`] just said is not remembered (one lookup less).
    pub(crate) fn insert_new(&mut self, key: DedupKey, now: Instant) {
        if !self.enabled() {
            return;
        }
        if self.seen.len() >= self.capacity
            && let Some((_, old)) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        if self.seen.insert(key) {
            self.order.push_back((now, key));
        }
    }

    /// Remembers `key`; returns false if it was already remembered.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, key: DedupKey, now: Instant) -> bool {
        if self.contains(key) {
            return false;
        }
        self.insert_new(key, now);
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn forgets_after_ttl_and_beyond_capacity() {
        let mut d = Dedup::new(Duration::from_secs(10), 2);
        let h = KeyHasher::new();
        let key = |id: &str| h.key_of(&Platform::TEST, &EventId::new(id));
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let t0 = Instant::now();
        assert!(d.insert(a, t0));
        assert!(!d.insert(a, t0));
        assert!(d.insert(b, t0));
        // capacity 2: "a" is forgotten to make room for "c"
        assert!(d.insert(c, t0));
        assert!(!d.contains(a) && d.contains(b));
        assert_eq!(d.len(), 2);
        d.expire(t0 + Duration::from_secs(11));
        assert_eq!(d.len(), 0);
        assert!(d.insert(b, t0 + Duration::from_secs(11)));
    }

    #[test]
    fn keys_separate_platforms_and_ids() {
        let d = KeyHasher::new();
        let k = d.key_of(&Platform::LINE, &EventId::new("1"));
        assert_eq!(k, d.key_of(&Platform::LINE, &EventId::new("1")));
        assert_ne!(k, d.key_of(&Platform::MESSENGER, &EventId::new("1")));
        assert_ne!(k, d.key_of(&Platform::LINE, &EventId::new("2")));
        // The separator keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(
            d.key_of(&Platform::new("ab"), &EventId::new("c")),
            d.key_of(&Platform::new("a"), &EventId::new("bc"))
        );
    }
}
