//! A bounded set of recently seen (platform, event id) keys with a time to live.
//!
//! Keys are kept as 64-bit fingerprints, a hash of the platform and the id seeded per queue from
//! the operating system's random source: no strings are cloned or compared. A false "seen" needs
//! a 64-bit collision with one of the keys remembered: with the default 100,000 keys (at most
//! twice that, below), about one event in 10^14 (once in some 30 years at 100,000 new events a
//! second). The hash (foldhash) is not a keyed cryptographic function; ids a client chooses (web
//! chat's) could be made to collide only by someone who knows the seed, which never leaves the
//! process.
//!
//! The keys live in two generations, each a hash set of fingerprints: new keys go into the
//! current one; when it holds `capacity` keys, or its first key is `ttl` old, it becomes the
//! previous one and the previous one is forgotten whole (its table cleared and reused). A
//! generation is also forgotten once its newest key is `ttl` old. So:
//! - the newest `capacity` keys are always remembered (within `ttl`), and at most twice that;
//! - a key is remembered at least `ttl` (unless `capacity` newer keys pushed it out) and at most
//!   twice `ttl`;
//! - remembering a key costs one hash insert, and forgetting costs nothing per key: the
//!   per-key removal of the oldest key, a random access into a table larger than the cache, was
//!   a third of the webhook path's time in deduplication (one generation with an arrival line
//!   before; BENCHMARKS.md). A lookup probes both tables, the current one first.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::time::Duration;

use foldhash::SharedSeed;
use foldhash::quality::SeedableRandomState;
use tokio::time::Instant;

use crate::event::{Event, EventId, Platform};

/// The fingerprint of a (platform, event id) key.
pub(crate) type DedupKey = u64;

/// Fingerprints are already uniformly random: hash them by taking them as they are.
#[derive(Default)]
pub(crate) struct IdentityHasher(u64);

/// A map keyed by fingerprints ([`KeyHasher`]'s), which hashes them by taking them as they are.
pub(crate) type FingerprintMap<V> =
    std::collections::HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

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

    /// The fingerprint of an event's (platform, conversation): the memory queue's lane key.
    /// Two conversations whose fingerprints collide (about one chance in 4×10^9 among 100,000
    /// conversations waiting at once) share a lane: their events are handed out one at a time,
    /// in arrival order, as one conversation's; none is lost or reordered, and a retry's
    /// back-off in one holds the other too.
    pub(crate) fn lane(&self, event: &Event) -> u64 {
        let mut h = self.seed.build_hasher();
        h.write(event.platform.as_str().as_bytes());
        h.write_u8(0xfe);
        h.write(event.conversation.as_bytes());
        h.finish()
    }
}

/// Keys inserted together, forgotten together.
#[derive(Default)]
struct Generation {
    keys: HashSet<DedupKey, BuildHasherDefault<IdentityHasher>>,
    /// When its first and its newest key were inserted (`None` while it is empty).
    first: Option<Instant>,
    newest: Option<Instant>,
}

impl Generation {
    /// Forgets every key, keeping the table's allocation for the next generation.
    fn clear(&mut self) {
        self.keys.clear();
        self.first = None;
        self.newest = None;
    }

    /// Whether its newest key is `ttl` old at `now` (an empty one is not).
    fn expired(&self, now: Instant, ttl: Duration) -> bool {
        self.newest
            .is_some_and(|newest| now.saturating_duration_since(newest) >= ttl)
    }
}

/// Remembers keys for at least `ttl` (at most twice that), at least the newest `capacity` of them
/// (at most twice that): see the module's documentation.
pub(crate) struct Dedup {
    ttl: Duration,
    capacity: usize,
    /// Where new keys go.
    current: Generation,
    /// The generation before, forgotten whole at the next turn or once its newest key is `ttl`
    /// old.
    previous: Generation,
    /// Turns so far (see [`Dedup::turns`]).
    turns: u64,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("current", &self.current.keys.len())
            .field("previous", &self.previous.keys.len())
            .finish_non_exhaustive()
    }
}

impl Dedup {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            current: Generation::default(),
            previous: Generation::default(),
            turns: 0,
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    /// Forgets each generation whose newest key is `ttl` old.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.previous.expired(now, self.ttl) {
            self.previous.clear();
        }
        // The previous generation's keys are all older than the current one's: it is empty
        // by now if this one expired.
        if self.current.expired(now, self.ttl) {
            self.current.clear();
        }
    }

    pub(crate) fn contains(&self, key: DedupKey) -> bool {
        self.enabled() && (self.current.keys.contains(&key) || self.previous.keys.contains(&key))
    }

    /// The current generation becomes the previous one; the previous one is forgotten.
    fn turn(&mut self) {
        std::mem::swap(&mut self.current, &mut self.previous);
        self.current.clear();
        self.turns += 1;
    }

    /// How many times the generations turned so far: a batch reads it before its first
    /// [`Dedup::insert_new`], which then needs no lookup of the previous generation while it
    /// has not changed.
    pub(crate) fn turns(&self) -> u64 {
        self.turns
    }

    /// Remembers `key`, which [`Dedup::contains`] said was not remembered when the generations
    /// had turned `since` times ([`Dedup::turns`]): keys remembered since are those inserted
    /// meanwhile (by earlier events of the same batch). Returns false, remembering nothing, when
    /// `key` is one of them; true when it is new (always, when deduplication is off).
    ///
    /// One lookup, the insert into the current generation, while the generations did not turn
    /// since; a key inserted before a turn is then looked for in the previous generation too.
    pub(crate) fn insert_new(&mut self, key: DedupKey, now: Instant, since: u64) -> bool {
        if !self.enabled() {
            return true;
        }
        let full = self.current.keys.len() >= self.capacity;
        let old = self
            .current
            .first
            .is_some_and(|first| now.saturating_duration_since(first) >= self.ttl);
        if full || old {
            // By capacity: the newest `capacity` keys stay remembered (now the previous
            // generation). By time: the previous generation's newest key was inserted before
            // this one's first, `ttl` ago or more, so no key is forgotten early.
            self.turn();
        }
        // Before any turn since `since`, the previous generation is the one `contains` looked
        // at, without `key`.
        if self.turns != since && self.previous.keys.contains(&key) {
            return false;
        }
        if !self.current.keys.insert(key) {
            return false;
        }
        self.current.first.get_or_insert(now);
        self.current.newest = Some(self.current.newest.map_or(now, |n| n.max(now)));
        true
    }

    /// Remembers `key`; returns false if it was already remembered.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, key: DedupKey, now: Instant) -> bool {
        if self.contains(key) {
            return false;
        }
        let since = self.turns;
        self.insert_new(key, now, since)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current.keys.len() + self.previous.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The newest `capacity` keys are always remembered, and never more than twice that: a key
    /// goes once `capacity` newer keys filled a generation after its own.
    #[tokio::test(start_paused = true)]
    async fn keeps_the_newest_capacity_keys_and_at_most_twice_that() {
        let mut d = Dedup::new(Duration::from_secs(10), 2);
        let h = KeyHasher::new();
        let key = |id: &str| h.key_of(&Platform::TEST, &EventId::new(id));
        let t0 = Instant::now();
        assert!(d.insert(key("a"), t0));
        assert!(!d.insert(key("a"), t0));
        assert!(d.insert(key("b"), t0));
        assert!(d.insert(key("c"), t0));
        // Two newer keys than "a" arrived, but "b" and "c" are the newest two: "a" may stay.
        assert!(d.contains(key("a")) && d.contains(key("b")) && d.contains(key("c")));
        assert!(d.insert(key("d"), t0));
        assert!(d.insert(key("e"), t0));
        // "c", "d" filled a generation after "a", "b"'s: those are gone, the newest two stay.
        assert!(!d.contains(key("a")) && !d.contains(key("b")));
        assert!(d.contains(key("d")) && d.contains(key("e")));
        assert!(d.len() <= 4);
        // A forgotten key is new again.
        assert!(d.insert(key("a"), t0));
        for i in 0..1_000 {
            d.insert(key(&i.to_string()), t0);
            assert!(d.len() <= 4, "more than twice the capacity remembered");
            assert!(d.contains(key(&i.to_string())));
            if i > 0 {
                assert!(
                    d.contains(key(&(i - 1).to_string())),
                    "the newest two not kept"
                );
            }
        }
    }

    /// No key is forgotten before it is `ttl` old (capacity allowing), and none is kept past
    /// twice `ttl`.
    #[tokio::test(start_paused = true)]
    async fn each_key_is_kept_at_least_its_ttl_and_at_most_twice() {
        let ttl = Duration::from_secs(10);
        let s = Duration::from_secs;
        let mut d = Dedup::new(ttl, 100);
        let h = KeyHasher::new();
        let key = |id: &str| h.key_of(&Platform::TEST, &EventId::new(id));
        let t0 = Instant::now();
        assert!(d.insert(key("a"), t0));
        assert!(d.insert(key("b"), t0 + s(9)));
        // The generation's newest key ("b") is not ttl old: "a" is kept, late but not early.
        d.expire(t0 + ttl);
        assert!(d.contains(key("a")) && d.contains(key("b")));
        // Its first key is ttl old: the next key starts a generation of its own.
        assert!(d.insert(key("c"), t0 + s(12)));
        d.expire(t0 + s(9) + ttl - Duration::from_millis(1));
        assert!(
            d.contains(key("a")) && d.contains(key("b")),
            "forgotten early"
        );
        d.expire(t0 + s(9) + ttl);
        assert!(!d.contains(key("a")) && !d.contains(key("b")));
        assert!(
            d.contains(key("c")),
            "a later key went with an earlier generation"
        );
        // Kept at most twice ttl even when keys keep coming: "c"'s generation turns at
        // t0 + 22 s, and is forgotten with its newest key ("d", 20 s) at 30 s.
        assert!(d.insert(key("d"), t0 + s(20)));
        assert!(d.insert(key("e"), t0 + s(23)));
        d.expire(t0 + s(30) - Duration::from_millis(1));
        assert!(d.contains(key("c")) && d.contains(key("d")));
        d.expire(t0 + s(30));
        assert!(!d.contains(key("c")) && !d.contains(key("d")) && d.contains(key("e")));
        d.expire(t0 + s(23) + ttl);
        assert_eq!(d.len(), 0);
        // A forgotten key is new again; a short ttl works the same way.
        assert!(d.insert(key("a"), t0 + s(40)));
        let ttl = Duration::from_millis(160);
        let mut short = Dedup::new(ttl, 100);
        assert!(short.insert(key("a"), t0));
        assert!(short.insert(key("b"), t0 + Duration::from_millis(100)));
        short.expire(t0 + ttl);
        assert!(
            short.contains(key("a")),
            "forgotten before its generation's newest key is old"
        );
        short.expire(t0 + Duration::from_millis(260));
        assert_eq!(short.len(), 0);
    }

    /// A generation turned by capacity forgets the one before even if it is younger than `ttl`
    /// (the capacity bound), and its table is reused, not grown.
    #[tokio::test(start_paused = true)]
    async fn a_turn_reuses_the_forgotten_generations_table() {
        let h = KeyHasher::new();
        let mut d = Dedup::new(Duration::from_secs(600), 1_000);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            assert!(d.insert(h.key_of(&Platform::TEST, &EventId::new(i.to_string())), t0));
        }
        let tables = d.current.keys.capacity() + d.previous.keys.capacity();
        for i in 10_000..50_001u32 {
            assert!(d.insert(h.key_of(&Platform::TEST, &EventId::new(i.to_string())), t0));
        }
        // The last key started a generation: its table is the one forgotten, reused.
        assert_eq!(d.current.keys.len(), 1);
        assert!(d.current.keys.capacity() >= 1_000);
        assert_eq!(
            d.current.keys.capacity() + d.previous.keys.capacity(),
            tables
        );
        assert_eq!(d.len(), 1_001);
    }

    /// A batch's repeats of its own ids are found by the insert alone, also once its own
    /// inserts turned the generations (the earlier key then in the previous one).
    #[tokio::test(start_paused = true)]
    async fn a_batch_finds_its_own_repeats_across_a_turn() {
        let h = KeyHasher::new();
        let key = |id: &str| h.key_of(&Platform::TEST, &EventId::new(id));
        let mut d = Dedup::new(Duration::from_secs(600), 2);
        let t0 = Instant::now();
        let since = d.turns();
        assert!(d.insert_new(key("a"), t0, since));
        assert!(!d.insert_new(key("a"), t0, since), "a repeat taken as new");
        assert!(d.insert_new(key("b"), t0, since));
        assert_eq!(d.turns(), since);
        // The current generation is full: this insert turns it, "a" goes to the previous one.
        assert!(
            !d.insert_new(key("a"), t0, since),
            "a repeat from before the turn taken as new"
        );
        assert_eq!(d.turns(), since + 1);
        assert!(d.insert_new(key("c"), t0, since));
        assert!(!d.insert_new(key("b"), t0, since));
        assert!(!d.insert_new(key("c"), t0, since));
        assert!(d.contains(key("a")) && d.contains(key("b")) && d.contains(key("c")));
        // Off: every insert is new, nothing is remembered.
        let mut off = Dedup::new(Duration::ZERO, 2);
        assert!(off.insert_new(key("a"), t0, 0) && off.insert_new(key("a"), t0, 0));
        assert_eq!(off.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_ttl_or_capacity_remembers_nothing() {
        let h = KeyHasher::new();
        let k = h.key_of(&Platform::TEST, &EventId::new("a"));
        let t0 = Instant::now();
        for mut d in [
            Dedup::new(Duration::ZERO, 10),
            Dedup::new(Duration::from_secs(1), 0),
        ] {
            assert!(d.insert(k, t0));
            assert!(d.insert(k, t0));
            assert_eq!(d.len(), 0);
        }
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
