//! What a refused push returns.

use std::fmt;

use crate::error::{Error, ErrorKind};

/// A push the [`super::Pusher`] did not take; the item comes back with it.
pub struct PushError<T> {
    kind: PushErrorKind,
    capacity: usize,
    item: T,
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushErrorKind {
    /// The buffer is full and the policy is [`crate::Overflow::Reject`] (or the push did not
    /// wait, with [`crate::Overflow::Wait`]). The push is counted as rejected.
    Full,
    /// The pusher is closing or closed. The push is not counted.
    Closed,
}

impl<T> PushError<T> {
    pub(super) fn new(kind: PushErrorKind, capacity: usize, item: T) -> Self {
        Self {
            kind,
            capacity,
            item,
        }
    }

    /// Why it was refused.
    pub fn kind(&self) -> PushErrorKind {
        self.kind
    }

    /// Whether the buffer was full (trying again later may succeed).
    pub fn is_full(&self) -> bool {
        self.kind == PushErrorKind::Full
    }

    /// Whether the pusher is closed (trying again never succeeds).
    pub fn is_closed(&self) -> bool {
        self.kind == PushErrorKind::Closed
    }

    /// The item that was not taken.
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushError")
            .field("kind", &self.kind)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PushErrorKind::Full => write!(
                f,
                "the push buffer is full ({} pushes waiting); try again later or shed load with \
                 Overflow::DropOldest or DropNewest",
                self.capacity
            ),
            PushErrorKind::Closed => f.write_str("the pusher is closed"),
        }
    }
}

impl<T> std::error::Error for PushError<T> {}

impl<T> From<PushError<T>> for Error {
    fn from(e: PushError<T>) -> Self {
        let kind = match e.kind {
            PushErrorKind::Full => ErrorKind::QueueFull,
            PushErrorKind::Closed => ErrorKind::QueueClosed,
        };
        Error::new(kind, e.to_string())
    }
}
