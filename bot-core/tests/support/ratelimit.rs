//! Shared rate limits against real stores: callers that record when each call went out, and
//! the count of the busiest second.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bot_core::ratelimit::{SharedLimit, SharedLimits};
use tokio::time::Instant;

/// `callers` callers of `limit` acquiring until `until`, each call's instant pushed to `log`.
pub(crate) async fn run_callers(
    limit: &SharedLimit,
    callers: usize,
    until: Instant,
    log: &Mutex<Vec<Instant>>,
) {
    let caller = || async {
        loop {
            limit.acquire().await;
            let now = Instant::now();
            if now >= until {
                return;
            }
            log.lock().unwrap().push(now);
        }
    };
    futures::future::join_all((0..callers).map(|_| caller())).await;
}

/// `callers` callers of `limit` acquiring until `stop` is set, each call's instant pushed to
/// `log`.
pub(crate) async fn run_callers_until_stopped(
    limit: &SharedLimit,
    callers: usize,
    stop: &AtomicBool,
    log: &Mutex<Vec<Instant>>,
) {
    let caller = || async {
        while !stop.load(Ordering::Relaxed) {
            limit.acquire().await;
            log.lock().unwrap().push(Instant::now());
        }
    };
    futures::future::join_all((0..callers).map(|_| caller())).await;
}

/// Waits until both processes are back on the store (their hand-overs over), then lets them
/// send for one more second and sets `stop`: the calls each made on the store's tokens in that
/// second (none on the local share, asserted).
pub(crate) async fn back_on_the_store(
    a: &SharedLimits,
    b: &SharedLimits,
    stop: &AtomicBool,
) -> [u64; 2] {
    let waited = Instant::now();
    while a.stats().recoveries == 0 || b.stats().recoveries == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "not back on the store 20 s after it returned: {:?} {:?}",
            a.stats(),
            b.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (before_a, before_b) = (a.stats(), b.stats());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (after_a, after_b) = (a.stats(), b.stats());
    assert_eq!(after_a.acquired_fallback, before_a.acquired_fallback);
    assert_eq!(after_b.acquired_fallback, before_b.acquired_fallback);
    [
        after_a.acquired - before_a.acquired,
        after_b.acquired - before_b.acquired,
    ]
}

/// The most calls in any window `[t, t + 1 s)`.
pub(crate) fn max_per_second(times: &[Instant]) -> usize {
    let mut times = times.to_vec();
    times.sort();
    let mut most = 0;
    let mut first = 0;
    for (last, t) in times.iter().enumerate() {
        while *t - times[first] >= Duration::from_secs(1) {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

/// Calls in `[from, to)`.
pub(crate) fn count_between(times: &[Instant], from: Instant, to: Instant) -> usize {
    times.iter().filter(|t| **t >= from && **t < to).count()
}
