//! `JetStreamQueue` under faults: a process killed with SIGKILL while it holds leased and
//! delivered events, and (on a private `nats-server` of this test, never the shared one) the
//! server restarted under a queue.
//!
//! The killed process is this test binary run again as a child, executing the ignored
//! [`child_holds_events_until_killed`] entry with `NATS_CHILD_QUEUE` set.

/// Prints what a fault case counted straight to stderr, past the test harness's capture, so
/// that CI's log shows it for passing tests too.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod support;

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bot_core::queue::Queue;
use support::nats::{Cleanup, connect, queue_builder, unique_name};
use support::queue::{drain_acking, pull_n};
use support::text_event;

const CHILD_ENV: &str = "NATS_CHILD_QUEUE";
const EVENTS: usize = 200;
const ACKED_BY_CHILD: usize = 50;

/// The child: takes every partition, acknowledges the first events it gets, holds the rest
/// (leased or delivered and waiting) and says so on stdout; then waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by sigkill_loses_nothing_acknowledged_to_the_platform as its child process"]
async fn child_holds_events_until_killed() {
    let name = std::env::var(CHILD_ENV).expect("only run as the child of the SIGKILL test");
    let queue = queue_builder(connect().await, &name).build().await.unwrap();
    // In rounds: a conversation hands out its next event only once its head is acknowledged.
    let mut acked = Vec::new();
    while acked.len() < ACKED_BY_CHILD {
        let got = queue.pull(ACKED_BY_CHILD - acked.len()).await.unwrap();
        let leases: Vec<_> = got.iter().map(|d| d.lease).collect();
        assert_eq!(queue.ack(&leases).await.unwrap().applied, got.len());
        acked.extend(got.iter().map(|d| d.event.id.to_string()));
    }
    let held = pull_n(&queue, 20).await;
    println!("acked {}", acked.join(","));
    println!("leased {}", held.len());
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_acknowledged_to_the_platform() {
    let name = unique_name("sigkill");
    let _cleanup = Cleanup::new(&name);
    let pusher = queue_builder(connect().await, &name).build().await.unwrap();
    // The pusher takes no partitions: it is closed for pulls and gives them up.
    pusher.stop_pulling().await;
    let events: Vec<_> = (0..EVENTS)
        .map(|i| text_event(&format!("c{}", i % 30), &format!("e{i}")))
        .collect();
    let report = pusher.push_batch(events).await.unwrap();
    assert_eq!(
        report.accepted, EVENTS,
        "every event acknowledged to the platform"
    );
    pusher.shutdown().await;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_events_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, &name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = HashSet::new();
    let started = Instant::now();
    loop {
        let line = lines.next().expect("the child says what it holds").unwrap();
        if let Some(ids) = line.strip_prefix("acked ") {
            acked.extend(ids.split(',').map(str::to_owned));
        }
        if line.starts_with("leased ") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the child is too slow"
        );
    }
    assert_eq!(acked.len(), ACKED_BY_CHILD);
    // SIGKILL: no release, no acknowledgement, no giving up; its claims expire.
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = tokio::time::Instant::now();

    let survivor = queue_builder(connect().await, &name).build().await.unwrap();
    let first = pull_n(&survivor, 1).await;
    let took_over = killed.elapsed();
    survivor.ack(&[first[0].lease]).await.unwrap();
    let mut rest = drain_acking(&survivor, EVENTS - ACKED_BY_CHILD - 1).await;
    rest.extend(first);
    let ids: HashSet<String> = rest.iter().map(|d| d.event.id.to_string()).collect();
    assert_eq!(
        ids.len(),
        EVENTS - ACKED_BY_CHILD,
        "each unacknowledged event once"
    );
    assert!(ids.is_disjoint(&acked), "an acknowledged event came back");
    report!(
        "sigkill: {} events, {} acknowledged by the killed process, the rest all delivered to \
         the survivor {took_over:?} after the kill (ownership lease 2 s)",
        EVENTS,
        acked.len()
    );
    assert!(
        took_over >= Duration::from_millis(500),
        "took over before the claims expired"
    );
    survivor.shutdown().await;
}
