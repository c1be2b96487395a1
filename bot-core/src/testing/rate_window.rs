//! [`RateWindow`]: what a platform's rate limit sees — calls in any sliding second — for fakes
//! that enforce a limit and for tests that prove one was never passed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One second, the window platforms state their limits in.
const SECOND: Duration = Duration::from_secs(1);

/// Counts the calls a fake accepted in a sliding one-second window: the most accepted in any
/// second so far, and, with a limit, refuses a call that would pass it (as a platform answers
/// 429), counting the refusals.
///
/// Not locked: a fake keeps it beside its other rules, under their lock.
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    limit: Option<u32>,
    recent: VecDeque<Instant>,
    most: usize,
    accepted: u64,
    refused: u64,
}

/// What a [`RateWindow`] counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RateWindowReport {
    /// The limit in force, if any.
    pub limit: Option<u32>,
    /// The most calls accepted within any one second (a sliding window).
    pub most_in_any_second: usize,
    /// Calls accepted.
    pub accepted: u64,
    /// Calls refused for passing the limit.
    pub refused: u64,
}

impl RateWindowReport {
    /// Whether no second held more accepted calls than the limit (true without a limit).
    pub fn within_limit(&self) -> bool {
        self.limit
            .is_none_or(|limit| self.most_in_any_second <= limit as usize)
    }
}

impl RateWindow {
    /// A window without a limit: it only counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses calls beyond `limit` in any second from now on (`None`: counts only).
    pub fn set_limit(&mut self, limit: Option<u32>) {
        self.limit = limit;
    }

    /// A call arriving now: `true` when accepted (counted in the window), `false` when the
    /// limit refuses it.
    pub fn admit(&mut self) -> bool {
        self.admit_at(Instant::now())
    }

    /// A call arriving at `now` (not before the previous one's).
    pub fn admit_at(&mut self, now: Instant) -> bool {
        while let Some(&first) = self.recent.front() {
            if now.duration_since(first) >= SECOND {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self
            .limit
            .is_some_and(|limit| self.recent.len() >= limit as usize)
        {
            self.refused += 1;
            return false;
        }
        self.recent.push_back(now);
        self.accepted += 1;
        self.most = self.most.max(self.recent.len());
        true
    }

    /// What was counted so far.
    pub fn report(&self) -> RateWindowReport {
        RateWindowReport {
            limit: self.limit,
            most_in_any_second: self.most,
            accepted: self.accepted,
            refused: self.refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_in_any_second_is_a_sliding_count() {
        let mut window = RateWindow::new();
        let start = Instant::now();
        // 3 calls at the end of one second and 3 at the start of the next: 6 within one second,
        // though no calendar second holds more than 3.
        for ms in [900, 950, 990, 1010, 1050, 1100] {
            assert!(window.admit_at(start + Duration::from_millis(ms)));
        }
        assert_eq!(window.report().most_in_any_second, 6);
        // A second later the window holds only the new call.
        assert!(window.admit_at(start + Duration::from_millis(2200)));
        assert_eq!(window.recent.len(), 1);
    }

    #[test]
    fn a_limit_refuses_what_would_pass_it_and_counts_it() {
        let mut window = RateWindow::new();
        window.set_limit(Some(2));
        let start = Instant::now();
        assert!(window.admit_at(start));
        assert!(window.admit_at(start + Duration::from_millis(10)));
        assert!(!window.admit_at(start + Duration::from_millis(20)));
        assert!(window.admit_at(start + Duration::from_millis(1000)));
        let report = window.report();
        assert_eq!((report.accepted, report.refused), (3, 1));
        assert_eq!(report.most_in_any_second, 2);
        assert!(report.within_limit());
    }
}
