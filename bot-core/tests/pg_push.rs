//! `PgQueue`'s pushes written together against a real PostgreSQL: pushes that wait while the
//! queue's writers are busy go out as one statement, each still answered with its own count,
//! and one push whose data the server refuses fails alone.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bot_core::pg::{PgConnection, PgPool, PgQueue};
use bot_core::queue::Queue;
use bot_core::{ErrorKind, Event, Platform};
use support::pg::{backend_pid, eventually, fresh_pool, queue_builder};
use support::queue::drain_acking;
use support::text_event;

/// The conversation every push of these tests has an event in.
const HELD: &str = "held";

/// Locks the lane row of `HELD` in an open transaction, as a push of it would, so that the
/// queue's writers stall on their first statements while the other pushes join the line. Returns
/// the connection and its server process id.
async fn hold_the_lane(pool: &PgPool) -> (PgConnection, i32) {
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
    let pid = backend_pid(&conn).await;
    (conn, pid)
}

/// Waits until `writers` statements wait for the lock `holder` holds, directly or behind each
/// other (only this test's: the tests of this file run at once, on one database).
async fn writers_stalled(pool: &PgPool, holder: i32, writers: i64) {
    let conn = pool.get().await.unwrap();
    eventually(
        &format!("{writers} writers waiting for the held lane"),
        Duration::from_secs(10),
        || async {
            let n: i64 = conn
                .query_one(
                    // Waiting for the holder, or for one that waits for it.
                    "WITH RECURSIVE chain(pid) AS (
                     SELECT $1::int
                     UNION
                     SELECT a.pid FROM pg_stat_activity a JOIN chain c
                       ON c.pid = ANY(pg_blocking_pids(a.pid)))
                 SELECT count(*) - 1 FROM chain",
                    &[&holder],
                )
                .await
                .unwrap()
                .get(0);
            (n >= writers).then_some(())
        },
    )
    .await;
}

/// Pushes `batches`, each from a task of its own, while the lane of [`HELD`] is held: the first
/// alone until its writer waits for the lane, then the rest at once, until the other writer
/// waits with some of them; the results in the batches' order.
///
/// The first goes alone so that both writers are busy before the lane is let go: pushed all at
/// once, the first writer to wake may take every push in one group and leave the other with
/// nothing to wait on (the likely cause of one CI run's "timed out waiting for both writers",
/// 2026-12-07; not reproduced in 10 runs on a loaded machine since).
async fn push_while_held(
    pool: &PgPool,
    queue: &Arc<PgQueue>,
    batches: Vec<Vec<Event>>,
) -> Vec<Result<bot_core::queue::PushReport, bot_core::Error>> {
    let (holder, pid) = hold_the_lane(pool).await;
    let push = |batch: Vec<Event>| {
        let queue = queue.clone();
        // Each push waits in a task of its own, as concurrent webhooks do.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move { queue.push_batch(batch).await })
    };
    let mut batches = batches.into_iter();
    let mut tasks: Vec<_> = batches.next().into_iter().map(push).collect();
    writers_stalled(pool, pid, 1).await;
    tasks.extend(batches.map(push));
    writers_stalled(pool, pid, 2).await;
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
    // Ids pushed before: push i redelivers i % 5 of them, so its own count is known whatever
    // the order in which the pushes join the line.
    let before: Vec<Event> = (0..64 * 4)
        .map(|n| text_event(&format!("c{}", n % 7), &format!("old{n}")))
        .collect();
    let report = queue.push_batch(before).await.unwrap();
    assert_eq!(report.accepted, 256);
    let batches: Vec<Vec<Event>> = (0..64)
        .map(|i| {
            let redelivered = i % 5;
            let mut batch: Vec<Event> = (0..redelivered)
                .map(|k| {
                    let n = i * 4 + k;
                    text_event(&format!("c{}", n % 7), &format!("old{n}"))
                })
                .collect();
            batch.extend(
                (redelivered..9).map(|k| text_event(&format!("c{k}"), &format!("new{i}-{k}"))),
            );
            // And one in the held conversation.
            batch.push(text_event(HELD, &format!("h{i}")));
            batch
        })
        .collect();
    let pushed = queue.counters().push_statements;
    let results = push_while_held(&pool, &queue, batches).await;
    let mut accepted = 0;
    for (i, r) in results.iter().enumerate() {
        let report = r.as_ref().expect("every push commits");
        let redelivered = i % 5;
        assert_eq!(
            (report.accepted, report.duplicates),
            (10 - redelivered, redelivered),
            "push {i}"
        );
        accepted += report.accepted;
    }
    let statements = queue.counters().push_statements - pushed;
    assert!(
        statements <= 16,
        "64 pushes waiting together took {statements} statements"
    );
    let drained = drain_acking(queue.as_ref(), 256 + accepted).await;
    let mut ids: Vec<String> = drained.iter().map(|d| d.event.id.to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 256 + accepted, "each accepted event once");
    assert_eq!(queue.counters().pushed, (256 + accepted) as u64);
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
