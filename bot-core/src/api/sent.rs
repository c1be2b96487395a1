//! [`SentKeys`]: a bounded memory of what a client sent, may have sent, or is sending now.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::client::now;
use super::dispatch::Dispatch;
use super::error::{ApiError, ApiErrorKind};

/// Keys of sends a client made (or may have made), each remembered for a time, at most a count of
/// them, the oldest forgotten first: a retried handler skips a send that went out already where
/// the platform offers no idempotency key (or a single-use token), instead of sending it twice.
///
/// A key held by a live [`Mark`] is *in flight*: an attempt of the handler is sending it now and
/// its outcome is not known yet. A concurrent attempt of the same handler (a redelivery while the
/// first still runs) neither skips it nor sends it too: [`SentKeys::claim`] waits for the outcome.
/// A key in flight neither expires nor is pushed out by newer keys: forgetting it would let the
/// waiting attempt send while the first still does. It counts against the bound, so the keys
/// settled are forgotten first; when only keys in flight are left, the memory holds more than
/// its bound (as many as there are calls in flight) rather than drop one. Its time to live
/// starts when its mark ends.
///
/// The memory keeps a 128-bit keyed fingerprint of each key, not the key, and times as
/// nanoseconds in one word: some 49 bytes a settled key (its table slot and its place in the
/// expiry order) whatever the key's type, against 73 with `Instant`s and 145 for a LINE reply's
/// `(EventId, u32)` kept whole. Two keys would have to share a
/// fingerprint for one send to be skipped; among the 100,000 keys a client remembers at most,
/// the chance that any two do is below 2^-94.
#[derive(Debug)]
pub struct SentKeys<K> {
    /// The time to live in nanoseconds.
    ttl: u64,
    /// What the memory's times count from ([`SentKeys::stamp`]).
    start: Instant,
    max: usize,
    keys: Mutex<Remembered>,
    /// Two independently keyed SipHash instances, one for each half of a fingerprint.
    hashers: (RandomState, RandomState),
    /// Woken whenever a key leaves the in-flight state (kept, forgotten, or overwritten), or a
    /// sweep forgets keys.
    settled: Notify,
    keys_of: PhantomData<fn(&K)>,
}

/// What the memory keeps of a key: 128 bits, as two halves so that an entry needs no 16-byte
/// alignment (a `u128` would pad each table slot from 40 bytes to 48).
type Fingerprint = (u64, u64);

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

/// A time of the memory: nanoseconds from its start, plus [`STAMP_ZERO`] so that times before
/// the start (given to [`SentKeys::insert_at`]) count too; below [`IN_FLIGHT`].
type Stamp = u64;

/// The stamp of the memory's start: times up to 146 years before and after it are told apart.
const STAMP_ZERO: Stamp = 1 << 62;

/// The bit of an [`Entry`] that says its key is in flight.
const IN_FLIGHT: u64 = 1 << 63;

/// A remembered key, in one word: when it was remembered (or its mark ended), a [`Stamp`], or,
/// while it is in flight, [`IN_FLIGHT`] with the number of the mark holding it (a key in flight
/// has no time: its time to live starts when its mark ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry(u64);

impl Entry {
    fn settled(at: Stamp) -> Self {
        Self(at)
    }

    fn held(holder: NonZeroU64) -> Self {
        Self(IN_FLIGHT | holder.get())
    }

    /// The mark holding the key, while it is in flight.
    fn holder(self) -> Option<u64> {
        (self.0 & IN_FLIGHT != 0).then_some(self.0 & !IN_FLIGHT)
    }
}

/// The keys remembered, the order in which the settled ones were remembered (for expiry and the
/// bound; keys in flight join it when their mark keeps them), and the next mark's number.
#[derive(Debug)]
struct Remembered {
    set: HashMap<Fingerprint, Entry>,
    order: VecDeque<(Stamp, Fingerprint)>,
    next_mark: NonZeroU64,
}

impl<K: Hash + Eq + Clone> SentKeys<K> {
    /// Remembers each key for `ttl`, at most `max` keys (more only while more are in flight).
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl: u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX),
            start: now(),
            max: max.max(1),
            keys: Mutex::new(Remembered {
                set: HashMap::new(),
                order: VecDeque::new(),
                next_mark: NonZeroU64::MIN,
            }),
            hashers: (RandomState::new(), RandomState::new()),
            settled: Notify::new(),
            keys_of: PhantomData,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Remembered> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `at` as a time of the memory, saturating some 146 years from its start.
    fn stamp(&self, at: Instant) -> Stamp {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match at.checked_duration_since(self.start) {
            Some(after) => STAMP_ZERO.saturating_add(nanos(after)).min(IN_FLIGHT - 1),
            None => STAMP_ZERO.saturating_sub(nanos(self.start.duration_since(at))),
        }
    }

    fn fingerprint(&self, key: &K) -> Fingerprint {
        (self.hashers.0.hash_one(key), self.hashers.1.hash_one(key))
    }

    /// Whether `key` was sent (or may have been, or is being sent) and is still remembered.
    pub fn contains(&self, key: &K) -> bool {
        self.state(key) != KeyState::Unknown
    }

    /// What is known of `key` now.
    pub fn state(&self, key: &K) -> KeyState {
        let now = self.stamp(now());
        self.lock().state(self.fingerprint(key), now, self.ttl)
    }

    /// Remembers `key` as sent now.
    pub fn insert(&self, key: K) {
        self.insert_at(key, now());
    }

    /// Remembers `key` as sent at `now`, first forgetting settled keys older than the time to
    /// live and the oldest settled ones beyond the count.
    pub fn insert_at(&self, key: K, now: Instant) {
        let key = self.fingerprint(&key);
        let now = self.stamp(now);
        self.lock().insert(key, now, None, self.ttl, self.max);
        self.settled.notify_waiters();
    }

    /// Forgets `key` (a send that turned out not to have been made).
    pub fn remove(&self, key: &K) {
        let key = self.fingerprint(key);
        self.lock().forget(key);
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
        self.hold_when_settled(key, dispatch, deadline, || Some(None), Some)
            .await
    }

    /// Takes `key` in flight for a call made within `dispatch`'s scope whatever is known of it,
    /// once no other attempt holds it (waiting as [`SentKeys::claim`] does). For a call that
    /// goes ahead even after an earlier attempt may have made it (a single-use reply token,
    /// which the platform refuses the second time): a concurrent attempt waits for this one's
    /// outcome instead of making the call at the same time. [`Mark::was_sent`] tells whether
    /// the key was remembered as sent; such a mark keeps it however it ends.
    ///
    /// # Errors
    ///
    /// As [`SentKeys::claim`].
    pub async fn take(
        &self,
        key: K,
        dispatch: &Dispatch,
        deadline: Instant,
    ) -> Result<Mark<'_, K>, ApiError> {
        self.hold_when_settled(key, dispatch, deadline, || None, |mark| mark)
            .await
    }

    /// Holds `key` once it is not in flight and returns `held`'s answer for its mark, or
    /// `if_sent`'s answer when it was sent and that has one.
    async fn hold_when_settled<'a, T>(
        &'a self,
        key: K,
        dispatch: &Dispatch,
        deadline: Instant,
        mut if_sent: impl FnMut() -> Option<T>,
        held: impl Fn(Mark<'a, K>) -> T,
    ) -> Result<T, ApiError> {
        let key = self.fingerprint(&key);
        self.when_settled(deadline, move |keys, now| {
            let was_sent = match keys.state(key, now, self.ttl) {
                KeyState::InFlight => return None,
                KeyState::Sent => match if_sent() {
                    Some(skipped) => return Some(skipped),
                    None => true,
                },
                KeyState::Unknown => false,
            };
            let (holder, swept) = keys.hold(key, now, self.ttl, self.max);
            if swept {
                self.settled.notify_waiters();
            }
            let mark = Mark::new(self, key, holder, was_sent, dispatch);
            Some(held(mark))
        })
        .await
    }

    /// Waits until `key` is not in flight, and says whether it is remembered as sent.
    ///
    /// # Errors
    ///
    /// As [`SentKeys::claim`].
    pub async fn settled(&self, key: &K, deadline: Instant) -> Result<KeyState, ApiError> {
        let key = self.fingerprint(key);
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
        mut decide: impl FnMut(&mut Remembered, Stamp) -> Option<T>,
    ) -> Result<T, ApiError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            // Registered before looking, so that a key settling in between is not missed.
            let mut woken = std::pin::pin!(self.settled.notified());
            woken.as_mut().enable();
            let now = self.stamp(now());
            if let Some(decided) = decide(&mut self.lock(), now) {
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

    /// Ends mark `holder`'s hold on `key`: remembered as sent from now when `kept`, forgotten
    /// otherwise. A key the mark no longer holds (forgotten with [`SentKeys::remove`], or
    /// remembered as sent with [`SentKeys::insert`]) is left as it is.
    fn release(&self, key: Fingerprint, holder: NonZeroU64, kept: bool) {
        {
            let mut keys = self.lock();
            if keys
                .set
                .get(&key)
                .is_some_and(|e| *e == Entry::held(holder))
            {
                if kept {
                    let at = self.stamp(now());
                    keys.set.insert(key, Entry::settled(at));
                    keys.order.push_back((at, key));
                } else {
                    keys.forget(key);
                }
            }
        }
        self.settled.notify_waiters();
    }
}

impl Remembered {
    fn state(&self, key: Fingerprint, now: Stamp, ttl: u64) -> KeyState {
        match self.set.get(&key) {
            Some(entry) if entry.holder().is_some() => KeyState::InFlight,
            Some(entry) if now.saturating_sub(entry.0) < ttl => KeyState::Sent,
            _ => KeyState::Unknown,
        }
    }

    /// Remembers `key` as in flight, held by a new mark: the mark's number, and whether the
    /// sweep made room by forgetting keys.
    fn hold(&mut self, key: Fingerprint, now: Stamp, ttl: u64, max: usize) -> (NonZeroU64, bool) {
        let holder = self.next_mark;
        // Numbers below the in-flight bit, which the entry keeps them beside.
        self.next_mark = (self.next_mark.checked_add(1))
            .filter(|n| n.get() < IN_FLIGHT)
            .unwrap_or(NonZeroU64::MIN);
        let swept = self.insert(key, now, Some(holder), ttl, max);
        (holder, swept)
    }

    /// Remembers `key` at `now`, after a sweep; whether the sweep forgot keys.
    fn insert(
        &mut self,
        key: Fingerprint,
        now: Stamp,
        holder: Option<NonZeroU64>,
        ttl: u64,
        max: usize,
    ) -> bool {
        let swept = self.sweep(now, ttl, max);
        match holder {
            Some(holder) => {
                self.set.insert(key, Entry::held(holder));
            }
            None => {
                self.set.insert(key, Entry::settled(now));
                self.order.push_back((now, key));
            }
        }
        swept
    }

    /// Forgets settled keys older than `ttl`, and the oldest settled ones while the memory is
    /// full, so that one more fits; whether it forgot any. Keys in flight are counted but never
    /// forgotten here (see [`SentKeys`]).
    fn sweep(&mut self, now: Stamp, ttl: u64, max: usize) -> bool {
        let Self { set, order, .. } = self;
        let mut swept = false;
        while let Some((at, _)) = order.front() {
            // Keys are counted, not the order's entries: a key forgotten with `remove`, or
            // taken in flight again, leaves its entry behind (at most as many again as there
            // are keys).
            if now.saturating_sub(*at) < ttl && set.len() < max && order.len() < 2 * max {
                break;
            }
            // A key remembered again since has a later entry; only its last one forgets it,
            // and only once its mark ended.
            if let Some((at, old)) = order.pop_front()
                && set.get(&old).is_some_and(|e| *e == Entry::settled(at))
            {
                set.remove(&old);
                swept = true;
            }
        }
        if swept {
            self.shrink();
        }
        swept
    }

    /// Forgets `key` outright (a send not made).
    fn forget(&mut self, key: Fingerprint) {
        if self.set.remove(&key).is_some() {
            self.shrink();
        }
    }

    /// Gives memory back once the keys fill a quarter of it: a burst of calls in flight (50,000
    /// replies waiting on a slow API) leaves no table of its peak size behind.
    fn shrink(&mut self) {
        const MIN_CAPACITY: usize = 1024;
        let capacity = self.set.capacity();
        if capacity > MIN_CAPACITY && self.set.len() < capacity / 4 {
            self.set.shrink_to((self.set.len() * 2).max(MIN_CAPACITY));
        }
        let capacity = self.order.capacity();
        if capacity > MIN_CAPACITY && self.order.len() < capacity / 4 {
            self.order
                .shrink_to((self.order.len() * 2).max(MIN_CAPACITY));
        }
    }
}

/// A key held in flight for the time of a call: when the mark ends, the key is remembered as sent
/// if a request was written ([`Dispatch`]) or [`Mark::keep`] was called, forgotten otherwise. A
/// call cut off before it left the process (the handler timed out while it waited for a rate
/// limit) is sent by the retried handler, one cut off after is not (at most once). Attempts
/// waiting in [`SentKeys::claim`] learn the outcome at once. A mark that [`SentKeys::take`] got
/// for a key remembered as sent ([`Mark::was_sent`]) keeps it however it ends.
#[derive(Debug)]
pub struct Mark<'a, K: Hash + Eq + Clone> {
    sent: &'a SentKeys<K>,
    key: Option<Fingerprint>,
    holder: NonZeroU64,
    was_sent: bool,
    dispatch: Dispatch,
}

impl<'a, K: Hash + Eq + Clone> Mark<'a, K> {
    fn new(
        sent: &'a SentKeys<K>,
        key: Fingerprint,
        holder: NonZeroU64,
        was_sent: bool,
        dispatch: &Dispatch,
    ) -> Self {
        Self {
            sent,
            key: Some(key),
            holder,
            was_sent,
            dispatch: dispatch.clone(),
        }
    }

    /// Whether the key was remembered as sent (or maybe sent) when this mark took it.
    pub fn was_sent(&self) -> bool {
        self.was_sent
    }

    /// Keeps the key remembered: the send was made, or may have been.
    pub fn keep(mut self) {
        self.end(true);
    }

    /// Forgets the key: the send was not made. A key that was remembered as sent before this
    /// mark took it stays remembered: the earlier attempt may have made it.
    pub fn forget(mut self) {
        self.end(false);
    }

    fn end(&mut self, kept: bool) {
        if let Some(key) = self.key.take() {
            self.sent.release(key, self.holder, kept || self.was_sent);
        }
    }
}

impl<K: Hash + Eq + Clone> Drop for Mark<'_, K> {
    fn drop(&mut self) {
        let kept = self.dispatch.happened();
        self.end(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[test]
    fn a_key_costs_its_fingerprint_whatever_its_type() {
        // A table slot and an expiry-order entry; a LINE reply's key kept whole made these 80
        // and 64 bytes, a fingerprint with `Instant`s 40 and 32.
        assert_eq!(std::mem::size_of::<(Fingerprint, Entry)>(), 24);
        assert_eq!(std::mem::size_of::<(Stamp, Fingerprint)>(), 24);
        let sent = SentKeys::new(Duration::from_secs(10), 10);
        sent.insert((
            "a long key that would not fit in a table slot".to_owned(),
            1_u32,
        ));
        assert!(sent.contains(&(
            "a long key that would not fit in a table slot".to_owned(),
            1
        )));
        assert!(!sent.contains(&(
            "a long key that would not fit in a table slot".to_owned(),
            2
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_in_flight_leaves_no_table_of_its_size_behind() {
        let sent = SentKeys::new(Duration::from_secs(10), 100_000);
        let dispatch = Dispatch::new();
        let mut marks = Vec::new();
        for key in 0..20_000_u32 {
            marks.push(sent.claim(key, &dispatch, far()).await.unwrap().unwrap());
        }
        let peak = sent.lock().set.capacity();
        assert!(peak >= 20_000);
        for mark in marks {
            mark.forget();
        }
        assert!(sent.is_empty());
        let after = sent.lock().set.capacity();
        assert!(after <= peak / 8, "{after} slots kept of {peak}");
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

    /// Attempt 2 of one handler, waiting in [`SentKeys::claim`] for attempt 1's mark.
    fn waiting_for<'a>(
        sent: &'a SentKeys<&'static str>,
        key: &'static str,
    ) -> impl std::future::Future<Output = Result<Option<Mark<'a, &'static str>>, ApiError>> + 'a
    {
        let dispatch = Dispatch::new();
        async move { sent.claim(key, &dispatch, far()).await }
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_in_flight_outlives_its_time_and_the_bound_and_its_waiter_learns_the_outcome() {
        let ttl = Duration::from_secs(10);
        let sent = SentKeys::new(ttl, 2);
        let dispatch = Dispatch::new();
        let first = sent.claim("held", &dispatch, far()).await.unwrap().unwrap();
        let mut second = std::pin::pin!(waiting_for(&sent, "held"));
        assert!(futures::poll!(second.as_mut()).is_pending());
        // Past its time to live, and newer keys fill the memory twice over: a sweep at every
        // insert, each at capacity, the last past the time to live as well.
        for key in ["a", "b", "c"] {
            sent.insert(key);
        }
        tokio::time::advance(ttl * 2).await;
        for key in ["d", "e"] {
            sent.insert(key);
        }
        assert_eq!(sent.state(&"held"), KeyState::InFlight);
        assert!(!sent.contains(&"a"), "the settled keys go instead");
        assert!(
            futures::poll!(second.as_mut()).is_pending(),
            "the second attempt still waits: the first may yet send it"
        );
        first.keep();
        assert!(
            second.await.unwrap().is_none(),
            "made by the first attempt, so the second skips it"
        );
        assert_eq!(
            sent.state(&"held"),
            KeyState::Sent,
            "remembered from when it was kept"
        );
        tokio::time::advance(ttl).await;
        assert_eq!(sent.state(&"held"), KeyState::Unknown);

        // And forgotten by its mark: the waiter sends it itself.
        let first = sent
            .claim("again", &dispatch, far())
            .await
            .unwrap()
            .unwrap();
        let mut second = std::pin::pin!(waiting_for(&sent, "again"));
        assert!(futures::poll!(second.as_mut()).is_pending());
        tokio::time::advance(ttl * 2).await;
        sent.insert("f");
        assert!(futures::poll!(second.as_mut()).is_pending());
        first.forget();
        assert!(
            second.await.unwrap().is_some(),
            "not made: the second sends it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keys_in_flight_are_kept_beyond_the_bound_and_counted_against_it() {
        let sent = SentKeys::new(Duration::from_secs(10), 2);
        let dispatch = Dispatch::new();
        sent.insert("settled");
        let mut marks = Vec::new();
        for key in ["x", "y", "z"] {
            marks.push(sent.claim(key, &dispatch, far()).await.unwrap().unwrap());
        }
        assert_eq!(
            sent.len(),
            3,
            "more than the bound rather than drop one in flight"
        );
        assert!(
            !sent.contains(&"settled"),
            "the settled key made room first"
        );
        assert!(
            ["x", "y", "z"]
                .iter()
                .all(|k| sent.state(k) == KeyState::InFlight)
        );
        for mark in marks {
            mark.keep();
        }
        sent.insert("w");
        assert_eq!(sent.len(), 2, "back within the bound once they settle");
        assert!(sent.contains(&"z") && sent.contains(&"w"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_taken_again_is_kept_however_its_mark_ends_and_makes_others_wait() {
        let sent = SentKeys::new(Duration::from_secs(10), 10);
        let dispatch = Dispatch::new();
        let fresh = sent.take("k", &dispatch, far()).await.unwrap();
        assert!(!fresh.was_sent());
        fresh.keep();
        let again = sent.take("k", &dispatch, far()).await.unwrap();
        assert!(again.was_sent());
        assert_eq!(sent.state(&"k"), KeyState::InFlight);
        let mut sibling = std::pin::pin!(sent.take("k", &dispatch, far()));
        assert!(futures::poll!(sibling.as_mut()).is_pending());
        again.forget();
        let sibling = sibling.await.unwrap();
        assert!(sibling.was_sent(), "an earlier attempt may have sent it");
        drop(sibling); // nothing written in its scope
        assert_eq!(sent.state(&"k"), KeyState::Sent);
    }

    #[test]
    fn a_key_past_its_time_is_not_reported_before_the_next_insert_sweeps_it() {
        let sent = SentKeys::new(Duration::from_millis(1), 10);
        sent.insert_at("k", Instant::now() - Duration::from_secs(1));
        assert!(!sent.contains(&"k"));
    }
}
