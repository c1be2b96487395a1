//! Readiness of the bot's parts: any adapter component (a gateway shard, a web chat socket) can
//! say it cannot take events right now, and `/readyz` answers 503 naming it.
//!
//! [`Readiness`] is the bot's registry, reached through [`crate::Ingress::readiness`]; a component
//! registers with [`Readiness::component`] and holds the [`Component`] handle it returns. A
//! component starts ready, reports [`Component::set_not_ready`] with a reason while it is stuck,
//! and [`Component::set_ready`] once it works again; dropping the handle forgets it.
//!
//! # Examples
//!
//! ```
//! use bot_core::readiness::Readiness;
//!
//! let readiness = Readiness::default();
//! let shard = readiness.component("discord shard 0");
//! shard.set_not_ready("the queue refuses events");
//! assert!(!readiness.is_ready());
//! assert_eq!(readiness.not_ready()[0].0, "discord shard 0");
//! shard.set_ready();
//! assert!(readiness.is_ready());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The readiness of every registered component. Cloning is cheap; clones share the registry.
#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<Registry>,
}

#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    /// Components not ready right now: `/readyz` reads this without taking the lock.
    not_ready: AtomicUsize,
    components: Mutex<BTreeMap<u64, Entry>>,
}

struct Entry {
    name: String,
    reason: Option<String>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.components.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the reason of component `id` and keeps the not-ready count in step.
    fn set(&self, id: u64, reason: Option<String>) {
        let mut components = self.lock();
        let Some(entry) = components.get_mut(&id) else {
            return;
        };
        match (entry.reason.is_some(), reason.is_some()) {
            (false, true) => {
                self.not_ready.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.not_ready.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        entry.reason = reason;
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("not_ready", &self.not_ready())
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// Registers a component named `name` (shown by `/readyz` while it is not ready), ready.
    pub fn component(&self, name: impl Into<String>) -> Component {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.lock().insert(
            id,
            Entry {
                name: name.into(),
                reason: None,
            },
        );
        Component {
            id,
            registry: self.inner.clone(),
        }
    }

    /// Whether every registered component is ready.
    pub fn is_ready(&self) -> bool {
        self.inner.not_ready.load(Ordering::Acquire) == 0
    }

    /// The components not ready, as (name, reason), in registration order.
    pub fn not_ready(&self) -> Vec<(String, String)> {
        self.inner
            .lock()
            .values()
            .filter_map(|e| e.reason.as_ref().map(|r| (e.name.clone(), r.clone())))
            .collect()
    }
}

/// One component's handle on the bot's [`Readiness`]; dropping it unregisters the component.
pub struct Component {
    id: u64,
    registry: Arc<Registry>,
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Component")
            .field("id", &self.id)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl Component {
    /// Reports the component ready again.
    pub fn set_ready(&self) {
        self.registry.set(self.id, None);
    }

    /// Reports the component not ready, saying why (`/readyz` shows it: no secrets in it).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.registry.set(self.id, Some(reason.into()));
    }

    /// Whether the component is ready.
    pub fn is_ready(&self) -> bool {
        self.registry
            .lock()
            .get(&self.id)
            .is_none_or(|e| e.reason.is_none())
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.registry.set(self.id, None);
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_count_until_ready_again_or_dropped() {
        let readiness = Readiness::default();
        let a = readiness.component("a");
        let b = readiness.component("b");
        assert!(readiness.is_ready());
        a.set_not_ready("stuck");
        a.set_not_ready("still stuck");
        b.set_not_ready("down");
        assert!(!readiness.is_ready());
        assert_eq!(
            readiness.not_ready(),
            [
                ("a".to_owned(), "still stuck".to_owned()),
                ("b".to_owned(), "down".to_owned())
            ]
        );
        a.set_ready();
        assert!(!readiness.is_ready());
        drop(b);
        assert!(readiness.is_ready());
        assert!(readiness.not_ready().is_empty());
        assert!(a.is_ready());
    }
}
