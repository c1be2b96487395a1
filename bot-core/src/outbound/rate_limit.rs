//! [`RateLimit`]: a requests-per-second limit shared by the calls of one client.

use std::fmt;

use crate::event::Platform;
use crate::telemetry::Telemetry;

/// A requests-per-second limit shared by the calls of one client (a governor limiter), that
/// records each wait as `bot.outbound.ratelimit.wait`. Adapters keep one per platform quota.
pub struct RateLimit {
    per_second: u32,
    limiter: governor::DefaultDirectRateLimiter,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("per_second", &self.per_second)
            .finish()
    }
}

impl RateLimit {
    /// At most `per_second` calls a second (bursts of as many); `None` for zero.
    pub fn per_second(per_second: u32) -> Option<Self> {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::new(per_second)?);
        Some(Self {
            per_second,
            limiter: governor::RateLimiter::direct(quota),
        })
    }

    /// Waits for room for one call; a wait is recorded in `telemetry` when given.
    pub async fn acquire(&self, platform: &Platform, telemetry: Option<&Telemetry>) {
        if self.limiter.check().is_ok() {
            return;
        }
        let started = std::time::Instant::now();
        self.limiter.until_ready().await;
        if let Some(telemetry) = telemetry {
            telemetry.outbound_ratelimit_wait(platform, started.elapsed());
        }
    }
}
