//! [`SentKeys`]: a bounded memory of what a client sent (or may have sent).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys of sends a client made (or may have made), each remembered for a time, at most a count of
/// them, the oldest forgotten first: a retried handler skips a send that went out already where
/// the platform offers no idempotency key (or a single-use token), instead of sending it twice.
#[derive(Debug)]
pub struct SentKeys<K> {
    ttl: Duration,
    max: usize,
    keys: Mutex<Remembered<K>>,
}

/// When each key was last sent, and the order of sends for expiry.
type Remembered<K> = (HashMap<K, Instant>, VecDeque<(Instant, K)>);

impl<K: Hash + Eq + Clone> SentKeys<K> {
    /// Remembers each key for `ttl`, at most `max` keys.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            keys: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Whether `key` was sent (or may have been) and is still remembered.
    pub fn contains(&self, key: &K) -> bool {
        let now = Instant::now();
        let guard = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .0
            .get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.ttl)
    }

    /// Remembers `key` as sent now.
    pub fn insert(&self, key: K) {
        self.insert_at(key, Instant::now());
    }

    /// Remembers `key` as sent at `now`, first forgetting keys older than the time to live and
    /// the oldest beyond the count.
    pub fn insert_at(&self, key: K, now: Instant) {
        let mut guard = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        while let Some((at, _)) = order.front() {
            // Live keys are counted, not the order's entries: a key forgotten with `remove`
            // leaves its entry behind (at most as many again as there are live keys).
            if now.saturating_duration_since(*at) < self.ttl
                && set.len() < self.max
                && order.len() < 2 * self.max
            {
                break;
            }
            // A key sent again since has a later entry; only its last one forgets it.
            if let Some((at, old)) = order.pop_front()
                && set.get(&old) == Some(&at)
            {
                set.remove(&old);
            }
        }
        set.insert(key.clone(), now);
        order.push_back((now, key));
    }

    /// Forgets `key` (a send that turned out not to have been made).
    pub fn remove(&self, key: &K) {
        let mut guard = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.remove(key);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

tokio::task_local! {
    /// Set by the client core when a call made within a [`Dispatch::scope`] writes a request.
    static DISPATCHED: Arc<AtomicBool>;
}

/// Notes, for the [`Dispatch`] scope around the current call, that a request is being written.
pub(crate) fn note_dispatched() {
    let _ = DISPATCHED.try_with(|flag| flag.store(true, Ordering::Release));
}

/// Whether the API calls made within [`Dispatch::scope`] got as far as writing a request: until
/// then nothing can have reached the platform (the call was waiting for a rate limit, or cut off
/// before it left the process).
#[derive(Debug, Clone, Default)]
pub struct Dispatch(Arc<AtomicBool>);

impl Dispatch {
    /// A scope in which nothing was written yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `calls`, noting whether any of them writes a request.
    pub async fn scope<F: std::future::Future>(&self, calls: F) -> F::Output {
        DISPATCHED.scope(self.0.clone(), calls).await
    }

    /// Whether a request was written.
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A key remembered as sent for the time of a call, forgotten when the mark is dropped unless a
/// request was written ([`Dispatch`]) or [`Mark::keep`] was called: a call cut off before it
/// left the process (the handler timed out while it waited for a rate limit) is sent by the
/// retried handler, one cut off after is not (at most once).
#[derive(Debug)]
pub struct Mark<'a, K: Hash + Eq + Clone> {
    sent: &'a SentKeys<K>,
    key: Option<K>,
    dispatch: Dispatch,
}

impl<K: Hash + Eq + Clone> SentKeys<K> {
    /// Remembers `key` for the time of a call made within `dispatch`'s scope (see [`Mark`]).
    pub fn mark(&self, key: K, dispatch: &Dispatch) -> Mark<'_, K> {
        self.insert(key.clone());
        Mark {
            sent: self,
            key: Some(key),
            dispatch: dispatch.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone> Mark<'_, K> {
    /// Keeps the key remembered: the send was made, or may have been.
    pub fn keep(mut self) {
        self.key = None;
    }

    /// Forgets the key: the send was not made.
    pub fn forget(mut self) {
        if let Some(key) = self.key.take() {
            self.sent.remove(&key);
        }
    }
}

impl<K: Hash + Eq + Clone> Drop for Mark<'_, K> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take()
            && !self.dispatch.happened()
        {
            self.sent.remove(&key);
        }
    }
}

/// Makes `call`, part `part` of a handler's send, at most once where the platform offers no
/// idempotency key: skipped when `key` is remembered in `sent`. The key is remembered for the time
/// of the call ([`Mark`]): a send cut off after its request was written (the handler timed out,
/// the process is stopping) counts as made, one cut off before does not; a call that failed
/// without reaching the platform is forgotten. A part that may have gone out keeps its key, and
/// its error stays retryable: a retried handler skips it and sends the parts after it. Without a
/// key, a part after the first that fails makes the error permanent: a retry would send the first
/// parts twice.
///
/// # Errors
///
/// The call's error, for the runtime.
pub async fn send_once(
    sent: &SentKeys<crate::outbound::PartKey>,
    key: Option<crate::outbound::PartKey>,
    part: usize,
    call: impl std::future::Future<Output = Result<(), super::ApiError>>,
) -> Result<(), crate::Error> {
    let dispatch = Dispatch::new();
    let mark = match key {
        Some(key) if sent.contains(&key) => {
            tracing::debug!(
                event = %key.0, send_index = key.1, part,
                "part already sent; skipped on this retry"
            );
            return Ok(());
        }
        Some(key) => Some(sent.mark(key, &dispatch)),
        None => None,
    };
    let keyed = mark.is_some();
    match dispatch.scope(call).await {
        Ok(()) => {
            if let Some(mark) = mark {
                mark.keep();
            }
            Ok(())
        }
        Err(e) if e.maybe_delivered() && dispatch.happened() => {
            if let Some(mark) = mark {
                mark.keep();
            }
            Err(e.into_core(keyed))
        }
        Err(e) => {
            if let Some(mark) = mark {
                mark.forget();
            }
            if !keyed && part > 0 && e.is_retryable() {
                return Err(crate::Error::from(e).permanent());
            }
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_in_count_and_age() {
        let ttl = Duration::from_secs(10);
        let sent = SentKeys::new(ttl, 3);
        let start = Instant::now();
        for i in 0..3 {
            sent.insert_at(i, start);
        }
        assert!((0..3).all(|i| sent.contains(&i)));
        sent.insert_at(3, start);
        assert!(!sent.contains(&0), "the oldest goes first when full");
        assert!((1..4).all(|i| sent.contains(&i)));
        sent.insert_at(4, start + ttl);
        assert!(
            (1..4).all(|i| !sent.contains(&i)),
            "expired keys are forgotten"
        );
        assert!(sent.contains(&4));
        assert_eq!(sent.len(), 1);
    }

    #[tokio::test]
    async fn a_part_is_remembered_before_its_call_and_forgotten_only_when_it_was_not_made() {
        use crate::api::{ApiError, ApiErrorKind};
        let sent = SentKeys::new(Duration::from_secs(60), 10);
        let key = || Some((crate::EventId::new("e"), 0, 0));
        // Cut off before its request was written: forgotten, the retried handler sends it.
        let waiting = send_once(&sent, key(), 0, std::future::pending());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), waiting)
                .await
                .is_err()
        );
        assert!(!sent.contains(&key().unwrap()));
        // Cut off after: remembered, so a retried handler skips it.
        let written = send_once(&sent, key(), 0, async {
            note_dispatched();
            std::future::pending().await
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(10), written)
                .await
                .is_err()
        );
        assert!(sent.contains(&key().unwrap()));
        assert!(
            send_once(&sent, key(), 0, async { panic!("sent twice") })
                .await
                .is_ok()
        );
        // Refused before reaching the platform: forgotten, the retry sends it.
        let other = || Some((crate::EventId::new("f"), 0, 0));
        let refused = ApiError::new(ApiErrorKind::RateLimited, "r");
        assert!(
            send_once(&sent, other(), 0, async { Err(refused) })
                .await
                .is_err()
        );
        assert!(!sent.contains(&other().unwrap()));
        // May have been delivered: kept, and retryable for the runtime since it is remembered.
        let maybe = ApiError::new(ApiErrorKind::Timeout, "t").with_maybe_delivered(true);
        let error = send_once(&sent, other(), 0, async {
            note_dispatched();
            Err(maybe)
        })
        .await
        .unwrap_err();
        assert!(error.is_retryable());
        assert!(sent.contains(&other().unwrap()));
    }

    #[test]
    fn a_key_past_its_time_is_not_reported_before_the_next_insert_sweeps_it() {
        let sent = SentKeys::new(Duration::from_millis(1), 10);
        sent.insert_at("k", Instant::now() - Duration::from_secs(1));
        assert!(!sent.contains(&"k"));
    }
}
