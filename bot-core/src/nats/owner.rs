//! Partition ownership: which process consumes which partition.
//!
//! Each process keeps a key `m.<member>` in the owners' bucket alive and counts the live ones;
//! its fair share is `ceil(partitions / members)`. It claims free partitions up to that share
//! by creating `p.<k>` (which succeeds for one process only, and only once the key is gone),
//! renews its claims every quarter of the ownership lease by revision-checked updates, and
//! gives up partitions beyond its share (another process joined) once their leased events are
//! back. The bucket's `max_age` is the ownership lease: a crashed process's keys expire and its
//! partitions are claimed by others. A process whose renewal fails has lost the partition and
//! drops it at once; its leases are stale from then on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::handle::Inner;
use super::setup::Names;

/// A partition this process owns.
struct Owned {
    revision: u64,
    /// The KV revision the ownership was won at: the generation leases carry.
    generation: u64,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn key(partition: u32) -> String {
    format!("p.{partition}")
}

/// The ownership task: runs until shutdown, then gives every partition up.
pub(super) async fn run(inner: Arc<Inner>) {
    let mut owned: HashMap<u32, Owned> = HashMap::new();
    let quarter = inner.settings.ownership_lease / 4;
    let mut last_renewal = tokio::time::Instant::now() - quarter;
    let mut members = 1usize;
    // New members are seen at once (not only at the next renewal), so that a process that
    // joins gets its share quickly; expired ones are seen by the count at each renewal.
    let mut joins = inner.owners.watch("m.>").await.ok();
    loop {
        if inner.shutdown.is_cancelled() {
            break;
        }
        if last_renewal.elapsed() >= quarter {
            last_renewal = tokio::time::Instant::now();
            renew(&inner, &mut owned).await;
            members = heartbeat(&inner).await.unwrap_or(members);
            // Bounded: a slow count (a cluster's stream leaders answer a list in up to 4 s a
            // page) must not delay the next renewal past the ownership lease.
            if let Ok(Ok(depth)) =
                tokio::time::timeout(quarter / 2, super::setup::depth(&inner.js, &inner.names))
                    .await
            {
                inner.stream_depth.store(depth, AtomicOrdering::Relaxed);
            }
        }
        let stopping = inner.stopping.load(AtomicOrdering::Acquire);
        let partitions = inner.settings.partitions as usize;
        let share = if stopping {
            0
        } else {
            partitions.div_ceil(members.max(1))
        };
        // Beyond the share: leave the highest partitions, each once its leases are back.
        let mut mine: Vec<u32> = owned.keys().copied().collect();
        mine.sort_unstable();
        let stays = {
            let mut board = inner.board();
            mine.iter()
                .take(share)
                .fold(false, |ready, &p| board.stay(p) | ready)
        };
        if stays {
            inner.delivered.notify_waiters();
        }
        for &partition in mine.iter().skip(share).rev() {
            let idle = inner.board().leave(partition);
            if idle && let Some(o) = owned.remove(&partition) {
                give_up(&inner, partition, o).await;
            }
        }
        if owned.len() < share {
            claim(&inner, &mut owned, share).await;
        }
        let settled = owned.len() == share;
        let wait = if settled {
            quarter.saturating_sub(last_renewal.elapsed())
        } else {
            // Claims of partitions freed by others, or a leaving partition's last lease.
            Duration::from_millis(100).min(quarter)
        };
        let joined = async {
            match joins.as_mut() {
                Some(watch) => watch.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = inner.shutdown.cancelled() => {}
            () = inner.owner_wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            entry = joined => match entry {
                Some(Ok(entry))
                    if entry.operation == kv::Operation::Put
                        && entry.key != format!("m.{}", inner.member) =>
                {
                    members = count_members(&inner).await.unwrap_or(members);
                }
                Some(_) => {}
                // The watch ended (the connection was lost): count at renewals only until the
                // next start.
                None => joins = None,
            },
        }
    }
    // An unread watch would hold its push consumer's flow control.
    drop(joins);
    for (partition, o) in owned.drain() {
        give_up(&inner, partition, o).await;
    }
    let _ = inner.owners.delete(format!("m.{}", inner.member)).await;
}

/// Renews every claim; drops the partitions whose renewal fails (the key expired or another
/// process holds it).
async fn renew(inner: &Arc<Inner>, owned: &mut HashMap<u32, Owned>) {
    let mut lost = Vec::new();
    for (&partition, o) in owned.iter_mut() {
        match inner
            .owners
            .update(key(partition), inner.member.clone().into(), o.revision)
            .await
        {
            Ok(revision) => o.revision = revision,
            Err(e) => {
                tracing::warn!(partition, error = %e, "nats: lost a partition (renewal failed); its events run elsewhere");
                lost.push(partition);
            }
        }
    }
    for partition in lost {
        if let Some(o) = owned.remove(&partition) {
            o.stop.cancel();
            inner.board().drop_partition(partition);
            inner.count(&inner.counters.partitions_lost, 1);
        }
    }
}

/// Keeps this process's member key alive; returns how many members are live.
async fn heartbeat(inner: &Inner) -> Option<usize> {
    inner
        .owners
        .put(format!("m.{}", inner.member), bytes::Bytes::new())
        .await
        .map_err(|e| tracing::warn!(error = %e, "nats: renewing this process's membership failed"))
        .ok()?;
    count_members(inner).await
}

/// How many members are live (their keys not expired).
async fn count_members(inner: &Inner) -> Option<usize> {
    let mut keys = inner.owners.keys().await.ok()?;
    let mut members = 0;
    while let Some(k) = keys.next().await {
        if k.ok()?.starts_with("m.") {
            members += 1;
        }
    }
    Some(members.max(1))
}

/// Claims free partitions until `share` are owned, starting at a place of this member's own so
/// that processes starting together try different keys first.
async fn claim(inner: &Arc<Inner>, owned: &mut HashMap<u32, Owned>, share: usize) {
    let partitions = inner.settings.partitions;
    let start = (fastrand::u32(..) % partitions) as usize;
    for i in 0..partitions as usize {
        if owned.len() >= share || inner.shutdown.is_cancelled() {
            return;
        }
        let partition = ((start + i) % partitions as usize) as u32;
        if owned.contains_key(&partition) {
            continue;
        }
        let Ok(revision) = inner
            .owners
            .create(key(partition), inner.member.clone().into())
            .await
        else {
            continue;
        };
        match super::consume::create(inner, partition, revision).await {
            Ok(consumer) => {
                inner.board().own(partition, revision);
                let stop = CancellationToken::new();
                // One long-lived task per owned partition, ended when it is given up.
                #[allow(clippy::disallowed_methods)]
                let task = tokio::spawn(super::consume::run(
                    inner.clone(),
                    partition,
                    revision,
                    consumer,
                    stop.clone(),
                ));
                inner.count(&inner.counters.partitions_taken, 1);
                tracing::debug!(partition, revision, "nats: partition claimed");
                owned.insert(
                    partition,
                    Owned {
                        revision,
                        generation: revision,
                        stop,
                        task,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(partition, error = %e, "nats: claimed a partition but cannot consume it; giving it back");
                let _ = inner
                    .owners
                    .delete_expect_revision(key(partition), Some(revision))
                    .await;
            }
        }
    }
}

/// Waits (a second at most) until the server applied the acknowledgements this process sent
/// on `consumer`: it queues them per consumer, and deleting the consumer first would drop
/// them, so that their events ran again at the next owner. Done when no more is pending than
/// the `held` messages left unacknowledged, or when the count stops falling.
async fn settle_acks(inner: &Inner, partition: u32, consumer: &str, held: usize) {
    if let Err(e) = inner.client.flush().await {
        tracing::debug!(error = %e, "nats: flushing before giving a partition up");
    }
    let mut last = usize::MAX;
    for _ in 0..50 {
        let Ok(info) = inner.stream(partition).consumer_info(consumer).await else {
            return;
        };
        let pending = info.num_ack_pending;
        if pending <= held || pending == last {
            return;
        }
        last = pending;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops consuming `partition`, forgets what it held, deletes the consumer and the claim, so
/// that another process takes it over at once.
async fn give_up(inner: &Inner, partition: u32, o: Owned) {
    o.stop.cancel();
    let _ = o.task.await;
    let held = inner.board().drop_partition(partition);
    let consumer = Names::consumer(partition, o.generation);
    settle_acks(inner, partition, &consumer, held).await;
    if let Err(e) = inner.stream(partition).delete_consumer(&consumer).await {
        tracing::debug!(partition, error = %e, "nats: deleting a given-up partition's consumer");
    }
    if let Err(e) = inner
        .owners
        .delete_expect_revision(key(partition), Some(o.revision))
        .await
    {
        tracing::debug!(partition, error = %e, "nats: releasing a partition's claim; it expires instead");
    }
    inner.count(&inner.counters.partitions_given_up, 1);
}
