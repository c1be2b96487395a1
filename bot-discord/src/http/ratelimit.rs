//! Rate limits learned from Discord's headers: per-route buckets, the global limit, and the
//! invalid request budget.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

use super::route::RouteKey;

/// Discord bans an IP for a while after this many invalid requests in [`INVALID_WINDOW`].
pub const INVALID_REQUEST_BAN: usize = 10_000;
/// The window of the invalid request limit.
pub const INVALID_WINDOW: Duration = Duration::from_secs(600);
/// Buckets learned are forgotten after this long unused, so the map stays bounded.
const BUCKET_IDLE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    remaining: u32,
    reset_at: Instant,
    used_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Route (without major) to Discord's bucket hash.
    routes: HashMap<String, String>,
    /// Bucket hash (or the route, before Discord named one) + major to its state.
    buckets: HashMap<String, Bucket>,
    global_until: Option<Instant>,
    invalid: VecDeque<Instant>,
    last_prune: Option<Instant>,
}

/// What a call must wait for, or why it must not be sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Go,
    Wait(Instant),
    /// Too many invalid requests lately: refuse until this instant.
    Refuse(Instant),
}

/// The rate-limit state shared by every call of one client.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    state: Mutex<State>,
    invalid_budget: usize,
}

impl RateLimiter {
    pub(crate) fn new(invalid_budget: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            invalid_budget: invalid_budget.min(INVALID_REQUEST_BAN),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bucket_key(state: &State, key: &RouteKey) -> String {
        let bucket = state.routes.get(&key.route).unwrap_or(&key.route);
        format!("{bucket}@{}", key.major)
    }

    /// Whether a call on `key` may go now; if it may, it takes one of the bucket's remaining
    /// requests, so concurrent calls never overrun a bucket.
    pub(crate) fn admit(&self, key: &RouteKey) -> Admission {
        let now = Instant::now();
        let mut state = self.lock();
        while state
            .invalid
            .front()
            .is_some_and(|at| now.duration_since(*at) >= INVALID_WINDOW)
        {
            state.invalid.pop_front();
        }
        if state.invalid.len() >= self.invalid_budget {
            let oldest = *state.invalid.front().expect("not empty");
            return Admission::Refuse(oldest + INVALID_WINDOW);
        }
        if key.global
            && let Some(until) = state.global_until.filter(|u| *u > now)
        {
            return Admission::Wait(until);
        }
        let bucket_key = Self::bucket_key(&state, key);
        if let Some(bucket) = state.buckets.get_mut(&bucket_key) {
            bucket.used_at = now;
            if bucket.reset_at <= now {
                // The window passed; the next answer will say what is left.
                bucket.remaining = u32::MAX;
            } else if bucket.remaining == 0 {
                return Admission::Wait(bucket.reset_at);
            } else {
                bucket.remaining -= 1;
            }
        }
        Admission::Go
    }

    /// Learns from an answer's `X-RateLimit-*` headers.
    pub(crate) fn learn(&self, key: &RouteKey, headers: &HeaderMap) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(bucket) = header("x-ratelimit-bucket")
            && state.routes.get(&key.route).map(String::as_str) != Some(bucket)
        {
            state.routes.insert(key.route.clone(), bucket.to_owned());
        }
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse::<u32>().ok());
        let reset_after = header("x-ratelimit-reset-after").and_then(seconds);
        if let (Some(remaining), Some(reset_after)) = (remaining, reset_after) {
            let bucket_key = Self::bucket_key(&state, key);
            state.buckets.insert(
                bucket_key,
                Bucket {
                    remaining,
                    reset_at: now + reset_after,
                    used_at: now,
                },
            );
        }
        if state
            .last_prune
            .is_none_or(|at| now.duration_since(at) > BUCKET_IDLE)
        {
            state.last_prune = Some(now);
            state
                .buckets
                .retain(|_, b| now.duration_since(b.used_at) < BUCKET_IDLE);
        }
    }

    /// A 429: pause the bucket, or every global route when Discord says the limit is global.
    pub(crate) fn limited(&self, key: &RouteKey, global: bool, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut state = self.lock();
        if global {
            state.global_until = Some(state.global_until.map_or(until, |u| u.max(until)));
        } else {
            let bucket_key = Self::bucket_key(&state, key);
            state.buckets.insert(
                bucket_key,
                Bucket {
                    remaining: 0,
                    reset_at: until,
                    used_at: Instant::now(),
                },
            );
        }
    }

    /// Counts an invalid request (401, 403, or a 429 not of the `shared` scope).
    pub(crate) fn invalid(&self) {
        let mut state = self.lock();
        if state.invalid.len() >= INVALID_REQUEST_BAN {
            state.invalid.pop_front();
        }
        state.invalid.push_back(Instant::now());
    }

    /// Invalid requests in the current window.
    pub(crate) fn invalid_count(&self) -> usize {
        self.lock().invalid.len()
    }
}

/// Discord's seconds with decimals (`"1.250"`).
pub(crate) fn seconds(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Method};

    fn headers(bucket: &str, remaining: u32, reset_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-bucket", HeaderValue::from_str(bucket).unwrap());
        h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        h.insert(
            "x-ratelimit-reset-after",
            HeaderValue::from_str(reset_after).unwrap(),
        );
        h
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_bucket_waits_for_its_reset_and_others_go() {
        let limiter = RateLimiter::new(9_000);
        let a = RouteKey::new(&Method::POST, "/channels/1/messages");
        let b = RouteKey::new(&Method::POST, "/channels/2/messages");
        limiter.learn(&a, &headers("h1", 0, "2.5"));
        let Admission::Wait(until) = limiter.admit(&a) else {
            panic!("must wait")
        };
        assert_eq!(until - Instant::now(), Duration::from_millis(2500));
        assert_eq!(
            limiter.admit(&b),
            Admission::Go,
            "another channel is another bucket"
        );
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(limiter.admit(&a), Admission::Go);
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_requests_are_shared_by_concurrent_calls() {
        let limiter = RateLimiter::new(9_000);
        let a = RouteKey::new(&Method::POST, "/channels/1/messages");
        limiter.learn(&a, &headers("h1", 2, "1"));
        assert_eq!(limiter.admit(&a), Admission::Go);
        assert_eq!(limiter.admit(&a), Admission::Go);
        assert!(matches!(limiter.admit(&a), Admission::Wait(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_global_429_pauses_global_routes_only() {
        let limiter = RateLimiter::new(9_000);
        let a = RouteKey::new(&Method::POST, "/channels/1/messages");
        let followup = RouteKey::new(&Method::POST, "/webhooks/9/token");
        limiter.limited(&a, true, Duration::from_secs(3));
        assert!(matches!(
            limiter.admit(&RouteKey::new(&Method::GET, "/gateway/bot")),
            Admission::Wait(_)
        ));
        assert_eq!(limiter.admit(&followup), Admission::Go);
    }

    #[tokio::test(start_paused = true)]
    async fn the_invalid_request_budget_refuses_before_a_ban() {
        let limiter = RateLimiter::new(3);
        let a = RouteKey::new(&Method::POST, "/channels/1/messages");
        for _ in 0..3 {
            limiter.invalid();
        }
        let Admission::Refuse(until) = limiter.admit(&a) else {
            panic!("must refuse")
        };
        assert_eq!(until - Instant::now(), INVALID_WINDOW);
        tokio::time::advance(INVALID_WINDOW).await;
        assert_eq!(limiter.admit(&a), Admission::Go);
        assert_eq!(limiter.invalid_count(), 0);
    }
}
