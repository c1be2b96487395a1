//! Fault case: two processes push interleaved events of one conversation and their commits come
//! out of id order. The events must run in the order their pushes committed (the order in which
//! the webhooks were answered), not in the order their rows got ids.
//!
//! The two "processes" are two queues on two pools of their own, as two bot processes would
//! be. The commit order is forced by a trigger the test installs in its schema: the insert of
//! the event `first` waits for an advisory lock the test holds, so its transaction stays open
//! after its row took its id, until the test lets it go. Another trigger, deferred to the
//! commit, records the order in which the pushes committed.

#![allow(clippy::disallowed_methods)] // the two pushes run as tasks of their own

/// Prints what a fault case counted straight to stderr, past the test harness's capture, so
/// that CI's log shows it for passing tests too.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod support;

use std::sync::Arc;
use std::time::Duration;

use bot_core::Event;
use bot_core::pg::{PgPool, PgQueue};
use bot_core::queue::Queue;
use support::pg::{database_url, eventually, fresh_pool, queue_builder};
use support::text_event;

const DEADLINE: Duration = Duration::from_secs(20);

/// The advisory lock the held push waits for (unique to this test).
const HOLD_KEY: i64 = 0x0b07_0de2_0000_0013;
const SCHEMA: &str = "t_order_commit";
const APP_B: &str = "botrt_order_commit_b";

/// The test's hooks: the insert of `first` waits until the test releases [`HOLD_KEY`]; and
/// every push's transaction, as it commits, appends its events to `order_test_commits` (a
/// deferred trigger runs at commit): the commit order the test compares with.
const HOOKS: &str = "
CREATE FUNCTION order_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_id = 'first' THEN
        PERFORM pg_advisory_xact_lock_shared(${key});
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER order_test_hold AFTER INSERT ON botrt_events
FOR EACH ROW EXECUTE FUNCTION order_test_hold();
CREATE TABLE order_test_commits (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    event_id text NOT NULL
);
CREATE FUNCTION order_test_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_test_commits (event_id) VALUES (NEW.event_id);
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER order_test_log AFTER INSERT ON botrt_events
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION order_test_log();";

/// A queue on the test's schema, on a pool of its own whose connections say
/// `application_name`: one "process".
fn process(application_name: &str) -> Arc<PgQueue> {
    let pool = PgPool::builder(database_url())
        .application_name(application_name)
        .schema(SCHEMA)
        .max_size(4)
        .build()
        .expect("pool builds");
    Arc::new(
        queue_builder(&pool)
            .push_timeout(DEADLINE)
            .build()
            .expect("queue builds"),
    )
}

/// Pushes `event` on `queue`.
async fn push(queue: Arc<PgQueue>, event: Event) {
    let report = queue.push_batch(vec![event]).await.expect("push");
    assert_eq!(report.accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_of_one_conversation_from_two_processes_run_in_commit_order() {
    let setup = fresh_pool("order_commit").await;
    let control = setup.get().await.expect("connection");
    control
        .batch_execute(&HOOKS.replace("${key}", &HOLD_KEY.to_string()))
        .await
        .expect("install the test's triggers");
    let (process_a, process_b) = (process("botrt_order_commit_a"), process(APP_B));

    // Process A's push of `first` takes its id, then stays open.
    control
        .execute("SELECT pg_advisory_lock($1)", &[&HOLD_KEY])
        .await
        .unwrap();
    let a = tokio::spawn(push(process_a.clone(), text_event("c", "first")));
    eventually("process A's push to be held open", DEADLINE, || async {
        let row = control
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                 AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
                &[&(HOLD_KEY >> 32), &(HOLD_KEY & 0xffff_ffff)],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0) == 1).then_some(())
    })
    .await;

    // Process B pushes `second` of the same conversation meanwhile. It commits at once (its row
    // has the larger id), or waits for A's commit; either way the order is fixed at commit.
    let b = tokio::spawn(push(process_b.clone(), text_event("c", "second")));
    eventually(
        "process B's push to commit or to wait for A",
        DEADLINE,
        || async {
            if b.is_finished() {
                return Some(());
            }
            let row = control
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE (application_name = $1 OR starts_with(application_name, $1 || ' '))
                     AND wait_event_type = 'Lock'",
                    &[&APP_B],
                )
                .await
                .unwrap();
            (row.get::<_, i64>(0) > 0).then_some(())
        },
    )
    .await;
    control
        .execute("SELECT pg_advisory_unlock($1)", &[&HOLD_KEY])
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, a)
        .await
        .expect("A's push ends")
        .unwrap();
    tokio::time::timeout(DEADLINE, b)
        .await
        .expect("B's push ends")
        .unwrap();
    // Later pushes, alternating between the processes, commit one after the other.
    for (i, queue) in [&process_a, &process_b, &process_a].into_iter().enumerate() {
        push(queue.clone(), text_event("c", &format!("later-{i}"))).await;
    }
    let committed: Vec<String> = control
        .query("SELECT event_id FROM order_test_commits ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(committed.len(), 5, "{committed:?}");

    // Both processes handle the conversation, one event at a time.
    let mut handled = Vec::new();
    let until = tokio::time::Instant::now() + DEADLINE;
    while handled.len() < committed.len() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out handling: {handled:?} of {committed:?}"
        );
        for queue in [&process_b, &process_a] {
            let batch = tokio::time::timeout(Duration::from_millis(200), queue.pull(1))
                .await
                .map(|r| r.expect("pull"))
                .unwrap_or_default();
            if let Some(d) = batch.into_iter().next() {
                handled.push(d.event.id.to_string());
                queue.ack(&[d.lease]).await.unwrap();
                break;
            }
        }
    }
    report!("commit order {committed:?}, handled {handled:?}");
    assert_eq!(
        handled, committed,
        "events run in the order their pushes committed"
    );
    process_a.shutdown().await;
    process_b.shutdown().await;
}
