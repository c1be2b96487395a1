//! Queues: where accepted events wait until the supervisor has a free slot.
//!
//! The [`Queue`] trait is shaped for both the in-memory default ([`MemoryQueue`]) and a durable
//! PostgreSQL backend shared by many processes: batched pushes with deduplication, demand-driven
//! pulls that hand out leases, batched acknowledgements fenced by lease tokens, delayed retries and
//! dead letters. Per-conversation ordering is enforced by the pull (a conversation with an event
//! leased or waiting for its retry hands out nothing else), which is what lets a shared backend keep
//! the order across processes.

mod dedup;
mod memory;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::event::{Event, Timestamp};

pub use memory::MemoryQueue;

/// What one event costs beyond the bytes counted from its content: the event's handle in the
/// queue's entry and its share of the block it points to (its
/// [`EventData`](crate::event::EventData); the block's reference counts are shared by the events
/// of its batch and counted apart, [`event_bytes`]), the headers of its shared strings and payload, the
/// allocator's headers and rounding, the buffers' spare room, the deduplication key and a
/// conversation lane.
///
/// Calibrated by measurement when events were held inline: a LINE text event as the adapter makes
/// it (about 530 bytes of JSON) took 2,020 bytes of resident memory per event queued (50,000
/// events, `BOT_BENCH_MEMORY=1 cargo bench -p bot-core --bench supervisor`, glibc malloc). Since
/// then the queue's own bookkeeping shrank (fingerprinted dedup keys and lane keys, the event a
/// handle): the same measurement gave 1,217 bytes on 2026-12-06 before the event became a handle
/// and 1,068-1,070 after, against 2,276 counted. The count is kept on the safe side (a full
/// queue of events waiting in arrival order stays under its budget; one whose events wait behind
/// slow conversations, each keeping its block's siblings, can exceed it: [`block_share_bytes`])
/// until a recalibration is checked against the
/// 64 MiB bound of a bot driven past saturation (`botload scenario webhook-noop`). Since the
/// events of a batch share one block, the handle is three words instead of one and a block's two
/// counts are shared by its events: a LINE event of a 10-event body counts 16 bytes more for
/// its handle and 14 fewer for the counts.
pub(crate) const EVENT_OVERHEAD_BYTES: usize =
    std::mem::size_of::<Event>() + std::mem::size_of::<crate::event::EventData>() + 1312;

/// The head of the block an [`Event`] points to, its strong and weak counts: shared by the
/// events of its batch.
const EVENT_BLOCK_COUNTS_BYTES: usize = 2 * std::mem::size_of::<usize>();

/// An event's share of its block's counts ([`EVENT_BLOCK_COUNTS_BYTES`]), rounded up.
///
/// A block lives until the last event of its batch is done, so an event queued alone (its
/// siblings handled) keeps theirs too: counted by their own share while they were queued, and
/// by the queue no longer, as a body shared by a batch's payloads is counted by each payload's
/// text only. That is up to [`BLOCK_EVENTS`](crate::event::BLOCK_EVENTS)` - 1` siblings' data
/// (456 bytes each, and what they own apart) per event waiting behind a slow conversation; the
/// margin of [`EVENT_OVERHEAD_BYTES`] over what an event was measured to keep resident (about
/// 1.2 KB) covers two or three of them, not fifteen. An event kept for a retry or as a dead
/// letter leaves its block, and the body or frame it was read from (`Event::shed_caches`).
pub(crate) fn block_share_bytes(event: &Event) -> usize {
    EVENT_BLOCK_COUNTS_BYTES.div_ceil(event.block_len().max(1))
}

/// The bytes an event holds while it waits in a queue, from its public parts: the ids, the raw
/// payload's JSON text, the text and attachments of a message, plus [`EVENT_OVERHEAD_BYTES`] and
/// its share of its block's counts ([`block_share_bytes`]).
///
/// An estimate for byte budgets, not an exact count: strings are counted by length, without the
/// allocator's rounding. A payload kept as a JSON tree is counted by its text (written once and
/// kept, as a durable queue would need it anyway).
// Lengths are read from the bytes: `as_str` checks the UTF-8 again on every call, which showed
// in the webhook's profile (2 % of its time with the key's hashing).
pub(crate) fn event_bytes(event: &Event) -> usize {
    use crate::event::EventKind;
    let opt = |s: Option<&str>| s.map_or(0, str::len);
    let id_len = |s: Option<&crate::event::MessageId>| s.map_or(0, |i| i.as_bytes().len());
    let message = |m: &crate::event::Message| {
        id_len(m.id.as_ref())
            + opt(m.text.as_deref())
            + id_len(m.reply_to.as_ref())
            + m.attachments
                .iter()
                .map(|a| {
                    std::mem::size_of::<crate::event::Attachment>()
                        + opt(a.url.as_deref())
                        + opt(a.id.as_deref())
                        + opt(a.name.as_deref())
                        + opt(a.mime_type.as_deref())
                })
                .sum::<usize>()
            + m.mentions
                .iter()
                .map(|u| std::mem::size_of::<crate::event::Mention>() + u.user.as_bytes().len())
                .sum::<usize>()
    };
    let kind = match &event.kind {
        EventKind::Message(m) | EventKind::Edited(m) => message(m),
        EventKind::Postback(p) => p.data.len(),
        EventKind::Command(c) => c.name.len(),
        EventKind::MemberJoined(m) | EventKind::MemberLeft(m) => {
            m.users.iter().map(|u| 16 + u.as_bytes().len()).sum()
        }
        EventKind::Reaction(r) => r.message_id.as_bytes().len() + r.emoji.len(),
        EventKind::Deleted(d) => d.message_id.as_bytes().len(),
        EventKind::Other(o) => o.name.len(),
        _ => 0,
    };
    // A payload kept as a tree only is counted by its text, written once and kept.
    let raw = match event.raw.text_len() {
        0 => event.raw.json().len(),
        len => len,
    };
    EVENT_OVERHEAD_BYTES
        + block_share_bytes(event)
        + event.id.as_bytes().len()
        + event.conversation.as_bytes().len()
        + event.sender.as_ref().map_or(0, |s| s.as_bytes().len())
        + event.reply_token.as_ref().map_or(0, |t| t.byte_len())
        + raw
        + kind
}

/// A claim on one delivered event. Completions carry it so that a stale holder cannot complete
/// someone else's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The backend's id of the queued event.
    pub id: u64,
    /// A token unique to this claim.
    pub token: u64,
}

/// An event handed out by [`Queue::pull`].
///
/// The delivery owns its event. Completions that give an event back to the queue ([`Nack`],
/// [`Dead`], [`Queue::release`]) carry it back, so a backend that keeps only ids while an event is
/// leased (PostgreSQL keeps the row) and one that keeps nothing else (memory) share one shape.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The claim to complete.
    pub lease: Lease,
    /// The event.
    pub event: Event,
    /// Which attempt this delivery is, starting at 1.
    pub attempt: u32,
}

/// What a push did with each event of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushReport {
    /// Events now in the queue.
    pub accepted: usize,
    /// Events skipped because their (platform, id) was seen before.
    pub duplicates: usize,
    /// Events of this batch dropped because the buffer was full ([`crate::Overflow::DropNewest`]).
    pub dropped_newest: usize,
    /// Older waiting events evicted to make room ([`crate::Overflow::DropOldest`]).
    pub evicted_oldest: usize,
}

/// A failed attempt to retry later.
#[derive(Debug, Clone)]
pub struct Nack {
    /// The claim.
    pub lease: Lease,
    /// How long to wait before the next attempt.
    pub delay: Duration,
    /// Why the attempt failed (kept for inspection).
    pub error: String,
    /// The event, handed back.
    pub event: Event,
}

/// An event to give up on.
#[derive(Debug, Clone)]
pub struct Dead {
    /// The claim.
    pub lease: Lease,
    /// Why the last attempt failed.
    pub error: String,
    /// The event, handed back.
    pub event: Event,
}

/// An event that failed every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The event.
    pub event: Event,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was given up on.
    pub failed_at: Timestamp,
}

/// What happened to completions handed to [`Queue::ack`], [`Queue::nack`], [`Queue::dead`] or
/// [`Queue::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completed {
    /// Completions applied.
    pub applied: usize,
    /// Completions ignored because the lease had expired or belonged to another claim.
    pub stale: usize,
}

/// A queue backend.
///
/// All methods are safe to call from many tasks. `pull` is cancel-safe: if its future is dropped
/// before it returns, no event is lost or leased.
#[async_trait]
pub trait Queue: Send + Sync + fmt::Debug + 'static {
    /// Adds a batch of events, skipping those already seen, applying the overflow policy.
    ///
    /// Under [`crate::Overflow::Reject`] and [`crate::Overflow::Wait`] a batch goes in whole or
    /// not at all, also when the future is dropped while waiting: callers count what a push took
    /// from its report, and a webhook that timed out must leave nothing half-accepted.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::QueueFull`] (with a retry hint) when the policy is to reject and the batch
    /// does not fit: nothing of the batch is added. [`crate::ErrorKind::QueueClosed`] after
    /// [`Queue::close`].
    async fn push_batch(&self, events: Vec<Event>) -> Result<PushReport, Error>;

    /// Waits until at least one event is available and leases up to `max` of them.
    ///
    /// Returns an empty batch once the queue is closed.
    ///
    /// # Errors
    ///
    /// Fails when the backend fails.
    async fn pull(&self, max: usize) -> Result<Vec<Delivery>, Error>;

    /// Completes leases successfully: their events are done.
    ///
    /// # Errors
    ///
    /// Fails when the backend fails; stale leases are counted, not errors.
    async fn ack(&self, leases: &[Lease]) -> Result<Completed, Error>;

    /// Acknowledges `leases` at once, when this backend can do it without waiting and without
    /// failing (an in-memory queue): the supervisor then applies its acknowledgements on its
    /// dispatcher as its workers report, instead of handing them to its completer task. `None`
    /// (the default): nothing was applied, and the supervisor hands them to [`Queue::ack`].
    ///
    /// `Some` means every lease was applied or counted as stale, as [`Queue::ack`]'s `Ok` does:
    /// the supervisor never retries them. It runs on the dispatcher, so it must not block (a
    /// short lock at most) and must not panic.
    fn ack_now(&self, leases: &[Lease]) -> Option<Completed> {
        let _ = leases;
        None
    }

    /// Fails leases: each event becomes available again after its delay. With per-conversation
    /// ordering its conversation waits too.
    ///
    /// # Errors
    ///
    /// Fails when the backend fails.
    async fn nack(&self, nacks: Vec<Nack>) -> Result<Completed, Error>;

    /// Moves leased events to the dead letters. Returns the dead letters made (stale leases are
    /// left out).
    ///
    /// # Errors
    ///
    /// Fails when the backend fails.
    async fn dead(&self, dead: Vec<Dead>) -> Result<Vec<DeadLetter>, Error>;

    /// Returns leased events that were not run to completion (cancelled at shutdown, prefetched
    /// and unstarted) without counting an attempt.
    ///
    /// # Errors
    ///
    /// Fails when the backend fails.
    async fn release(&self, deliveries: Vec<Delivery>) -> Result<Completed, Error>;

    /// The supervisor stopped pulling for good (shutdown began). A backend that claims events
    /// ahead of demand hands them back now, so that other processes run them while this one
    /// drains. The default does nothing.
    async fn stop_pulling(&self) {}

    /// Keeps leases alive for `by` more while long handlers run.
    ///
    /// # Errors
    ///
    /// Fails when the backend fails.
    async fn extend_lease(&self, leases: &[Lease], by: Duration) -> Result<Completed, Error>;

    /// The dead letters kept, oldest first, at most `limit` of them.
    ///
    /// # Errors
    ///
    /// Fails when the backend fails.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error>;

    /// Puts up to `max` dead letters back in the queue, oldest first, with fresh attempt counts.
    /// Returns how many were re-driven.
    ///
    /// # Errors
    ///
    /// Fails when the backend fails.
    async fn redrive(&self, max: usize) -> Result<usize, Error>;

    /// How long a lease lasts unless extended, for backends whose leases expire (so that another
    /// process can take over the events of a crashed one). The supervisor then extends the leases
    /// of running handlers every third of it. `None` (the default): leases last until completed.
    fn lease_duration(&self) -> Option<Duration> {
        None
    }

    /// Dead letters dropped so far because the backend keeps a bounded number of them (the
    /// runtime counts them as `bot.events.dropped{reason="dead_letter_evicted"}`).
    fn dead_letters_evicted(&self) -> u64 {
        0
    }

    /// Stops accepting pushes and wakes every waiting `pull` and `push_batch`.
    fn close(&self);

    /// Events waiting (not leased), as last known; used for the `bot.queue.depth` gauge.
    fn depth(&self) -> u64;

    /// Events waiting (not leased) now, for a shutdown's report: a backend whose
    /// [`Queue::depth`] is a figure counted now and then (the PostgreSQL queue's) counts it
    /// again. The default is [`Queue::depth`].
    async fn depth_now(&self) -> u64 {
        self.depth()
    }
}
