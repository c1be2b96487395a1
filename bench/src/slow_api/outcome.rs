//! What one run measured: the fake's tally, the bot's memory, CPU and metrics.

use std::sync::atomic::AtomicU64;

use hdrhistogram::Histogram;

use super::RAMP_UP_SECONDS;
use super::args::{LoadArgs, Query};
use crate::prom;
use crate::scenario::thousands;

/// CPU seconds used so far by the PostgreSQL backends connected to `database` (not those of
/// other databases, which other work on the machine may be using).
pub(super) fn postgres_cpu_seconds(database: &str) -> f64 {
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

pub(super) async fn scrape(client: &reqwest::Client, base: &str) -> Option<String> {
    let response = client.get(format!("{base}/metrics")).send().await.ok()?;
    response.text().await.ok()
}

/// Peaks seen by the sampler while the load runs.
#[derive(Default)]
pub(super) struct Peaks {
    pub(super) queue_depth: AtomicU64,
    pub(super) bot_in_flight: AtomicU64,
}

/// The database of `db-pool`.
pub(super) struct Database {
    pub(super) url: String,
    pub(super) pool_size: u64,
    pub(super) query: Query,
}

impl Database {
    /// The database's name: the URL's path (`postgres://u@h:5432/test` → `test`).
    pub(super) fn name(&self) -> &str {
        let path = self.url.rsplit_once('/').map_or("", |(_, db)| db);
        path.split(['?', '#']).next().unwrap_or("")
    }
}

/// Everything one run measured.
pub(super) struct Outcome {
    pub(super) load: LoadArgs,
    pub(super) webhook: Histogram<u64>,
    pub(super) ok: u64,
    pub(super) refused: u64,
    pub(super) other: u64,
    pub(super) errors: u64,
    pub(super) replies: u64,
    pub(super) duplicates: u64,
    pub(super) unknown: u64,
    pub(super) steady_events_per_second: f64,
    pub(super) to_call: Histogram<u64>,
    pub(super) to_answer: Histogram<u64>,
    /// Handlers running at once, at most (the bot's `bot_inflight`, sampled each second).
    pub(super) peak_in_flight: u64,
    /// API calls unanswered at once, at most (the fake's count).
    pub(super) peak_api_calls: u64,
    pub(super) peak_queue_depth: u64,
    pub(super) connections_to_api: usize,
    pub(super) base_rss_kib: u64,
    pub(super) peak_rss_kib: u64,
    pub(super) seconds: f64,
    pub(super) drained_in: Option<f64>,
    pub(super) bot_cpu: f64,
    pub(super) botload_cpu: f64,
    pub(super) postgres_cpu: f64,
    pub(super) metrics: String,
}

impl Outcome {
    pub(super) fn events_accepted(&self) -> u64 {
        self.ok * u64::from(self.load.events_per_request)
    }

    /// Events in flight at most: the handlers running, or the API calls if more were seen
    /// (the handler count is sampled once a second, the calls counted exactly).
    pub(super) fn in_flight(&self) -> u64 {
        self.peak_in_flight.max(self.peak_api_calls)
    }

    pub(super) fn kib_per_in_flight(&self) -> f64 {
        self.peak_rss_kib.saturating_sub(self.base_rss_kib) as f64 / self.in_flight().max(1) as f64
    }

    pub(super) fn processed(&self, outcome: &str) -> f64 {
        prom::sum(
            &self.metrics,
            "bot_events_processed_total",
            &[("outcome", outcome)],
        )
    }

    pub(super) fn print(&self, title: &str) {
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
