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
//! for a reason one part's data can cause (a data or integrity error, a program limit, a
//! deadlock) is written again in halves, and so on down to single parts, so that one bad webhook
//! cannot fail the others; any other failure (the server unavailable or read-only, the disk
//! full) fails every part alike, with the `503`-able error when the server is unavailable. A part
//! whose caller stopped waiting (its time-out, a closed request) before its statement went out is
//! not written: the caller answered the platform that it failed, and the platform sends it again.
//! A part whose caller left after that is still counted in the queue's counters when it commits.
//!
//! What grouping costs: the statement locks the conversations of all its pushes (in lane order,
//! as one push does), so a conversation whose lock is held elsewhere (a long `pg::import`, a
//! push stuck in another process) holds up its whole group, where before it held up its own push
//! and, once the pool's connections were all taken by such pushes, every push. Bound such holds
//! by `push_timeout`: the group then answers 503 and the platform retries.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use super::inner::Inner;
use super::sql::{
    FLUSH, NOTIFY_IF_PUSHED, PUSH, PUSH_EARLY, PUSH_EARLY_NOTIFY, PUSH_UNORDERED,
    PUSH_UNORDERED_EARLY, PUSH_UNORDERED_EARLY_NOTIFY, TEXTS,
};
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::pg::error;

/// Statements writing pushes at once, per queue (the queue's own pool has four connections by
/// default; claims and upkeep keep the others).
pub(super) const PUSH_WRITERS: usize = 2;

/// Events one statement writes at most; a push larger than this is written alone, whole.
pub(super) const MAX_GROUP_ROWS: usize = 1_000;

/// Payload bytes one statement writes at most (beyond a single push, written alone, whole).
pub(super) const MAX_GROUP_BYTES: usize = 8 << 20;

/// One caller's push, waiting for a writer.
pub(super) struct Part {
    /// The events admitted by the capacity check, in the caller's order.
    pub(super) events: Vec<Event>,
    /// Their stored form.
    pub(super) payloads: Vec<String>,
    /// The payloads' bytes.
    pub(super) bytes: usize,
    /// How many of them were inserted (the others were duplicates), or why none was.
    pub(super) done: oneshot::Sender<Result<usize, Error>>,
}

/// The parts waiting, and whether the writers stopped taking them.
#[derive(Default)]
struct Line {
    parts: VecDeque<Part>,
    closed: bool,
}

/// The line of pushes and the signal that wakes the writers.
#[derive(Default)]
pub(super) struct PushLine {
    line: Mutex<Line>,
    wanted: Notify,
}

impl PushLine {
    /// Puts `part` in line and wakes a writer; gives it back once the writers have stopped (the
    /// queue closed).
    pub(super) fn join(&self, part: Part) -> Result<(), Part> {
        {
            let mut line = self.lock();
            if line.closed {
                return Err(part);
            }
            line.parts.push_back(part);
        }
        self.wanted.notify_one();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The parts at the head of the line, up to [`MAX_GROUP_ROWS`] events and
    /// [`MAX_GROUP_BYTES`] (at least one part), leaving out those whose callers stopped waiting.
    fn take(&self) -> Vec<Part> {
        let mut line = self.lock();
        let mut parts = Vec::new();
        let (mut rows, mut bytes) = (0, 0);
        while let Some(part) = line.parts.front() {
            if part.done.is_closed() {
                line.parts.pop_front();
                continue;
            }
            if !parts.is_empty()
                && (rows + part.events.len() > MAX_GROUP_ROWS
                    || bytes + part.bytes > MAX_GROUP_BYTES)
            {
                break;
            }
            rows += part.events.len();
            bytes += part.bytes;
            parts.extend(line.parts.pop_front());
        }
        parts
    }

    /// Closes the line if it is empty: no part joins it after that. False while parts wait.
    fn close_if_empty(&self) -> bool {
        let mut line = self.lock();
        if line.parts.is_empty() {
            line.closed = true;
        }
        line.closed
    }
}

/// Why a statement failed, and whether one push's data may be the cause (a data or integrity
/// error, a program limit, a deadlock or lock time-out), so that writing the pushes apart may
/// get the others in.
struct Failure {
    error: Error,
    data: bool,
}

impl Inner {
    /// A writer: takes what waits in line and writes it, until the queue closes and the line
    /// is empty (the parts in line when it closed are still written; a push arriving after
    /// that is refused as closed).
    pub(super) async fn run_push_writer(self: Arc<Self>) {
        loop {
            let wanted = self.push_line.wanted.notified();
            tokio::pin!(wanted);
            wanted.as_mut().enable();
            let parts = self.push_line.take();
            if parts.is_empty() {
                if self.wakeups.closed.is_cancelled() && self.push_line.close_if_empty() {
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

    /// Writes `parts` in one statement and answers each. When the server refuses it for a
    /// reason one push's data may cause, writes each half again, and so on down to single
    /// pushes, in order: only the pushes that fail alone fail.
    async fn write_parts(&self, parts: Vec<Part>) {
        let mut groups = vec![parts];
        let mut first = true;
        while let Some(mut group) = groups.pop() {
            let result = self.write(&group, first).await;
            first = false;
            match result {
                Ok(positions) => self.answer(group, &positions),
                Err(f) if f.data && group.len() > 1 => {
                    tracing::debug!(
                        error = %f.error, parts = group.len(),
                        "postgres: a grouped push failed; writing its halves apart"
                    );
                    let second = group.split_off(group.len() / 2);
                    // The first half is written first (popped first).
                    groups.push(second);
                    groups.push(group);
                }
                Err(f) => {
                    let mut group = group.into_iter();
                    let last = group.next_back();
                    for part in group {
                        let _ = part.done.send(Err(copy_error(&f.error)));
                    }
                    if let Some(part) = last {
                        let _ = part.done.send(Err(f.error));
                    }
                }
            }
        }
    }

    /// Answers each part with its count of inserted events, and counts them all (also for the
    /// callers that stopped waiting: their events are in the queue).
    fn answer(&self, parts: Vec<Part>, positions: &[i64]) {
        let accepted = accepted_per_part(parts.iter().map(|p| p.events.len()), positions);
        for (part, accepted) in parts.into_iter().zip(accepted) {
            let n = part.events.len();
            self.count(&self.counters.pushed, accepted as u64);
            self.count(&self.counters.duplicates, (n - accepted) as u64);
            // Duplicates add nothing: count the bytes of the accepted share.
            self.count(
                &self.counters.pushed_bytes,
                (part.bytes as u64 * accepted as u64)
                    .checked_div(n as u64)
                    .unwrap_or(0),
            );
            let _ = part.done.send(Ok(accepted));
        }
    }

    /// One statement for `parts`, bounded by the push time-out: the 1-based positions (over all
    /// the parts' events, in order) of the events it inserted. Errors of an unavailable server
    /// are `QueueFull` with the queue's `Retry-After`.
    ///
    /// Once it committed events, the claimer of this process is woken and the other processes
    /// are told: by a `NOTIFY` in the statement itself when `may_notify` and the queue was idle
    /// (none went out for 50 ms past the debounce; it is then sent with the commit, no round trip
    /// later); else, when the debounce is over, by a `NOTIFY` sent right behind the statement on
    /// its connection ([`NOTIFY_IF_PUSHED`]: it runs as soon as the push has committed, without
    /// waiting for the push's answer to come back and for another task to send it, and only if
    /// the push inserted events); else by the notifier task once the debounce is over. The
    /// answer of the `NOTIFY` behind a push is not awaited: should it fail (the server's
    /// notification queue full, the backend gone between the two), the other processes find the
    /// events at their next poll (`poll_interval`).
    ///
    /// A push announced in either of the first two ways commits early when no push statement
    /// of this queue started in the 5 ms before it (one that carries its `NOTIFY` always does:
    /// none went out for 50 ms): without waiting for the disk, so that the processes told can
    /// claim its events at once, while [`FLUSH`], sent behind it (and behind its `NOTIFY`),
    /// waits for the disk before the push is answered (see [`FLUSH`] for what that changes). On
    /// an idle queue this takes the disk's flush, a millisecond or more here, out of the time
    /// from the push to its pickup. The others commit the usual way: under load the pushes go
    /// out back to back, one commit each.
    async fn write(&self, parts: &[Part], may_notify: bool) -> Result<Vec<i64>, Failure> {
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
        let behind = !notify && self.wakeups.take_notification_now();
        // Announced now after a quiet spell: committed early, and answered once `FLUSH` has
        // committed behind it. (A push that carries its `NOTIFY` comes after 50 ms without one,
        // so after a quiet spell too.)
        let quiet = self.wakeups.push_after_quiet();
        let early = notify || (behind && quiet);
        let statement = match (self.ordered, notify, early) {
            (true, true, _) => PUSH_EARLY_NOTIFY,
            (true, false, true) => PUSH_EARLY,
            (true, false, false) => PUSH,
            (false, true, _) => PUSH_UNORDERED_EARLY_NOTIFY,
            (false, false, true) => PUSH_UNORDERED_EARLY,
            (false, false, false) => PUSH_UNORDERED,
        };
        let channel = &self.wakeups.channel;
        let push = async {
            let (conn, _) = self
                .pool
                .get_measured(ErrorKind::Queue, "pushing events")
                .await
                .map_err(|e| Failure {
                    error: error::unavailable("pushing events", self.retry_after, e),
                    data: false,
                })?;
            let map = |e: tokio_postgres::Error| {
                let unavailable = error::is_unavailable(&e);
                let data = !unavailable && e.code().is_some_and(|c| caused_by_data(c.code()));
                let e = error::db(ErrorKind::Queue, "pushing events", e);
                let error = if unavailable {
                    error::unavailable("pushing events", self.retry_after, e)
                } else {
                    e
                };
                Failure { error, data }
            };
            // Prepared once per connection, unlike the queue's other statements (see
            // `Inner::query`): a push reads no table (its conflicts are resolved through the
            // unique indexes), so its plan is the same at any size of the queue. PostgreSQL may
            // then take its generic plan after five calls (it did in every measurement), which
            // spares the planning that was half of the statement's server time (0.13 of 0.24 ms
            // for three events).
            let types: &[Type] = if notify {
                &[TEXTS, TEXTS, TEXTS, TEXTS, Type::TEXT]
            } else {
                &[TEXTS; 4]
            };
            let prepared = conn
                .prepare_typed_cached(statement, types)
                .await
                .map_err(map)?;
            let arrays: [&(dyn ToSql + Sync); 4] = [&platforms, &ids, &conversations, &payloads];
            // A flush that failed behind a push that went in: not one push's data's doing.
            let mut flush_failed = false;
            let rows = if early || behind {
                // tokio-postgres writes a request at its future's first poll: the push is sent,
                // then (when it does not carry it) the `NOTIFY`, which the server runs in a
                // transaction of its own once the push has committed, then, for a push that
                // commits early, `FLUSH`. The push's answer and the flush's are awaited; the
                // `NOTIFY`'s is left to the connection, which drops it (waiting for it held the
                // writer, and the pushes behind it, for the notification's commit: 2-4 % fewer
                // events/s end to end).
                let [a, b, c, d] = arrays;
                let with_channel: [&(dyn ToSql + Sync); 5] = [a, b, c, d, channel];
                let params: &[&(dyn ToSql + Sync)] = if notify { &with_channel } else { &arrays };
                let push = conn.query(&prepared, params);
                let channel_param = [(channel as &(dyn ToSql + Sync), Type::TEXT)];
                let announce = behind.then(|| conn.query_typed(NOTIFY_IF_PUSHED, &channel_param));
                let flush = early.then(|| conn.query_typed(FLUSH, &[]));
                let mut push = std::pin::pin!(push);
                let (mut announce, mut flush) = (std::pin::pin!(announce), std::pin::pin!(flush));
                // No flush: as good as done.
                let (mut rows, mut flushed) = (None, (!early).then_some(Ok(Vec::new())));
                let mut sent = false;
                let (rows, flushed) = std::future::poll_fn(|cx| {
                    if rows.is_none()
                        && let std::task::Poll::Ready(r) = push.as_mut().poll(cx)
                    {
                        rows = Some(r);
                    }
                    if !sent {
                        sent = true;
                        // Sent at this first poll, in this order; an error there (the
                        // connection gone) fails the push and the flush too.
                        if let Some(announce) = announce.as_mut().as_pin_mut() {
                            let _ = announce.poll(cx);
                        }
                        // Its answer is not read: dropped, the connection throws it away
                        // instead of holding it (and the flush's answer behind it) for a reader.
                        announce.set(None);
                    }
                    if flushed.is_none()
                        && let Some(flush) = flush.as_mut().as_pin_mut()
                        && let std::task::Poll::Ready(r) = flush.poll(cx)
                    {
                        flushed = Some(r);
                    }
                    match (rows.take(), flushed.take()) {
                        (Some(r), Some(f)) => std::task::Poll::Ready((r, f)),
                        (r, f) => {
                            (rows, flushed) = (r, f);
                            std::task::Poll::Pending
                        }
                    }
                })
                .await;
                // The push's own failure first (it says why); a push that went in but whose
                // flush failed is not known to be on disk: failed, and sent again.
                match (rows, flushed) {
                    (Ok(_), Err(e)) => {
                        // Committed, maybe not on disk: answered as failed (the platform
                        // sends it again, deduplicated if it was kept), not counted as pushed.
                        tracing::warn!(
                            error = %e,
                            "postgres: a push committed early and its flush failed; answered \
                             as failed"
                        );
                        flush_failed = true;
                        Err(e)
                    }
                    (rows, _) => rows,
                }
            } else {
                conn.query(&prepared, &arrays).await
            };
            let announced = early || behind;
            let rows = rows.map_err(|e| {
                // The server no longer knows the statement (a `DISCARD ALL`, a pooler between):
                // prepared again at the connection's next push instead of failing them all.
                if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) {
                    conn.statement_cache.remove(statement, types);
                }
                let mut f = map(e);
                f.data &= !flush_failed;
                f
            })?;
            let positions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            Ok::<_, Failure>((positions, announced))
        };
        match tokio::time::timeout(self.push_timeout, push).await {
            Ok(Ok((positions, announced))) => {
                if positions.iter().any(|&p| p > 0) {
                    self.wakeups.wake.notify_one();
                    if !announced {
                        self.wakeups.notify_wanted.notify_one();
                    }
                }
                Ok(positions)
            }
            Ok(Err(f)) => Err(f),
            Err(_) => Err(Failure {
                error: error::unavailable(
                    "pushing events",
                    self.retry_after,
                    Error::new(
                        ErrorKind::Timeout,
                        format!("no commit within {:?}", self.push_timeout),
                    ),
                ),
                data: false,
            }),
        }
    }
}

/// Whether an error of this SQLSTATE may come from one push's data or from its meeting another
/// statement (data exceptions 22, integrity 23, program limits 54, deadlocks and serialisation
/// failures 40, a lock not available 55P03) rather than from the server's state, which would
/// fail every push alike.
fn caused_by_data(code: &str) -> bool {
    matches!(code.get(..2), Some("22" | "23" | "54" | "40")) || code == "55P03"
}

/// Each part's number of events among `positions` (1-based, over all the parts' events in
/// order; position 0, the row of a carried `NOTIFY` or of an early commit, belongs to none).
fn accepted_per_part(lens: impl Iterator<Item = usize>, positions: &[i64]) -> Vec<usize> {
    let mut positions: Vec<usize> = positions
        .iter()
        .filter_map(|&p| usize::try_from(p).ok())
        .collect();
    positions.sort_unstable();
    let mut start = 1;
    lens.map(|n| {
        let end = start + n;
        let accepted =
            positions.partition_point(|&p| p < end) - positions.partition_point(|&p| p < start);
        start = end;
        accepted
    })
    .collect()
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
                bytes: n * 100,
                done,
            },
            rx,
        )
    }

    /// Each push statement, run in a transaction that is rolled back, and the
    /// `synchronous_commit` its commit would have had: the announced pushes commit early, the
    /// others the usual way (against the real server: the setting must be made by the statement
    /// itself, in its own transaction).
    #[tokio::test]
    async fn announced_pushes_commit_early_and_the_others_wait_for_the_disk() {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let pool = crate::pg::PgPool::builder(&url)
            .schema("u_push_commit")
            .max_size(2)
            .build()
            .unwrap();
        let conn = pool.get().await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {url} ({e}); start it or set DATABASE_URL")
        });
        conn.batch_execute("DROP SCHEMA IF EXISTS u_push_commit CASCADE")
            .await
            .unwrap();
        crate::pg::migrate(&pool).await.unwrap();
        // What the statements change, whatever the server's default.
        conn.batch_execute("SET synchronous_commit = on")
            .await
            .unwrap();
        let texts = |v: &str| vec![v.to_owned()];
        let (platforms, ids, conversations, payloads) =
            (texts("t"), texts("e1"), texts("c"), texts("{}"));
        let channel = "botrt_test".to_owned();
        for (statement, early) in [
            (PUSH, false),
            (PUSH_EARLY, true),
            (PUSH_EARLY_NOTIFY, true),
            (PUSH_UNORDERED, false),
            (PUSH_UNORDERED_EARLY, true),
            (PUSH_UNORDERED_EARLY_NOTIFY, true),
        ] {
            conn.batch_execute("BEGIN").await.unwrap();
            let four: [&(dyn ToSql + Sync); 4] = [&platforms, &ids, &conversations, &payloads];
            let five: [&(dyn ToSql + Sync); 5] =
                [&platforms, &ids, &conversations, &payloads, &channel];
            let params: &[&(dyn ToSql + Sync)] = if statement.contains("$5") {
                &five
            } else {
                &four
            };
            let rows = conn.query(statement, params).await.unwrap();
            assert!(rows.iter().any(|r| r.get::<_, i64>(0) == 1), "e1 inserted");
            let setting: String = conn
                .query_one("SELECT current_setting('synchronous_commit')", &[])
                .await
                .unwrap()
                .get(0);
            conn.batch_execute("ROLLBACK").await.unwrap();
            let expected = if early { "off" } else { "on" };
            assert_eq!(setting, expected, "{statement}");
        }
        conn.batch_execute("DROP SCHEMA u_push_commit CASCADE")
            .await
            .unwrap();
    }

    #[test]
    fn each_part_counts_the_inserted_positions_in_its_range() {
        // 1..=3, 4..=5, 6..=9; positions out of order, as rows may come, and a NOTIFY's 0.
        assert_eq!(
            accepted_per_part([3, 2, 4].into_iter(), &[9, 1, 0, 3, 6, 7]),
            [2, 0, 3]
        );
    }

    #[test]
    fn a_group_stops_at_its_row_bound_but_takes_one_large_part_whole() {
        let line = PushLine::default();
        let (big, _rb) = part(MAX_GROUP_ROWS + 5);
        let (small, _rs) = part(10);
        assert!(line.join(big).is_ok() && line.join(small).is_ok());
        assert_eq!(line.take().len(), 1, "the large part goes alone");
        assert_eq!(line.take().len(), 1);
        let mut receivers = Vec::new();
        for _ in 0..(MAX_GROUP_ROWS / 10 + 3) {
            let (p, r) = part(10);
            receivers.push(r);
            assert!(line.join(p).is_ok());
        }
        assert_eq!(line.take().len(), MAX_GROUP_ROWS / 10);
        assert_eq!(line.take().len(), 3);
    }

    #[test]
    fn a_group_stops_at_its_byte_bound() {
        let line = PushLine::default();
        let mut receivers = Vec::new();
        for _ in 0..3 {
            let (mut p, r) = part(1);
            p.bytes = MAX_GROUP_BYTES / 2;
            receivers.push(r);
            assert!(line.join(p).is_ok());
        }
        assert_eq!(line.take().len(), 2);
        assert_eq!(line.take().len(), 1);
    }

    #[test]
    fn a_part_whose_caller_left_is_not_written() {
        let line = PushLine::default();
        let (gone, rx) = part(2);
        drop(rx);
        let (kept, _r) = part(1);
        assert!(line.join(gone).is_ok() && line.join(kept).is_ok());
        let taken = line.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].events.len(), 1);
    }

    #[test]
    fn a_closed_line_refuses_parts_and_closes_only_when_empty() {
        let line = PushLine::default();
        let (waiting, _r) = part(1);
        assert!(line.join(waiting).is_ok());
        assert!(!line.close_if_empty(), "a part waits: the writers go on");
        assert_eq!(line.take().len(), 1);
        assert!(line.close_if_empty());
        let (late, _r) = part(1);
        assert!(
            line.join(late).is_err(),
            "after the writers stopped, a push is refused"
        );
    }

    #[test]
    fn only_errors_one_push_can_cause_are_written_apart() {
        for code in ["22021", "23505", "54000", "40P01", "40001", "55P03"] {
            assert!(caused_by_data(code), "{code}");
        }
        for code in ["25006", "53100", "53200", "42P01", "57014", "XX000"] {
            assert!(!caused_by_data(code), "{code}");
        }
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
