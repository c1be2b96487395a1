//! Run with: cargo run --release -p campaign
//!
//! A LINE campaign through the durable outbox ([`bot_core::outbox`]): this process queues its
//! share of the recipients (committed in PostgreSQL before it goes on), runs the outbox's senders
//! until the campaign is sent — by this process and any other running the same campaign — and
//! prints what it queued and sent. Killed and started again, it queues only what was not queued
//! the first time, and every message still goes out once: its key names it in LINE's
//! `X-Line-Retry-Key`.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `DATABASE_URL` | the PostgreSQL of the outbox | `postgres://postgres@127.0.0.1:5432/postgres` |
//! | `OUTBOX_SCHEMA` | the outbox's schema | `public_outbox` |
//! | `LINE_CHANNEL_ACCESS_TOKEN` | the channel's token; unset: demo against a fake LINE API | |
//! | `LINE_API_BASE` | where LINE is (a proxy, a fake) | `https://api.line.me` |
//! | `CAMPAIGN_ID` | the campaign; the messages' keys derive from it | `demo` |
//! | `CAMPAIGN_TO` | user ids, comma-separated | demo: `CAMPAIGN_COUNT` made-up ids |
//! | `CAMPAIGN_COUNT` | made-up recipients when `CAMPAIGN_TO` is unset (for a fake or proxy) | 10,000 |
//! | `CAMPAIGN_SHARE` | `i/n`: this process queues the recipients `k` with `k % n == i` | `0/1` |
//! | `CAMPAIGN_QUEUE` | `0`: queue nothing, only send | `1` |
//! | `CAMPAIGN_TEXT` | the message | `Hello from botrt` |
//! | `CAMPAIGN_PUSH_PER_SECOND` | LINE's push limit of the channel | 2,000 |
//! | `CAMPAIGN_SHARED_LIMITS` | where processes share the limit: `postgres`, `redis` (`REDIS_URL`), or `off` (each process keeps the whole limit) | `postgres` |
//! | `OUTBOX_MAX_IN_FLIGHT` | messages this process sends at once | 512 |
//! | `CAMPAIGN_REPORT` | `json`: the report as one JSON line on stdout | text |
//!
//! Over `http://` bases (the fake, a local proxy) the client speaks HTTP/2 without TLS (h2c).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bot_core::outbox::{Outbox, OutboxMessage};
use bot_core::pg::PgPool;
use bot_core::ratelimit::SharedLimits;
use bot_core::telemetry::Logging;
use bot_core::{Error, ErrorKind, Outbound, Platform, Queue};
use bot_line::testing::FakeLine;
use bot_line::{ConfigureApi, LineClient, RateLimits};

/// What the environment sets.
#[derive(Debug)]
struct Config {
    database_url: String,
    schema: Option<String>,
    token: Option<String>,
    api_base: Option<String>,
    campaign: String,
    to: Vec<String>,
    share: (usize, usize),
    queue: bool,
    text: String,
    push_per_second: u32,
    shared_limits: String,
    max_in_flight: usize,
    json: bool,
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, message)
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, Error> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .replace(['_', ','], "")
            .parse()
            .map_err(|_| config_error(format!("{name}: {v:?} is not a number"))),
    }
}

impl Config {
    fn from_env() -> Result<Self, Error> {
        let token = var("LINE_CHANNEL_ACCESS_TOKEN");
        let mut to: Vec<String> = var("CAMPAIGN_TO")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if to.is_empty() {
            // Made-up recipients are for a fake or a proxy: with a real token, ask for ids
            // unless the count of made-up ones is given on purpose.
            if token.is_some() && var("CAMPAIGN_COUNT").is_none() {
                return Err(config_error(
                    "CAMPAIGN_TO: give the user ids to send to (or CAMPAIGN_COUNT for made-up ones)",
                ));
            }
            let count: usize = number("CAMPAIGN_COUNT", 10_000)?;
            to = (0..count).map(|n| format!("U{n:032x}")).collect();
        }
        let share = var("CAMPAIGN_SHARE").unwrap_or_else(|| "0/1".to_owned());
        let share = share
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)))
            .filter(|&(i, n): &(usize, usize)| n > 0 && i < n)
            .ok_or_else(|| {
                config_error(format!("CAMPAIGN_SHARE: {share:?} is not i/n with i < n"))
            })?;
        Ok(Self {
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
            schema: var("OUTBOX_SCHEMA"),
            api_base: var("LINE_API_BASE"),
            campaign: var("CAMPAIGN_ID").unwrap_or_else(|| "demo".to_owned()),
            share,
            queue: var("CAMPAIGN_QUEUE").as_deref() != Some("0"),
            text: var("CAMPAIGN_TEXT").unwrap_or_else(|| "Hello from botrt".to_owned()),
            push_per_second: number("CAMPAIGN_PUSH_PER_SECOND", 2_000)?,
            shared_limits: var("CAMPAIGN_SHARED_LIMITS").unwrap_or_else(|| "postgres".to_owned()),
            max_in_flight: number("OUTBOX_MAX_IN_FLIGHT", 512)?,
            json: var("CAMPAIGN_REPORT").as_deref() == Some("json"),
            token,
            to,
        })
    }
}

// ANCHOR: shared_limits
/// Where the processes running the campaign share the channel's limit, if they do.
async fn shared_limits(config: &Config, pool: &PgPool) -> Result<Option<SharedLimits>, Error> {
    match config.shared_limits.as_str() {
        "postgres" => {
            // The limits' tables come with the bot's migrations.
            bot_core::pg::migrate(pool).await?;
            Ok(Some(SharedLimits::postgres(pool)?))
        }
        "redis" => SharedLimits::redis_from_env()?
            .map(Some)
            .ok_or_else(|| config_error("CAMPAIGN_SHARED_LIMITS=redis: set REDIS_URL")),
        "off" => Ok(None),
        other => Err(config_error(format!(
            "CAMPAIGN_SHARED_LIMITS: {other:?} is not postgres, redis or off"
        ))),
    }
}
// ANCHOR_END: shared_limits

/// The LINE client the senders use: one HTTP/2 connection, its push limit shared with the other
/// processes when `limits` is given.
fn line_client(
    config: &Config,
    token: &str,
    api_base: &str,
    limits: Option<SharedLimits>,
) -> Result<LineClient, Error> {
    let mut builder = LineClient::builder(token).api_base(api_base);
    if api_base.starts_with("http://") {
        // A local fake: HTTP/2 without TLS.
        builder = builder.http2_prior_knowledge();
    }
    let mut builder = builder.rate_limits(RateLimits {
        push_per_second: config.push_per_second,
        ..RateLimits::default()
    });
    if let Some(limits) = limits {
        builder = builder.shared_limits(limits);
    }
    builder
        .build()
        .map_err(|e| config_error("cannot build a line client").with_source(e))
}

// ANCHOR: campaign
/// Queues this process's share of the campaign, then sends until no message of it is left.
async fn run(
    config: &Config,
    pool: &PgPool,
    client: LineClient,
) -> Result<serde_json::Value, Error> {
    let mut outbox = Outbox::builder(pool).max_in_flight(config.max_in_flight);
    if let Some(schema) = &config.schema {
        outbox = outbox.schema(schema.as_str());
    }
    let outbox = outbox.build().await?;
    let senders = outbox.senders([Arc::new(client) as Arc<dyn Outbound>])?;
    senders.start();
    let started = Instant::now();
    let (index, of) = config.share;
    let mut queued = bot_core::outbox::Queued::default();
    if config.queue {
        // Keys derive from the campaign and the recipient: a second run queues only what is new.
        let mine = config.to.iter().skip(index).step_by(of);
        queued = outbox
            .send_many(
                &config.campaign,
                mine.map(|to| {
                    OutboxMessage::new(Platform::LINE, to.as_str(), config.text.as_str())
                }),
            )
            .await?;
    }
    let queued_in = started.elapsed();
    // Sent by whichever process claimed it: wait until the campaign has nothing left. Counting
    // the campaign's rows reads each of them, so it waits until the outbox's whole backlog, as
    // its senders last counted it (`Queue::depth`: no statement), is small.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if outbox.queue().depth() <= 10_000 && outbox.pending(&config.campaign).await? == 0 {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    senders.shutdown().await;
    let counts = outbox.counts();
    Ok(serde_json::json!({
        "campaign": config.campaign,
        "queued": queued.queued,
        "duplicates": queued.duplicates,
        "queued_seconds": queued_in.as_secs_f64(),
        "sent": counts.sent,
        "failed": counts.failed,
        "dead": counts.dead,
        "seconds": seconds,
        "sent_per_second": counts.sent as f64 / seconds.max(1e-9),
    }))
}
// ANCHOR_END: campaign

#[tokio::main]
async fn main() -> Result<(), Error> {
    let _logging = Logging::new().stderr().default_level("warn").init()?;
    let config = Config::from_env()?;
    // Without a token: a fake LINE API in this process, answering after 20 ms.
    let mut fake = None;
    let (token, api_base) = match (&config.token, &config.api_base) {
        (Some(token), base) => (
            token.clone(),
            base.clone()
                .unwrap_or_else(|| bot_line::client::DEFAULT_API_BASE.to_owned()),
        ),
        (None, _) => {
            let started = FakeLine::start_with(
                "demo-token",
                bot_core::testing::fake_api::FakeApi::builder().latency(
                    bot_core::testing::fake_api::Latency::Fixed(Duration::from_millis(20)),
                ),
            )
            .await
            .map_err(|e| config_error("cannot start the fake LINE API").with_source(e))?;
            started.api().set_recording(false);
            let url = started.url();
            fake = Some(started);
            ("demo-token".to_owned(), url)
        }
    };
    let pool = PgPool::builder(&config.database_url).build()?;
    let limits = shared_limits(&config, &pool).await?;
    let client = line_client(&config, &token, &api_base, limits)?;
    let report = run(&config, &pool, client).await?;
    if config.json {
        println!("{report}");
    } else {
        println!(
            "campaign {}: queued {} ({} queued before), sent {} by this process, {} failed attempts, {} dead, in {:.1} s ({:.0}/s)",
            config.campaign,
            report["queued"],
            report["duplicates"],
            report["sent"],
            report["failed"],
            report["dead"],
            report["seconds"].as_f64().unwrap_or_default(),
            report["sent_per_second"].as_f64().unwrap_or_default(),
        );
        if let Some(fake) = &fake {
            println!(
                "fake LINE API: {} messages delivered, {} duplicates refused by their retry key",
                fake.accepted_retry_keys(),
                fake.retry_key_conflicts()
            );
        }
    }
    Ok(())
}
