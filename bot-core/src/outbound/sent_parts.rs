//! [`SentParts`]: the parts of sends a client made for handlers, so that retries skip them.

use crate::api::SentKeys;
use crate::event::EventId;

/// How long a [`SentParts`] remembers a part by default: far beyond the runtime's retry schedule
/// (by default 5 attempts, backoff up to 5 minutes).
pub const SENT_PARTS_TTL: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// How many parts a [`SentParts`] remembers at most by default; the oldest are forgotten first.
pub const MAX_SENT_PARTS: usize = 100_000;

/// An event, the index of a send for it ([`Target::send_index`](super::Target::send_index)), and the part of that send.
pub type PartKey = (EventId, u32, usize);

/// Parts of sends a client made (or may have made) for handlers, by (event, send index, part),
/// so that a retried handler skips them instead of sending them twice where the platform offers
/// no idempotency key: a [`SentKeys`] of [`PartKey`]s (see [`crate::api::send_once`]).
pub type SentParts = SentKeys<PartKey>;

impl Default for SentParts {
    /// Remembers each part for [`SENT_PARTS_TTL`], at most [`MAX_SENT_PARTS`] of them.
    fn default() -> Self {
        Self::new(SENT_PARTS_TTL, MAX_SENT_PARTS)
    }
}
