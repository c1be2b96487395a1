//! `queue-drain`: events loaded into the PostgreSQL queue beforehand, then drained by
//! `queue-worker` processes with a no-op handler (`HANDLER=noop`). `--backend jetstream` does
//! the same on NATS JetStream (`queue_drain/nats.rs`), with a bare acking pull consumer
//! measured in the same run; `--graphile-worker` drains as many jobs with graphile-worker on the
//! same database right after each PostgreSQL run (`queue_drain/graphile.rs`);
//! `--through-webhooks` posts the events to the workers' webhook while they run instead of
//! loading them beforehand: end to end, webhook to handler (`queue_drain/webhooks.rs`).
//!
//! (About 700 lines: the arguments, the result type, its table, row and goals are shared by
//! both backends and stay together; each backend's drain, the clock, graphile-worker and the
//! webhook load are files of their own, the tests too.)
//!
//! For each combination of `--events` and `--processes`: the scenario's own schema is dropped and
//! migrated afresh, the events are loaded in one `COPY` ([`bot_core::pg::import`]), the workers
//! start, and the clock runs from their start to the queue table being empty (polled through
//! its primary key). Then the workers stop (SIGTERM) and print how many events they handled:
//! with an empty queue and no dead letters every event ran at least once, so a sum above the
//! count is the number of events that ran twice.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bot_core::pg::{self, PgPool};
use bot_core::{Event, Platform};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

mod clock;
mod graphile;
mod nats;
mod webhooks;
mod workers;

use workers::{WorkerCounts, cpu_between, server_cpu, stop};

use crate::RecordArgs;
use crate::record::{Row, Verdict};
use crate::scenario::{Started, free_port, sibling_binary, thousands, usage};

/// The schema the scenario drops and recreates for every run; nothing else uses it.
const SCHEMA: &str = "botload_queue_drain";
/// The events/s the two-process runs aim at (the best PostgreSQL queues on this machine).
const GOAL_EVENTS_PER_SECOND: f64 = 60_000.0;
/// The share of a bare acking JetStream consumer's rate the JetStream queue aims at.
const BARE_CONSUMER_RATIO: f64 = 0.7;
/// The share of graphile-worker's batched drain, in the same run, the two-process runs aim at.
const GRAPHILE_WORKER_RATIO: f64 = 1.0;
/// How much slower the last fifth of a drain may go than the first.
const END_RATE_SHARE: f64 = 0.8;
/// The events/s the two-process runs through webhooks aim at, end to end.
const GOAL_WEBHOOK_EVENTS_PER_SECOND: f64 = 25_000.0;
/// The platform of the loaded events (queue-worker's).
const DEMO: Platform = Platform::from_static("demo");

/// Claim order of the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum DrainOrdering {
    /// Events of one conversation one at a time, in order, across processes (the default).
    PerConversation,
    /// No ordering.
    Unordered,
}

/// The queue the workers drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Backend {
    /// `PgQueue` (the default).
    Postgres,
    /// `JetStreamQueue` on the NATS server of `--nats-url`.
    Jetstream,
}

/// `botload scenario queue-drain`.
#[derive(Debug, clap::Args)]
pub(crate) struct QueueDrainArgs {
    /// Events loaded beforehand, one run per count and round (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    events: Vec<u64>,
    /// Worker processes, one run per count and round (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    processes: Vec<u16>,
    /// Rounds of every combination, one after another: the process counts in the given order in
    /// the first round, reversed in the second, and so on (so that no count always runs after
    /// the same one). With more than one, the table is followed by a summary (not with `--json`):
    /// each count's median events/s, and its median ratio to the first count's run of the same
    /// round, which a machine whose speed drifts from one minute to the next needs to compare
    /// process counts. Each count and event count once; not with `--record` or JetStream.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
    /// Conversations the events are spread over.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    conversations: u64,
    /// The queue.
    #[arg(long, value_enum, default_value_t = Backend::Postgres)]
    backend: Backend,
    /// The NATS server of `--backend jetstream` (default: `NATS_URL`, else
    /// nats://127.0.0.1:4222).
    #[arg(long)]
    nats_url: Option<String>,
    /// Partitions of the JetStream queue.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    /// The workers' claim order.
    #[arg(long, value_enum, default_value_t = DrainOrdering::PerConversation)]
    ordering: DrainOrdering,
    /// Handlers running at once in each worker (`MAX_IN_FLIGHT`).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    /// Events each worker claims beyond its free slots (`PREFETCH`; claims take 1,000 at most).
    #[arg(long, default_value_t = 1000)]
    prefetch: u32,
    /// Run a CHECKPOINT between loading and draining, so that the drain writes a full image
    /// of every page it touches first (as right after any checkpoint) and no checkpoint of the
    /// load's writes runs during it.
    #[arg(long)]
    checkpoint: bool,
    /// After each PostgreSQL run, drain as many jobs with graphile-worker (batched, as many
    /// processes) on the same database, and compare (needs Node.js and npm; installs
    /// graphile-worker into bench/graphile-worker on first use).
    #[arg(long)]
    graphile_worker: bool,
    /// End to end: post the events to the workers' webhook (`POST /events`, 200 once committed)
    /// while they run, instead of loading them beforehand.
    #[arg(long)]
    through_webhooks: bool,
    /// Events per webhook request (`--through-webhooks`).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    events_per_request: u64,
    /// Webhook requests at a time, over all workers (`--through-webhooks`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    connections: u64,
    /// Connections per worker (`POOL_SIZE`).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pool_size: u32,
    /// Give up on a run when the queue is not empty after this long (`10m`).
    #[arg(long, default_value = "10m", value_parser = crate::parse_duration)]
    timeout: Duration,
    /// The database (default: `DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/postgres).
    #[arg(long)]
    database_url: Option<String>,
    /// Print the results as JSON on stdout (and no progress bar).
    #[arg(long)]
    json: bool,
    /// Draw no progress bar.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    record: RecordArgs,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
struct Drained {
    backend: Backend,
    events: u64,
    processes: u16,
    ordering: DrainOrdering,
    /// Seconds the `COPY` of the events took.
    load_seconds: f64,
    /// Seconds from the workers' start to the queue being empty.
    seconds: f64,
    /// `events / seconds`.
    events_per_second: f64,
    /// Seconds from the workers' start to the first event gone from the table (start-up:
    /// process, pool, migration check, first claim).
    first_gone_seconds: f64,
    /// Events per second once the first event was gone.
    steady_events_per_second: f64,
    /// Sum of the events the workers say they handled.
    handled: u64,
    /// `handled - events`: events that ran twice.
    duplicates: u64,
    /// Claim statements, over all workers.
    claims: u64,
    /// Completions whose lease was no longer held, over all workers.
    stale: u64,
    /// CPU seconds of the workers, together.
    workers_cpu_seconds: f64,
    /// Largest peak resident set of one worker, KiB.
    worker_peak_rss_kib: u64,
    /// CPU seconds of the PostgreSQL processes serving the workers' connections.
    postgres_backends_cpu_seconds: Option<f64>,
    /// CPU seconds of every PostgreSQL process (backends, WAL writer, autovacuum, and those of
    /// any other client on the machine).
    postgres_all_cpu_seconds: Option<f64>,
    /// JetStream: a bare pull consumer acking each message, same events, same processes
    /// (as connections), same run: events/s.
    bare_consumer_events_per_second: Option<f64>,
    /// Events/s over the first fifth of the events.
    start_events_per_second: Option<f64>,
    /// Events/s over the last fifth of the events.
    end_events_per_second: Option<f64>,
    /// graphile-worker's batched drain of as many jobs with as many processes, right after
    /// (`--graphile-worker`): jobs/s.
    graphile_worker_events_per_second: Option<f64>,
    /// The events came through the workers' webhook while they ran (`--through-webhooks`).
    through_webhooks: bool,
}

/// Runs every combination (every round of them), prints the results and records a row per
/// combination (one round only: see `rounds`).
pub(crate) async fn run(args: &QueueDrainArgs) -> ExitCode {
    let results = match drain_all(args).await {
        Ok(results) => results,
        Err(e) => return args.record.finish(Err(e)),
    };
    if args.json {
        crate::print_json(&results);
    } else {
        println!("{}", table(&results));
        if args.rounds > 1 {
            println!(
                "{}",
                rounds_summary(&results, args.rounds, args.processes[0])
            );
        }
    }
    let mut code = ExitCode::SUCCESS;
    for drained in &results {
        if args.record.finish(Ok(row(drained))) != ExitCode::SUCCESS {
            code = ExitCode::FAILURE;
        }
    }
    code
}

fn database_url(args: &QueueDrainArgs) -> String {
    crate::scenario::database_url(args.database_url.as_deref())
}

async fn drain_all(args: &QueueDrainArgs) -> Result<Vec<Drained>, String> {
    if args.rounds > 1 {
        if args.record.record.is_some() {
            return Err(
                "--record writes one run's row: not with --rounds (record one round)".to_owned(),
            );
        }
        let once = |v: &[u64]| v.iter().enumerate().all(|(i, x)| !v[..i].contains(x));
        let counts: Vec<u64> = args.processes.iter().map(|&p| u64::from(p)).collect();
        if !once(&counts) || !once(&args.events) {
            return Err("--rounds takes each process count and event count once".to_owned());
        }
    }
    if args.backend == Backend::Jetstream {
        if args.through_webhooks || args.graphile_worker {
            return Err(
                "--through-webhooks and --graphile-worker run with the PostgreSQL queue".to_owned(),
            );
        }
        if args.rounds > 1 {
            return Err("--rounds runs with the PostgreSQL queue".to_owned());
        }
        return nats::drain_all(args).await;
    }
    let url = database_url(args);
    let worker = sibling_binary("queue-worker")?;
    let admin = crate::scenario::admin_pool(&url).await?;
    if args.graphile_worker && args.through_webhooks {
        return Err(
            "--graphile-worker compares drains of loaded events: not with --through-webhooks"
                .to_owned(),
        );
    }
    let graphile = if args.graphile_worker {
        Some(graphile::install()?)
    } else {
        None
    };
    let mut results = Vec::new();
    for round in 0..args.rounds {
        let mut counts = args.processes.clone();
        if round % 2 == 1 {
            counts.reverse();
        }
        for &events in &args.events {
            for &processes in &counts {
                let mut drained =
                    drain_once(args, &url, &admin, &worker, events, processes).await?;
                if let Some(script) = &graphile {
                    let conn = admin.get().await.map_err(|e| format!("connecting: {e}"))?;
                    let timed =
                        graphile::drain(&conn, script, &url, events, processes, args.timeout)
                            .await?;
                    drained.graphile_worker_events_per_second =
                        Some(events as f64 / timed.elapsed.as_secs_f64());
                }
                if !args.json {
                    eprintln!("{}", summary(&drained));
                }
                results.push(drained);
            }
        }
    }
    Ok(results)
}

/// The median of `values` (the mean of the two middle ones for an even count); NaN for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// What `rounds` rounds measured, run in the order [`drain_all`] runs them: per event count and
/// process count, the median events/s with its range, and the median, smallest and largest
/// ratio of each round's run to the run of `baseline` processes in the same round.
fn rounds_summary(results: &[Drained], rounds: u32, baseline: u16) -> String {
    let per_round = results.len() / rounds.max(1) as usize;
    let mut out = format!(
        "queue-drain over {rounds} rounds\n\
         | events | processes | median events/s | range | median ratio to {baseline} processes | ratio range |\n\
         | --- | --- | --- | --- | --- | --- |"
    );
    let mut seen: Vec<(u64, u16)> = Vec::new();
    for d in results {
        if !seen.contains(&(d.events, d.processes)) {
            seen.push((d.events, d.processes));
        }
    }
    for (events, processes) in seen {
        let runs = |count: u16| -> Vec<Option<f64>> {
            (results.chunks(per_round.max(1)))
                .map(|round| {
                    round
                        .iter()
                        .find(|d| d.events == events && d.processes == count)
                        .map(|d| d.events_per_second)
                })
                .collect()
        };
        let own = runs(processes);
        let rates: Vec<f64> = own.iter().flatten().copied().collect();
        let lowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = rates.iter().copied().fold(0.0, f64::max);
        let ratios: Vec<f64> = (own.iter().zip(runs(baseline)))
            .filter_map(|(a, b)| Some(a.as_ref()? / b?))
            .collect();
        let ratio = |v: f64| format!("{v:.2}x");
        let (median_ratio, ratio_range) = if ratios.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let high = ratios.iter().copied().fold(0.0, f64::max);
            (
                ratio(median(ratios)),
                format!("{}-{}", ratio(low), ratio(high)),
            )
        };
        out.push_str(&format!(
            "\n| {} | {processes} | {} | {}-{} | {median_ratio} | {ratio_range} |",
            thousands(events as f64),
            thousands(median(rates)),
            thousands(lowest),
            thousands(highest),
        ));
    }
    out
}

async fn drain_once(
    args: &QueueDrainArgs,
    url: &str,
    admin: &PgPool,
    worker: &std::path::Path,
    events: u64,
    processes: u16,
) -> Result<Drained, String> {
    let db = |what: &'static str| move |e: bot_core::Error| format!("{what}: {e}");
    let conn = admin.get().await.map_err(db("connecting"))?;
    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await
        .map_err(|e| format!("dropping the schema {SCHEMA}: {e}"))?;
    let pool = PgPool::builder(url)
        .schema(SCHEMA)
        .max_size(2)
        .application_name("botload")
        .build()
        .map_err(db("the pool"))?;
    pg::migrate(&pool).await.map_err(db("migrating"))?;
    let conversations = args.conversations;
    let loading = Instant::now();
    let bodies = if args.through_webhooks {
        webhooks::bodies(events, conversations, args.events_per_request)
    } else {
        let loaded = pg::import(
            &pool,
            (0..events).map(|i| {
                Event::text(DEMO, format!("conv-{}", i % conversations), "hi")
                    .with_id(format!("drain-{i}"))
            }),
        )
        .await
        .map_err(db("loading the events"))?;
        if loaded != events {
            return Err(format!("loaded {loaded} events of {events}"));
        }
        Vec::new()
    };
    let load_seconds = loading.elapsed().as_secs_f64();
    if args.checkpoint {
        conn.batch_execute("CHECKPOINT")
            .await
            .map_err(|e| format!("CHECKPOINT (needs a superuser or pg_checkpoint): {e}"))?;
    }

    let bar = progress(args, events, processes);
    let postgres_before = server_cpu("postgres");
    let mut started = Instant::now();
    let mut workers = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..processes {
        let port = free_port()?;
        bases.push(format!("http://127.0.0.1:{port}"));
        let child = Command::new(worker)
            .env(pg::DATABASE_URL_ENV, url)
            .env("BOT_SCHEMA", SCHEMA)
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
            .env("PREFETCH", args.prefetch.to_string())
            .env("POOL_SIZE", args.pool_size.to_string())
            .env("WORKER_PROCESSES", processes.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", worker.display()))?;
        workers.push(Started(child));
    }
    if args.through_webhooks {
        for base in &bases {
            crate::scenario::wait_ready(base).await?;
        }
        started = Instant::now();
        let connections = usize::try_from(args.connections).unwrap_or(usize::MAX);
        webhooks::post_all(&bases, bodies, connections).await?;
    }

    let timed = clock::until_empty(
        &conn,
        &format!("{SCHEMA}.botrt_events"),
        events,
        started,
        args.timeout,
        &bar,
        &mut workers,
    )
    .await?;
    bar.finish_and_clear();
    let (elapsed, first_gone) = (timed.elapsed, timed.first_gone);

    // Read the figures before the workers stop: /proc forgets a process once it is gone.
    let postgres_after = server_cpu("postgres");
    let backends: Vec<i32> = conn
        .query(
            // The queue's own connections append their role ("queue", "queue completions").
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
             OR starts_with(application_name, $1 || ' ')",
            &[&format!("queue-worker {SCHEMA}")],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    let backends_cpu = backends
        .iter()
        .map(|&pid| {
            u32::try_from(pid)
                .ok()
                .and_then(usage)
                .map(|u| u.cpu_seconds)
        })
        .sum::<Option<f64>>();
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
    let dead: i64 = conn
        .query_one(
            &format!("SELECT count(*) FROM {SCHEMA}.botrt_dead_letters"),
            &[],
        )
        .await
        .map_err(|e| format!("counting dead letters: {e}"))?
        .get(0);
    if dead > 0 {
        return Err(format!("{dead} events were dead-lettered"));
    }
    if counts.handled < events {
        return Err(format!(
            "the queue is empty but the workers report {} handled events of {events}",
            counts.handled
        ));
    }
    let seconds = elapsed.as_secs_f64();
    let steady = (elapsed - first_gone).as_secs_f64();
    Ok(Drained {
        backend: Backend::Postgres,
        events,
        processes,
        ordering: args.ordering,
        load_seconds,
        seconds,
        events_per_second: events as f64 / seconds,
        first_gone_seconds: first_gone.as_secs_f64(),
        // Posted while the workers ran, the events have no start-up to leave out.
        steady_events_per_second: if args.through_webhooks {
            events as f64 / seconds
        } else if steady > 0.0 {
            events as f64 / steady
        } else {
            f64::NAN
        },
        handled: counts.handled,
        duplicates: counts.handled - events,
        claims: counts.claims,
        stale: counts.stale,
        workers_cpu_seconds,
        worker_peak_rss_kib,
        postgres_backends_cpu_seconds: backends_cpu,
        postgres_all_cpu_seconds: match (postgres_before, postgres_after) {
            (Some(before), Some(after)) => Some(cpu_between(&before, &after)),
            _ => None,
        },
        bare_consumer_events_per_second: None,
        // Posted while they ran, the events were never all queued at once.
        start_events_per_second: (!args.through_webhooks).then_some(timed.start_events_per_second),
        end_events_per_second: (!args.through_webhooks).then_some(timed.end_events_per_second),
        through_webhooks: args.through_webhooks,
        graphile_worker_events_per_second: None,
    })
}

fn progress(args: &QueueDrainArgs, events: u64, processes: u16) -> ProgressBar {
    let bar = ProgressBar::new(events);
    if args.json || args.no_progress {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} events drained by {processes} \
                 process(es), {{per_sec}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }
    bar
}

fn percent(cpu_seconds: f64, seconds: f64) -> f64 {
    100.0 * cpu_seconds / seconds
}

fn summary(d: &Drained) -> String {
    format!(
        "queue-drain: {} events × {} processes: {} events/s ({:.2} s; loaded in {:.1} s)",
        thousands(d.events as f64),
        d.processes,
        thousands(d.events_per_second),
        d.seconds,
        d.load_seconds,
    )
}

fn optional_percent(cpu: Option<f64>, seconds: f64) -> String {
    cpu.map_or_else(|| "?".to_owned(), |c| format!("{:.0}", percent(c, seconds)))
}

fn table(results: &[Drained]) -> String {
    let mut out = String::from(
        "queue-drain (queue-worker, HANDLER=noop)\n\
         | backend | events | processes | ordering | seconds | events/s | start-up s | events/s after start-up | first fifth events/s | last fifth events/s | handled | duplicates | claims | workers CPU % | worker peak RSS MiB | PG backends CPU % | server CPU % | bare consumer events/s | graphile-worker jobs/s | ratio |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    );
    let optional = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), thousands);
    for d in results {
        out.push_str(&format!(
            "\n| {:?} | {} | {} | {:?} | {:.2} | {} | {:.3} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} |",
            d.backend,
            thousands(d.events as f64),
            d.processes,
            d.ordering,
            d.seconds,
            thousands(d.events_per_second),
            d.first_gone_seconds,
            thousands(d.steady_events_per_second),
            optional(d.start_events_per_second),
            optional(d.end_events_per_second),
            d.handled,
            d.duplicates,
            d.claims,
            percent(d.workers_cpu_seconds, d.seconds),
            d.worker_peak_rss_kib as f64 / 1024.0,
            optional_percent(d.postgres_backends_cpu_seconds, d.seconds),
            optional_percent(d.postgres_all_cpu_seconds, d.seconds),
            optional(d.bare_consumer_events_per_second),
            optional(d.graphile_worker_events_per_second),
            d.graphile_worker_events_per_second
                .map_or_else(|| "-".to_owned(), |g| format!("{:.2}x", d.events_per_second / g)),
        ));
    }
    out
}

/// The goals of a run, each with whether it was met: only two-process runs carry any. With
/// PostgreSQL: ≥ 1.0x graphile-worker when it ran alongside; ≥ 60,000 events/s at a million
/// events or more (or when graphile-worker did not run), with the last fifth of such a drain at
/// least 0.8x as fast as the first; through webhooks, ≥ 25,000 events/s. With JetStream: ≥ 60,000 events/s and ≥ 0.7x a bare acking
/// consumer.
fn goals(d: &Drained) -> Vec<(String, bool)> {
    if d.processes != 2 {
        return Vec::new();
    }
    let rate = (
        format!("≥ {} events/s", thousands(GOAL_EVENTS_PER_SECOND)),
        d.events_per_second >= GOAL_EVENTS_PER_SECOND,
    );
    if d.backend == Backend::Jetstream {
        let ratio = d
            .bare_consumer_events_per_second
            .map(|b| d.events_per_second / b);
        return vec![
            rate,
            (
                format!("≥ {BARE_CONSUMER_RATIO}x a bare acking consumer"),
                ratio.is_none_or(|r| r >= BARE_CONSUMER_RATIO),
            ),
        ];
    }
    if d.through_webhooks {
        return vec![(
            format!(
                "≥ {} events/s end to end",
                thousands(GOAL_WEBHOOK_EVENTS_PER_SECOND)
            ),
            d.events_per_second >= GOAL_WEBHOOK_EVENTS_PER_SECOND,
        )];
    }
    let large = d.events >= 1_000_000;
    let mut goals = Vec::new();
    if let Some(g) = d.graphile_worker_events_per_second {
        goals.push((
            format!("≥ {GRAPHILE_WORKER_RATIO}x graphile-worker (batched) in the same run"),
            d.events_per_second >= GRAPHILE_WORKER_RATIO * g,
        ));
    }
    if large || goals.is_empty() {
        goals.push(rate);
    }
    if let (true, Some(start), Some(end)) =
        (large, d.start_events_per_second, d.end_events_per_second)
    {
        goals.push((
            format!("the last fifth ≥ {END_RATE_SHARE}x as fast as the first"),
            end >= END_RATE_SHARE * start,
        ));
    }
    goals
}

fn row(d: &Drained) -> Row {
    let jetstream = d.backend == Backend::Jetstream;
    let name = format!(
        "queue-drain {} events × {} process{}{}{}{}",
        thousands(d.events as f64),
        d.processes,
        if d.processes == 1 { "" } else { "es" },
        match d.ordering {
            DrainOrdering::PerConversation => "",
            DrainOrdering::Unordered => ", unordered",
        },
        if jetstream { ", JetStream" } else { "" },
        if d.through_webhooks {
            ", through webhooks"
        } else {
            ""
        }
    );
    let mut extra = String::new();
    if let (Some(start), Some(end)) = (d.start_events_per_second, d.end_events_per_second) {
        extra.push_str(&format!(
            "; first fifth {} events/s, last fifth {}",
            thousands(start),
            thousands(end)
        ));
    }
    if let Some(b) = d.bare_consumer_events_per_second {
        extra.push_str(&format!(
            "; a bare acking pull consumer {} events/s in the same run ({:.2}x)",
            thousands(b),
            d.events_per_second / b
        ));
    }
    if let Some(g) = d.graphile_worker_events_per_second {
        extra.push_str(&format!(
            "; graphile-worker (batched, as many processes) {} jobs/s in the same run ({:.2}x)",
            thousands(g),
            d.events_per_second / g
        ));
    }
    let goals = goals(d);
    let timing = if d.through_webhooks {
        format!("{:.2} s from the first request", d.seconds)
    } else {
        format!(
            "{:.2} s from the workers' start; {} events/s after the first claim",
            d.seconds,
            thousands(d.steady_events_per_second)
        )
    };
    Row {
        name,
        result: format!(
            "{} events/s ({timing}); \
             {} duplicates; workers {:.0} % CPU, {:.0} MiB peak each; {} {} % CPU{extra}",
            thousands(d.events_per_second),
            d.duplicates,
            percent(d.workers_cpu_seconds, d.seconds),
            d.worker_peak_rss_kib as f64 / 1024.0,
            if jetstream {
                "nats-server"
            } else {
                "PostgreSQL"
            },
            optional_percent(d.postgres_all_cpu_seconds, d.seconds),
        ),
        goal: goals
            .iter()
            .map(|(text, _)| text.as_str())
            .collect::<Vec<_>>()
            .join(" and "),
        verdict: if goals.is_empty() {
            Verdict::NoGoal
        } else if goals.iter().all(|(_, met)| *met) {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    }
}

#[cfg(test)]
mod tests;
