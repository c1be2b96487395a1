//! `queue-drain --backend jetstream`: the events pushed into a `JetStreamQueue` beforehand (by
//! a push-only queue of botload's), drained by `queue-worker` processes (`QUEUE=jetstream`,
//! `HANDLER=noop`); the clock runs from their start to the partitions' streams being empty.
//! Then, in the same run, the floor: the same events published to a plain work-queue stream and
//! drained by as many bare pull consumers (one connection each, one shared durable consumer)
//! acknowledging every message, timed the same way.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bot_core::nats::{JetStreamQueue, NATS_URL_ENV, async_nats};
use bot_core::{Event, Queue as _};
use futures::StreamExt as _;

use super::clock::POLL;
use super::{
    Backend, DEMO, DrainOrdering, Drained, QueueDrainArgs, WorkerCounts, cpu_between, progress,
    server_cpu, stop, summary,
};
use crate::scenario::{Started, free_port, sibling_binary, usage};

/// The queue the scenario deletes and recreates for every run; nothing else uses it.
const QUEUE: &str = "botload_queue_drain";
/// The plain stream of the bare consumers.
const BARE: &str = "botload_bare";
/// The ownership lease of the workers: short, so a run's start-up split settles quickly.
const LEASE_MS: u64 = 4000;

fn nats_url(args: &QueueDrainArgs) -> String {
    args.nats_url
        .clone()
        .or_else(|| std::env::var(NATS_URL_ENV).ok())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned())
}

async fn connect(url: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .map_err(|e| e.to_string())
}

pub(super) async fn drain_all(args: &QueueDrainArgs) -> Result<Vec<Drained>, String> {
    let url = nats_url(args);
    let worker = sibling_binary("queue-worker")?;
    let client = match connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            crate::scenario::ensure_nats(&url, &e)?;
            connect(&url)
                .await
                .map_err(|e| format!("NATS at {url} does not answer after starting it: {e}"))?
        }
    };
    let mut results = Vec::new();
    for &events in &args.events {
        for &processes in &args.processes {
            let drained = drain_once(args, &url, &client, &worker, events, processes).await?;
            if !args.json {
                eprintln!("{}", summary(&drained));
            }
            results.push(drained);
        }
    }
    Ok(results)
}

/// The names of the streams that hold subjects matching `subject`.
async fn streams_of(js: &async_nats::jetstream::Context, subject: &str) -> Vec<String> {
    let listed: Result<serde_json::Value, _> = js
        .request("STREAM.NAMES", &serde_json::json!({ "subject": subject }))
        .await;
    listed
        .ok()
        .and_then(|v| v.get("streams").cloned())
        .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
        .unwrap_or_default()
}

/// Deletes the streams of earlier runs: every partition's, whatever their partitions were.
async fn reset(js: &async_nats::jetstream::Context) {
    let mut streams = streams_of(js, &format!("{QUEUE}.p.*")).await;
    streams.extend([
        QUEUE.to_owned(),
        format!("{QUEUE}_dead"),
        format!("KV_{QUEUE}_owners"),
        BARE.to_owned(),
    ]);
    for stream in streams {
        let _ = js.delete_stream(&stream).await;
    }
}

/// The messages in the streams holding subjects matching `subject`: one request per page of
/// the server's stream list (256 streams); an error when a stream did not answer in time.
async fn messages_in(js: &async_nats::jetstream::Context, subject: &str) -> Result<u64, String> {
    let mut messages = 0;
    let mut offset = 0;
    loop {
        let page: serde_json::Value = js
            .request(
                "STREAM.LIST",
                &serde_json::json!({ "offset": offset, "subject": subject }),
            )
            .await
            .map_err(|e| format!("listing the streams of {subject}: {e}"))?;
        if let Some(error) = page.get("error") {
            return Err(format!("listing the streams of {subject}: {error}"));
        }
        if page
            .get("missing")
            .and_then(|m| m.as_array())
            .is_some_and(|m| !m.is_empty())
        {
            return Err(format!("some streams of {subject} did not answer the list"));
        }
        let streams = page
            .get("streams")
            .and_then(|s| s.as_array())
            .ok_or_else(|| format!("no stream holds {subject}"))?;
        messages += streams
            .iter()
            .filter_map(|s| s.pointer("/state/messages").and_then(|m| m.as_u64()))
            .sum::<u64>();
        let field = |name: &str| page.get(name).and_then(|v| v.as_u64()).unwrap_or(0);
        let next = if field("limit") > 0 {
            field("offset") + field("limit")
        } else {
            offset + streams.len() as u64
        };
        if streams.is_empty() || next >= field("total") {
            return Ok(messages);
        }
        offset = next;
    }
}

fn events_of(args: &QueueDrainArgs, events: u64) -> impl Iterator<Item = Event> + '_ {
    (0..events).map(|i| {
        Event::text(DEMO, format!("conv-{}", i % args.conversations), "hi")
            .with_id(format!("drain-{i}"))
    })
}

/// Polls the message count of the streams holding `subject` every [`POLL`] until it is 0;
/// returns the time to empty and to the first message gone, from `started`.
async fn wait_empty(
    js: &async_nats::jetstream::Context,
    subject: &str,
    events: u64,
    started: Instant,
    timeout: Duration,
    workers: &mut [Started],
    bar: &indicatif::ProgressBar,
) -> Result<(Duration, Duration), String> {
    let mut first_gone = None;
    loop {
        let left = messages_in(js, subject).await?;
        let now = Instant::now();
        if first_gone.is_none() && left < events {
            first_gone = Some(now - started);
        }
        bar.set_position(events.saturating_sub(left));
        if left == 0 {
            return Ok((now - started, first_gone.unwrap_or(now - started)));
        }
        for w in workers.iter_mut() {
            if let Ok(Some(status)) = w.0.try_wait() {
                return Err(format!(
                    "a worker stopped before the queue was empty: {status}"
                ));
            }
        }
        if now > started + timeout {
            return Err(format!("{left} events still queued after {timeout:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn drain_once(
    args: &QueueDrainArgs,
    url: &str,
    client: &async_nats::Client,
    worker: &std::path::Path,
    events: u64,
    processes: u16,
) -> Result<Drained, String> {
    let js = async_nats::jetstream::new(client.clone());
    reset(&js).await;
    let loader = JetStreamQueue::builder(client.clone())
        .name(QUEUE)
        .partitions(args.partitions)
        .ownership_lease(Duration::from_millis(LEASE_MS))
        // Each partition holds its share of the capacity: room for all of them in any one.
        .capacity(
            usize::try_from(events.saturating_mul(u64::from(args.partitions)))
                .unwrap_or(usize::MAX)
                .max(100_000),
        )
        .consume(false)
        .build()
        .await
        .map_err(|e| format!("creating the queue: {e}"))?;
    let loading = Instant::now();
    let all: Vec<Event> = events_of(args, events).collect();
    for chunk in all.chunks(1000) {
        let report = loader
            .push_batch(chunk.to_vec())
            .await
            .map_err(|e| format!("loading the events: {e}"))?;
        if report.accepted != chunk.len() {
            return Err(format!(
                "a batch of {} loaded {}",
                chunk.len(),
                report.accepted
            ));
        }
    }
    let load_seconds = loading.elapsed().as_secs_f64();
    loader.shutdown().await;

    let bar = progress(args, events, processes);
    let nats_before = server_cpu("nats-server");
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..processes {
        let port = free_port()?;
        let child = Command::new(worker)
            .env("QUEUE", "jetstream")
            .env(NATS_URL_ENV, url)
            .env("NATS_QUEUE", QUEUE)
            .env("PARTITIONS", args.partitions.to_string())
            .env("LEASE_MS", LEASE_MS.to_string())
            .env("BOT_ADDR", format!("127.0.0.1:{port}"))
            .env("HANDLER", "noop")
            .env(
                "ORDERING",
                match args.ordering {
                    DrainOrdering::PerConversation => "per-conversation",
                    DrainOrdering::Unordered => "unordered",
                },
            )
            .env("MAX_IN_FLIGHT", args.max_in_flight.to_string())
            .env("PREFETCH", args.prefetch.clamp(1, 512).to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", worker.display()))?;
        workers.push(Started(child));
    }
    let (elapsed, first_gone) = wait_empty(
        &js,
        &format!("{QUEUE}.p.*"),
        events,
        started,
        args.timeout,
        &mut workers,
        &bar,
    )
    .await?;
    bar.finish_and_clear();
    let nats_after = server_cpu("nats-server");
    let worker_usage: Vec<_> = workers.iter().map(|w| usage(w.0.id())).collect();
    let workers_cpu_seconds = worker_usage.iter().flatten().map(|u| u.cpu_seconds).sum();
    let worker_peak_rss_kib = worker_usage
        .iter()
        .flatten()
        .map(|u| u.peak_rss_kib)
        .max()
        .unwrap_or(0);
    let mut counts = WorkerCounts::default();
    for mut w in workers {
        counts.add(&stop(&mut w).await?);
    }
    let dead = js
        .get_stream(format!("{QUEUE}_dead"))
        .await
        .map_err(|e| format!("reading the dead letters: {e}"))?
        .info()
        .await
        .map_err(|e| format!("reading the dead letters: {e}"))?
        .state
        .messages;
    if dead > 0 {
        return Err(format!("{dead} events were dead-lettered"));
    }
    if counts.handled < events {
        return Err(format!(
            "the queue is empty but the workers report {} handled events of {events}",
            counts.handled
        ));
    }
    let bare = bare_consumers(&js, url, args, events, processes).await?;
    let seconds = elapsed.as_secs_f64();
    let steady = (elapsed - first_gone).as_secs_f64();
    Ok(Drained {
        backend: Backend::Jetstream,
        events,
        processes,
        ordering: args.ordering,
        load_seconds,
        seconds,
        events_per_second: events as f64 / seconds,
        first_gone_seconds: first_gone.as_secs_f64(),
        steady_events_per_second: if steady > 0.0 {
            events as f64 / steady
        } else {
            f64::NAN
        },
        handled: counts.handled,
        duplicates: counts.handled - events,
        claims: 0,
        stale: counts.stale,
        workers_cpu_seconds,
        worker_peak_rss_kib,
        postgres_backends_cpu_seconds: None,
        postgres_all_cpu_seconds: match (nats_before, nats_after) {
            (Some(before), Some(after)) => Some(cpu_between(&before, &after)),
            _ => None,
        },
        bare_consumer_events_per_second: Some(bare),
        // The JetStream clock sees the end only.
        start_events_per_second: None,
        end_events_per_second: None,
        graphile_worker_events_per_second: None,
        through_webhooks: false,
    })
}

/// The floor: the same events' JSON on a plain work-queue stream (file storage, defaults),
/// drained by `consumers` pull consumers on connections of their own, each acknowledging every
/// message. Events/s from their start to the stream being empty.
async fn bare_consumers(
    js: &async_nats::jetstream::Context,
    url: &str,
    args: &QueueDrainArgs,
    events: u64,
    consumers: u16,
) -> Result<f64, String> {
    use async_nats::jetstream::{consumer, stream};
    let stream = js
        .create_stream(stream::Config {
            name: BARE.to_owned(),
            subjects: vec![format!("{BARE}.>")],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating {BARE}: {e}"))?;
    let mut acks = Vec::with_capacity(1000);
    for (i, event) in events_of(args, events).enumerate() {
        let payload = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        let subject = format!("{BARE}.{}", i % 16);
        acks.push(
            js.publish(subject, payload.into())
                .await
                .map_err(|e| format!("loading {BARE}: {e}"))?,
        );
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await.map_err(|e| format!("loading {BARE}: {e}"))?;
            }
        }
    }
    for ack in acks {
        ack.await.map_err(|e| format!("loading {BARE}: {e}"))?;
    }
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bare".to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating the bare consumer: {e}"))?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let url = url.to_owned();
        // One connection per consumer, as separate processes would have; they end with the
        // run (the stream is deleted, their pulls fail).
        #[allow(clippy::disallowed_methods)]
        tasks.push(tokio::spawn(async move {
            let Ok(own) = connect(&url).await else { return };
            let js = async_nats::jetstream::new(own);
            let Ok(consumer) = js
                .get_consumer_from_stream::<consumer::pull::Config, _, _>("bare", BARE)
                .await
            else {
                return;
            };
            let Ok(mut messages) = consumer.messages().await else {
                return;
            };
            while let Some(Ok(message)) = messages.next().await {
                if message.ack().await.is_err() {
                    return;
                }
            }
        }));
    }
    let bar = indicatif::ProgressBar::hidden();
    let result = wait_empty(
        js,
        &format!("{BARE}.>"),
        events,
        started,
        args.timeout,
        &mut [],
        &bar,
    )
    .await;
    for task in &tasks {
        task.abort();
    }
    let _ = js.delete_stream(BARE).await;
    let (elapsed, _) = result?;
    Ok(events as f64 / elapsed.as_secs_f64())
}
