//! The fault suite on real processes: `queue-worker` processes against real PostgreSQL over real
//! sockets, each case bounded in time and printing what it counted.
//!
//! - PostgreSQL restarted (fast shutdown, every connection cut) under load on two processes: a
//!   private cluster of this test, never the shared server; and crashed (immediate shutdown)
//!   while the webhooks come 10 ms apart, each push committing early with its flush behind it.
//! - Long and short handlers mixed at full throughput with a short lease: each event runs once,
//!   each conversation stays sequential.
//! - Acknowledgements failing for a while: no handled event runs again or is dead-lettered.
//!
//! (`multi_process.rs` has the `kill -9` case.) Needs PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and, for the restart, its server binaries;
//! fails when they are missing.

/// Prints what a fault case counted straight to stderr, past the test harness's capture, so
/// that CI's log shows it for passing tests too.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod support;

#[path = "../../../bot-core/tests/support/cluster.rs"]
mod cluster;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bot_core::Event;
use cluster::PgCluster;
use support::{
    BROKEN_SEQUENCES, DEMO, batch, count, fresh_schema, fresh_schema_at, http, spawn_worker,
    start_worker, wait_count, wait_ready,
};

/// Waits until `sql` reads 0.
async fn wait_zero(pool: &bot_core::pg::PgPool, sql: &str, deadline: Duration) {
    let until = Instant::now() + deadline;
    loop {
        let n = count(pool, sql).await;
        if n == 0 {
            return;
        }
        assert!(Instant::now() < until, "timed out: {sql} = {n}, want 0");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts `body` like a platform would: to `first`, then the other worker, until one answers 200
/// or `deadline` passes. Returns whether it was acknowledged.
fn deliver(first: SocketAddr, second: SocketAddr, body: &[u8], deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    let mut to = first;
    loop {
        if http(to, "POST", "/events", body) == Some(200) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        to = if to == first { second } else { first };
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing_acknowledged_and_workers_recover() {
    restarted_under_load("restart", false, Duration::ZERO).await;
}

/// The server crashes (an immediate shutdown: no checkpoint, nothing flushed on the way out)
/// while the webhooks come 10 ms apart, so that the pushes find their queue quiet and commit
/// early, with their flush transaction behind them: a push lost in the crash was not answered
/// 200 (its flush failed), and the platform's retry gets it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_between_quiet_pushes_loses_nothing_acknowledged() {
    restarted_under_load("crash", true, Duration::from_millis(10)).await;
}

/// Two worker processes on a private cluster, a platform posting batches of 20 events (`pause`
/// between two), the server restarted (`crash`: in immediate mode) once 1,000 events were
/// answered 200; then every event answered 200 must be handled.
async fn restarted_under_load(name: &str, crash: bool, pause: Duration) {
    const BATCH: usize = 20;
    let cluster_name = name.to_owned();
    // A crash takes back what the server had not written out: there, commits must wait for it,
    // as on a production server (a fast restart writes everything out first).
    let cluster = tokio::task::spawn_blocking(move || {
        if crash {
            PgCluster::start_committing(&cluster_name)
        } else {
            PgCluster::start(&cluster_name)
        }
    })
    .await
    .unwrap();
    let url = cluster.url();
    let schema = format!("qw_{name}");
    let pool = fresh_schema_at(&url, &schema).await;
    let env = [
        ("WORK_MS", "20"),
        ("MAX_IN_FLIGHT", "32"),
        ("LEASE_MS", "3000"),
        ("POOL_SIZE", "4"),
    ];
    let mut a = spawn_worker(&url, &schema, &env, Stdio::null());
    let mut b = spawn_worker(&url, &schema, &env, Stdio::null());
    wait_ready(&mut a);
    wait_ready(&mut b);
    let (a_addr, b_addr) = (a.addr, b.addr);

    // A platform posting batches without pause, redelivering what got no 200.
    let acknowledged = Arc::new(Mutex::new(HashSet::<String>::new()));
    let refused = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (acknowledged, refused, stop) = (acknowledged.clone(), refused.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(AtomicOrdering::Acquire) {
                let (ids, body) = batch(n * BATCH..(n + 1) * BATCH, 200);
                let (first, second) = if n.is_multiple_of(2) {
                    (a_addr, b_addr)
                } else {
                    (b_addr, a_addr)
                };
                let until = Instant::now() + Duration::from_secs(45);
                let mut to = first;
                loop {
                    if http(to, "POST", "/events", &body) == Some(200) {
                        acknowledged.lock().unwrap().extend(ids);
                        if !pause.is_zero() {
                            std::thread::sleep(pause);
                        }
                        break;
                    }
                    *refused.lock().unwrap() += 1;
                    assert!(Instant::now() < until, "batch {n} never accepted");
                    to = if to == first { second } else { first };
                    std::thread::sleep(Duration::from_millis(50));
                }
                n += 1;
            }
        })
    };
    let acked = || acknowledged.lock().unwrap().len();
    let until = Instant::now() + Duration::from_secs(30);
    // Looked at every millisecond: the restart comes right after a batch was answered 200, when
    // a commit that had not waited to be written out would still be in the server's memory.
    while acked() < 1000 {
        assert!(Instant::now() < until, "load did not start");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let before = acked();
    let restarted_at = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        if crash {
            cluster.restart_immediate();
        } else {
            cluster.restart_fast();
        }
        cluster
    })
    .await
    .unwrap();
    let server_back = restarted_at.elapsed();
    // Each process takes webhooks again within 30 s of the restart.
    let mut back = Vec::new();
    for worker in [&mut a, &mut b] {
        let probe = Event::text(DEMO, "probe", "hi").with_id(format!("probe-{}", worker.addr));
        let body = serde_json::to_vec(&[probe]).unwrap();
        let until = restarted_at + Duration::from_secs(30);
        while http(worker.addr, "POST", "/events", &body) != Some(200) {
            worker.assert_running("after the restart");
            assert!(
                Instant::now() < until,
                "a worker did not take webhooks again within 30 s of the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        back.push(restarted_at.elapsed());
    }
    // More load after the restart, then stop posting.
    let after = acked();
    let until = Instant::now() + Duration::from_secs(30);
    while acked() < after + 500 {
        assert!(Instant::now() < until, "load did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, AtomicOrdering::Release);
    poster.join().expect("the poster");
    let acknowledged: Vec<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    // Every event answered 200 is handled.
    let conn = pool.get().await.unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let handled = loop {
        let found: i64 = conn
            .query_one(
                "SELECT count(*) FROM queue_worker_effects WHERE event_id = ANY($1)",
                &[&acknowledged],
            )
            .await
            .unwrap()
            .get(0);
        if found as usize == acknowledged.len() {
            break found;
        }
        if Instant::now() >= until {
            let rows = conn
                .query(
                    "SELECT CASE WHEN EXISTS (SELECT 1 FROM botrt_leases l WHERE l.id = e.id) \
                     THEN 'leased' ELSE 'waiting' END || ' attempts ' || e.attempts || ' error ' \
                     || coalesce(e.last_error, '-') FROM botrt_events e WHERE e.event_id = ANY($1) \
                     AND NOT EXISTS (SELECT 1 FROM queue_worker_effects f WHERE f.event_id = e.event_id) \
                     LIMIT 5",
                    &[&acknowledged],
                )
                .await
                .unwrap();
            let mut waiting: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let rows = conn
                .query(
                    "SELECT 'dead after ' || d.attempts || ': ' || d.error FROM botrt_dead_letters d \
                     WHERE d.event_id = ANY($1) LIMIT 5",
                    &[&acknowledged],
                )
                .await
                .unwrap();
            waiting.extend(rows.iter().map(|r| r.get::<_, String>(0)));
            let runs: i64 = conn
                .query_one(
                    "SELECT count(*) FROM queue_worker_runs WHERE event_id = ANY($1) \
                     AND event_id NOT IN (SELECT event_id FROM queue_worker_effects)",
                    &[&acknowledged],
                )
                .await
                .unwrap()
                .get(0);
            waiting.push(format!("runs without effects: {runs}"));
            panic!(
                "{found} of {} acknowledged events handled; some of the others in the queue: {waiting:?}",
                acknowledged.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    a.assert_running("at the end");
    b.assert_running("at the end");
    let runs = count(&pool, "SELECT count(*) FROM queue_worker_runs").await;
    let dead = count(&pool, "SELECT count(*) FROM botrt_dead_letters").await;
    report!(
        "{name}: acknowledged {} ({before} before the restart), handled {handled}, runs {runs}, \
         dead letters {dead}, refused deliveries {}, server back after {server_back:?}, \
         workers taking webhooks after {back:?}",
        acknowledged.len(),
        refused.lock().unwrap()
    );
    assert_eq!(dead, 0, "nothing dead-lettered");
    drop((a, b));
    drop(cluster);
}

/// Conversations `c<k>` of `per` events each (`c<k>-<seq>`), one event in a hundred `long`,
/// at most one per conversation.
fn mixed_load(conversations: usize, per: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(conversations * per);
    for seq in 0..per {
        for c in 0..conversations {
            // At most one long event per conversation, spread over the run.
            let text = if (seq * 7 + c) % 100 == 37 {
                "long"
            } else {
                "short"
            };
            events.push(Event::text(DEMO, format!("c{c}"), text).with_id(format!("c{c}-{seq}")));
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_handlers_outliving_their_lease_run_once_and_conversations_stay_sequential() {
    const CONVERSATIONS: usize = 1000;
    const PER_CONVERSATION: usize = 20;
    let pool = fresh_schema("qw_long").await;
    // A backlog first, so that both processes run at full throughput from their start.
    let events = mixed_load(CONVERSATIONS, PER_CONVERSATION);
    let long = events
        .iter()
        .filter(|e| e.text_content() == Some("long"))
        .count();
    bot_core::pg::import(&pool, events.clone()).await.unwrap();
    // A 1 s lease; one handler in a hundred runs 3 s, the others do their two inserts at once.
    let env = [
        ("WORK_MS", "0"),
        ("LONG_MS", "3000"),
        ("LEASE_MS", "1000"),
        ("MAX_IN_FLIGHT", "128"),
        ("PREFETCH", "32"),
        ("POOL_SIZE", "8"),
    ];
    let mut a = start_worker("qw_long", &env);
    let mut b = start_worker("qw_long", &env);
    wait_ready(&mut a);
    wait_ready(&mut b);
    let total = events.len() as i64;
    wait_count(
        &pool,
        "SELECT count(*) FROM queue_worker_effects",
        total,
        Duration::from_secs(120),
    )
    .await;
    // Every event acknowledged: a second run of an event still holds it until it ends.
    wait_zero(
        &pool,
        "SELECT count(*) FROM botrt_events",
        Duration::from_secs(60),
    )
    .await;
    a.assert_running("at the end");
    b.assert_running("at the end");
    let runs = count(&pool, "SELECT count(*) FROM queue_worker_runs").await;
    let distinct = count(
        &pool,
        "SELECT count(DISTINCT event_id) FROM queue_worker_runs",
    )
    .await;
    let broken = count(&pool, BROKEN_SEQUENCES).await;
    let dead = count(&pool, "SELECT count(*) FROM botrt_dead_letters").await;
    let longest = count(
        &pool,
        "SELECT coalesce(max(extract(epoch FROM at - started_at) * 1000), 0)::bigint \
         FROM queue_worker_runs",
    )
    .await;
    report!(
        "long/short: events {total} ({long} long), runs {runs}, distinct {distinct}, \
         overlapping or out of order {broken}, dead letters {dead}, longest run {longest} ms"
    );
    assert_eq!(runs, total, "an event ran more than once");
    assert_eq!(distinct, total);
    assert_eq!(
        broken, 0,
        "a conversation ran two events at once or out of order"
    );
    assert_eq!(dead, 0);
    assert!(longest >= 3000, "the long handlers outlived the 1 s lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_failing_for_a_while_rerun_nothing_and_dead_letter_nothing() {
    const EVENTS: usize = 1000;
    let pool = fresh_schema("qw_ackfail").await;
    let flag = std::env::temp_dir().join(format!("qw-ackfail-{}", std::process::id()));
    std::fs::write(&flag, b"acks fail while this file exists").unwrap();
    struct RemoveOnDrop(std::path::PathBuf);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let flag_guard = RemoveOnDrop(flag.clone());
    let flag_text = flag.to_str().unwrap().to_owned();
    let env = [
        ("WORK_MS", "5"),
        ("LEASE_MS", "1000"),
        ("MAX_IN_FLIGHT", "32"),
        ("POOL_SIZE", "4"),
        ("ACK_FAIL_FILE", flag_text.as_str()),
    ];
    let mut a = start_worker("qw_ackfail", &env);
    let mut b = start_worker("qw_ackfail", &env);
    wait_ready(&mut a);
    wait_ready(&mut b);
    for n in 0..EVENTS / 50 {
        let (_, body) = batch(n * 50..(n + 1) * 50, 100);
        let (first, second) = if n.is_multiple_of(2) {
            (a.addr, b.addr)
        } else {
            (b.addr, a.addr)
        };
        assert!(
            deliver(first, second, &body, Duration::from_secs(30)),
            "batch {n} not accepted"
        );
    }
    // Handlers run while their acknowledgements fail, for four leases' time.
    let failing_since = Instant::now();
    let handled_while_failing = wait_count(
        &pool,
        "SELECT count(*) FROM queue_worker_runs",
        40,
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let acked_while_failing =
        EVENTS as i64 - count(&pool, "SELECT count(*) FROM botrt_events").await;
    drop(flag_guard);
    let failed_for = failing_since.elapsed();
    wait_zero(
        &pool,
        "SELECT count(*) FROM botrt_events",
        Duration::from_secs(60),
    )
    .await;
    a.assert_running("at the end");
    b.assert_running("at the end");
    let runs = count(&pool, "SELECT count(*) FROM queue_worker_runs").await;
    let distinct = count(
        &pool,
        "SELECT count(DISTINCT event_id) FROM queue_worker_runs",
    )
    .await;
    let effects = count(&pool, "SELECT count(*) FROM queue_worker_effects").await;
    let dead = count(&pool, "SELECT count(*) FROM botrt_dead_letters").await;
    report!(
        "failing acks: events {EVENTS}, handled while acks failed {handled_while_failing}+ \
         (acknowledged meanwhile {acked_while_failing}), acks failed for {failed_for:?}, \
         runs {runs}, distinct {distinct}, effects {effects}, dead letters {dead}"
    );
    assert_eq!(
        acked_while_failing, 0,
        "an acknowledgement got through the fault"
    );
    assert_eq!(runs, EVENTS as i64, "a handled event ran again");
    assert_eq!(distinct, EVENTS as i64);
    assert_eq!(effects, EVENTS as i64);
    assert_eq!(dead, 0, "a handled event was dead-lettered");
}
