//! [`Conn`]: what the hub keeps of one socket: its outbound queue (bounded in bytes), the reason
//! it is being closed, and when it was last heard from.
//!
//! An idle socket holds no buffer here: the queue is an empty `VecDeque` (no allocation) until a
//! frame waits for it, and the socket task takes every waiting frame at once.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::CloseReason;

/// One socket, as the hub and its sweeper see it.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Its key in the hub's socket table.
    pub(crate) key: usize,
    state: Mutex<ConnState>,
    wake: Notify,
    /// The hub clock (milliseconds) when the browser was last heard from.
    last_seen_ms: AtomicU64,
    /// The hub clock when the socket was accepted.
    pub(crate) accepted_ms: u64,
    joined: AtomicBool,
}

#[derive(Debug, Default)]
struct ConnState {
    queue: VecDeque<Utf8Bytes>,
    queued_bytes: usize,
    close: Option<CloseReason>,
}

/// What [`Conn::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued for the socket.
    Queued,
    /// The socket is closing; the frame was dropped.
    Closing,
    /// The queue passed its bound: the socket is now closing as a slow reader.
    Overflowed,
}

impl Conn {
    pub(crate) fn new(key: usize, now_ms: u64) -> Self {
        Self {
            key,
            state: Mutex::new(ConnState::default()),
            wake: Notify::new(),
            last_seen_ms: AtomicU64::new(now_ms),
            accepted_ms: now_ms,
            joined: AtomicBool::new(false),
        }
    }

    /// Queues `frame` unless that would put more than `max_bytes` in the queue.
    pub(crate) fn push(&self, frame: Utf8Bytes, max_bytes: usize) -> Pushed {
        let mut state = self.lock();
        if state.close.is_some() {
            return Pushed::Closing;
        }
        if state.queued_bytes + frame.len() > max_bytes {
            state.close = Some(CloseReason::SlowReader);
            // What waits is never read now: free it at once.
            state.queue = VecDeque::new();
            state.queued_bytes = 0;
            drop(state);
            self.wake.notify_one();
            return Pushed::Overflowed;
        }
        state.queued_bytes += frame.len();
        state.queue.push_back(frame);
        drop(state);
        self.wake.notify_one();
        Pushed::Queued
    }

    /// Asks the socket to close with `reason`, unless it is already closing; whether this call
    /// decided the reason.
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let mut state = self.lock();
        if state.close.is_some() {
            return false;
        }
        state.close = Some(reason);
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Everything queued, and the close reason if the socket is to close after sending it.
    pub(crate) fn take(&self) -> (VecDeque<Utf8Bytes>, Option<CloseReason>) {
        let mut state = self.lock();
        state.queued_bytes = 0;
        (std::mem::take(&mut state.queue), state.close)
    }

    /// Whether frames wait or a close was asked for.
    pub(crate) fn has_work(&self) -> bool {
        let state = self.lock();
        !state.queue.is_empty() || state.close.is_some()
    }

    /// The close reason, if the socket is closing.
    pub(crate) fn closing(&self) -> Option<CloseReason> {
        self.lock().close
    }

    /// Waits until a frame is queued or a close asked for (returns at once if that happened
    /// since the last wait).
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Waits until the socket is asked to close. It consumes wake-ups meant for new frames: the
    /// socket task takes the queue again after every write, before it waits.
    pub(crate) async fn close_requested(&self) {
        while self.closing().is_none() {
            self.wake.notified().await;
        }
    }

    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
    }

    pub(crate) fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn set_joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnState> {
        // A panic while holding this lock leaves plain data behind: keep using it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_in_bytes_and_an_overflow_closes() {
        let conn = Conn::new(0, 0);
        assert_eq!(conn.push(Utf8Bytes::from("12345"), 8), Pushed::Queued);
        assert_eq!(conn.push(Utf8Bytes::from("123"), 8), Pushed::Queued);
        assert_eq!(conn.push(Utf8Bytes::from("1"), 8), Pushed::Overflowed);
        assert_eq!(conn.push(Utf8Bytes::from("1"), 8), Pushed::Closing);
        let (frames, close) = conn.take();
        assert!(frames.is_empty());
        assert_eq!(close, Some(CloseReason::SlowReader));
        // The first reason stays.
        assert!(!conn.close(CloseReason::HeartbeatTimeout));
    }

    #[test]
    fn taking_empties_the_queue_and_its_count() {
        let conn = Conn::new(0, 0);
        conn.push(Utf8Bytes::from("1234"), 8);
        assert_eq!(conn.take().0.len(), 1);
        conn.push(Utf8Bytes::from("12345678"), 8);
        assert_eq!(
            conn.take(),
            (VecDeque::from([Utf8Bytes::from("12345678")]), None)
        );
    }
}
