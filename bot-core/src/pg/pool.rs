//! One bounded connection pool per process, with measured waits.

use std::fmt;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio::time::Instant;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::DATABASE_URL_ENV;
use super::error;
use super::tls::{self, RootCerts, SslMode};
use crate::error::{Error, ErrorKind};

/// The asynchronous messages of a connection opened by [`PgPool::connect_dedicated`]
/// (notifications, notices), which also drive it.
pub type DedicatedMessages = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>>
            + Send,
    >,
>;

/// A connection from a [`PgPool`]; it goes back to the pool when dropped. Dereferences to a
/// [`tokio_postgres::Client`].
pub type PgConnection = deadpool_postgres::Object;

/// Default connections per process.
const DEFAULT_MAX_SIZE: usize = 16;
/// Default wait for a free connection: long enough that a burst of handlers queues up instead of
/// failing (the wait is measured), short enough that a stuck pool shows.
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time to open a connection.
const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time to check a returned connection.
const DEFAULT_RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of PostgreSQL connections for handlers (`cx.db()`) and the state store.
///
/// A [`super::PgQueue`] built on it opens connections of its own beside it (same server, schema
/// and settings; see [`super::PgQueueBuilder::connections`]), so that handlers holding every
/// connection of this pool never delay pushes, claims, acknowledgements or lease extensions.
///
/// deadpool's own default is to wait forever for a connection; this pool always sets the `wait`,
/// `create` and `recycle` time-outs. Every wait is measured ([`PgPool::stats`], and the
/// `bot.db.pool.wait` histogram for `cx.db()`). Cloning is cheap; clones share the pool.
#[derive(Clone)]
pub struct PgPool {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    schema: String,
    gets: AtomicU64,
    waited_micros: AtomicU64,
    max_wait_micros: AtomicU64,
    timeouts: AtomicU64,
    /// Connections of the pools derived from this one for queues ([`PgPool::derive_for_queue`]).
    derived: AtomicUsize,
}

impl fmt::Debug for PgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPool")
            .field("schema", &self.inner.schema)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// The pool's size and use right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connections allowed at most.
    pub max_size: usize,
    /// Connections open.
    pub size: usize,
    /// Open connections not in use.
    pub idle: usize,
    /// Tasks waiting for a connection.
    pub waiting: usize,
    /// Connections handed out so far.
    pub gets: u64,
    /// Time spent waiting for them, in all.
    pub waited: Duration,
    /// The longest single wait.
    pub max_wait: Duration,
    /// Waits that ended in a time-out.
    pub timeouts: u64,
}

/// What [`PgPool::check_capacity`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityCheck {
    /// The server's `max_connections`.
    pub max_connections: usize,
    /// The server's `superuser_reserved_connections`.
    pub reserved: usize,
    /// This pool's size, plus one listener connection and the queue's own connections, times the
    /// processes expected.
    pub needed: usize,
}

impl CapacityCheck {
    /// Whether every process can open its whole pool at once.
    pub fn fits(&self) -> bool {
        self.needed <= self.max_connections.saturating_sub(self.reserved)
    }
}

impl PgPool {
    /// Starts configuring a pool for `database_url` (`postgres://user@host:port/db`, or the
    /// `key=value` form).
    pub fn builder(database_url: impl Into<String>) -> PgPoolBuilder {
        PgPoolBuilder {
            url: database_url.into(),
            max_size: DEFAULT_MAX_SIZE,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            create_timeout: DEFAULT_CREATE_TIMEOUT,
            recycle_timeout: DEFAULT_RECYCLE_TIMEOUT,
            schema: "public".to_owned(),
            application_name: "botrt".to_owned(),
            ssl_mode: None,
            root_cert: None,
        }
    }

    /// A pool with default settings for the URL in `DATABASE_URL`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when `DATABASE_URL` is missing or invalid.
    pub fn from_env() -> Result<Self, Error> {
        let url = std::env::var(DATABASE_URL_ENV)
            .map_err(|_| Error::config(format!("postgres: {DATABASE_URL_ENV} is not set")))?;
        Self::builder(url).build()
    }

    /// A connection, waiting up to the pool's wait time-out. The wait is measured.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when no connection became free in time; [`ErrorKind::Other`] when
    /// a connection cannot be opened.
    pub async fn get(&self) -> Result<PgConnection, Error> {
        self.get_measured(ErrorKind::Other, "getting a connection")
            .await
            .map(|(c, _)| c)
    }

    /// A connection and how long it took to get it; failures mapped to `kind`.
    pub(crate) async fn get_measured(
        &self,
        kind: ErrorKind,
        what: &str,
    ) -> Result<(PgConnection, Duration), Error> {
        let started = Instant::now();
        let got = self.inner.pool.get().await;
        let waited = started.elapsed();
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.inner.gets.fetch_add(1, AtomicOrdering::Relaxed);
        self.inner
            .waited_micros
            .fetch_add(micros, AtomicOrdering::Relaxed);
        self.inner
            .max_wait_micros
            .fetch_max(micros, AtomicOrdering::Relaxed);
        match got {
            Ok(c) => Ok((c, waited)),
            Err(e) => {
                if matches!(e, deadpool_postgres::PoolError::Timeout(_)) {
                    self.inner.timeouts.fetch_add(1, AtomicOrdering::Relaxed);
                }
                Err(error::pool(kind, what, e))
            }
        }
    }

    /// The pool's size, use and wait figures.
    pub fn stats(&self) -> PoolStats {
        let s = self.inner.pool.status();
        PoolStats {
            max_size: s.max_size,
            size: s.size,
            idle: s.available,
            waiting: s.waiting,
            gets: self.inner.gets.load(AtomicOrdering::Relaxed),
            waited: Duration::from_micros(self.inner.waited_micros.load(AtomicOrdering::Relaxed)),
            max_wait: Duration::from_micros(
                self.inner.max_wait_micros.load(AtomicOrdering::Relaxed),
            ),
            timeouts: self.inner.timeouts.load(AtomicOrdering::Relaxed),
        }
    }

    /// Exports the pool's figures as metrics of `telemetry`: `db.client.connection.count{state}`
    /// (`idle`, `used`), `db.client.connection.max`, `db.client.connection.pending_requests` and
    /// `db.client.connection.timeouts`. Waits go to `bot.db.pool.wait` through `cx.db()`.
    pub fn register_metrics(&self, telemetry: &crate::Telemetry) {
        use opentelemetry::KeyValue;
        let meter = telemetry.meter();
        let weak = Arc::downgrade(&self.inner);
        let w = weak.clone();
        let _count = meter
            .u64_observable_gauge("db.client.connection.count")
            .with_description("Connections of the pool by state")
            .with_callback(move |o| {
                if let Some(inner) = w.upgrade() {
                    let s = inner.pool.status();
                    o.observe(s.available as u64, &[KeyValue::new("state", "idle")]);
                    o.observe(
                        s.size.saturating_sub(s.available) as u64,
                        &[KeyValue::new("state", "used")],
                    );
                }
            })
            .build();
        let w = weak.clone();
        let _max = meter
            .u64_observable_gauge("db.client.connection.max")
            .with_description("Connections the pool may open")
            .with_callback(move |o| {
                if let Some(inner) = w.upgrade() {
                    o.observe(inner.pool.status().max_size as u64, &[]);
                }
            })
            .build();
        let w = weak.clone();
        let _pending = meter
            .u64_observable_gauge("db.client.connection.pending_requests")
            .with_description("Tasks waiting for a connection")
            .with_callback(move |o| {
                if let Some(inner) = w.upgrade() {
                    o.observe(inner.pool.status().waiting as u64, &[]);
                }
            })
            .build();
        let _timeouts = meter
            .u64_observable_counter("db.client.connection.timeouts")
            .with_description("Waits for a connection that timed out")
            .with_callback(move |o| {
                if let Some(inner) = weak.upgrade() {
                    o.observe(inner.timeouts.load(AtomicOrdering::Relaxed), &[]);
                }
            })
            .build();
    }

    /// A pool of its own on the same server, schema and settings, for a queue's statements:
    /// connections handlers never take, on which the server cancels any statement after
    /// `statement_timeout`; waiting for one of them, or opening one, is bounded by it too.
    pub(crate) fn derive_for_queue(
        &self,
        max_size: usize,
        statement_timeout: Duration,
        role: &str,
    ) -> Result<PgPool, Error> {
        let mut config = self.inner.config.clone();
        let millis = statement_timeout.as_millis().max(1);
        // READ COMMITTED whatever the server's default: a claim's statement must take its
        // snapshot after its function took the claim slot (migration 13), and a front read's
        // figures are those of its own statement (migrations 8 and 12).
        let options = format!(
            "{} -c statement_timeout={millis} -c default_transaction_isolation=read\\ committed",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_start());
        let name = format!(
            "{} {role}",
            config.get_application_name().unwrap_or("botrt")
        );
        config.application_name(&name);
        let base = self.inner.pool.timeouts();
        let bounded =
            |t: Option<Duration>| Some(t.map_or(statement_timeout, |t| t.min(statement_timeout)));
        let create = bounded(base.create);
        config.connect_timeout(create.unwrap_or(statement_timeout));
        let pool = new_pool(
            config.clone(),
            self.inner.tls.clone(),
            max_size,
            Timeouts {
                wait: Some(statement_timeout),
                create,
                recycle: bounded(base.recycle),
            },
        )?;
        self.inner
            .derived
            .fetch_add(max_size, AtomicOrdering::Relaxed);
        Ok(PgPool::from_parts(
            pool,
            config,
            self.inner.tls.clone(),
            self.inner.schema.clone(),
        ))
    }

    /// A small pool of its own (`max_size` connections, this pool's time-outs) on the same server
    /// and settings whose connections use `schema` instead: how a component with tables of its
    /// own beside the bot's (the [`crate::outbox`]) reaches them.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when `schema` is not a plain identifier or `max_size` is zero.
    pub fn with_schema(&self, schema: &str, max_size: usize) -> Result<PgPool, Error> {
        if !is_identifier(schema) {
            return Err(Error::config(format!(
                "postgres: schema {schema:?} must be letters, digits and _ (not starting with a digit)"
            )));
        }
        if max_size == 0 {
            return Err(Error::config(
                "postgres: a pool needs at least one connection",
            ));
        }
        let mut config = self.inner.config.clone();
        let ours = format!("-c search_path={}", self.inner.schema);
        let options = config.get_options().unwrap_or_default().replacen(
            &ours,
            &format!("-c search_path={schema}"),
            1,
        );
        config.options(&options);
        let pool = new_pool(
            config.clone(),
            self.inner.tls.clone(),
            max_size,
            self.inner.pool.timeouts(),
        )?;
        self.inner
            .derived
            .fetch_add(max_size, AtomicOrdering::Relaxed);
        Ok(PgPool::from_parts(
            pool,
            config,
            self.inner.tls.clone(),
            schema.to_owned(),
        ))
    }

    fn from_parts(
        pool: Pool,
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        schema: String,
    ) -> Self {
        PgPool {
            inner: Arc::new(Inner {
                pool,
                config,
                tls,
                schema,
                gets: AtomicU64::new(0),
                waited_micros: AtomicU64::new(0),
                max_wait_micros: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                derived: AtomicUsize::new(0),
            }),
        }
    }

    fn status(&self) -> deadpool_postgres::Status {
        self.inner.pool.status()
    }

    /// The schema this pool's connections use (their `search_path`).
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Opens a connection of its own, outside the pool, with the pool's settings, schema and TLS
    /// (`sslmode`, root certificates): for what a pooled connection cannot do, such as a `LISTEN`
    /// that stays open. Returns the client and the stream of the connection's asynchronous
    /// messages (notifications, notices); the stream drives the connection, so it must be polled
    /// for the client to make progress, and it ends when the connection closes.
    ///
    /// # Errors
    ///
    /// The connection's error: the server unreachable, TLS or authentication refused.
    pub async fn connect_dedicated(
        &self,
    ) -> Result<(tokio_postgres::Client, DedicatedMessages), tokio_postgres::Error> {
        let (client, mut connection) = self.inner.config.connect(self.tls()).await?;
        let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        Ok((client, Box::pin(messages)))
    }

    /// The connection settings, for connections outside the pool (the `LISTEN` connection).
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.inner.config
    }

    /// The TLS connector of the pool's connections, for connections outside the pool.
    pub(crate) fn tls(&self) -> MakeRustlsConnect {
        self.inner.tls.clone()
    }

    /// Compares `max_size × expected_processes` (plus, per process, one listener connection and
    /// the connections of the queues built on this pool so far) with the server's
    /// `max_connections`, and logs a warning when they do not fit. Call it after building the
    /// queue, so that its connections count.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot be asked.
    pub async fn check_capacity(&self, expected_processes: usize) -> Result<CapacityCheck, Error> {
        let conn = self.get().await?;
        let row = conn
            .query_one(
                "SELECT current_setting('max_connections')::int, \
                 current_setting('superuser_reserved_connections')::int",
                &[],
            )
            .await
            .map_err(|e| error::db(ErrorKind::Other, "reading max_connections", e))?;
        let max_connections = usize::try_from(row.get::<_, i32>(0)).unwrap_or(0);
        let reserved = usize::try_from(row.get::<_, i32>(1)).unwrap_or(0);
        let check = CapacityCheck {
            max_connections,
            reserved,
            needed: (self.inner.pool.status().max_size
                + 1
                + self.inner.derived.load(AtomicOrdering::Relaxed))
            .saturating_mul(expected_processes),
        };
        if !check.fits() {
            tracing::warn!(
                pool_size = self.inner.pool.status().max_size,
                expected_processes,
                needed = check.needed,
                max_connections,
                reserved,
                "postgres: the pools of all processes need more connections than the server allows; \
                 lower the pool size or raise max_connections"
            );
        }
        Ok(check)
    }
}

/// Configures a [`PgPool`].
///
/// Its `Debug` output shows the database URL with the password redacted.
#[must_use]
#[derive(Clone)]
pub struct PgPoolBuilder {
    url: String,
    max_size: usize,
    wait_timeout: Duration,
    create_timeout: Duration,
    recycle_timeout: Duration,
    schema: String,
    application_name: String,
    ssl_mode: Option<SslMode>,
    root_cert: Option<RootCerts>,
}

impl fmt::Debug for PgPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPoolBuilder")
            .field("url", &tls::redact_url(&self.url))
            .field("max_size", &self.max_size)
            .field("wait_timeout", &self.wait_timeout)
            .field("create_timeout", &self.create_timeout)
            .field("recycle_timeout", &self.recycle_timeout)
            .field("schema", &self.schema)
            .field("application_name", &self.application_name)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

impl PgPoolBuilder {
    /// Connections at most (default 16). Every process opens up to this many, plus one for
    /// `LISTEN`; check the total against `max_connections` with [`PgPool::check_capacity`].
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// How long a task waits for a free connection before failing (default 30 s).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 5 s).
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.create_timeout = timeout;
        self
    }

    /// How long checking a returned connection may take (default 5 s).
    pub fn recycle_timeout(mut self, timeout: Duration) -> Self {
        self.recycle_timeout = timeout;
        self
    }

    /// The schema for the bot's tables (default `public`); [`super::migrate`] creates it. Letters,
    /// digits and `_` only. Several bots can share one database in different schemas.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The `application_name` the server shows in `pg_stat_activity` (default `botrt`).
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// How connections use TLS, overriding the URL's `sslmode` (default: the URL's, else
    /// [`SslMode::Prefer`]). The listener connection uses the same settings.
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = Some(mode);
        self
    }

    /// Trusts the root certificates in the PEM file at `path` for `verify-ca` and `verify-full`
    /// (and turns `require` into `verify-ca`, as libpq does), overriding the URL's
    /// `sslrootcert`. Without either, the system's certificate store is used.
    pub fn ssl_root_cert(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.root_cert = Some(RootCerts::File(path.into()));
        self
    }

    /// As [`ssl_root_cert`](Self::ssl_root_cert), with the PEM text itself.
    pub fn ssl_root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert = Some(RootCerts::Pem(pem.into()));
        self
    }

    /// Builds the pool. Connections open lazily, on first use.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the URL does not parse, the schema name is not a plain
    /// identifier, a size or time-out is zero, `sslmode` is unknown, or the root certificates
    /// cannot be read or hold no certificate.
    pub fn build(self) -> Result<PgPool, Error> {
        if self.max_size == 0 {
            return Err(Error::config("postgres: pool max_size must be at least 1"));
        }
        if self.wait_timeout.is_zero()
            || self.create_timeout.is_zero()
            || self.recycle_timeout.is_zero()
        {
            return Err(Error::config(
                "postgres: pool wait, create and recycle time-outs must be above zero",
            ));
        }
        if !is_identifier(&self.schema) {
            return Err(Error::config(format!(
                "postgres: schema {:?} must be letters, digits and _ (not starting with a digit)",
                self.schema
            )));
        }
        let url_tls = tls::split_url(&self.url)?;
        let mut config = tokio_postgres::Config::from_str(&url_tls.url).map_err(|e| {
            Error::config("postgres: the database url does not parse").with_source(e)
        })?;
        let mode = self.ssl_mode.or(url_tls.mode).unwrap_or_default();
        let root_cert = self.root_cert.or(url_tls.root_cert);
        let (tls, client_mode) = tls::connector(mode, root_cert.as_ref())?;
        config
            .ssl_mode(client_mode)
            .options(format!("-c search_path={}", self.schema))
            .application_name(&self.application_name)
            .connect_timeout(self.create_timeout);
        let pool = new_pool(
            config.clone(),
            tls.clone(),
            self.max_size,
            Timeouts {
                wait: Some(self.wait_timeout),
                create: Some(self.create_timeout),
                recycle: Some(self.recycle_timeout),
            },
        )?;
        Ok(PgPool::from_parts(pool, config, tls, self.schema))
    }
}

/// A deadpool pool on `config`; the one place connections are made (TLS goes here).
fn new_pool(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    max_size: usize,
    timeouts: Timeouts,
) -> Result<Pool, Error> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            // A cheap check that a returned connection still works.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .timeouts(timeouts)
        .build()
        .map_err(|e| Error::config("postgres: cannot build the pool").with_source(e))
}

/// A name that needs no quoting in SQL or in the `search_path` option.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 48
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(is_identifier("public"));
        assert!(is_identifier("bot_2"));
        assert!(!is_identifier("2bot"));
        assert!(!is_identifier("a;drop"));
        assert!(!is_identifier("Bot"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn builder_refuses_zero_timeouts_and_bad_urls() {
        let e = PgPool::builder("postgres://u@127.0.0.1/db")
            .wait_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let e = PgPool::builder("postgres://u@127.0.0.1/db")
            .schema("x y")
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let e = PgPool::builder("not a url =").build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn capacity_check_counts_reserved_connections() {
        let c = CapacityCheck {
            max_connections: 100,
            reserved: 3,
            needed: 97,
        };
        assert!(c.fits());
        assert!(!CapacityCheck { needed: 98, ..c }.fits());
    }
}
