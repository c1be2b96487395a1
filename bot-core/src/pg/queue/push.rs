//! Pushes written together: the pushes that arrive while the queue's writers are busy go out as
//! one statement and one commit.
//!
//! A webhook of ten events cost one statement and one commit (a disk flush) of its own, and
//! PostgreSQL's time per statement, not per event, was what a burst of webhooks spent. Now each
//! push joins a line; a few long-lived writers ([`PUSH_WRITERS`]) each take what is waiting, up
//! to [`MAX_GROUP_ROWS`] events, and write it in one statement. With the line empty a push is
//! written at once, as before (one hop to a writer); under load the parts that came during a
//! write go together in the next.
//!
//! What each caller sees is unchanged: `Ok` only once its events are committed, its own count of
//! accepted events and duplicates (the statement returns the position of every event it
//! inserted, and each part counts those in its range), and its own error. A statement that fails
//! for a reason one part's data can cause (anything but the server being unavailable) is written
//! again part by part, so that one bad webhook cannot fail the others; an unavailable server
//! fails every part with the same `503`-able error. A part whose caller stopped waiting (its
//! time-out, a closed request) before its statement went out is not written: the caller answered
//! the platform that it failed, and the platform sends it again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, oneshot};
use tokio_postgres::types::Type;

use super::inner::Inner;
use super::sql::{PUSH, PUSH_NOTIFY, PUSH_UNORDERED, PUSH_UNORDERED_NOTIFY, TEXTS};
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::pg::error;

/// Statements writing pushes at once, per queue (the queue's own pool has four connections by
/// default; claims and upkeep keep the others).
pub(super) const PUSH_WRITERS: usize = 2;

/// Events one statement writes at most; a push larger than this is written alone, whole.
pub(super) const MAX_GROUP_ROWS: usize = 1_000;

/// One caller's push, waiting for a writer.
pub(super) struct Part {
    /// The events admitted by the capacity check, in the caller's order.
    pub(super) events: Vec<Event>,
    /// Their stored form.
    pub(super) payloads: Vec<String>,
    /// How many of them were inserted (the others were duplicates), or why none was.
    pub(super) done: oneshot::Sender<Result<usize, Error>>,
}

/// The line of pushes and the signal that wakes the writers.
#[derive(Default)]
pub(super) struct PushLine {
    waiting: Mutex<VecDeque<Part>>,
    wanted: Notify,
}

impl PushLine {
    /// Puts `part` in line and wakes a writer.
    pub(super) fn join(&self, part: Part) {
        self.lock().push_back(part);
        self.wanted.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Part>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The parts at the head of the line, up to [`MAX_GROUP_ROWS`] events (at least one part),
    /// leaving out those whose callers stopped waiting.
    fn take(&self) -> Vec<Part> {
        let mut waiting = self.lock();
        let mut parts = Vec::new();
        let mut rows = 0;
        while let Some(part) = waiting.front() {
            if part.done.is_closed() {
                waiting.pop_front();
                continue;
            }
            if !parts.is_empty() && rows + part.events.len() > MAX_GROUP_ROWS {
                break;
            }
            rows += part.events.len();
            parts.extend(waiting.pop_front());
        }
        parts
    }
}

impl Inner {
    /// A writer: takes what waits in line and writes it, until the queue closes and the line
    /// is empty (the parts in line when it closed are still written).
    pub(super) async fn run_push_writer(self: Arc<Self>) {
        loop {
            let wanted = self.push_line.wanted.notified();
            tokio::pin!(wanted);
            wanted.as_mut().enable();
            let parts = self.push_line.take();
            if parts.is_empty() {
                if self.wakeups.closed.is_cancelled() {
                    return;
                }
                tokio::select! {
                    () = wanted => {}
                    () = self.wakeups.closed.cancelled() => {}
                }
                continue;
            }
            // Another writer may find more waiting than this one took.
            self.push_line.wanted.notify_one();
            self.write_parts(parts).await;
        }
    }

    /// Writes `parts` in one statement and answers each; on a failure their data may have
    /// caused, writes them again one by one.
    async fn write_parts(&self, parts: Vec<Part>) {
        let result = self.write(&parts, true).await;
        match result {
            Ok(positions) => answer(parts, &positions),
            Err(e) if parts.len() > 1 && e.kind() != ErrorKind::QueueFull => {
                tracing::debug!(
                    error = %e, parts = parts.len(),
                    "postgres: a grouped push failed; writing its parts one by one"
                );
                for part in parts {
                    if part.done.is_closed() {
                        continue;
                    }
                    let result = self.write(std::slice::from_ref(&part), false).await;
                    match result {
                        Ok(positions) => answer(vec![part], &positions),
                        Err(e) => {
                            let _ = part.done.send(Err(e));
                        }
                    }
                }
            }
            Err(e) => {
                let mut parts = parts.into_iter();
                let last = parts.next_back();
                for part in parts {
                    let _ = part.done.send(Err(copy_error(&e)));
                }
                if let Some(part) = last {
                    let _ = part.done.send(Err(e));
                }
            }
        }
    }

    /// One statement for `parts`, bounded by the push time-out: the 1-based positions (over all
    /// the parts' events, in order) of the events it inserted. Errors of an unavailable server
    /// are `QueueFull` with the queue's `Retry-After`.
    ///
    /// Once it committed events, the claimer of this process is woken and the other processes
    /// are told: by a `NOTIFY` in the statement itself when `may_notify` and none went out within
    /// the debounce (it is then sent with the commit, no round trip later), else by the
    /// notifier task.
    async fn write(&self, parts: &[Part], may_notify: bool) -> Result<Vec<i64>, Error> {
        let rows: usize = parts.iter().map(|p| p.events.len()).sum();
        let mut platforms = Vec::with_capacity(rows);
        let mut ids = Vec::with_capacity(rows);
        let mut conversations = Vec::with_capacity(rows);
        let mut payloads = Vec::with_capacity(rows);
        for part in parts {
            for (event, payload) in part.events.iter().zip(&part.payloads) {
                platforms.push(event.platform.as_str());
                ids.push(event.id.as_str());
                conversations.push(event.conversation.as_str());
                payloads.push(payload.as_str());
            }
        }
        self.count(&self.counters.push_statements, 1);
        let notify = may_notify && self.wakeups.take_notification();
        let statement = match (self.ordered, notify) {
            (true, false) => PUSH,
            (true, true) => PUSH_NOTIFY,
            (false, false) => PUSH_UNORDERED,
            (false, true) => PUSH_UNORDERED_NOTIFY,
        };
        let channel = &self.wakeups.channel;
        let push = async {
            let (conn, _) = self
                .pool
                .get_measured(ErrorKind::Queue, "pushing events")
                .await
                .map_err(|e| error::unavailable("pushing events", self.retry_after, e))?;
            let map = |e: tokio_postgres::Error| {
                let unavailable = error::is_unavailable(&e);
                let e = error::db(ErrorKind::Queue, "pushing events", e);
                if unavailable {
                    error::unavailable("pushing events", self.retry_after, e)
                } else {
                    e
                }
            };
            let arrays: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 4] = [
                (&platforms, TEXTS),
                (&ids, TEXTS),
                (&conversations, TEXTS),
                (&payloads, TEXTS),
            ];
            let rows = if notify {
                let [a, b, c, d] = arrays;
                conn.query_typed(statement, &[a, b, c, d, (channel, Type::TEXT)])
                    .await
            } else {
                conn.query_typed(statement, &arrays).await
            }
            .map_err(map)?;
            Ok::<Vec<i64>, Error>(rows.iter().map(|r| r.get(0)).collect())
        };
        match tokio::time::timeout(self.push_timeout, push).await {
            Ok(Ok(positions)) => {
                if positions.iter().any(|&p| p > 0) {
                    self.wakeups.wake.notify_one();
                    if !notify {
                        self.wakeups.notify_wanted.notify_one();
                    }
                }
                Ok(positions)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(error::unavailable(
                "pushing events",
                self.retry_after,
                Error::new(
                    ErrorKind::Timeout,
                    format!("no commit within {:?}", self.push_timeout),
                ),
            )),
        }
    }
}

/// Answers each part with the number of its events among `positions` (1-based, over all the
/// parts' events in order).
fn answer(parts: Vec<Part>, positions: &[i64]) {
    let mut positions: Vec<usize> = positions
        .iter()
        .filter_map(|&p| usize::try_from(p).ok())
        .collect();
    positions.sort_unstable();
    let mut start = 1;
    for part in parts {
        let end = start + part.events.len();
        let accepted =
            positions.partition_point(|&p| p < end) - positions.partition_point(|&p| p < start);
        start = end;
        let _ = part.done.send(Ok(accepted));
    }
}

/// The same failure for another caller (an [`Error`]'s source cannot be shared).
fn copy_error(e: &Error) -> Error {
    let copy = Error::new(e.kind(), e.to_string());
    match e.retry_after() {
        Some(after) => copy.with_retry_after(after),
        None => copy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Platform;

    fn part(n: usize) -> (Part, oneshot::Receiver<Result<usize, Error>>) {
        let (done, rx) = oneshot::channel();
        let events = (0..n)
            .map(|i| Event::text(Platform::from_static("t"), "c", "x").with_id(format!("{i}")))
            .collect();
        (
            Part {
                events,
                payloads: vec![String::new(); n],
                done,
            },
            rx,
        )
    }

    #[test]
    fn each_part_counts_the_inserted_positions_in_its_range() {
        let (a, mut ra) = part(3);
        let (b, mut rb) = part(2);
        let (c, mut rc) = part(4);
        // a: 1..=3, b: 4..=5, c: 6..=9; positions out of order, as rows may come.
        answer(vec![a, b, c], &[9, 1, 3, 6, 7]);
        assert_eq!(ra.try_recv().unwrap().unwrap(), 2);
        assert_eq!(rb.try_recv().unwrap().unwrap(), 0);
        assert_eq!(rc.try_recv().unwrap().unwrap(), 3);
    }

    #[test]
    fn a_group_stops_at_its_row_bound_but_takes_one_large_part_whole() {
        let line = PushLine::default();
        let (big, _rb) = part(MAX_GROUP_ROWS + 5);
        let (small, _rs) = part(10);
        line.join(big);
        line.join(small);
        assert_eq!(line.take().len(), 1, "the large part goes alone");
        assert_eq!(line.take().len(), 1);
        let mut receivers = Vec::new();
        for _ in 0..(MAX_GROUP_ROWS / 10 + 3) {
            let (p, r) = part(10);
            receivers.push(r);
            line.join(p);
        }
        assert_eq!(line.take().len(), MAX_GROUP_ROWS / 10);
        assert_eq!(line.take().len(), 3);
    }

    #[test]
    fn a_part_whose_caller_left_is_not_written() {
        let line = PushLine::default();
        let (gone, rx) = part(2);
        drop(rx);
        let (kept, _r) = part(1);
        line.join(gone);
        line.join(kept);
        let taken = line.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].events.len(), 1);
    }

    #[test]
    fn a_copied_error_keeps_its_kind_and_retry_hint() {
        let e = Error::new(ErrorKind::QueueFull, "down")
            .with_retry_after(std::time::Duration::from_secs(3));
        let c = copy_error(&e);
        assert_eq!(c.kind(), ErrorKind::QueueFull);
        assert_eq!(c.retry_after(), e.retry_after());
    }
}
