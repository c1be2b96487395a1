//! [`RedisRateStore`]: the shared state of rate limits in Redis, one Lua script per reservation.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::store::{RateStore, Reservation, Reserved, store_error};
use crate::error::Error;

/// The reservation, atomic in Redis: the store's clock is `TIME`. Lua numbers are doubles,
/// exact for microseconds since the epoch (below 2^53 until the year 2255).
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local tokens = tonumber(ARGV[1])
local live_us = tonumber(ARGV[4])
local start = math.max(tat, now)
local granted = 0
if start <= now + tonumber(ARGV[3]) then
    tat = start + tokens * tonumber(ARGV[2])
    granted = tokens
    -- Forgotten once idle for the live window: a TAT in the past means what no TAT does.
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',
        math.floor((tat - now + live_us) / 1000) + 1)
end
redis.call('ZADD', KEYS[2], string.format('%.0f', now), ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%.0f', now - live_us))
redis.call('PEXPIRE', KEYS[2], math.floor(live_us / 1000) + 1)
local live = redis.call('ZCARD', KEYS[2])
return {granted, string.format('%.0f', start), string.format('%.0f', now), string.format('%.0f', tat), live}
";

/// Rate limits in Redis: per key, a string with the TAT (`botrt:rl:{key}:tat`) and a sorted
/// set of the processes seen (`botrt:rl:{key}:members`), both expiring once idle. One `EVALSHA`
/// of a Lua script per reservation (loaded by the first); the store's clock is Redis's `TIME`.
/// The connection is a [`ConnectionManager`] (one multiplexed connection to one server,
/// reconnected after failures): a single Redis, or the primary of a replicated one. Redis
/// Cluster is not supported (the manager does not follow a cluster's redirections); the braces
/// put a key's two entries in one hash slot so that a cluster-aware store could run the script.
pub struct RedisRateStore {
    client: redis::Client,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    script: redis::Script,
}

impl fmt::Debug for RedisRateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.client.get_connection_info();
        f.debug_struct("RedisRateStore")
            .field("addr", &info.addr().to_string())
            .finish_non_exhaustive()
    }
}

impl RedisRateStore {
    /// A store on the Redis at `url` (`redis://[user:password@]host:port[/db]`). Nothing is
    /// connected until the first reservation.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL is invalid.
    pub fn new(url: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::config(format!("rate limit store redis: invalid url: {e}")))?;
        Ok(Self {
            client,
            connection: tokio::sync::OnceCell::new(),
            script: redis::Script::new(RESERVE),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, Error> {
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(1)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|e| store_error("redis", "setting up the connection", e))
            })
            .await
            .cloned()
    }
}

#[async_trait::async_trait]
impl RateStore for RedisRateStore {
    async fn reserve(&self, r: &Reservation<'_>) -> Result<Reserved, Error> {
        let mut connection = self.connection().await?;
        let (granted, start, now, tat, live): (u32, i64, i64, i64, u32) = self
            .script
            .key(format!("botrt:rl:{{{}}}:tat", r.key))
            .key(format!("botrt:rl:{{{}}}:members", r.key))
            .arg(r.tokens)
            .arg(r.interval_micros)
            .arg(r.horizon_micros)
            .arg(r.live_micros)
            .arg(r.member)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| store_error("redis", "reserving", e))?;
        Ok(Reserved {
            granted,
            start_micros: start,
            now_micros: now,
            tat_micros: tat,
            live,
        })
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
