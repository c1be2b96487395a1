//! A bounded set of recently seen (platform, event id) keys with a time to live.
//!
//! Keys are kept as 64-bit fingerprints, a hash of the platform and the id seeded per queue from
//! the operating system's random source: no strings are cloned or compared, and the set stays
//! small enough to stay in cache (8 bytes per key in the table, 8 in the arrival line, against
//! 48 for the 128-bit keys and their timestamps before). A false "seen" needs a 64-bit collision
//! with one of the keys remembered: with the default 100,000 keys, about one event in 2 × 10^14
//! (once in some 60 years at 100,000 new events a second). The hash (foldhash) is not a keyed
//! cryptographic function; ids a client chooses (web chat's) could be made to collide only by
//! someone who knows the seed, which never leaves the process.
//!
//! Times are kept per run of keys inserted within a span of each other ([`RUN_SPAN`], or a
//! sixteenth of the time to live if that is shorter), not per key: a key is forgotten once the
//! newest key of its run is `ttl` old, so at most that span late, never early.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::time::Duration;

use foldhash::SharedSeed;
use foldhash::quality::SeedableRandomState;
use tokio::time::Instant;

use crate::event::{Event, EventId, Platform};

/// The fingerprint of a (platform, event id) key.
pub(crate) type DedupKey = u64;

/// Keys inserted within this span of the first of their run share one timestamp (or within a
/// sixteenth of the time to live, if that is shorter).
const RUN_SPAN: Duration = Duration::from_millis(100);

/// Fingerprints are already uniformly random: hash them by taking them as they are.
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

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Makes fingerprints. It holds no state that changes, so producers hash their batch before
/// they take the queue's lock.
#[derive(Clone)]
pub(crate) struct KeyHasher {
    seed: SeedableRandomState,
}

impl KeyHasher {
    pub(crate) fn new() -> Self {
        // std's `RandomState` draws its keys from the operating system's random source; one
        // hash of nothing under them is a random 64-bit seed.
        let seed = std::hash::RandomState::new().build_hasher().finish();
        Self {
            seed: SeedableRandomState::with_seed(seed, SharedSeed::global_random()),
        }
    }

    /// The fingerprint of an event's (platform, id).
    pub(crate) fn key(&self, event: &Event) -> DedupKey {
        self.key_of(&event.platform, &event.id)
    }

    pub(crate) fn key_of(&self, platform: &Platform, id: &EventId) -> DedupKey {
        let mut h = self.seed.build_hasher();
        h.write(platform.as_str().as_bytes());
        h.write_u8(0xff);
        h.write(id.as_bytes());
        h.finish()
    }
}

/// Keys inserted together: when the newest of them was inserted, and how many of the oldest
/// keys in the line they are.
struct Run {
    first: Instant,
    newest: Instant,
    keys: usize,
}

/// Remembers keys for `ttl`, at most `capacity` of them (the oldest are forgotten first).
pub(crate) struct Dedup {
    ttl: Duration,
    /// How far apart the keys of one run may be inserted: how late a key may be forgotten.
    span: Duration,
    capacity: usize,
    seen: HashSet<DedupKey, BuildHasherDefault<IdentityHasher>>,
    /// The keys remembered, oldest first.
    order: VecDeque<DedupKey>,
    /// The times of `order`'s keys, by runs, oldest first; their counts add up to its length.
    runs: VecDeque<Run>,
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
            span: RUN_SPAN.min(ttl / 16),
            capacity,
            seen: HashSet::default(),
            order: VecDeque::new(),
            runs: VecDeque::new(),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(run) = self.runs.front() {
            if now.duration_since(run.newest) < self.ttl {
                break;
            }
            let keys = run.keys;
            self.runs.pop_front();
            for _ in 0..keys {
                if let Some(key) = self.order.pop_front() {
                    self.seen.remove(&key);
                }
            }
        }
    }

    pub(crate) fn contains(&self, key: DedupKey) -> bool {
        self.enabled() && self.seen.contains(&key)
    }

    /// Forgets the oldest key, to make room.
    fn forget_oldest(&mut self) {
        if let Some(old) = self.order.pop_front() {
            self.seen.remove(&old);
            if let Some(run) = self.runs.front_mut() {
                run.keys -= 1;
                if run.keys == 0 {
                    self.runs.pop_front();
                }
            }
        }
    }

    /// Remembers `key`, which [`Dedup::contains`] just said is not remembered (one lookup less).
    pub(crate) fn insert_new(&mut self, key: DedupKey, now: Instant) {
        if !self.enabled() {
            return;
        }
        if self.seen.len() >= self.capacity {
            self.forget_oldest();
        }
        if !self.seen.insert(key) {
            return;
        }
        self.order.push_back(key);
        match self.runs.back_mut() {
            Some(run) if now.saturating_duration_since(run.first) < self.span => {
                run.newest = run.newest.max(now);
                run.keys += 1;
            }
            _ => self.runs.push_back(Run {
                first: now,
                newest: now,
                keys: 1,
            }),
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
        assert!(d.runs.is_empty() && d.order.is_empty());
        assert!(d.insert(b, t0 + Duration::from_secs(11)));
    }

    /// Keys share a time only within a run: one inserted later is not forgotten with the
    /// earlier ones, and none is forgotten before its `ttl`.
    #[tokio::test(start_paused = true)]
    async fn each_key_is_kept_for_its_own_ttl() {
        let ttl = Duration::from_secs(10);
        let mut d = Dedup::new(ttl, 100);
        let h = KeyHasher::new();
        let key = |id: &str| h.key_of(&Platform::TEST, &EventId::new(id));
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        assert!(d.insert(key("a"), t0));
        // Within the run's span: kept until the run's newest key is ttl old.
        assert!(d.insert(key("a2"), t0 + RUN_SPAN / 2));
        assert!(d.insert(key("b"), later));
        d.expire(t0 + ttl);
        assert!(
            d.contains(key("a")),
            "forgotten before the newest of its run is ttl old"
        );
        d.expire(t0 + RUN_SPAN / 2 + ttl);
        assert!(!d.contains(key("a")) && !d.contains(key("a2")));
        assert!(d.contains(key("b")), "a later key went with an earlier run");
        d.expire(later + ttl - Duration::from_millis(1));
        assert!(d.contains(key("b")));
        d.expire(later + ttl);
        assert_eq!(d.len(), 0);
        // Eviction by capacity keeps the runs' counts: nothing is left behind or underflows.
        let mut small = Dedup::new(ttl, 3);
        for (i, id) in ["p", "q", "r", "s", "t"].into_iter().enumerate() {
            small.insert(key(id), t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(small.len(), 3);
        assert_eq!(small.runs.iter().map(|r| r.keys).sum::<usize>(), 3);
        assert!(!small.contains(key("q")) && small.contains(key("r")));
        small.expire(t0 + Duration::from_secs(4) + ttl);
        assert_eq!(small.len(), 0);
        assert!(small.runs.is_empty() && small.order.is_empty());
    }

    /// Eviction by capacity takes keys out of a run of several; the rest of the run keeps its
    /// time. A short time to live shortens the runs, so no key outlives it by much.
    #[tokio::test(start_paused = true)]
    async fn eviction_inside_a_run_and_short_ttls_keep_every_key_its_own_time() {
        let h = KeyHasher::new();
        let key = |id: &str| h.key_of(&Platform::TEST, &EventId::new(id));
        let ttl = Duration::from_secs(10);
        let mut small = Dedup::new(ttl, 3);
        let t0 = Instant::now();
        for id in ["p", "q", "r", "s", "t"] {
            assert!(small.insert(key(id), t0));
        }
        assert_eq!(small.runs.len(), 1);
        assert_eq!(small.runs[0].keys, 3);
        assert!(!small.contains(key("q")) && small.contains(key("r")) && small.contains(key("t")));
        small.expire(t0 + ttl - Duration::from_millis(1));
        assert_eq!(small.len(), 3);
        small.expire(t0 + ttl);
        assert_eq!(small.len(), 0);
        assert!(small.runs.is_empty() && small.order.is_empty());

        // A 160 ms time to live: runs span 10 ms, so a key is forgotten at most 10 ms late.
        let ttl = Duration::from_millis(160);
        let mut short = Dedup::new(ttl, 100);
        assert!(short.insert(key("a"), t0));
        assert!(short.insert(key("b"), t0 + Duration::from_millis(20)));
        assert_eq!(short.runs.len(), 2, "keys 20 ms apart share a run");
        short.expire(t0 + ttl);
        assert!(
            !short.contains(key("a")),
            "kept past its time to live and its run's span"
        );
        assert!(short.contains(key("b")));
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
