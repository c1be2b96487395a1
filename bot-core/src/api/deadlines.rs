//! [`Deadlines`]: the per-attempt time-outs of the built-in transport's calls, watched by one
//! timer task per transport and runtime instead of a Tokio timer in every call.
//!
//! Every call in flight waits for its answer and for its attempt's time-out. A Tokio `Sleep` of
//! its own cost 112 bytes of every such call (50,000 of them while a slow API answers); here it
//! is a 40-byte slot in its transport's deadlines, which holds the deadline and the call's
//! waker, and the call holds a reference and the slot's index. A timer task, holding the
//! deadlines weakly (it ends when the transport is dropped), is armed for the earliest deadline
//! it knows of: when it fires, it rings the deadlines due and arms itself for the next, no sooner
//! than [`RING_EVERY`] later (a ring scans every slot). A deadline later than the one armed does
//! not move the timer (most calls are answered long before their time-out); an earlier one wakes
//! it to re-arm. The same scheme as the workers' alarms (`runtime::alarms`), with a task of its
//! own: the calls of one client may run on any task.
//!
//! # Several runtimes
//!
//! A client may be shared by several Tokio runtimes, and one of them may end, or stay alive
//! without being driven (a current-thread runtime outside its `block_on`), while calls of the
//! others wait. So each runtime a call runs on has a timer task of its own, started by the first
//! call there that finds none: every timer rings every deadline due, and a runtime's calls never
//! depend on another runtime's timer. A timer task's guard, built before the task is spawned (so
//! that a task dropped before its first poll, by a runtime shutting down, still runs it), takes
//! the timer out of the list when its runtime drops it, and wakes the calls waiting, which start a
//! timer again where they run at their next poll. A call polled at or past its deadline rings at
//! once, whatever the timers do. The timers read their own runtime's clock: runtimes with paused
//! and real clocks sharing one client see each other's deadlines by the wrong clock.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use tokio::runtime::{Handle, Id};
use tokio::time::Instant;

use crate::slots::Slots;

/// The least time between two rings of a transport's timer: a time-out rings up to this late.
pub(super) const RING_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// The deadlines of one transport's calls in flight, and its timer tasks' state.
#[derive(Debug, Default)]
pub(super) struct Deadlines(Arc<Mutex<Set>>);

#[derive(Debug, Default)]
struct Set {
    /// One per attempt waiting, reused once it ends.
    slots: Slots<Slot>,
    /// The time the timers are to fire at: no later than the earliest deadline not rung yet
    /// (`None` when there is none).
    wake_at: Option<Instant>,
    /// The timer tasks running, one per runtime at most.
    timers: Vec<Timer>,
    /// The number of the next timer task started.
    next_timer: u64,
    /// The transport was dropped: the timer tasks end.
    closed: bool,
}

/// A timer task running.
#[derive(Debug)]
struct Timer {
    number: u64,
    /// The runtime it runs on.
    runtime: Id,
    /// Its waker, to re-arm it for an earlier deadline.
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct Slot {
    /// The attempt's deadline; `None` when no attempt holds the slot.
    deadline: Option<Instant>,
    /// The waker of the attempt's last poll that found its deadline to come.
    waker: Option<Waker>,
    /// The deadline passed (a timer rang it).
    rang: bool,
}

/// An attempt's deadline: [`Deadline::poll`] is ready once it passed. Dropped, it frees its slot.
#[derive(Debug)]
pub(super) struct Deadline<'a> {
    deadlines: &'a Deadlines,
    slot: usize,
}

fn lock(set: &Mutex<Set>) -> MutexGuard<'_, Set> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wakes `wakers`, once the lock is released (a waker may run code that takes it again, and
/// thousands of wake-ups should not hold every call's `set` and `poll` back).
fn wake_all(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

impl Set {
    /// Rings the deadlines at `now` or before (their wakers are returned, to wake once the lock
    /// is released), and sets when to look again: at the earliest deadline left, but not before
    /// [`RING_EVERY`] from `now`.
    fn ring_due(&mut self, now: Instant) -> Vec<Waker> {
        let mut wake = Vec::new();
        if self.slots.held() == 0 {
            // None held (the table keeps its size after a burst): nothing to scan.
            self.wake_at = None;
            return wake;
        }
        let mut next: Option<Instant> = None;
        for slot in self.slots.iter_mut() {
            match slot.deadline {
                Some(deadline) if !slot.rang => {
                    if deadline <= now {
                        slot.rang = true;
                        wake.extend(slot.waker.take());
                    } else if next.is_none_or(|at| deadline < at) {
                        next = Some(deadline);
                    }
                }
                _ => {}
            }
        }
        // The earliest deadline is often a call's that will be answered before it: with
        // thousands in flight, a ring at each of their deadlines would scan them all every
        // millisecond.
        self.wake_at = next.map(|at| at.max(now + RING_EVERY));
        wake
    }

    /// Claims the start of a timer task on `runtime` when none runs there (and the transport is
    /// not dropped): its number, which the caller then spawns (outside the lock).
    fn claim_timer(&mut self, runtime: Id) -> Option<u64> {
        if self.closed || self.timers.iter().any(|t| t.runtime == runtime) {
            return None;
        }
        let number = self.next_timer;
        self.next_timer += 1;
        self.timers.push(Timer {
            number,
            runtime,
            waker: None,
        });
        Some(number)
    }

    /// The timers' wakers, to re-arm them.
    fn timer_wakers(&mut self) -> Vec<Waker> {
        self.timers
            .iter_mut()
            .filter_map(|t| t.waker.take())
            .collect()
    }
}

impl Deadlines {
    /// A deadline at `at` for an attempt; starts a timer task on the current runtime if none
    /// runs there.
    pub(super) fn set(&self, at: Instant) -> Deadline<'_> {
        let runtime = Handle::try_current().ok();
        let mut set = lock(&self.0);
        let slot = set.slots.insert(Slot {
            deadline: Some(at),
            waker: None,
            rang: false,
        });
        let earlier = set.wake_at.is_none_or(|wake_at| at < wake_at);
        let rearm = if earlier {
            set.wake_at = Some(at);
            set.timer_wakers()
        } else {
            Vec::new()
        };
        let start = runtime
            .as_ref()
            .and_then(|runtime| set.claim_timer(runtime.id()));
        drop(set);
        wake_all(rearm);
        if let (Some(number), Some(runtime)) = (start, runtime) {
            self.start_timer(number, &runtime);
        }
        Deadline {
            deadlines: self,
            slot,
        }
    }

    /// Spawns timer task `number` on `runtime`. Its guard is made first: a task dropped before
    /// its first poll (its runtime shutting down) still takes the timer out of the list.
    fn start_timer(&self, number: u64, runtime: &Handle) {
        let gone = TimerGone {
            set: Arc::downgrade(&self.0),
            number,
            ran: false,
        };
        // One task per transport and runtime, living as long as both.
        drop(runtime.spawn(run_timer(gone)));
    }

    /// How many slots are held, for tests.
    #[cfg(test)]
    fn held(&self) -> usize {
        lock(&self.0).slots.held()
    }

    /// The runtimes timer tasks run on, for tests.
    #[cfg(test)]
    fn timer_runtimes(&self) -> Vec<Id> {
        lock(&self.0).timers.iter().map(|t| t.runtime).collect()
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        let wake = {
            let mut set = lock(&self.0);
            set.closed = true;
            set.timer_wakers()
        };
        wake_all(wake);
    }
}

impl Deadline<'_> {
    /// When the deadline is.
    pub(super) fn at(&self) -> Instant {
        lock(&self.deadlines.0).slots[self.slot]
            .deadline
            .unwrap_or_else(Instant::now)
    }

    /// Ready once the deadline passed; pending, with the task's waker kept, until then. Starts
    /// a timer on the current runtime when none runs there (the one this call's first poll
    /// started ended with its runtime, or the call moved to another).
    pub(super) fn poll(&self, task: &mut Context<'_>) -> Poll<()> {
        let runtime = Handle::try_current().ok();
        let mut set = lock(&self.deadlines.0);
        let slot = &mut set.slots[self.slot];
        if slot.rang || slot.deadline.is_none_or(|at| at <= Instant::now()) {
            slot.rang = true;
            return Poll::Ready(());
        }
        match &mut slot.waker {
            Some(waker) if waker.will_wake(task.waker()) => {}
            waker => *waker = Some(task.waker().clone()),
        }
        let start = runtime
            .as_ref()
            .and_then(|runtime| set.claim_timer(runtime.id()));
        drop(set);
        if let (Some(number), Some(runtime)) = (start, runtime) {
            self.deadlines.start_timer(number, &runtime);
        }
        Poll::Pending
    }

    /// Waits until the deadline passed.
    pub(super) fn passed(&self) -> impl Future<Output = ()> + Send + '_ {
        std::future::poll_fn(move |task| self.poll(task))
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        let mut set = lock(&self.deadlines.0);
        set.slots.remove(self.slot);
    }
}

/// Takes timer task `number` out of the list when it ends or is dropped (its runtime shut down,
/// maybe before its first poll), and wakes every attempt waiting, so that each starts a timer
/// again where it runs if none runs there.
struct TimerGone {
    set: Weak<Mutex<Set>>,
    number: u64,
    /// The task was polled. One dropped before (spawned onto a runtime shutting down) served
    /// no call, and waking them would make a call polled under that runtime's handle claim and
    /// lose a timer again at once, in a loop.
    ran: bool,
}

impl Drop for TimerGone {
    fn drop(&mut self) {
        let Some(set) = self.set.upgrade() else {
            return;
        };
        let (wake, gone) = {
            let mut set = lock(&set);
            let before = set.timers.len();
            let gone: Vec<Timer> = set
                .timers
                .extract_if(.., |t| t.number == self.number)
                .collect();
            // The calls waiting are woken to start a timer where they run only when no timer is
            // left: while another runs, it rings them.
            if set.timers.len() == before || !self.ran || !set.timers.is_empty() {
                (Vec::new(), gone)
            } else {
                let wake = set
                    .slots
                    .iter_mut()
                    .filter_map(|slot| slot.waker.take())
                    .collect::<Vec<_>>();
                (wake, gone)
            }
        };
        // Its waker too is dropped once the lock is released.
        drop(gone);
        wake_all(wake);
    }
}

/// A timer task: rings the deadlines due whenever its timer fires, and re-arms it; ends when
/// the transport is dropped.
async fn run_timer(mut gone: TimerGone) {
    gone.ran = true;
    let set = gone.set.clone();
    let number = gone.number;
    let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
    let mut armed: Option<Instant> = None;
    // The time the timer last fired for: rings what is due by then even if the clock reads a
    // moment earlier, so that a timer ready again at once cannot make this loop spin.
    let mut fired: Option<Instant> = None;
    std::future::poll_fn(|task| {
        loop {
            let (wake_at, rung) = {
                let Some(set) = set.upgrade() else {
                    return Poll::Ready(());
                };
                let mut set = lock(&set);
                if set.closed {
                    return Poll::Ready(());
                }
                let now = Instant::now();
                let now = fired.take().map_or(now, |at| now.max(at));
                let rung = if set.wake_at.is_some_and(|at| at <= now) {
                    set.ring_due(now)
                } else {
                    Vec::new()
                };
                match set.timers.iter_mut().find(|t| t.number == number) {
                    Some(timer) => match &mut timer.waker {
                        Some(waker) if waker.will_wake(task.waker()) => {}
                        waker => *waker = Some(task.waker().clone()),
                    },
                    // Taken out of the list (cannot happen while this task runs; be safe).
                    None => return Poll::Ready(()),
                }
                (set.wake_at, rung)
            };
            wake_all(rung);
            let Some(at) = wake_at else {
                return Poll::Pending;
            };
            if armed != Some(at) {
                timer.as_mut().reset(at);
                armed = Some(at);
            }
            if timer.as_mut().poll(task).is_pending() {
                return Poll::Pending;
            }
            fired = Some(at);
        }
    })
    .await;
    drop(gone);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A current-thread runtime with its clock and I/O.
    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn each_deadline_passes_at_its_own_time_even_set_after_a_later_one() {
        let deadlines = Deadlines::default();
        let t0 = Instant::now();
        let late = deadlines.set(t0 + Duration::from_secs(30));
        // Let the timer task arm itself for the later deadline first.
        tokio::task::yield_now().await;
        let early = deadlines.set(t0 + Duration::from_secs(5));
        tokio::select! {
            () = late.passed() => panic!("the later deadline passed first"),
            () = early.passed() => {}
        }
        let at = Instant::now();
        assert!(at >= t0 + Duration::from_secs(5), "{:?}", at - t0);
        assert!(
            at <= t0 + Duration::from_secs(5) + RING_EVERY,
            "{:?}",
            at - t0
        );
        drop(early);
        late.passed().await;
        assert!(Instant::now() >= t0 + Duration::from_secs(30));
        assert!(Instant::now() <= t0 + Duration::from_secs(30) + RING_EVERY);
        drop(late);
        assert_eq!(deadlines.held(), 0, "the slots are given back");
        // A slot reused is silent until its own deadline.
        let again = deadlines.set(Instant::now() + Duration::from_secs(1));
        assert!(
            futures::poll!(std::pin::pin!(again.passed())).is_pending(),
            "a reused slot rang at once"
        );
    }

    #[test]
    fn a_deadline_passes_when_the_runtime_of_another_timer_ends() {
        let deadlines = Deadlines::default();
        let first = current_thread();
        // The timer starts on the first runtime, with a call of its own.
        first.block_on(async {
            let d = deadlines.set(Instant::now() + Duration::from_millis(1));
            d.passed().await;
        });
        let second = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (deadlines, second) = (&deadlines, &second);
        std::thread::scope(|scope| {
            let (polled_tx, polled_rx) = std::sync::mpsc::channel();
            let waiting = scope.spawn(move || {
                second.block_on(async {
                    let at = Instant::now() + Duration::from_millis(200);
                    let deadline = deadlines.set(at);
                    let mut passed = std::pin::pin!(deadline.passed());
                    // Pending, its waker kept; this runtime runs a timer of its own.
                    assert!(futures::poll!(passed.as_mut()).is_pending());
                    polled_tx.send(()).unwrap();
                    // Bounded, so that a timer that never comes back fails rather than hangs.
                    tokio::time::timeout(Duration::from_secs(10), passed)
                        .await
                        .expect("the deadline never passed: no timer after the first runtime");
                    Instant::now().saturating_duration_since(at)
                })
            });
            polled_rx.recv().unwrap();
            drop(first);
            let late = waiting.join().unwrap();
            assert!(late <= Duration::from_secs(2), "passed {late:?} late");
        });
    }

    #[test]
    fn a_timer_task_dropped_before_its_first_poll_leaves_the_list() {
        let deadlines = Deadlines::default();
        let first = current_thread();
        // The timer task is spawned and queued; `block_on` returns before it is polled.
        let id = first.block_on(async {
            drop(deadlines.set(Instant::now() + Duration::from_secs(60)));
            tokio::runtime::Handle::current().id()
        });
        assert_eq!(deadlines.timer_runtimes(), [id]);
        // Shutting down drops the task unpolled: its guard, made before the spawn, runs.
        drop(first);
        assert!(
            deadlines.timer_runtimes().is_empty(),
            "a timer left for a dead runtime"
        );
        let second = current_thread();
        let (id, late) = second.block_on(async {
            let at = Instant::now() + Duration::from_millis(1);
            let d = deadlines.set(at);
            // With no timer, the deadline would pass only at the time-out's poll, 10 s on.
            let _ = tokio::time::timeout(Duration::from_secs(10), d.passed()).await;
            (
                tokio::runtime::Handle::current().id(),
                Instant::now().saturating_duration_since(at),
            )
        });
        assert!(
            late <= Duration::from_secs(2),
            "passed {late:?} late: no timer rang it"
        );
        assert_eq!(deadlines.timer_runtimes(), [id]);
    }

    #[test]
    fn a_deadline_passes_while_the_runtime_of_another_timer_is_idle() {
        let deadlines = Deadlines::default();
        // A timer on the first runtime, which then stays alive without being driven.
        let first = current_thread();
        first.block_on(async {
            let d = deadlines.set(Instant::now() + Duration::from_millis(1));
            d.passed().await;
        });
        let second = current_thread();
        let late = second.block_on(async {
            let at = Instant::now() + Duration::from_millis(50);
            let deadline = deadlines.set(at);
            tokio::time::timeout(Duration::from_secs(10), deadline.passed())
                .await
                .expect("the deadline never passed: it waited on the idle runtime's timer");
            Instant::now().saturating_duration_since(at)
        });
        assert!(late <= Duration::from_secs(2), "passed {late:?} late");
        assert_eq!(deadlines.timer_runtimes().len(), 2, "a timer per runtime");
        drop(first);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_task_ends_with_the_transport() {
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = tasks();
        let deadlines = Deadlines::default();
        drop(deadlines.set(Instant::now() + Duration::from_secs(60)));
        tokio::task::yield_now().await;
        assert_eq!(tasks(), before + 1, "the timer task runs");
        drop(deadlines);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(tasks(), before, "the timer task outlived its transport");
    }
}
