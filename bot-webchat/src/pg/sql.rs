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
