//! [`PgStateStore`]: conversation state in PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::types::Type;

use super::error;
use super::pool::PgPool;
use crate::error::{Error, ErrorKind};
use crate::state::{StateKey, StateStore, Versioned};

/// A [`StateStore`] in the `botrt_state` table: one JSON document per conversation, written only
/// if its version is the one the writer read (optimistic concurrency, checked by the `UPDATE`'s
/// `WHERE`, so it holds across processes).
#[derive(Debug, Clone)]
pub struct PgStateStore {
    pool: PgPool,
}

impl PgStateStore {
    /// A store on `pool`'s schema (migrated with [`super::migrate`]).
    pub fn new(pool: &PgPool) -> Self {
        Self { pool: pool.clone() }
    }
}

fn conflict(key: &StateKey, expected: Option<u64>) -> Error {
    Error::new(
        ErrorKind::StateConflict,
        format!(
            "state of {}/{} changed concurrently (expected version {expected:?})",
            key.platform, key.conversation
        ),
    )
}

fn version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl StateStore for PgStateStore {
    async fn load(&self, key: &StateKey) -> Result<Option<Versioned<serde_json::Value>>, Error> {
        let (conn, _) = self
            .pool
            .get_measured(ErrorKind::State, "loading state")
            .await?;
        // Typed and unprepared, as the queue's statements: planned for the table as it is now.
        let row = conn
            .query_typed_opt(
                "SELECT value::text, version FROM botrt_state WHERE platform = $1 AND conversation = $2",
                &[
                    (&key.platform.as_str(), Type::TEXT),
                    (&key.conversation.as_str(), Type::TEXT),
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

    async fn save(
        &self,
        key: &StateKey,
        value: serde_json::Value,
        expected: Option<u64>,
    ) -> Result<u64, Error> {
        let json = value.to_string();
        let (conn, _) = self
            .pool
            .get_measured(ErrorKind::State, "saving state")
            .await?;
        let (sql, params_expected) = match expected {
            // The primary key refuses a second "first" write.
            None => (
                "INSERT INTO botrt_state (platform, conversation, value, version) \
                 VALUES ($1, $2, $3::text::jsonb, 1) ON CONFLICT DO NOTHING RETURNING version",
                None,
            ),
            Some(v) => (
                "UPDATE botrt_state SET value = $3::text::jsonb, version = version + 1, \
                 updated_at = now() \
                 WHERE platform = $1 AND conversation = $2 AND version = $4 RETURNING version",
                Some(version(v)),
            ),
        };
        let stmt = conn
            .prepare_cached(sql)
            .await
            .map_err(|e| error::db(ErrorKind::State, "saving state", e))?;
        let platform = key.platform.as_str();
        let conversation = key.conversation.as_str();
        let row = match &params_expected {
            None => {
                conn.query_opt(&stmt, &[&platform, &conversation, &json])
                    .await
            }
            Some(v) => {
                conn.query_opt(&stmt, &[&platform, &conversation, &json, v])
                    .await
            }
        }
        .map_err(|e| error::db(ErrorKind::State, "saving state", e))?;
        match row {
            Some(row) => Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)),
            None => Err(conflict(key, expected)),
        }
    }

    async fn delete(&self, key: &StateKey, expected: u64) -> Result<bool, Error> {
        let (conn, _) = self
            .pool
            .get_measured(ErrorKind::State, "deleting state")
            .await?;
        let row = conn
            .query_typed_one(
                "WITH d AS (DELETE FROM botrt_state WHERE platform = $1 AND conversation = $2 \
                 AND version = $3 RETURNING 1) \
                 SELECT (SELECT count(*) FROM d), \
                        (SELECT version FROM botrt_state WHERE platform = $1 AND conversation = $2)",
                &[
                    (&key.platform.as_str(), Type::TEXT),
                    (&key.conversation.as_str(), Type::TEXT),
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
            (_, Some(_)) => Err(conflict(key, Some(expected))),
        }
    }
}
