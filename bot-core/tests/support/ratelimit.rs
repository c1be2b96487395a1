//! Shared rate limits against real stores: callers that record when each call went out, and
//! the count of the busiest second.

use std::sync::Mutex;
use std::time::Duration;

use bot_core::ratelimit::SharedLimit;
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
