//! Versioned migrations embedded in the binary.

use super::error;
use super::pool::PgPool;
use crate::error::{Error, ErrorKind};

/// The migrations, in order: `(version, name, sql)`. Applied ones are recorded in
/// `botrt_migrations`; a version once released never changes, later changes get a new one.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "queue, dead letters, dedup, state", V1),
    (2, "push order per conversation, dead-letter retention", V2),
    (3, "state scopes and time-to-live", V3),
    (
        4,
        "leases in a table of their own, claims without a lock",
        V4,
    ),
    (5, "rate limits shared across processes", V5),
    (
        6,
        "unordered claims from the tail, dedup index summarised",
        V6,
    ),
    (7, "ordered claims from the queue's front", V7),
    (
        8,
        "lane probes bounded by the front, figures without a scan",
        V8,
    ),
    (9, "a small claim looks at both slots at once", V9),
    (10, "the claim over both slots keeps its plan", V10),
    (
        11,
        "pushes visible at their commit, answered once on disk",
        V11,
    ),
    (
        12,
        "full claims and front reads start at a proven floor",
        V12,
    ),
    (
        13,
        "a claim's leases inserted without a conflict check",
        V13,
    ),
];

const V1: &str = r#"
CREATE TABLE botrt_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- hash of (platform, conversation): the ordering lane
    lane bigint NOT NULL,
    platform text NOT NULL,
    event_id text NOT NULL,
    conversation text NOT NULL,
    payload json NOT NULL,
    -- 0: waiting (ready once run_at has passed), 1: leased
    state smallint NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    lease_token bigint,
    lease_expires_at timestamptz,
    last_error text,
    enqueued_at timestamptz NOT NULL DEFAULT now()
) WITH (
    -- Rows live for milliseconds: vacuum early and without throttling, leave room for HOT
    -- updates (lease extensions).
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
CREATE INDEX botrt_events_lane ON botrt_events (lane, id);
CREATE INDEX botrt_events_waiting ON botrt_events (id) WHERE state = 0;
CREATE INDEX botrt_events_leased ON botrt_events (lane) WHERE state = 1;

-- Event ids seen recently, for deduplication of platform redeliveries.
CREATE TABLE botrt_dedup (
    platform text NOT NULL,
    event_id text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, event_id)
) WITH (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
CREATE INDEX botrt_dedup_seen_at ON botrt_dedup USING brin (seen_at);

CREATE TABLE botrt_dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_id bigint NOT NULL,
    platform text NOT NULL,
    event_id text NOT NULL,
    conversation text NOT NULL,
    payload json NOT NULL,
    attempts integer NOT NULL,
    error text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE botrt_state (
    platform text NOT NULL,
    conversation text NOT NULL,
    value jsonb NOT NULL,
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, conversation)
);

-- Claims up to p_limit events for one lease. Ordered claims take only the head of a lane with
-- no lease, and are serialised by an advisory lock taken before the claim statement, so that
-- the statement's snapshot sees every claim committed before it (see the pg module docs).
CREATE FUNCTION botrt_claim(p_limit integer, p_lease_ms bigint, p_token bigint, p_ordered boolean)
RETURNS TABLE (id bigint, attempts integer, payload text)
LANGUAGE plpgsql
-- Planned afresh at every call: a plan cached while the table was small (a fresh deployment)
-- would scan instead of probing the indexes once the table is large, and take minutes.
SET plan_cache_mode = force_custom_plan
-- The planner's cost estimate of the claim is high (a probe per candidate); compiling it with
-- JIT would cost ten times what running it does.
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    -- A claim need not survive a crash of the server: lost, its events are simply waiting
    -- again (and a completion of it is stale). So its commit does not wait for the disk.
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_ordered THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('botrt.claim.' || current_schema(), 0));
        RETURN QUERY
        WITH c AS MATERIALIZED (
            SELECT e.id FROM botrt_events e
            WHERE e.state = 0 AND e.run_at <= now()
              AND NOT EXISTS (SELECT 1 FROM botrt_events p WHERE p.lane = e.lane AND p.id < e.id)
              -- A scalar subquery, so that it stays one index probe per candidate: as an
              -- anti-join the planner may compare every candidate with every lease.
              AND (SELECT l.id FROM botrt_events l WHERE l.lane = e.lane AND l.state = 1 LIMIT 1) IS NULL
            ORDER BY e.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE botrt_events e
        SET state = 1, attempts = e.attempts + 1, lease_token = p_token,
            lease_expires_at = now() + p_lease_ms * interval '1 millisecond'
        FROM c WHERE e.id = c.id
        RETURNING e.id, e.attempts, e.payload::text;
    ELSE
        RETURN QUERY
        WITH c AS MATERIALIZED (
            SELECT e.id FROM botrt_events e
            WHERE e.state = 0 AND e.run_at <= now()
            ORDER BY e.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE botrt_events e
        SET state = 1, attempts = e.attempts + 1, lease_token = p_token,
            lease_expires_at = now() + p_lease_ms * interval '1 millisecond'
        FROM c WHERE e.id = c.id
        RETURNING e.id, e.attempts, e.payload::text;
    END IF;
END
$$;
"#;

// Existing rows need nothing: events already queued keep their ids (and so their order), a
// conversation's row in `botrt_lanes` is made by its first push after the migration.
const V2: &str = r#"
-- One row per conversation that pushed recently: a push locks the rows of its conversations,
-- in lane order, before its events take their ids, so that the ids of one conversation follow
-- the order in which their pushes commit (see the pg module docs). The rows hold nothing else;
-- the maintenance task deletes those not pushed to for a while (a scan: no index on
-- `pushed_at`, so that its updates stay HOT).
CREATE TABLE botrt_lanes (
    lane bigint PRIMARY KEY,
    pushed_at timestamptz NOT NULL DEFAULT now()
) WITH (
    -- Every push updates its lanes' rows: leave room for HOT updates, vacuum early.
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);

-- Dead letters are pruned by age and by count (the newest are kept).
CREATE INDEX botrt_dead_letters_failed_at ON botrt_dead_letters (failed_at);
"#;

const V3: &str = r#"
-- State by scope: a conversation (the rows so far), a user, a user in a conversation, or an app
-- key; `subject` is the user or the key's name. Documents may expire.
ALTER TABLE botrt_state
    ADD COLUMN scope text NOT NULL DEFAULT 'conversation',
    ADD COLUMN subject text NOT NULL DEFAULT '',
    ADD COLUMN expires_at timestamptz;
ALTER TABLE botrt_state DROP CONSTRAINT botrt_state_pkey;
ALTER TABLE botrt_state ADD PRIMARY KEY (platform, scope, conversation, subject);
CREATE INDEX botrt_state_expires_at ON botrt_state (expires_at) WHERE expires_at IS NOT NULL;
"#;

// Leases leave the events' rows for a small table of their own. A claim then writes one small
// row per event instead of a new version of the event's row with new entries in every index of
// the big table; acknowledging deletes both. The lane of an ordered lease is unique, so two
// claims that run at once (there is no lock between them any more) cannot both lease a
// conversation: the second one's insert finds the first one's row and skips it.
//
// Events leased by processes of an older version go back to waiting, with the attempt they were
// on not counted: stop those processes before migrating, or such events run again.
const V4: &str = r#"
CREATE TABLE botrt_leases (
    -- the leased event's id
    id bigint PRIMARY KEY,
    lane bigint NOT NULL,
    -- taken by an ordered claim: the only lease of its lane
    ordered boolean NOT NULL,
    token bigint NOT NULL,
    expires_at timestamptz NOT NULL
) WITH (
    -- Rows live as long as a handler runs; lease extensions update them in place (HOT).
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
CREATE UNIQUE INDEX botrt_leases_lane ON botrt_leases (lane) WHERE ordered;

UPDATE botrt_events SET attempts = greatest(attempts - 1, 0) WHERE state = 1;
DROP INDEX botrt_events_waiting;
DROP INDEX botrt_events_leased;
-- `attempts` now counts finished attempts; a claim reports the next one without writing it.
ALTER TABLE botrt_events
    DROP COLUMN state,
    DROP COLUMN lease_token,
    DROP COLUMN lease_expires_at,
    -- Rows are inserted and deleted, updated only by a retry: no room for updates needed.
    SET (fillfactor = 100);

-- Claims up to p_limit events for one lease token: events whose time has come and that hold no
-- lease, in id order; ordered claims only the head of a lane (its smallest id) whose lane has no
-- ordered lease. Candidates are locked with SKIP LOCKED, so claims running at once take
-- different events; a lease that another claim committed after this one's snapshot is found by
-- the insert (`ON CONFLICT DO NOTHING`), and its event is not returned.
CREATE OR REPLACE FUNCTION botrt_claim(p_limit integer, p_lease_ms bigint, p_token bigint, p_ordered boolean)
RETURNS TABLE (id bigint, attempts integer, payload text)
LANGUAGE plpgsql
-- Planned afresh at every call: a plan cached while the table was small (a fresh deployment)
-- would scan instead of probing the indexes once the table is large, and take minutes.
SET plan_cache_mode = force_custom_plan
-- The planner's cost estimate of the claim is high (a probe per candidate); compiling it with
-- JIT would cost ten times what running it does.
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    -- A claim need not survive a crash of the server: lost, its events are simply waiting
    -- again (and a completion of it is stale). So its commit does not wait for the disk.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- p_ordered is a constant in the plan (planned per call): the planner drops the branch
    -- that does not apply.
    RETURN QUERY
    WITH c AS MATERIALIZED (
        SELECT e.id, e.lane, e.attempts, e.payload FROM botrt_events e
        WHERE e.run_at <= now()
          AND (NOT p_ordered
               OR NOT EXISTS (SELECT 1 FROM botrt_events p WHERE p.lane = e.lane AND p.id < e.id))
          -- The leases are few (what the processes hold): one hash of them per claim, so that
          -- stepping over a leased candidate costs a lookup, not an index probe and a heap
          -- fetch in a table whose rows come and go.
          AND CASE WHEN p_ordered
              THEN e.lane NOT IN (SELECT l.lane FROM botrt_leases l WHERE l.ordered)
              ELSE e.id NOT IN (SELECT l.id FROM botrt_leases l)
          END
        ORDER BY e.id
        LIMIT p_limit
        FOR UPDATE OF e SKIP LOCKED
    ), leased AS (
        INSERT INTO botrt_leases AS l (id, lane, ordered, token, expires_at)
        SELECT c.id, c.lane, p_ordered, p_token, now() + p_lease_ms * interval '1 millisecond'
        FROM c
        ON CONFLICT DO NOTHING
        RETURNING l.id
    )
    SELECT c.id, c.attempts + 1, c.payload::text FROM c JOIN leased USING (id);
END
$$;
"#;

// Rate limits shared by every process of a channel (`bot_core::ratelimit`): one theoretical
// arrival time (TAT) per key, moved by reservations of a batch of tokens on the server's clock,
// and the processes seen per key, to share the limit when the database is down. UNLOGGED: lost
// in a crash of the server, which only starts the limits afresh (a TAT in the past and no
// members mean what an empty table means).
const V5: &str = r#"
CREATE UNLOGGED TABLE botrt_rate_limits (
    key text PRIMARY KEY,
    tat timestamptz NOT NULL
) WITH (
    -- One row per key, updated by every reservation: room for HOT updates, vacuum early.
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);

CREATE UNLOGGED TABLE botrt_rate_limit_members (
    key text NOT NULL,
    member text NOT NULL,
    seen_at timestamptz NOT NULL,
    PRIMARY KEY (key, member)
) WITH (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);

-- Reserves p_tokens tokens of p_key, one every p_interval_us microseconds, from
-- greatest(TAT, now); granted only when that start is at most p_horizon_us ahead of now, else
-- nothing changes and the TAT says when to ask again. Records p_member as seen and counts the
-- members seen within p_live_us. Times in microseconds since the epoch, on this server's clock,
-- read after the key's row is locked: the slots of a key never overlap.
CREATE FUNCTION botrt_rate_reserve(p_key text, p_member text, p_tokens integer,
    p_interval_us bigint, p_horizon_us bigint, p_live_us bigint)
RETURNS TABLE (granted integer, start_us bigint, now_us bigint, tat_us bigint, live integer)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_tat timestamptz;
    v_now timestamptz;
    v_start timestamptz;
BEGIN
    -- Unlogged rows: a commit has nothing to wait for on the disk.
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO botrt_rate_limits (key, tat) VALUES (p_key, '-infinity') ON CONFLICT (key) DO NOTHING;
    SELECT l.tat INTO v_tat FROM botrt_rate_limits l WHERE l.key = p_key FOR UPDATE;
    v_now := clock_timestamp();
    v_start := greatest(v_tat, v_now);
    IF v_start <= v_now + p_horizon_us * interval '1 microsecond' THEN
        v_tat := v_start + (p_tokens::bigint * p_interval_us) * interval '1 microsecond';
        UPDATE botrt_rate_limits l SET tat = v_tat WHERE l.key = p_key;
        granted := p_tokens;
    ELSE
        granted := 0;
    END IF;
    INSERT INTO botrt_rate_limit_members AS m (key, member, seen_at)
    VALUES (p_key, p_member, v_now)
    ON CONFLICT (key, member) DO UPDATE SET seen_at = excluded.seen_at;
    DELETE FROM botrt_rate_limit_members m
    WHERE m.key = p_key AND m.seen_at < v_now - p_live_us * interval '1 microsecond';
    SELECT count(*)::integer INTO live FROM botrt_rate_limit_members m WHERE m.key = p_key;
    start_us := (extract(epoch FROM v_start) * 1000000)::bigint;
    now_us := (extract(epoch FROM v_now) * 1000000)::bigint;
    tat_us := (extract(epoch FROM v_tat) * 1000000)::bigint;
    RETURN NEXT;
END
$$;
"#;

// An unordered claim scans the events in id order from the smallest, and every event leased now
// lies at the head of that order: a claim stepped over each of them (a heap fetch each, a
// thousand for two processes sending 512 at a time) and hashed every lease first, to take a
// hundred events. A claim from the tail starts after the largest leased id instead: no lease in
// its snapshot lies there, so it needs neither the hash nor the steps (a lease committed after
// its snapshot is still caught by the insert's conflict). Events left behind under that id (a
// retry whose time came, a released or rescued lease, an event a concurrent claim had locked)
// are taken by the full claim, which the claimer runs at least once a second and whenever a
// claim from the tail comes back short. The four-argument function stays for processes of the
// previous version.
//
// The dedup keys' BRIN index is summarised as its page ranges fill: an unsummarised range
// matches every search, so pruning old keys scanned every page written since the last vacuum.
const V6: &str = r#"
CREATE FUNCTION botrt_claim(p_limit integer, p_lease_ms bigint, p_token bigint, p_ordered boolean,
    p_tail boolean)
RETURNS TABLE (id bigint, attempts integer, payload text)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    IF p_ordered OR NOT p_tail THEN
        RETURN QUERY SELECT * FROM botrt_claim(p_limit, p_lease_ms, p_token, p_ordered);
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH c AS MATERIALIZED (
        SELECT e.id, e.lane, e.attempts, e.payload FROM botrt_events e
        WHERE e.id > coalesce((SELECT max(l.id) FROM botrt_leases l), 0)
          AND e.run_at <= now()
        ORDER BY e.id
        LIMIT p_limit
        FOR UPDATE OF e SKIP LOCKED
    ), leased AS (
        INSERT INTO botrt_leases AS l (id, lane, ordered, token, expires_at)
        SELECT c.id, c.lane, false, p_token, now() + p_lease_ms * interval '1 millisecond'
        FROM c
        ON CONFLICT DO NOTHING
        RETURNING l.id
    )
    SELECT c.id, c.attempts + 1, c.payload::text FROM c JOIN leased USING (id);
END
$$;

ALTER INDEX botrt_dedup_seen_at SET (autosummarize = on);
-- Vacuum's truncation of the leases' table takes a lock every claim waits behind; the table
-- keeps its pages (they are reused at once).
ALTER TABLE botrt_leases SET (vacuum_truncate = false);
"#;

// Ordered claims, measured mid-drain on a million-event backlog (EXPLAIN ANALYZE, 2026-12-05):
//
// - A claim scanned the events in id order from the smallest entry of the primary key, and the
//   front of that key is the entries of acknowledged events until vacuum removes them: half a
//   million of them (1,600 pages, 3 ms) in every claim half-way, more the deeper the queue. The
//   claimer reads the front (the smallest id) once per full claim and passes it to the claims
//   in between (`p_from`), which start there. Ids only grow, so no event is ever below the
//   front again but one whose insert took its id before the front was read and committed after
//   it: the full claim (`p_from` 0), run at least once a second and whenever a bounded claim
//   comes back short, takes those. Whether an event is its conversation's head is still decided
//   over the whole lane index, never from the front.
// - Two processes' claims ran at once over the same oldest heads: the later one probed the lane
//   index for each of the thousand heads the other had locked, then skipped it (SKIP LOCKED),
//   half of its work. Claims now take one of two slots (transaction advisory locks, tried
//   without waiting, in random order) and look only at the conversations of their slot (the
//   lowest bit of the lane): two claims at once look at disjoint conversations. A claim left
//   short in its slot tries the other; one that finds both taken waits for one, so that more
//   processes do not mean more claims stepping on each other.
//
// The five-argument function stays for processes of the previous version (unordered claims
// still go there).
const V7: &str = r#"
CREATE FUNCTION botrt_claim(p_limit integer, p_lease_ms bigint, p_token bigint, p_ordered boolean,
    p_tail boolean, p_from bigint)
RETURNS TABLE (id bigint, attempts integer, payload text)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_key integer := hashtext('botrt.claim.' || current_schema());
    v_first integer := floor(random() * 2)::integer;
    v_slot integer;
    v_got integer := 0;
    v_n integer;
    v_any boolean := false;
BEGIN
    IF NOT p_ordered THEN
        RETURN QUERY SELECT * FROM botrt_claim(p_limit, p_lease_ms, p_token, p_ordered, p_tail);
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR k IN 0..2 LOOP
        IF k < 2 THEN
            v_slot := (v_first + k) % 2;
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(v_key, v_slot);
            v_any := true;
        ELSE
            EXIT WHEN v_any;
            v_slot := v_first;
            PERFORM pg_advisory_xact_lock(v_key, v_slot);
        END IF;
        RETURN QUERY
        WITH c AS MATERIALIZED (
            SELECT e.id, e.lane, e.attempts, e.payload FROM botrt_events e
            WHERE e.id >= p_from
              -- Written as an inequality: the planner, without statistics of the expression,
              -- takes `= v_slot` to keep 0.5 % of the rows and, on a table of 100,000, scans
              -- and sorts it all for every claim (89 ms instead of a few).
              AND (e.lane & 1) <> 1 - v_slot
              AND e.run_at <= now()
              AND NOT EXISTS (SELECT 1 FROM botrt_events p WHERE p.lane = e.lane AND p.id < e.id)
              AND e.lane NOT IN (SELECT l.lane FROM botrt_leases l WHERE l.ordered)
            ORDER BY e.id
            LIMIT p_limit - v_got
            FOR UPDATE OF e SKIP LOCKED
        ), leased AS (
            INSERT INTO botrt_leases AS l (id, lane, ordered, token, expires_at)
            SELECT c.id, c.lane, true, p_token, now() + p_lease_ms * interval '1 millisecond'
            FROM c
            ON CONFLICT DO NOTHING
            RETURNING l.id
        )
        SELECT c.id, c.attempts + 1, c.payload::text FROM c JOIN leased USING (id);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_got := v_got + v_n;
        EXIT WHEN v_got >= p_limit;
    END LOOP;
END
$$;
"#;

// At ten million events two things grew with the table (BENCHMARKS.md, "Where the time goes at
// 10,000,000"); this migration bounds both.
//
// The lane probes. Whether a candidate is its conversation's head was one probe of the lane
// index over every entry of the conversation below the candidate, and without a vacuum (none
// runs during a drain; this project's CI server runs with autovacuum off) those are the entries
// of all its acknowledged events: 400-1,000 per conversation at 4-10 million acknowledged. The
// probe now starts at the queue's front (`p_front`, the smallest id the claimer last read) for
// every candidate whose row was written by a transaction that had ended before the front was
// read: `botrt_front()` reads the front and the xmin of the same statement's snapshot (`safe`,
// the oldest transaction still running then), and the claim bounds a candidate's probe when its
// row's xmin is older than that (`age(e.xmin) > age(safe)`; a frozen row is older than any).
// Why that is exact: let e be such a candidate and p a live event of its conversation with
// p.id < e.id. An ordered push (and an import, and a re-drive) locks its conversations' rows in
// `botrt_lanes` before its events take their ids and holds the locks to its end; a retry or a
// rescue updates the row (a newer xmin, so the probe of a retried candidate is unbounded unless
// the update too ended before the front was read). If p and e came from one transaction, p
// committed with e, before the front's snapshot. Otherwise, had e's transaction held the lock
// first, p's would have taken its id after e's ended, so p.id > e.id (the sequence hands out
// increasing values: an identity sequence has CACHE 1; after a crash it resumes above every
// value it logged); so p's transaction held it first and ended before e's took e.id, and so
// before e's ended. Either way p was committed in the front's snapshot, and as it is live now
// (ids are never reused, a retry keeps its row) it was live in it: the front is at most p.id,
// and the bounded probe [p_front, e.id) finds it. Other candidates (written by a transaction
// still running, or begun, when the front was read: their conversation may have an older event
// committed under the front since) keep the unbounded probe. The front and the xmin come from
// one statement, so one snapshot whatever the isolation level. The scan's start (`p_from`) stays
// as it was (0 for a full claim, which takes the events committed under the front).
//
// The figures. `Queue::depth`, the capacity check and the gauges came from a count of the whole
// table every few seconds, 3.4 GB of heap at ten million events, dead rows included (they stay
// until a vacuum). `botrt_figures` reads the front and the largest id (one statement, two index
// probes) and counts the newest p_exact_span ids exactly, through the primary key: in a queue
// that keeps up, that is every event. When the front lies further back (a backlog, or a few old
// events: a long handler's, a retry's), the front is counted too, and the ids strictly between
// are estimated from p_samples ids drawn uniformly among them (a probe each): live rows = their
// number x the share of drawn ids that are live, and so for the waiting and the retrying ones
// and the payload bytes; the leases and the dead letters are counted (they are few). The
// estimate is unbiased; its standard error is at most n / (2 sqrt(p_samples)) for the n ids
// between (not the live events: a backlog of 10,000,000 ids is estimated within about 110,000
// events, 1.1 %, for 2,000 draws; a front pinned by one old event with nothing live between
// draws nothing live and adds nothing). The oldest ready event is the first ready one from the
// front (ids follow enqueue order within a push's duration), looked for within p_exact_span ids
// of it, else the oldest ready one of the counted newest ids.
//
// The six-argument claim stays for processes of the previous version (they keep their
// unbounded probes and their own counts).
const V8: &str = r#"
CREATE FUNCTION botrt_front(OUT safe bigint, OUT front bigint)
LANGUAGE sql
AS $$
    -- One statement, one snapshot: its xmin and the front it sees.
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, coalesce(min(e.id), 0)
    FROM botrt_events e
$$;

CREATE FUNCTION botrt_claim(p_limit integer, p_lease_ms bigint, p_token bigint, p_ordered boolean,
    p_tail boolean, p_from bigint, p_front bigint, p_safe bigint)
RETURNS TABLE (id bigint, attempts integer, payload text)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_key integer := hashtext('botrt.claim.' || current_schema());
    v_first integer := floor(random() * 2)::integer;
    v_slot integer;
    v_got integer := 0;
    v_n integer;
    v_any boolean := false;
    -- How old the front's snapshot's xmin is now: rows written by older transactions have a
    -- larger age. None read (0): no row is older than the largest age, so no probe is bounded.
    v_safe_age integer := CASE WHEN p_safe > 0
        THEN age(((p_safe & 4294967295)::text)::xid) ELSE 2147483647 END;
BEGIN
    IF NOT p_ordered THEN
        RETURN QUERY SELECT * FROM botrt_claim(p_limit, p_lease_ms, p_token, p_ordered, p_tail);
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR k IN 0..2 LOOP
        IF k < 2 THEN
            v_slot := (v_first + k) % 2;
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(v_key, v_slot);
            v_any := true;
        ELSE
            EXIT WHEN v_any;
            v_slot := v_first;
            PERFORM pg_advisory_xact_lock(v_key, v_slot);
        END IF;
        RETURN QUERY
        WITH c AS MATERIALIZED (
            SELECT e.id, e.lane, e.attempts, e.payload FROM botrt_events e
            WHERE e.id >= p_from
              AND (e.lane & 1) <> 1 - v_slot
              AND e.run_at <= now()
              -- The bound is a parameter of the probe (it depends on the candidate only), so
              -- it is part of the lane index's range, not a filter after it.
              AND NOT EXISTS (
                  SELECT 1 FROM botrt_events p
                  WHERE p.lane = e.lane AND p.id < e.id
                    AND p.id >= CASE WHEN age(e.xmin) > v_safe_age THEN p_front ELSE 0 END)
              AND e.lane NOT IN (SELECT l.lane FROM botrt_leases l WHERE l.ordered)
            ORDER BY e.id
            LIMIT p_limit - v_got
            FOR UPDATE OF e SKIP LOCKED
        ), leased AS (
            INSERT INTO botrt_leases AS l (id, lane, ordered, token, expires_at)
            SELECT c.id, c.lane, true, p_token, now() + p_lease_ms * interval '1 millisecond'
            FROM c
            ON CONFLICT DO NOTHING
            RETURNING l.id
        )
        SELECT c.id, c.attempts + 1, c.payload::text FROM c JOIN leased USING (id);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_got := v_got + v_n;
        EXIT WHEN v_got >= p_limit;
    END LOOP;
END
$$;

CREATE FUNCTION botrt_figures(p_exact_span bigint, p_samples integer)
RETURNS TABLE (ready bigint, retrying bigint, leased bigint, oldest_ready_secs float8,
    dead bigint, bytes bigint, exact boolean)
LANGUAGE plpgsql
-- Planned at every call, through the indexes: the table is analysed rarely (never, without
-- autovacuum), and a range of the primary key would otherwise be planned as a scan of it all.
SET plan_cache_mode = force_custom_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_lo bigint;
    v_hi bigint;
    v_tail bigint;
    v_mid bigint;
    v_hits bigint := 0;
    v_waiting bigint := 0;
    v_later bigint := 0;
    v_bytes bigint := 0;
    v_leased_mid bigint := 0;
    v_front_waiting boolean;
    v_front_bytes bigint;
BEGIN
    -- One statement, one snapshot: both ends of the span.
    SELECT min(e.id), max(e.id) INTO v_lo, v_hi FROM botrt_events e;
    SELECT count(*) INTO leased FROM botrt_leases;
    SELECT count(*) INTO dead FROM botrt_dead_letters;
    IF v_hi IS NULL THEN
        ready := 0; retrying := 0; oldest_ready_secs := 0; bytes := 0; exact := true;
        RETURN NEXT;
        RETURN;
    END IF;
    -- The newest p_exact_span ids (where a queue's events are, but for a few old ones: a long
    -- handler's, a retry's) are counted; the ids between the front and them, if any, are
    -- estimated from p_samples drawn ids, the front itself counted.
    v_tail := greatest(v_lo, v_hi - p_exact_span + 1);
    SELECT count(*) FILTER (WHERE l.id IS NULL AND e.run_at <= now()),
           count(*) FILTER (WHERE l.id IS NULL AND e.run_at > now()),
           coalesce(extract(epoch FROM now() - min(e.enqueued_at)
               FILTER (WHERE l.id IS NULL AND e.run_at <= now())), 0)::float8,
           coalesce(sum(pg_column_size(e.payload)), 0)::bigint
    INTO ready, retrying, oldest_ready_secs, bytes
    FROM botrt_events e LEFT JOIN botrt_leases l ON l.id = e.id
    WHERE e.id BETWEEN v_tail AND v_hi;
    IF v_tail = v_lo THEN
        exact := true;
        -- The leases counted above may include some whose events were acknowledged between
        -- the statements: the events are what the count says, the leases at most that.
        RETURN NEXT;
        RETURN;
    END IF;
    exact := false;
    -- The front, counted: it is live (the smallest id).
    SELECT e.run_at <= now() AND NOT EXISTS (SELECT 1 FROM botrt_leases l WHERE l.id = e.id),
           pg_column_size(e.payload)
    INTO v_front_waiting, v_front_bytes
    FROM botrt_events e WHERE e.id = v_lo;
    -- The ids strictly between the front and the counted tail, drawn with replacement (each
    -- draw a probe of the primary key).
    v_mid := v_tail - v_lo - 1;
    IF v_mid > 0 THEN
        SELECT count(e.id),
               count(e.id) FILTER (WHERE e.run_at <= now()),
               count(e.id) FILTER (WHERE e.run_at > now()),
               coalesce(sum(pg_column_size(e.payload)), 0)::bigint
        INTO v_hits, v_waiting, v_later, v_bytes
        FROM (SELECT v_lo + 1 + floor(random() * v_mid)::bigint AS id
              FROM generate_series(1, p_samples)) s
        JOIN botrt_events e ON e.id = s.id;
        SELECT count(*) INTO v_leased_mid FROM botrt_leases l
        WHERE l.id > v_lo AND l.id < v_tail;
    END IF;
    -- Live rows between, estimated; the leased ones among them are counted and taken from the
    -- rows whose time has come (a leased event's has).
    retrying := retrying + round(v_later::numeric * v_mid / p_samples)::bigint;
    ready := ready + greatest(round(v_waiting::numeric * v_mid / p_samples)::bigint
        - v_leased_mid, 0);
    bytes := bytes + coalesce(v_front_bytes, 0)
        + CASE WHEN v_hits = 0 THEN 0
               ELSE round(v_bytes::numeric / v_hits * (v_hits::numeric * v_mid / p_samples))::bigint
          END;
    IF v_front_waiting THEN
        ready := ready + 1;
    ELSIF v_front_waiting IS NOT NULL THEN
        -- The front is leased or waits for its retry: counted with the leases, or here.
        SELECT retrying + count(*) INTO retrying FROM botrt_events e
        WHERE e.id = v_lo AND e.run_at > now();
    END IF;
    -- The oldest ready event: looked for within p_exact_span ids of the front; none there (a
    -- front of leased or retrying events that long), the oldest ready one of the counted tail,
    -- an under-estimate of the age only when ready events lie unseen between.
    SELECT greatest(oldest_ready_secs, coalesce((
        SELECT extract(epoch FROM now() - e.enqueued_at)::float8
        FROM botrt_events e
        WHERE e.id >= v_lo AND e.id < v_lo + p_exact_span AND e.run_at <= now()
          AND NOT EXISTS (SELECT 1 FROM botrt_leases l WHERE l.id = e.id)
        ORDER BY e.id
        LIMIT 1), 0))
    INTO oldest_ready_secs;
    oldest_ready_secs := greatest(coalesce(oldest_ready_secs, 0), 0);
    RETURN NEXT;
END
$$;
"#;

// An idle queue's claim (issue 19, BENCHMARKS.md "Idle pickup: one claim query"). A claim that
// comes back short in its first slot goes on to the other (migration 7), so every claim of a
// queue that holds fewer events than asked, which is every claim of an idle queue, ran two
// queries, each planned at the call, one after the other while holding both slots: 0.64 ms of the
// server's time for one event against 0.33 ms for one query over both slots (measured in one
// loop, load average 6.5). With `p_whole` (the claimer sets it when its previous claim came back
// short, so not in a backlog, where each claim's own slot is what keeps two processes' claims
// apart), a claim that gets both slots without waiting runs that one query over every
// conversation; one that does not runs the eight-argument claim (the locks are re-entrant: it
// looks at the slot held here, or waits for one as before). The query is migration 8's with no
// condition on the slot: the same head-of-conversation probe, the same check of the ordered
// leases, SKIP LOCKED and the lease insert that loses to a lease committed since its snapshot,
// so one conversation's events are still leased one at a time, in id order.
//
// The eight-argument claim stays for processes of the previous version.
const V9: &str = r#"
CREATE FUNCTION botrt_claim(p_limit integer, p_lease_ms bigint, p_token bigint, p_ordered boolean,
    p_tail boolean, p_from bigint, p_front bigint, p_safe bigint, p_whole boolean)
RETURNS TABLE (id bigint, attempts integer, payload text)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_key integer := hashtext('botrt.claim.' || current_schema());
    v_safe_age integer := CASE WHEN p_safe > 0
        THEN age(((p_safe & 4294967295)::text)::xid) ELSE 2147483647 END;
    v_whole boolean := false;
BEGIN
    -- Both slots, tried without waiting, one after the other (a slot got here and the other
    -- not is simply the slot the eight-argument claim then looks at).
    IF p_ordered AND p_whole THEN
        IF pg_try_advisory_xact_lock(v_key, 0) THEN
            v_whole := pg_try_advisory_xact_lock(v_key, 1);
        END IF;
    END IF;
    IF NOT v_whole THEN
        RETURN QUERY SELECT * FROM botrt_claim(p_limit, p_lease_ms, p_token, p_ordered, p_tail,
            p_from, p_front, p_safe);
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH c AS MATERIALIZED (
        SELECT e.id, e.lane, e.attempts, e.payload FROM botrt_events e
        WHERE e.id >= p_from
          AND e.run_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM botrt_events p
              WHERE p.lane = e.lane AND p.id < e.id
                AND p.id >= CASE WHEN age(e.xmin) > v_safe_age THEN p_front ELSE 0 END)
          AND e.lane NOT IN (SELECT l.lane FROM botrt_leases l WHERE l.ordered)
        ORDER BY e.id
        LIMIT p_limit
        FOR UPDATE OF e SKIP LOCKED
    ), leased AS (
        INSERT INTO botrt_leases AS l (id, lane, ordered, token, expires_at)
        SELECT c.id, c.lane, true, p_token, now() + p_lease_ms * interval '1 millisecond'
        FROM c
        ON CONFLICT DO NOTHING
        RETURNING l.id
    )
    SELECT c.id, c.attempts + 1, c.payload::text FROM c JOIN leased USING (id);
END
$$;
"#;

// The claim over both slots keeps its plan (issue 19, BENCHMARKS.md "The nineteenth session").
// Migration 9 planned it at every call, as every claim is, for the table as it is then: after an
// idle gap that planning was about a quarter of a millisecond of a cold claim, on the path of every
// pickup from an idle queue. Here it takes a generic plan, made at a connection's first call that
// gets both slots and kept until the tables' statistics change (an analyse, a vacuum, a
// migration). That plan is then used at every size, so whatever could go wrong with the
// statistics of the moment it was made is written out of it:
// - the candidates are read through the primary key from `p_from`, an index condition on the
//   parameter; sequential scans are off in the function, so that statistics of a small table
//   cannot make the kept plan a scan and a sort of a table that has filled since;
// - the probe for an older event of the candidate's conversation is written as a comparison of
//   `(lane, id)` rows, which only the lane index can serve. Written as `p.lane = e.lane AND p.id <
//   e.id AND ...`, as in migration 9, a plan made on an emptied and analysed table probed through
//   the primary key from the front, or read the lane index whole for each candidate (measured in
//   the session's scratch schema: a claim of 64 among 100,000 events 147 ms and 2.3 s, against 3
//   ms with the row comparison). The rows
//   `(p.lane, p.id)` between `(e.lane, bound)` and `(e.lane, e.id)` are exactly the
//   conversation's events in that range;
// - the claimed rows come back through a lookup of each lease's event by its lane and id, where
//   migration 9 joined the candidates to the leases inserted: made on an analysed empty table,
//   that join was a nested loop comparing every pair (a claim of 1,000: 45-73 ms against 11-21).
// Only the subplan over the ordered leases (hashed or not) still follows the statistics, as it
// does in every claim. The body is migration 9's otherwise: the same slots, the same
// head-of-conversation rule, the same lease insert. The claim it hands over to when a slot is
// taken (eight arguments, the backlog's claim) sets its own plan mode and is still planned at each
// call; called from here it runs with sequential scans off too, which on a small table makes it
// read through the same indexes as on a large one instead of scanning and sorting.
const V10: &str = r#"
CREATE OR REPLACE FUNCTION botrt_claim(p_limit integer, p_lease_ms bigint, p_token bigint,
    p_ordered boolean, p_tail boolean, p_from bigint, p_front bigint, p_safe bigint,
    p_whole boolean)
RETURNS TABLE (id bigint, attempts integer, payload text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_key integer := hashtext('botrt.claim.' || current_schema());
    v_safe_age integer := CASE WHEN p_safe > 0
        THEN age(((p_safe & 4294967295)::text)::xid) ELSE 2147483647 END;
    v_whole boolean := false;
BEGIN
    IF p_ordered AND p_whole THEN
        IF pg_try_advisory_xact_lock(v_key, 0) THEN
            v_whole := pg_try_advisory_xact_lock(v_key, 1);
        END IF;
    END IF;
    IF NOT v_whole THEN
        RETURN QUERY SELECT * FROM botrt_claim(p_limit, p_lease_ms, p_token, p_ordered, p_tail,
            p_from, p_front, p_safe);
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH c AS MATERIALIZED (
        SELECT e.id, e.lane, e.attempts, e.payload FROM botrt_events e
        WHERE e.id >= p_from
          AND e.run_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM botrt_events p
              WHERE (p.lane, p.id) < (e.lane, e.id)
                AND (p.lane, p.id) >= (e.lane,
                    CASE WHEN age(e.xmin) > v_safe_age THEN p_front ELSE 0 END))
          AND e.lane NOT IN (SELECT l.lane FROM botrt_leases l WHERE l.ordered)
        ORDER BY e.id
        LIMIT p_limit
        FOR UPDATE OF e SKIP LOCKED
    ), leased AS (
        INSERT INTO botrt_leases AS l (id, lane, ordered, token, expires_at)
        SELECT c.id, c.lane, true, p_token, now() + p_lease_ms * interval '1 millisecond'
        FROM c
        ON CONFLICT DO NOTHING
        RETURNING l.id, l.lane
    )
    -- Each lease's event looked up by its lane and id, which the primary key and the lane index
    -- both serve exactly (by the id alone, a plan made on an empty table scanned the lane index
    -- whole for each), the `LIMIT` keeping the lookup a nested loop over the leases whatever
    -- their estimate: not a join of the two CTEs, whose kept plan could compare every pair.
    -- `FOR UPDATE` reads the version of the row that `c` locked (a retry's update committed
    -- since the statement's snapshot included) rather than the snapshot's; the lock is already
    -- this transaction's, so it waits for nothing.
    SELECT leased.id, v.attempts + 1, v.payload::text
    FROM leased CROSS JOIN LATERAL (
        SELECT ev.attempts, ev.payload FROM botrt_events ev
        WHERE ev.lane = leased.lane AND ev.id = leased.id
        LIMIT 1
        FOR UPDATE
    ) v;
END
$$;
"#;

// A push on an idle queue commits without waiting for the disk, so that the event can be
// claimed at once, and its caller is answered only after a second, tiny transaction on the same
// connection has committed the usual way: this upsert of the backend's own row, whose commit
// waits for the WAL to be on disk up to and past the push's commit record (see
// `pg::queue::sql::FLUSH`). One row per server process that ever pushed; rows of processes gone
// are deleted by the queue's upkeep.
const V11: &str = r#"
CREATE TABLE botrt_flushes (
    backend integer PRIMARY KEY,
    flushes bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
"#;

// Full claims and front reads start at a proven floor (issue 19, BENCHMARKS.md "The
// twenty-fifth session"). Until a vacuum, the primary key keeps an entry for every acknowledged
// event, and a full claim (from id 0) and a front read (`min(id)`) stepped over all of them: at
// ten million events, about 14,000 index pages per front read and per full claim, several times
// a second with four processes. They now start at a floor the claimer proves from two front reads
// (its `Floor`); this function returns what the proof needs.
//
// `low` is the smallest id that the first statement's snapshot sees from `p_floor` on, or, when it
// sees none, the next id the sequence hands out, read after that snapshot was taken (through
// `pg_sequence_last_value`, which reads the sequence under its buffer lock: a plain `SELECT` of the
// sequence can catch the value `nextval` writes ahead for its WAL record, up to 32 too high).
// `mark` is the transaction id the function takes last (`pg_current_xact_id()`). Why no event that
// is not visible to the snapshot can later commit with an id under `low`, once every transaction
// whose id is under `mark` has ended (a later front read's snapshot has `safe > mark`): let X <
// low be such an event's id and T its transaction. Every insert into `botrt_events` gives its
// transaction an id before its events take theirs: pushes, imports and re-drives lock their
// conversations' rows in `botrt_lanes` (an insert or an update) first, and an unordered push
// inserts its dedup keys first (its events are inserted from the keys it inserted); and the
// identity sequence hands out increasing values (CACHE 1). So T had its transaction id when X was
// handed out. X was handed out before `low` was: when `low` is a visible event's id, before that
// event's transaction committed, so before the snapshot; when it is the sequence's next value,
// before that was read. So T's id was taken before `mark` and is smaller, and T has ended by that
// later snapshot: X is visible to it (or was acknowledged since). So whatever the queue holds then
// or later, outside of what that later snapshot sees under `low`, is at least `low`, and the
// claimer's floor becomes the smaller of `low` and the later read's own `low` (which covers what
// it sees: it reads from the floor up, and nothing lives under the floor). A role that may not
// read the sequence gets no `low` (NULL) on an empty queue: that read proves and shows nothing.
//
// The proof assumes ids never go backwards. They can: a failover to a standby that lagged, a
// restore, a crash that loses WAL not yet flushed (front reads and early pushes commit without
// waiting for it), `ALTER SEQUENCE ... RESTART`. So the claimer also reads from id 0 now and then
// and whenever a claim fails, and drops its floor when a read sees anything under it (see
// `Floor`). An unordered queue's claimer keeps claiming from 0 (its claims are migration 6's).
//
// The reader's transaction commits without waiting for the disk: it wrote nothing but its commit
// record. `safe` and the front are migration 8's.
const V12: &str = r#"
CREATE FUNCTION botrt_front(p_floor bigint,
    OUT safe bigint, OUT front bigint, OUT low bigint, OUT mark bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    v_seq regclass := pg_get_serial_sequence('botrt_events', 'id')::regclass;
BEGIN
    -- One statement, one snapshot: its xmin and the front it sees.
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
           (SELECT min(e.id) FROM botrt_events e WHERE e.id >= p_floor)
    INTO safe, front;
    low := front;
    IF low IS NULL THEN
        -- After the snapshot: the id the sequence hands out next (at least its smallest value
        -- when it has handed out none).
        BEGIN
            low := coalesce(pg_sequence_last_value(v_seq) + 1,
                (SELECT s.seqmin FROM pg_sequence s WHERE s.seqrelid = v_seq));
        EXCEPTION WHEN insufficient_privilege THEN
            low := NULL;
        END;
    END IF;
    front := coalesce(front, 0);
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Last: a transaction id taken after all of the above.
    mark := pg_current_xact_id()::text::bigint;
END
$$;
"#;

// A claim's leases are inserted without a conflict check (issue 19, BENCHMARKS.md "The
// twenty-sixth session"). Migration 4 inserted them with `ON CONFLICT DO NOTHING`, so that two
// claims running at once, one of which took its snapshot before the other committed the lease of a
// conversation, could not both lease it: the later insert found the earlier lease and left the
// event. Since migration 7 every ordered claim holds the claim slot of the conversations it looks
// at (an advisory lock held to its commit; the claim over every conversation holds both), and its
// statement takes its snapshot after the slot is held, so every lease another claim of those
// conversations committed is in that snapshot, and the check against the ordered leases' lanes
// already leaves those conversations out; no claim of them can be running meanwhile. The conflict
// check found nothing, and cost a speculative insertion per lease: a probe of both unique indexes
// before the insert and a second write to the heap page after it, the largest share of a claim's
// buffer accesses (11,800 of 16,900 for a claim of 1,000 in the session's scratch table; 6,600
// with a plain insert). The unique index on an ordered lease's conversation stays: a lease
// inserted by something that takes no slot (a process of a version before migration 7, a manual
// insert) now fails the claim that meets it, which the claimer retries, instead of being
// skipped; so does a claim that finds two events of one conversation each first of it, which only
// lane probes bounded by a front read before a rewind of the ids can (the claimer then drops its
// front). A conversation still never holds two leases. The queue's connections run under READ
// COMMITTED whatever the server's default (`PgPool::derive_for_queue`): under REPEATABLE READ
// the snapshot would be taken before the slot. The claimed rows are returned from the
// locked candidates (`FOR UPDATE` returns the row version it locked), each of which now has its
// lease or the statement fails. The bodies are migrations 8 and 10 otherwise.
const V13: &str = r#"
CREATE OR REPLACE FUNCTION botrt_claim(p_limit integer, p_lease_ms bigint, p_token bigint, p_ordered boolean,
    p_tail boolean, p_from bigint, p_front bigint, p_safe bigint)
RETURNS TABLE (id bigint, attempts integer, payload text)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_key integer := hashtext('botrt.claim.' || current_schema());
    v_first integer := floor(random() * 2)::integer;
    v_slot integer;
    v_got integer := 0;
    v_n integer;
    v_any boolean := false;
    -- How old the front's snapshot's xmin is now: rows written by older transactions have a
    -- larger age. None read (0): no row is older than the largest age, so no probe is bounded.
    v_safe_age integer := CASE WHEN p_safe > 0
        THEN age(((p_safe & 4294967295)::text)::xid) ELSE 2147483647 END;
BEGIN
    IF NOT p_ordered THEN
        RETURN QUERY SELECT * FROM botrt_claim(p_limit, p_lease_ms, p_token, p_ordered, p_tail);
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR k IN 0..2 LOOP
        IF k < 2 THEN
            v_slot := (v_first + k) % 2;
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(v_key, v_slot);
            v_any := true;
        ELSE
            EXIT WHEN v_any;
            v_slot := v_first;
            PERFORM pg_advisory_xact_lock(v_key, v_slot);
        END IF;
        RETURN QUERY
        WITH c AS MATERIALIZED (
            SELECT e.id, e.lane, e.attempts, e.payload FROM botrt_events e
            WHERE e.id >= p_from
              AND (e.lane & 1) <> 1 - v_slot
              AND e.run_at <= now()
              -- The bound is a parameter of the probe (it depends on the candidate only), so
              -- it is part of the lane index's range, not a filter after it.
              AND NOT EXISTS (
                  SELECT 1 FROM botrt_events p
                  WHERE p.lane = e.lane AND p.id < e.id
                    AND p.id >= CASE WHEN age(e.xmin) > v_safe_age THEN p_front ELSE 0 END)
              AND e.lane NOT IN (SELECT l.lane FROM botrt_leases l WHERE l.ordered)
            ORDER BY e.id
            LIMIT p_limit - v_got
            FOR UPDATE OF e SKIP LOCKED
        ), leased AS (
            INSERT INTO botrt_leases (id, lane, ordered, token, expires_at)
            SELECT c.id, c.lane, true, p_token, now() + p_lease_ms * interval '1 millisecond'
            FROM c
        )
        SELECT c.id, c.attempts + 1, c.payload::text FROM c;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_got := v_got + v_n;
        EXIT WHEN v_got >= p_limit;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION botrt_claim(p_limit integer, p_lease_ms bigint, p_token bigint,
    p_ordered boolean, p_tail boolean, p_from bigint, p_front bigint, p_safe bigint,
    p_whole boolean)
RETURNS TABLE (id bigint, attempts integer, payload text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_key integer := hashtext('botrt.claim.' || current_schema());
    v_safe_age integer := CASE WHEN p_safe > 0
        THEN age(((p_safe & 4294967295)::text)::xid) ELSE 2147483647 END;
    v_whole boolean := false;
BEGIN
    IF p_ordered AND p_whole THEN
        IF pg_try_advisory_xact_lock(v_key, 0) THEN
            v_whole := pg_try_advisory_xact_lock(v_key, 1);
        END IF;
    END IF;
    IF NOT v_whole THEN
        RETURN QUERY SELECT * FROM botrt_claim(p_limit, p_lease_ms, p_token, p_ordered, p_tail,
            p_from, p_front, p_safe);
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH c AS MATERIALIZED (
        SELECT e.id, e.lane, e.attempts, e.payload FROM botrt_events e
        WHERE e.id >= p_from
          AND e.run_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM botrt_events p
              WHERE (p.lane, p.id) < (e.lane, e.id)
                AND (p.lane, p.id) >= (e.lane,
                    CASE WHEN age(e.xmin) > v_safe_age THEN p_front ELSE 0 END))
          AND e.lane NOT IN (SELECT l.lane FROM botrt_leases l WHERE l.ordered)
        ORDER BY e.id
        LIMIT p_limit
        FOR UPDATE OF e SKIP LOCKED
    ), leased AS (
        INSERT INTO botrt_leases (id, lane, ordered, token, expires_at)
        SELECT c.id, c.lane, true, p_token, now() + p_lease_ms * interval '1 millisecond'
        FROM c
    )
    SELECT c.id, c.attempts + 1, c.payload::text FROM c;
END
$$;
"#;

/// Creates or updates the bot's tables in the pool's schema (creating the schema too).
///
/// Idempotent, and safe when several processes start at once: the migrations run in one
/// transaction under an advisory lock, so one process applies them and the others find them
/// applied.
///
/// # Errors
///
/// [`ErrorKind::Queue`] when the database cannot be reached or a migration fails (nothing of
/// that run is kept then).
pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
    let fail = |what: &str, e| error::db(ErrorKind::Queue, what, e);
    let (mut conn, _) = pool.get_measured(ErrorKind::Queue, "migrating").await?;
    let tx = conn
        .transaction()
        .await
        .map_err(|e| fail("starting the migration", e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('botrt.migrate.' || $1::text, 0))",
        &[&pool.schema()],
    )
    .await
    .map_err(|e| fail("locking for the migration", e))?;
    // The schema name was checked to be a plain identifier when the pool was built.
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.botrt_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        schema = pool.schema()
    ))
    .await
    .map_err(|e| fail("creating the migrations table", e))?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM botrt_migrations", &[])
        .await
        .map_err(|e| fail("reading applied migrations", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| fail(&format!("applying migration {version} ({name})"), e))?;
        tx.execute(
            "INSERT INTO botrt_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(|e| fail("recording a migration", e))?;
        tracing::info!(
            version,
            name,
            schema = pool.schema(),
            "postgres: migration applied"
        );
    }
    tx.commit()
        .await
        .map_err(|e| fail("committing the migration", e))
}
