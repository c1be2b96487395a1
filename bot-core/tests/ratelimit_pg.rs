//! Rate limits shared through a real PostgreSQL (migration 5): two limiters, as two processes
//! would have, on one key; and a store that stops answering (its row locked) mid-run.

mod support;

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bot_core::ratelimit::SharedLimits;
use support::pg::fresh_pool;
use support::ratelimit::{
    back_on_the_store, count_between, max_per_second, run_callers, run_callers_until_stopped,
};
use tokio::time::Instant;

/// Prints what a case counted past the test harness's capture, so that CI's log shows it.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_key_stay_under_the_limit_in_every_second_with_few_round_trips() {
    const LIMIT: u32 = 1_000;
    let pool = fresh_pool("ratelimit_two").await;
    // ANCHOR: postgres
    // Two processes: each has its own `SharedLimits` (a token cache and a member id of its own).
    let (a, b) = (
        SharedLimits::postgres(&pool).unwrap(),
        SharedLimits::postgres(&pool).unwrap(),
    );
    let (limit_a, limit_b) = (
        a.limit("test:channel:push", LIMIT).unwrap(),
        b.limit("test:channel:push", LIMIT).unwrap(),
    );
    // ANCHOR_END: postgres
    let until = Instant::now() + Duration::from_secs(3);
    let log = Mutex::new(Vec::new());
    tokio::join!(
        run_callers(&limit_a, 20, until, &log),
        run_callers(&limit_b, 5, until, &log),
    );
    let times = log.into_inner().unwrap();
    let (sa, sb) = (a.stats(), b.stats());
    report!(
        "postgres, two processes: {} calls in 3 s, busiest second {}; {sa:?} {sb:?}",
        times.len(),
        max_per_second(&times)
    );
    assert!(max_per_second(&times) <= LIMIT as usize);
    assert!(times.len() >= 2_400, "{} calls in 3 s", times.len());
    assert!(sa.acquired > 300 && sb.acquired > 300, "{sa:?} {sb:?}");
    let round_trips = sa.reservations + sb.reservations;
    assert!(
        round_trips * 4 < times.len() as u64,
        "{round_trips} reservations for {} calls",
        times.len()
    );
    assert_eq!(sa.store_errors + sb.store_errors, 0);
    // Both processes counted as live.
    let conn = pool.get().await.unwrap();
    let members: i64 = conn
        .query_one(
            "SELECT count(*) FROM botrt_rate_limit_members WHERE key = 'test:channel:push'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(members, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stops_answering_sends_the_limit_to_its_share_and_back() {
    const LIMIT: u32 = 600;
    let pool = fresh_pool("ratelimit_stuck").await;
    let (a, b) = (
        SharedLimits::postgres(&pool).unwrap(),
        SharedLimits::postgres(&pool).unwrap(),
    );
    let key = "test:channel:push";
    let (limit_a, limit_b) = (a.limit(key, LIMIT).unwrap(), b.limit(key, LIMIT).unwrap());
    let start = Instant::now();
    let (down_at, up_at) = (
        start + Duration::from_millis(1_500),
        start + Duration::from_millis(4_000),
    );
    let log = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let mut back = None;
    // The key's row locked by a transaction that stays open: every reservation waits past the
    // limiter's time-out, as with a server that stopped answering.
    let outage = async {
        tokio::time::sleep_until(down_at).await;
        let mut conn = pool.get().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        tx.execute(
            "SELECT tat FROM botrt_rate_limits WHERE key = $1 FOR UPDATE",
            &[&key],
        )
        .await
        .unwrap();
        tokio::time::sleep_until(up_at).await;
        tx.rollback().await.unwrap();
        back = Some(back_on_the_store(&a, &b, &stop).await);
    };
    tokio::join!(
        run_callers_until_stopped(&limit_a, 10, &stop, &log),
        run_callers_until_stopped(&limit_b, 10, &stop, &log),
        outage,
    );
    let times = log.into_inner().unwrap();
    let (sa, sb) = (a.stats(), b.stats());
    let share = (f64::from(LIMIT) / 1.03 / 2.0).floor();
    let during = count_between(&times, down_at + Duration::from_millis(500), up_at);
    report!(
        "postgres stuck for 2.5 s: {} calls, busiest second {}; {during} in the outage's last \
         2 s (share {share}/s per process); {sa:?} {sb:?}",
        times.len(),
        max_per_second(&times)
    );
    assert!(max_per_second(&times) <= LIMIT as usize);
    assert!(during as f64 <= 2.0 * 2.0 * share + 2.0, "{during}");
    assert!(during as f64 >= 0.8 * 2.0 * 2.0 * share, "{during}");
    for stats in [sa, sb] {
        assert_eq!(stats.outages, 1, "{stats:?}");
        assert_eq!(stats.recoveries, 1, "{stats:?}");
        assert!(stats.acquired_fallback > 300, "{stats:?}");
        assert!(stats.store_errors <= 8, "{stats:?}");
    }
    let [gained_a, gained_b] = back.unwrap();
    assert!(
        gained_a + gained_b >= 400,
        "{gained_a} + {gained_b} calls on the store's tokens in 1 s"
    );
}
