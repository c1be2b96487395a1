//! [`JetStreamQueue`]: the handle, the state its tasks share, its counters and its shutdown.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::{JetStreamQueueBuilder, Settings};
use super::consume::Ack;
use super::order::Board;
use super::setup::{self, Names};
use crate::error::Error;

/// A durable [`Queue`](crate::Queue) on NATS JetStream, shared by any number of processes.
///
/// See the [module documentation](super) for how it works and what it guarantees.
pub struct JetStreamQueue {
    pub(super) inner: Arc<Inner>,
    owner: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for JetStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamQueue")
            .field("name", &self.inner.settings.name)
            .field("partitions", &self.inner.settings.partitions)
            .field("member", &self.inner.member)
            .finish_non_exhaustive()
    }
}

/// What the handle and the tasks share.
pub(super) struct Inner {
    pub(super) settings: Settings,
    pub(super) names: Names,
    pub(super) js: jetstream::Context,
    pub(super) client: async_nats::Client,
    /// The partitions' streams, by partition.
    pub(super) streams: Vec<stream::Stream>,
    pub(super) owners: kv::Store,
    /// This process's name in the owners' bucket.
    pub(super) member: String,
    pub(super) board: Mutex<Board<Ack>>,
    /// A lane became ready, or the queue closed.
    pub(super) delivered: Notify,
    /// Something the ownership task acts on: a leaving partition's last lease came back, the
    /// pulls stopped or resumed, shutdown.
    pub(super) owner_wake: Notify,
    pub(super) closed: CancellationToken,
    /// Pulls stopped: give every partition up once its leases are back.
    pub(super) stopping: AtomicBool,
    /// The ownership task gives everything up and ends.
    pub(super) shutdown: CancellationToken,
    pub(super) counters: Counters,
    /// Messages in the partitions' streams at the last look (every renewal).
    pub(super) stream_depth: AtomicU64,
}

impl Inner {
    pub(super) fn board(&self) -> MutexGuard<'_, Board<Ack>> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream of `partition` (below the partitions, as every partition here is).
    pub(super) fn stream(&self, partition: u32) -> &stream::Stream {
        &self.streams[partition as usize]
    }

    pub(super) fn count(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, AtomicOrdering::Relaxed);
    }
}

/// Counters of one process's queue, since it started.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) pushed: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) nacked: AtomicU64,
    pub(super) dead: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) released: AtomicU64,
    pub(super) partitions_taken: AtomicU64,
    pub(super) partitions_given_up: AtomicU64,
    pub(super) partitions_lost: AtomicU64,
}

/// A snapshot of [`JetStreamQueue::counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JetStreamCounters {
    /// Events stored by pushes of this process.
    pub pushed: u64,
    /// Events of pushes the stream's deduplication window dropped.
    pub duplicates: u64,
    /// Messages the partition consumers delivered to this process (copies included).
    pub delivered: u64,
    /// Events acknowledged.
    pub acked: u64,
    /// Events given back for a retry (`nak` with a delay).
    pub nacked: u64,
    /// Events moved to the dead letters.
    pub dead: u64,
    /// Completions of leases no longer held (the partition went to another process).
    pub stale: u64,
    /// Events given back unrun.
    pub released: u64,
    /// Partitions this process took ownership of.
    pub partitions_taken: u64,
    /// Partitions it gave up (rebalancing, shutdown).
    pub partitions_given_up: u64,
    /// Partitions it lost because a renewal failed.
    pub partitions_lost: u64,
}

impl JetStreamQueue {
    /// Starts configuring a queue on `client`'s server.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use bot_core::nats::{JetStreamQueue, async_nats};
    ///
    /// let client = async_nats::connect("127.0.0.1:4222").await?;
    /// let queue = JetStreamQueue::builder(client).name("mybot").partitions(32).build().await?;
    /// # let _ = queue; Ok(()) }
    /// ```
    pub fn builder(client: async_nats::Client) -> JetStreamQueueBuilder {
        JetStreamQueueBuilder::new(client)
    }

    pub(super) async fn start(
        client: async_nats::Client,
        settings: Settings,
    ) -> Result<Self, Error> {
        let js = jetstream::ContextBuilder::new()
            .timeout(settings.request_timeout)
            .build(client.clone());
        let names = Names::new(&settings.name);
        let (streams, owners) = setup::ensure(&js, &names, &settings).await?;
        let member = format!("{:x}-{:016x}", std::process::id(), fastrand::u64(..));
        let ordered = settings.ordering == crate::Ordering::PerConversation;
        let inner = Arc::new(Inner {
            settings,
            names,
            js,
            client,
            streams,
            owners,
            member,
            board: Mutex::new(Board::new(ordered)),
            delivered: Notify::new(),
            owner_wake: Notify::new(),
            closed: CancellationToken::new(),
            stopping: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            counters: Counters::default(),
            stream_depth: AtomicU64::new(0),
        });
        // One long-lived task per queue: it claims, renews and gives up partitions and runs
        // their consumers; per-message work runs under the supervisor.
        #[allow(clippy::disallowed_methods)]
        let owner = inner
            .settings
            .consume
            .then(|| tokio::spawn(super::owner::run(inner.clone())));
        Ok(Self {
            inner,
            owner: Mutex::new(owner),
        })
    }

    /// The counters of this process's queue.
    pub fn counters(&self) -> JetStreamCounters {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(AtomicOrdering::Relaxed);
        JetStreamCounters {
            pushed: get(&c.pushed),
            duplicates: get(&c.duplicates),
            delivered: get(&c.delivered),
            acked: get(&c.acked),
            nacked: get(&c.nacked),
            dead: get(&c.dead),
            stale: get(&c.stale),
            released: get(&c.released),
            partitions_taken: get(&c.partitions_taken),
            partitions_given_up: get(&c.partitions_given_up),
            partitions_lost: get(&c.partitions_lost),
        }
    }

    /// The partitions this process owns now, in order.
    pub fn owned_partitions(&self) -> Vec<u32> {
        (0..self.inner.settings.partitions)
            .filter(|&p| self.inner.board().owns_any(p))
            .collect()
    }

    /// Gives every partition up (deleting this process's consumers and its claims in the
    /// bucket, so that other processes take over at once rather than after the ownership
    /// lease) and stops the queue's task. Call it after the bot stopped: events still leased
    /// are given up with their partition and run again elsewhere.
    pub async fn shutdown(&self) {
        self.inner.closed.cancel();
        self.inner.delivered.notify_waiters();
        self.inner.shutdown.cancel();
        self.inner.owner_wake.notify_one();
        let task = self.owner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let limit = self.inner.settings.request_timeout * 2 + Duration::from_secs(1);
            if tokio::time::timeout(limit, task).await.is_err() {
                tracing::warn!("nats: giving the partitions up took too long; they expire instead");
            }
        }
    }
}

impl Drop for JetStreamQueue {
    fn drop(&mut self) {
        self.inner.closed.cancel();
        self.inner.shutdown.cancel();
        self.inner.owner_wake.notify_one();
    }
}
