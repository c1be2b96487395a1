//! [`SentKeys`]: a bounded memory of what a client sent, may have sent, or is sending now.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::error::{ApiError, ApiErrorKind};

/// Keys of sends a client made (or may have made), each remembered for a time, at most a count of
/// them, the oldest forgotten first: a retried handler skips a send that went out already where
/// the platform offers no idempotency key (or a single-use token), instead of sending it twice.
///
/// A key held by a live [`Mark`] is *in flight*: an attempt of the handler is sending it now and
/// its outcome is not known yet. A concurrent attempt of the same handler (a redelivery while the
/// first still runs) neither skips it nor sends it too: [`SentKeys::claim`] waits for the outcome.
#[derive(Debug)]
pub struct SentKeys<K> {
    ttl: Duration,
    max: usize,
    keys: Mutex<Remembered<K>>,
    /// Woken whenever a key leaves the in-flight state (kept, forgotten, or overwritten).
    settled: Notify,
}

/// What a [`SentKeys`] knows of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyState {
    /// Not remembered: never sent, forgotten as not made, or expired.
    Unknown,
    /// Held by a live [`Mark`]: being sent now, outcome unknown.
    InFlight,
    /// Sent, or may have been.
    Sent,
}

/// A remembered key: when it was remembered, and the mark holding it while it is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    at: Instant,
    holder: Option<u64>,
}

/// When each key was last remembered, the order of remembering for expiry, and the next mark's
/// number.
#[derive(Debug)]
struct Remembered<K> {
    set: HashMap<K, Entry>,
    order: VecDeque<(Instant, K)>,
    next_mark: u64,
}

impl<K: Hash + Eq + Clone> SentKeys<K> {
    /// Remembers each key for `ttl`, at most `max` keys.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            keys: Mutex::new(Remembered {
                set: HashMap::new(),
                order: VecDeque::new(),
                next_mark: 0,
            }),
            settled: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Remembered<K>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` was sent (or may have been, or is being sent) and is still remembered.
    pub fn contains(&self, key: &K) -> bool {
        self.state(key) != KeyState::Unknown
    }

    /// What is known of `key` now.
    pub fn state(&self, key: &K) -> KeyState {
        let now = Instant::now();
        self.lock().state(key, now, self.ttl)
    }

    /// Remembers `key` as sent now.
    pub fn insert(&self, key: K) {
        self.insert_at(key, Instant::now());
    }

    /// Remembers `key` as sent at `now`, first forgetting keys older than the time to live and
    /// the oldest beyond the count.
    pub fn insert_at(&self, key: K, now: Instant) {
        self.lock().insert(key, now, None, self.ttl, self.max);
        self.settled.notify_waiters();
    }

    /// Forgets `key` (a send that turned out not to have been made).
    pub fn remove(&self, key: &K) {
        self.lock().set.remove(key);
        self.settled.notify_waiters();
    }

    /// How many keys are remembered, those in flight included.
    pub fn len(&self) -> usize {
        self.lock().set.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers `key` as in flight for the time of a call made within `dispatch`'s scope (see
    /// [`Mark`]), whatever was known of it.
    pub fn mark(&self, key: K, dispatch: &Dispatch) -> Mark<'_, K> {
        let holder = self.lock().hold(key.clone(), self.ttl, self.max);
        self.settled.notify_waiters();
        Mark::new(self, key, holder, dispatch)
    }

    /// Takes `key` in flight for a call made within `dispatch`'s scope: `Some` mark when it is
    /// not remembered, `None` when it was sent (or may have been). While another attempt holds
    /// it in flight this waits for that attempt's outcome: it may yet fail without sending, and
    /// then this caller sends instead.
    ///
    /// # Errors
    ///
    /// A retryable [`ApiErrorKind::Timeout`] when the other attempt still holds the key at
    /// `deadline`: the handler is retried later, when that outcome is known.
    pub async fn claim(
        &self,
        key: K,
        dispatch: &Dispatch,
        deadline: Instant,
    ) -> Result<Option<Mark<'_, K>>, ApiError> {
        let holder = self
            .when_settled(deadline, |keys, now| {
                match keys.state(&key, now, self.ttl) {
                    KeyState::InFlight => None,
                    KeyState::Sent => Some(None),
                    KeyState::Unknown => Some(Some(keys.hold(key.clone(), self.ttl, self.max))),
                }
            })
            .await?;
        Ok(holder.map(|holder| Mark::new(self, key, holder, dispatch)))
    }

    /// Waits until `key` is not in flight, and says whether it is remembered as sent.
    ///
    /// # Errors
    ///
    /// As [`SentKeys::claim`].
    pub async fn settled(&self, key: &K, deadline: Instant) -> Result<KeyState, ApiError> {
        self.when_settled(deadline, |keys, now| {
            Some(keys.state(key, now, self.ttl)).filter(|s| *s != KeyState::InFlight)
        })
        .await
    }

    /// Runs `decide` on the memory until it decides, again each time a key settles, giving up
    /// at `deadline`.
    async fn when_settled<T>(
        &self,
        deadline: Instant,
        mut decide: impl FnMut(&mut Remembered<K>, Instant) -> Option<T>,
    ) -> Result<T, ApiError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            // Registered before looking, so that a key settling in between is not missed.
            let mut woken = std::pin::pin!(self.settled.notified());
            woken.as_mut().enable();
            if let Some(decided) = decide(&mut self.lock(), Instant::now()) {
                return Ok(decided);
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Err(ApiError::new(
                    ApiErrorKind::Timeout,
                    "another attempt of this handler is still sending this part; retry later",
                ));
            }
        }
    }

    /// Ends mark `holder`'s hold on `key`: remembered as sent when `kept`, forgotten otherwise.
    /// A key the mark no longer holds (expired, or taken by a later mark) is left as it is.
    fn release(&self, key: &K, holder: u64, kept: bool) {
        {
            let mut keys = self.lock();
            if let Some(entry) = keys.set.get_mut(key)
                && entry.holder == Some(holder)
            {
                if kept {
                    entry.holder = None;
                } else {
                    keys.set.remove(key);
                }
            }
        }
        self.settled.notify_waiters();
    }
}

impl<K: Hash + Eq + Clone> Remembered<K> {
    fn state(&self, key: &K, now: Instant, ttl: Duration) -> KeyState {
        match self.set.get(key) {
            Some(entry) if now.saturating_duration_since(entry.at) < ttl => match entry.holder {
                Some(_) => KeyState::InFlight,
                None => KeyState::Sent,
            },
            _ => KeyState::Unknown,
        }
    }

    /// Remembers `key` as in flight, held by a new mark, whose number it returns.
    fn hold(&mut self, key: K, ttl: Duration, max: usize) -> u64 {
        let holder = self.next_mark;
        self.next_mark = self.next_mark.wrapping_add(1);
        self.insert(key, Instant::now(), Some(holder), ttl, max);
        holder
    }

    fn insert(&mut self, key: K, now: Instant, holder: Option<u64>, ttl: Duration, max: usize) {
        let Self { set, order, .. } = self;
        while let Some((at, _)) = order.front() {
            // Live keys are counted, not the order's entries: a key forgotten with `remove`
            // leaves its entry behind (at most as many again as there are live keys).
            if now.saturating_duration_since(*at) < ttl && set.len() < max && order.len() < 2 * max
            {
                break;
            }
            // A key remembered again since has a later entry; only its last one forgets it.
            if let Some((at, old)) = order.pop_front()
                && set.get(&old).map(|e| e.at) == Some(at)
            {
                set.remove(&old);
            }
        }
        set.insert(key.clone(), Entry { at: now, holder });
        order.push_back((now, key));
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
    ///
    /// Not an `async fn`: one would hold `calls` twice in its state (the argument, and the
    /// task-local future it moves into), which doubled the size of every send that uses a mark
    /// (BENCHMARKS.md, issue 14's slow-api memory).
    pub fn scope<F: std::future::Future>(
        &self,
        calls: F,
    ) -> impl std::future::Future<Output = F::Output> + use<F> {
        DISPATCHED.scope(self.0.clone(), calls)
    }

    /// Whether a request was written.
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A key held in flight for the time of a call: when the mark ends, the key is remembered as sent
/// if a request was written ([`Dispatch`]) or [`Mark::keep`] was called, forgotten otherwise. A
/// call cut off before it left the process (the handler timed out while it waited for a rate
/// limit) is sent by the retried handler, one cut off after is not (at most once). Attempts
/// waiting in [`SentKeys::claim`] learn the outcome at once.
#[derive(Debug)]
pub struct Mark<'a, K: Hash + Eq + Clone> {
    sent: &'a SentKeys<K>,
    key: Option<K>,
    holder: u64,
    dispatch: Dispatch,
}

impl<'a, K: Hash + Eq + Clone> Mark<'a, K> {
    fn new(sent: &'a SentKeys<K>, key: K, holder: u64, dispatch: &Dispatch) -> Self {
        Self {
            sent,
            key: Some(key),
            holder,
            dispatch: dispatch.clone(),
        }
    }

    /// Keeps the key remembered: the send was made, or may have been.
    pub fn keep(mut self) {
        self.end(true);
    }

    /// Forgets the key: the send was not made.
    pub fn forget(mut self) {
        self.end(false);
    }

    fn end(&mut self, kept: bool) {
        if let Some(key) = self.key.take() {
            self.sent.release(&key, self.holder, kept);
        }
    }
}

impl<K: Hash + Eq + Clone> Drop for Mark<'_, K> {
    fn drop(&mut self) {
        let kept = self.dispatch.happened();
        self.end(kept);
    }
}

/// Makes `call`, part `part` of a handler's send, at most once where the platform offers no
/// idempotency key: skipped when `key` is remembered in `sent`. The key is held in flight for the
/// time of the call ([`Mark`]): a send cut off after its request was written (the handler timed
/// out, the process is stopping) counts as made, one cut off before does not; a call that failed
/// without reaching the platform is forgotten. A part that may have gone out keeps its key, and
/// its error stays retryable: a retried handler skips it and sends the parts after it. Without a
/// key, a part after the first that fails makes the error permanent: a retry would send the first
/// parts twice.
///
/// A part another attempt of the same handler is sending now (a redelivery while the first
/// attempt still runs) is neither skipped nor sent twice: this waits for that attempt's outcome
/// until `deadline` ([`SentKeys::claim`]), then skips the part if it was made and sends it if it
/// was not. Skipping at once would report the part as sent although the first attempt may still
/// fail without sending it; sending at once could show it twice.
///
/// # Errors
///
/// The call's error, for the runtime; a retryable time-out when the other attempt still sends
/// the part at `deadline`.
pub async fn send_once(
    sent: &SentKeys<crate::outbound::PartKey>,
    key: Option<crate::outbound::PartKey>,
    part: usize,
    deadline: Instant,
    call: impl std::future::Future<Output = Result<(), ApiError>>,
) -> Result<(), crate::Error> {
    let dispatch = Dispatch::new();
    let mark = match key {
        Some(key) => {
            let (event, send_index) = (key.0.clone(), key.1);
            match sent.claim(key, &dispatch, deadline).await {
                Ok(Some(mark)) => Some(mark),
                Ok(None) => {
                    tracing::debug!(
                        event = %event, send_index, part,
                        "part already sent; skipped on this retry"
                    );
                    return Ok(());
                }
                Err(e) => return Err(e.into_core(true)),
            }
        }
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
    fn a_scope_holds_its_calls_once() {
        // Held for every in-flight send: an `async fn` wrapper stored the calls twice.
        let calls = async {
            let buffer = [0u8; 1024];
            std::future::ready(()).await;
            buffer.len()
        };
        let calls_size = std::mem::size_of_val(&calls);
        let scoped = Dispatch::new().scope(calls);
        assert!(
            std::mem::size_of_val(&scoped) < calls_size + 64,
            "{} bytes to scope a future of {calls_size}",
            std::mem::size_of_val(&scoped)
        );
    }

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
        let sent = SentKeys::new(Duration::from_secs(60), 10);
        let key = || Some((crate::EventId::new("e"), 0, 0));
        // Cut off before its request was written: forgotten, the retried handler sends it.
        let waiting = send_once(&sent, key(), 0, far(), std::future::pending());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), waiting)
                .await
                .is_err()
        );
        assert!(!sent.contains(&key().unwrap()));
        // Cut off after: remembered, so a retried handler skips it.
        let written = send_once(&sent, key(), 0, far(), async {
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
            send_once(&sent, key(), 0, far(), async { panic!("sent twice") })
                .await
                .is_ok()
        );
        // Refused before reaching the platform: forgotten, the retry sends it.
        let other = || Some((crate::EventId::new("f"), 0, 0));
        let refused = ApiError::new(ApiErrorKind::RateLimited, "r");
        assert!(
            send_once(&sent, other(), 0, far(), async { Err(refused) })
                .await
                .is_err()
        );
        assert!(!sent.contains(&other().unwrap()));
        // May have been delivered: kept, and retryable for the runtime since it is remembered.
        let maybe = ApiError::new(ApiErrorKind::Timeout, "t").with_maybe_delivered(true);
        let error = send_once(&sent, other(), 0, far(), async {
            note_dispatched();
            Err(maybe)
        })
        .await
        .unwrap_err();
        assert!(error.is_retryable());
        assert!(sent.contains(&other().unwrap()));
    }

    /// A deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// Two attempts of one handler send the same part at once: the first holds it in flight
    /// until `outcome` is released, then ends with it. Returns both results and whether the
    /// second attempt's call ran.
    async fn concurrent(
        outcome: Result<(), ApiError>,
        release: bool,
    ) -> (Result<(), crate::Error>, Result<(), crate::Error>, bool) {
        let sent = SentKeys::new(Duration::from_secs(60), 10);
        let key = || Some((crate::EventId::new("e"), 0, 0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut first = std::pin::pin!(send_once(&sent, key(), 0, far(), async {
            note_dispatched();
            let _ = rx.await;
            outcome
        }));
        assert!(futures::poll!(first.as_mut()).is_pending());
        assert_eq!(sent.state(&key().unwrap()), KeyState::InFlight);
        let called = AtomicBool::new(false);
        let deadline = super::super::client::now() + Duration::from_secs(20);
        let mut second = std::pin::pin!(send_once(&sent, key(), 0, deadline, async {
            called.store(true, Ordering::SeqCst);
            Ok(())
        }));
        assert!(
            futures::poll!(second.as_mut()).is_pending(),
            "the second attempt neither skips nor sends a part in flight"
        );
        assert!(!called.load(Ordering::SeqCst));
        if release {
            tx.send(()).unwrap();
            let first = first.await;
            (first, second.await, called.load(Ordering::SeqCst))
        } else {
            let second = second.await;
            drop(tx);
            (first.await, second, called.load(Ordering::SeqCst))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_concurrent_attempt_skips_a_part_only_once_the_first_made_it() {
        let (first, second, called) = concurrent(Ok(()), true).await;
        assert!(first.is_ok() && second.is_ok());
        assert!(!called, "made by the first attempt: not sent twice");
    }

    #[tokio::test(start_paused = true)]
    async fn a_concurrent_attempt_sends_a_part_the_first_failed_to_make() {
        // A 503 after the request was written: refused, so not made.
        let refused = ApiError::new(ApiErrorKind::Server, "busy");
        let (first, second, called) = concurrent(Err(refused), true).await;
        assert!(first.is_err());
        assert!(second.is_ok());
        assert!(
            called,
            "the first attempt did not make it: the second sends it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_concurrent_attempt_gives_up_at_its_deadline_with_a_retryable_error() {
        let started = tokio::time::Instant::now();
        let (_, second, called) = concurrent(Ok(()), false).await;
        let error = second.unwrap_err();
        assert!(error.is_retryable(), "{error}");
        assert!(!called);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(19) && waited <= Duration::from_secs(21),
            "waited {waited:?}"
        );
    }

    #[test]
    fn a_key_past_its_time_is_not_reported_before_the_next_insert_sweeps_it() {
        let sent = SentKeys::new(Duration::from_millis(1), 10);
        sent.insert_at("k", Instant::now() - Duration::from_secs(1));
        assert!(!sent.contains(&"k"));
    }
}
