//! The bounded buffer the producers fill and the lanes drain, and its overflow policy.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::error::{PushError, PushErrorKind};
use super::handle::Pushed;
use super::report::{Counts, Metrics};
use crate::limits::Overflow;

/// The buffer and what the lanes and producers share.
pub(super) struct Shared<T> {
    pub(super) name: String,
    pub(super) buffer: Mutex<Buffer<T>>,
    pub(super) capacity: usize,
    pub(super) overflow: Overflow,
    pub(super) counts: Arc<Counts>,
    pub(super) metrics: Option<Metrics>,
    /// Pushes arrived, or the pusher is closing: wakes idle lanes.
    pub(super) work: Notify,
    /// Room freed in the buffer: wakes producers under [`Overflow::Wait`].
    pub(super) room: Notify,
    /// Cancels the lanes at a shutdown's time-out.
    pub(super) cancel: CancellationToken,
    /// Lanes still running.
    pub(super) running: watch::Sender<usize>,
    pub(super) started: Instant,
}

pub(super) struct Buffer<T> {
    pub(super) items: VecDeque<T>,
    pub(super) closed: bool,
}

impl<T> Shared<T> {
    pub(super) fn lock(&self) -> MutexGuard<'_, Buffer<T>> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn offer(&self, item: T, waiting: bool) -> Result<Pushed, PushError<T>> {
        let counts = &self.counts;
        let mut evicted = None;
        let outcome = {
            let mut buffer = self.lock();
            if buffer.closed {
                return Err(PushError::new(PushErrorKind::Closed, self.capacity, item));
            }
            // Counted under the lock, as `take` counts, so that no report ever sees a push
            // taken before it was buffered.
            let outcome = if buffer.items.len() < self.capacity {
                buffer.items.push_back(item);
                Counts::add(&counts.buffered, 1);
                Ok(Pushed::Queued)
            } else {
                match self.overflow {
                    Overflow::DropOldest => {
                        // The evicted push is freed outside the lock.
                        evicted = buffer.items.pop_front();
                        buffer.items.push_back(item);
                        Counts::add(&counts.dropped_oldest, 1);
                        Ok(Pushed::QueuedDroppingOldest)
                    }
                    Overflow::DropNewest => {
                        Counts::add(&counts.dropped_newest, 1);
                        Ok(Pushed::Dropped)
                    }
                    // A waiting producer comes back when there is room; it is counted once, then.
                    Overflow::Wait if waiting => {
                        return Err(PushError::new(PushErrorKind::Full, self.capacity, item));
                    }
                    _ => {
                        Counts::add(&counts.rejected, 1);
                        Err(PushError::new(PushErrorKind::Full, self.capacity, item))
                    }
                }
            };
            Counts::add(&counts.offered, 1);
            outcome
        };
        drop(evicted);
        if matches!(outcome, Ok(Pushed::Queued | Pushed::QueuedDroppingOldest)) {
            self.work.notify_one();
        }
        outcome
    }

    /// Moves up to `room` pushes into `batch`; `None` once closed and empty.
    pub(super) fn take(&self, room: usize, batch: &mut Vec<T>) -> Option<()> {
        let more = {
            let mut buffer = self.lock();
            if buffer.items.is_empty() && buffer.closed {
                return None;
            }
            let n = room.min(buffer.items.len());
            batch.extend(buffer.items.drain(..n));
            // Counted under the lock, so a concurrent eviction never sees a push in two counts.
            Counts::sub(&self.counts.buffered, n);
            Counts::add(&self.counts.in_flight, n);
            !buffer.items.is_empty()
        };
        if !batch.is_empty() {
            if more {
                // Pass the baton: another idle lane may take the rest.
                self.work.notify_one();
            }
            if self.overflow == Overflow::Wait {
                self.room.notify_waiters();
            }
        }
        Some(())
    }

    pub(super) fn close_intake(&self) {
        self.lock().closed = true;
        self.work.notify_waiters();
        self.room.notify_waiters();
    }

    pub(super) async fn lanes_done(&self) {
        let mut running = self.running.subscribe();
        let _ = running.wait_for(|n| *n == 0).await;
    }
}
