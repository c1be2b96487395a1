//! Several `queue-worker` processes on one database: conversations stay sequential and in order
//! across them, a SIGKILL loses nothing acknowledged, a SIGTERM hands claimed but unstarted
//! events to the other process at once.
//!
//! Needs PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`);
//! fails when it cannot be reached.

/// Prints what a fault case counted straight to stderr, past the test harness's capture, so
/// that CI's log shows it for passing tests too.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod support;

use std::collections::HashSet;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bot_core::Event;
use support::{
    BROKEN_SEQUENCES, DEMO, Worker, batch, count, database_url, fresh_schema, http, spawn_worker,
    start_worker, wait_count, wait_ready,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_midway_loses_nothing_acknowledged_and_bounds_duplicates() {
    const EVENTS: usize = 20_000;
    const BATCH: usize = 100;
    const IN_FLIGHT: usize = 64;
    const PREFETCH: usize = 16;
    let pool = fresh_schema("qw_kill").await;
    let env = [
        ("WORK_MS", "0"),
        ("MAX_IN_FLIGHT", "64"),
        ("PREFETCH", "16"),
        ("LEASE_MS", "2000"),
        ("POOL_SIZE", "8"),
    ];
    let mut a = start_worker("qw_kill", &env);
    let mut b = start_worker("qw_kill", &env);
    wait_ready(&mut a);
    wait_ready(&mut b);
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut a_alive = true;
    for n in 0..EVENTS / BATCH {
        if n == EVENTS / BATCH / 2 {
            // SIGKILL: no drain, no release; whatever A held comes back when its leases expire.
            a.child.kill().unwrap();
            a.child.wait().unwrap();
            a_alive = false;
        }
        let (ids, body) = batch(n * BATCH..(n + 1) * BATCH, 2_000);
        let first = if n % 2 == 0 && a_alive {
            a.addr
        } else {
            b.addr
        };
        let status = match http(first, "POST", "/events", &body) {
            Some(200) => Some(200),
            // Like a platform: redeliver what got no 2xx, here to the other process.
            _ => http(b.addr, "POST", "/events", &body),
        };
        assert_eq!(
            status,
            Some(200),
            "batch {n} not accepted by the surviving worker"
        );
        acknowledged.extend(ids);
    }
    assert_eq!(acknowledged.len(), EVENTS);
    wait_count(
        &pool,
        "SELECT count(*) FROM queue_worker_effects",
        EVENTS as i64,
        Duration::from_secs(120),
    )
    .await;
    // Nothing acknowledged is lost: every event's effect is recorded, once.
    let conn = pool.get().await.unwrap();
    let ids: Vec<String> = acknowledged.into_iter().collect();
    let found: i64 = conn
        .query_one(
            "SELECT count(*) FROM queue_worker_effects WHERE event_id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found as usize, EVENTS);
    let runs = count(&pool, "SELECT count(*) FROM queue_worker_runs").await;
    let distinct = count(
        &pool,
        "SELECT count(DISTINCT event_id) FROM queue_worker_runs",
    )
    .await;
    assert_eq!(distinct as usize, EVENTS);
    let twice = (runs - distinct) as usize;
    report!("events {EVENTS}, runs {runs}, handled twice {twice}");
    assert!(
        twice <= IN_FLIGHT + PREFETCH,
        "{twice} events ran twice, more than the killed process's in-flight + prefetch"
    );
    let left = count(&pool, "SELECT count(*) FROM botrt_events").await;
    assert_eq!(left, 0, "queue drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_running_handlers_and_hands_unstarted_claims_over_at_once() {
    let pool = fresh_schema("qw_term").await;
    // A: two slow handlers at a time, eight more claimed ahead; leases far longer than the test.
    let mut a = start_worker(
        "qw_term",
        &[
            ("WORK_MS", "3000"),
            ("MAX_IN_FLIGHT", "2"),
            ("PREFETCH", "8"),
            ("LEASE_MS", "120000"),
        ],
    );
    wait_ready(&mut a);
    let (_, body) = batch(0..10, 10);
    assert_eq!(http(a.addr, "POST", "/events", &body), Some(200));
    // A holds all ten: two running, eight claimed ahead.
    wait_count(
        &pool,
        "SELECT count(*) FROM botrt_leases",
        10,
        Duration::from_secs(10),
    )
    .await;
    let mut b = start_worker(
        "qw_term",
        &[
            ("WORK_MS", "100"),
            ("MAX_IN_FLIGHT", "16"),
            ("PREFETCH", "0"),
        ],
    );
    wait_ready(&mut b);
    let terminated = Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let b_pid = b.child.id().to_string();
    // B runs the eight unstarted events long before their leases (two minutes) could expire,
    // while A is still finishing its two.
    let by_b = format!("SELECT count(*) FROM queue_worker_effects WHERE worker = '{b_pid}'");
    wait_count(&pool, &by_b, 8, Duration::from_secs(10)).await;
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "A was still draining its running handlers"
    );
    let status = a.child.wait().unwrap();
    assert!(status.success(), "A ended cleanly: {status}");
    let effects = count(&pool, "SELECT count(*) FROM queue_worker_effects").await;
    let runs = count(&pool, "SELECT count(*) FROM queue_worker_runs").await;
    assert_eq!(
        (effects, runs),
        (10, 10),
        "A's two finished; nothing ran twice"
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_keep_200_conversations_sequential_and_in_order() {
    const CONVERSATIONS: usize = 200;
    const PER_CONVERSATION: usize = 50;
    let pool = fresh_schema("qw_order").await;
    let env = [
        ("WORK_MS", "0"),
        ("MAX_IN_FLIGHT", "64"),
        ("POOL_SIZE", "8"),
    ];
    let mut a = start_worker("qw_order", &env);
    let mut b = start_worker("qw_order", &env);
    wait_ready(&mut a);
    wait_ready(&mut b);
    // One webhook per conversation with all its events, alternating between the processes.
    for c in 0..CONVERSATIONS {
        let events: Vec<Event> = (0..PER_CONVERSATION)
            .map(|seq| Event::text(DEMO, format!("c{c}"), "hi").with_id(format!("c{c}-{seq}")))
            .collect();
        let body = serde_json::to_vec(&events).unwrap();
        let to = if c % 2 == 0 { a.addr } else { b.addr };
        assert_eq!(http(to, "POST", "/events", &body), Some(200));
    }
    let total = (CONVERSATIONS * PER_CONVERSATION) as i64;
    wait_count(
        &pool,
        "SELECT count(*) FROM queue_worker_effects",
        total,
        Duration::from_secs(120),
    )
    .await;
    // Each run started after the previous event of its conversation ended, in sequence order.
    let broken = count(&pool, BROKEN_SEQUENCES).await;
    assert_eq!(broken, 0, "runs overlapping or out of order");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM queue_worker_runs").await,
        total
    );
    let workers = count(
        &pool,
        "SELECT count(DISTINCT worker) FROM queue_worker_runs",
    )
    .await;
    assert_eq!(workers, 2, "both processes took a share");
}

/// `botload scenario queue-drain` in small: a backlog loaded with `pg::import`, drained by two
/// workers with the no-op handler, every event run once in all (the counts they print).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_workers_drain_an_imported_backlog_running_each_event_once() {
    const EVENTS: u64 = 3000;
    let pool = fresh_schema("qw_noop").await;
    let events = (0..EVENTS)
        .map(|i| Event::text(DEMO, format!("c{}", i % 100), "hi").with_id(format!("e{i}")));
    assert_eq!(bot_core::pg::import(&pool, events).await.unwrap(), EVENTS);
    let env = [
        ("HANDLER", "noop"),
        ("MAX_IN_FLIGHT", "64"),
        ("PREFETCH", "32"),
        ("WORKER_PROCESSES", "2"),
    ];
    let mut workers: Vec<Worker> = (0..2)
        .map(|_| spawn_worker(&database_url(), "qw_noop", &env, Stdio::piped()))
        .collect();
    let until = Instant::now() + Duration::from_secs(60);
    while count(&pool, "SELECT count(*) FROM botrt_events").await > 0 {
        for worker in &mut workers {
            if let Ok(Some(status)) = worker.child.try_wait() {
                panic!("a worker exited while draining: {status}");
            }
        }
        assert!(
            Instant::now() < until,
            "the backlog was not drained in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut handled = 0;
    for worker in &mut workers {
        let terminated = Command::new("kill")
            .args(["-TERM", &worker.child.id().to_string()])
            .status()
            .unwrap();
        assert!(terminated.success());
        assert!(worker.child.wait().unwrap().success());
        let mut out = String::new();
        worker
            .child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let line = out
            .lines()
            .find(|l| l.starts_with("handled="))
            .unwrap_or_else(|| panic!("no handled= line in {out:?}"));
        handled += line
            .split_whitespace()
            .next()
            .and_then(|h| h.strip_prefix("handled="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("unreadable counts: {line:?}"));
    }
    assert_eq!(
        handled, EVENTS,
        "each event runs once, in one of the workers"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM botrt_dead_letters").await,
        0
    );
}
