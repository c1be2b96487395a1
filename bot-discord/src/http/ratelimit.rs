//! Rate limits learned from Discord's headers: per-route buckets, the global limit, and the
//! invalid request budget.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::Notify;
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
    /// Requests per window (`X-RateLimit-Limit`).
    limit: u32,
    /// Requests left in this window, net of those admitted and not answered yet.
    remaining: u32,
    /// When the window ends; `None` once it has ended and no answer told the next one yet.
    reset_at: Option<Instant>,
    /// Requests admitted and not answered yet.
    in_flight: u32,
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
    /// Go; report the answer (or its absence) under this bucket key.
    Go(Ticket),
    /// Wait until then and ask again.
    Wait(Instant),
    /// The bucket's window ended and its requests are spent on calls not answered yet: wait for
    /// an answer to tell the next window.
    WaitForAnswer,
    /// Too many invalid requests lately: refuse until this instant.
    Refuse(Instant),
}

/// The bucket a call was admitted under, to report its answer against.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ticket(Option<String>);

/// The rate-limit state shared by every call of one client.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    state: Mutex<State>,
    answered: Notify,
    invalid_budget: usize,
}

/// The limit of a bucket whose first call is on its way: the others wait for its answer.
const PROBING: u32 = 0;

/// Most routes remembered; a client that calls more (say, reactions with many emoji) starts
/// learning again rather than growing without bound.
const MAX_ROUTES: usize = 10_000;

impl RateLimiter {
    pub(crate) fn new(invalid_budget: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            answered: Notify::new(),
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
        let Some(bucket) = state.buckets.get_mut(&bucket_key) else {
            // Nothing known yet: one call goes and its answer tells the limits; the others wait
            // for it rather than all draw a 429.
            state.buckets.insert(
                bucket_key.clone(),
                Bucket {
                    limit: PROBING,
                    remaining: 0,
                    reset_at: None,
                    in_flight: 1,
                    used_at: now,
                },
            );
            return Admission::Go(Ticket(Some(bucket_key)));
        };
        bucket.used_at = now;
        if bucket.limit == PROBING {
            return Admission::WaitForAnswer;
        }
        if bucket.reset_at.is_some_and(|at| at <= now) {
            // A new window: its size is known, its end is not until an answer says.
            bucket.remaining = bucket.limit.saturating_sub(bucket.in_flight);
            bucket.reset_at = None;
        }
        if bucket.remaining == 0 {
            return match bucket.reset_at {
                Some(at) => Admission::Wait(at),
                None => Admission::WaitForAnswer,
            };
        }
        bucket.remaining -= 1;
        bucket.in_flight += 1;
        Admission::Go(Ticket(Some(bucket_key)))
    }

    /// Waits until some call of this client is answered (or `limit` passes).
    pub(crate) async fn wait_for_answer(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.answered.notified()).await;
    }

    /// Ends a call's claim; a probe's placeholder goes, so that the next call probes again or the
    /// answer's bucket takes over.
    fn settle(state: &mut State, ticket: &Ticket) {
        let Some(key) = ticket.0.as_ref() else { return };
        if let Some(bucket) = state.buckets.get_mut(key) {
            bucket.in_flight = bucket.in_flight.saturating_sub(1);
            if bucket.limit == PROBING {
                state.buckets.remove(key);
            }
        }
    }

    /// A call admitted under `ticket` got no answer (a connection failure): its request is
    /// given back.
    pub(crate) fn abandon(&self, ticket: &Ticket) {
        let mut state = self.lock();
        Self::settle(&mut state, ticket);
        if let Some(bucket) = ticket.0.as_ref().and_then(|k| state.buckets.get_mut(k))
            && bucket.reset_at.is_some()
        {
            bucket.remaining = bucket.remaining.saturating_add(1).min(bucket.limit);
        }
        drop(state);
        self.answered.notify_waiters();
    }

    /// Learns from an answer's `X-RateLimit-*` headers.
    pub(crate) fn learn(&self, key: &RouteKey, ticket: &Ticket, headers: &HeaderMap) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = Instant::now();
        let mut state = self.lock();
        Self::settle(&mut state, ticket);
        if let Some(bucket) = header("x-ratelimit-bucket")
            && state.routes.get(&key.route).map(String::as_str) != Some(bucket)
        {
            if state.routes.len() >= MAX_ROUTES {
                state.routes.clear();
            }
            state.routes.insert(key.route.clone(), bucket.to_owned());
        }
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse::<u32>().ok());
        let reset_after = header("x-ratelimit-reset-after").and_then(seconds);
        if let (Some(remaining), Some(reset_after)) = (remaining, reset_after) {
            let limit = header("x-ratelimit-limit")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(remaining + 1);
            let bucket_key = Self::bucket_key(&state, key);
            let bucket = state.buckets.entry(bucket_key).or_insert(Bucket {
                limit,
                remaining,
                reset_at: None,
                in_flight: 0,
                used_at: now,
            });
            bucket.limit = limit;
            // Discord's count does not know of the calls still on their way.
            bucket.remaining = remaining.saturating_sub(bucket.in_flight);
            bucket.reset_at = Some(now + reset_after);
            bucket.used_at = now;
        }
        if state
            .last_prune
            .is_none_or(|at| now.duration_since(at) > BUCKET_IDLE)
        {
            state.last_prune = Some(now);
            state
                .buckets
                .retain(|_, b| b.in_flight > 0 || now.duration_since(b.used_at) < BUCKET_IDLE);
        }
        drop(state);
        self.answered.notify_waiters();
    }

    /// A 429: pause the bucket, or every global route when Discord says the limit is global.
    pub(crate) fn limited(&self, key: &RouteKey, global: bool, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut state = self.lock();
        if global {
            state.global_until = Some(state.global_until.map_or(until, |u| u.max(until)));
        } else {
            let bucket_key = Self::bucket_key(&state, key);
            if let Some(bucket) = state.buckets.get_mut(&bucket_key) {
                bucket.remaining = 0;
                bucket.reset_at = Some(until);
            }
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
        limiter.learn(&a, &Ticket(None), &headers("h1", 0, "2.5"));
        let Admission::Wait(until) = limiter.admit(&a) else {
            panic!("must wait")
        };
        assert_eq!(until - Instant::now(), Duration::from_millis(2500));
        assert!(
            matches!(limiter.admit(&b), Admission::Go(_)),
            "another channel is another bucket"
        );
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert!(matches!(limiter.admit(&a), Admission::Go(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_requests_are_shared_by_concurrent_calls() {
        let limiter = RateLimiter::new(9_000);
        let a = RouteKey::new(&Method::POST, "/channels/1/messages");
        limiter.learn(&a, &Ticket(None), &headers("h1", 2, "1"));
        let first = limiter.admit(&a);
        let second = limiter.admit(&a);
        assert!(matches!(
            (&first, &second),
            (Admission::Go(_), Admission::Go(_))
        ));
        assert!(matches!(limiter.admit(&a), Admission::Wait(_)));
        // An answer counting only itself does not give back the other call's request.
        let Admission::Go(ticket) = first else {
            unreachable!()
        };
        limiter.learn(&a, &ticket, &headers("h1", 1, "1"));
        assert!(
            matches!(limiter.admit(&a), Admission::Wait(_)),
            "one call is still on its way"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_window_lets_only_the_limit_through_until_an_answer_tells_its_end() {
        let limiter = RateLimiter::new(9_000);
        let a = RouteKey::new(&Method::POST, "/channels/1/messages");
        let mut h = headers("h1", 0, "1");
        h.insert("x-ratelimit-limit", HeaderValue::from(3));
        limiter.learn(&a, &Ticket(None), &h);
        tokio::time::advance(Duration::from_secs(1)).await;
        let admitted = (0..10)
            .filter(|_| matches!(limiter.admit(&a), Admission::Go(_)))
            .count();
        assert_eq!(admitted, 3, "no stampede when the window ends");
        assert_eq!(limiter.admit(&a), Admission::WaitForAnswer);
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
        assert!(matches!(limiter.admit(&followup), Admission::Go(_)));
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
        assert!(matches!(limiter.admit(&a), Admission::Go(_)));
        assert_eq!(limiter.invalid_count(), 0);
    }
}
