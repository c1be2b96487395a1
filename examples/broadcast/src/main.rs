//! Run with: cargo run --release -p broadcast
//!
//! Pushes one LINE text message to many users through a [`Pusher`]: `BROADCAST_LANES` LINE
//! clients, each on its own HTTP/2 connection with at most `BROADCAST_WINDOW` pushes unanswered,
//! fed from a buffer of `BROADCAST_CAPACITY` pushes. It prints what was offered, sent, failed and
//! dropped, the throughput against the window limit `lanes · window / latency`, and the latency
//! of the pushes.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `LINE_CHANNEL_ACCESS_TOKEN` | the channel's token; unset: demo against a fake LINE API | |
//! | `LINE_API_BASE` | where LINE is (a proxy, a fake) | `https://api.line.me` |
//! | `BROADCAST_TO` | user ids, comma-separated; pushes go round them | demo: made-up ids |
//! | `BROADCAST_COUNT` | pushes to make | one per user; demo 100,000 |
//! | `BROADCAST_TEXT` | the message | `Hello from botrt` |
//! | `BROADCAST_ID` | names the campaign in the pushes' retry keys | the time of the start |
//! | `BROADCAST_LANES` | LINE clients (HTTP/2 connections) | 4 |
//! | `BROADCAST_WINDOW` | pushes unanswered per connection | 100 |
//! | `BROADCAST_CAPACITY` | pushes buffered | 10,000 |
//! | `BROADCAST_OVERFLOW` | `wait`, `reject`, `drop-oldest` or `drop-newest` | `wait` |
//! | `BROADCAST_RATE` | pushes offered per second | as fast as taken |
//! | `BROADCAST_PUSH_PER_SECOND` | LINE's push limit of the channel, shared by the lanes | 2,000 |
//! | `BROADCAST_LATENCY_MS` | the demo fake's answer time | 20 |
//! | `BROADCAST_REPORT` | `json`: the report as one JSON line on stdout | text |
//! | `BROADCAST_WORKERS` | Tokio worker threads; `1`: one thread (a current-thread runtime) | one per core |
//!
//! ctrl-c stops the offers, gives what is buffered 10 s to go out, and prints the report (with
//! what was cut counted as `unsent` and `cancelled`).
//!
//! Over `http://` bases (the fake, a local proxy) the clients speak HTTP/2 without TLS (h2c);
//! over `https://` they negotiate HTTP/2 as LINE's API does. Push `n` of campaign `BROADCAST_ID`
//! carries the same `X-Line-Retry-Key` on every attempt and on every run, so re-running a campaign
//! that stopped half-way (same id, same recipients, within LINE's 24 hours) sends only what LINE
//! did not accept before. `--features mimalloc` swaps glibc's
//! allocator for mimalloc, as an application may.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bot_core::pusher::{PushReport, Pusher};
use bot_core::telemetry::Logging;
use bot_core::testing::fake_api::{FakeApi, Latency};
use bot_core::{Error, ErrorKind, EventId, Overflow};
use bot_line::model::send::Message;
use bot_line::testing::FakeLine;
use bot_line::{ConfigureApi, LineClient, RateLimits, RetryKey};
use hdrhistogram::Histogram;

/// With `--features mimalloc`: the allocator the application chooses, not the runtime.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Everything the environment sets.
#[derive(Debug)]
struct Config {
    token: Option<String>,
    api_base: Option<String>,
    to: Vec<String>,
    count: u32,
    text: String,
    campaign: EventId,
    lanes: usize,
    window: usize,
    capacity: usize,
    overflow: Overflow,
    rate: Option<f64>,
    push_per_second: u32,
    latency: Duration,
    json: bool,
    workers: usize,
}

/// A configuration error.
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
        let to: Vec<String> = var("BROADCAST_TO")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if token.is_some() && to.is_empty() {
            return Err(config_error("BROADCAST_TO: give the user ids to push to"));
        }
        let default_count = if token.is_some() {
            u32::try_from(to.len()).unwrap_or(u32::MAX)
        } else {
            100_000
        };
        let overflow = match var("BROADCAST_OVERFLOW").as_deref().unwrap_or("wait") {
            "wait" => Overflow::Wait,
            "reject" => Overflow::Reject,
            "drop-oldest" => Overflow::DropOldest,
            "drop-newest" => Overflow::DropNewest,
            other => {
                return Err(config_error(format!(
                    "BROADCAST_OVERFLOW: {other:?} is not wait, reject, drop-oldest or drop-newest"
                )));
            }
        };
        let rate: f64 = number("BROADCAST_RATE", 0.0)?;
        if !(rate == 0.0 || (0.001..=10_000_000.0).contains(&rate)) {
            return Err(config_error(
                "BROADCAST_RATE: pushes a second, from 0.001 to 10,000,000 (0: as fast as taken)",
            ));
        }
        let lanes: usize = number("BROADCAST_LANES", 4)?;
        if lanes == 0 {
            return Err(config_error("BROADCAST_LANES: at least one lane"));
        }
        Ok(Self {
            api_base: var("LINE_API_BASE"),
            count: number("BROADCAST_COUNT", default_count)?,
            text: var("BROADCAST_TEXT").unwrap_or_else(|| "Hello from botrt".to_owned()),
            campaign: EventId::new(var("BROADCAST_ID").unwrap_or_else(|| {
                let since = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                format!("broadcast-{}", since.as_millis())
            })),
            lanes,
            window: number("BROADCAST_WINDOW", 100)?,
            capacity: number("BROADCAST_CAPACITY", 10_000)?,
            overflow,
            rate: (rate > 0.0).then_some(rate),
            push_per_second: number("BROADCAST_PUSH_PER_SECOND", 2_000)?,
            latency: Duration::from_millis(number("BROADCAST_LATENCY_MS", 20)?),
            json: var("BROADCAST_REPORT").as_deref() == Some("json"),
            workers: number("BROADCAST_WORKERS", 0)?,
            token,
            to,
        })
    }
}

// ANCHOR: lanes
/// One LINE client per lane, each with its own HTTP/2 connection; LINE's push limit is per
/// channel, so the lanes share it.
fn line_clients(config: &Config, token: &str, api_base: &str) -> Result<Vec<LineClient>, Error> {
    // Divided down, so that the lanes together never exceed the channel's limit.
    let lanes = u32::try_from(config.lanes).unwrap_or(u32::MAX);
    let per_lane = (config.push_per_second / lanes).max(1);
    (0..config.lanes)
        .map(|_| {
            // Each client has its own HTTP/2 connection; over http:// (a local fake) it speaks
            // h2c.
            let mut builder = LineClient::builder(token).api_base(api_base);
            if api_base.starts_with("http://") {
                builder = builder.http2_prior_knowledge();
            }
            builder
                .rate_limits(RateLimits {
                    push_per_second: per_lane,
                    ..RateLimits::default()
                })
                .build()
                .map_err(|e| config_error("cannot build a line client").with_source(e))
        })
        .collect()
}
// ANCHOR_END: lanes

/// Push latencies in microseconds, shared by the lanes.
type Latencies = Arc<Mutex<Histogram<u64>>>;

async fn broadcast(
    config: &Config,
    clients: Vec<LineClient>,
) -> Result<(PushReport, Latencies), Error> {
    let latencies: Latencies = Arc::new(Mutex::new(
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
    ));
    let messages: Arc<[Message]> = Arc::from(vec![Message::text(config.text.as_str())]);
    let recorded = latencies.clone();
    let campaign = config.campaign.clone();
    // Pushes per round of the recipient list (a list shorter than the count is gone round).
    let per_round = u32::try_from(config.to.len())
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(u32::MAX);
    // ANCHOR: pusher
    let pusher = Pusher::builder()
        .name("broadcast")
        .window(config.window)
        .capacity(config.capacity)
        .overflow(config.overflow)
        .start(
            clients,
            move |client: LineClient, (n, to): (u32, Arc<str>)| {
                let messages = messages.clone();
                let latencies = recorded.clone();
                // The same key for this recipient (and round of the list) of this campaign on
                // every attempt and every run, however the list is reordered or trimmed: a
                // re-run sends only what LINE did not accept.
                let key =
                    RetryKey::for_send(&EventId::new(format!("{campaign}/{to}")), n / per_round, 0);
                async move {
                    let started = Instant::now();
                    // The client retries 429, 5xx and time-outs with that X-Line-Retry-Key.
                    let sent = client.push(&to, &messages, Some(key)).await;
                    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = latencies.lock().map(|mut h| h.saturating_record(micros));
                    sent.map(|_| ())
                }
            },
        )?;
    // ANCHOR_END: pusher
    let recipients: Vec<Arc<str>> = config.to.iter().map(|s| Arc::from(s.as_str())).collect();
    let recipient = |n: u32| -> Arc<str> {
        if recipients.is_empty() {
            Arc::from(format!("U{n:032x}"))
        } else {
            recipients[n as usize % recipients.len()].clone()
        }
    };
    // ctrl-c stops the offers, even one waiting for room, and gives what is buffered 10 s to go
    // out; a second ctrl-c ends the process at once.
    let (interrupt, mut interrupted) = tokio::sync::watch::channel(false);
    // One long-lived task for the whole run.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupt.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let mut stop = interrupted.clone();
    let mut stopped = async move || {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    // ANCHOR: produce
    let started = Instant::now();
    for n in 0..config.count {
        if let Some(rate) = config.rate {
            // Offer at `rate`: catch up with the clock in steps of a millisecond.
            let due = Duration::from_secs_f64(f64::from(n) / rate);
            if let Some(ahead) = due.checked_sub(started.elapsed())
                && ahead > Duration::from_millis(1)
            {
                tokio::select! {
                    () = tokio::time::sleep(ahead) => {}
                    () = stopped() => break,
                }
            }
        }
        // Under Overflow::Wait this waits for room; the drop policies never wait. A push given
        // up while waiting was never buffered, so it is not counted.
        tokio::select! {
            biased;
            () = stopped() => break,
            pushed = pusher.push((n, recipient(n))) => {
                if pushed.is_err_and(|e| e.is_closed()) {
                    break;
                }
            }
        }
    }
    let report = if *interrupted.borrow_and_update() {
        // Sends still in flight after the time-out are cancelled and counted, as is the rest.
        pusher.shutdown(Duration::from_secs(10)).await
    } else {
        // Waits until every buffered push is answered, unless interrupted meanwhile.
        tokio::select! {
            report = pusher.close() => report,
            () = stopped() => pusher.shutdown(Duration::from_secs(10)).await,
        }
    };
    // ANCHOR_END: produce
    Ok((report, latencies))
}

fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    // One thread keeps every wake-up of a push (lane, HTTP/2 connection, answer) on the thread
    // that polls the sockets; more threads spread the CPU over the cores.
    let runtime = match config.workers {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        workers => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?,
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let _logging = Logging::new().stderr().default_level("warn").init()?;
    let token = config
        .token
        .clone()
        .unwrap_or_else(|| "demo-token".to_owned());
    let (fake, api_base) = match (&config.token, &config.api_base) {
        (Some(_), base) => (
            None,
            base.clone()
                .unwrap_or_else(|| bot_line::client::DEFAULT_API_BASE.to_owned()),
        ),
        (None, _) => {
            let fake = FakeLine::start_with(
                &token,
                FakeApi::builder()
                    .max_concurrent_streams(u32::try_from(config.window).unwrap_or(u32::MAX))
                    .latency(Latency::Fixed(config.latency)),
            )
            .await
            .map_err(|e| config_error("cannot start the fake line api").with_source(e))?;
            fake.api().set_recording(false);
            let url = fake.url();
            eprintln!(
                "demo: no LINE_CHANNEL_ACCESS_TOKEN, pushing {} messages to a fake LINE API at {url} ({} ms per answer)",
                config.count,
                config.latency.as_millis()
            );
            (Some(fake), url)
        }
    };
    let demo = fake.is_some();
    let mut config = config;
    if demo && var("BROADCAST_PUSH_PER_SECOND").is_none() {
        // The fake has no quota: let the window be the limit.
        config.push_per_second = 10_000_000;
    }
    let clients = line_clients(&config, &token, &api_base)?;
    let (report, latencies) = broadcast(&config, clients).await?;
    let latencies = latencies
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let window_limit =
        demo.then(|| (config.lanes * config.window) as f64 / config.latency.as_secs_f64());
    let received = fake.as_ref().map(|f| f.api().call_count() as u64);
    print_report(&config, &report, &latencies, window_limit, received);
    if !report.is_balanced() {
        anyhow::bail!("the counts do not add up");
    }
    Ok(())
}

fn print_report(
    config: &Config,
    report: &PushReport,
    latencies: &Histogram<u64>,
    window_limit: Option<f64>,
    received: Option<u64>,
) {
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    let seconds = report.elapsed.as_secs_f64();
    let per_second = report.sent_per_second();
    if config.json {
        let json = serde_json::json!({
            "offered": report.offered,
            "sent": report.sent,
            "failed": report.failed,
            "dropped_oldest": report.dropped_oldest,
            "dropped_newest": report.dropped_newest,
            "rejected": report.rejected,
            "unsent": report.unsent,
            "cancelled": report.cancelled,
            "seconds": seconds,
            "sent_per_second": per_second,
            "latency_ms": {"mean": latencies.mean() / 1000.0, "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": latencies.max() as f64 / 1000.0},
            "received_by_fake": received,
        });
        println!("{json}");
        return;
    }
    println!(
        "offered {}, sent {}, failed {}, dropped {} (oldest {}, newest {}, rejected {}, unsent {}, cancelled {})",
        report.offered,
        report.sent,
        report.failed,
        report.dropped(),
        report.dropped_oldest,
        report.dropped_newest,
        report.rejected,
        report.unsent,
        report.cancelled,
    );
    print!("{per_second:.0} pushes/s over {seconds:.1} s");
    if let Some(limit) = window_limit {
        print!(
            " = {:.1} % of the window limit {limit:.0}/s ({} lanes x {} / {} ms)",
            100.0 * per_second / limit,
            config.lanes,
            config.window,
            config.latency.as_millis()
        );
    }
    println!();
    println!(
        "push latency mean {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.mean() / 1000.0,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        latencies.max() as f64 / 1000.0
    );
    if let Some(received) = received {
        println!("the fake received {received} pushes");
    }
}
