//! Dispatches in batches, and their hand-over to the runtime: waiting while the queue is full,
//! retrying with a capped back-off while it fails.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bot_core::event::Raw;
use bot_core::readiness::Component;
use bot_core::{ErrorKind as CoreKind, Event, EventData, Ingress};
use bytes::Bytes;
use futures::FutureExt as _;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::frame::parse_frame;
use super::shard::{FULL_QUEUE_WAIT, QUEUE_ERROR_LOG_INTERVAL};
use super::status::ShardStatus;
use crate::event::{DispatchContext, map_dispatch};

/// How large a batch may grow.
#[derive(Clone, Copy)]
pub(super) struct BatchLimits {
    pub(super) dispatches: usize,
    pub(super) bytes: usize,
}

/// A dispatch read and not yet accepted: its name, sequence and data, a range of the message's
/// copy, which is UTF-8 once checked (or never, for a text message: the WebSocket layer checked
/// it), so that neither the batch nor the mapping checks it again; a batch refused by the queue
/// is mapped again from it, not copied.
pub(super) struct Dispatch {
    pub(super) name: Cow<'static, str>,
    pub(super) sequence: Option<u64>,
    /// The whole message, shared by its dispatches and their events' raw payloads.
    pub(super) message: Utf8Bytes,
    /// Where the data is in `message`.
    pub(super) data: Range<usize>,
    /// Whether `data` was cut by the envelope alone: if it is not JSON (the frame went on after
    /// `d`), the message is parsed whole instead.
    pub(super) cut: bool,
}

impl Dispatch {
    /// The dispatch whose data is `data`: a range of `message` when it is a part of it (it
    /// always is when read from it), else a copy of its own (a frame without `d`, whose data is
    /// the `null` it defaults to), so that no dispatch is dropped and its sequence is recorded.
    pub(super) fn new(
        name: &str,
        sequence: Option<u64>,
        message: &Utf8Bytes,
        data: &str,
        cut: bool,
    ) -> Self {
        let (message, data) = match range_in(message.as_str(), data) {
            Some(range) => (message.clone(), range),
            None => (Utf8Bytes::from(data), 0..data.len()),
        };
        Self {
            name: dispatch_name(name),
            sequence,
            data,
            message,
            cut,
        }
    }

    fn data(&self) -> &str {
        self.message
            .as_str()
            .get(self.data.clone())
            .unwrap_or("null")
    }

    /// The dispatch's event data (batched by the caller with the other dispatches of its block).
    pub(super) fn event(&self, context: &DispatchContext) -> Option<EventData> {
        let data = self.data();
        match map_dispatch(&self.name, data, self.sequence, context) {
            Ok(event) => event.map(|mut event| {
                event.raw = Raw::from_shared(&Bytes::from(self.message.clone()), data);
                event
            }),
            Err(_) if self.cut => self.event_of_whole_frame(context),
            Err(error) => {
                // JSON, but more deeply nested than a tree may be (or a lone surrogate).
                tracing::warn!(category = ?error.classify(), name = %self.name, "discord dispatch cannot be read");
                None
            }
        }
    }

    /// The event of a dispatch whose data, cut by the envelope alone, was not JSON: the frame
    /// parsed whole, as a frame written otherwise is.
    fn event_of_whole_frame(&self, context: &DispatchContext) -> Option<EventData> {
        let whole = parse_frame(self.message.as_bytes())?;
        Dispatch::new(
            &self.name,
            whole.s,
            &self.message,
            whole.data().get(),
            false,
        )
        .event(context)
    }
}

/// Where `part` lies in `whole`, if it does.
fn range_in(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start + part.len();
    (end <= whole.len() && whole.is_char_boundary(start) && whole.is_char_boundary(end))
        .then_some(start..end)
}

/// Dispatches read since the last hand-over began.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) dispatches: Vec<Dispatch>,
    pub(super) bytes: usize,
    /// The highest sequence read into it, dispatches handed over or not.
    pub(super) last_sequence: Option<u64>,
}

impl Batch {
    pub(super) fn push(&mut self, dispatch: Dispatch) {
        self.bytes += dispatch.data.len();
        self.last_sequence = self.last_sequence.max(dispatch.sequence);
        self.dispatches.push(dispatch);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.dispatches.is_empty() && self.last_sequence.is_none()
    }

    pub(super) fn is_full(&self, limits: BatchLimits) -> bool {
        self.dispatches.len() >= limits.dispatches || self.bytes >= limits.bytes
    }
}

/// The names Discord sends most, kept without an allocation per dispatch.
pub(super) const KNOWN_DISPATCHES: [&str; 12] = [
    "MESSAGE_CREATE",
    "MESSAGE_UPDATE",
    "MESSAGE_DELETE",
    "MESSAGE_REACTION_ADD",
    "MESSAGE_REACTION_REMOVE",
    "GUILD_MEMBER_ADD",
    "GUILD_MEMBER_REMOVE",
    "INTERACTION_CREATE",
    "TYPING_START",
    "PRESENCE_UPDATE",
    "GUILD_CREATE",
    "VOICE_STATE_UPDATE",
];

pub(super) fn dispatch_name(name: &str) -> Cow<'static, str> {
    KNOWN_DISPATCHES
        .iter()
        .find(|known| **known == name)
        .map_or_else(
            || Cow::Owned(name.to_owned()),
            |known| Cow::Borrowed(*known),
        )
}

/// What a hand-over needs, owned, so that the pending future outlives no borrow.
pub(super) struct HandOver {
    pub(super) ingress: Ingress,
    pub(super) readiness: Arc<Component>,
    pub(super) status: Arc<ShardStatus>,
    pub(super) context: Arc<DispatchContext>,
    pub(super) shard: u32,
    pub(super) initial_wait: Duration,
    pub(super) max_wait: Duration,
    pub(super) stop: CancellationToken,
}

/// Hands one batch to the runtime, waiting while the queue is full and retrying with a capped
/// back-off while it fails otherwise (the shard reports itself not ready meanwhile). Fails only
/// once the runtime stops taking events (or the shard stops).
///
/// The batch is mapped at once, while the batch before it (`after`, settled when that one is
/// accepted) may still be with the queue; it is submitted only once that one was accepted, so
/// submits keep the order of reading, and not at all if that one failed or was dropped. A
/// refused submit consumed the events: each later offer maps the batch again from its raw
/// payloads.
pub(super) async fn hand_over(
    h: HandOver,
    dispatches: Vec<Dispatch>,
    after: Option<oneshot::Receiver<()>>,
    accepted: oneshot::Sender<()>,
) -> Result<(), ()> {
    let events = map(&dispatches, &h.context);
    if let Some(after) = after {
        // Dropped unsent: the batch before failed, or its connection gave up on it.
        after.await.map_err(|_| ())?;
    }
    offer(&h, &dispatches, events).await?;
    // The next batch's hand-over may be gone already (its connection ended).
    let _ = accepted.send(());
    Ok(())
}

/// The most events that share one block ([`Event::batch`] cuts at the core's
/// [`bot_core::event::BLOCK_EVENTS`]): a batch of up to 256 dispatches is cut into blocks of this
/// many, so that one slow event (a long handler) keeps the data of a few siblings alive, not of
/// the whole batch, while a block still costs one allocation and one cross-thread free for many
/// events.
pub(super) const BLOCK_EVENTS: usize = bot_core::event::BLOCK_EVENTS;

fn map(dispatches: &[Dispatch], context: &DispatchContext) -> Vec<Event> {
    // Sized for every dispatch up front: a filtered collect would grow it several times per
    // batch.
    let mut events = Vec::with_capacity(dispatches.len());
    let mut block = Vec::with_capacity(BLOCK_EVENTS.min(dispatches.len()));
    for data in dispatches.iter().filter_map(|d| d.event(context)) {
        block.push(data);
        if block.len() == BLOCK_EVENTS {
            events.extend(Event::batch_from(&mut block));
        }
    }
    if !block.is_empty() {
        events.extend(Event::batch(block));
    }
    events
}

/// Offers `events`, the batch `dispatches` mapped, until the queue accepts them.
async fn offer(h: &HandOver, dispatches: &[Dispatch], mut events: Vec<Event>) -> Result<(), ()> {
    let mut failures: u32 = 0;
    let mut failing_since: Option<Instant> = None;
    let mut logged_at: Option<Instant> = None;
    loop {
        if events.is_empty() {
            return Ok(());
        }
        let wait = match h.ingress.submit(events).await {
            Ok(_) => {
                // Also after a reconnection: the failure may have begun on the last connection.
                if h.status.queue_failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        shard = h.shard, retries = failures,
                        after = ?failing_since.map(|at| at.elapsed()),
                        "discord shard: the queue takes dispatches again"
                    );
                    h.readiness.set_ready();
                }
                return Ok(());
            }
            Err(e) if e.kind() == CoreKind::QueueFull => e
                .retry_after()
                .unwrap_or(FULL_QUEUE_WAIT)
                .min(Duration::from_secs(1)),
            Err(e) if e.kind() == CoreKind::QueueClosed || !h.ingress.is_accepting() => {
                return Err(());
            }
            Err(error) => {
                failures += 1;
                let now = Instant::now();
                if failing_since.is_none() {
                    failing_since = Some(now);
                    h.status.queue_failing.store(true, Ordering::Release);
                    h.readiness
                        .set_not_ready(format!("the queue refuses dispatches: {error}"));
                } else {
                    h.status.hand_over_retries.fetch_add(1, Ordering::Relaxed);
                }
                if logged_at.is_none_or(|at| now - at >= QUEUE_ERROR_LOG_INTERVAL) {
                    logged_at = Some(now);
                    tracing::error!(
                        shard = h.shard, %error, retries = failures - 1,
                        "discord shard: the queue refuses a dispatch; holding the session and retrying"
                    );
                }
                let exp = (failures - 1).min(16);
                h.initial_wait.saturating_mul(1 << exp).min(h.max_wait)
            }
        };
        tokio::select! {
            () = h.stop.cancelled() => return Err(()),
            () = tokio::time::sleep(wait) => {}
        }
        events = map(dispatches, &h.context);
    }
}

/// Batches mapped or with the queue at once, per shard: one being submitted while the next is
/// mapped.
pub(super) const MAX_HAND_OVERS: usize = 2;

/// The hand-overs of one connection not yet settled, oldest first, each on a task of its own
/// (at most [`MAX_HAND_OVERS`]), with the sequence its acceptance advances the session to.
/// Each submits only after the one before it was accepted; dropping this aborts them all.
#[derive(Default)]
pub(super) struct HandOvers {
    in_flight: VecDeque<(HandOverTask, Option<u64>)>,
    /// Settled when the newest hand-over is accepted: the next one waits for it.
    newest_accepted: Option<oneshot::Receiver<()>>,
}

impl HandOvers {
    pub(super) fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    pub(super) fn is_full(&self) -> bool {
        self.in_flight.len() >= MAX_HAND_OVERS
    }

    /// Starts the hand-over `start` makes of the turn it is given (wait for this receiver,
    /// then settle this sender), accepted up to `sequence`.
    pub(super) fn start<F>(
        &mut self,
        sequence: Option<u64>,
        start: impl FnOnce(Option<oneshot::Receiver<()>>, oneshot::Sender<()>) -> F,
    ) where
        F: Future<Output = Result<(), ()>> + Send + 'static,
    {
        debug_assert!(!self.is_full(), "at most {MAX_HAND_OVERS} hand-overs");
        let (accepted, next_waits_for) = oneshot::channel();
        let after = self.newest_accepted.replace(next_waits_for);
        // Nothing before it to wait for once the others settled.
        let after = if self.in_flight.is_empty() {
            None
        } else {
            after
        };
        // Bounded: at most MAX_HAND_OVERS per shard, aborted with the connection.
        #[allow(clippy::disallowed_methods)]
        let task = HandOverTask(tokio::spawn(start(after, accepted)));
        self.in_flight.push_back((task, sequence));
    }

    /// A sequence read after the dispatches in flight, with none to hand over (READY,
    /// RESUMED): accepted with the newest of them. `false` when none is in flight.
    pub(super) fn extend_newest(&mut self, sequence: Option<u64>) -> bool {
        match self.in_flight.back_mut() {
            Some((_, newest)) => {
                *newest = (*newest).max(sequence);
                true
            }
            None => false,
        }
    }

    /// The oldest hand-over's end: whether it was accepted, and the sequence that accepts.
    /// Pending forever when none is in flight (`select!` guards it with [`Self::is_empty`]).
    pub(super) async fn oldest_settled(&mut self) -> (Result<(), ()>, Option<u64>) {
        let Some((task, _)) = self.in_flight.front_mut() else {
            return std::future::pending().await;
        };
        let accepted = task.await;
        let (_, sequence) = self.in_flight.pop_front().expect("polled");
        (accepted, sequence)
    }
}

/// A batch's hand-over running on its own task; aborted when dropped (the connection ended
/// and stopped waiting for it), so nothing is submitted after the shard gave up on it.
struct HandOverTask(tokio::task::JoinHandle<Result<(), ()>>);

impl Future for HandOverTask {
    type Output = Result<(), ()>;

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll_unpin(task).map(|joined| match joined {
            Ok(accepted) => accepted,
            // As if it had run on the shard's task.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Aborted only when dropped: never polled then.
            Err(_) => Err(()),
        })
    }
}

impl Drop for HandOverTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_create(n: usize) -> Dispatch {
        let frame = format!(
            r#"{{"op":0,"s":{n},"t":"MESSAGE_CREATE","d":{{"id":"{}","channel_id":"c{n}","content":"m{n}","author":{{"id":"u"}}}}}}"#,
            1_000_000 + n
        );
        let message = Utf8Bytes::from(frame);
        let start = message.as_str().find(r#"{"id""#).unwrap();
        let data = &message.as_str()[start..message.len() - 1];
        Dispatch::new("MESSAGE_CREATE", Some(n as u64), &message, data, true)
    }

    #[test]
    fn a_batch_is_mapped_into_blocks_of_at_most_block_events() {
        let context = DispatchContext::default();
        let count = 2 * BLOCK_EVENTS + 3;
        let dispatches: Vec<_> = (0..count).map(message_create).collect();
        let events = map(&dispatches, &context);
        assert_eq!(events.len(), count);
        for (n, event) in events.iter().enumerate() {
            // In order, each with its own data and payload.
            assert_eq!(event.conversation.as_str(), format!("c{n}"));
            assert_eq!(event.text_content(), Some(format!("m{n}").as_str()));
            assert_eq!(event.raw()["content"], format!("m{n}"));
            // The same block as the first of its block, another than the block before.
            let first = &events[n - n % BLOCK_EVENTS];
            assert!(event.shares_block_with(first), "event {n}");
            if n >= BLOCK_EVENTS {
                assert!(
                    !event.shares_block_with(&events[n - BLOCK_EVENTS]),
                    "event {n}"
                );
            }
        }
        assert!(map(&[], &context).is_empty());
        // A batch of one is a block of one.
        let one = map(&dispatches[..1], &context);
        assert_eq!(one.len(), 1);
        assert!(!one[0].shares_block_with(&events[0]));
    }
}
