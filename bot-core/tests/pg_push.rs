//! `PgQueue`'s pushes written together against a real PostgreSQL: pushes that wait while the
//! queue's writers are busy go out as one statement, each still answered with its own count,
//! and one push whose data the server refuses fails alone.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bot_core::pg::{PgConnection, PgPool, PgQueue};
use bot_core::queue::Queue;
use bot_core::{ErrorKind, Event, Platform};
use support::pg::{eventually, fresh_pool, queue_builder};
use support::queue::drain_acking;
use support::text_event;

/// The conversation every push of these tests has an event in.
const HELD: &str = "held";

/// Locks the lane row of `HELD` in an open transaction, as a push of it would, so that the
/// queue's writers stall on their first statements while the other pushes join the line.
async fn hold_the_lane(pool: &PgPool) -> PgConnection {
    let conn = pool.get().await.unwrap();
    conn.batch_execute("BEGIN").await.unwrap();
    conn.execute(
        "INSERT INTO botrt_lanes AS l (lane)
         SELECT hashtextextended($1 || chr(31) || $2, 0)
         ON CONFLICT (lane) DO UPDATE SET pushed_at = excluded.pushed_at",
        &[&Platform::TEST.as_str(), &HELD],
    )
    .await
    .unwrap();
    conn
}

/// Waits until both writers' statements wait for the held lane.
async fn writers_stalled(pool: &PgPool) {
    let conn = pool.get().await.unwrap();
    eventually(
        "both writers waiting for the held lane",
        Duration::from_secs(10),
        || async {
            let n: i64 = conn
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO botrt_lanes%'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (n >= 2).then_some(())
        },
    )
    .await;
}

/// Pushes `batches` at once, each from a task of its own, while the lane of [`HELD`] is held;
/// the results in the batches' order.
async fn push_while_held(
    pool: &PgPool,
    queue: &Arc<PgQueue>,
    batches: Vec<Vec<Event>>,
) -> Vec<Result<bot_core::queue::PushReport, bot_core::Error>> {
    let holder = hold_the_lane(pool).await;
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let queue = queue.clone();
            // Each push waits in a task of its own, as concurrent webhooks do.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(async move { queue.push_batch(batch).await })
        })
        .collect();
    writers_stalled(pool).await;
    holder.batch_execute("COMMIT").await.unwrap();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_that_wait_are_written_together_and_each_counts_its_own() {
    let pool = fresh_pool("push_group").await;
    let queue = Arc::new(queue_builder(&pool).build().unwrap());
    // 64 pushes of 10 events; each shares 5 ids with the next (redeliveries racing each other)
    // and has one event in the held conversation.
    let batches: Vec<Vec<Event>> = (0..64)
        .map(|i| {
            let mut batch: Vec<Event> = (i * 5..i * 5 + 9)
                .map(|n| text_event(&format!("c{}", n % 7), &format!("e{n}")))
                .collect();
            batch.push(text_event(HELD, &format!("h{i}")));
            batch
        })
        .collect();
    let results = push_while_held(&pool, &queue, batches).await;
    let (mut accepted, mut duplicates) = (0, 0);
    for r in &results {
        let report = r.as_ref().expect("every push commits");
        assert_eq!(report.accepted + report.duplicates, 10);
        accepted += report.accepted;
        duplicates += report.duplicates;
    }
    // Ids e0..e323 once each, and 64 of the held conversation.
    assert_eq!(accepted, 63 * 5 + 9 + 64);
    assert_eq!(duplicates, 640 - accepted);
    let statements = queue.counters().push_statements;
    assert!(
        statements <= 16,
        "64 pushes waiting together took {statements} statements"
    );
    let drained = drain_acking(queue.as_ref(), accepted).await;
    let mut ids: Vec<String> = drained.iter().map(|d| d.event.id.to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), accepted, "each accepted event once");
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_the_server_refuses_fails_alone_and_the_others_of_its_group_commit() {
    let pool = fresh_pool("push_group_bad").await;
    let queue = Arc::new(queue_builder(&pool).build().unwrap());
    let batches: Vec<Vec<Event>> = (0..20)
        .map(|i| {
            // A NUL byte: PostgreSQL's text refuses it, so the statement carrying it fails.
            let conversation = if i == 7 {
                "bad\0conversation".to_owned()
            } else {
                format!("c{i}")
            };
            vec![
                text_event(&conversation, &format!("e{i}")),
                text_event(HELD, &format!("h{i}")),
            ]
        })
        .collect();
    let results = push_while_held(&pool, &queue, batches).await;
    for (i, r) in results.iter().enumerate() {
        if i == 7 {
            let e = r.as_ref().expect_err("the refused push fails");
            assert_eq!(e.kind(), ErrorKind::Queue, "{e}");
        } else {
            assert_eq!(
                r.as_ref().expect("the others commit").accepted,
                2,
                "push {i}"
            );
        }
    }
    let drained = drain_acking(queue.as_ref(), 38).await;
    assert_eq!(drained.len(), 38);
    assert!(drained.iter().all(|d| d.event.id.as_str() != "e7"));
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.ready + stats.leased, 0);
    queue.shutdown().await;
}
