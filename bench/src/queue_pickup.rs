//! `queue-pickup`: how long an idle `PgQueue` takes to hand a new event to a waiting puller of
//! another process.
//!
//! Two queues on one schema, each with its own pools and its own `LISTEN` connection, as two
//! processes have: one waits in `pull`, the other pushes one event; the clock runs from the
//! push's start (and, separately, from its answer: `push_batch` returning) to `pull` returning.
//! An idle queue's push commits before its flush to disk is over and is answered after it, so
//! the pickup usually comes before the answer (0 from it).
//! The puller only learns of the event through PostgreSQL (the pusher's `NOTIFY`, or the poll as
//! the fallback), as a worker process of a webhook process does. Each push comes `--gap` after
//! the puller began to wait, so that every sample starts from an idle puller.

use std::time::{Duration, Instant};

use bot_core::pg::{self, PgPool, PgQueue};
use bot_core::{Event, Platform, Queue as _};
use serde::Serialize;

use crate::load::{Percentiles, histogram};
use crate::record::{Row, Verdict};

/// The scenario's own schema, dropped and migrated afresh.
const SCHEMA: &str = "botload_queue_pickup";
/// Goals of the issue: p50 and p99 from the push's start, microseconds.
const GOAL_P50_MICROS: u64 = 1_500;
const GOAL_P99_MICROS: u64 = 5_000;

/// `botload scenario queue-pickup`.
#[derive(Debug, clap::Args)]
pub(crate) struct PickupArgs {
    /// Events pushed, one at a time.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..))]
    samples: u32,
    /// How long the puller waits idle before each push (`20ms`).
    #[arg(long, default_value = "20ms", value_parser = crate::parse_duration)]
    gap: Duration,
    /// The database (default: `DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/postgres).
    #[arg(long)]
    database_url: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pub(crate) record: crate::RecordArgs,
}

/// What a run measured, microseconds.
#[derive(Debug, Clone, Serialize)]
struct Pickup {
    samples: u32,
    /// From the push's start to the puller's `pull` returning.
    from_push_us: Percentiles,
    /// From the push's answer (`push_batch` returning) to `pull` returning, 0 when the pull came
    /// first.
    from_commit_us: Percentiles,
    /// The push itself: from its start to `push_batch` returning (its statement and its commit,
    /// the flush to disk behind it, the hand-overs around them).
    push_us: Percentiles,
}

/// Runs the scenario and makes its row.
pub(crate) async fn queue_pickup(args: &PickupArgs) -> Result<Row, String> {
    let url = args
        .database_url
        .clone()
        .or_else(|| std::env::var(pg::DATABASE_URL_ENV).ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let db = |what: &'static str| move |e: bot_core::Error| format!("{what}: {e}");
    let admin = PgPool::builder(&url)
        .max_size(1)
        .application_name("botload")
        .build()
        .map_err(db("the database url"))?;
    let conn = match admin.get().await {
        Ok(conn) => conn,
        Err(e) => {
            crate::scenario::ensure_postgres(&url, &e.to_string())?;
            admin.get().await.map_err(db("connecting"))?
        }
    };
    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await
        .map_err(|e| format!("dropping {SCHEMA}: {e}"))?;
    // Two "processes": pools, LISTEN connections and queues of their own.
    let process = |name: &str| {
        PgPool::builder(&url)
            .schema(SCHEMA)
            .max_size(4)
            .application_name(name)
            .build()
            .map_err(db("the pool"))
    };
    let (pushing, pulling) = (process("botload pusher")?, process("botload puller")?);
    pg::migrate(&pushing).await.map_err(db("migrating"))?;
    let pusher = PgQueue::builder(&pushing)
        .build()
        .map_err(db("the queue"))?;
    let puller = PgQueue::builder(&pulling)
        .build()
        .map_err(db("the queue"))?;
    let demo = Platform::from_static("demo");
    let (mut from_push, mut from_commit, mut pushes) = (histogram(), histogram(), histogram());
    let outcome = async {
        for i in 0..args.samples {
            let event = Event::text(demo.clone(), format!("conv-{}", i % 100), "hi")
                .with_id(format!("pickup-{i}"));
            // The puller waits first; the push comes after the gap.
            let pull = async {
                let got =
                    tokio::time::timeout(args.gap + Duration::from_secs(10), puller.pull(1)).await;
                (got, Instant::now())
            };
            let push = async {
                tokio::time::sleep(args.gap).await;
                let start = Instant::now();
                let report = pusher.push_batch(vec![event]).await;
                (report, start, Instant::now())
            };
            let ((pulled, arrived), (pushed, start, committed)) = tokio::join!(pull, push);
            pushed.map_err(db("pushing"))?;
            let deliveries = pulled
                .map_err(|_| format!("event {i} not picked up within 10 s"))?
                .map_err(db("pulling"))?;
            let leases: Vec<_> = deliveries.iter().map(|d| d.lease).collect();
            puller.ack(&leases).await.map_err(db("acknowledging"))?;
            let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
            let _ = from_push.record(micros(arrived - start));
            let _ = from_commit.record(micros(arrived.saturating_duration_since(committed)));
            let _ = pushes.record(micros(committed - start));
        }
        Ok::<(), String>(())
    }
    .await;
    pusher.shutdown().await;
    puller.shutdown().await;
    outcome?;
    let pickup = Pickup {
        samples: args.samples,
        from_push_us: Percentiles::of(&from_push),
        from_commit_us: Percentiles::of(&from_commit),
        push_us: Percentiles::of(&pushes),
    };
    if args.json {
        crate::print_json(&pickup);
    }
    Ok(row(&pickup))
}

fn row(p: &Pickup) -> Row {
    let ms = |us: u64| us as f64 / 1000.0;
    let (push, commit, itself) = (&p.from_push_us, &p.from_commit_us, &p.push_us);
    let met = push.p50 <= GOAL_P50_MICROS && push.p99 <= GOAL_P99_MICROS;
    Row {
        name: "queue-pickup (idle PgQueue, another process's push)".to_owned(),
        result: format!(
            "from the push's start p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; from its answer \
             p50 {:.2} ms, p99 {:.2} ms; the push itself p50 {:.2} ms ({} samples)",
            ms(push.p50),
            ms(push.p99),
            ms(push.max),
            ms(commit.p50),
            ms(commit.p99),
            ms(itself.p50),
            p.samples
        ),
        goal: format!(
            "p50 ≤ {} ms, p99 ≤ {} ms",
            ms(GOAL_P50_MICROS),
            ms(GOAL_P99_MICROS)
        ),
        verdict: if met { Verdict::Met } else { Verdict::Missed },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_goal_is_on_the_latency_from_the_push() {
        let percentiles = |p50, p99| Percentiles {
            p50,
            p90: p50,
            p99,
            p999: p99,
            max: p99,
        };
        let pickup = |push, commit| Pickup {
            samples: 100,
            from_push_us: push,
            from_commit_us: commit,
            push_us: percentiles(700, 2_500),
        };
        let met = row(&pickup(percentiles(1_200, 4_000), percentiles(400, 900)));
        assert_eq!(met.verdict, Verdict::Met);
        assert!(met.result.contains("p50 1.20 ms"), "{}", met.result);
        assert!(
            met.result.contains("the push itself p50 0.70 ms"),
            "{}",
            met.result
        );
        let slow_tail = row(&pickup(percentiles(1_200, 6_000), percentiles(400, 900)));
        assert_eq!(slow_tail.verdict, Verdict::Missed);
        let slow = row(&pickup(percentiles(1_600, 4_000), percentiles(400, 900)));
        assert_eq!(slow.verdict, Verdict::Missed);
    }
}
