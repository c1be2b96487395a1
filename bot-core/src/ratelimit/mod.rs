//! Rate limits shared by every process of a channel: a platform's quota (LINE's 2,000 pushes a
//! second per channel, Messenger's 300 calls a second per page) kept in PostgreSQL or Redis, so
//! that two processes together stay under it instead of each using all of it.
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn run(pool: bot_core::pg::PgPool) -> Result<(), bot_core::Error> {
//! use bot_core::ratelimit::SharedLimits;
//!
//! // In Redis when REDIS_URL is set, else in the bot's PostgreSQL (migration 5).
//! let limits = match SharedLimits::redis_from_env()? {
//!     Some(limits) => limits,
//!     None => SharedLimits::postgres(&pool)?,
//! };
//! let push = limits.limit("line:my-channel:push", 2_000)?;
//! push.acquire().await; // then send
//! # Ok(()) }
//! ```
//!
//! An API client shares its per-endpoint limits when its builder is given the limits
//! ([`ConfigureApi::shared_limits`](crate::api::ConfigureApi::shared_limits)).
//!
//! # How it works
//!
//! GCRA with a local token cache. The store keeps one *theoretical arrival time* (TAT) per key.
//! A process reserves a batch of `n` tokens in one round trip: on the store's own clock
//! (`clock_timestamp()`, Redis `TIME`), `start = max(TAT, now)`, and the TAT becomes
//! `start + n * T` (`T` = one over the rate): the batch owns the slot `[start, start + n * T)`,
//! and the slots of a key never overlap, whichever process took them. The process spends the
//! tokens from `start` on (waiting until then) and until `start + n * T + grace`; what is left
//! then expires. A reservation is granted only while `start` is at most a *horizon* (one batch
//! period) ahead of the store's clock; further ahead, the process asks again later, so nobody
//! holds tokens for the distant future.
//!
//! One reservation serves every caller waiting: its size is the callers waiting, and grows
//! (doubling) while batches run out before their slot ends, shrinking to what was used when
//! they expire; at most `limit * batch_period` (default 10 ms), so the store is asked at most
//! about a hundred times a second per key and process, however many calls go out.
//!
//! The store's clock and the process's are never assumed to agree: a reservation sent at local
//! time `t0` and answered at `t1` read the store's clock at some local time in between, so at
//! local time `t` the store's clock is at least `now + (t - t1)` and at most `now + (t - t0)`:
//! the offset between the clocks lies in `[now - t1, now - t0]`. The process keeps the
//! tightest such bounds `[lo, hi]` its answers of the last second gave, widened since by the
//! most the clocks can drift apart (1,000 ppm: ntpd slews a clock by at most 500; a faster slew,
//! chrony correcting a large offset, moves a token by what the clocks part within that second),
//! and narrows each answer's own bounds with them; bounds that disagree (the store's clock stepped, or another server
//! answers now) start again from the answer's. The process spends from `start - lo` to
//! `start + n * T + grace - hi`: every token is spent within `[start, start + n * T + grace]`
//! *on the store's clock*. So an answer delayed before the store read its clock (queued for a
//! connection or the server) is spent as a fast one is; one delayed after it by more than the
//! slot and its grace leaves nothing to spend, and three in a row count as an outage. A
//! refused reservation (the TAT beyond the horizon) is asked again one round trip before the
//! TAT is within the horizon, so a process far from the store is not always the last to ask.
//!
//! # The bound: no second holds more than the limit
//!
//! Let `r` be the rate the limiter runs at, `g` the grace and `L` the longest slot of one
//! reservation (`max(batch_period, T)`). Take any window `[w, w + 1 s)` of the store's clock.
//! A token spent in it belongs to a batch `b` with `start_b < w + 1 s` (it is spent no earlier
//! than its start) and `end_b + g >= w` (no later than its end and grace); as
//! `end_b - start_b <= L`, the slots of all such batches lie within
//! `[w - g - L, w + 1 s + L)`, of length `1 s + g + 2L`. The slots do not overlap and each
//! token owns `T = 1 / r` of them, so the window holds at most `r * (1 s + g + 2L)` tokens.
//! The limiter runs at the largest `r` with `r * (1 s + g + 2L) <= limit`: with the defaults
//! (`batch_period` = `g` = 10 ms) `r = limit / 1.03`, a headroom of three batch periods, for
//! limits of 103 calls a second and more; below that one token per slot (`L = T`) and
//! `r = (limit - 2) / (1 s + g)`; under 3 calls a second a shared limit is refused. This holds
//! whatever the number of processes and their timing: it depends only on the slots.
//!
//! # When the store is down
//!
//! A reservation that fails or takes longer than the store time-out (default 250 ms) sends the
//! limit to its *local share*: `k = floor(r / N)` calls a second, one every `1 s / k`, where
//! `N` is the number of live processes the store counted at the last reservation (processes
//! that reserved within the live window, default 60 s), or, for a process that never reached
//! the store, the assumed number (default 4). Spaced by `1 s / k`, a process spends at most
//! `k` calls in any second, so `N` processes at most `N * k <= r`. The switch is logged once
//! per outage, counted ([`SharedLimitStats::outages`], [`SharedLimitStats::acquired_fallback`],
//! `bot.ratelimit.fallback`), and the store is asked again after the retry interval (default
//! 1 s), by one call, while the others go on with the share: not once per call.
//!
//! The share starts after a quiet period (`horizon + L + g + N * T`, some 31 ms): no
//! reservation was granted after the outage began at `o`, and a granted one started at most
//! the horizon `h` after it was made, so every token reserved before (by any process) is spent
//! by `o + h + L + g`. In a window straddling the switch, those tokens come from slots in
//! `[w - g - L, o + h + L)` and the share's from after `o + h + L + g + N * T` (at most
//! `r * (w + 1 s - F) + N` of them from `F` on): the sum stays within
//! `r * (1 s + g + 2L) <= limit`.
//!
//! When the store answers again, the limit uses its tokens but keeps spacing its calls by the
//! share for a hand-over (retry interval + time-out): the other processes, still on their
//! share, ask the store within one retry interval, so that the processes never add a full
//! store rate to their shares. In the one window that straddles the end of a hand-over the
//! bound is `limit + N` (a call per process more), once per outage.
//!
//! What is not covered: a store that some processes reach and others do not (those on their
//! share add to what the others take from the store), and a store that loses its state (an
//! UNLOGGED table after a crash of PostgreSQL, a Redis restarted without persistence) while
//! tokens reserved before are still being spent (at most one horizon and slot of them).
//!
//! # Stores
//!
//! | store | state | clock | round trip |
//! | --- | --- | --- | --- |
//! | [`PgRateStore`] (feature `postgres`) | UNLOGGED tables of migration 5 | `clock_timestamp()` | one function call |
//! | [`RedisRateStore`] (feature `redis`, `REDIS_URL`) | a string and a sorted set per key | `TIME` | one `EVALSHA` |
//! | [`MemoryRateStore`] | this process | tokio's | none |

mod limiter;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "redis")]
mod redis;
mod settings;
mod store;
#[cfg(test)]
mod tests;

pub use limiter::SharedLimit;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use pg::PgRateStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisRateStore;
pub use settings::{
    DEFAULT_ASSUMED_PROCESSES, DEFAULT_BATCH_PERIOD, DEFAULT_LIVE_WINDOW, DEFAULT_STORE_RETRY,
    DEFAULT_STORE_TIMEOUT, SharedLimitStats, SharedLimits, SharedLimitsBuilder,
};
pub use store::{MemoryRateStore, RateStore, Reservation, Reserved};

/// The environment variable [`SharedLimits::redis_from_env`] reads.
pub const REDIS_URL_ENV: &str = "REDIS_URL";
