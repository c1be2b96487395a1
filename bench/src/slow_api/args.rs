//! The scenarios' command-line arguments: the load, the fake API, the database.

use std::time::Duration;

use bot_core::testing::fake_api::Latency;

use crate::RecordArgs;

/// The load and the bot's limits, shared by both scenarios.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// Webhook requests per second, each with --events-per-request text events.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(super) rate: u32,
    /// Events per request.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub(super) events_per_request: u16,
    /// Conversations the events go round; at least --max-in-flight, or per-conversation
    /// ordering caps the handlers in flight at this number.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) conversations: u64,
    /// How long webhooks are sent (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    pub(super) duration: Duration,
    /// Connections the webhooks are sent over, each with one request at a time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub(super) connections: u16,
    /// The bot's `Limits::max_in_flight`.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(super) max_in_flight: u64,
    /// The bot's `Limits::queue_capacity` (events waiting beyond those in flight).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(super) queue_capacity: u64,
    /// The fake API's quickest answer (`2s`, `0s`).
    #[arg(long, default_value = "2s", value_parser = parse_latency)]
    pub(super) api_latency_min: Duration,
    /// The fake API's slowest answer; each call takes a uniform time between the two.
    #[arg(long, default_value = "3s", value_parser = parse_latency)]
    pub(super) api_latency_max: Duration,
    /// The share of API calls the fake answers 429 (rate limited, nothing done; the client
    /// retries them), from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub(super) api_429_rate: f64,
    /// The share of API calls the fake answers 500 (nothing done; the client retries them),
    /// from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub(super) api_500_rate: f64,
    /// How long to wait, after the last webhook, for the events still queued or in flight.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    pub(super) drain_timeout: Duration,
}

/// A share of calls, from 0 to 1.
pub(super) fn parse_rate(value: &str) -> Result<f64, String> {
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
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Query::Select => "select",
            Query::Upsert => "upsert",
        }
    }
}

pub(super) fn parse_latency(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is not a duration such as 2s or 250ms: {e}"))
}

impl LoadArgs {
    pub(super) fn check(&self) -> Result<(), String> {
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

    pub(super) fn latency(&self) -> Latency {
        match (self.api_latency_min, self.api_latency_max) {
            (low, high) if high.is_zero() && low.is_zero() => Latency::None,
            (low, high) if low == high => Latency::Fixed(low),
            (low, high) => Latency::Uniform(low, high),
        }
    }

    pub(super) fn requests(&self) -> u64 {
        (u64::from(self.rate) as f64 * self.duration.as_secs_f64()).ceil() as u64
    }

    pub(super) fn mean_latency(&self) -> f64 {
        (self.api_latency_min + self.api_latency_max).as_secs_f64() / 2.0
    }
}
