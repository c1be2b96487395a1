//! PostgreSQL for tests: each test gets a schema of its own in the database of `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), so tests run in parallel.
//!
//! These tests never skip: when PostgreSQL cannot be reached they fail, saying so.

use std::future::Future;
use std::time::Duration;

use bot_core::pg::{self, PgPool, PgQueue, PgQueueBuilder};
use tokio::time::Instant;

/// The database the tests use.
pub(crate) fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, migrated schema named after `test`, and a pool on it.
///
/// # Panics
///
/// When PostgreSQL cannot be reached or the migration fails: a test that needs the database
/// must fail without it, never pass.
pub(crate) async fn fresh_pool(test: &str) -> PgPool {
    fresh_pool_with(test, |b| b).await
}

/// As [`fresh_pool`], with the pool builder adjusted by `configure`.
pub(crate) async fn fresh_pool_with(
    test: &str,
    configure: impl FnOnce(pg::PgPoolBuilder) -> pg::PgPoolBuilder,
) -> PgPool {
    let url = database_url();
    let schema = format!("t_{test}");
    let admin = PgPool::builder(&url)
        .max_size(1)
        .create_timeout(Duration::from_secs(5))
        .build()
        .expect("DATABASE_URL parses");
    let conn = admin.get().await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url} ({e}); start it (scripts/test.sh does) or set DATABASE_URL"
        )
    });
    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .expect("drop the test schema");
    let pool = configure(PgPool::builder(&url).schema(&schema))
        .build()
        .expect("pool builds");
    pg::migrate(&pool).await.expect("migration");
    pool
}

/// A queue builder on `pool` with quick timings for tests.
pub(crate) fn queue_builder(pool: &PgPool) -> PgQueueBuilder {
    PgQueue::builder(pool)
        .poll_interval(Duration::from_millis(50))
        .rescue_interval(Duration::from_millis(100))
}

/// Polls `check` until it returns `Some`, failing after `deadline`.
///
/// # Panics
///
/// When `check` has not succeeded in time.
pub(crate) async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
