//! [`RateStore`]: where the shared state of a [`SharedLimit`](super::SharedLimit) lives, and
//! [`MemoryRateStore`], the store of one process (for tests and for a single process).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{BoxError, Error, ErrorKind};

/// One reservation asked of a [`RateStore`]: `tokens` calls of `key`, one every `interval`,
/// the first no earlier than the store's clock now and than the key's theoretical arrival time
/// (TAT).
#[derive(Debug, Clone, Copy)]
pub struct Reservation<'a> {
    /// The limit's key (platform, channel id, endpoint).
    pub key: &'a str,
    /// The process asking, for the count of live processes.
    pub member: &'a str,
    /// Tokens asked for, at least 1.
    pub tokens: u32,
    /// The store's time between two tokens, in microseconds (at least 1).
    pub interval_micros: u64,
    /// How far ahead of the store's clock the key's TAT may be for the reservation to be granted;
    /// beyond, nothing is reserved and [`Reserved::tat_micros`] tells when to ask again.
    pub horizon_micros: u64,
    /// A member not seen for this long no longer counts as live.
    pub live_micros: u64,
}

/// What a [`RateStore`] answered to a [`Reservation`]. Times are microseconds since the Unix
/// epoch on the store's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    /// Tokens granted: the reservation's or 0 when the TAT was beyond the horizon.
    pub granted: u32,
    /// The start of the granted slot (`granted * interval` long).
    pub start_micros: i64,
    /// The store's clock when it reserved.
    pub now_micros: i64,
    /// The key's TAT after the reservation.
    pub tat_micros: i64,
    /// Members seen within the live window, the asking one included.
    pub live: u32,
}

/// The shared state of rate limits: one theoretical arrival time per key, moved forward by
/// reservations in one atomic step on the store's own clock, and the members (processes) seen
/// per key. [`PgRateStore`](super::PgRateStore) and [`RedisRateStore`](super::RedisRateStore)
/// share it between processes; [`MemoryRateStore`] keeps it in one.
#[async_trait::async_trait]
pub trait RateStore: fmt::Debug + Send + Sync + 'static {
    /// Reserves `reservation.tokens` tokens of `reservation.key`: with `now` the store's clock,
    /// `start = max(tat, now)`; when `start <= now + horizon`, the TAT becomes
    /// `start + tokens * interval` and the tokens are granted, otherwise nothing changes. In one
    /// atomic step, so that the slots of all reservations of a key never overlap. Records the
    /// member as seen and counts the live ones.
    ///
    /// # Errors
    ///
    /// The store cannot be reached or refused the reservation; the limiter falls back to its
    /// local share.
    async fn reserve(&self, reservation: &Reservation<'_>) -> Result<Reserved, Error>;

    /// A short name for logs and [`Debug`](fmt::Debug): `postgres`, `redis`, `memory`.
    fn name(&self) -> &'static str;
}

/// A store shared behind an [`Arc`](std::sync::Arc): one store object for several
/// [`super::SharedLimits`] (or a test that watches it).
#[async_trait::async_trait]
impl<T: RateStore + ?Sized> RateStore for std::sync::Arc<T> {
    async fn reserve(&self, reservation: &Reservation<'_>) -> Result<Reserved, Error> {
        (**self).reserve(reservation).await
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }
}

/// A store error of `store`, lowercase, with its source.
pub(crate) fn store_error(store: &str, what: &str, source: impl Into<BoxError>) -> Error {
    Error::new(
        ErrorKind::Other,
        format!("rate limit store {store}: {what}"),
    )
    .with_source(source)
}

/// A [`RateStore`] in this process's memory, on tokio's clock (so that paused-time tests drive
/// it): for one process, and for tests, which can make it fail ([`MemoryRateStore::set_down`])
/// as a store that stopped would.
#[derive(Debug)]
pub struct MemoryRateStore {
    origin: tokio::time::Instant,
    origin_micros: i64,
    keys: Mutex<HashMap<String, KeyState>>,
    down: AtomicBool,
    reservations: AtomicU64,
}

#[derive(Debug, Default)]
struct KeyState {
    tat: i64,
    members: HashMap<String, i64>,
}

/// Keys and members a memory store keeps at most: beyond, reservations of new ones fail.
const MEMORY_MAX_KEYS: usize = 10_000;
const MEMORY_MAX_MEMBERS: usize = 1_000;

impl Default for MemoryRateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRateStore {
    /// An empty store, up.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            // Any fixed origin will do: the store's clock only has to move as tokio's does.
            origin_micros: 1_700_000_000_000_000,
            keys: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
            reservations: AtomicU64::new(0),
        }
    }

    /// Makes every reservation fail (`true`) as a store that stopped would, or answer again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Reservations answered so far (granted or not; failed ones not counted).
    pub fn reservations(&self) -> u64 {
        self.reservations.load(Ordering::Relaxed)
    }

    fn now_micros(&self) -> i64 {
        let elapsed = self.origin.elapsed().as_micros();
        self.origin_micros + i64::try_from(elapsed).unwrap_or(i64::MAX / 2)
    }
}

#[async_trait::async_trait]
impl RateStore for MemoryRateStore {
    async fn reserve(&self, r: &Reservation<'_>) -> Result<Reserved, Error> {
        if self.down.load(Ordering::SeqCst) {
            return Err(store_error("memory", "down", "set down by the test"));
        }
        let now = self.now_micros();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if !keys.contains_key(r.key) && keys.len() >= MEMORY_MAX_KEYS {
            return Err(store_error("memory", "too many keys", r.key.to_owned()));
        }
        let state = keys.entry(r.key.to_owned()).or_default();
        let live = i64::try_from(r.live_micros).unwrap_or(i64::MAX / 2);
        state.members.retain(|_, seen| *seen > now - live);
        if !state.members.contains_key(r.member) && state.members.len() >= MEMORY_MAX_MEMBERS {
            return Err(store_error(
                "memory",
                "too many members",
                r.member.to_owned(),
            ));
        }
        state.members.insert(r.member.to_owned(), now);
        let start = state.tat.max(now);
        let horizon = i64::try_from(r.horizon_micros).unwrap_or(i64::MAX / 2);
        let granted = if start <= now + horizon {
            let length = i64::from(r.tokens) * i64::try_from(r.interval_micros).unwrap_or(1);
            state.tat = start + length;
            r.tokens
        } else {
            0
        };
        self.reservations.fetch_add(1, Ordering::Relaxed);
        Ok(Reserved {
            granted,
            start_micros: start,
            now_micros: now,
            tat_micros: state.tat,
            live: u32::try_from(state.members.len()).unwrap_or(u32::MAX),
        })
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// Microseconds of `duration`, at least 1.
pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}
