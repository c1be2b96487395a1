//! [`Figures`]: the runtime's live numbers, read from the bot's own Prometheus text.

use std::collections::BTreeMap;

use serde::Serialize;

/// What the side panel shows of the runtime.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Handlers running now (`bot_inflight`).
    pub in_flight: f64,
    /// Events waiting in the queue (`bot_queue_depth`).
    pub queue_depth: f64,
    /// Handler attempts finished, by outcome (`bot_events_processed_total`).
    pub processed: BTreeMap<String, f64>,
    /// Events dead-lettered (`bot_events_dead_total`).
    pub dead: f64,
    /// Upper bound of the histogram bucket holding the 99th percentile of handler durations, in
    /// milliseconds (`bot_handler_duration_seconds`); `None` before the first attempt.
    pub p99_ms: Option<f64>,
    /// Handler attempts measured.
    pub measured: f64,
}

/// One sample line: metric name, labels, value.
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    match series.split_once('{') {
        Some((name, labels)) => Some((name, labels.trim_end_matches('}'), value)),
        None => Some((series, "", value)),
    }
}

/// The value of `name` in `labels` (`a="x",b="y"`).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

impl Figures {
    /// Reads the figures from Prometheus text exposition (`Telemetry::render_prometheus`).
    pub fn from_prometheus(text: &str) -> Self {
        let mut figures = Self::default();
        // Cumulative counts by upper bound, summed over every label set.
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (name, labels, value) in text.lines().filter_map(sample) {
            match name {
                "bot_inflight" => figures.in_flight += value,
                "bot_queue_depth" => figures.queue_depth += value,
                "bot_events_dead_total" => figures.dead += value,
                "bot_events_processed_total" => {
                    let outcome = label(labels, "outcome").unwrap_or("unknown");
                    *figures.processed.entry(outcome.to_owned()).or_default() += value;
                }
                "bot_handler_duration_seconds_bucket" => {
                    let le = match label(labels, "le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(le) => le.parse().unwrap_or(f64::INFINITY),
                        None => continue,
                    };
                    buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += value;
                }
                _ => {}
            }
        }
        let mut bounds: Vec<(f64, f64)> = buckets.into_values().collect();
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = bounds.last().map_or(0.0, |b| b.1);
        figures.measured = total;
        if total > 0.0 {
            let wanted = total * 0.99;
            figures.p99_ms = bounds
                .iter()
                .find(|(_, count)| *count >= wanted)
                .map(|(le, _)| le * 1000.0);
        }
        figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gauges_counters_and_the_p99_bucket() {
        let text = r#"# HELP bot_inflight handlers running
# TYPE bot_inflight gauge
bot_inflight{otel_scope_name="bot"} 2
bot_queue_depth{otel_scope_name="bot"} 5
bot_events_processed_total{outcome="ok",otel_scope_name="bot"} 98
bot_events_processed_total{outcome="error",otel_scope_name="bot"} 2
bot_handler_duration_seconds_bucket{otel_scope_name="bot",le="0.001"} 50
bot_handler_duration_seconds_bucket{otel_scope_name="bot",le="0.01"} 98
bot_handler_duration_seconds_bucket{otel_scope_name="bot",le="0.1"} 99
bot_handler_duration_seconds_bucket{otel_scope_name="bot",le="+Inf"} 100
"#;
        let figures = Figures::from_prometheus(text);
        assert_eq!(figures.in_flight, 2.0);
        assert_eq!(figures.queue_depth, 5.0);
        assert_eq!(figures.processed["ok"], 98.0);
        assert_eq!(figures.processed["error"], 2.0);
        assert_eq!(figures.measured, 100.0);
        assert_eq!(figures.p99_ms, Some(100.0));
    }

    #[test]
    fn no_attempt_no_p99() {
        assert_eq!(Figures::from_prometheus("").p99_ms, None);
    }
}
