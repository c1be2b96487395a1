//! [`ShardStatus`]: what a shard is doing, for health checks and tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::session::Session;

/// What a shard is doing, for health checks and tests.
#[derive(Debug, Default)]
pub struct ShardStatus {
    pub(super) connections: AtomicU64,
    pub(super) identifies: AtomicU64,
    pub(super) resumes: AtomicU64,
    pub(super) dispatches: AtomicU64,
    pub(super) hand_overs: AtomicU64,
    pub(super) hand_over_retries: AtomicU64,
    /// Set while the queue refuses dispatches, across reconnections.
    pub(super) queue_failing: AtomicBool,
    pub(super) latency_micros: AtomicU64,
    pub(super) session: Mutex<Option<Session>>,
}

impl ShardStatus {
    /// Connections opened so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Identify payloads sent so far (new sessions).
    pub fn identifies(&self) -> u64 {
        self.identifies.load(Ordering::Relaxed)
    }

    /// Resume payloads sent so far.
    pub fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Relaxed)
    }

    /// Dispatches received so far.
    pub fn dispatches(&self) -> u64 {
        self.dispatches.load(Ordering::Relaxed)
    }

    /// Batches of dispatches the queue accepted so far.
    pub fn hand_overs(&self) -> u64 {
        self.hand_overs.load(Ordering::Relaxed)
    }

    /// Batches of dispatches offered to the queue again after it failed with an error other than full.
    pub fn hand_over_retries(&self) -> u64 {
        self.hand_over_retries.load(Ordering::Relaxed)
    }

    /// The time between the last heartbeat and its ACK.
    pub fn latency(&self) -> Option<Duration> {
        match self.latency_micros.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    /// The current session, once READY arrived.
    pub fn session(&self) -> Option<Session> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_session(&self, session: Option<&Session>) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = session.cloned();
    }
}
