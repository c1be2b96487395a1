//! `QUEUE=jetstream`: the same webhook and handlers on a [`JetStreamQueue`] instead of
//! PostgreSQL. Settings: `NATS_URL` (default `nats://127.0.0.1:4222`), `NATS_QUEUE` (the
//! queue's name, default `queue_worker`), `PARTITIONS` (default 16), `LEASE_MS` (the
//! ownership lease, default 10000), `PREFETCH` (messages per pull request, default 256),
//! `PARTITION_IN_FLIGHT` (default 512), plus `MAX_IN_FLIGHT`, `ORDERING` and `HANDLER` as for
//! PostgreSQL. The handler is the no-op (`HANDLER=noop`) or a `WORK_MS` wait: effects are
//! recorded in PostgreSQL only by the PostgreSQL worker.

use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use bot_core::nats::{JetStreamQueue, NATS_URL_ENV, async_nats};
use bot_core::{Bot, BoxError, Context, Error, ErrorKind, Event, Limits};

use crate::settings::{Settings, Work};
use crate::{JsonWebhook, NOOP_HANDLED, noop};

/// The simulated call without the database.
async fn wait(cx: Context, _event: Event) -> Result<(), BoxError> {
    let work = cx
        .state::<Work>()
        .map_or(Duration::ZERO, |work| work.normal);
    tokio::select! {
        () = tokio::time::sleep(work) => Ok(()),
        () = cx.cancellation().cancelled() => Err("cancelled".into()),
    }
}

pub(crate) async fn run(settings: &Settings, limits: Limits) -> anyhow::Result<()> {
    // ANCHOR: jetstream_setup
    let url = std::env::var(NATS_URL_ENV).unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let client = async_nats::connect(&url).await.map_err(|e| {
        Error::new(ErrorKind::Queue, format!("cannot connect to NATS at {url}")).with_source(e)
    })?;
    let queue = Arc::new(
        JetStreamQueue::builder(client)
            .name(std::env::var("NATS_QUEUE").unwrap_or_else(|_| "queue_worker".to_owned()))
            .partitions(settings.partitions)
            .ownership_lease(settings.lease.unwrap_or(Duration::from_secs(10)))
            .fetch_batch(settings.prefetch.unwrap_or(256))
            .partition_in_flight(settings.partition_in_flight)
            .limits(&limits)
            .capacity(settings.queue_capacity.unwrap_or(limits.queue_capacity))
            .build()
            .await?,
    );
    // ANCHOR_END: jetstream_setup
    let noop_handler = settings.noop_handler;
    let builder = Bot::builder()
        .adapter(JsonWebhook)
        .limits(limits)
        .state(settings.work)
        .queue(queue.clone());
    let bot = if noop_handler {
        builder.handler(noop).build()?
    } else {
        builder.handler(wait).build()?
    };
    // ANCHOR: jetstream_serve
    let report = bot.serve(settings.addr.as_str()).await?;
    // Gives this process's partitions up at once, for the others.
    queue.shutdown().await;
    // ANCHOR_END: jetstream_serve
    tracing::info!(?report, counters = ?queue.counters(), "worker stopped");
    if noop_handler {
        let c = queue.counters();
        println!(
            "handled={} delivered={} acked={} stale={} released={} partitions_taken={}",
            NOOP_HANDLED.load(AtomicOrdering::Relaxed),
            c.delivered,
            c.acked,
            c.stale,
            c.released,
            c.partitions_taken
        );
    }
    Ok(())
}
