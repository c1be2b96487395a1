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
use support::nats::{Cleanup, connect, connect_to, queue_builder, unique_name};
use support::nats_server::NatsServer;
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
    // A push-only process: it takes no partitions.
    let pusher = queue_builder(connect().await, &name)
        .consume(false)
        .build()
        .await
        .unwrap();
    let events: Vec<_> = (0..EVENTS)
        .map(|i| text_event(&format!("c{}", i % 30), &format!("e{i}")))
        .collect();
    let report = pusher.push_batch(events).await.unwrap();
    assert_eq!(
        report.accepted, EVENTS,
        "every event acknowledged to the platform"
    );
    assert!(pusher.owned_partitions().is_empty());
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

/// The server restarted (SIGTERM, same store) while a queue holds acknowledged, leased and
/// waiting events: nothing stored is lost, nothing acknowledged comes back, pushes fail
/// with a retry hint while it is down and work again after, and the queue recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_loses_nothing_stored_and_the_queue_recovers() {
    const EVENTS: usize = 100;
    let mut server = tokio::task::spawn_blocking(|| NatsServer::start("restart"))
        .await
        .unwrap();
    let name = "restart";
    let client = connect_to(&server.url()).await;
    let queue = queue_builder(client, name)
        .ack_wait(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let events: Vec<_> = (0..EVENTS)
        .map(|i| text_event(&format!("c{}", i % 10), &format!("e{i}")))
        .collect();
    assert_eq!(queue.push_batch(events).await.unwrap().accepted, EVENTS);
    let acked: HashSet<String> = drain_acking(&queue, 30)
        .await
        .iter()
        .map(|d| d.event.id.to_string())
        .collect();
    let held = pull_n(&queue, 5).await;

    server.stop();
    let e = queue
        .push_batch(vec![text_event("c0", "late")])
        .await
        .unwrap_err();
    report!("restart: a push while the server is down: {e}");
    assert!(e.is_retryable() || e.retry_after().is_some(), "{e}");
    let down = Instant::now();
    let mut server = tokio::task::spawn_blocking(move || {
        server.start_again();
        server
    })
    .await
    .unwrap();
    report!("restart: server back after {:?}", down.elapsed());

    // Pushes work again once the client reconnected.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match queue.push_batch(vec![text_event("c0", "late")]).await {
            Ok(r) => {
                assert_eq!(r.accepted + r.duplicates, 1);
                break;
            }
            Err(e) => assert!(Instant::now() < until, "pushes still fail: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The held leases may be stale now (the partition may have changed hands); either way
    // every event not acknowledged is delivered again, and only those.
    let _ = queue.release(held).await;
    let mut rest: HashSet<String> = HashSet::new();
    let until = Instant::now() + Duration::from_secs(60);
    while rest.len() < EVENTS - acked.len() + 1 {
        assert!(
            Instant::now() < until,
            "only {} events came back",
            rest.len()
        );
        let batch = tokio::time::timeout(Duration::from_secs(10), queue.pull(64))
            .await
            .map(|r| r.unwrap())
            .unwrap_or_default();
        let leases: Vec<_> = batch.iter().map(|d| d.lease).collect();
        queue.ack(&leases).await.unwrap();
        rest.extend(batch.iter().map(|d| d.event.id.to_string()));
    }
    assert!(rest.is_disjoint(&acked), "an acknowledged event came back");
    assert!(rest.contains("late"));
    report!(
        "restart: {} acknowledged before, {} delivered after, counters {:?}",
        acked.len(),
        rest.len(),
        queue.counters()
    );
    queue.shutdown().await;
    server.stop();
}
