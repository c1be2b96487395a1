//! `PgQueue`'s pushes on an idle queue against a real PostgreSQL: such a push commits without
//! waiting for the disk, so that its events can be claimed at once, and its caller is answered
//! only once a second transaction behind it (the `botrt_flushes` upsert, whose commit waits for
//! the disk) has committed; a push whose flush fails is answered as failed, and its retry is a
//! duplicate; a push of duplicates only waits for the disk too.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bot_core::limits::Ordering;
use bot_core::pg::{PgConnection, PgPool, PgQueue};
use bot_core::queue::Queue;
use support::pg::{backend_pid, eventually, fresh_pool, queue_builder};
use support::text_event;

/// Locks `botrt_flushes` in an open transaction, so that every flush (and every write of the
/// table) waits. Returns the connection and its server process id.
async fn hold_the_flushes(pool: &PgPool) -> (PgConnection, i32) {
    let conn = pool.get().await.unwrap();
    conn.batch_execute("BEGIN; LOCK TABLE botrt_flushes IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let pid = backend_pid(&conn).await;
    (conn, pid)
}

/// Pushes event `e1` from a task of its own, as a webhook does.
fn spawn_push(
    queue: &Arc<PgQueue>,
) -> tokio::task::JoinHandle<Result<bot_core::queue::PushReport, bot_core::Error>> {
    let queue = queue.clone();
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move { queue.push_batch(vec![text_event("c", "e1")]).await })
}

/// Waits until a statement writing a flush row (a push's, not the upkeep's pruning) waits for
/// the lock `holder` holds.
async fn a_flush_waits_for(pool: &PgPool, holder: i32) {
    let conn = pool.get().await.unwrap();
    eventually(
        "a flush waiting for the held flushes",
        Duration::from_secs(10),
        || async {
            let n: i64 = conn
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE $1::int = ANY(pg_blocking_pids(pid))
                       AND query LIKE '%INSERT INTO botrt_flushes%'",
                    &[&holder],
                )
                .await
                .unwrap()
                .get(0);
            (n > 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_push_is_claimed_before_its_caller_is_answered_once_on_disk() {
    let pool = fresh_pool("early_commit").await;
    let queue = Arc::new(queue_builder(&pool).build().unwrap());
    let (holder, pid) = hold_the_flushes(&pool).await;
    let push = spawn_push(&queue);
    // The push's flush waits for the lock...
    a_flush_waits_for(&pool, pid).await;
    // ... while its event is committed already, and claimed.
    let delivered = tokio::time::timeout(Duration::from_secs(10), queue.pull(1))
        .await
        .expect("the early-committed event is claimed while its push waits for its flush")
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].event.id.as_str(), "e1");
    assert!(
        !push.is_finished(),
        "the push is answered only once its flush has committed"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let report = push.await.unwrap().expect("the push commits");
    assert_eq!((report.accepted, report.duplicates), (1, 0));
    let leases: Vec<_> = delivered.iter().map(|d| d.lease).collect();
    assert_eq!(queue.ack(&leases).await.unwrap().applied, 1);
    let flushes: i64 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM botrt_flushes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(flushes, 1, "the pushing server process's row");
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_flush_fails_is_answered_failed_and_its_retry_is_a_duplicate() {
    let pool = fresh_pool("early_commit_fail").await;
    let queue = queue_builder(&pool).build().unwrap();
    let admin = pool.get().await.unwrap();
    admin
        .batch_execute("ALTER TABLE botrt_flushes RENAME TO botrt_flushes_away")
        .await
        .unwrap();
    let failed = queue.push_batch(vec![text_event("c", "e1")]).await;
    let e = failed.expect_err("a push not known to be on disk is not answered as accepted");
    assert!(e.to_string().contains("botrt_flushes"), "{e}");
    admin
        .batch_execute("ALTER TABLE botrt_flushes_away RENAME TO botrt_flushes")
        .await
        .unwrap();
    // The platform sends it again: the push had gone in, so it is a duplicate now.
    let retry = queue.push_batch(vec![text_event("c", "e1")]).await.unwrap();
    assert_eq!((retry.accepted, retry.duplicates), (0, 1));
    let delivered = tokio::time::timeout(Duration::from_secs(10), queue.pull(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivered.len(), 1, "the event once");
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unordered_push_of_duplicates_only_waits_for_the_disk_too() {
    let pool = fresh_pool("early_commit_dups").await;
    // A debounce of an hour: after the first push (announced, committed early), the pushes are
    // neither announced nor committed early.
    let queue = Arc::new(
        queue_builder(&pool)
            .ordering(Ordering::Unordered)
            .notify_debounce(Duration::from_secs(3600))
            .build()
            .unwrap(),
    );
    let first = queue.push_batch(vec![text_event("c", "e1")]).await.unwrap();
    assert_eq!(first.accepted, 1);
    let (holder, pid) = hold_the_flushes(&pool).await;
    let again = spawn_push(&queue);
    // It inserts nothing, so without its flush row its commit would not wait for the disk,
    // and it could answer "already here" about a push not on disk yet.
    a_flush_waits_for(&pool, pid).await;
    assert!(!again.is_finished());
    holder.batch_execute("COMMIT").await.unwrap();
    let report = again.await.unwrap().unwrap();
    assert_eq!((report.accepted, report.duplicates), (0, 1));
    queue.shutdown().await;
}
