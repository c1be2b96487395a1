//! The `slow-api` and `db-pool` scenarios: a bot whose every handler awaits a 2-3 s API call,
//! with tens of thousands of them in flight, and the same with one PostgreSQL query per event
//! through a pool far smaller than that.
//!
//! botload serves a fake LINE Reply API in its own process (HTTP/1.1 and h2c, answering after
//! the latency), starts `scenario-bot` as a child process pointed at it, posts signed webhooks at
//! a fixed rate, and reads the outcome from three places: the fake (which reply tokens came back,
//! when, twice or never), `/proc` (the bot's memory and CPU) and the bot's `/metrics` (queue
//! depth, handler outcomes, pool waits).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bot_core::Secret;
use bot_core::pg::PgPool;
use bot_core::testing::fake_api::{FakeApi, FakeRequest, FakeResponse, Latency};
use hdrhistogram::Histogram;
use reqwest::StatusCode;

use crate::RecordArgs;
use crate::load::histogram;
use crate::payload::{Platform, signed};
use crate::prom;
use crate::record::{Row, Verdict};
use crate::scenario::rss_kib;
use crate::scenario::{
    SECRET, Started, TOKEN, free_port, sibling_binary, thousands, usage, wait_ready,
};

/// The Reply API's path.
const REPLY_PATH: &str = "/v2/bot/message/reply";
/// The database of `db-pool` when neither `--database-url` nor `DATABASE_URL` is given.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Seconds at the start of the load left out of the throughput: in-flight calls are still
/// filling up (the first answers come after the API's lowest latency).
const RAMP_UP_SECONDS: u64 = 3;
/// Event numbers in the reply tokens are `request * 1000 + event` (see `payload`).
const EVENTS_PER_REQUEST_STRIDE: u64 = 1000;

/// The `slow-api` goals.
const GOAL_EVENTS_PER_SECOND: f64 = 15_000.0;
const GOAL_KIB_PER_IN_FLIGHT: f64 = 4.0;

/// The load and the bot's limits, shared by both scenarios.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// Webhook requests per second, each with --events-per-request text events.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// Events per request.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
    events_per_request: u16,
    /// Conversations the events go round; at least --max-in-flight, or per-conversation
    /// ordering caps the handlers in flight at this number.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    conversations: u64,
    /// How long webhooks are sent (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// Connections the webhooks are sent over, each with one request at a time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    connections: u16,
    /// The bot's `Limits::max_in_flight`.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_in_flight: u64,
    /// The bot's `Limits::queue_capacity` (events waiting beyond those in flight).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    queue_capacity: u64,
    /// The fake API's quickest answer (`2s`, `0s`).
    #[arg(long, default_value = "2s", value_parser = parse_latency)]
    api_latency_min: Duration,
    /// The fake API's slowest answer; each call takes a uniform time between the two.
    #[arg(long, default_value = "3s", value_parser = parse_latency)]
    api_latency_max: Duration,
    /// The share of API calls the fake answers 429 (rate limited, nothing done; the client
    /// retries them), from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    api_429_rate: f64,
    /// The share of API calls the fake answers 500 (nothing done; the client retries them),
    /// from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    api_500_rate: f64,
    /// How long to wait, after the last webhook, for the events still queued or in flight.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    drain_timeout: Duration,
}

/// A share of calls, from 0 to 1.
fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{value:?} is not a share between 0 and 1 (such as 0.01)"
        )),
    }
}

/// `botload scenario slow-api`.
#[derive(Debug, clap::Args)]
pub(crate) struct SlowApiArgs {
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    #[command(flatten)]
    pub(crate) record: RecordArgs,
}

/// `botload scenario db-pool`.
#[derive(Debug, clap::Args)]
pub(crate) struct DbPoolArgs {
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    /// The PostgreSQL database (default: `DATABASE_URL`, else
    /// postgres://postgres@127.0.0.1:5432/postgres, as scripts/test.sh).
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// Connections in the bot's pool, shared by every handler.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) pool_size: u64,
    /// The query each handler runs.
    #[arg(long, value_enum, default_value_t = Query::Select)]
    pub(crate) query: Query,
    #[command(flatten)]
    pub(crate) record: RecordArgs,
}

/// The query of each `db-pool` handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Query {
    /// The conversation's row by primary key (the table holds one per conversation): the read
    /// a bot makes for each message (settings, a session).
    Select,
    /// One more on the conversation's counter row: a write, and a commit per event.
    Upsert,
}

impl Query {
    fn as_str(self) -> &'static str {
        match self {
            Query::Select => "select",
            Query::Upsert => "upsert",
        }
    }
}

fn parse_latency(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is not a duration such as 2s or 250ms: {e}"))
}

impl LoadArgs {
    fn check(&self) -> Result<(), String> {
        if self.api_latency_min > self.api_latency_max {
            return Err(format!(
                "--api-latency-min ({:?}) is above --api-latency-max ({:?})",
                self.api_latency_min, self.api_latency_max
            ));
        }
        if self.conversations < self.max_in_flight {
            eprintln!(
                "botload: {} conversations for {} handlers in flight: one event per conversation \
                 runs at a time, so at most {} can be in flight",
                self.conversations, self.max_in_flight, self.conversations
            );
        }
        Ok(())
    }

    fn latency(&self) -> Latency {
        match (self.api_latency_min, self.api_latency_max) {
            (low, high) if high.is_zero() && low.is_zero() => Latency::None,
            (low, high) if low == high => Latency::Fixed(low),
            (low, high) => Latency::Uniform(low, high),
        }
    }

    fn requests(&self) -> u64 {
        (u64::from(self.rate) as f64 * self.duration.as_secs_f64()).ceil() as u64
    }

    fn mean_latency(&self) -> f64 {
        (self.api_latency_min + self.api_latency_max).as_secs_f64() / 2.0
    }
}

/// What the fake API saw: reply calls by second, their tokens, how long after the webhook.
struct Tally {
    epoch: Instant,
    events_per_request: u64,
    /// When the load started, µs after `epoch`.
    load_started: AtomicU64,
    /// When each request was sent, µs after `epoch`, plus one (0: not sent).
    sent_at: Vec<AtomicU64>,
    /// One bit per event: its reply token came.
    seen: Vec<AtomicU64>,
    /// Reply calls arrived, by second after the load started.
    per_second: Vec<AtomicU64>,
    replies: AtomicU64,
    duplicates: AtomicU64,
    unknown: AtomicU64,
    /// Webhook sent → its reply call arrived at the API, µs.
    to_call: Mutex<Histogram<u64>>,
    /// Webhook sent → the API answered the reply, µs.
    to_answer: Mutex<Histogram<u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Tally {
    fn new(requests: u64, events_per_request: u64, seconds: u64) -> Self {
        let events = requests * events_per_request;
        let atomics = |n: u64| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Self {
            epoch: Instant::now(),
            events_per_request,
            load_started: AtomicU64::new(0),
            sent_at: atomics(requests),
            seen: atomics(events.div_ceil(64)),
            per_second: atomics(seconds),
            replies: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            to_call: Mutex::new(histogram()),
            to_answer: Mutex::new(histogram()),
        }
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        micros(at.saturating_duration_since(self.epoch))
    }

    /// The fake's answer to one request, as LINE's Reply API would give it; a reply token that
    /// comes twice is refused as LINE does.
    fn answer(&self, request: &FakeRequest, ok: &FakeResponse) -> FakeResponse {
        let refuse = |status: StatusCode, message: &str| {
            FakeResponse::json(status, &serde_json::json!({ "message": message }))
        };
        if request.bearer() != Some(TOKEN) {
            return refuse(StatusCode::UNAUTHORIZED, "Authentication failed");
        }
        if request.path != REPLY_PATH {
            return refuse(StatusCode::NOT_FOUND, "Not found");
        }
        let index = reply_number(&request.body).and_then(|n| {
            let (r, e) = (n / EVENTS_PER_REQUEST_STRIDE, n % EVENTS_PER_REQUEST_STRIDE);
            let index = r.checked_mul(self.events_per_request)? + e;
            (e < self.events_per_request && index / 64 < self.seen.len() as u64)
                .then_some((r, index))
        });
        let Some((r, index)) = index else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return refuse(StatusCode::BAD_REQUEST, "Invalid reply token");
        };
        let bit = 1u64 << (index % 64);
        if self.seen[(index / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return refuse(StatusCode::BAD_REQUEST, "Invalid reply token");
        }
        self.replies.fetch_add(1, Ordering::Relaxed);
        let arrived = self.since_epoch(request.received_at);
        let answered = self.since_epoch(Instant::now());
        let started = self.load_started.load(Ordering::Relaxed);
        let second = arrived.saturating_sub(started) / 1_000_000;
        if let Some(count) = self.per_second.get(second as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let sent = self.sent_at[r as usize].load(Ordering::Relaxed);
        if sent > 0 {
            let sent = sent - 1;
            lock(&self.to_call).saturating_record(arrived.saturating_sub(sent).max(1));
            lock(&self.to_answer).saturating_record(answered.saturating_sub(sent).max(1));
        }
        ok.clone()
    }
}

/// The event number in a reply call's `"replyToken":"rt<hex>"`.
fn reply_number(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"replyToken\":\"rt";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &body[start..];
    let end = rest.iter().position(|&b| b == b'"')?;
    u64::from_str_radix(std::str::from_utf8(&rest[..end]).ok()?, 16).ok()
}

/// What the webhooks got.
#[derive(Default)]
struct Sent {
    next: AtomicU64,
    ok: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

/// Posts `args.rate` signed webhooks per second to `url` for `args.duration`, each at its own
/// time whatever the answers take (an open loop, as a platform delivers), and returns the
/// webhooks' latencies.
async fn send(args: &LoadArgs, url: &str, tally: &Arc<Tally>, sent: &Arc<Sent>) -> Histogram<u64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::from(args.connections))
        .build()
        .expect("an http client");
    let total = args.requests();
    let start = Instant::now();
    tally
        .load_started
        .store(tally.since_epoch(start), Ordering::Relaxed);
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            let (client, tally, sent, url) =
                (client.clone(), tally.clone(), sent.clone(), url.to_owned());
            let (rate, epr, conversations) = (
                f64::from(args.rate),
                usize::from(args.events_per_request),
                args.conversations,
            );
            // One long-lived task per load-generating connection.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(async move {
                let secret = Secret::new(SECRET);
                let mut latencies = histogram();
                loop {
                    let r = sent.next.fetch_add(1, Ordering::Relaxed);
                    if r >= total {
                        break;
                    }
                    let due = start + Duration::from_secs_f64(r as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    let webhook = signed(Platform::Line, &secret, r, epr, conversations);
                    let at = Instant::now();
                    tally.sent_at[r as usize].store(tally.since_epoch(at) + 1, Ordering::Relaxed);
                    let response = client
                        .post(&url)
                        .header(Platform::Line.signature_header(), webhook.signature)
                        .header("content-type", "application/json")
                        .body(webhook.body)
                        .send()
                        .await;
                    let counter = match response.map(|r| r.status().as_u16()) {
                        Ok(200..=299) => {
                            latencies.saturating_record(micros(at.elapsed()).max(1));
                            &sent.ok
                        }
                        Ok(503) => &sent.refused,
                        Ok(_) => &sent.other,
                        Err(_) => &sent.errors,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = histogram();
    for task in tasks {
        if let Ok(h) = task.await {
            let _ = latencies.add(h);
        }
    }
    latencies
}

/// CPU seconds used so far by the PostgreSQL backends connected to `database` (not those of
/// other databases, which other work on the machine may be using).
fn postgres_cpu_seconds(database: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let marker = format!(" {database} ");
    let ticks: u64 = entries
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cmdline"))
                .is_ok_and(|c| c.starts_with("postgres:") && c.contains(&marker))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    // Linux reports these in USER_HZ, 100 per second on every platform Rust targets.
    ticks as f64 / 100.0
}

async fn scrape(client: &reqwest::Client, base: &str) -> Option<String> {
    let response = client.get(format!("{base}/metrics")).send().await.ok()?;
    response.text().await.ok()
}

/// Peaks seen by the sampler while the load runs.
#[derive(Default)]
struct Peaks {
    queue_depth: AtomicU64,
    bot_in_flight: AtomicU64,
}

/// The database of `db-pool`.
struct Database {
    url: String,
    pool_size: u64,
    query: Query,
}

impl Database {
    /// The database's name: the URL's path (`postgres://u@h:5432/test` → `test`).
    fn name(&self) -> &str {
        let path = self.url.rsplit_once('/').map_or("", |(_, db)| db);
        path.split(['?', '#']).next().unwrap_or("")
    }
}

/// Everything one run measured.
struct Outcome {
    load: LoadArgs,
    webhook: Histogram<u64>,
    ok: u64,
    refused: u64,
    other: u64,
    errors: u64,
    replies: u64,
    duplicates: u64,
    unknown: u64,
    steady_events_per_second: f64,
    to_call: Histogram<u64>,
    to_answer: Histogram<u64>,
    /// Handlers running at once, at most (the bot's `bot_inflight`, sampled each second).
    peak_in_flight: u64,
    /// API calls unanswered at once, at most (the fake's count).
    peak_api_calls: u64,
    peak_queue_depth: u64,
    connections_to_api: usize,
    base_rss_kib: u64,
    peak_rss_kib: u64,
    seconds: f64,
    drained_in: Option<f64>,
    bot_cpu: f64,
    botload_cpu: f64,
    postgres_cpu: f64,
    metrics: String,
}

impl Outcome {
    fn events_accepted(&self) -> u64 {
        self.ok * u64::from(self.load.events_per_request)
    }

    /// Events in flight at most: the handlers running, or the API calls if more were seen
    /// (the handler count is sampled once a second, the calls counted exactly).
    fn in_flight(&self) -> u64 {
        self.peak_in_flight.max(self.peak_api_calls)
    }

    fn kib_per_in_flight(&self) -> f64 {
        self.peak_rss_kib.saturating_sub(self.base_rss_kib) as f64 / self.in_flight().max(1) as f64
    }

    fn processed(&self, outcome: &str) -> f64 {
        prom::sum(
            &self.metrics,
            "bot_events_processed_total",
            &[("outcome", outcome)],
        )
    }

    fn print(&self, title: &str) {
        let ms = |us: u64| us as f64 / 1000.0;
        let l = &self.load;
        println!("{title}");
        println!(
            "load: {} webhooks/s × {} events for {:?} over {} connections, {} conversations; \
             bot: max_in_flight {}, queue_capacity {}; API latency {:?}..{:?}",
            l.rate,
            l.events_per_request,
            l.duration,
            l.connections,
            thousands(l.conversations as f64),
            thousands(l.max_in_flight as f64),
            thousands(l.queue_capacity as f64),
            l.api_latency_min,
            l.api_latency_max,
        );
        println!(
            "webhooks: {} ok, {} refused 503, {} other, {} failed; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.ok,
            self.refused,
            self.other,
            self.errors,
            ms(self.webhook.value_at_quantile(0.5)),
            ms(self.webhook.value_at_quantile(0.99)),
            ms(self.webhook.max()),
        );
        println!(
            "replies: {} of {} events accepted ({} twice, {} unknown); steady state (after {RAMP_UP_SECONDS} s): {} events/s",
            self.replies,
            self.events_accepted(),
            self.duplicates,
            self.unknown,
            thousands(self.steady_events_per_second),
        );
        println!(
            "webhook sent → reply call at the API: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; \
             → reply answered: p50 {:.0} ms, p99 {:.0} ms",
            ms(self.to_call.value_at_quantile(0.5)),
            ms(self.to_call.value_at_quantile(0.9)),
            ms(self.to_call.value_at_quantile(0.99)),
            ms(self.to_call.max()),
            ms(self.to_answer.value_at_quantile(0.5)),
            ms(self.to_answer.value_at_quantile(0.99)),
        );
        println!(
            "in flight: peak {} handlers running, {} API calls (over {} connection(s)), peak queue depth {}; \
             at most {} events/s by in-flight / mean latency",
            thousands(self.peak_in_flight as f64),
            thousands(self.peak_api_calls as f64),
            self.connections_to_api,
            thousands(self.peak_queue_depth as f64),
            thousands(self.in_flight() as f64 / l.mean_latency().max(1e-3)),
        );
        println!(
            "bot memory: {:.1} MiB before the load, {:.1} MiB peak: {:.2} KiB per in-flight event",
            self.base_rss_kib as f64 / 1024.0,
            self.peak_rss_kib as f64 / 1024.0,
            self.kib_per_in_flight(),
        );
        println!(
            "CPU over {:.1} s: bot {:.1} s ({:.0} % of one core), botload (webhooks + fake API) {:.1} s, PostgreSQL backends of the bot {:.1} s; {}",
            self.seconds,
            self.bot_cpu,
            100.0 * self.bot_cpu / self.seconds,
            self.botload_cpu,
            self.postgres_cpu,
            match self.drained_in {
                Some(s) => format!("drained {s:.1} s after the last webhook"),
                None => format!("NOT drained within {:?}", l.drain_timeout),
            }
        );
        println!(
            "handlers: {} ok, {} error, {} timeout, {} panic; API calls by status: {:?}",
            self.processed("ok"),
            self.processed("error"),
            self.processed("timeout"),
            self.processed("panic"),
            prom::by_label(&self.metrics, "bot_outbound_requests_total", "status"),
        );
    }
}

/// Starts the fake API and the bot, loads it, waits for the drain, and collects the figures.
async fn run(load: &LoadArgs, database: Option<&Database>) -> Result<Outcome, String> {
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

/// Checks that PostgreSQL answers and empties the table of the `db` handlers; for `select`,
/// fills it with one row per conversation.
async fn prepare_database(url: &str, query: Query, conversations: u64) -> Result<PgPool, String> {
    let pool = PgPool::builder(url)
        .max_size(1)
        .create_timeout(Duration::from_secs(5))
        .wait_timeout(Duration::from_secs(5))
        .application_name("botload")
        .build()
        .map_err(|e| format!("db-pool: {e}"))?;
    let conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            crate::scenario::ensure_postgres(url, &e.to_string())?;
            pool.get().await.map_err(|e| {
                format!("db-pool: PostgreSQL at {url} does not answer after starting it: {e}")
            })?
        }
    };
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS botload_counters \
           (conversation text PRIMARY KEY, events bigint NOT NULL); \
         TRUNCATE botload_counters",
    )
    .await
    .map_err(|e| format!("db-pool: cannot set up the botload_counters table: {e}"))?;
    if query == Query::Select {
        // The conversation ids of the LINE users of `payload`.
        conn.execute(
            "INSERT INTO botload_counters \
             SELECT 'U' || lpad(to_hex(n), 32, '0'), 0 \
             FROM generate_series(0::bigint, $1::bigint - 1) n",
            &[&i64::try_from(conversations).unwrap_or(i64::MAX)],
        )
        .await
        .map_err(|e| format!("db-pool: cannot fill the botload_counters table: {e}"))?;
        conn.batch_execute("ANALYZE botload_counters")
            .await
            .map_err(|e| format!("db-pool: {e}"))?;
    }
    drop(conn);
    Ok(pool)
}

/// `db-pool`: the same load, each handler also upserting a per-conversation counter through
/// `cx.db()` with a pool of a few connections; no time-outs allowed, pool waits reported.
pub(crate) async fn db_pool(args: &DbPoolArgs) -> Result<Row, String> {
    let url = args
        .database_url
        .clone()
        .or_else(|| std::env::var(bot_core::pg::DATABASE_URL_ENV).ok())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let pool = prepare_database(&url, args.query, args.load.conversations).await?;
    let database = Database {
        url,
        pool_size: args.pool_size,
        query: args.query,
    };
    let outcome = run(&args.load, Some(&database)).await?;
    outcome.print(&format!(
        "db-pool (scenario-bot: one {} through cx.db(), then cx.reply; memory queue)",
        args.query.as_str()
    ));
    let conn = pool.get().await.map_err(|e| format!("db-pool: {e}"))?;
    let row = conn
        .query_one(
            "SELECT coalesce(sum(events), 0)::bigint, count(*) FROM botload_counters",
            &[],
        )
        .await
        .map_err(|e| format!("db-pool: cannot read the counters: {e}"))?;
    let (counted, rows): (i64, i64) = (row.get(0), row.get(1));
    let wait = prom::Histogram::parse(&outcome.metrics, "bot_db_pool_wait_seconds");
    let at = |q: f64| {
        wait.as_ref()
            .and_then(|h| h.quantile(q))
            .map_or(f64::NAN, |s| s * 1000.0)
    };
    let pool_timeouts = prom::sum(&outcome.metrics, "db_client_connection_timeouts_total", &[]);
    let (errors, timeouts, panics) = (
        outcome.processed("error"),
        outcome.processed("timeout"),
        outcome.processed("panic"),
    );
    println!(
        "pool of {} ({} per event): {} waits, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; \
         {} pool time-outs; table: {} upserts over {} rows for {} events accepted",
        args.pool_size,
        args.query.as_str(),
        wait.as_ref().map_or(0.0, prom::Histogram::count),
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        pool_timeouts,
        counted,
        rows,
        outcome.events_accepted(),
    );
    let missing = outcome.events_accepted().saturating_sub(outcome.replies);
    let met = pool_timeouts == 0.0
        && errors == 0.0
        && timeouts == 0.0
        && panics == 0.0
        && missing == 0
        && (args.query == Query::Select
            || u64::try_from(counted).unwrap_or(0) >= outcome.events_accepted());
    Ok(Row {
        name: format!(
            "db-pool ({}, pool {}, API {:?}-{:?}, max_in_flight {})",
            args.query.as_str(),
            args.pool_size,
            args.load.api_latency_min,
            args.load.api_latency_max,
            thousands(args.load.max_in_flight as f64)
        ),
        result: format!(
            "{} events/s steady; peak {} in flight; pool wait p50 {:.1} ms, p99 {:.1} ms; \
             {} pool time-outs, {} handler errors, {} handler time-outs; {} of {} events queried \
             and answered; {} of {} webhooks 503; bot {:.0} % CPU, PostgreSQL {:.0} %",
            thousands(outcome.steady_events_per_second),
            thousands(outcome.peak_in_flight as f64),
            at(0.5),
            at(0.99),
            pool_timeouts,
            errors,
            timeouts,
            thousands(outcome.replies as f64),
            thousands(outcome.events_accepted() as f64),
            outcome.refused,
            args.load.requests(),
            100.0 * outcome.bot_cpu / outcome.seconds,
            100.0 * outcome.postgres_cpu / outcome.seconds,
        ),
        goal: "no time-out or handler error; pool waits reported".to_owned(),
        verdict: if met { Verdict::Met } else { Verdict::Missed },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_request(body: &str) -> FakeRequest {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        FakeRequest {
            method: reqwest::Method::POST,
            path: REPLY_PATH.to_owned(),
            query: None,
            headers,
            body: body.to_owned().into(),
            received_at: Instant::now(),
        }
    }

    #[test]
    fn reply_tokens_of_the_payloads_map_back_to_their_events() {
        let body = signed(Platform::Line, &Secret::new("s"), 42, 10, 7).body;
        let events = bot_line::event::events_from_body(body.as_bytes()).unwrap();
        let token = events[3].reply_token.as_ref().unwrap().expose().to_owned();
        let call =
            format!(r#"{{"messages":[{{"type":"text","text":"ok"}}],"replyToken":"{token}"}}"#);
        assert_eq!(reply_number(call.as_bytes()), Some(42 * 1000 + 3));
        assert_eq!(reply_number(br#"{"replyToken":"other"}"#), None);
        assert_eq!(reply_number(b"{}"), None);
    }

    #[test]
    fn the_fake_counts_each_reply_once_and_refuses_a_second_use() {
        let tally = Tally::new(10, 10, 60);
        let ok = FakeResponse::empty(StatusCode::OK);
        let first = reply_request(r#"{"replyToken":"rt0000000000000000000000000007d5"}"#);
        // 0x7d5 = 2005: request 2, event 5.
        assert_eq!(tally.answer(&first, &ok).status, StatusCode::OK);
        assert_eq!(tally.answer(&first, &ok).status, StatusCode::BAD_REQUEST);
        let other = reply_request(r#"{"replyToken":"rt000000000000000000000000000000"}"#);
        assert_eq!(tally.answer(&other, &ok).status, StatusCode::OK);
        // Event 12 of a request of 10 events, and a request past the run, are not ours.
        let stray = reply_request(r#"{"replyToken":"rt00000000000000000000000000000c"}"#);
        assert_eq!(tally.answer(&stray, &ok).status, StatusCode::BAD_REQUEST);
        let late = reply_request(r#"{"replyToken":"rt0000000000000000000000000186a0"}"#);
        assert_eq!(tally.answer(&late, &ok).status, StatusCode::BAD_REQUEST);
        let mut anonymous = first.clone();
        anonymous.headers.clear();
        assert_eq!(
            tally.answer(&anonymous, &ok).status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(tally.replies.load(Ordering::Relaxed), 2);
        assert_eq!(tally.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(tally.unknown.load(Ordering::Relaxed), 2);
        assert_eq!(
            tally
                .per_second
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>(),
            2
        );
    }

    #[test]
    fn the_database_name_comes_from_the_url() {
        let db = |url: &str| Database {
            url: url.to_owned(),
            pool_size: 1,
            query: Query::Select,
        };
        assert_eq!(db("postgres://postgres@127.0.0.1:5432/test").name(), "test");
        assert_eq!(db("postgres://u@h/bots?sslmode=disable").name(), "bots");
    }

    #[test]
    fn latency_bounds_are_checked() {
        let mut args = LoadArgs {
            rate: 10,
            events_per_request: 10,
            conversations: 100,
            duration: Duration::from_secs(1),
            connections: 1,
            max_in_flight: 10,
            queue_capacity: 10,
            api_latency_min: Duration::from_secs(3),
            api_latency_max: Duration::from_secs(2),
            api_429_rate: 0.0,
            api_500_rate: 0.0,
            drain_timeout: Duration::from_secs(1),
        };
        assert!(args.check().unwrap_err().contains("--api-latency-min"));
        args.api_latency_max = Duration::from_secs(3);
        args.check().unwrap();
        assert_eq!(args.latency(), Latency::Fixed(Duration::from_secs(3)));
        args.api_latency_min = Duration::ZERO;
        args.api_latency_max = Duration::ZERO;
        assert_eq!(args.latency(), Latency::None);
        assert_eq!(args.requests(), 10);
    }

    #[test]
    fn failure_rates_are_shares_between_0_and_1() {
        assert_eq!(parse_rate("0.01"), Ok(0.01));
        assert_eq!(parse_rate("1"), Ok(1.0));
        assert!(parse_rate("1.5").unwrap_err().contains("between 0 and 1"));
        assert!(parse_rate("-0.1").is_err());
        assert!(parse_rate("often").is_err());
    }
}
