//! Run with: cargo run -p queue-worker
//!
//! A bot whose handler takes seconds (a simulated external API call), meant to run as several
//! processes against one PostgreSQL database: each process serves the same webhook, events go
//! into the shared `PgQueue`, and whichever process has a free slot runs them. Conversations stay
//! sequential and in order across all processes; a process that dies loses nothing.
//!
//! ```sh
//! BOT_ADDR=127.0.0.1:8081 cargo run -p queue-worker &
//! BOT_ADDR=127.0.0.1:8082 cargo run -p queue-worker &
//! curl -d '[{"id":"e1","platform":"demo","conversation":"c1","kind":{"type":"message","text":"hi"},"occurred_at":0}]' \
//!      http://127.0.0.1:8081/events
//! ```
//!
//! Settings (environment): `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! `BOT_ADDR` (default `127.0.0.1:8080`), `BOT_SCHEMA` (default `public`), `WORK_MS` (the
//! simulated call, default 2000), `LONG_MS` (the call for events whose text is `long`, default
//! `WORK_MS`), `MAX_IN_FLIGHT` (default 256), `PREFETCH` (default 16),
//! `LEASE_MS` (default 30000), `POOL_SIZE` (default 16), `WORKER_PROCESSES` (how many processes
//! you run, for the connection check; default 2), `ORDERING` (`per-conversation`, the default, or
//! `unordered`), `HANDLER` (`noop` for a handler that does nothing, as `botload scenario
//! queue-drain` uses; it prints `handled=<count>` on stdout when the worker stops), and
//! `ACK_FAIL_FILE` (a fault for the fault suite: acknowledgements fail while that file exists).
//!
//! `QUEUE=jetstream` runs the same webhook on NATS JetStream instead (`jetstream.rs` lists its
//! settings). A value the worker cannot use (`WORK_MS=2s`, `ORDERING=random`) stops it at
//! start-up with a message naming the variable.
//!
//! Every handled event is recorded in `queue_worker_runs` (each attempt, when it started and
//! ended) and, once, in
//! `queue_worker_effects` keyed by the event id: the idempotency key that keeps a redelivered
//! or re-run event from repeating its effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

mod faults;
mod jetstream;
mod settings;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bot_core::adapter::rejection;
use bot_core::pg::{self, PgPool, PgQueue};
use bot_core::{Adapter, Bot, BoxError, Context, Error, Event, Ingress, Limits, Platform};
use settings::{Backend, Settings, Work};

/// The platform of the events this worker takes.
const DEMO: Platform = Platform::from_static("demo");

/// `POST /events` takes a JSON array of core events and answers 200 once they are committed.
#[derive(Debug, Clone, Copy)]
struct JsonWebhook;

impl Adapter for JsonWebhook {
    fn platform(&self) -> Platform {
        DEMO
    }

    fn routes(&self, ingress: Ingress) -> Option<axum::Router> {
        Some(
            axum::Router::new()
                .route("/events", post(events))
                .with_state(ingress),
        )
    }
}

async fn events(State(ingress): State<Ingress>, body: Bytes) -> Response {
    let Ok(events) = serde_json::from_slice::<Vec<Event>>(&body) else {
        return (axum::http::StatusCode::BAD_REQUEST, "malformed json").into_response();
    };
    // 200 only after the commit; 503 with Retry-After when PostgreSQL is down or slow.
    match ingress.submit(events).await {
        Ok(report) => axum::Json(serde_json::json!({
            "accepted": report.accepted,
            "duplicates": report.duplicates,
        }))
        .into_response(),
        Err(e) => rejection(&e),
    }
}

/// Events the no-op handler ran (`HANDLER=noop`).
static NOOP_HANDLED: AtomicU64 = AtomicU64::new(0);

/// `HANDLER=noop`: nothing but a count, to measure the queue itself.
async fn noop(_cx: Context, _event: Event) -> Result<(), BoxError> {
    NOOP_HANDLED.fetch_add(1, AtomicOrdering::Relaxed);
    Ok(())
}

// ANCHOR: handler
/// The simulated external API call, then the effect, recorded once per event id.
async fn handle(cx: Context, event: Event) -> Result<(), BoxError> {
    let started = std::time::SystemTime::now();
    let work = cx.state::<Work>().copied().unwrap_or(Work {
        normal: Duration::ZERO,
        long: Duration::ZERO,
    });
    let work = match event.text_content() {
        Some("long") => work.long,
        _ => work.normal,
    };
    tokio::select! {
        () = tokio::time::sleep(work) => {}
        // Shutdown or time-out: stop early; the event goes back to the queue.
        () = cx.cancellation().cancelled() => return Err("cancelled".into()),
    }
    let worker = std::process::id().to_string();
    let db = cx.db().await?;
    db.execute(
        "INSERT INTO queue_worker_runs (event_id, worker, started_at) VALUES ($1, $2, $3)",
        &[&event.id.as_str(), &worker, &started],
    )
    .await?;
    // The idempotency key: a second run of the same event finds it and does nothing.
    let first = db
        .execute(
            "INSERT INTO queue_worker_effects (event_id, worker) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
            &[&event.id.as_str(), &worker],
        )
        .await?;
    if first == 0 {
        tracing::info!(event = %event.id, "already done elsewhere; effect skipped");
    }
    Ok(())
}
// ANCHOR_END: handler

/// `MAX_IN_FLIGHT` and `ORDERING`, for both queues.
fn limits(settings: &Settings) -> Limits {
    Limits {
        max_in_flight: settings.max_in_flight,
        handler_timeout: Duration::from_secs(300),
        ordering: settings.ordering,
        ..Limits::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _logs = bot_core::init_logging()?;
    let settings = Settings::from_env()?;
    if settings.backend == Backend::JetStream {
        return jetstream::run(&settings, limits(&settings)).await;
    }
    let url = std::env::var(pg::DATABASE_URL_ENV)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());

    // ANCHOR: setup
    let schema = settings.schema.clone();
    let pool = PgPool::builder(url)
        // So that the server's processes of these workers can be told apart (pg_stat_activity).
        .application_name(format!("queue-worker {schema}"))
        .schema(schema)
        .max_size(settings.pool_size)
        .wait_timeout(Duration::from_secs(30))
        .build()?;
    // Safe when every process runs it at start-up at once.
    pg::migrate(&pool).await?;
    let limits = limits(&settings);
    let queue = Arc::new(
        PgQueue::builder(&pool)
            .limits(&limits)
            .prefetch(settings.prefetch.unwrap_or(16))
            .lease_duration(settings.lease.unwrap_or(Duration::from_secs(30)))
            .build()?,
    );
    // After the queue: its own connections count too.
    pool.check_capacity(settings.worker_processes).await?;
    let noop_handler = settings.noop_handler;
    let bot_queue: Arc<dyn bot_core::Queue> = match std::env::var_os("ACK_FAIL_FILE") {
        Some(flag) => Arc::new(faults::FailingAcks {
            inner: queue.clone(),
            flag: flag.into(),
            refused: AtomicU64::new(0),
        }),
        None => queue.clone(),
    };
    let builder = Bot::builder()
        .adapter(JsonWebhook)
        .limits(limits)
        .queue(bot_queue)
        .state(settings.work)
        .database(pool.clone());
    let bot = if noop_handler {
        builder.handler(noop).build()?
    } else {
        builder.handler(handle).build()?
    };
    queue.register_metrics(bot.telemetry());
    // ANCHOR_END: setup
    let conn = pool.get().await?;
    // Under a lock: processes starting together would race on CREATE TABLE IF NOT EXISTS.
    conn.batch_execute(
        "BEGIN;
         SELECT pg_advisory_xact_lock(hashtextextended('queue-worker tables', 0));
         CREATE TABLE IF NOT EXISTS queue_worker_runs (
             event_id text NOT NULL, worker text NOT NULL, started_at timestamptz NOT NULL,
             at timestamptz NOT NULL DEFAULT clock_timestamp());
         CREATE TABLE IF NOT EXISTS queue_worker_effects (
             event_id text PRIMARY KEY, worker text NOT NULL);
         COMMIT;",
    )
    .await
    .map_err(|e| {
        Error::new(bot_core::ErrorKind::Other, "cannot create the demo tables").with_source(e)
    })?;
    drop(conn);

    // ANCHOR: serve
    // SIGTERM: readiness 503, claimed but unstarted events go back at once, running handlers
    // finish (up to shutdown_timeout), then the queue's tasks stop.
    let report = bot.serve(settings.addr.as_str()).await?;
    queue.shutdown().await;
    // ANCHOR_END: serve
    tracing::info!(?report, counters = ?queue.counters(), "worker stopped");
    if noop_handler {
        let c = queue.counters();
        println!(
            "handled={} claims={} claimed={} acked={} stale={} released={}",
            NOOP_HANDLED.load(AtomicOrdering::Relaxed),
            c.claims,
            c.claimed,
            c.acked,
            c.stale,
            c.released
        );
    }
    Ok(())
}
