//! The fake's own clock for [`super::FakeApiBuilder::precise_latency`]: one thread that wakes each
//! answer when it is due, within the kernel's timer slack (some 50 µs), where Tokio's timer
//! rounds a wait up to its next millisecond tick and its driver then sleeps in whole
//! milliseconds, so that a 20 ms latency became 21-22 ms on average.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::testing::lock;

/// Wakes each waiter at its time, never before. Stops its thread when dropped.
pub(super) struct Clock {
    shared: Arc<Mutex<State>>,
    thread: Thread,
}

struct State {
    due: BinaryHeap<Reverse<Due>>,
    /// When the thread will look next (`None`: when woken).
    wakes_at: Option<Instant>,
    /// Ties in `at` keep their order.
    next: u64,
    stopped: bool,
}

struct Due {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl Clock {
    /// Starts the clock's thread.
    pub(super) fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Mutex::new(State {
            due: BinaryHeap::new(),
            wakes_at: None,
            next: 0,
            stopped: false,
        }));
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-api-clock".to_owned())
            .spawn(move || run(&state))?;
        Ok(Self {
            shared,
            thread: thread.thread().clone(),
        })
    }

    /// Waits until `at` (at once when it has passed); the wait is set when this is called.
    pub(super) fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
        let (wake, woken) = oneshot::channel();
        let wake_thread = {
            let mut state = lock(&self.shared);
            let seq = state.next;
            state.next += 1;
            state.due.push(Reverse(Due { at, seq, wake }));
            // Only a waiter due before the thread's next look needs to wake it.
            let first = state
                .due
                .peek()
                .is_some_and(|Reverse(head)| head.seq == seq);
            first && state.wakes_at.is_none_or(|next| at < next)
        };
        if wake_thread {
            self.thread.unpark();
        }
        async move {
            // The sender is dropped unfired only when the clock stops (the fake is being
            // dropped): then Tokio's timer waits out what is left, so that no answer is early.
            if woken.await.is_err() {
                tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
            }
        }
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        lock(&self.shared).stopped = true;
        self.thread.unpark();
    }
}

fn run(shared: &Mutex<State>) {
    let mut fire = Vec::new();
    loop {
        let sleep = {
            let mut state = lock(shared);
            if state.stopped {
                return;
            }
            let now = Instant::now();
            while state.due.peek().is_some_and(|Reverse(d)| d.at <= now) {
                if let Some(Reverse(due)) = state.due.pop() {
                    fire.push(due.wake);
                }
            }
            state.wakes_at = state.due.peek().map(|Reverse(d)| d.at);
            state.wakes_at.map(|at| at - now)
        };
        for wake in fire.drain(..) {
            // A waiter gone (its connection closed) needs no answer.
            let _ = wake.send(());
        }
        // Spurious returns are harmless: the loop looks again.
        match sleep {
            Some(sleep) => std::thread::park_timeout(sleep),
            None => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt as _;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_every_waiter_and_never_before_its_time() {
        let clock = Clock::start().unwrap();
        let start = Instant::now();
        // Out of order, with ties, and some already past.
        let mut waits = futures::stream::FuturesUnordered::new();
        for n in 0..300_u64 {
            let at = start + Duration::from_micros((n * 7_919) % 40_000) - Duration::from_millis(5);
            let wait = clock.sleep_until(at);
            waits.push(async move {
                wait.await;
                (at, Instant::now())
            });
        }
        let mut woken = 0;
        while let Some((at, now)) = waits.next().await {
            assert!(now >= at, "woken {:?} early", at - now);
            woken += 1;
        }
        assert_eq!(woken, 300);
    }

    #[tokio::test]
    async fn an_earlier_waiter_wakes_the_thread_and_a_stopped_clock_is_never_early() {
        let clock = Clock::start().unwrap();
        let late = Instant::now() + Duration::from_secs(3_600);
        let _late = clock.sleep_until(late);
        // The thread sleeps towards the late waiter; an earlier one must wake it.
        while lock(&clock.shared).wakes_at != Some(late) {
            tokio::task::yield_now().await;
        }
        let early = Instant::now() + Duration::from_millis(20);
        tokio::time::timeout(Duration::from_secs(10), clock.sleep_until(early))
            .await
            .expect("the early waiter was woken");
        assert!(Instant::now() >= early);
        // Stopped with a waiter due later: it still waits its time out.
        let due = Instant::now() + Duration::from_millis(30);
        let waiting = clock.sleep_until(due);
        drop(clock);
        waiting.await;
        assert!(Instant::now() >= due);
    }
}
