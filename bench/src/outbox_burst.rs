//! `outbox-burst`: a campaign of durable sends through the outbox from several processes (the
//! `campaign` example) against a fake LINE API that counts what reaches it: sends per minute
//! together, the most pushes that reached the fake within any one second against the channel's
//! limit, and — by the pushes' retry keys — that every message was delivered once. With
//! `--kill-after N` one process is killed with SIGKILL once N messages were delivered, and started
//! again (it runs its share of the campaign again: only what was not queued is queued).

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bot_core::pg;
use bot_core::testing::fake_api::{FakeApi, Latency};
use bot_line::testing::FakeLine;
use serde::Deserialize;

use crate::record::{Row, Verdict};
use crate::scenario::{Started, TOKEN, sibling_binary, thousands};

/// The scenario's knobs.
#[derive(Debug, clap::Args)]
pub(crate) struct OutboxBurstArgs {
    /// Messages in the campaign.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Sender processes (each queues its share and sends).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    processes: u16,
    /// The channel's push limit, for all processes together (pushes a second).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// The fake's answer time.
    #[arg(long, default_value = "20ms", value_parser = crate::parse_duration)]
    latency: Duration,
    /// HTTP/2 streams the fake allows per connection (each process has one connection).
    #[arg(long, default_value_t = 256)]
    streams: u32,
    /// Messages each process sends at once.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Kill the first process with SIGKILL once this many messages were delivered, then start it
    /// again.
    #[arg(long)]
    kill_after: Option<u64>,
    /// The database (default: `DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/postgres).
    #[arg(long)]
    database_url: Option<String>,
    /// The outbox's schema (dropped at the start).
    #[arg(long, default_value = "botload_outbox")]
    schema: String,
    #[command(flatten)]
    pub(crate) record: crate::RecordArgs,
}

/// What `campaign` prints with `CAMPAIGN_REPORT=json`.
#[derive(Debug, Deserialize)]
struct ChildReport {
    queued: u64,
    queued_seconds: f64,
    seconds: f64,
    duplicates: u64,
    sent: u64,
    failed: u64,
    dead: u64,
}

fn spawn(
    binary: &std::path::Path,
    args: &OutboxBurstArgs,
    url: &str,
    fake: &FakeLine,
    index: u16,
) -> Result<Started, String> {
    Command::new(binary)
        .env("RUST_LOG", "warn")
        .env(pg::DATABASE_URL_ENV, url)
        .env("OUTBOX_SCHEMA", &args.schema)
        .env("LINE_CHANNEL_ACCESS_TOKEN", TOKEN)
        .env("LINE_API_BASE", fake.url())
        .env("CAMPAIGN_ID", "burst")
        .env("CAMPAIGN_COUNT", args.count.to_string())
        .env("CAMPAIGN_SHARE", format!("{index}/{}", args.processes))
        // The channel's limit, shared by the processes through PostgreSQL.
        .env("CAMPAIGN_PUSH_PER_SECOND", args.limit.to_string())
        .env("CAMPAIGN_SHARED_LIMITS", "postgres")
        .env("OUTBOX_MAX_IN_FLIGHT", args.max_in_flight.to_string())
        .env("CAMPAIGN_REPORT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map(Started)
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))
}

async fn finish(mut child: Started) -> Result<ChildReport, String> {
    let mut stdout = child.0.stdout.take().ok_or("no stdout of campaign")?;
    let text = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    })
    .await
    .map_err(|e| format!("reading campaign's output: {e}"))?
    .map_err(|e| format!("reading campaign's output: {e}"))?;
    let status = child
        .0
        .wait()
        .map_err(|e| format!("waiting for campaign: {e}"))?;
    if !status.success() {
        return Err(format!("campaign failed ({status}); its output: {text}"));
    }
    serde_json::from_str(text.trim())
        .map_err(|e| format!("campaign's report is not JSON ({e}): {text}"))
}

pub(crate) async fn outbox_burst(args: &OutboxBurstArgs) -> Result<Row, String> {
    let binary = sibling_binary("campaign")?;
    let url = crate::scenario::database_url(args.database_url.as_deref());
    let admin = crate::scenario::admin_pool(&url).await?;
    admin
        .get()
        .await
        .map_err(|e| format!("PostgreSQL at {url}: {e}"))?
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", args.schema))
        .await
        .map_err(|e| format!("dropping {}: {e}", args.schema))?;
    let fake = FakeLine::start_with(
        TOKEN,
        FakeApi::builder()
            .max_concurrent_streams(args.streams)
            .latency(Latency::Fixed(args.latency)),
    )
    .await
    .map_err(|e| format!("cannot start the fake LINE API: {e}"))?;
    fake.api().set_recording(false);
    eprintln!(
        "outbox-burst: {} messages from {} processes, channel limit {}/s, {} ms answers{}",
        thousands(args.count as f64),
        args.processes,
        thousands(f64::from(args.limit)),
        args.latency.as_millis(),
        args.kill_after
            .map(|n| format!(
                ", SIGKILL of one process after {} delivered",
                thousands(n as f64)
            ))
            .unwrap_or_default(),
    );
    let started = Instant::now();
    let mut children = Vec::new();
    for index in 0..args.processes {
        children.push(spawn(&binary, args, &url, &fake, index)?);
    }
    let mut killed = None;
    if let Some(after) = args.kill_after {
        while (fake.accepted_retry_keys() as u64) < after {
            if started.elapsed() > Duration::from_secs(600) {
                return Err("the kill point was not reached in 10 minutes".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let victim = &mut children[0].0;
        victim.kill().map_err(|e| format!("cannot kill: {e}"))?;
        let _ = victim.wait();
        let at = fake.accepted_retry_keys();
        eprintln!(
            "outbox-burst: killed process 0 (SIGKILL) with {} delivered; starting it again",
            thousands(at as f64)
        );
        killed = Some(at);
        children[0] = spawn(&binary, args, &url, &fake, 0)?;
    }
    // Done when the fake has every message, or the processes have all exited.
    let deadline = Duration::from_secs(900);
    let mut last_count = 0;
    let mut last_change = Instant::now();
    while (fake.accepted_retry_keys() as u64) < args.count {
        let now = fake.accepted_retry_keys();
        if now != last_count {
            last_count = now;
            last_change = Instant::now();
        }
        if started.elapsed() > deadline || last_change.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let mut reports = Vec::new();
    for child in children {
        reports.push(finish(child).await?);
    }
    for (index, r) in reports.iter().enumerate() {
        eprintln!(
            "outbox-burst: process {index}: queued {} in {:.1} s, sent {}, done after {:.1} s",
            thousands(r.queued as f64),
            r.queued_seconds,
            thousands(r.sent as f64),
            r.seconds
        );
    }
    let delivered = fake.accepted_retry_keys() as u64;
    let conflicts = fake.retry_key_conflicts();
    let rate = fake.push_rate();
    let queued: u64 = reports.iter().map(|r| r.queued).sum();
    let duplicates: u64 = reports.iter().map(|r| r.duplicates).sum();
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    let dead: u64 = reports.iter().map(|r| r.dead).sum();
    let sent: u64 = reports.iter().map(|r| r.sent).sum();
    let per_minute = delivered as f64 / took * 60.0;
    let within = rate.most_in_any_second <= args.limit as usize;
    println!(
        "delivered {} of {} messages in {took:.1} s = {} sends/min ({}/s); pushes accepted by the fake {} ({} refused 409 by an accepted retry key)",
        thousands(delivered as f64),
        thousands(args.count as f64),
        thousands(per_minute),
        thousands(delivered as f64 / took),
        thousands(rate.accepted as f64),
        conflicts,
    );
    println!(
        "most pushes within any one second: {} (limit {}){}",
        thousands(rate.most_in_any_second as f64),
        thousands(f64::from(args.limit)),
        if within { "" } else { " — OVER THE LIMIT" },
    );
    println!(
        "processes: queued {} (+{} already queued), sent {} (counted by the surviving runs), {} failed attempts, {} dead",
        thousands(queued as f64),
        thousands(duplicates as f64),
        thousands(sent as f64),
        failed,
        dead,
    );
    if delivered != args.count {
        return Err(format!(
            "{} of {} messages delivered: {} lost",
            delivered,
            args.count,
            args.count.saturating_sub(delivered)
        ));
    }
    let met = per_minute >= 1_000_000.0 && within && dead == 0;
    Ok(Row {
        name: format!(
            "outbox-burst ({} durable sends, {} processes, channel limit {}/s, {} ms{})",
            thousands(args.count as f64),
            args.processes,
            thousands(f64::from(args.limit)),
            args.latency.as_millis(),
            killed
                .map(|at| format!(", SIGKILL of one after {}", thousands(at as f64)))
                .unwrap_or_default(),
        ),
        result: format!(
            "{} sends/min together ({}/s); most in any second {} of {}; delivered {} once each (0 lost, 0 twice: {} retries refused by their retry key); {} failed attempts, {} dead",
            thousands(per_minute),
            thousands(delivered as f64 / took),
            thousands(rate.most_in_any_second as f64),
            thousands(f64::from(args.limit)),
            thousands(delivered as f64),
            conflicts,
            failed,
            dead,
        ),
        goal: "≥ 1,000,000 sends/min together, never over the limit in any second, 0 lost, 0 twice"
            .to_owned(),
        verdict: if met { Verdict::Met } else { Verdict::Missed },
    })
}
