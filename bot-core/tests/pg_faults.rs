//! `PgQueue` under faults of its connections: handlers holding every connection of the pool, and
//! a completion stuck behind a lock.

/// Prints what a fault case counted straight to stderr, past the test harness's capture, so
/// that CI's log shows it for passing tests too.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod support;

use std::time::Duration;

use bot_core::ErrorKind;
use bot_core::queue::Queue;
use support::pg::{fresh_pool_with, queue_builder};
use support::text_event;
use tokio::time::Instant;

/// The handlers' pool exhausted (and its wait long) must not delay the queue: pushes, claims,
/// lease extensions and acknowledgements run on connections of the queue's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_statements_do_not_wait_for_handlers_holding_every_pool_connection() {
    let pool = fresh_pool_with("exhausted", |b| {
        b.max_size(2).wait_timeout(Duration::from_secs(20))
    })
    .await;
    let queue = queue_builder(&pool)
        .lease_duration(Duration::from_secs(3))
        .build()
        .unwrap();
    // Handlers hold every connection of the pool.
    let held = (pool.get().await.unwrap(), pool.get().await.unwrap());
    let started = Instant::now();
    let work = async {
        queue
            .push_batch(vec![text_event("c1", "e1")])
            .await
            .expect("push");
        let delivery = queue.pull(1).await.expect("pull").remove(0);
        let extended = queue
            .extend_lease(&[delivery.lease], Duration::from_secs(3))
            .await
            .expect("extend");
        let acked = queue.ack(&[delivery.lease]).await.expect("ack");
        (extended.applied, acked.applied)
    };
    let done = tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .expect("the queue waited for the handlers' pool");
    report!(
        "exhausted pool: push, claim, extend and ack took {:?}; pool {:?}",
        started.elapsed(),
        pool.stats()
    );
    assert_eq!(done, (1, 1));
    assert_eq!(pool.stats().timeouts, 0);
    drop(held);
    queue.shutdown().await;
}

/// A completion that the database does not answer (here: stuck behind a row lock) fails within
/// the statement time-out, well inside the lease, instead of hanging; retried once the lock is
/// gone, it applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_stuck_behind_a_lock_fails_within_the_statement_timeout() {
    let pool = fresh_pool_with("stuck_ack", |b| b).await;
    let queue = queue_builder(&pool)
        .lease_duration(Duration::from_secs(3))
        .statement_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    queue
        .push_batch(vec![text_event("c1", "e1")])
        .await
        .unwrap();
    let delivery = queue.pull(1).await.unwrap().remove(0);
    let mut blocker = pool.get().await.unwrap();
    let tx = blocker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM botrt_events WHERE id = $1 FOR UPDATE",
        &[&(delivery.lease.id as i64)],
    )
    .await
    .unwrap();
    let started = Instant::now();
    let stuck = tokio::time::timeout(Duration::from_secs(10), queue.ack(&[delivery.lease]))
        .await
        .expect("the acknowledgement hung");
    let took = started.elapsed();
    let e = stuck.expect_err("acknowledged through a lock");
    report!("stuck ack: failed after {took:?}: {e}");
    assert!(
        took < Duration::from_millis(1500),
        "took {took:?}, longer than the lease allows"
    );
    assert!(matches!(e.kind(), ErrorKind::Queue | ErrorKind::Timeout));
    // When the client gave up first (a loaded machine), the server still has the statement:
    // let go of the lock only once the server cancelled it too, or it would apply now.
    let blocker_pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let observer = pool.get().await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let blocked: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                &[&blocker_pid],
            )
            .await
            .unwrap()
            .get(0);
        if blocked == 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the server never cancelled the stuck ack"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.rollback().await.unwrap();
    let done = queue.ack(&[delivery.lease]).await.unwrap();
    assert_eq!((done.applied, done.stale), (1, 0));
    // A statement time-out of the lease or longer is refused.
    let e = queue_builder(&pool)
        .lease_duration(Duration::from_secs(1))
        .statement_timeout(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    queue.shutdown().await;
}

/// A stored event that no longer decodes is dead-lettered by the claim that finds it; when that
/// dead-lettering fails (here: a trigger refuses every dead letter), the claim still hands out
/// the events that decode, instead of dropping them until their lease expires, and the one that
/// does not decode is dead-lettered by a later claim once its lease has expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dead_letter_of_an_undecodable_event_does_not_hold_back_the_events_that_decode() {
    let pool = fresh_pool_with("undecodable", |b| b).await;
    let queue = queue_builder(&pool)
        .lease_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    queue
        .push_batch(vec![text_event("c1", "good"), text_event("c2", "bad")])
        .await
        .unwrap();
    let admin = pool.get().await.unwrap();
    admin
        .batch_execute(
            "UPDATE botrt_events SET payload = '{\"not\": \"an event\"}' WHERE event_id = 'bad';
             CREATE FUNCTION refuse_dead() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'dead letters refused'; END $$;
             CREATE TRIGGER refuse_dead BEFORE INSERT ON botrt_dead_letters
                 FOR EACH ROW EXECUTE FUNCTION refuse_dead();",
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), queue.pull(10))
        .await
        .expect("the claim hung")
        .expect("the claim failed with the dead letter");
    let ids: Vec<&str> = got.iter().map(|d| d.event.id.as_str()).collect();
    assert_eq!(ids, ["good"], "the decoded event is handed out");
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
    let stored: i64 = admin
        .query_one(
            "SELECT count(*) FROM botrt_events WHERE event_id = 'bad'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "the undecodable event is kept, not lost");
    assert_eq!(queue.ack(&[got[0].lease]).await.unwrap().applied, 1);

    admin
        .batch_execute("DROP TRIGGER refuse_dead ON botrt_dead_letters")
        .await
        .unwrap();
    let dead_letters = "SELECT error FROM botrt_dead_letters WHERE event_id = 'bad'";
    let until = Instant::now() + Duration::from_secs(20);
    let error: String = loop {
        // A claim runs at each pull; it finds the row again once its lease has expired.
        let more = tokio::time::timeout(Duration::from_millis(500), queue.pull(10)).await;
        if let Ok(more) = more {
            assert!(more.unwrap().is_empty(), "nothing else decodes");
        }
        if let Some(row) = admin.query_opt(dead_letters, &[]).await.unwrap() {
            break row.get(0);
        }
        assert!(
            Instant::now() < until,
            "the undecodable event was never dead-lettered"
        );
    };
    assert!(error.contains("does not decode"), "{error}");
    let stored: i64 = admin
        .query_one("SELECT count(*) FROM botrt_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    queue.shutdown().await;
}
