//! Fault case with real processes: two `queue-worker` processes take webhooks of one
//! conversation, and the commits of two pushes come out of id order. The events run in the
//! order in which the webhooks were answered (their commits), not in id order.
//!
//! The commit order is forced by a trigger the test installs in the schema: the insert of the
//! event `first` waits for an advisory lock the test holds, so worker A's transaction stays
//! open after its row took its id, while worker B's webhook of `second` comes in. A long first
//! event (`zero`) keeps the conversation busy meanwhile, so that both are claimed only after
//! both committed.
//! A trigger deferred to the commit records the order in which the pushes committed.
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

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bot_core::pg::PgPool;
use bot_core::{Event, Platform};

const DEMO: Platform = Platform::from_static("demo");
const SCHEMA: &str = "qw_commit_order";
/// The advisory lock the held push waits for (unique to this test).
const HOLD_KEY: i64 = 0x0b07_0de2_0000_0014;
/// How long each event's handler works: `zero` holds the conversation this long.
const WORK_MS: u64 = 3000;
const DEADLINE: Duration = Duration::from_secs(30);

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A worker process that is killed when dropped.
struct Worker {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_worker() -> Worker {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_queue-worker"))
        .env("DATABASE_URL", database_url())
        .env("BOT_SCHEMA", SCHEMA)
        .env("BOT_ADDR", addr.to_string())
        .env("WORK_MS", WORK_MS.to_string())
        .env("POOL_SIZE", "4")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start queue-worker");
    Worker { child, addr }
}

/// One HTTP/1.1 request; the status code, or `None` when the connection fails.
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split(' ').nth(1)?.parse().ok()
}

fn wait_ready(worker: &mut Worker) {
    let until = Instant::now() + Duration::from_secs(60);
    while http(worker.addr, "GET", "/readyz", b"") != Some(200) {
        if let Ok(Some(status)) = worker.child.try_wait() {
            panic!("queue-worker exited at start-up: {status}");
        }
        assert!(Instant::now() < until, "queue-worker not ready in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Posts the event `id` of conversation `c` to `addr` from a thread of its own, which checks
/// that it is answered 200 (committed).
fn post(addr: SocketAddr, id: &'static str) -> std::thread::JoinHandle<()> {
    let body = serde_json::to_vec(&[Event::text(DEMO, "c", "hi").with_id(id)]).unwrap();
    std::thread::spawn(move || {
        assert_eq!(http(addr, "POST", "/events", &body), Some(200), "{id}");
    })
}

async fn count(
    pool: &PgPool,
    sql: &str,
    params: &[&(dyn bot_core::pg::tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(sql, params)
        .await
        .unwrap()
        .get(0)
}

/// Waits until `sql` counts at least one row.
async fn wait_for(pool: &PgPool, what: &str, sql: &str) {
    let until = Instant::now() + DEADLINE;
    while count(pool, sql, &[]).await == 0 {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_run_one_conversation_in_commit_order() {
    let admin = PgPool::builder(database_url()).max_size(1).build().unwrap();
    let conn = admin
        .get()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {} ({e})", database_url()));
    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await
        .unwrap();
    drop(conn);
    let pool = PgPool::builder(database_url())
        .schema(SCHEMA)
        .max_size(2)
        .build()
        .unwrap();
    bot_core::pg::migrate(&pool).await.unwrap();
    let control = pool.get().await.unwrap();
    control
        .batch_execute(&format!(
            "CREATE FUNCTION order_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.event_id = 'first' THEN
                     PERFORM pg_advisory_xact_lock_shared({HOLD_KEY});
                 END IF;
                 RETURN NULL;
             END
             $$;
             CREATE TRIGGER order_test_hold AFTER INSERT ON botrt_events
             FOR EACH ROW EXECUTE FUNCTION order_test_hold();
             -- The commit order: a deferred trigger runs as each push commits.
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
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION order_test_log();"
        ))
        .await
        .unwrap();
    let (mut a, mut b) = (start_worker(), start_worker());
    wait_ready(&mut a);
    wait_ready(&mut b);

    // `zero` runs for WORK_MS and holds the conversation.
    post(a.addr, "zero").join().unwrap();
    wait_for(
        &pool,
        "zero to be claimed",
        "SELECT count(*) FROM botrt_events e JOIN botrt_leases l USING (id) WHERE e.event_id = 'zero'",
    )
    .await;
    let busy_since = Instant::now();

    // Worker A's push of `first` takes its id, then stays open.
    control
        .execute("SELECT pg_advisory_lock($1)", &[&HOLD_KEY])
        .await
        .unwrap();
    let first = post(a.addr, "first");
    wait_for(
        &pool,
        "worker A's push to be held open",
        &format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
             AND classid::bigint = {} AND objid::bigint = {} AND objsubid = 1",
            HOLD_KEY >> 32,
            HOLD_KEY & 0xffff_ffff
        ),
    )
    .await;
    // Worker B's push of `second` commits at once (its row has the larger id), or waits for
    // A's commit; either way the order is fixed at commit.
    let second = post(b.addr, "second");
    let until = Instant::now() + DEADLINE;
    while !second.is_finished()
        && count(
            &pool,
            // The queue's own connections append their role to the name ("... queue").
            "SELECT count(*) FROM pg_stat_activity
             WHERE (application_name = $1 OR starts_with(application_name, $1 || ' '))
             AND wait_event_type = 'Lock' AND wait_event <> 'advisory'",
            &[&format!("queue-worker {SCHEMA}")],
        )
        .await
            == 0
    {
        assert!(
            Instant::now() < until,
            "worker B's push neither committed nor waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    control
        .execute("SELECT pg_advisory_unlock($1)", &[&HOLD_KEY])
        .await
        .unwrap();
    first.join().unwrap();
    second.join().unwrap();
    assert!(
        busy_since.elapsed() < Duration::from_millis(WORK_MS),
        "both pushes must commit while zero still runs (the machine is too slow for this test)"
    );
    let committed: Vec<String> = control
        .query("SELECT event_id FROM order_test_commits ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    let until = Instant::now() + DEADLINE;
    while count(&pool, "SELECT count(*) FROM queue_worker_effects", &[]).await < 3 {
        assert!(
            Instant::now() < until,
            "timed out waiting for the events to run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handled: Vec<String> = pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT event_id FROM queue_worker_runs ORDER BY started_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    report!("commit order {committed:?}, handled {handled:?}");
    assert_eq!(
        handled, committed,
        "events run in the order their webhooks were answered"
    );
}
