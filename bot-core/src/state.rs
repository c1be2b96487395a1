//! Per-conversation state with optimistic concurrency.
//!
//! A [`StateStore`] keeps one JSON document per conversation, with a version that every write
//! checks: a write based on a stale read fails with [`crate::ErrorKind::StateConflict`] instead of
//! silently overwriting a concurrent one. [`MemoryStateStore`] is the default; a PostgreSQL store
//! comes with the `postgres` feature.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::error::{Error, ErrorKind};
use crate::event::{ConversationId, Platform};

/// Which conversation a state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateKey {
    /// The platform.
    pub platform: Platform,
    /// The conversation on that platform.
    pub conversation: ConversationId,
}

impl StateKey {
    /// A key for `conversation` on `platform`.
    pub fn new(platform: Platform, conversation: impl Into<ConversationId>) -> Self {
        Self {
            platform,
            conversation: conversation.into(),
        }
    }
}

/// A value with the version it was read at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version; pass it to the next write. Versions start at 1 and grow by 1 per write.
    pub version: u64,
}

/// Storage of per-conversation JSON state with version checks.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug + 'static {
    /// Reads the state of `key`, if any.
    ///
    /// # Errors
    ///
    /// Fails when the backend fails.
    async fn load(&self, key: &StateKey) -> Result<Option<Versioned<serde_json::Value>>, Error>;

    /// Writes the state of `key` if its current version is `expected` (`None`: it must not exist).
    /// Returns the new version.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StateConflict`] when the version does not match; other kinds when the backend fails.
    async fn save(
        &self,
        key: &StateKey,
        value: serde_json::Value,
        expected: Option<u64>,
    ) -> Result<u64, Error>;

    /// Deletes the state of `key` if its version is `expected`. Returns whether something was deleted.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StateConflict`] when the version does not match.
    async fn delete(&self, key: &StateKey, expected: u64) -> Result<bool, Error>;
}

/// An in-process [`StateStore`]. State is lost when the process ends.
#[derive(Default)]
pub struct MemoryStateStore {
    entries: RwLock<HashMap<StateKey, Versioned<serde_json::Value>>>,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many conversations have state.
    pub async fn len(&self) -> usize {
        self.entries.read().await.len()
    }

    /// Whether no conversation has state.
    pub async fn is_empty(&self) -> bool {
        self.entries.read().await.is_empty()
    }
}

impl fmt::Debug for MemoryStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStateStore").finish_non_exhaustive()
    }
}

fn conflict(key: &StateKey, expected: Option<u64>, actual: Option<u64>) -> Error {
    Error::new(
        ErrorKind::StateConflict,
        format!(
            "state of {}/{} changed concurrently (expected version {expected:?}, found {actual:?})",
            key.platform, key.conversation
        ),
    )
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn load(&self, key: &StateKey) -> Result<Option<Versioned<serde_json::Value>>, Error> {
        Ok(self.entries.read().await.get(key).cloned())
    }

    async fn save(
        &self,
        key: &StateKey,
        value: serde_json::Value,
        expected: Option<u64>,
    ) -> Result<u64, Error> {
        let mut entries = self.entries.write().await;
        let actual = entries.get(key).map(|v| v.version);
        if actual != expected {
            return Err(conflict(key, expected, actual));
        }
        let version = actual.unwrap_or(0) + 1;
        entries.insert(key.clone(), Versioned { value, version });
        Ok(version)
    }

    async fn delete(&self, key: &StateKey, expected: u64) -> Result<bool, Error> {
        let mut entries = self.entries.write().await;
        match entries.get(key).map(|v| v.version) {
            None => Ok(false),
            Some(v) if v == expected => {
                entries.remove(key);
                Ok(true)
            }
            actual => Err(conflict(key, Some(expected), actual)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn versions_guard_concurrent_writes() {
        let store = MemoryStateStore::new();
        let key = StateKey::new(Platform::TEST, "c1");
        assert!(store.load(&key).await.unwrap().is_none());
        let v1 = store.save(&key, json!({"n": 1}), None).await.unwrap();
        assert_eq!(v1, 1);
        // A second writer that also read "nothing" loses.
        let e = store.save(&key, json!({"n": 9}), None).await.unwrap_err();
        assert!(e.is_conflict());
        let v2 = store.save(&key, json!({"n": 2}), Some(1)).await.unwrap();
        assert_eq!(v2, 2);
        assert!(
            store
                .save(&key, json!({}), Some(1))
                .await
                .unwrap_err()
                .is_conflict()
        );
        let got = store.load(&key).await.unwrap().unwrap();
        assert_eq!(got.value, json!({"n": 2}));
        assert!(store.delete(&key, 1).await.unwrap_err().is_conflict());
        assert!(store.delete(&key, 2).await.unwrap());
        assert!(store.is_empty().await);
    }
}
