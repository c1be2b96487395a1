//! [`SharedLimits`]: a store and the settings of the limits kept in it, [`SharedLimitStats`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::limiter::SharedLimit;
use super::store::RateStore;
use crate::error::Error;

/// Default [`SharedLimitsBuilder::batch_period`].
pub const DEFAULT_BATCH_PERIOD: Duration = Duration::from_millis(10);
/// Default [`SharedLimitsBuilder::store_timeout`].
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(250);
/// Default [`SharedLimitsBuilder::store_retry`].
pub const DEFAULT_STORE_RETRY: Duration = Duration::from_secs(1);
/// Default [`SharedLimitsBuilder::assumed_processes`].
pub const DEFAULT_ASSUMED_PROCESSES: u32 = 4;
/// Default [`SharedLimitsBuilder::live_window`].
pub const DEFAULT_LIVE_WINDOW: Duration = Duration::from_secs(60);

/// The settings of every limit of one [`SharedLimits`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) batch_period: Duration,
    pub(crate) grace: Duration,
    pub(crate) horizon: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) store_retry: Duration,
    pub(crate) assumed_processes: u32,
    pub(crate) live_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch_period: DEFAULT_BATCH_PERIOD,
            grace: DEFAULT_BATCH_PERIOD,
            horizon: DEFAULT_BATCH_PERIOD,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            store_retry: DEFAULT_STORE_RETRY,
            assumed_processes: DEFAULT_ASSUMED_PROCESSES,
            live_window: DEFAULT_LIVE_WINDOW,
        }
    }
}

impl Settings {
    /// The rate `r` a limit of `limit` calls a second runs at: the largest with
    /// `r * (1 s + grace + 2 * L) <= limit`, `L` the longest slot of one reservation
    /// (`max(batch_period, 1 / r)`), as the module docs prove.
    pub(crate) fn effective_rate(&self, limit: u32) -> Result<f64, Error> {
        let limit = f64::from(limit);
        let period = self.batch_period.as_secs_f64();
        let grace = self.grace.as_secs_f64();
        let batched = limit / (1.0 + grace + 2.0 * period);
        if batched * period >= 1.0 {
            return Ok(batched);
        }
        // One token per reservation, each slot `1 / r` long: r * (1 + grace) + 2 <= limit.
        if limit < 3.0 {
            return Err(Error::config(format!(
                "rate limit: a shared limit needs at least 3 calls a second to stay under its \
                 limit in every second (got {limit})"
            )));
        }
        Ok((limit - 2.0) / (1.0 + grace))
    }

    /// The local share's spacing for a limit running at one call every `interval`, with
    /// `processes` live: `1 s / floor(r / processes)`, so that no second holds more than
    /// `floor(r / processes)` of this process's calls; one call every `processes` intervals
    /// when that is below one a second.
    pub(crate) fn share_spacing(&self, interval: Duration, processes: u32) -> Duration {
        let rate = 1.0 / interval.as_secs_f64();
        let per_second = (rate / f64::from(processes)).floor();
        if per_second >= 1.0 {
            Duration::from_nanos((1e9 / per_second).ceil() as u64)
        } else {
            interval * processes
        }
    }

    /// The pause at the start of an outage before the local share begins: every token reserved
    /// before it (by any process) is spent by then, with room for one call per process.
    pub(crate) fn quiet_period(&self, interval: Duration, processes: u32) -> Duration {
        self.horizon + self.batch_period.max(interval) + self.grace + interval * processes
    }
}

/// Hot counters of the limits of one [`SharedLimits`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) reservations: AtomicU64,
    pub(crate) tokens_reserved: AtomicU64,
    pub(crate) tokens_expired: AtomicU64,
    pub(crate) acquired: AtomicU64,
    pub(crate) acquired_fallback: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) outages: AtomicU64,
    pub(crate) recoveries: AtomicU64,
    pub(crate) late_answers: AtomicU64,
}

/// What the limits of one [`SharedLimits`] did so far ([`SharedLimits::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SharedLimitStats {
    /// Reservations asked of the store (answered, refused or failed): the store round trips.
    pub reservations: u64,
    /// Tokens the store granted.
    pub tokens_reserved: u64,
    /// Granted tokens not spent before their slot (and grace) ended.
    pub tokens_expired: u64,
    /// Calls admitted with the store's tokens.
    pub acquired: u64,
    /// Calls admitted by the local share while the store was down (`bot.ratelimit.fallback`).
    pub acquired_fallback: u64,
    /// Reservations that failed or timed out.
    pub store_errors: u64,
    /// Outages: times a limit went from the store to its local share.
    pub outages: u64,
    /// Outages over: hand-overs back to the store completed.
    pub recoveries: u64,
    /// Answers that came too late for their tokens to be spent.
    pub late_answers: u64,
}

/// Rate limits shared by every process that uses the same store: a [`RateStore`] and the
/// settings of the [`SharedLimit`]s made from it. Give it to an API client with
/// [`ConfigureApi::shared_limits`](crate::api::ConfigureApi::shared_limits), or make limits
/// of your own with [`SharedLimits::limit`]. Cheap to clone; clones share the store and the
/// statistics.
#[derive(Clone)]
pub struct SharedLimits {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn RateStore>,
    settings: Settings,
    member: Arc<str>,
    counters: Arc<Counters>,
    metrics_registered: AtomicBool,
}

impl fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimits")
            .field("store", &self.inner.store.name())
            .field("member", &self.inner.member)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Limits kept in `store`, with the default settings.
    pub fn new(store: impl RateStore) -> Self {
        Self::builder(store).build_unchecked()
    }

    /// Starts configuring limits kept in `store`.
    pub fn builder(store: impl RateStore) -> SharedLimitsBuilder {
        SharedLimitsBuilder {
            store: Arc::new(store),
            settings: Settings::default(),
            grace: None,
        }
    }

    /// Limits kept in the pool's PostgreSQL (tables of migration 5: run
    /// [`pg::migrate`](crate::pg::migrate) first), with the default settings.
    ///
    /// # Errors
    ///
    /// As [`PgRateStore::new`](super::PgRateStore::new).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(pool: &crate::pg::PgPool) -> Result<Self, Error> {
        Ok(Self::new(super::PgRateStore::new(pool)?))
    }

    /// Limits kept in the Redis at `url` (`redis://host:port/db`), with the default settings.
    /// Nothing is connected yet: the first reservation connects.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL is invalid.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(url: &str) -> Result<Self, Error> {
        Ok(Self::new(super::RedisRateStore::new(url)?))
    }

    /// Limits in the Redis of `REDIS_URL` when it is set, `None` otherwise (then use
    /// [`SharedLimits::postgres`], for example).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when `REDIS_URL` is invalid, or set
    /// while bot-core was built without its feature `redis`.
    pub fn redis_from_env() -> Result<Option<Self>, Error> {
        let url = match std::env::var(super::REDIS_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => return Ok(None),
        };
        #[cfg(feature = "redis")]
        {
            Self::redis(url.trim()).map(Some)
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = url;
            Err(Error::config(format!(
                "rate limit: {} is set but bot-core was built without its feature `redis`",
                super::REDIS_URL_ENV
            )))
        }
    }

    /// What an adapter's `from_env` shares its clients' rate limits in: the Redis at `url` (the
    /// value of `REDIS_URL`) when one is given and bot-core has its feature `redis` (an adapter's
    /// feature `redis` turns it on); `None` otherwise, with a warning when a URL is given without
    /// the feature (the variable may be the application's own: it is not an error then, and
    /// each process keeps its own limits).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL is invalid.
    pub fn for_adapter_env(platform: &str, url: Option<&str>) -> Result<Option<Self>, Error> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        #[cfg(feature = "redis")]
        {
            let _ = platform;
            Self::redis(url).map(Some)
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = url;
            tracing::warn!(
                platform,
                "{} is set but bot-core was built without its feature `redis`: this process \
                 keeps its own rate limits (turn on the adapter's feature `redis` to share them)",
                super::REDIS_URL_ENV
            );
            Ok(None)
        }
    }

    /// A limit of `per_second` calls a second under `key`, shared with every process that
    /// limits `key` in the same store. Limits made with equal keys in one process should be
    /// one limit (clone it): two would each reserve tokens of their own.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when `key` is empty or longer than 200
    /// bytes, or `per_second` is below 3.
    pub fn limit(&self, key: impl Into<String>, per_second: u32) -> Result<SharedLimit, Error> {
        let key = key.into();
        if key.is_empty() || key.len() > 200 {
            return Err(Error::config(format!(
                "rate limit: a key must be 1 to 200 bytes long (got {} bytes)",
                key.len()
            )));
        }
        SharedLimit::new(
            key,
            per_second,
            self.inner.settings,
            self.inner.store.clone(),
            self.inner.member.clone(),
            self.inner.counters.clone(),
        )
    }

    /// The store's name (`postgres`, `redis`, `memory`).
    pub fn store_name(&self) -> &'static str {
        self.inner.store.name()
    }

    /// This process's id in the store's count of live processes.
    pub fn member(&self) -> &str {
        &self.inner.member
    }

    /// What the limits made from this value did so far.
    pub fn stats(&self) -> SharedLimitStats {
        let c = &*self.inner.counters;
        SharedLimitStats {
            reservations: c.reservations.load(Ordering::Relaxed),
            tokens_reserved: c.tokens_reserved.load(Ordering::Relaxed),
            tokens_expired: c.tokens_expired.load(Ordering::Relaxed),
            acquired: c.acquired.load(Ordering::Relaxed),
            acquired_fallback: c.acquired_fallback.load(Ordering::Relaxed),
            store_errors: c.store_errors.load(Ordering::Relaxed),
            outages: c.outages.load(Ordering::Relaxed),
            recoveries: c.recoveries.load(Ordering::Relaxed),
            late_answers: c.late_answers.load(Ordering::Relaxed),
        }
    }

    /// Exports the statistics as metrics of `telemetry` (once; later calls do nothing):
    /// `bot.ratelimit.fallback` (calls admitted by the local share while the store was down),
    /// `bot.ratelimit.reservations` (store round trips) and `bot.ratelimit.store_errors`, each
    /// with the store's name as `store`. An API client given these limits does it when it gets
    /// its telemetry.
    pub fn register_metrics(&self, telemetry: &crate::Telemetry) {
        use opentelemetry::KeyValue;
        if self.inner.metrics_registered.swap(true, Ordering::SeqCst) {
            return;
        }
        let meter = telemetry.meter();
        let store = self.inner.store.name();
        let counter =
            |name: &'static str, description: &'static str, read: fn(&Counters) -> u64| {
                let weak = Arc::downgrade(&self.inner.counters);
                meter
                    .u64_observable_counter(name)
                    .with_description(description)
                    .with_callback(move |o| {
                        if let Some(c) = weak.upgrade() {
                            o.observe(read(&c), &[KeyValue::new("store", store)]);
                        }
                    })
                    .build();
            };
        counter(
            "bot.ratelimit.fallback",
            "Calls admitted by the local share of a shared rate limit while its store was down",
            |c| c.acquired_fallback.load(Ordering::Relaxed),
        );
        counter(
            "bot.ratelimit.reservations",
            "Token reservations asked of the shared rate limit store",
            |c| c.reservations.load(Ordering::Relaxed),
        );
        counter(
            "bot.ratelimit.store_errors",
            "Reservations of the shared rate limit store that failed or timed out",
            |c| c.store_errors.load(Ordering::Relaxed),
        );
    }
}

/// Configures [`SharedLimits`] ([`SharedLimits::builder`]).
#[must_use]
pub struct SharedLimitsBuilder {
    store: Arc<dyn RateStore>,
    settings: Settings,
    grace: Option<Duration>,
}

impl fmt::Debug for SharedLimitsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimitsBuilder")
            .field("store", &self.store.name())
            .field("settings", &self.settings)
            .finish()
    }
}

impl SharedLimitsBuilder {
    /// The longest slot one reservation takes (default [`DEFAULT_BATCH_PERIOD`], 1 ms to 1 s):
    /// a reservation takes at most `limit * batch_period` tokens. Longer periods mean fewer
    /// round trips to the store and more headroom (three periods in every second).
    pub fn batch_period(mut self, period: Duration) -> Self {
        self.settings.batch_period = period;
        self.settings.horizon = period;
        self
    }

    /// How long after its slot a reserved token may still be spent (default: the batch period,
    /// at most 1 s); part of the headroom.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// How long a reservation may take before the store counts as down (default
    /// [`DEFAULT_STORE_TIMEOUT`]).
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.settings.store_timeout = timeout;
        self
    }

    /// How long a limit stays on its local share before asking the store again (default
    /// [`DEFAULT_STORE_RETRY`]); also, with the time-out, the hand-over after it answers again.
    pub fn store_retry(mut self, retry: Duration) -> Self {
        self.settings.store_retry = retry;
        self
    }

    /// The processes a limit assumes share it when the store is down and it never reached it
    /// (default [`DEFAULT_ASSUMED_PROCESSES`]); one that reached it uses the live processes
    /// it counted last.
    pub fn assumed_processes(mut self, processes: u32) -> Self {
        self.settings.assumed_processes = processes;
        self
    }

    /// A process that reserved nothing for this long no longer counts as live (default
    /// [`DEFAULT_LIVE_WINDOW`]).
    pub fn live_window(mut self, window: Duration) -> Self {
        self.settings.live_window = window;
        self
    }

    /// The limits.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the batch period is not within
    /// 1 ms to 1 s, the grace above 1 s, the time-out or the retry interval zero, the
    /// assumed processes zero, or the live window under 1 s.
    pub fn build(self) -> Result<SharedLimits, Error> {
        let s = &self.settings;
        let fail = |what: &str| Err(Error::config(format!("rate limit: {what}")));
        if s.batch_period < Duration::from_millis(1) || s.batch_period > Duration::from_secs(1) {
            return fail("the batch period must be within 1 ms and 1 s");
        }
        if self.grace.is_some_and(|g| g > Duration::from_secs(1)) {
            return fail("the grace must be at most 1 s");
        }
        if s.store_timeout.is_zero() || s.store_retry.is_zero() {
            return fail("the store's time-out and retry interval must be above zero");
        }
        if s.assumed_processes == 0 {
            return fail("the assumed processes must be at least 1");
        }
        if s.live_window < Duration::from_secs(1) {
            return fail("the live window must be at least 1 s");
        }
        Ok(self.build_unchecked())
    }

    fn build_unchecked(self) -> SharedLimits {
        let mut settings = self.settings;
        settings.grace = self.grace.unwrap_or(settings.batch_period);
        let member = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        SharedLimits {
            inner: Arc::new(Inner {
                store: self.store,
                settings,
                member: member.into(),
                counters: Arc::new(Counters::default()),
                metrics_registered: AtomicBool::new(false),
            }),
        }
    }
}
