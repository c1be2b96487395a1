//! [`PgRateStore`]: the shared state of rate limits in PostgreSQL (migration 5).

use std::time::Duration;

use super::store::{RateStore, Reservation, Reserved, store_error};
use crate::error::{Error, ErrorKind};
use crate::pg::PgPool;

/// Connections of the store's own pool: reservations are one short statement each, made by
/// one caller per limit at a time.
const CONNECTIONS: usize = 4;
/// The server cancels a reservation statement after this; the limiter gives up sooner
/// ([`SharedLimitsBuilder::store_timeout`](super::SharedLimitsBuilder::store_timeout)).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Rate limits in PostgreSQL: the tables `botrt_rate_limits` (one TAT per key) and
/// `botrt_rate_limit_members` (the processes seen per key), UNLOGGED, created by migration 5
/// ([`pg::migrate`](crate::pg::migrate)), and one call of the function `botrt_rate_reserve` per
/// reservation. The store's clock is the server's (`clock_timestamp()`).
///
/// Reservations run on a small pool of their own (4 connections, beside the handlers' pool,
/// as the queue's statements do), so that handlers holding every connection do not stop the
/// limits.
#[derive(Debug)]
pub struct PgRateStore {
    pool: PgPool,
}

impl PgRateStore {
    /// A store on `pool`'s server and schema. Connects on the first reservation.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the store's pool cannot be set up.
    pub fn new(pool: &PgPool) -> Result<Self, Error> {
        Ok(Self {
            pool: pool.derive_for_queue(CONNECTIONS, STATEMENT_TIMEOUT, "rate limits")?,
        })
    }
}

#[async_trait::async_trait]
impl RateStore for PgRateStore {
    async fn reserve(&self, r: &Reservation<'_>) -> Result<Reserved, Error> {
        let (conn, _) = self
            .pool
            .get_measured(ErrorKind::Other, "reserving rate limit tokens")
            .await?;
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let tokens = i32::try_from(r.tokens).unwrap_or(i32::MAX);
        let statement = conn
            .prepare_cached(
                "SELECT granted, start_us, now_us, tat_us, live FROM botrt_rate_reserve($1, $2, $3, $4, $5, $6)",
            )
            .await
            .map_err(|e| store_error("postgres", "preparing the reservation", e))?;
        let row = conn
            .query_one(
                &statement,
                &[
                    &r.key,
                    &r.member,
                    &tokens,
                    &as_i64(r.interval_micros),
                    &as_i64(r.horizon_micros),
                    &as_i64(r.live_micros),
                ],
            )
            .await
            .map_err(|e| store_error("postgres", "reserving", e))?;
        let granted: i32 = row.get(0);
        let live: i32 = row.get(4);
        Ok(Reserved {
            granted: u32::try_from(granted).unwrap_or(0),
            start_micros: row.get(1),
            now_micros: row.get(2),
            tat_micros: row.get(3),
            live: u32::try_from(live).unwrap_or(1),
        })
    }

    fn name(&self) -> &'static str {
        "postgres"
    }
}
