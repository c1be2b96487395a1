//! Timing a drain: polls a queue table until it is empty, and notes when the first event went
//! and how fast the first and the last fifth of the events went.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use crate::scenario::Started;

/// How often the queue table is looked at while it drains.
pub(super) const POLL: Duration = Duration::from_millis(10);

/// What the clock saw of one drain.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timed {
    /// From the workers' start to the table being empty.
    pub(super) elapsed: Duration,
    /// From the workers' start to the first event gone.
    pub(super) first_gone: Duration,
    /// Events/s over the first fifth of the events (from the first one gone).
    pub(super) start_events_per_second: f64,
    /// Events/s over the last fifth of the events.
    pub(super) end_events_per_second: f64,
}

/// Polls `table` (a queue table with consecutive `bigint` ids, claimed about in id order) until
/// it is empty. Each poll starts where the last one found the oldest row, so that it steps over
/// the index entries of deleted rows once in all rather than at every poll. Fails when a worker
/// stops first or when `timeout` passes.
pub(super) async fn until_empty(
    conn: &bot_core::pg::tokio_postgres::Client,
    table: &str,
    events: u64,
    started: Instant,
    timeout: Duration,
    bar: &ProgressBar,
    workers: &mut [Started],
) -> Result<Timed, String> {
    let deadline = started + timeout;
    let first_id: Option<i64> = conn
        .query_one(&format!("SELECT min(id) FROM {table}"), &[])
        .await
        .map_err(|e| format!("reading {table}: {e}"))?
        .get(0);
    let poll = format!("SELECT min(id), max(id) FROM {table} WHERE id >= $1");
    let mut floor = first_id.unwrap_or(0);
    let mut first_gone: Option<Instant> = None;
    let fifth = events / 5;
    let mut fifth_gone: Option<Instant> = None;
    let mut four_fifths_gone: Option<Instant> = None;
    let elapsed = loop {
        let row = conn
            .query_one(&poll, &[&floor])
            .await
            .map_err(|e| format!("reading {table}: {e}"))?;
        let (min, max): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
        floor = min.unwrap_or(floor);
        let now = Instant::now();
        if first_gone.is_none() && min != first_id {
            first_gone = Some(now);
        }
        let Some(left) = min.zip(max).map(|(min, max)| (max - min + 1) as u64) else {
            break now - started;
        };
        let gone = events.saturating_sub(left);
        if fifth_gone.is_none() && gone >= fifth {
            fifth_gone = Some(now);
        }
        if four_fifths_gone.is_none() && gone >= events - fifth {
            four_fifths_gone = Some(now);
        }
        bar.set_position(gone);
        for w in workers.iter_mut() {
            if let Ok(Some(status)) = w.0.try_wait() {
                return Err(format!(
                    "a worker stopped before the queue was empty: {status}"
                ));
            }
        }
        if now > deadline {
            return Err(format!(
                "{table}: about {left} of {events} events still queued after {}",
                humantime::format_duration(timeout)
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    let end = started + elapsed;
    let first_gone = first_gone.unwrap_or(end);
    let rate = |from: Instant, to: Instant| {
        let seconds = to.saturating_duration_since(from).as_secs_f64();
        if seconds > 0.0 {
            fifth as f64 / seconds
        } else {
            f64::NAN
        }
    };
    Ok(Timed {
        elapsed,
        first_gone: first_gone - started,
        start_events_per_second: rate(first_gone, fifth_gone.unwrap_or(end)),
        end_events_per_second: rate(four_fifths_gone.unwrap_or(end), end),
    })
}
