//! Identify coordination across processes on real PostgreSQL: two coordinators (two pools, as
//! two processes would have) booking turns of one bucket are spaced by at least the interval.
//!
//! Needs PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`):
//! without it the test fails, never skips.
#![allow(clippy::disallowed_methods)] // the two "processes" run in spawned tasks

/// Prints what a fault case counted straight to stderr, past the test harness's capture, so
/// that CI's log shows it for passing tests too.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::pg::PgPool;
use bot_discord::gateway::{IdentifyQueue, PgIdentifyCoordinator};
use tokio::time::Instant;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A pool on a fresh schema `schema`.
async fn fresh_pool(schema: &str) -> PgPool {
    let url = database_url();
    let admin = PgPool::builder(&url)
        .max_size(1)
        .create_timeout(Duration::from_secs(5))
        .build()
        .expect("DATABASE_URL parses");
    let conn = admin.get().await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {url} ({e}); start it or set DATABASE_URL")
    });
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .await
    .expect("a fresh schema");
    PgPool::builder(&url)
        .schema(schema)
        .max_size(2)
        .build()
        .expect("pool builds")
}

#[tokio::test]
async fn two_processes_identify_one_bucket_at_least_the_interval_apart() {
    let schema = "t_discord_identify_pg";
    let interval = Duration::from_millis(300);
    let process = |pool: PgPool| async move {
        let coordinator = PgIdentifyCoordinator::new(pool, "bot-1").await.unwrap();
        // What the shard manager of one process builds: one bucket (max_concurrency 1).
        if std::env::var("IDENTIFY_PG_LOCAL_ONLY").is_ok() {
            IdentifyQueue::with_interval(1, interval)
        } else {
            IdentifyQueue::with_coordinator(1, interval, Arc::new(coordinator))
        }
    };
    let first = process(fresh_pool(schema).await).await;
    let second = process(
        PgPool::builder(database_url())
            .schema(schema)
            .max_size(2)
            .build()
            .unwrap(),
    )
    .await;

    // Each process runs three shards of the bucket (shards 0, 2, 4 here; 1, 3, 5 there).
    let turns = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (queue, shards) in [(first, [0, 2, 4]), (second, [1, 3, 5])] {
        for shard in shards {
            let (queue, turns) = (queue.clone(), turns.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(30), queue.wait_turn(shard))
                    .await
                    .expect("a turn within 30 s")
                    .unwrap();
                turns.lock().unwrap().push((start.elapsed(), shard));
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut turns = turns.lock().unwrap().clone();
    turns.sort();
    report!("identify turns across two processes: {turns:?}");
    assert_eq!(turns.len(), 6);
    // Stamped after the booking's commit: a few milliseconds of slack for the round trip.
    let slack = Duration::from_millis(40);
    for pair in turns.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap + slack >= interval,
            "shards {} and {} identified {gap:?} apart",
            pair[0].1,
            pair[1].1
        );
    }
    assert!(turns[5].0 - turns[0].0 + slack >= interval * 5);
}
