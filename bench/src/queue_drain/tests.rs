//! The rows and goals of `queue-drain`, and the workers' counts.

use super::workers::parse_counts;
use super::*;

#[test]
fn a_workers_counts_are_read_from_its_last_line() {
    let out =
        "2026-11-30 WARN something\nhandled=12 claims=3 claimed=12 acked=12 stale=0 released=0\n";
    let counts = parse_counts(out).unwrap();
    assert_eq!(counts["handled"], 12);
    assert_eq!(counts["claims"], 3);
    assert!(parse_counts("nothing here\n").is_none());
    assert!(parse_counts("handled=x\n").is_none());
}

#[test]
fn only_two_processes_carry_the_goal() {
    let drained = |processes, events_per_second| Drained {
        backend: Backend::Postgres,
        events: 10_000,
        processes,
        ordering: DrainOrdering::PerConversation,
        load_seconds: 0.1,
        seconds: 0.2,
        events_per_second,
        first_gone_seconds: 0.05,
        steady_events_per_second: events_per_second,
        handled: 10_001,
        duplicates: 1,
        claims: 10,
        stale: 0,
        workers_cpu_seconds: 0.1,
        worker_peak_rss_kib: 20_480,
        postgres_backends_cpu_seconds: Some(0.1),
        postgres_all_cpu_seconds: None,
        bare_consumer_events_per_second: None,
        start_events_per_second: Some(events_per_second),
        end_events_per_second: Some(events_per_second),
        graphile_worker_events_per_second: None,
        through_webhooks: false,
    };
    assert_eq!(row(&drained(1, 90_000.0)).verdict, Verdict::NoGoal);
    assert_eq!(row(&drained(2, 59_000.0)).verdict, Verdict::Missed);
    let met = row(&drained(2, 61_000.0));
    assert_eq!(met.verdict, Verdict::Met);
    assert_eq!(met.name, "queue-drain 10,000 events × 2 processes");
    assert!(met.result.contains("1 duplicates"), "{}", met.result);
    assert!(met.result.contains("PostgreSQL ? % CPU"), "{}", met.result);
    // JetStream: the rate and the share of the bare consumer, both.
    let jetstream = |events_per_second, bare| Drained {
        backend: Backend::Jetstream,
        bare_consumer_events_per_second: Some(bare),
        ..drained(2, events_per_second)
    };
    let row_met = row(&jetstream(70_000.0, 90_000.0));
    assert_eq!(row_met.verdict, Verdict::Met);
    assert!(row_met.name.ends_with(", JetStream"), "{}", row_met.name);
    assert!(row_met.result.contains("(0.78x)"), "{}", row_met.result);
    assert_eq!(
        row(&jetstream(70_000.0, 120_000.0)).verdict,
        Verdict::Missed
    );
    assert_eq!(row(&jetstream(50_000.0, 60_000.0)).verdict, Verdict::Missed);
}

#[test]
fn graphile_worker_and_the_end_rate_set_the_postgres_goals() {
    let drained = |events, events_per_second, graphile: Option<f64>, end| Drained {
        start_events_per_second: Some(70_000.0),
        end_events_per_second: Some(end),
        graphile_worker_events_per_second: graphile,
        ..postgres_run(events, 2, events_per_second)
    };
    // 100,000 events: graphile-worker in the same run is the bar, not the rate.
    let ahead = row(&drained(100_000, 50_000.0, Some(45_000.0), 70_000.0));
    assert_eq!(ahead.verdict, Verdict::Met, "{}", ahead.goal);
    assert!(ahead.result.contains("(1.11x)"), "{}", ahead.result);
    let behind = drained(100_000, 50_000.0, Some(55_000.0), 70_000.0);
    assert_eq!(row(&behind).verdict, Verdict::Missed);
    // A million: the rate, and the end as fast as the start (within a fifth).
    let large = drained(1_000_000, 65_000.0, Some(60_000.0), 60_000.0);
    assert_eq!(row(&large).verdict, Verdict::Met);
    let slowing = drained(1_000_000, 65_000.0, Some(60_000.0), 50_000.0);
    let slowing = row(&slowing);
    assert_eq!(slowing.verdict, Verdict::Missed);
    assert!(slowing.goal.contains("last fifth"), "{}", slowing.goal);
    // End to end through webhooks: the rate of the end-to-end goal.
    let webhooks = |events_per_second| Drained {
        through_webhooks: true,
        start_events_per_second: None,
        end_events_per_second: None,
        ..drained(100_000, events_per_second, None, 0.0)
    };
    let met = row(&webhooks(26_000.0));
    assert_eq!(met.verdict, Verdict::Met, "{}", met.goal);
    assert!(met.name.ends_with(", through webhooks"), "{}", met.name);
    assert_eq!(row(&webhooks(24_000.0)).verdict, Verdict::Missed);
    assert_eq!(
        row(&drained(1_000_000, 55_000.0, Some(40_000.0), 60_000.0)).verdict,
        Verdict::Missed
    );
}

#[test]
fn rounds_are_summed_up_by_median_and_by_ratio_within_a_round() {
    let run = |processes, events_per_second| postgres_run(1_000_000, processes, events_per_second);
    // Three rounds, the counts reversed in the second; the machine twice as fast in the third:
    // the ratios are taken within a round (0.9, 1.1, 0.95), not across them.
    let results = [
        run(2, 100_000.0),
        run(4, 90_000.0),
        run(4, 88_000.0),
        run(2, 80_000.0),
        run(2, 200_000.0),
        run(4, 190_000.0),
    ];
    let summary = rounds_summary(&results, 3, 2);
    assert!(
        summary.contains("| 1,000,000 | 2 | 100,000 | 80,000-200,000 | 1.00x | 1.00x-1.00x |"),
        "{summary}"
    );
    assert!(
        summary.contains("| 1,000,000 | 4 | 90,000 | 88,000-190,000 | 0.95x | 0.90x-1.10x |"),
        "{summary}"
    );
    assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), 2.5);
    assert!(median(Vec::new()).is_nan());
}

/// A PostgreSQL drain of `events` by `processes` at `events_per_second`, with nothing else of
/// note: no duplicates, no graphile-worker, no fifths.
fn postgres_run(events: u64, processes: u16, events_per_second: f64) -> Drained {
    Drained {
        backend: Backend::Postgres,
        events,
        processes,
        ordering: DrainOrdering::PerConversation,
        load_seconds: 1.0,
        seconds: events as f64 / events_per_second,
        events_per_second,
        first_gone_seconds: 0.05,
        steady_events_per_second: events_per_second,
        handled: events,
        duplicates: 0,
        claims: 10,
        stale: 0,
        workers_cpu_seconds: 0.1,
        worker_peak_rss_kib: 20_480,
        postgres_backends_cpu_seconds: None,
        postgres_all_cpu_seconds: None,
        bare_consumer_events_per_second: None,
        start_events_per_second: None,
        end_events_per_second: None,
        graphile_worker_events_per_second: None,
        through_webhooks: false,
    }
}

#[test]
fn rounds_of_several_event_counts_compare_each_count_with_its_own() {
    // Two rounds of 10,000 and 1,000,000 events, 2 then 4 processes (reversed in the second).
    let results = [
        postgres_run(10_000, 2, 50_000.0),
        postgres_run(10_000, 4, 60_000.0),
        postgres_run(1_000_000, 2, 100_000.0),
        postgres_run(1_000_000, 4, 80_000.0),
        postgres_run(10_000, 4, 40_000.0),
        postgres_run(10_000, 2, 40_000.0),
        postgres_run(1_000_000, 4, 60_000.0),
        postgres_run(1_000_000, 2, 100_000.0),
    ];
    let summary = rounds_summary(&results, 2, 2);
    assert!(
        summary.contains("| 10,000 | 4 | 50,000 | 40,000-60,000 | 1.10x | 1.00x-1.20x |"),
        "{summary}"
    );
    assert!(
        summary.contains("| 1,000,000 | 4 | 70,000 | 60,000-80,000 | 0.70x | 0.60x-0.80x |"),
        "{summary}"
    );
}
