//! [`Alarms`]: the time-outs of one worker's attempts and the supervisor's hard stop, watched by
//! the worker with one timer and one wait for the stop.
//!
//! An attempt still running after its first poll waits for its handler, its deadline and the hard
//! stop. With a Tokio timer and a cancellation waiter of its own that cost some 180 bytes of
//! every such attempt (50,000 of them while a slow API answers); here it is a slot of 40 bytes in
//! its worker's alarms, which hold the attempt's deadline and waker. The worker's one timer is
//! armed for the earliest deadline it knows of: when it fires, the worker rings the alarms due
//! and arms it for the next, no sooner than [`RING_EVERY`] later (a ring scans every slot). A
//! deadline later than the one armed does not move the timer (most attempts finish long before
//! their deadline); one earlier does, at the worker's next turn. The worker looks at its timer
//! and the hard stop at every turn, so that a steady load does not hold them back.

use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

use super::task::TaskFailure;
use crate::slots::Slots;

/// The least time between two rings of a worker's alarms: a time-out rings up to this late.
pub(crate) const RING_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// The alarms of one worker's attempts.
#[derive(Debug, Default)]
pub(crate) struct Alarms(Mutex<Set>);

#[derive(Debug, Default)]
struct Set {
    /// One per attempt watched, reused once it ends.
    slots: Slots<Slot>,
    /// The time the worker's timer is to fire at: no later than the earliest deadline of an
    /// alarm not rung yet (`None` when there is none).
    wake_at: Option<Instant>,
    /// The hard stop happened: every alarm rings, those set from now on at once.
    stopped: bool,
}

#[derive(Debug, Default)]
struct Slot {
    /// The attempt's deadline; `None` when no attempt holds the slot.
    deadline: Option<Instant>,
    /// The waker of the attempt's last poll that found its alarm silent.
    waker: Option<Waker>,
    /// Why the alarm rang ([`TaskFailure::Timeout`] or [`TaskFailure::Cancelled`]), once it did.
    rang: Option<TaskFailure>,
}

impl Slot {
    fn ring(&mut self, why: TaskFailure) {
        if self.deadline.is_some() && self.rang.is_none() {
            self.rang = Some(why);
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }
}

/// An attempt's alarm: rings at its deadline or at the hard stop, whichever comes first. Dropped,
/// it frees its slot.
#[derive(Debug)]
pub(crate) struct Alarm<'a> {
    alarms: &'a Alarms,
    slot: usize,
}

impl Alarms {
    fn lock(&self) -> MutexGuard<'_, Set> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An alarm that rings at `deadline`, or at once if the hard stop happened already.
    pub(crate) fn set(&self, deadline: Instant) -> Alarm<'_> {
        let mut set = self.lock();
        let rang = set.stopped.then_some(TaskFailure::Cancelled);
        if rang.is_none() && set.wake_at.is_none_or(|at| deadline < at) {
            set.wake_at = Some(deadline);
        }
        let slot = set.slots.insert(Slot {
            deadline: Some(deadline),
            waker: None,
            rang,
        });
        Alarm { alarms: self, slot }
    }

    /// When the worker's timer is to fire: the earliest deadline of an alarm not rung yet, or
    /// earlier; `None` when no alarm waits.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        self.lock().wake_at
    }

    /// Rings the alarms whose deadline is `now` or before, and sets when to look again: at the
    /// earliest deadline left, but not before [`RING_EVERY`] from `now`.
    pub(crate) fn ring_due(&self, now: Instant) {
        let mut set = self.lock();
        let mut next: Option<Instant> = None;
        for slot in set.slots.iter_mut() {
            match slot.deadline {
                Some(deadline) if slot.rang.is_none() => {
                    if deadline <= now {
                        slot.ring(TaskFailure::Timeout);
                    } else if next.is_none_or(|at| deadline < at) {
                        next = Some(deadline);
                    }
                }
                _ => {}
            }
        }
        // A ring scans every slot, and the earliest deadline is often an attempt's that will
        // finish before it (a handler's time-out is seconds, most take less): with thousands
        // waiting, a ring at each of their deadlines would scan them all every millisecond.
        set.wake_at = next.map(|at| at.max(now + RING_EVERY));
    }

    /// The hard stop: rings every alarm (those due at `now` as time-outs), and those set from
    /// now on at once.
    pub(crate) fn stop(&self, now: Instant) {
        self.ring_due(now);
        let mut set = self.lock();
        set.stopped = true;
        set.wake_at = None;
        for slot in set.slots.iter_mut() {
            slot.ring(TaskFailure::Cancelled);
        }
    }

    /// Polls the worker's `timer` for the alarms: arms it for [`Alarms::wake_at`] and rings the
    /// alarms due whenever it fires. Never ready: what it rings wakes the attempts, which the
    /// worker polls.
    pub(crate) fn poll_timer(
        &self,
        mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
        armed: &mut Option<Instant>,
        task: &mut Context<'_>,
    ) -> Poll<()> {
        loop {
            let Some(at) = self.wake_at() else {
                return Poll::Pending;
            };
            if *armed != Some(at) {
                timer.as_mut().reset(at);
                *armed = Some(at);
            }
            if timer.as_mut().poll(task).is_pending() {
                return Poll::Pending;
            }
            self.ring_due(Instant::now());
        }
    }
}

impl Alarm<'_> {
    /// Ready with why the alarm rang ([`TaskFailure::Timeout`] or [`TaskFailure::Cancelled`]);
    /// pending, with the task's waker kept, until it does.
    pub(crate) fn poll(&self, task: &mut Context<'_>) -> Poll<TaskFailure> {
        let mut set = self.alarms.lock();
        let slot = &mut set.slots[self.slot];
        if let Some(why) = slot.rang {
            return Poll::Ready(why);
        }
        match &mut slot.waker {
            Some(waker) if waker.will_wake(task.waker()) => {}
            waker => *waker = Some(task.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Alarm<'_> {
    fn drop(&mut self) {
        let mut set = self.alarms.lock();
        set.slots.remove(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn each_alarm_rings_at_its_own_deadline_and_the_timer_follows_the_earliest() {
        let alarms = Alarms::default();
        let t0 = Instant::now();
        let late = alarms.set(t0 + Duration::from_secs(10));
        assert_eq!(alarms.wake_at(), Some(t0 + Duration::from_secs(10)));
        // An alarm set later with an earlier deadline moves the timer forward.
        let early = alarms.set(t0 + Duration::from_secs(2));
        assert_eq!(alarms.wake_at(), Some(t0 + Duration::from_secs(2)));
        let (woken, waker) = count();
        let mut task = Context::from_waker(&waker);
        assert!(late.poll(&mut task).is_pending());
        assert!(early.poll(&mut task).is_pending());

        alarms.ring_due(t0 + Duration::from_secs(1));
        assert!(early.poll(&mut task).is_pending(), "not due yet");
        assert_eq!(woken.0.load(Ordering::Relaxed), 0);
        alarms.ring_due(t0 + Duration::from_secs(2));
        assert_eq!(early.poll(&mut task), Poll::Ready(TaskFailure::Timeout));
        assert!(
            late.poll(&mut task).is_pending(),
            "its own deadline is later"
        );
        assert_eq!(
            woken.0.load(Ordering::Relaxed),
            1,
            "the rung attempt is woken"
        );
        assert_eq!(alarms.wake_at(), Some(t0 + Duration::from_secs(10)));

        // An alarm dropped is forgotten: the timer is not armed for it any more.
        drop(late);
        alarms.ring_due(t0 + Duration::from_secs(3));
        assert_eq!(alarms.wake_at(), None);
        // Its slot is reused, silent.
        let again = alarms.set(t0 + Duration::from_secs(20));
        assert!(again.poll(&mut task).is_pending());
    }

    #[test]
    fn the_hard_stop_rings_every_alarm_and_those_set_after_it_at_once() {
        let alarms = Alarms::default();
        let t0 = Instant::now();
        let due = alarms.set(t0 + Duration::from_secs(1));
        let running = alarms.set(t0 + Duration::from_secs(60));
        let (woken, waker) = count();
        let mut task = Context::from_waker(&waker);
        assert!(running.poll(&mut task).is_pending());
        assert!(due.poll(&mut task).is_pending());
        alarms.stop(t0 + Duration::from_secs(1));
        // A deadline that came with the stop is a time-out, as when the attempt saw both.
        assert_eq!(due.poll(&mut task), Poll::Ready(TaskFailure::Timeout));
        assert_eq!(running.poll(&mut task), Poll::Ready(TaskFailure::Cancelled));
        assert_eq!(woken.0.load(Ordering::Relaxed), 2);
        let late = alarms.set(t0 + Duration::from_secs(60));
        assert_eq!(late.poll(&mut task), Poll::Ready(TaskFailure::Cancelled));
        assert_eq!(alarms.wake_at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_workers_timer_rings_each_alarm_when_its_deadline_comes() {
        let alarms = Alarms::default();
        let t0 = Instant::now();
        let mut timer = std::pin::pin!(tokio::time::sleep_until(t0));
        let mut armed = None;
        let late = alarms.set(t0 + Duration::from_secs(30));
        let early = alarms.set(t0 + Duration::from_secs(5));
        let rang = std::future::poll_fn(|task| {
            // The worker's turn: the attempts, then the timer.
            if let Poll::Ready(why) = early.poll(task) {
                return Poll::Ready(why);
            }
            assert!(late.poll(task).is_pending());
            let _ = alarms.poll_timer(timer.as_mut(), &mut armed, task);
            Poll::Pending
        })
        .await;
        assert_eq!(rang, TaskFailure::Timeout);
        assert_eq!(Instant::now(), t0 + Duration::from_secs(5));
        drop(early);
        let rang = std::future::poll_fn(|task| {
            if let Poll::Ready(why) = late.poll(task) {
                return Poll::Ready(why);
            }
            let _ = alarms.poll_timer(timer.as_mut(), &mut armed, task);
            Poll::Pending
        })
        .await;
        assert_eq!(rang, TaskFailure::Timeout);
        assert_eq!(Instant::now(), t0 + Duration::from_secs(30));
    }
}
