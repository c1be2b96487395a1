//! Reading a bot's `/metrics` (the Prometheus text format): samples, sums and percentiles of
//! histograms from their cumulative buckets.

/// One sample line: the metric name, its labels as rendered (without braces), the value.
fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or(rest)),
                None => (series, ""),
            };
            Some((name, labels, value))
        })
}

/// Whether rendered labels (`a="1",b="2"`) hold every `key="value"` of `wanted`.
fn has_labels(labels: &str, wanted: &[(&str, &str)]) -> bool {
    wanted
        .iter()
        .all(|(k, v)| labels.split(',').any(|l| l == format!("{k}=\"{v}\"")))
}

/// The sum of the samples named `name` whose labels include `wanted` (0 when there are none).
pub(crate) fn sum(text: &str, name: &str, wanted: &[(&str, &str)]) -> f64 {
    samples(text)
        .filter(|(n, labels, _)| *n == name && has_labels(labels, wanted))
        .map(|(_, _, v)| v)
        .sum()
}

/// The sums of the samples named `name` by the value of `label` (`status` → [("200", 5.0)]).
pub(crate) fn by_label(text: &str, name: &str, label: &str) -> Vec<(String, f64)> {
    let prefix = format!("{label}=\"");
    let mut out: Vec<(String, f64)> = Vec::new();
    for (_, labels, v) in samples(text).filter(|(n, _, _)| *n == name) {
        let Some(key) = labels
            .split(',')
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|rest| rest.trim_end_matches('"').to_owned())
        else {
            continue;
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, total)) => *total += v,
            None => out.push((key, v)),
        }
    }
    out
}

/// A histogram's cumulative buckets: (upper bound, observations at or below it), ascending,
/// the last one `+Inf`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The histogram `name` (without `_bucket`) from `/metrics`, with no labels but `le`; `None`
    /// when it has no buckets.
    pub(crate) fn parse(text: &str, name: &str) -> Option<Self> {
        let bucket_name = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = samples(text)
            .filter(|(n, _, _)| *n == bucket_name)
            .filter_map(|(_, labels, v)| {
                let le = labels
                    .split(',')
                    .find_map(|l| l.strip_prefix("le=\""))?
                    .trim_end_matches('"');
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, v))
            })
            .collect();
        if buckets.is_empty() {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(Self { buckets })
    }

    /// Observations in all.
    pub(crate) fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// The `q` quantile (0 to 1), interpolated linearly inside its bucket, as Prometheus's
    /// `histogram_quantile` does (the first bucket starts at 0). `None` without observations.
    /// In the `+Inf` bucket the answer is the largest finite bound: a lower bound of the truth.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut below_bound = 0.0;
        let mut below_count = 0.0;
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank && cumulative > below_count {
                if bound.is_infinite() {
                    return Some(below_bound);
                }
                let share = (rank - below_count) / (cumulative - below_count);
                return Some(below_bound + (bound - below_bound) * share);
            }
            if bound.is_finite() {
                below_bound = bound;
            }
            below_count = cumulative;
        }
        Some(below_bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP bot_db_pool_wait_seconds Time spent waiting for a database connection
# TYPE bot_db_pool_wait_seconds histogram
bot_db_pool_wait_seconds_bucket{le="0.001"} 50
bot_db_pool_wait_seconds_bucket{le="0.01"} 90
bot_db_pool_wait_seconds_bucket{le="0.1"} 99
bot_db_pool_wait_seconds_bucket{le="1"} 100
bot_db_pool_wait_seconds_bucket{le="+Inf"} 100
bot_db_pool_wait_seconds_sum 1.5
bot_db_pool_wait_seconds_count 100
bot_events_processed_total{outcome="ok"} 998
bot_events_processed_total{outcome="error"} 2
bot_outbound_requests_total{platform="line",status="200"} 990
bot_outbound_requests_total{platform="line",status="400"} 8
bot_outbound_requests_total{platform="messenger",status="200"} 5
bot_inflight 17
"#;

    #[test]
    fn samples_are_summed_by_name_and_labels() {
        assert_eq!(sum(TEXT, "bot_inflight", &[]), 17.0);
        assert_eq!(sum(TEXT, "bot_events_processed_total", &[]), 1000.0);
        assert_eq!(
            sum(TEXT, "bot_events_processed_total", &[("outcome", "error")]),
            2.0
        );
        assert_eq!(
            sum(
                TEXT,
                "bot_outbound_requests_total",
                &[("platform", "line"), ("status", "200")]
            ),
            990.0
        );
        assert_eq!(sum(TEXT, "bot_missing_total", &[]), 0.0);
        assert_eq!(
            by_label(TEXT, "bot_outbound_requests_total", "status"),
            [("200".to_owned(), 995.0), ("400".to_owned(), 8.0)]
        );
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let h = Histogram::parse(TEXT, "bot_db_pool_wait_seconds").unwrap();
        assert_eq!(h.count(), 100.0);
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // Rank 50 is the end of the first bucket, [0, 1 ms].
        assert!(near(h.quantile(0.5).unwrap(), 0.001));
        // Rank 25: half-way through the first bucket.
        assert!(near(h.quantile(0.25).unwrap(), 0.0005));
        // Rank 70: half-way through (1 ms, 10 ms].
        assert!(near(h.quantile(0.7).unwrap(), 0.0055));
        // Rank 99: the end of (10 ms, 100 ms].
        assert!(near(h.quantile(0.99).unwrap(), 0.1));
        assert!(near(h.quantile(1.0).unwrap(), 1.0));
    }

    #[test]
    fn the_infinite_bucket_answers_its_lower_bound_and_empty_histograms_none() {
        let text = "h_bucket{le=\"1\"} 1\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 4\n";
        let h = Histogram::parse(text, "h").unwrap();
        assert!((h.quantile(0.1).unwrap() - 0.4).abs() < 1e-9);
        assert_eq!(h.quantile(0.99), Some(2.0));
        let empty = Histogram::parse("h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\n", "h");
        assert_eq!(empty.unwrap().quantile(0.5), None);
        assert!(Histogram::parse(TEXT, "bot_handler_duration_seconds").is_none());
    }
}
