//! The SQL statements of the queue, their tunables, and the conversions of their parameters.

use std::time::Duration;

use tokio_postgres::types::Type;

use crate::queue::Lease;

/// A push's batch, one row per event with its lane (the start of both pushes).
macro_rules! push_input {
    () => {
        "
WITH input AS (
    SELECT i.*, hashtextextended(i.platform || chr(31) || i.conversation, 0) AS lane
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
        WITH ORDINALITY AS i(platform, event_id, conversation, payload, ord)
)"
    };
}

/// The events whose keys were fresh, the first of each key in the batch, inserted in order (the
/// end of both pushes). It returns the position of each event inserted (a data-modifying `WITH`
/// runs to its end whether or not it is read), so that each push of a group counts its own.
macro_rules! push_insert {
    () => {
        ", firsts AS (
    SELECT DISTINCT ON (i.platform, i.event_id) i.*
    FROM input i JOIN fresh f ON f.platform = i.platform AND f.event_id = i.event_id
    ORDER BY i.platform, i.event_id, i.ord
), inserted AS (
    INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
    SELECT lane, platform, event_id, conversation, payload::json
    FROM firsts ORDER BY ord
    RETURNING 1
)
SELECT ord FROM firsts
UNION ALL SELECT 0 FROM (
    SELECT set_config('botrt.pushed', CASE WHEN EXISTS (SELECT 1 FROM firsts) THEN 'y' ELSE '' END,
        false)
) AS pushed"
    };
}

// The push locks the row of each of its conversations in `botrt_lanes` (in lane order, so that
// two batches never wait for each other in a circle) before anything else: the lock is held to
// the commit, so a later push of the same conversation takes its ids only after this one
// committed, and ids within a conversation follow commit order. The gate `(SELECT count(*) FROM
// locked)` is an init plan, run once before the first row of the dedup insert.
macro_rules! push_locked_fresh {
    () => {
        "
, locked AS (
    INSERT INTO botrt_lanes AS l (lane)
    SELECT DISTINCT lane FROM input ORDER BY lane
    ON CONFLICT (lane) DO UPDATE SET pushed_at = excluded.pushed_at
    RETURNING 1
), fresh AS (
    INSERT INTO botrt_dedup (platform, event_id)
    SELECT platform, event_id FROM input
    WHERE (SELECT count(*) FROM locked) > 0
    ON CONFLICT DO NOTHING
    RETURNING platform, event_id
)"
    };
}

// The push of an unordered queue: no conversation's order to keep, so no lane rows to lock (a
// campaign of a million recipients would otherwise write a million rows of `botrt_lanes`). Every
// process of a queue must use the same ordering.
macro_rules! push_fresh {
    () => {
        "
, fresh AS (
    INSERT INTO botrt_dedup (platform, event_id)
    SELECT platform, event_id FROM input
    ON CONFLICT DO NOTHING
    RETURNING platform, event_id
)"
    };
}

/// What an unordered push that commits the usual way adds: when none of its events is fresh, the
/// upsert of [`FLUSH`], so that its commit waits for the disk too ([`PUSH_UNORDERED`]).
macro_rules! flush_when_none_fresh {
    () => {
        "
, flushed AS (
    INSERT INTO botrt_flushes AS f (backend)
    SELECT pg_backend_pid() WHERE NOT EXISTS (SELECT 1 FROM fresh)
    ON CONFLICT (backend) DO UPDATE SET flushes = f.flushes + 1
)"
    };
}

/// What a push that carries the queue's `NOTIFY` adds: the notification goes out with the push's
/// commit (none if it rolls back, none if it inserted nothing), with no statement of its own. Its
/// row (position 0) belongs to no push.
macro_rules! with_notify {
    () => {
        "
UNION ALL SELECT 0 FROM (SELECT pg_notify($5, '') WHERE EXISTS (SELECT 1 FROM firsts)) AS n"
    };
}

/// The `NOTIFY` sent right behind a push on its connection, without waiting for the push's
/// answer (`$1`: the channel): it notifies only when the push before it on this session
/// committed events, and forgets that it did.
///
/// Every push sets the session's `botrt.pushed` in its own transaction (the last row of
/// [`PUSH`]: `y` when it inserted an event, else empty). This statement reads it once (a one-time
/// filter) and empties it only when it notifies, so a push of duplicates only announces nothing.
/// A push that fails rolls the setting back to what the session's last push left, which may be
/// the `y` of an earlier push that carried its notification or left it to the notifier: this
/// statement then sends one notification more than needed (an empty claim elsewhere, at most one
/// per debounce). It needs the push's own session: behind a pooler in transaction mode it may
/// read another session's setting (a notification lost, and pickups wait for the poll).
pub(super) const NOTIFY_IF_PUSHED: &str = "
SELECT pg_notify($1, '') FROM (
    SELECT set_config('botrt.pushed', '', false)
    WHERE current_setting('botrt.pushed', true) = 'y'
) AS pushed";

/// What a push that commits without waiting for the disk adds (an idle queue's push, announced
/// at once): its events can be claimed as soon as it commits, a millisecond or more before its
/// commit record is on disk, and its caller waits for [`FLUSH`] instead, sent right behind it.
/// Its row (position 0) belongs to no push.
macro_rules! commit_early {
    () => {
        "
UNION ALL SELECT 0 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS early"
    };
}

/// The second transaction of a push that committed early ([`commit_early!`]), on the same
/// connection right behind it (and behind its `NOTIFY`): an upsert of this server process's own
/// row in `botrt_flushes`, whose commit waits, as any commit that wrote does (under the
/// session's `synchronous_commit`), until the WAL is on disk (and on the synchronous standbys,
/// when there are some) up to its own commit record, which comes after the push's. The push's
/// caller is answered only once it has; if it fails, the caller is answered that the push
/// failed and the platform sends the events again (deduplicated if the push was kept after all).
///
/// What the early commit changes: an event may be claimed and handled before its push is on
/// disk. Should the server crash before it is (by this flush or, if it fails, by the WAL
/// writer's, at most three `wal_writer_delay`s later), the push is lost, its webhook answered
/// 503 (no `200` was sent) and the platform's retry runs the event again: at least once, as with
/// a handler that crashed before its acknowledgement.
pub(super) const FLUSH: &str = "
INSERT INTO botrt_flushes AS f (backend) VALUES (pg_backend_pid())
ON CONFLICT (backend) DO UPDATE SET flushes = f.flushes + 1";

/// The push of an ordered queue: the positions of the events it inserted.
pub(super) const PUSH: &str = concat!(push_input!(), push_locked_fresh!(), push_insert!());
/// [`PUSH`] committing early ([`commit_early!`], the caller then waits for [`FLUSH`]).
pub(super) const PUSH_EARLY: &str = concat!(
    push_input!(),
    push_locked_fresh!(),
    push_insert!(),
    commit_early!()
);
/// [`PUSH_EARLY`] announcing itself to the other processes (`$5`: the channel).
pub(super) const PUSH_EARLY_NOTIFY: &str = concat!(
    push_input!(),
    push_locked_fresh!(),
    push_insert!(),
    commit_early!(),
    with_notify!()
);
/// The push of an unordered queue.
///
/// A push that inserts nothing (every event a duplicate) writes nothing else either, so its
/// commit would not wait for the disk, and its caller could be told "already here" about an
/// event whose push committed early and is not on disk yet: it then upserts its server
/// process's row in `botrt_flushes`, as [`FLUSH`] does, and waits for the disk like any push. (An
/// ordered push always writes its conversations' lock rows.)
pub(super) const PUSH_UNORDERED: &str = concat!(
    push_input!(),
    push_fresh!(),
    flush_when_none_fresh!(),
    push_insert!()
);
/// [`PUSH_UNORDERED`] committing early ([`commit_early!`], the caller then waits for [`FLUSH`]).
pub(super) const PUSH_UNORDERED_EARLY: &str = concat!(
    push_input!(),
    push_fresh!(),
    push_insert!(),
    commit_early!()
);
/// [`PUSH_UNORDERED_EARLY`] announcing itself to the other processes (`$5`: the channel).
pub(super) const PUSH_UNORDERED_EARLY_NOTIFY: &str = concat!(
    push_input!(),
    push_fresh!(),
    push_insert!(),
    commit_early!(),
    with_notify!()
);

// Imported rows come from a temporary table filled by `COPY`, in the order they were written:
// a temporary table is never scanned in parallel nor from a synchronised starting point.
pub(super) const IMPORT_TABLE: &str = "
CREATE TEMPORARY TABLE botrt_import (platform text, event_id text, conversation text, payload text)
ON COMMIT DROP";
pub(super) const IMPORT_COPY: &str = "COPY botrt_import FROM STDIN (FORMAT binary)";
// Locks its conversations as a push does, so that pushes of them commit before or after it.
pub(super) const IMPORT: &str = "
WITH locked AS (
    INSERT INTO botrt_lanes AS l (lane)
    SELECT DISTINCT hashtextextended(platform || chr(31) || conversation, 0) FROM botrt_import
    ORDER BY 1
    ON CONFLICT (lane) DO UPDATE SET pushed_at = excluded.pushed_at
    RETURNING 1
)
INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
SELECT hashtextextended(platform || chr(31) || conversation, 0), platform, event_id,
       conversation, payload::json
FROM botrt_import
WHERE (SELECT count(*) FROM locked) > 0";

pub(super) const CLAIM: &str =
    "SELECT id, attempts, payload FROM botrt_claim($1, $2, $3, $4, $5, $6, $7, $8)";

/// [`CLAIM`] after a short claim, for an ordered queue: both slots in one query when both are
/// free (migration 9). A claim in a backlog keeps to [`CLAIM`] and its one slot.
pub(super) const CLAIM_WHOLE: &str =
    "SELECT id, attempts, payload FROM botrt_claim($1, $2, $3, $4, $5, $6, $7, $8, true)";

/// The queue's front, read before an ordered queue's full claim: the claims until the next full
/// one start at the front (migration 7) instead of stepping over the index entries of the events
/// acknowledged since the last vacuum, and their lane probes start there too for the candidates
/// written by transactions that had ended when it was read (older than the snapshot's xmin, read
/// with it; migration 8 explains why that is exact). It reads from the claimer's floor up and
/// returns what the floor's proof needs (migration 12): the front or the sequence's next id, and
/// a transaction id taken after the snapshot.
pub(super) const FRONT: &str = "SELECT safe, front, low, mark FROM botrt_front($1)";

/// How often an ordered queue's full claim and its front read start at id 0 rather than at the
/// claimer's floor (migration 12), so that events a rewind of the ids (a failover, a restore) left
/// under the floor are found and the floor dropped: one walk of the acknowledged prefix per
/// process this often, where every full claim made one before.
pub(super) const FLOOR_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Between full claims, an unordered queue's claimer claims from the tail (after the largest
/// leased id, migration 6) and an ordered queue's from the front it last read (migration 7); a
/// full claim runs at least this often, for the events a bounded claim does not look at.
pub(super) const FULL_CLAIM_EVERY: Duration = Duration::from_secs(1);

/// The leases of `$1` held with the tokens `$2`, locked in id order: every statement that
/// changes leases held by a process locks them in that order first, so that two of them (an
/// acknowledgement and a lease extension of one process, sent on two connections) wait for each
/// other at most, never in a circle. Locked in whatever order their join produced, they
/// deadlocked under load, and PostgreSQL broke each deadlock only after `deadlock_timeout` (a
/// second) by failing one statement.
macro_rules! held_leases {
    () => {
        "
WITH l AS (
    SELECT l.id FROM botrt_leases l JOIN unnest($1::bigint[], $2::bigint[]) AS c(id, token)
        ON l.id = c.id AND l.token = c.token
    WHERE l.id = ANY($1::bigint[])
    ORDER BY l.id
    FOR UPDATE OF l
)"
    };
}

// A completion locks its leases, fenced by the token (a lease that expired and was returned,
// or taken again, has no row with that token), does its work on their events, and then deletes
// the leases. In that order: a claim whose snapshot missed a lease may hold its event's row lock
// and then insert a lease for the same conversation, which waits for a transaction that deleted
// the conflicting lease but not for one that only locked it; deleting the lease first and then
// waiting for the event's row lock was a deadlock (81 in one afternoon's drains, a second each).
// The leases are found through their primary key (`l.id = ANY($1)`), hashed against the tokens.
// The acknowledged events are found with one index scan over the array of the leases' ids:
// joined to them instead, with `e.id = ANY($1)` as well, the planner (which expects one lease)
// runs the whole array as the index condition of every probe, a thousand times a thousand
// comparisons for a batch of a thousand (310 ms); joined on the id alone it may scan the table
// once a batch is large. Retries and dead letters, which need the lease's row, join on the id
// alone: one primary-key probe per lease.
pub(super) const ACK: &str = concat!(
    held_leases!(),
    ", e AS (
    DELETE FROM botrt_events e WHERE e.id = ANY(ARRAY(SELECT id FROM l))
    RETURNING e.id
)
DELETE FROM botrt_leases l WHERE l.id = ANY(ARRAY(SELECT id FROM e))"
);

pub(super) const NACK: &str = "
WITH l AS (
    SELECT l.id, c.delay_ms, c.error FROM botrt_leases l
    JOIN unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[]) AS c(id, token, delay_ms, error)
        ON l.id = c.id AND l.token = c.token
    WHERE l.id = ANY($1::bigint[])
    ORDER BY l.id
    FOR UPDATE OF l
), e AS (
    UPDATE botrt_events e
    SET run_at = now() + l.delay_ms * interval '1 millisecond', last_error = l.error,
        attempts = e.attempts + 1
    FROM l WHERE e.id = l.id
    RETURNING e.id
)
DELETE FROM botrt_leases l WHERE l.id = ANY(ARRAY(SELECT id FROM e))";

pub(super) const DEAD: &str = "
WITH l AS (
    SELECT l.id, c.error FROM botrt_leases l
    JOIN unnest($1::bigint[], $2::bigint[], $3::text[]) AS c(id, token, error)
        ON l.id = c.id AND l.token = c.token
    WHERE l.id = ANY($1::bigint[])
    ORDER BY l.id
    FOR UPDATE OF l
), d AS (
    DELETE FROM botrt_events e USING l
    WHERE e.id = l.id
    RETURNING e.id, e.platform, e.event_id, e.conversation, e.payload, e.attempts + 1 AS attempts,
              l.error
), gone AS (
    DELETE FROM botrt_leases l WHERE l.id = ANY(ARRAY(SELECT id FROM d))
)
INSERT INTO botrt_dead_letters (queue_id, platform, event_id, conversation, payload, attempts, error)
SELECT id, platform, event_id, conversation, payload, attempts, error FROM d ORDER BY id
RETURNING queue_id, attempts, (extract(epoch FROM failed_at) * 1000)::bigint";

// A released event was not attempted: its attempts stay as they were.
pub(super) const RELEASE: &str = concat!(
    held_leases!(),
    "
DELETE FROM botrt_leases l WHERE l.id = ANY(ARRAY(SELECT id FROM l))"
);

pub(super) const EXTEND: &str = concat!(
    held_leases!(),
    "
UPDATE botrt_leases l SET expires_at = now() + $3::bigint * interval '1 millisecond'
WHERE l.id = ANY(ARRAY(SELECT id FROM l))"
);

// Expired leases go, and their events back to the queue with the attempt counted, except those
// of a last attempt: an event whose handler takes its process down every time would otherwise
// crash one process after another forever. As the completions do, it locks the leases, changes
// the events, and deletes the leases last (the gate, an init plan, runs after the changes).
pub(super) const RESCUE: &str = "
WITH expired AS (
    SELECT id FROM botrt_leases WHERE expires_at < now() FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM botrt_events e USING expired x
    WHERE e.id = x.id AND e.attempts + 1 >= $1
    RETURNING e.id, e.platform, e.event_id, e.conversation, e.payload, e.attempts + 1 AS attempts
), dead AS (
    INSERT INTO botrt_dead_letters (queue_id, platform, event_id, conversation, payload, attempts, error)
    SELECT id, platform, event_id, conversation, payload, attempts,
           'lease expired on the last attempt (did its process die?)'
    FROM gone ORDER BY id
    RETURNING 1
), back AS (
    UPDATE botrt_events e
    SET run_at = now(), attempts = e.attempts + 1, last_error = 'lease expired'
    FROM expired x
    WHERE e.id = x.id AND e.attempts + 1 < $1
    RETURNING 1
), freed AS (
    DELETE FROM botrt_leases l
    WHERE l.id = ANY(ARRAY(SELECT id FROM expired))
      AND (SELECT count(*) FROM gone) + (SELECT count(*) FROM back) >= 0
)
SELECT (SELECT count(*) FROM back), (SELECT count(*) FROM dead)";

pub(super) const DEAD_LETTERS: &str = "
SELECT payload::text, attempts, error, (extract(epoch FROM failed_at) * 1000)::bigint
FROM botrt_dead_letters ORDER BY id LIMIT $1";

pub(super) const REDRIVE: &str = "
WITH d AS (
    DELETE FROM botrt_dead_letters WHERE id IN (
        SELECT id FROM botrt_dead_letters ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
    )
    RETURNING id, platform, event_id, conversation, payload,
              hashtextextended(platform || chr(31) || conversation, 0) AS lane
), locked AS (
    -- As a push: re-driven events join the end of their conversations in commit order.
    INSERT INTO botrt_lanes AS l (lane)
    SELECT DISTINCT lane FROM d ORDER BY lane
    ON CONFLICT (lane) DO UPDATE SET pushed_at = excluded.pushed_at
    RETURNING 1
), inserted AS (
    INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
    SELECT lane, platform, event_id, conversation, payload
    FROM d
    WHERE (SELECT count(*) FROM locked) > 0
    ORDER BY id
    RETURNING 1
)
SELECT count(*) FROM inserted";

// Keys older than $1 ms, at most $2 per statement (a week of an outbox's keys can be millions).
pub(super) const PRUNE_DEDUP: &str = "
WITH doomed AS (
    SELECT platform, event_id FROM botrt_dedup
    WHERE seen_at < now() - $1::bigint * interval '1 millisecond'
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM botrt_dedup d USING doomed x
    WHERE d.platform = x.platform AND d.event_id = x.event_id
    RETURNING 1
)
SELECT count(*) FROM gone";

// Dead letters older than $1 ms, and all but the newest $2, at most $3 per statement (short
// transactions; the maintenance task runs a few in a row when there are more).
pub(super) const PRUNE_DEAD: &str = "
WITH doomed AS (
    SELECT id FROM botrt_dead_letters
    WHERE failed_at < now() - $1::bigint * interval '1 millisecond'
       OR id <= (SELECT id FROM botrt_dead_letters ORDER BY id DESC OFFSET $2 LIMIT 1)
    ORDER BY id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM botrt_dead_letters d USING doomed x WHERE d.id = x.id
    RETURNING 1
)
SELECT count(*) FROM gone";

// A conversation's lock row is only a lock: deleting it is safe at any time (a push holding it
// makes the delete wait, and the next push makes it again), so idle ones go.
pub(super) const PRUNE_LANES: &str = "
WITH idle AS (
    SELECT lane FROM botrt_lanes
    WHERE pushed_at < now() - $1::bigint * interval '1 millisecond'
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM botrt_lanes l USING idle i WHERE l.lane = i.lane
    RETURNING 1
)
SELECT count(*) FROM gone";

// The flush rows of server processes that are gone (`botrt_flushes`, migration 11): a row is
// only a place to write, and a process that pushes again makes its row again.
pub(super) const PRUNE_FLUSHES: &str = "
WITH gone AS (
    DELETE FROM botrt_flushes f
    WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = f.backend)
    RETURNING 1
)
SELECT count(*) FROM gone";

/// Dedup keys are pruned every `dedup_ttl / DEDUP_PRUNE_STEPS` (and `prune_interval` at least).
pub(super) const DEDUP_PRUNE_STEPS: u32 = 60;
/// Rows one pruning statement deletes at most.
pub(super) const PRUNE_BATCH: i64 = 10_000;
/// Pruning statements per table and maintenance round at most.
pub(super) const PRUNE_ROUNDS: usize = 10;
/// How long a conversation's lock row outlives its last push.
pub(super) const LANE_IDLE: Duration = Duration::from_secs(600);

// The figures (migration 8): the newest `STATS_EXACT_SPAN` ids and the front counted exactly,
// the ids between (if any) estimated from `STATS_SAMPLES` drawn among them; never a scan of the
// table, whose dead rows (kept until a vacuum) can be many times its live ones.
pub(super) const STATS: &str = "
SELECT ready, retrying, leased, oldest_ready_secs, dead, bytes, exact
FROM botrt_figures($1, $2)";

/// The newest ids the figures count exactly: a read of at most this many rows through the
/// primary key.
pub(super) const STATS_EXACT_SPAN: i64 = 50_000;

/// Ids drawn between the front and the newest ids to estimate the figures: a probe each; the
/// estimate's standard error is at most their number / (2 √draws), 1.1 % of it.
pub(super) const STATS_SAMPLES: i32 = 2_000;

/// How often the rescuer refreshes the figures behind [`Queue::depth`](crate::Queue::depth), the
/// capacity check and the gauges while they are needed, by default (the builder's
/// `figures_interval`); every `rescue_interval` instead while pushes find the queue full.
pub(super) const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// The periodic count waits at least this many times as long as the previous one took.
pub(super) const STATS_COST_SHARE: u32 = 50;

/// Vacuums the leases' table (see `Inner::vacuum_leases`).
pub(super) const VACUUM_LEASES: &str = "VACUUM (SKIP_LOCKED, TRUNCATE false) botrt_leases";

/// This process vacuums the leases' table after this many acknowledgements (checked every
/// `rescue_interval`): about a hundred pages of dead rows at most between two vacuums.
pub(super) const LEASES_VACUUM_EVERY: u64 = 10_000;
/// Durations in SQL intervals are capped at this (about 100 years), so that none overflows.
pub(super) const MAX_INTERVAL_MILLIS: i64 = 3_153_600_000_000;

pub(super) const I8S: Type = Type::INT8_ARRAY;
pub(super) const TEXTS: Type = Type::TEXT_ARRAY;

/// Longest error text kept with a retry or a dead letter, in bytes.
pub(super) const MAX_ERROR_BYTES: usize = 4096;

/// `error` as PostgreSQL can store it: a text value cannot hold a NUL byte, and a handler's
/// error message is arbitrary; one such message must not make every completion of its batch fail
/// again and again. Cut to [`MAX_ERROR_BYTES`] at a character boundary.
pub(super) fn storable_error(error: &str) -> String {
    let mut text: String = error.chars().filter(|&c| c != '\0').collect();
    if text.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

pub(super) fn split(leases: impl Iterator<Item = Lease>) -> (Vec<i64>, Vec<i64>) {
    leases.map(|l| (l.id as i64, l.token as i64)).unzip()
}

pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `d` in milliseconds for `$n * interval '1 millisecond'`, capped so that the interval exists.
pub(super) fn interval_millis(d: Duration) -> i64 {
    millis(d).min(MAX_INTERVAL_MILLIS)
}
