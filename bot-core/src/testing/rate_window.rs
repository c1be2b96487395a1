//! [`RateWindow`]: what a platform's rate limit sees — calls in any sliding second — for fakes
//! that enforce a limit and for tests that prove one was never passed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One second, the window platforms state their limits in.
const SECOND: Duration = Duration::from_secs(1);

/// Counts the calls a fake received in a sliding one-second window: the most in any second so
/// far, and, with a limit, refuses a call that arrives when the second before it already holds
/// `limit` calls (as a platform answers 429; refused calls count in the window too, as they do
/// at a platform), counting the refusals.
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
    /// The most calls received within any one second (a sliding window), refused ones included.
    pub most_in_any_second: usize,
    /// Calls accepted.
    pub accepted: u64,
    /// Calls refused for passing the limit.
    pub refused: u64,
}

impl RateWindowReport {
    /// Whether no second held more calls than the limit (true without a limit): the callers
    /// kept to it.
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

    /// A call arriving now (counted in the window): `true` when accepted, `false` when the
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
        let over = self
            .limit
            .is_some_and(|limit| self.recent.len() >= limit as usize);
        self.recent.push_back(now);
        self.most = self.most.max(self.recent.len());
        if over {
            self.refused += 1;
            return false;
        }
        self.accepted += 1;
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
        assert!(window.report().within_limit());
        // A third call within the second is refused, and the second saw one call too many.
        assert!(!window.admit_at(start + Duration::from_millis(20)));
        // The refused call counts in the window too: still refused at 1,005 ms.
        assert!(!window.admit_at(start + Duration::from_millis(1005)));
        assert!(window.admit_at(start + Duration::from_millis(1030)));
        let report = window.report();
        assert_eq!((report.accepted, report.refused), (3, 2));
        assert_eq!(report.most_in_any_second, 3);
        assert!(!report.within_limit());
    }
}
