//! [`MemoryStateStore`]: state in the process, bounded.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::RwLock;
use tokio::time::Instant;

use super::{StateKey, StateStore, Versioned, conflict};
use crate::error::Error;

/// How many documents a [`MemoryStateStore::new`] keeps at most.
pub const DEFAULT_MEMORY_STATE_CAPACITY: usize = 100_000;

struct Entry {
    value: serde_json::Value,
    version: u64,
    expires_at: Option<Instant>,
    /// The write's number, its place in `by_write`.
    written: u64,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<StateKey, Entry>,
    /// Keys by their last write, oldest first: who goes when the store is full.
    by_write: BTreeMap<u64, StateKey>,
    /// Numbers writes, and versions: one counter for the store, so that a key written again
    /// after it expired or was forgotten never gets back a version a stale writer holds.
    writes: u64,
    evicted: u64,
}

impl Entries {
    fn remove(&mut self, key: &StateKey) -> Option<Entry> {
        let entry = self.by_key.remove(key)?;
        self.by_write.remove(&entry.written);
        Some(entry)
    }

    /// Makes room for one more key: drops what expired, then the least recently written.
    fn make_room(&mut self, capacity: usize, now: Instant) {
        if self.by_key.len() < capacity {
            return;
        }
        let expired: Vec<StateKey> = (self.by_key.iter())
            .filter(|(_, entry)| !entry.live(now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            self.remove(key);
        }
        while self.by_key.len() >= capacity {
            let Some((_, oldest)) = self.by_write.pop_first() else {
                break;
            };
            self.by_key.remove(&oldest);
            self.evicted += 1;
        }
    }
}

/// An in-process [`StateStore`]. State is lost when the process ends.
///
/// Bounded: past its capacity ([`DEFAULT_MEMORY_STATE_CAPACITY`] documents unless told
/// otherwise), a write of a new key first drops the documents past their time-to-live, then
/// forgets the least recently written ones ([`MemoryStateStore::evicted`] counts them). Time is
/// Tokio's, so tests with paused time see documents expire as the clock advances.
pub struct MemoryStateStore {
    entries: RwLock<Entries>,
    capacity: usize,
}

impl Default for MemoryStateStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_MEMORY_STATE_CAPACITY)
    }
}

impl MemoryStateStore {
    /// An empty store keeping at most [`DEFAULT_MEMORY_STATE_CAPACITY`] documents.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store keeping at most `capacity` documents (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: RwLock::default(),
            capacity: capacity.max(1),
        }
    }

    /// How many documents are kept, those past their time-to-live and not yet dropped included.
    pub async fn len(&self) -> usize {
        self.entries.read().await.by_key.len()
    }

    /// Whether no document is kept.
    pub async fn is_empty(&self) -> bool {
        self.entries.read().await.by_key.is_empty()
    }

    /// How many documents were forgotten to keep within the capacity.
    pub async fn evicted(&self) -> u64 {
        self.entries.read().await.evicted
    }
}

impl fmt::Debug for MemoryStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStateStore")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn load(&self, key: &StateKey) -> Result<Option<Versioned<serde_json::Value>>, Error> {
        let entries = self.entries.read().await;
        let now = Instant::now();
        Ok((entries.by_key.get(key))
            .filter(|entry| entry.live(now))
            .map(|entry| Versioned {
                value: entry.value.clone(),
                version: entry.version,
            }))
    }

    async fn save_expiring(
        &self,
        key: &StateKey,
        value: serde_json::Value,
        expected: Option<u64>,
        ttl: Option<Duration>,
    ) -> Result<u64, Error> {
        let mut entries = self.entries.write().await;
        let now = Instant::now();
        let actual = (entries.by_key.get(key))
            .filter(|entry| entry.live(now))
            .map(|entry| entry.version);
        if actual != expected {
            return Err(conflict(key, expected, actual));
        }
        if entries.remove(key).is_none() {
            entries.make_room(self.capacity, now);
        }
        entries.writes += 1;
        let written = entries.writes;
        entries.by_write.insert(written, key.clone());
        entries.by_key.insert(
            key.clone(),
            Entry {
                value,
                version: written,
                expires_at: ttl.map(|ttl| now + ttl),
                written,
            },
        );
        Ok(written)
    }

    async fn delete(&self, key: &StateKey, expected: u64) -> Result<bool, Error> {
        let mut entries = self.entries.write().await;
        let now = Instant::now();
        match entries.by_key.get(key) {
            None => Ok(false),
            Some(entry) if !entry.live(now) => {
                entries.remove(key);
                Ok(false)
            }
            Some(entry) if entry.version == expected => {
                entries.remove(key);
                Ok(true)
            }
            Some(entry) => Err(conflict(key, Some(expected), Some(entry.version))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Platform;
    use serde_json::json;

    #[tokio::test]
    async fn versions_guard_concurrent_writes() {
        let store = MemoryStateStore::new();
        let key = StateKey::new(Platform::TEST, "c1");
        assert!(store.load(&key).await.unwrap().is_none());
        let v1 = store.save(&key, json!({"n": 1}), None).await.unwrap();
        // A second writer that also read "nothing" loses.
        let e = store.save(&key, json!({"n": 9}), None).await.unwrap_err();
        assert!(e.is_conflict());
        let v2 = store.save(&key, json!({"n": 2}), Some(v1)).await.unwrap();
        assert!(v2 > v1);
        assert!(
            store
                .save(&key, json!({}), Some(v1))
                .await
                .unwrap_err()
                .is_conflict()
        );
        let got = store.load(&key).await.unwrap().unwrap();
        assert_eq!(got.value, json!({"n": 2}));
        assert!(store.delete(&key, v1).await.unwrap_err().is_conflict());
        assert!(store.delete(&key, v2).await.unwrap());
        assert!(store.is_empty().await);
    }

    #[tokio::test]
    async fn scopes_are_separate_documents() {
        let store = MemoryStateStore::new();
        let keys = [
            StateKey::new(Platform::DISCORD, "chan"),
            StateKey::user(Platform::DISCORD, "chan"),
            StateKey::user_in_conversation(Platform::DISCORD, "chan", "alice"),
            StateKey::user_in_conversation(Platform::DISCORD, "chan", "bob"),
            StateKey::user(Platform::LINE, "chan"),
            StateKey::app("chan"),
        ];
        for (n, key) in keys.iter().enumerate() {
            store.save(key, json!(n), None).await.unwrap();
        }
        for (n, key) in keys.iter().enumerate() {
            assert_eq!(
                store.load(key).await.unwrap().unwrap().value,
                json!(n),
                "{key}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_document_past_its_ttl_reads_as_none_and_its_version_is_never_reused() {
        let store = MemoryStateStore::new();
        let key = StateKey::user(Platform::TEST, "u");
        let v1 = (store.save_expiring(&key, json!(1), None, Some(Duration::from_secs(60))))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(store.load(&key).await.unwrap().unwrap().version, v1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(store.load(&key).await.unwrap().is_none());
        // A writer that read it before it expired loses; one that read nothing wins.
        assert!(
            store
                .save(&key, json!(2), Some(v1))
                .await
                .unwrap_err()
                .is_conflict()
        );
        let v2 = store.save(&key, json!(3), None).await.unwrap();
        assert_ne!(v2, v1);
        assert_eq!(store.load(&key).await.unwrap().unwrap().value, json!(3));
    }

    #[tokio::test(start_paused = true)]
    async fn past_capacity_the_expired_go_first_then_the_least_recently_written() {
        let store = MemoryStateStore::with_capacity(3);
        let key = |n: u32| StateKey::new(Platform::TEST, format!("c{n}"));
        store.save(&key(1), json!(1), None).await.unwrap();
        let v2 = store.save(&key(2), json!(2), None).await.unwrap();
        (store.save_expiring(&key(3), json!(3), None, Some(Duration::from_secs(1))))
            .await
            .unwrap();
        // Rewritten: now the most recent.
        let v1 = store.load(&key(1)).await.unwrap().unwrap().version;
        store.save(&key(1), json!(10), Some(v1)).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        // Full: c3 expired and goes, nobody is evicted.
        store.save(&key(4), json!(4), None).await.unwrap();
        assert_eq!((store.len().await, store.evicted().await), (3, 0));
        // Full again: c2, the least recently written, goes.
        store.save(&key(5), json!(5), None).await.unwrap();
        assert_eq!((store.len().await, store.evicted().await), (3, 1));
        assert!(store.load(&key(2)).await.unwrap().is_none());
        assert!(
            store
                .save(&key(2), json!(2), Some(v2))
                .await
                .unwrap_err()
                .is_conflict()
        );
        for n in [1, 4, 5] {
            assert!(store.load(&key(n)).await.unwrap().is_some(), "c{n}");
        }
    }
}
