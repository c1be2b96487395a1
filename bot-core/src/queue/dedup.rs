//! A bounded set of recently seen (platform, event id) keys with a time to live.

use std::collections::VecDeque;

use foldhash::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::event::{EventId, Platform};

pub(crate) type DedupKey = (Platform, EventId);

/// Remembers keys for `ttl`, at most `capacity` of them (the oldest are forgotten first).
#[derive(Debug)]
pub(crate) struct Dedup {
    ttl: Duration,
    capacity: usize,
    seen: HashSet<DedupKey>,
    order: VecDeque<(Instant, DedupKey)>,
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

    pub(crate) fn contains(&self, key: &DedupKey) -> bool {
        self.enabled() && self.seen.contains(key)
    }

    /// Remembers `key`; returns false if it was already remembered.
    pub(crate) fn insert(&mut self, key: DedupKey, now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        if self.seen.len() >= self.capacity
            && !self.seen.contains(&key)
            && let Some((_, old)) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back((now, key));
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

    fn key(id: &str) -> DedupKey {
        (Platform::TEST, EventId::new(id))
    }

    #[tokio::test(start_paused = true)]
    async fn forgets_after_ttl_and_beyond_capacity() {
        let mut d = Dedup::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        assert!(d.insert(key("a"), t0));
        assert!(!d.insert(key("a"), t0));
        assert!(d.insert(key("b"), t0));
        // capacity 2: "a" is forgotten to make room for "c"
        assert!(d.insert(key("c"), t0));
        assert!(!d.contains(&key("a")) && d.contains(&key("b")));
        assert_eq!(d.len(), 2);
        d.expire(t0 + Duration::from_secs(11));
        assert_eq!(d.len(), 0);
        assert!(d.insert(key("b"), t0 + Duration::from_secs(11)));
    }
}
