//! What the fake API saw: reply calls by second, their tokens and latencies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bot_core::testing::fake_api::{FakeRequest, FakeResponse};
use hdrhistogram::Histogram;
use reqwest::StatusCode;

use super::{EVENTS_PER_REQUEST_STRIDE, REPLY_PATH};
use crate::load::histogram;
use crate::scenario::TOKEN;

/// What the fake API saw: reply calls by second, their tokens, how long after the webhook.
pub(super) struct Tally {
    pub(super) epoch: Instant,
    pub(super) events_per_request: u64,
    /// When the load started, µs after `epoch`.
    pub(super) load_started: AtomicU64,
    /// When each request was sent, µs after `epoch`, plus one (0: not sent).
    pub(super) sent_at: Vec<AtomicU64>,
    /// One bit per event: its reply token came.
    pub(super) seen: Vec<AtomicU64>,
    /// Reply calls arrived, by second after the load started.
    pub(super) per_second: Vec<AtomicU64>,
    pub(super) replies: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) unknown: AtomicU64,
    /// Webhook sent → its reply call arrived at the API, µs.
    pub(super) to_call: Mutex<Histogram<u64>>,
    /// Webhook sent → the API answered the reply, µs.
    pub(super) to_answer: Mutex<Histogram<u64>>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Tally {
    pub(super) fn new(requests: u64, events_per_request: u64, seconds: u64) -> Self {
        let events = requests * events_per_request;
        let atomics = |n: u64| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Self {
            epoch: Instant::now(),
            events_per_request,
            load_started: AtomicU64::new(0),
            sent_at: atomics(requests),
            seen: atomics(events.div_ceil(64)),
            per_second: atomics(seconds),
            replies: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            to_call: Mutex::new(histogram()),
            to_answer: Mutex::new(histogram()),
        }
    }

    pub(super) fn since_epoch(&self, at: Instant) -> u64 {
        micros(at.saturating_duration_since(self.epoch))
    }

    /// The fake's answer to one request, as LINE's Reply API would give it; a reply token that
    /// comes twice is refused as LINE does.
    pub(super) fn answer(&self, request: &FakeRequest, ok: &FakeResponse) -> FakeResponse {
        let refuse = |status: StatusCode, message: &str| {
            FakeResponse::json(status, &serde_json::json!({ "message": message }))
        };
        if request.bearer() != Some(TOKEN) {
            return refuse(StatusCode::UNAUTHORIZED, "Authentication failed");
        }
        if request.path != REPLY_PATH {
            return refuse(StatusCode::NOT_FOUND, "Not found");
        }
        let index = reply_number(&request.body).and_then(|n| {
            let (r, e) = (n / EVENTS_PER_REQUEST_STRIDE, n % EVENTS_PER_REQUEST_STRIDE);
            let index = r.checked_mul(self.events_per_request)? + e;
            (e < self.events_per_request && index / 64 < self.seen.len() as u64)
                .then_some((r, index))
        });
        let Some((r, index)) = index else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return refuse(StatusCode::BAD_REQUEST, "Invalid reply token");
        };
        let bit = 1u64 << (index % 64);
        if self.seen[(index / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return refuse(StatusCode::BAD_REQUEST, "Invalid reply token");
        }
        self.replies.fetch_add(1, Ordering::Relaxed);
        let arrived = self.since_epoch(request.received_at);
        let answered = self.since_epoch(Instant::now());
        let started = self.load_started.load(Ordering::Relaxed);
        let second = arrived.saturating_sub(started) / 1_000_000;
        if let Some(count) = self.per_second.get(second as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let sent = self.sent_at[r as usize].load(Ordering::Relaxed);
        if sent > 0 {
            let sent = sent - 1;
            lock(&self.to_call).saturating_record(arrived.saturating_sub(sent).max(1));
            lock(&self.to_answer).saturating_record(answered.saturating_sub(sent).max(1));
        }
        ok.clone()
    }
}

/// The event number in a reply call's `"replyToken":"rt<hex>"`.
pub(super) fn reply_number(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"replyToken\":\"rt";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &body[start..];
    let end = rest.iter().position(|&b| b == b'"')?;
    u64::from_str_radix(std::str::from_utf8(&rest[..end]).ok()?, 16).ok()
}
