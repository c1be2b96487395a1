//! [`PgStateStore`]: state in PostgreSQL, by scope, with time-to-live.

use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::types::{ToSql, Type};

use super::error;
use super::pool::PgPool;
use crate::error::{Error, ErrorKind};
use crate::state::{StateKey, StateStore, Versioned, conflict};

/// The key's columns, in the order every statement names them ($1 to $4).
const KEY: &str = "platform = $1 AND scope = $2 AND conversation = $3 AND subject = $4";
/// A row not past its time-to-live.
const LIVE: &str = "(expires_at IS NULL OR expires_at > now())";

/// A [`StateStore`] in the `botrt_state` table: one JSON document per [`StateKey`], written
/// only if its version is the one the writer read (optimistic concurrency, checked by the
/// statement's `WHERE`, so it holds across processes).
///
/// A document past its time-to-live reads as absent and is replaced by the next first write;
/// its row stays until then or until [`PgStateStore::prune_expired`] deletes it. A document
/// written again after it expired keeps counting its versions, so a writer holding a version
/// from before cannot overwrite it.
#[derive(Debug, Clone)]
pub struct PgStateStore {
    pool: PgPool,
}

impl PgStateStore {
    /// A store on `pool`'s schema (migrated with [`super::migrate`]).
    pub fn new(pool: &PgPool) -> Self {
        Self { pool: pool.clone() }
    }

    /// Deletes every document past its time-to-live; returns how many. Run it now and then
    /// (an index on the expiry keeps it cheap); reads ignore such documents anyway.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::State`] when the database fails.
    pub async fn prune_expired(&self) -> Result<u64, Error> {
        let (conn, _) = self
            .pool
            .get_measured(ErrorKind::State, "pruning state")
            .await?;
        conn.execute(
            "DELETE FROM botrt_state WHERE expires_at IS NOT NULL AND expires_at <= now()",
            &[],
        )
        .await
        .map_err(|e| error::db(ErrorKind::State, "pruning state", e))
    }
}

fn version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A time-to-live in milliseconds, as the statements take it.
fn ttl_ms(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|ttl| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

#[async_trait]
impl StateStore for PgStateStore {
    async fn load(&self, key: &StateKey) -> Result<Option<Versioned<serde_json::Value>>, Error> {
        let (conn, _) = self
            .pool
            .get_measured(ErrorKind::State, "loading state")
            .await?;
        let (platform, scope, conversation, subject) = key.columns();
        // Typed and unprepared, as the queue's statements: planned for the table as it is now.
        let row = conn
            .query_typed_opt(
                &format!("SELECT value::text, version FROM botrt_state WHERE {KEY} AND {LIVE}"),
                &[
                    (&platform, Type::TEXT),
                    (&scope, Type::TEXT),
                    (&conversation, Type::TEXT),
                    (&subject, Type::TEXT),
                ],
            )
            .await
            .map_err(|e| error::db(ErrorKind::State, "loading state", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let value = serde_json::from_str(row.get(0))
            .map_err(|e| Error::new(ErrorKind::State, "stored state is not json").with_source(e))?;
        Ok(Some(Versioned {
            value,
            version: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        }))
    }

    async fn save_expiring(
        &self,
        key: &StateKey,
        value: serde_json::Value,
        expected: Option<u64>,
        ttl: Option<Duration>,
    ) -> Result<u64, Error> {
        let json = value.to_string();
        let (conn, _) = self
            .pool
            .get_measured(ErrorKind::State, "saving state")
            .await?;
        let expires = "CASE WHEN $6::int8 IS NULL THEN NULL \
                       ELSE now() + $6::int8 * interval '1 millisecond' END";
        let sql = match expected {
            // The primary key refuses a second "first" write, unless the row there expired.
            None => format!(
                "INSERT INTO botrt_state AS s (platform, scope, conversation, subject, value, version, expires_at) \
                 VALUES ($1, $2, $3, $4, $5::text::jsonb, 1, {expires}) \
                 ON CONFLICT (platform, scope, conversation, subject) DO UPDATE \
                 SET value = EXCLUDED.value, version = s.version + 1, updated_at = now(), \
                     expires_at = EXCLUDED.expires_at \
                 WHERE s.expires_at IS NOT NULL AND s.expires_at <= now() \
                 RETURNING version"
            ),
            Some(_) => format!(
                "UPDATE botrt_state SET value = $5::text::jsonb, version = version + 1, \
                 updated_at = now(), expires_at = {expires} \
                 WHERE {KEY} AND version = $7 AND {LIVE} RETURNING version"
            ),
        };
        let (platform, scope, conversation, subject) = key.columns();
        let ttl = ttl_ms(ttl);
        let expected_version = expected.map(version);
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
            (&platform, Type::TEXT),
            (&scope, Type::TEXT),
            (&conversation, Type::TEXT),
            (&subject, Type::TEXT),
            (&json, Type::TEXT),
            (&ttl, Type::INT8),
        ];
        if let Some(v) = &expected_version {
            params.push((v, Type::INT8));
        }
        let row = conn
            .query_typed_opt(&sql, &params)
            .await
            .map_err(|e| error::db(ErrorKind::State, "saving state", e))?;
        match row {
            Some(row) => Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)),
            None => Err(conflict(key, expected, None)),
        }
    }

    async fn delete(&self, key: &StateKey, expected: u64) -> Result<bool, Error> {
        let (conn, _) = self
            .pool
            .get_measured(ErrorKind::State, "deleting state")
            .await?;
        let (platform, scope, conversation, subject) = key.columns();
        let row = conn
            .query_typed_one(
                &format!(
                    "WITH d AS (DELETE FROM botrt_state WHERE {KEY} AND version = $5 AND {LIVE} \
                     RETURNING 1) \
                     SELECT (SELECT count(*) FROM d), \
                            (SELECT version FROM botrt_state WHERE {KEY} AND {LIVE})"
                ),
                &[
                    (&platform, Type::TEXT),
                    (&scope, Type::TEXT),
                    (&conversation, Type::TEXT),
                    (&subject, Type::TEXT),
                    (&version(expected), Type::INT8),
                ],
            )
            .await
            .map_err(|e| error::db(ErrorKind::State, "deleting state", e))?;
        let deleted: i64 = row.get(0);
        let current: Option<i64> = row.get(1);
        match (deleted, current) {
            (1.., _) => Ok(true),
            (_, None) => Ok(false),
            (_, Some(current)) => Err(conflict(key, Some(expected), u64::try_from(current).ok())),
        }
    }
}
