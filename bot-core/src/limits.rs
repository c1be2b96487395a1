//! Bounds of the runtime: concurrency, buffering, ordering, time-outs and retries.

use std::time::Duration;

use crate::error::Error;

/// The largest `max_in_flight` accepted: far above what one process can run, and within what
/// Tokio's channels and semaphores allow.
pub const MAX_IN_FLIGHT: usize = 1 << 24;

/// The default [`Limits::queue_capacity_bytes`]: 16 MiB of waiting events.
pub const DEFAULT_QUEUE_CAPACITY_BYTES: usize = 16 << 20;

/// The default [`Limits::reject_wait`]: 250 ms, well inside the platforms' webhook time-outs
/// (LINE and Messenger wait seconds for an answer).
pub const DEFAULT_REJECT_WAIT: Duration = Duration::from_millis(250);

/// The bounds the supervisor and the memory queue enforce.
///
/// Build one with struct update syntax and validate it (the bot builder does):
///
/// ```
/// use bot_core::{Limits, Overflow};
/// let limits = Limits { max_in_flight: 256, overflow: Overflow::DropOldest, ..Limits::default() };
/// limits.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Handlers running at once, across all conversations. Default 1024.
    pub max_in_flight: usize,
    /// Events buffered and waiting to run. Default 100,000.
    pub queue_capacity: usize,
    /// Bytes of events buffered and waiting to run, as the memory queue measures them (ids,
    /// payload JSON, text and attachments, plus a fixed overhead per event). Whichever of this
    /// and `queue_capacity` is reached first makes the buffer full. Default 16 MiB
    /// ([`DEFAULT_QUEUE_CAPACITY_BYTES`]), which keeps a bot driven past saturation well under
    /// 64 MiB of resident memory; a burst of large payloads cannot take more. Enforced by the
    /// memory queue with the same `overflow` policy as the count; the PostgreSQL queue has its
    /// own (`PgQueueBuilder::queue_capacity_bytes`).
    pub queue_capacity_bytes: usize,
    /// What a push does when the buffer is full. Default [`Overflow::Reject`].
    pub overflow: Overflow,
    /// With [`Overflow::Reject`]: how long a push that finds the memory queue full waits for
    /// room before it is refused (a webhook then answers 503 with `Retry-After`). The queue is
    /// drained all the time, so a short wait turns a momentary full buffer, an ingress briefly
    /// faster than the handlers, into a slower answer instead of a redelivery; only a buffer
    /// that stays full for the whole wait refuses. Memory stays bounded while pushes wait: a
    /// push may start to wait only while the pushes already waiting hold less than an eighth of
    /// `queue_capacity_bytes` of events between them (one push alone always may, so the bound
    /// is the larger of that eighth and one batch, which the body limit bounds); each also
    /// holds its own request, which the server's connection and request limits bound. Pushes
    /// that waited are woken oldest first, but one that does not fit waits again at the back, and
    /// a new push that fits goes in at once. Zero refuses at once; the bot builder refuses a
    /// wait over half its `request_timeout` (for its built-in memory queue). Default 250 ms
    /// ([`DEFAULT_REJECT_WAIT`]). The other policies do not use it ([`Overflow::Wait`] waits as
    /// long as it takes). The PostgreSQL queue's `Reject` refuses at once (its `push_timeout`
    /// bounds `Wait`); the NATS queue does not use `overflow`.
    pub reject_wait: Duration,
    /// Whether events of one conversation run one at a time, in order. Default
    /// [`Ordering::PerConversation`].
    pub ordering: Ordering,
    /// How long one handler attempt may run; a route can set its own. Default 30 s.
    pub handler_timeout: Duration,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
    /// How long a graceful shutdown waits for running handlers before cancelling them. Default 30 s.
    pub shutdown_timeout: Duration,
    /// How long an event id is remembered for deduplication, at least. Default 10 minutes. (The
    /// memory queue forgets ids a generation at a time, so it may remember one up to twice this.)
    pub dedup_ttl: Duration,
    /// How many of the newest event ids the memory queue remembers at least (within
    /// `dedup_ttl`); it keeps at most twice this many, and forgets the oldest first. Default
    /// 100,000.
    pub dedup_capacity: usize,
    /// How many dead letters the memory queue keeps; the oldest are evicted first. Default 10,000.
    pub dead_letter_capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            queue_capacity: 100_000,
            queue_capacity_bytes: DEFAULT_QUEUE_CAPACITY_BYTES,
            overflow: Overflow::Reject,
            reject_wait: DEFAULT_REJECT_WAIT,
            ordering: Ordering::PerConversation,
            handler_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            shutdown_timeout: Duration::from_secs(30),
            dedup_ttl: Duration::from_secs(600),
            dedup_capacity: 100_000,
            dead_letter_capacity: 10_000,
        }
    }
}

impl Limits {
    /// Checks that the limits can work.
    ///
    /// # Errors
    ///
    /// Returns a [`crate::ErrorKind::Config`] error naming the first field that is out of range.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_in_flight == 0 {
            return Err(Error::config("limits: max_in_flight must be at least 1"));
        }
        if self.max_in_flight > MAX_IN_FLIGHT {
            return Err(Error::config(format!(
                "limits: max_in_flight must be at most {MAX_IN_FLIGHT}"
            )));
        }
        if self.queue_capacity == 0 {
            return Err(Error::config("limits: queue_capacity must be at least 1"));
        }
        if self.queue_capacity_bytes == 0 {
            return Err(Error::config(
                "limits: queue_capacity_bytes must be at least 1",
            ));
        }
        if self.handler_timeout.is_zero() {
            return Err(Error::config("limits: handler_timeout must be above zero"));
        }
        if self.dedup_capacity == 0 && !self.dedup_ttl.is_zero() {
            return Err(Error::config(
                "limits: dedup_capacity must be at least 1 unless dedup_ttl is zero",
            ));
        }
        self.retry.validate()
    }
}

/// What pushing into a full buffer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Refuse the whole batch, after waiting up to [`Limits::reject_wait`] for room; webhooks
    /// answer 503 with `Retry-After` so the platform redelivers.
    #[default]
    Reject,
    /// Make the producer wait for room (gateways: stop reading the socket).
    Wait,
    /// Evict the oldest waiting events to make room; each eviction is counted.
    DropOldest,
    /// Drop the events that do not fit; each drop is counted.
    DropNewest,
}

/// Whether events of one conversation are serialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Ordering {
    /// One event at a time per conversation, in arrival order; conversations run in parallel.
    #[default]
    PerConversation,
    /// Any event may run at any time.
    Unordered,
}

/// Retries of failed handler attempts: exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry. Default 5.
    pub max_attempts: u32,
    /// Delay before the second attempt. Default 1 s.
    pub initial_backoff: Duration,
    /// Upper bound of any delay. Default 5 minutes.
    pub max_backoff: Duration,
    /// Growth factor per attempt. Default 2.
    pub multiplier: f64,
    /// Fraction of each delay that is randomised, 0 to 1. Default 0.2 (delays vary by up to 20 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// No retries: the first failure dead-letters the event.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Checks the policy.
    ///
    /// # Errors
    ///
    /// Returns a [`crate::ErrorKind::Config`] error naming the field out of range.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_attempts == 0 {
            return Err(Error::config("retry: max_attempts must be at least 1"));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(Error::config(
                "retry: multiplier must be a finite number >= 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::config("retry: jitter must be between 0 and 1"));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(Error::config(
                "retry: initial_backoff must not exceed max_backoff",
            ));
        }
        Ok(())
    }

    /// The delay before attempt `attempt + 1`, after attempt `attempt` (1-based) failed.
    ///
    /// The delay grows as `initial_backoff * multiplier^(attempt-1)`, is capped at `max_backoff`,
    /// and then up to `jitter` of it is removed at random, so that retries of many events spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(64);
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exp as i32);
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter * fastrand::f64());
        Duration::try_from_secs_f64(jittered.max(0.0)).unwrap_or(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Limits::default().validate().unwrap();
    }

    #[test]
    fn invalid_limits_name_the_field() {
        let e = Limits {
            max_in_flight: 0,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("max_in_flight"));
        let e = Limits {
            retry: RetryPolicy {
                jitter: 2.0,
                ..RetryPolicy::default()
            },
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("jitter"));
        let e = Limits {
            queue_capacity_bytes: 0,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("queue_capacity_bytes"));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_down() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: 10,
        };
        for _ in 0..100 {
            let d1 = p.backoff(1);
            assert!(d1 <= Duration::from_millis(100) && d1 >= Duration::from_millis(50));
            let d3 = p.backoff(3);
            assert!(d3 <= Duration::from_millis(400) && d3 >= Duration::from_millis(200));
            assert!(p.backoff(30) <= Duration::from_secs(1));
        }
        let no_jitter = RetryPolicy { jitter: 0.0, ..p };
        assert_eq!(no_jitter.backoff(2), Duration::from_millis(200));
    }
}
