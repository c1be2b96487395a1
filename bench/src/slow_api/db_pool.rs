//! The `db-pool` scenario: one PostgreSQL query per event through a small pool.

use std::time::Duration;

use bot_core::pg::PgPool;

use super::DEFAULT_DATABASE_URL;
use super::args::{DbPoolArgs, Query};
use super::outcome::Database;
use super::run::run;
use crate::prom;
use crate::record::{Row, Verdict};
use crate::scenario::thousands;

/// Checks that PostgreSQL answers and empties the table of the `db` handlers; for `select`,
/// fills it with one row per conversation.
pub(super) async fn prepare_database(
    url: &str,
    query: Query,
    conversations: u64,
) -> Result<PgPool, String> {
    let pool = PgPool::builder(url)
        .max_size(1)
        .create_timeout(Duration::from_secs(5))
        .wait_timeout(Duration::from_secs(5))
        .application_name("botload")
        .build()
        .map_err(|e| format!("db-pool: {e}"))?;
    let conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            crate::scenario::ensure_postgres(url, &e.to_string())?;
            pool.get().await.map_err(|e| {
                format!("db-pool: PostgreSQL at {url} does not answer after starting it: {e}")
            })?
        }
    };
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS botload_counters \
           (conversation text PRIMARY KEY, events bigint NOT NULL); \
         TRUNCATE botload_counters",
    )
    .await
    .map_err(|e| format!("db-pool: cannot set up the botload_counters table: {e}"))?;
    if query == Query::Select {
        // The conversation ids of the LINE users of `payload`.
        conn.execute(
            "INSERT INTO botload_counters \
             SELECT 'U' || lpad(to_hex(n), 32, '0'), 0 \
             FROM generate_series(0::bigint, $1::bigint - 1) n",
            &[&i64::try_from(conversations).unwrap_or(i64::MAX)],
        )
        .await
        .map_err(|e| format!("db-pool: cannot fill the botload_counters table: {e}"))?;
        conn.batch_execute("ANALYZE botload_counters")
            .await
            .map_err(|e| format!("db-pool: {e}"))?;
    }
    drop(conn);
    Ok(pool)
}

/// `db-pool`: the same load, each handler also upserting a per-conversation counter through
/// `cx.db()` with a pool of a few connections; no time-outs allowed, pool waits reported.
pub(crate) async fn db_pool(args: &DbPoolArgs) -> Result<Row, String> {
    let url = args
        .database_url
        .clone()
        .or_else(|| std::env::var(bot_core::pg::DATABASE_URL_ENV).ok())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let pool = prepare_database(&url, args.query, args.load.conversations).await?;
    let database = Database {
        url,
        pool_size: args.pool_size,
        query: args.query,
    };
    let outcome = run(&args.load, Some(&database)).await?;
    outcome.print(&format!(
        "db-pool (scenario-bot: one {} through cx.db(), then cx.reply; memory queue)",
        args.query.as_str()
    ));
    let conn = pool.get().await.map_err(|e| format!("db-pool: {e}"))?;
    let row = conn
        .query_one(
            "SELECT coalesce(sum(events), 0)::bigint, count(*) FROM botload_counters",
            &[],
        )
        .await
        .map_err(|e| format!("db-pool: cannot read the counters: {e}"))?;
    let (counted, rows): (i64, i64) = (row.get(0), row.get(1));
    let wait = prom::Histogram::parse(&outcome.metrics, "bot_db_pool_wait_seconds");
    let at = |q: f64| {
        wait.as_ref()
            .and_then(|h| h.quantile(q))
            .map_or(f64::NAN, |s| s * 1000.0)
    };
    let pool_timeouts = prom::sum(&outcome.metrics, "db_client_connection_timeouts_total", &[]);
    let (errors, timeouts, panics) = (
        outcome.processed("error"),
        outcome.processed("timeout"),
        outcome.processed("panic"),
    );
    println!(
        "pool of {} ({} per event): {} waits, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; \
         {} pool time-outs; table: {} upserts over {} rows for {} events accepted",
        args.pool_size,
        args.query.as_str(),
        wait.as_ref().map_or(0.0, prom::Histogram::count),
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        pool_timeouts,
        counted,
        rows,
        outcome.events_accepted(),
    );
    let missing = outcome.events_accepted().saturating_sub(outcome.replies);
    let met = pool_timeouts == 0.0
        && errors == 0.0
        && timeouts == 0.0
        && panics == 0.0
        && missing == 0
        && (args.query == Query::Select
            || u64::try_from(counted).unwrap_or(0) >= outcome.events_accepted());
    Ok(Row {
        name: format!(
            "db-pool ({}, pool {}, API {:?}-{:?}, max_in_flight {})",
            args.query.as_str(),
            args.pool_size,
            args.load.api_latency_min,
            args.load.api_latency_max,
            thousands(args.load.max_in_flight as f64)
        ),
        result: format!(
            "{} events/s steady; peak {} in flight; pool wait p50 {:.1} ms, p99 {:.1} ms; \
             {} pool time-outs, {} handler errors, {} handler time-outs; {} of {} events queried \
             and answered; {} of {} webhooks 503; bot {:.0} % CPU, PostgreSQL {:.0} %",
            thousands(outcome.steady_events_per_second),
            thousands(outcome.peak_in_flight as f64),
            at(0.5),
            at(0.99),
            pool_timeouts,
            errors,
            timeouts,
            thousands(outcome.replies as f64),
            thousands(outcome.events_accepted() as f64),
            outcome.refused,
            args.load.requests(),
            100.0 * outcome.bot_cpu / outcome.seconds,
            100.0 * outcome.postgres_cpu / outcome.seconds,
        ),
        goal: "no time-out or handler error; pool waits reported".to_owned(),
        verdict: if met { Verdict::Met } else { Verdict::Missed },
    })
}
