//! [`DiscordHttpBuilder`]: the client core's settings ([`ConfigureApi`]) and Discord's own (the
//! global limit, the invalid request budget).

use std::time::Duration;

use bot_core::Secret;
use bot_core::api::{ApiClient, ApiConfig, BuildClient, ConfigureApi, DEFAULT_MAX_RETRY_AFTER};
use bot_core::outbound::RateLimit;

use super::client::DiscordHttp;
use super::spec::{DiscordSpec, MAX_SEND_MARGIN};
use crate::error::Error;

/// Discord's global limit per bot.
pub const DEFAULT_GLOBAL_PER_SECOND: u32 = 50;
/// Invalid requests allowed per 10 minutes before the client refuses to send.
pub const DEFAULT_INVALID_BUDGET: usize = 9_000;

/// Builds a [`DiscordHttp`]; the shared settings (base URL, retries, time-out, deadline,
/// `max_retry_after`, telemetry) come with [`ConfigureApi`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bot_discord::{ConfigureApi, DiscordHttp};
///
/// let http = DiscordHttp::builder("token")
///     .global_per_second(100)
///     .max_retry_after(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// # let _ = http;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct DiscordHttpBuilder {
    config: ApiConfig,
    global_per_second: u32,
    invalid_budget: usize,
    max_retry_after: Duration,
}

impl DiscordHttpBuilder {
    pub(crate) fn new(token: Secret) -> Self {
        Self {
            config: ApiConfig::new(crate::DEFAULT_API_BASE, token),
            global_per_second: DEFAULT_GLOBAL_PER_SECOND,
            invalid_budget: DEFAULT_INVALID_BUDGET,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }

    /// The proactive global limit (default 50 per second; large bots get more from Discord).
    pub fn global_per_second(mut self, per_second: u32) -> Self {
        self.global_per_second = per_second;
        self
    }

    /// Invalid requests (401, 403, 429) allowed per 10 minutes before refusing to send.
    pub fn invalid_budget(mut self, budget: usize) -> Self {
        self.invalid_budget = budget;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for an empty token, a base URL that is
    /// not http(s), a zero global limit or budget, or an invalid retry policy.
    pub fn build(self) -> Result<DiscordHttp, Error> {
        let global = RateLimit::per_second(self.global_per_second)
            .ok_or_else(|| Error::config("discord: the global limit must be above zero"))?;
        if self.invalid_budget == 0 {
            return Err(Error::config(
                "discord: the invalid request budget must be above zero",
            ));
        }
        // A bucket wait past the call's deadline is refused by the spec, from what is left of it,
        // as is one that leaves less than a request's time-out (up to 1 s) to send.
        let send_margin = ApiConfig::timeout(&self.config).min(MAX_SEND_MARGIN);
        let spec = DiscordSpec::new(
            global,
            self.invalid_budget,
            self.max_retry_after,
            send_margin,
        );
        Ok(DiscordHttp::from_client(ApiClient::new(spec, self.config)?))
    }
}

/// How an adapter builds the client of each of its applications
/// ([`bot_core::outbound::Channels::from_builders`]).
impl BuildClient for DiscordHttpBuilder {
    type Client = DiscordHttp;

    fn build_client(self) -> Result<DiscordHttp, Error> {
        self.build()
    }
}

impl ConfigureApi for DiscordHttpBuilder {
    fn api_config(&mut self) -> &mut ApiConfig {
        &mut self.config
    }

    /// The longest rate-limit wait (a 429's `retry_after`, a bucket's reset) a call sits through
    /// (default [`DEFAULT_MAX_RETRY_AFTER`]); a longer one fails the call with
    /// [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited) carrying the wait.
    fn max_retry_after(mut self, max: Duration) -> Self {
        // Kept here too: the bucket limiter needs it, and the core's config does not tell it.
        self.max_retry_after = max;
        self.config = self.config.max_retry_after(max);
        self
    }
}
