//! One run: the fake API, the bot, the load, the drain; and the `slow-api` scenario.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bot_core::testing::fake_api::{FakeApi, FakeResponse};
use reqwest::StatusCode;

use super::args::LoadArgs;
use super::outcome::{Database, Outcome, Peaks, postgres_cpu_seconds, scrape};
use super::tally::{Tally, lock};
use super::webhooks::{Sent, send};
use super::{GOAL_EVENTS_PER_SECOND, GOAL_KIB_PER_IN_FLIGHT, RAMP_UP_SECONDS};
use crate::prom;
use crate::record::{Row, Verdict};
use crate::scenario::rss_kib;
use crate::scenario::{
    SECRET, Started, TOKEN, free_port, sibling_binary, thousands, usage, wait_ready,
};

/// Starts the fake API and the bot, loads it, waits for the drain, and collects the figures.
pub(super) async fn run(load: &LoadArgs, database: Option<&Database>) -> Result<Outcome, String> {
    load.check()?;
    let binary = sibling_binary("scenario-bot")?;
    let seconds = load.duration.as_secs() + load.drain_timeout.as_secs() + 10;
    let tally = Arc::new(Tally::new(
        load.requests(),
        u64::from(load.events_per_request),
        seconds,
    ));
    let ok = FakeResponse::json(
        StatusCode::OK,
        &serde_json::json!({"sentMessages": [{"id": "1", "quoteToken": "q"}]}),
    );
    let responder_tally = tally.clone();
    let fake = FakeApi::builder()
        .latency(load.latency())
        .start(move |request| responder_tally.answer(request, &ok))
        .await
        .map_err(|e| format!("cannot start the fake LINE API: {e}"))?;
    fake.set_recording(false);
    if load.api_429_rate > 0.0 {
        fake.add_failure_rate(
            load.api_429_rate,
            FakeResponse::json(
                StatusCode::TOO_MANY_REQUESTS,
                &serde_json::json!({"message": "The API rate limit has been exceeded. Try again later."}),
            ),
        );
    }
    if load.api_500_rate > 0.0 {
        fake.add_failure_rate(
            load.api_500_rate,
            FakeResponse::json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"message": "Internal server error"}),
            ),
        );
    }

    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(&binary);
    command
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args([
            "--secret",
            SECRET,
            "--token",
            TOKEN,
            "--api-base",
            &fake.url(),
        ])
        .args(["--max-in-flight", &load.max_in_flight.to_string()])
        .args(["--queue-capacity", &load.queue_capacity.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // Under overload the bot logs a line per refused webhook or dead letter: to a file, not
    // over the report.
    let log_path = std::env::temp_dir().join(format!("scenario-bot-{}.log", std::process::id()));
    if let Ok(log) = std::fs::File::create(&log_path) {
        command.stderr(log);
    }
    match database {
        Some(db) => command
            .args(["--handler", "db", "--database-url", &db.url])
            .args(["--query", db.query.as_str()])
            .args(["--pool-size", &db.pool_size.to_string()]),
        None => command.args(["--handler", "reply"]),
    };
    let bot = Started(
        command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?,
    );
    wait_ready(&base).await?;
    let pid = bot.0.id();
    // Let the freshly started bot settle before its memory is taken as the base.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_rss_kib = rss_kib(pid).unwrap_or(0);
    let database_name = database.map_or("", |db| db.name());
    let (bot_before, own_before, pg_before) = (
        usage(pid),
        usage(std::process::id()),
        postgres_cpu_seconds(database_name),
    );

    let started = Instant::now();
    let peaks = Arc::new(Peaks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peaks, stop, tally, fake, base) = (
            peaks.clone(),
            stop.clone(),
            tally.clone(),
            fake.clone(),
            base.clone(),
        );
        // One long-lived task watching the run, stopped with `stop`.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut last = (Instant::now(), 0);
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tick += 1;
                let Some(text) = scrape(&client, &base).await else {
                    continue;
                };
                let depth = prom::sum(&text, "bot_queue_depth", &[]) as u64;
                let running = prom::sum(&text, "bot_inflight", &[]) as u64;
                peaks.queue_depth.fetch_max(depth, Ordering::Relaxed);
                peaks.bot_in_flight.fetch_max(running, Ordering::Relaxed);
                if tick.is_multiple_of(5) {
                    let replies = tally.replies.load(Ordering::Relaxed);
                    let rate = (replies - last.1) as f64 / last.0.elapsed().as_secs_f64();
                    last = (Instant::now(), replies);
                    eprintln!(
                        "{:>4} s: {} replies/s, {} API calls in flight, {} handlers running, {} queued, bot RSS {:.0} MiB",
                        tick,
                        thousands(rate),
                        thousands(fake.in_flight() as f64),
                        thousands(running as f64),
                        thousands(depth as f64),
                        rss_kib(pid).unwrap_or(0) as f64 / 1024.0,
                    );
                }
            }
        })
    };

    let sent = Arc::new(Sent::default());
    let webhook = send(load, &format!("{base}/line/webhook"), &tally, &sent).await;
    let load_ended = Instant::now();

    // The drain: every accepted event answered, nothing queued or running.
    let client = reqwest::Client::new();
    let accepted = sent.ok.load(Ordering::Relaxed) * u64::from(load.events_per_request);
    let mut drained_in = None;
    while load_ended.elapsed() < load.drain_timeout {
        if fake.in_flight() == 0
            && let Some(text) = scrape(&client, &base).await
        {
            let finished = prom::sum(&text, "bot_events_processed_total", &[])
                - prom::sum(&text, "bot_events_retried_total", &[]);
            if prom::sum(&text, "bot_queue_depth", &[]) == 0.0
                && prom::sum(&text, "bot_inflight", &[]) == 0.0
                && finished >= accepted as f64
            {
                drained_in = Some(load_ended.elapsed().as_secs_f64());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let metrics = scrape(&client, &base).await.unwrap_or_default();
    let seconds = started.elapsed().as_secs_f64();
    let (bot_after, own_after, pg_after) = (
        usage(pid),
        usage(std::process::id()),
        postgres_cpu_seconds(database_name),
    );
    drop(bot);
    let log_lines = std::fs::read_to_string(&log_path).map_or(0, |l| l.lines().count());
    if log_lines > 0 {
        eprintln!("the bot logged {log_lines} lines: {}", log_path.display());
    }

    let cpu = |a: &Option<crate::scenario::Usage>, b: &Option<crate::scenario::Usage>| match (a, b)
    {
        (Some(a), Some(b)) => b.cpu_seconds - a.cpu_seconds,
        _ => f64::NAN,
    };
    let load_seconds = load.duration.as_secs();
    let steady: u64 = tally
        .per_second
        .iter()
        .take(load_seconds as usize)
        .skip(RAMP_UP_SECONDS as usize)
        .map(|c| c.load(Ordering::Relaxed))
        .sum();
    let steady_seconds = load_seconds.saturating_sub(RAMP_UP_SECONDS).max(1);
    let to_call = lock(&tally.to_call).clone();
    let to_answer = lock(&tally.to_answer).clone();
    Ok(Outcome {
        load: load.clone(),
        webhook,
        ok: sent.ok.load(Ordering::Relaxed),
        refused: sent.refused.load(Ordering::Relaxed),
        other: sent.other.load(Ordering::Relaxed),
        errors: sent.errors.load(Ordering::Relaxed),
        replies: tally.replies.load(Ordering::Relaxed),
        duplicates: tally.duplicates.load(Ordering::Relaxed),
        unknown: tally.unknown.load(Ordering::Relaxed),
        steady_events_per_second: steady as f64 / steady_seconds as f64,
        to_call,
        to_answer,
        peak_in_flight: peaks.bot_in_flight.load(Ordering::Relaxed),
        peak_api_calls: fake.peak_in_flight() as u64,
        peak_queue_depth: peaks.queue_depth.load(Ordering::Relaxed),
        connections_to_api: fake.connections(),
        base_rss_kib,
        peak_rss_kib: bot_after.as_ref().map_or(0, |u| u.peak_rss_kib),
        seconds,
        drained_in,
        bot_cpu: cpu(&bot_before, &bot_after),
        botload_cpu: cpu(&own_before, &own_after),
        postgres_cpu: pg_after - pg_before,
        metrics,
    })
}

/// `slow-api`: every handler awaits a 2-3 s reply call; throughput against in-flight / latency,
/// memory per in-flight event.
pub(crate) async fn slow_api(load: &LoadArgs) -> Result<Row, String> {
    let outcome = run(load, None).await?;
    outcome.print("slow-api (scenario-bot: cx.reply through the LINE client, memory queue)");
    if outcome.replies == 0 {
        return Err("no reply reached the fake API".to_owned());
    }
    let kib = outcome.kib_per_in_flight();
    let eps = outcome.steady_events_per_second;
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Row {
        name: format!(
            "slow-api (API {:?}-{:?}, max_in_flight {})",
            load.api_latency_min,
            load.api_latency_max,
            thousands(load.max_in_flight as f64)
        ),
        result: format!(
            "{} events/s steady; peak {} in flight; {:.2} KiB RSS per in-flight event ({:.0} MiB peak); \
             reply call {:.0} / {:.0} ms (p50/p99) after the webhook; {} of {} webhooks 503; \
             {} replies missing; bot {:.0} % CPU, botload {:.0} %",
            thousands(eps),
            thousands(outcome.in_flight() as f64),
            kib,
            outcome.peak_rss_kib as f64 / 1024.0,
            ms(outcome.to_call.value_at_quantile(0.5)),
            ms(outcome.to_call.value_at_quantile(0.99)),
            outcome.refused,
            load.requests(),
            outcome.events_accepted().saturating_sub(outcome.replies),
            100.0 * outcome.bot_cpu / outcome.seconds,
            100.0 * outcome.botload_cpu / outcome.seconds,
        ),
        goal: "≥ 15,000 events/s, ≤ 4 KiB RSS per in-flight event".to_owned(),
        verdict: if eps >= GOAL_EVENTS_PER_SECOND && kib <= GOAL_KIB_PER_IN_FLIGHT {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    })
}
