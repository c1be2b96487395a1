//! PostgreSQL for tests: each test gets a schema of its own in the database of `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), so tests run in parallel.
//!
//! These tests never skip: when PostgreSQL cannot be reached they fail, saying so.

use std::future::Future;
use std::time::Duration;

use bot_core::pg::{self, PgPool, PgQueue, PgQueueBuilder};
use tokio::time::Instant;

/// The database the tests use.
pub(crate) fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, migrated schema named after `test`, and a pool on it.
///
/// # Panics
///
/// When PostgreSQL cannot be reached or the migration fails: a test that needs the database
/// must fail without it, never pass.
pub(crate) async fn fresh_pool(test: &str) -> PgPool {
    fresh_pool_with(test, |b| b).await
}

/// As [`fresh_pool`], with the pool builder adjusted by `configure`.
pub(crate) async fn fresh_pool_with(
    test: &str,
    configure: impl FnOnce(pg::PgPoolBuilder) -> pg::PgPoolBuilder,
) -> PgPool {
    fresh_pool_on(&database_url(), test, configure).await
}

/// As [`fresh_pool_with`], in the database of `url`.
pub(crate) async fn fresh_pool_on(
    url: &str,
    test: &str,
    configure: impl FnOnce(pg::PgPoolBuilder) -> pg::PgPoolBuilder,
) -> PgPool {
    let schema = format!("t_{test}");
    let admin = PgPool::builder(url)
        .max_size(1)
        .create_timeout(Duration::from_secs(5))
        .build()
        .expect("DATABASE_URL parses");
    let conn = admin.get().await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url} ({e}); start it (scripts/test.sh does) or set DATABASE_URL"
        )
    });
    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .expect("drop the test schema");
    let pool = configure(PgPool::builder(url).schema(&schema))
        .build()
        .expect("pool builds");
    pg::migrate(&pool).await.expect("migration");
    pool
}

/// The server process id of `conn`'s session (to find, in `pg_stat_activity`, what waits for it).
pub(crate) async fn backend_pid(conn: &pg::PgConnection) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("the backend's pid")
        .get(0)
}

/// A queue builder on `pool` with quick timings for tests.
pub(crate) fn queue_builder(pool: &PgPool) -> PgQueueBuilder {
    PgQueue::builder(pool)
        .poll_interval(Duration::from_millis(50))
        .rescue_interval(Duration::from_millis(100))
}

/// Polls `check` until it returns `Some`, failing after `deadline`.
///
/// # Panics
///
/// When `check` has not succeeded in time.
pub(crate) async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A TCP proxy in front of PostgreSQL that a test can cut and restore, to play a database
/// outage without touching the real server.
pub(crate) struct PgProxy {
    addr: std::net::SocketAddr,
    upstream: String,
    tasks: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl PgProxy {
    /// Listens on a free local port and forwards to the server of `DATABASE_URL`.
    pub(crate) async fn start() -> Self {
        let url = database_url();
        let config: bot_core::pg::tokio_postgres::Config =
            url.parse().expect("DATABASE_URL parses");
        let host = match config.get_hosts().first() {
            Some(bot_core::pg::tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let proxy = Self {
            addr,
            upstream: format!("{host}:{port}"),
            tasks: Default::default(),
        };
        proxy.resume();
        proxy
    }

    /// A database URL that goes through the proxy.
    pub(crate) fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=1",
            self.addr.port()
        )
    }

    /// Accepts connections again, on the same port.
    pub(crate) fn resume(&self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(64).unwrap();
        let upstream = self.upstream.clone();
        let tasks = self.tasks.clone();
        let mut set = self.tasks.lock().unwrap();
        set.spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                tasks.lock().unwrap().spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }

    /// Cuts every proxied connection and refuses new ones: the database is "down".
    pub(crate) fn cut(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

/// Locks `event`'s conversation as a push does before its events take their ids (a row of
/// `botrt_lanes`), in `db`'s transaction.
pub(crate) async fn lock_lane(
    db: &impl bot_core::pg::tokio_postgres::GenericClient,
    event: &bot_core::Event,
) {
    db.execute(
        "INSERT INTO botrt_lanes (lane) VALUES (hashtextextended($1 || chr(31) || $2, 0))",
        &[&event.platform.as_str(), &event.conversation.as_str()],
    )
    .await
    .unwrap();
}

/// Inserts `event` as a push would, but without its lane lock or dedup key (to hold an insert's
/// transaction open, or to place events by hand): its id.
pub(crate) async fn insert_raw(
    db: &impl bot_core::pg::tokio_postgres::GenericClient,
    event: &bot_core::Event,
) -> i64 {
    db.query_one(
        "INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
         VALUES (hashtextextended($1 || chr(31) || $2, 0), $1, $3, $2, $4::text::json)
         RETURNING id",
        &[
            &event.platform.as_str(),
            &event.conversation.as_str(),
            &event.id.as_str(),
            &serde_json::to_string(event).unwrap(),
        ],
    )
    .await
    .unwrap()
    .get(0)
}
