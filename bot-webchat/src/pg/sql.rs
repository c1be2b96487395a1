//! The statements of presence and fan-out, in one place.

/// Creates the tables in the pool's schema; one process at a time (an advisory lock), so that
/// many processes starting together do not race on `CREATE TABLE IF NOT EXISTS`.
pub(super) fn migrate(schema: &str) -> String {
    format!(
        "BEGIN;
         SELECT pg_advisory_xact_lock(hashtext('bot_webchat_migrate'));
         CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.webchat_presence (
             user_id    text PRIMARY KEY,
             nodes      jsonb NOT NULL DEFAULT '{{}}'::jsonb,
             joined_at  timestamptz,
             left_at    timestamptz,
             updated_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE INDEX IF NOT EXISTS webchat_presence_nodes
             ON {schema}.webchat_presence USING gin (nodes);
         CREATE TABLE IF NOT EXISTS {schema}.webchat_nodes (
             node         text PRIMARY KEY,
             started_at   timestamptz NOT NULL DEFAULT now(),
             heartbeat_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE TABLE IF NOT EXISTS {schema}.webchat_fanout (
             id         bigserial PRIMARY KEY,
             payload    text NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE TABLE IF NOT EXISTS {schema}.webchat_meta (
             key   text PRIMARY KEY,
             value text NOT NULL
         );
         INSERT INTO {schema}.webchat_meta (key, value)
         VALUES ('epoch', 'pg-' || left(md5(random()::text || clock_timestamp()::text), 16))
         ON CONFLICT (key) DO NOTHING;
         CREATE TABLE IF NOT EXISTS {schema}.webchat_seqs (
             user_id text PRIMARY KEY,
             seq     bigint NOT NULL
         );
         CREATE TABLE IF NOT EXISTS {schema}.webchat_history (
             user_id      text NOT NULL,
             seq          bigint NOT NULL,
             message      text NOT NULL,
             msg_id       text NOT NULL,
             at_ms        bigint NOT NULL,
             origin_event text,
             origin_index int,
             origin_part  int,
             created_at   timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (user_id, seq)
         );
         CREATE INDEX IF NOT EXISTS webchat_history_created
             ON {schema}.webchat_history (created_at);
         -- A send's origin is stored once: a second statement storing it fails on this index
         -- and runs again (seeing the first's rows). Rows stored twice before it existed keep
         -- their first number.
         DO $$ BEGIN
             IF to_regclass('{schema}.webchat_history_origin') IS NULL THEN
                 DELETE FROM {schema}.webchat_history h USING {schema}.webchat_history d
                 WHERE h.origin_event IS NOT NULL AND d.user_id = h.user_id
                   AND d.origin_event = h.origin_event AND d.origin_index = h.origin_index
                   AND d.origin_part = h.origin_part AND d.seq < h.seq;
                 CREATE UNIQUE INDEX webchat_history_origin
                     ON {schema}.webchat_history (user_id, origin_event, origin_index, origin_part)
                     WHERE origin_event IS NOT NULL;
             END IF;
         END $$;
         -- Every number a pruned user's row reached is at most this: a user's new row counts
         -- from it, so a browser never sees a number it has seen before.
         INSERT INTO {schema}.webchat_meta (key, value) VALUES ('seq_floor', '0')
         ON CONFLICT (key) DO NOTHING;
         COMMIT;"
    )
}

/// Sets this node's count for a batch of users (`$1` node, `$2` users, `$3` counts; 0 removes
/// the node). `joined_at` is when a user came online from offline, `left_at` when they went
/// offline on every node.
pub(super) const WRITE_PRESENCE: &str = "
    INSERT INTO webchat_presence AS p (user_id, nodes, joined_at, left_at, updated_at)
    SELECT u,
           CASE WHEN c > 0 THEN jsonb_build_object($1::text, c) ELSE '{}'::jsonb END,
           CASE WHEN c > 0 THEN now() END,
           CASE WHEN c = 0 THEN now() END,
           now()
    FROM unnest($2::text[], $3::int[]) AS t(u, c)
    ON CONFLICT (user_id) DO UPDATE SET
        nodes = CASE WHEN EXCLUDED.nodes ? $1::text THEN p.nodes || EXCLUDED.nodes
                     ELSE p.nodes - $1::text END,
        joined_at = CASE WHEN p.nodes = '{}'::jsonb AND EXCLUDED.nodes <> '{}'::jsonb THEN now()
                         ELSE p.joined_at END,
        left_at = CASE WHEN p.nodes <> '{}'::jsonb AND EXCLUDED.nodes = '{}'::jsonb
                            AND p.nodes - $1::text = '{}'::jsonb THEN now()
                       ELSE p.left_at END,
        updated_at = now()";

/// This node's heartbeat; `inserted` is true when the row was not there (first beat, or the
/// node had been declared dead and its presence removed: then it writes its presence again).
pub(super) const HEARTBEAT: &str = "
    INSERT INTO webchat_nodes (node) VALUES ($1)
    ON CONFLICT (node) DO UPDATE SET heartbeat_at = now()
    RETURNING (xmax = 0) AS inserted";

/// Removes the nodes whose heartbeat is older than `$1` seconds and their counts from every
/// user; how many users went offline.
pub(super) const SWEEP_DEAD_NODES: &str = "
    WITH dead AS (
        DELETE FROM webchat_nodes
        WHERE heartbeat_at < now() - make_interval(secs => $1::float8)
        RETURNING node
    ), gone AS (
        SELECT coalesce(array_agg(node), '{}'::text[]) AS nodes FROM dead
    )
    UPDATE webchat_presence p SET
        nodes = p.nodes - gone.nodes,
        left_at = CASE WHEN p.nodes - gone.nodes = '{}'::jsonb THEN now() ELSE p.left_at END,
        updated_at = now()
    FROM gone
    WHERE p.nodes ?| gone.nodes";

/// A node that starts (or stops cleanly) under a name: its old counts are void.
pub(super) const CLEAR_NODE: &str = "
    UPDATE webchat_presence SET
        nodes = nodes - $1::text,
        left_at = CASE WHEN nodes - $1::text = '{}'::jsonb THEN now() ELSE left_at END,
        updated_at = now()
    WHERE nodes ? $1::text";

/// Forgets a node that stops cleanly.
pub(super) const DELETE_NODE: &str = "DELETE FROM webchat_nodes WHERE node = $1";

/// The users online on any node, with their total of sockets.
pub(super) const ONLINE_USERS: &str = "
    SELECT user_id, nodes, joined_at
    FROM webchat_presence
    WHERE nodes <> '{}'::jsonb
    ORDER BY user_id
    LIMIT $1";

/// One user's presence.
pub(super) const PRESENCE_OF: &str = "
    SELECT user_id, nodes, joined_at, left_at FROM webchat_presence WHERE user_id = $1";

/// Users and sockets per node.
pub(super) const NODE_COUNTS: &str = "
    SELECT n.key, count(*)::int8, sum(n.value::int8)::int8
    FROM webchat_presence p, jsonb_each_text(p.nodes) n
    GROUP BY n.key
    ORDER BY n.key";

/// Keeps an envelope too large for `NOTIFY`; the notification names its id.
pub(super) const STORE_ENVELOPE: &str =
    "INSERT INTO webchat_fanout (payload) VALUES ($1) RETURNING id";

/// Reads a stored envelope.
pub(super) const LOAD_ENVELOPE: &str = "SELECT payload FROM webchat_fanout WHERE id = $1";

/// Drops stored envelopes every node has had time to read.
pub(super) const PRUNE_ENVELOPES: &str =
    "DELETE FROM webchat_fanout WHERE created_at < now() - interval '5 minutes'";

/// Sends a notification.
pub(super) const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Sends a notification for each payload, in order.
pub(super) const NOTIFY_ALL: &str =
    "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n";

/// The numbering's epoch, made once per schema by the migration.
pub(super) const EPOCH: &str = "SELECT value FROM webchat_meta WHERE key = 'epoch'";

/// Stores a batch of sends in one statement. Each row of the arrays is one message, in send
/// order: `$1` user, `$2` message JSON, `$3` message id, `$4` time (Unix ms), `$5` origin event,
/// `$6` origin send index, `$7` index in the send. The users' messages past their newest `$8`
/// are dropped in the same statement, through the primary key (the byte bound is the sweep's,
/// [`TRIM_BYTES`], and every read applies all the bounds). A send whose origin is stored already is not
/// stored again: its stored rows are returned instead (with id, time and message). The others
/// get the next numbers of their user: the `webchat_seqs` row stays locked until the statement
/// commits, so another node's batch for the same user waits, and numbers commit in order.
///
/// A statement that waited on a user's row does not see what the one it waited for stored (its
/// snapshot is older): if that was the same origin, the insert fails on the unique index
/// `webchat_history_origin`, the whole statement with it (no number is used up), and the
/// writer runs it again, which then finds the stored rows. A user without a row (new, or
/// pruned: [`PRUNE_SEQS`]) counts from the `seq_floor`, read under a key-share lock that the
/// prune's update waits for and that waits for the prune: a send never counts from a floor
/// older than the prune that removed its user's row.
/// Returns `ord` (the row's place in the arrays, from 1) and `seq`.
pub(super) const STORE_SENDS: &str = "
    WITH input AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[],
                             $6::int4[], $7::int4[])
            WITH ORDINALITY AS t(user_id, message, msg_id, at_ms, origin_event, origin_index,
                                 origin_part, ord)
    ), known AS (
        SELECT i.ord, h.seq, h.msg_id, h.at_ms, h.message
        FROM input i CROSS JOIN LATERAL (
            SELECT seq, msg_id, at_ms, message FROM webchat_history h
            WHERE h.user_id = i.user_id AND h.origin_event = i.origin_event
              AND h.origin_index = i.origin_index AND h.origin_part = i.origin_part
        ) h
        WHERE i.origin_event IS NOT NULL
    ), fresh AS (
        -- Each part on its own (a retry that sends more parts than the attempt before stores
        -- the new ones), and a part that comes twice in one batch (a retry queued while the
        -- attempt before waited) stored once: the writer gives the second the first's number.
        SELECT i.* FROM input i
        WHERE i.origin_event IS NULL OR (
            NOT EXISTS (
                SELECT 1 FROM webchat_history h
                WHERE h.user_id = i.user_id AND h.origin_event = i.origin_event
                  AND h.origin_index = i.origin_index AND h.origin_part = i.origin_part)
            AND NOT EXISTS (
                SELECT 1 FROM input j
                WHERE j.user_id = i.user_id AND j.origin_event = i.origin_event
                  AND j.origin_index = i.origin_index AND j.origin_part = i.origin_part
                  AND j.ord < i.ord))
    ), counts AS (
        SELECT user_id, count(*) AS n FROM fresh GROUP BY user_id
    ), floor AS (
        SELECT value::int8 AS f FROM webchat_meta WHERE key = 'seq_floor' FOR KEY SHARE
    ), bumped AS (
        INSERT INTO webchat_seqs AS s (user_id, seq)
        SELECT c.user_id, coalesce(fl.f, 0) + c.n
        FROM counts c LEFT JOIN floor fl ON true
        ORDER BY c.user_id
        ON CONFLICT (user_id) DO UPDATE
            SET seq = s.seq + EXCLUDED.seq - coalesce((SELECT f FROM floor), 0)
        RETURNING s.user_id, s.seq
    ), trimmed AS (
        DELETE FROM webchat_history h
        USING bumped b
        WHERE h.user_id = b.user_id AND h.seq <= b.seq - $8
        RETURNING 1
    ), numbered AS (
        SELECT f.*, b.seq - c.n + row_number() OVER (PARTITION BY f.user_id ORDER BY f.ord) AS seq
        FROM fresh f
        JOIN counts c ON c.user_id = f.user_id
        JOIN bumped b ON b.user_id = f.user_id
    ), stored AS (
        INSERT INTO webchat_history (user_id, seq, message, msg_id, at_ms, origin_event,
                                     origin_index, origin_part)
        SELECT user_id, seq, message, msg_id, at_ms, origin_event, origin_index, origin_part
        FROM numbered
        RETURNING 1
    )
    SELECT ord, seq, NULL::text AS msg_id, NULL::int8 AS at_ms, NULL::text AS message
    FROM numbered
    UNION ALL
    SELECT ord, seq, msg_id, at_ms, message FROM known";

/// Takes the `seq_floor` row for a prune: sends that read it wait from now until the prune
/// commits, and the prune waits for those that read it before.
pub(super) const LOCK_SEQ_FLOOR: &str =
    "SELECT value FROM webchat_meta WHERE key = 'seq_floor' FOR UPDATE";

/// Removes the number rows of users `$1` (users whose history rows the retention just dropped)
/// that have no history left and no socket on any node, and raises the `seq_floor` to the
/// highest number removed, in the transaction of [`LOCK_SEQ_FLOOR`]. Returns how many rows went.
pub(super) const PRUNE_SEQS: &str = "
    WITH gone AS (
        DELETE FROM webchat_seqs s
        WHERE s.user_id = ANY($1::text[])
          AND NOT EXISTS (SELECT 1 FROM webchat_history h WHERE h.user_id = s.user_id)
          AND NOT EXISTS (SELECT 1 FROM webchat_presence p
                          WHERE p.user_id = s.user_id AND p.nodes <> '{}'::jsonb)
        RETURNING s.seq
    ), raised AS (
        UPDATE webchat_meta
        SET value = greatest(value::int8, (SELECT coalesce(max(seq), 0) FROM gone))::text
        WHERE key = 'seq_floor'
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM raised)";

/// Of users `$1`, those with no history row and no socket on any node: the candidates of
/// [`PRUNE_SEQS`], found without its lock.
pub(super) const PRUNE_CANDIDATES: &str = "
    SELECT s.user_id FROM webchat_seqs s
    WHERE s.user_id = ANY($1::text[])
      AND NOT EXISTS (SELECT 1 FROM webchat_history h WHERE h.user_id = s.user_id)
      AND NOT EXISTS (SELECT 1 FROM webchat_presence p
                      WHERE p.user_id = s.user_id AND p.nodes <> '{}'::jsonb)";

/// What a join resumes from: the user's latest number (`$1` user; the `seq_floor` when the
/// user has no row: the next send counts from it), and the kept messages after
/// `$2`, the newest at most `$3` of them and `$4` bytes, younger than `$5` seconds, in order
/// (one row with null columns when there are none).
pub(super) const RESUME: &str = "
    SELECT coalesce((SELECT seq FROM webchat_seqs WHERE user_id = $1),
                    (SELECT value::int8 FROM webchat_meta WHERE key = 'seq_floor'), 0),
           k.seq, k.message,
           k.msg_id, k.at_ms
    FROM (SELECT 1) AS one
    LEFT JOIN (
        SELECT seq, message, msg_id, at_ms FROM (
            SELECT seq, message, msg_id, at_ms,
                   row_number() OVER (ORDER BY seq DESC) AS rn,
                   sum(octet_length(message)) OVER (ORDER BY seq DESC) AS bytes
            FROM webchat_history
            WHERE user_id = $1 AND seq > $2
              AND created_at > now() - make_interval(secs => $5::float8)
        ) newest
        WHERE rn <= $3 AND bytes <= $4
    ) k ON true
    ORDER BY k.seq";

/// The kept messages of `$1` numbered above `$2` and below `$3` (a hole a node waits on).
pub(super) const BETWEEN: &str = "
    SELECT seq, message, msg_id, at_ms FROM webchat_history
    WHERE user_id = $1 AND seq > $2 AND seq < $3
    ORDER BY seq";

/// Drops kept messages older than `$1` seconds; the users whose messages went.
pub(super) const TRIM_OLD: &str = "
    WITH old AS (
        DELETE FROM webchat_history
        WHERE created_at < now() - make_interval(secs => $1::float8)
        RETURNING user_id
    )
    SELECT user_id, count(*) FROM old GROUP BY user_id";

/// The kept messages of users `$1` numbered above their `$2` (what a node's sockets missed while
/// its fan-out was down), by user, in order.
pub(super) const AFTER_EACH: &str = "
    SELECT h.user_id, h.seq, h.message, h.msg_id, h.at_ms
    FROM unnest($1::text[], $2::int8[]) AS w(user_id, seq)
    JOIN webchat_history h ON h.user_id = w.user_id AND h.seq > w.seq
    ORDER BY h.user_id, h.seq";

/// Drops the kept messages of users `$1` past their newest `$2` bytes; the users whose
/// messages went (once per message).
pub(super) const TRIM_BYTES: &str = "
    DELETE FROM webchat_history h
    USING (
        SELECT w.user_id, k.seq
        FROM unnest($1::text[]) AS w(user_id) CROSS JOIN LATERAL (
            SELECT seq, sum(octet_length(message)) OVER (ORDER BY seq DESC) AS bytes
            FROM webchat_history
            WHERE user_id = w.user_id
        ) k
        WHERE k.bytes > $2
    ) old
    WHERE h.user_id = old.user_id AND h.seq = old.seq
    RETURNING h.user_id";
