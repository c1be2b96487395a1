//! [`Pusher`]: the handle producers push through, and how it closes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::buffer::Shared;
use super::builder::PusherBuilder;
use super::error::PushError;
use super::report::{Counts, PushReport};
use crate::limits::Overflow;

/// What happened to a push the pusher took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushed {
    /// Buffered; a lane will send it.
    Queued,
    /// Buffered, and the oldest buffered push was dropped to make room
    /// ([`Overflow::DropOldest`]; counted in `dropped_oldest`).
    QueuedDroppingOldest,
    /// Dropped because the buffer was full ([`Overflow::DropNewest`]; counted in
    /// `dropped_newest`).
    Dropped,
}

/// Sends many pushes through `k` lanes with a bounded window each, from a bounded buffer; see the
/// [module docs](crate::pusher).
///
/// Cloning is cheap: clones share the buffer and lanes. Dropping the last clone closes it (as
/// [`Pusher::close`], without waiting): what is buffered is still sent.
pub struct Pusher<T> {
    pub(super) shared: Arc<Shared<T>>,
    pub(super) close_on_drop: Arc<CloseOnDrop<T>>,
}

impl<T> Clone for Pusher<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            close_on_drop: self.close_on_drop.clone(),
        }
    }
}

impl<T> fmt::Debug for Pusher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pusher")
            .field("name", &self.shared.name)
            .field("capacity", &self.shared.capacity)
            .field("overflow", &self.shared.overflow)
            .field(
                "stats",
                &self.shared.counts.report(self.shared.started.elapsed()),
            )
            .finish()
    }
}

pub(super) struct CloseOnDrop<T>(pub(super) Arc<Shared<T>>);

impl<T> Drop for CloseOnDrop<T> {
    fn drop(&mut self) {
        self.0.close_intake();
    }
}

impl Pusher<()> {
    /// Sets a pusher up.
    pub fn builder() -> PusherBuilder {
        PusherBuilder::default()
    }
}

impl<T: Send + 'static> Pusher<T> {
    /// Offers `item` without waiting: buffered, or handled by the overflow policy when the buffer
    /// is full ([`Overflow::Wait`] refuses like [`Overflow::Reject`] here).
    ///
    /// # Errors
    ///
    /// [`PushErrorKind::Full`](crate::pusher::PushErrorKind::Full) when the buffer is full under
    /// [`Overflow::Reject`] or [`Overflow::Wait`] (counted as rejected);
    /// [`PushErrorKind::Closed`](crate::pusher::PushErrorKind::Closed) once the pusher is closed
    /// (not counted). The item comes back in the error.
    pub fn try_push(&self, item: T) -> Result<Pushed, PushError<T>> {
        self.shared.offer(item, false)
    }

    /// Offers `item`; under [`Overflow::Wait`], waits for room when the buffer is full.
    ///
    /// # Errors
    ///
    /// As [`Pusher::try_push`], except that [`Overflow::Wait`] waits instead of refusing.
    pub async fn push(&self, item: T) -> Result<Pushed, PushError<T>> {
        if self.shared.overflow != Overflow::Wait {
            return self.shared.offer(item, false);
        }
        let mut item = item;
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.shared.offer(item, true) {
                Err(e) if e.is_full() => item = e.into_inner(),
                done => return done,
            }
            room.await;
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> PushReport {
        self.shared.counts.report(self.shared.started.elapsed())
    }

    /// Refuses new pushes and waits until every buffered push is sent or has failed; returns the
    /// final counts.
    pub async fn close(&self) -> PushReport {
        self.shared.close_intake();
        self.shared.lanes_done().await;
        self.stats()
    }

    /// As [`Pusher::close`], waiting at most `timeout`: then the sends in flight are cancelled
    /// (counted as `cancelled`) and what is still buffered is dropped (counted as `unsent`).
    pub async fn shutdown(&self, timeout: Duration) -> PushReport {
        self.shared.close_intake();
        if tokio::time::timeout(timeout, self.shared.lanes_done())
            .await
            .is_err()
        {
            self.shared.cancel.cancel();
            self.shared.lanes_done().await;
            let left = {
                let mut buffer = self.shared.lock();
                let left = buffer.items.len();
                buffer.items.clear();
                left
            };
            Counts::sub(&self.shared.counts.buffered, left);
            Counts::add(&self.shared.counts.unsent, left);
            tracing::warn!(
                pusher = %self.shared.name,
                unsent = left,
                "pusher: shutdown time-out; buffered pushes dropped, sends in flight cancelled"
            );
        }
        self.stats()
    }
}
