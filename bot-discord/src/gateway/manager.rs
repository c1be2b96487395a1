//! The shard manager: which shards this process runs, with identifies spaced by bucket.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bot_core::Ingress;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::config::{ShardConfig, ShardId};
use super::identify::{DEFAULT_IDENTIFY_RESERVE, IdentifyQueue};
use super::shard::Shard;
use crate::error::Error;

/// What `GET /gateway/bot` answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct GatewayInfo {
    /// The gateway URL.
    pub url: String,
    /// Recommended shard count.
    pub shards: u32,
    /// How many sessions may start.
    pub session_start_limit: SessionStartLimit,
}

/// The session start budget of `GET /gateway/bot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct SessionStartLimit {
    /// Session starts allowed per day.
    pub total: u32,
    /// Session starts left.
    pub remaining: u32,
    /// Milliseconds until the budget resets.
    pub reset_after: u64,
    /// Identify buckets: shards identify concurrently in `shard_id % max_concurrency` buckets.
    pub max_concurrency: u32,
}

/// Which shards this process runs (`DISCORD_SHARDS`): `auto` (Discord's recommendation, all of
/// them), a count (`4`: all of 4), or a slice of them (`0..8/16`: shards 0 to 7 of 16), so several
/// processes can split a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardRange {
    /// All of Discord's recommended count.
    Auto,
    /// All of this many.
    Count(u32),
    /// Shards `from` to `to - 1` of `total`.
    Slice {
        /// The first shard run here.
        from: u32,
        /// One past the last shard run here.
        to: u32,
        /// Shards of the bot in all.
        total: u32,
    },
}

impl FromStr for ShardRange {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let bad = || {
            Error::config(format!(
                "discord: shards {s:?} is not auto, a count, or from..to/total"
            ))
        };
        if s.is_empty() || s.eq_ignore_ascii_case("auto") {
            return Ok(ShardRange::Auto);
        }
        if let Ok(count) = s.parse::<u32>() {
            return if count == 0 {
                Err(bad())
            } else {
                Ok(ShardRange::Count(count))
            };
        }
        let (range, total) = s.split_once('/').ok_or_else(bad)?;
        let (from, to) = range.split_once("..").ok_or_else(bad)?;
        let parse = |v: &str| v.trim().parse::<u32>().map_err(|_| bad());
        let (from, to, total) = (parse(from)?, parse(to)?, parse(total)?);
        if from >= to || to > total {
            return Err(bad());
        }
        Ok(ShardRange::Slice { from, to, total })
    }
}

impl ShardRange {
    /// The shards this range names, given Discord's recommended count.
    pub fn resolve(self, recommended: u32) -> Vec<ShardId> {
        let (from, to, total) = match self {
            ShardRange::Auto => (0, recommended.max(1), recommended.max(1)),
            ShardRange::Count(n) => (0, n, n),
            ShardRange::Slice { from, to, total } => (from, to, total),
        };
        (from..to).map(|number| ShardId { number, total }).collect()
    }
}

/// Runs a set of shards with one identify queue.
pub struct ShardManager {
    shards: Vec<Arc<Shard>>,
    start_delay: Duration,
}

impl fmt::Debug for ShardManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardManager")
            .field(
                "shards",
                &self.shards.iter().map(|s| s.id()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ShardManager {
    /// Shards `ids`, identifying through `identify`.
    pub fn new(config: ShardConfig, ids: &[ShardId], identify: IdentifyQueue) -> Self {
        let config = Arc::new(config);
        let shards = ids
            .iter()
            .map(|id| Arc::new(Shard::new(*id, config.clone(), identify.clone())))
            .collect();
        Self {
            shards,
            start_delay: Duration::ZERO,
        }
    }

    /// The shards of `range` with what `GET /gateway/bot` said: its URL (unless `config.url` was
    /// set to something else than Discord's default), its recommended count and its identify
    /// concurrency. When fewer session starts remain than shards, the start waits for the reset;
    /// the session start budget is tracked with [`DEFAULT_IDENTIFY_RESERVE`] kept back.
    pub fn from_gateway_info(config: ShardConfig, range: ShardRange, info: &GatewayInfo) -> Self {
        let limit = info.session_start_limit;
        let identify = IdentifyQueue::new(limit.max_concurrency)
            .session_start_limit(&limit, DEFAULT_IDENTIFY_RESERVE);
        Self::from_gateway_info_with(config, range, info, identify)
    }

    /// As [`ShardManager::from_gateway_info`], identifying through `identify` (a coordinator
    /// shared with other processes, another reserve).
    pub fn from_gateway_info_with(
        mut config: ShardConfig,
        range: ShardRange,
        info: &GatewayInfo,
        identify: IdentifyQueue,
    ) -> Self {
        if config.url == crate::DEFAULT_GATEWAY_URL {
            config.url.clone_from(&info.url);
        }
        let ids = range.resolve(info.shards);
        let limit = info.session_start_limit;
        let mut manager = Self::new(config, &ids, identify);
        if (limit.remaining as usize) < ids.len() {
            tracing::warn!(
                remaining = limit.remaining,
                shards = ids.len(),
                "discord: too few session starts left; waiting for the reset"
            );
            manager.start_delay = Duration::from_millis(limit.reset_after);
        }
        manager
    }

    /// The shards.
    pub fn shards(&self) -> &[Arc<Shard>] {
        &self.shards
    }

    /// Runs every shard until `shutdown`. A shard that stops with a fatal error (a bad token,
    /// invalid intents) stops the others too, and its error is returned.
    ///
    /// # Errors
    ///
    /// The first fatal error of a shard.
    pub async fn run(&self, ingress: Ingress, shutdown: CancellationToken) -> Result<(), Error> {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(self.start_delay) => {}
        }
        let stop = shutdown.child_token();
        let runs = self.shards.iter().map(|shard| {
            let ingress = ingress.clone();
            let stop = stop.clone();
            async move {
                let result = shard.run(ingress, stop.clone()).await;
                if result.is_err() {
                    stop.cancel();
                }
                result
            }
        });
        let results = futures::future::join_all(runs).await;
        results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve() {
        assert_eq!("auto".parse::<ShardRange>().unwrap().resolve(3).len(), 3);
        assert_eq!("4".parse::<ShardRange>().unwrap(), ShardRange::Count(4));
        let slice: ShardRange = "8..16/32".parse().unwrap();
        let ids = slice.resolve(1);
        assert_eq!(ids.len(), 8);
        assert_eq!(
            ids[0],
            ShardId {
                number: 8,
                total: 32
            }
        );
        for bad in ["0", "16..8/32", "0..40/32", "x", "1..2"] {
            assert!(bad.parse::<ShardRange>().is_err(), "{bad}");
        }
    }
}
