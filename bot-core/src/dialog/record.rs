//! What a conversation's dialogs store: the stack of open dialogs, and the effects of the last
//! event, so that a retried event repeats its effects instead of being applied twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::outbound::OutgoingMessage;

/// The stored document under a [`crate::state::StateKey::Dialog`] key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Record {
    /// Open dialogs, the innermost last.
    #[serde(default)]
    pub(super) frames: Vec<Frame>,
    /// How many questions were asked: a tap names the question it answers, so a tap on a
    /// question already left is told apart.
    #[serde(default)]
    pub(super) asked: u64,
    /// When the innermost dialog times out, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub(super) expires_at_ms: u64,
    /// The event that wrote this record, and what it must do: repeated, not re-applied, when
    /// that event is retried.
    #[serde(default)]
    pub(super) last_event: Option<String>,
    #[serde(default)]
    pub(super) effects: Vec<Effect>,
}

impl Record {
    pub(super) fn top(&self) -> Option<&Frame> {
        self.frames.last()
    }
}

/// One open dialog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Frame {
    pub(super) dialog: String,
    pub(super) step: String,
    pub(super) state: Value,
}

/// Something an event does once its record is saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub(super) enum Effect {
    /// A reply.
    Say { message: Box<OutgoingMessage> },
    /// A dialog finished: its `on_done` runs with its final state.
    Done { dialog: String, state: Value },
}

/// Wall-clock milliseconds that follow Tokio's clock: a process's dialogs time out by the
/// wall clock (records cross processes), and tests with paused time see them time out as
/// the clock advances.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    base_unix_ms: u64,
    base: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        let base_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            base_unix_ms,
            base: Instant::now(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_unix_ms.saturating_add(elapsed)
    }
}
