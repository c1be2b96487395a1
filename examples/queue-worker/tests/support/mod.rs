//! Helpers shared by the queue-worker tests: worker processes, a minimal HTTP client, schemas
//! and counts. Each test crate uses a different subset, hence `dead_code` is allowed.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bot_core::pg::PgPool;
use bot_core::{Event, Platform};

pub(crate) const DEMO: Platform = Platform::from_static("demo");

/// The shared test database (`DATABASE_URL`).
pub(crate) fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A pool on a fresh schema (dropped first) of the shared test database.
pub(crate) async fn fresh_schema(schema: &str) -> PgPool {
    fresh_schema_at(&database_url(), schema).await
}

/// A pool on a fresh schema (dropped first) of the database at `url`.
pub(crate) async fn fresh_schema_at(url: &str, schema: &str) -> PgPool {
    let admin = PgPool::builder(url).max_size(1).build().unwrap();
    let conn = admin
        .get()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url} ({e})"));
    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    let pool = PgPool::builder(url)
        .schema(schema)
        .max_size(2)
        .build()
        .unwrap();
    bot_core::pg::migrate(&pool).await.unwrap();
    pool
}

pub(crate) fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A worker process that is killed when dropped.
pub(crate) struct Worker {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    /// Fails the test when the process has exited.
    pub(crate) fn assert_running(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{what}: the worker exited: {status}");
        }
    }
}

pub(crate) fn start_worker(schema: &str, env: &[(&str, &str)]) -> Worker {
    spawn_worker(&database_url(), schema, env, Stdio::null())
}

pub(crate) fn spawn_worker(url: &str, schema: &str, env: &[(&str, &str)], stdout: Stdio) -> Worker {
    let addr = free_addr();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_queue-worker"));
    cmd.env("DATABASE_URL", url)
        .env("BOT_SCHEMA", schema)
        .env("BOT_ADDR", addr.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Worker {
        child: cmd.spawn().expect("start queue-worker"),
        addr,
    }
}

/// One HTTP/1.1 request; the status code, or `None` when the connection fails.
pub(crate) fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
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

pub(crate) fn wait_ready(worker: &mut Worker) {
    let until = Instant::now() + Duration::from_secs(60);
    while http(worker.addr, "GET", "/readyz", b"") != Some(200) {
        if let Ok(Some(status)) = worker.child.try_wait() {
            panic!("queue-worker exited at start-up: {status}");
        }
        assert!(Instant::now() < until, "queue-worker not ready in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn batch(
    ids: impl Iterator<Item = usize>,
    conversations: usize,
) -> (Vec<String>, Vec<u8>) {
    let events: Vec<Event> = ids
        .map(|i| {
            Event::text(DEMO, format!("c{}", i % conversations), "hi").with_id(format!("e{i}"))
        })
        .collect();
    let ids = events.iter().map(|e| e.id.to_string()).collect();
    (ids, serde_json::to_vec(&events).unwrap())
}

pub(crate) async fn count(pool: &PgPool, sql: &str) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

pub(crate) async fn wait_count(pool: &PgPool, sql: &str, at_least: i64, deadline: Duration) -> i64 {
    let until = Instant::now() + deadline;
    loop {
        let n = count(pool, sql).await;
        if n >= at_least {
            return n;
        }
        assert!(
            Instant::now() < until,
            "timed out: {sql} = {n}, want {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs that overlap the previous run of their conversation (ids `c<conversation>-<seq>`), or
/// come out of sequence order.
pub(crate) const BROKEN_SEQUENCES: &str = "SELECT count(*) FROM (
     SELECT split_part(event_id, '-', 2)::int AS seq, started_at,
            lag(at) OVER w AS previous_end,
            lag(split_part(event_id, '-', 2)::int) OVER w AS previous_seq
     FROM queue_worker_runs
     WINDOW w AS (PARTITION BY split_part(event_id, '-', 1) ORDER BY started_at)
 ) r
 WHERE started_at < previous_end OR seq <> coalesce(previous_seq + 1, 0)";
