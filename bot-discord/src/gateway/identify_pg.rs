//! [`PgIdentifyCoordinator`]: identify turns shared through PostgreSQL (feature `postgres`), so
//! that processes running slices of one bot's shards keep to `max_concurrency` together.
//!
//! One row per (bot, bucket) holds the time of the bucket's last identify. A turn locks the row
//! (`SELECT ... FOR UPDATE`), compares that time with the database clock
//! (`clock_timestamp()`, read after the lock is held, so that every process measures against one
//! clock), and books the slot in the same transaction when the interval has passed; otherwise it
//! lets go and waits for what is left. Two processes can never book one bucket less than the
//! interval apart.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bot_core::pg::PgPool;

use super::identify::IdentifyCoordinator;
use crate::error::{Error, ErrorKind};

/// The table of identify turns, created in the pool's schema by
/// [`PgIdentifyCoordinator::new`].
pub const IDENTIFY_TABLE: &str = "discord_identify";

/// Identify turns shared by every process on one PostgreSQL database (feature `postgres`).
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), bot_discord::Error> {
/// use std::sync::Arc;
/// use bot_core::pg::PgPool;
/// use bot_discord::Discord;
/// use bot_discord::gateway::PgIdentifyCoordinator;
///
/// let pool = PgPool::from_env().expect("DATABASE_URL");
/// let coordinator = PgIdentifyCoordinator::new(pool, "my-bot").await?;
/// let discord = Discord::builder("token")
///     .identify_coordinator(Arc::new(coordinator))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgIdentifyCoordinator {
    pool: PgPool,
    bot: String,
}

impl fmt::Debug for PgIdentifyCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgIdentifyCoordinator")
            .field("schema", &self.pool.schema())
            .field("bot", &self.bot)
            .finish()
    }
}

impl PgIdentifyCoordinator {
    /// A coordinator for the bot named `bot` (any name the processes of one bot share, such as
    /// its application id), creating its table if needed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Gateway`] when the database cannot be reached or the table not created.
    pub async fn new(pool: PgPool, bot: impl Into<String>) -> Result<Self, Error> {
        let conn = pool.get().await.map_err(database)?;
        let created = conn
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {IDENTIFY_TABLE} (
                    bot text NOT NULL,
                    bucket integer NOT NULL,
                    last_identify timestamptz,
                    PRIMARY KEY (bot, bucket)
                )"
            ))
            .await;
        if let Err(e) = created {
            // Two processes creating it at once: one wins, the other sees it exists.
            let raced = e.code().is_some_and(|c| {
                *c == bot_core::pg::tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            });
            if !raced {
                return Err(database(e));
            }
        }
        Ok(Self {
            pool,
            bot: bot.into(),
        })
    }

    /// One try at the turn: `None` once booked, else how long to wait before trying again.
    async fn try_turn(&self, bucket: u32, interval: Duration) -> Result<Option<Duration>, Error> {
        let bucket = i32::try_from(bucket).unwrap_or(i32::MAX);
        let mut conn = self.pool.get().await.map_err(database)?;
        let tx = conn.transaction().await.map_err(database)?;
        tx.execute(
            &format!(
                "INSERT INTO {IDENTIFY_TABLE} (bot, bucket) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            ),
            &[&self.bot, &bucket],
        )
        .await
        .map_err(database)?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT (EXTRACT(EPOCH FROM clock_timestamp() - last_identify) * 1000)::float8
                     FROM {IDENTIFY_TABLE} WHERE bot = $1 AND bucket = $2 FOR UPDATE"
                ),
                &[&self.bot, &bucket],
            )
            .await
            .map_err(database)?;
        let since_ms: Option<f64> = row.get(0);
        let interval_ms = interval.as_secs_f64() * 1000.0;
        if let Some(since) = since_ms.filter(|since| *since < interval_ms) {
            // A clock step back makes `since` negative: wait the interval at most.
            let left = (interval_ms - since.max(0.0)).min(interval_ms);
            tx.rollback().await.map_err(database)?;
            return Ok(Some(Duration::from_secs_f64(left / 1000.0)));
        }
        tx.execute(
            &format!(
                "UPDATE {IDENTIFY_TABLE} SET last_identify = clock_timestamp() \
                 WHERE bot = $1 AND bucket = $2"
            ),
            &[&self.bot, &bucket],
        )
        .await
        .map_err(database)?;
        tx.commit().await.map_err(database)?;
        Ok(None)
    }
}

#[async_trait]
impl IdentifyCoordinator for PgIdentifyCoordinator {
    async fn wait_turn(&self, bucket: u32, interval: Duration) -> Result<(), Error> {
        while let Some(wait) = self.try_turn(bucket, interval).await? {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

fn database(e: impl Into<bot_core::BoxError>) -> Error {
    Error::new(
        ErrorKind::Gateway,
        "discord: the identify coordinator's database failed",
    )
    .with_source(e)
}
