//! Several nodes on one PostgreSQL (feature `postgres`): cross-node delivery over
//! `LISTEN/NOTIFY`, presence rows, and the history that makes a resume exact on any node.
//!
//! Rooms: `fanout.rs` (the [`Fanout`](crate::fanout::Fanout) over `LISTEN/NOTIFY`),
//! `history.rs` (the batched history writer, cluster-wide numbers, resume reads, trimming),
//! `presence.rs` (the batched presence writer, node heartbeats, the dead-node sweeper, and the
//! queries), `sql.rs` (every statement).
//!
//! # History
//!
//! Each user's bot messages are numbered cluster-wide (`webchat_seqs`, one row per user) and
//! kept in `webchat_history` within the adapter's history bounds (count, bytes, age), so that a
//! browser that reconnects to any node with its `last_seq` gets every message it missed once,
//! in order. The numbering's epoch (`webchat_meta`) is the schema's: the same on every node and
//! across restarts. Sends are stored in batches (one statement per batch, see `history.rs`).
//!
//! # Presence
//!
//! One row per user in `webchat_presence`: `nodes` is a JSONB map of node to the user's open
//! sockets there (`{"node-a": 2, "node-b": 1}`), `joined_at` when the user came online (from
//! offline), `left_at` when they went offline on every node. Each node writes the counts that
//! changed in one statement per flush interval, and beats in `webchat_nodes`; any node removes
//! the counts of a node whose heartbeat is older than the dead-node time-out. A node declared
//! dead by mistake (a long pause) finds its row gone at its next beat and writes all its counts
//! again.

mod fanout;
mod history;
mod presence;
mod sql;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bot_core::pg::PgPool;

pub use presence::{NodeCount, Presence};

use crate::error::{Error, ErrorKind};

/// Presence and cross-node delivery for the nodes that share one PostgreSQL; give it to
/// [`crate::WebChatBuilder::cluster`].
///
/// Cloning is cheap.
///
/// # Examples
///
/// ```no_run
/// use bot_core::pg::PgPool;
/// use bot_webchat::WebChat;
/// use bot_webchat::pg::PgCluster;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let url = std::env::var("DATABASE_URL")?;
/// let pool = PgPool::builder(&url).build()?;
/// let cluster = PgCluster::builder(&pool).build()?;
/// cluster.migrate().await?;
/// let webchat = WebChat::builder("secret").cluster(cluster.clone()).build()?;
/// // ... and later, from any node:
/// let online = cluster.online_users(100).await?;
/// # let _ = (webchat, online); Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgCluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("PgCluster")
            .field("node", &self.inner.node)
            .field("channel", &self.inner.channel)
            .field("listening", &self.is_listening())
            .finish_non_exhaustive()
    }
}

/// [`PgClusterBuilder::max_join_reads`]'s default.
const DEFAULT_MAX_JOIN_READS: usize = 4;

struct Inner {
    pool: PgPool,
    node: String,
    channel: String,
    config: PgClusterBuilder,
    /// Whether the `LISTEN` connection is up.
    listening: AtomicBool,
    /// The sends waiting for the history writer, and its end (taken by the writer).
    history_tx: tokio::sync::mpsc::Sender<history::StoreRequest>,
    history_rx: tokio::sync::Mutex<Option<tokio::sync::mpsc::Receiver<history::StoreRequest>>>,
    /// The numbering's epoch, read once.
    epoch: tokio::sync::OnceCell<String>,
    /// Joins reading the history at once (see [`PgClusterBuilder::max_join_reads`]).
    join_reads: tokio::sync::Semaphore,
    /// Sends that could not be stored or published (and joins that could not read the history).
    history_errors: AtomicU64,
    /// Statements that stored sends.
    history_batches: AtomicU64,
    /// Reads of what the sockets' users have in the table beyond what reached them.
    history_catch_ups: AtomicU64,
    /// Statements that stored sends run again after a conflict.
    history_retries: AtomicU64,
    /// `webchat_seqs` rows this node pruned.
    seqs_pruned: AtomicU64,
    /// The users that left this node's last socket since the last trim (whose number rows the
    /// trim may prune, if their history is gone).
    went_offline: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The users this node stored sends for since the last byte trim.
    written: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Configures a [`PgCluster`].
#[derive(Clone)]
#[must_use]
pub struct PgClusterBuilder {
    pool: PgPool,
    node: Option<String>,
    presence_flush_interval: Duration,
    node_heartbeat_interval: Duration,
    dead_node_after: Duration,
    dead_node_sweep_interval: Duration,
    history_write_timeout: Duration,
    history_catch_up_interval: Duration,
    max_join_reads: usize,
}

impl std::fmt::Debug for PgClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PgClusterBuilder")
            .field("node", &self.node)
            .field("presence_flush_interval", &self.presence_flush_interval)
            .field("node_heartbeat_interval", &self.node_heartbeat_interval)
            .field("dead_node_after", &self.dead_node_after)
            .field("dead_node_sweep_interval", &self.dead_node_sweep_interval)
            .field("history_write_timeout", &self.history_write_timeout)
            .field("history_catch_up_interval", &self.history_catch_up_interval)
            .field("max_join_reads", &self.max_join_reads)
            .finish_non_exhaustive()
    }
}

impl PgClusterBuilder {
    /// This node's name. Two live nodes must not share one. Default: `BOT_NODE_ID` when set
    /// (stable across restarts: a restarted node clears its old counts at once), otherwise the
    /// host's node id and the process id (a restarted process is a new node, and the old one's
    /// counts go at the dead-node time-out).
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// How often the presence counts that changed are written, in one statement (default 500 ms).
    pub fn presence_flush_interval(mut self, interval: Duration) -> Self {
        self.presence_flush_interval = interval;
        self
    }

    /// How often this node beats (default 5 s).
    pub fn node_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.node_heartbeat_interval = interval;
        self
    }

    /// How old a node's last beat may be before it counts as dead and its users' counts are
    /// removed (default 30 s), and how often this node looks for such nodes (default 10 s).
    pub fn dead_node(mut self, after: Duration, sweep_interval: Duration) -> Self {
        self.dead_node_after = after;
        self.dead_node_sweep_interval = sweep_interval;
        self
    }

    /// How long a send may wait for its messages to be stored in the history (and published)
    /// before it fails (default 5 s). The dead-node sweep interval also paces the trimming of
    /// the history to its bounds.
    pub fn history_write_timeout(mut self, timeout: Duration) -> Self {
        self.history_write_timeout = timeout;
        self
    }

    /// How often the node reads what its sockets' users have in the history beyond what
    /// reached them (default 5 s), besides when its fan-out listens again. The fan-out delivers
    /// at most once: a lost publish of a user's last message shows no hole to fill, and this
    /// bounds how long such a message waits.
    pub fn history_catch_up_interval(mut self, interval: Duration) -> Self {
        self.history_catch_up_interval = interval;
        self
    }

    /// How many joins of this node read the history at once (default 4); the others wait for
    /// them. Without a bound a storm of (re)connects takes every connection of the pool, and
    /// the pools of several nodes together pass the server's `max_connections`.
    pub fn max_join_reads(mut self, joins: usize) -> Self {
        self.max_join_reads = joins;
        self
    }

    /// Builds the cluster.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when an interval is zero, `max_join_reads` is zero, the dead-node
    /// time-out is not longer than the heartbeat interval, or the node name is empty.
    pub fn build(self) -> Result<PgCluster, Error> {
        let node = self.node.clone().unwrap_or_else(default_node);
        if node.is_empty() {
            return Err(Error::config("webchat: the node name is empty"));
        }
        let intervals = [
            self.history_write_timeout,
            self.history_catch_up_interval,
            self.presence_flush_interval,
            self.node_heartbeat_interval,
            self.dead_node_sweep_interval,
        ];
        if intervals.iter().any(Duration::is_zero)
            || self.dead_node_after <= self.node_heartbeat_interval
        {
            return Err(Error::config(
                "webchat: cluster intervals must be above zero and the dead-node time-out longer than the heartbeat",
            ));
        }
        if self.max_join_reads == 0 {
            return Err(Error::config("webchat: max_join_reads must be above zero"));
        }
        let (history_tx, history_rx) = tokio::sync::mpsc::channel(history::QUEUE_CAPACITY);
        Ok(PgCluster {
            inner: Arc::new(Inner {
                history_tx,
                history_rx: tokio::sync::Mutex::new(Some(history_rx)),
                epoch: tokio::sync::OnceCell::new(),
                join_reads: tokio::sync::Semaphore::new(self.max_join_reads),
                history_errors: AtomicU64::new(0),
                history_batches: AtomicU64::new(0),
                history_catch_ups: AtomicU64::new(0),
                history_retries: AtomicU64::new(0),
                seqs_pruned: AtomicU64::new(0),
                went_offline: std::sync::Mutex::default(),
                written: std::sync::Mutex::default(),
                pool: self.pool.clone(),
                channel: format!("{}_webchat", self.pool.schema()),
                node,
                config: self,
                listening: AtomicBool::new(false),
            }),
        })
    }
}

impl PgCluster {
    /// A cluster on `pool`'s database and schema. Its `LISTEN` connection, which cannot be a
    /// pooled one, is opened with the pool's settings and TLS
    /// ([`PgPool::connect_dedicated`](bot_core::pg::PgPool::connect_dedicated)).
    pub fn builder(pool: &PgPool) -> PgClusterBuilder {
        PgClusterBuilder {
            pool: pool.clone(),
            node: None,
            presence_flush_interval: Duration::from_millis(500),
            node_heartbeat_interval: Duration::from_secs(5),
            dead_node_after: Duration::from_secs(30),
            dead_node_sweep_interval: Duration::from_secs(10),
            history_write_timeout: Duration::from_secs(5),
            history_catch_up_interval: Duration::from_secs(5),
            max_join_reads: DEFAULT_MAX_JOIN_READS,
        }
    }

    /// Creates the presence, node, fan-out and history tables in the pool's schema. Idempotent, and safe
    /// from many processes at once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Database`] when PostgreSQL refuses or cannot be reached.
    pub async fn migrate(&self) -> Result<(), Error> {
        let conn = self.conn().await?;
        conn.batch_execute(&sql::migrate(self.inner.pool.schema()))
            .await
            .map_err(|e| db("creating the web chat tables", e))
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.inner.node
    }

    /// Whether this node's `LISTEN` connection is up (other nodes' messages reach it).
    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    /// A turn to read the history for a join (see [`PgClusterBuilder::max_join_reads`]).
    pub(crate) async fn join_read_turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .join_reads
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    async fn conn(&self) -> Result<bot_core::pg::PgConnection, Error> {
        self.inner.pool.get().await.map_err(|e| {
            Error::new(ErrorKind::Database, "webchat: no database connection").with_source(e)
        })
    }
}

/// `BOT_NODE_ID`, or bot-core's node id with the process id: unique among the processes of one
/// host.
fn default_node() -> String {
    let id = bot_core::telemetry::node_id();
    if std::env::var_os(bot_core::telemetry::NODE_ID_ENV).is_some() {
        id
    } else {
        format!("{id}-{}", std::process::id())
    }
}

fn db(what: &str, e: tokio_postgres::Error) -> Error {
    Error::new(ErrorKind::Database, format!("webchat: {what}")).with_source(e)
}
