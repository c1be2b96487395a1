//! What the outbox tests with LINE share: the database, a fresh schema, and the count of what
//! the fake LINE delivered.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;

use bot_core::pg::PgPool;
use bot_line::testing::FakeLine;
use http::StatusCode;

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A pool on the test database with `schema` dropped; fails loudly without PostgreSQL.
pub async fn pool_without(schema: &str, max_size: usize) -> PgPool {
    let pool = PgPool::builder(database_url())
        .max_size(max_size)
        .build()
        .unwrap();
    pool.get()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} ({e}); start it (scripts/test.sh does)",
                database_url()
            )
        })
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    pool
}

/// Asserts that the fake accepted exactly one push for each of `messages` recipients.
pub fn assert_each_recipient_once(fake: &FakeLine, messages: usize) {
    let pushes = fake.pushes();
    let delivered: Vec<&str> = pushes
        .iter()
        .filter(|p| p.status == StatusCode::OK)
        .map(|p| p.to.as_str())
        .collect();
    let recipients: HashSet<&str> = delivered.iter().copied().collect();
    assert_eq!(delivered.len(), messages, "each message accepted once");
    assert_eq!(recipients.len(), messages, "every recipient");
}
