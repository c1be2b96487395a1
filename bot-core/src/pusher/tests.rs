use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::sync::Semaphore;

use super::*;
use crate::error::Error;
use crate::limits::Overflow;
use crate::outbound::Outbound;
use crate::telemetry::Telemetry;
use crate::testing::fake_api::{FakeApi, FakeResponse, Latency};

/// One HTTP/2 (h2c) client per lane: one connection each.
fn lanes(k: usize) -> Vec<reqwest::Client> {
    (0..k)
        .map(|_| {
            reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap()
        })
        .collect()
}

async fn fake(latency: Duration) -> FakeApi {
    FakeApi::builder()
        .latency(Latency::Fixed(latency))
        .start(|_| FakeResponse::json(StatusCode::OK, &serde_json::json!({})))
        .await
        .unwrap()
}

/// Posts `n` to the fake; a non-2xx answer is an error.
fn post_to(
    url: String,
) -> impl Fn(reqwest::Client, u64) -> futures::future::BoxFuture<'static, Result<(), String>>
+ Send
+ Sync
+ 'static {
    move |client, n| {
        let url = format!("{url}/push/{n}");
        Box::pin(async move {
            let response = client.post(url).send().await.map_err(|e| e.to_string())?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("status {}", response.status()))
            }
        })
    }
}

/// Polls `check` until it holds, for at most 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_per_connection_is_never_exceeded_and_is_used() {
    let api = fake(Duration::from_millis(20)).await;
    let pusher = Pusher::builder()
        .window(8)
        .capacity(10_000)
        .overflow(Overflow::Wait)
        .start(lanes(3), post_to(api.url()))
        .unwrap();
    for n in 0..600 {
        assert_eq!(pusher.push(n).await.unwrap(), Pushed::Queued);
    }
    let report = pusher.close().await;
    assert_eq!(report.sent, 600, "{report:?}");
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(api.call_count(), 600);
    assert_eq!(api.connections(), 3);
    // The fake announced far more streams than 8: only the pusher's window holds it back.
    assert_eq!(api.peak_in_flight_per_connection(), 8);
    assert!(api.peak_in_flight() <= 24, "{}", api.peak_in_flight());
}

/// A lane's sender that answers only when the test lets it, and records what it sent.
#[derive(Clone)]
struct Gate {
    open: Arc<Semaphore>,
    sent: Arc<Mutex<Vec<u32>>>,
}

impl Gate {
    fn new() -> Self {
        Self {
            open: Arc::new(Semaphore::new(0)),
            sent: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn start(&self, overflow: Overflow, window: usize, capacity: usize) -> Pusher<u32> {
        Pusher::builder()
            .window(window)
            .capacity(capacity)
            .overflow(overflow)
            .start(vec![self.clone()], |gate: Gate, n: u32| async move {
                let permit = gate.open.acquire().await.map_err(|e| e.to_string())?;
                permit.forget();
                gate.sent.lock().unwrap().push(n);
                if n == 59 {
                    return Err(format!("{n} refused"));
                }
                Ok::<(), String>(())
            })
            .unwrap()
    }

    fn sent(&self) -> Vec<u32> {
        let mut sent = self.sent.lock().unwrap().clone();
        sent.sort_unstable();
        sent
    }
}

/// Fills the window (2) of a gated pusher, then offers 48 more to a buffer of 10.
async fn overflow_50(gate: &Gate, pusher: &Pusher<u32>) -> Vec<Result<Pushed, PushErrorKind>> {
    let mut outcomes = Vec::new();
    for n in 0..2 {
        outcomes.push(pusher.try_push(n).map_err(|e| e.kind()));
    }
    eventually("the window filled", || pusher.stats().in_flight == 2).await;
    for n in 2..50 {
        outcomes.push(pusher.try_push(n).map_err(|e| e.kind()));
    }
    let stats = pusher.stats();
    assert_eq!((stats.buffered, stats.in_flight), (10, 2), "{stats:?}");
    assert!(stats.is_balanced(), "{stats:?}");
    gate.open.add_permits(1_000);
    outcomes
}

#[tokio::test]
async fn drop_newest_counts_every_drop_and_sends_the_first() {
    let gate = Gate::new();
    let pusher = gate.start(Overflow::DropNewest, 2, 10);
    let outcomes = overflow_50(&gate, &pusher).await;
    let dropped = outcomes
        .iter()
        .filter(|o| **o == Ok(Pushed::Dropped))
        .count();
    assert_eq!(dropped, 38);
    let report = pusher.close().await;
    assert_eq!(report.offered, 50);
    assert_eq!(report.dropped_newest, 38);
    assert_eq!(report.sent, 12);
    assert_eq!(report.dropped(), 38);
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(gate.sent(), (0..12).collect::<Vec<_>>());
}

#[tokio::test]
async fn drop_oldest_counts_every_eviction_and_sends_the_latest() {
    let gate = Gate::new();
    let pusher = gate.start(Overflow::DropOldest, 2, 10);
    let outcomes = overflow_50(&gate, &pusher).await;
    let evicting = outcomes
        .iter()
        .filter(|o| **o == Ok(Pushed::QueuedDroppingOldest))
        .count();
    assert_eq!(evicting, 38);
    let report = pusher.close().await;
    assert_eq!((report.offered, report.dropped_oldest), (50, 38));
    assert_eq!(report.sent, 12);
    assert!(report.is_balanced(), "{report:?}");
    let expected: Vec<u32> = (0..2).chain(40..50).collect();
    assert_eq!(gate.sent(), expected);
}

#[tokio::test]
async fn reject_gives_the_push_back_with_a_clear_error() {
    let gate = Gate::new();
    let pusher = gate.start(Overflow::Reject, 2, 10);
    let outcomes = overflow_50(&gate, &pusher).await;
    let full = outcomes
        .iter()
        .filter(|o| **o == Err(PushErrorKind::Full))
        .count();
    assert_eq!(full, 38);
    let report = pusher.close().await;
    assert_eq!((report.offered, report.rejected, report.sent), (50, 38, 12));
    assert!(report.is_balanced(), "{report:?}");
    let error = pusher.try_push(7).unwrap_err();
    assert!(error.is_closed());
    assert_eq!(error.into_inner(), 7);
    let full = PushError::new(PushErrorKind::Full, 10, 1_u32);
    assert!(
        full.to_string()
            .contains("buffer is full (10 pushes waiting)")
    );
    assert_eq!(Error::from(full).kind(), crate::ErrorKind::QueueFull);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_makes_producers_wait_and_loses_nothing() {
    let gate = Gate::new();
    let pusher = gate.start(Overflow::Wait, 4, 5);
    let producer = {
        let pusher = pusher.clone();
        async move {
            for n in 0..60 {
                assert_eq!(pusher.push(n).await.unwrap(), Pushed::Queued);
            }
        }
    };
    let stats = pusher.clone();
    let opener = async {
        eventually("the producer waits", || {
            let s = stats.stats();
            s.buffered == 5 && s.in_flight == 4
        })
        .await;
        gate.open.add_permits(1_000);
    };
    tokio::join!(producer, opener);
    let report = pusher.close().await;
    assert_eq!((report.offered, report.dropped()), (60, 0));
    // 59 is refused by the gate: a failure, counted as such.
    assert_eq!((report.sent, report.failed), (59, 1));
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(gate.sent().len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drains_the_buffer_and_errors_are_counted() {
    let api = fake(Duration::from_millis(2)).await;
    api.add_failure_rate(0.3, FakeResponse::empty(StatusCode::INTERNAL_SERVER_ERROR));
    let pusher = Pusher::builder()
        .window(16)
        .capacity(2_000)
        .start(lanes(2), post_to(api.url()))
        .unwrap();
    for n in 0..2_000 {
        pusher.try_push(n).unwrap();
    }
    let report = pusher.close().await;
    let calls = api.calls();
    let failed = calls.iter().filter(|c| c.status.is_server_error()).count() as u64;
    assert_eq!(calls.len(), 2_000);
    assert!(failed > 400 && failed < 800, "{failed} of 2,000 at 30 %");
    assert_eq!((report.sent, report.failed), (2_000 - failed, failed));
    assert_eq!((report.buffered, report.in_flight), (0, 0));
    assert!(report.is_balanced(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_send_fails_its_push_and_the_lane_goes_on() {
    // One lane: were it to die with the panics, the rest would never be sent.
    let pusher = Pusher::builder()
        .window(4)
        .capacity(1_000)
        .start(vec![()], |(), n: u32| {
            assert!(n % 100 != 7, "push {n} panics before its future");
            async move {
                assert!(n % 100 != 42, "push {n} panics in its future");
                Ok::<(), String>(())
            }
        })
        .unwrap();
    for n in 0..1_000 {
        pusher.try_push(n).unwrap();
    }
    let report = pusher.close().await;
    assert_eq!((report.sent, report.failed), (980, 20), "{report:?}");
    assert_eq!((report.buffered, report.in_flight), (0, 0));
    assert!(report.is_balanced(), "{report:?}");
}

#[tokio::test]
async fn shutdown_is_bounded_and_counts_what_it_cuts() {
    let gate = Gate::new();
    let pusher = gate.start(Overflow::Reject, 2, 10);
    for n in 0..7 {
        pusher.try_push(n).unwrap();
    }
    eventually("the window filled", || pusher.stats().in_flight == 2).await;
    let started = Instant::now();
    let report = pusher.shutdown(Duration::from_millis(50)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((report.cancelled, report.unsent, report.sent), (2, 5, 0));
    assert!(report.is_balanced(), "{report:?}");
}

#[tokio::test]
async fn dropping_the_last_clone_closes_and_still_sends() {
    let sent = Arc::new(AtomicUsize::new(0));
    let count = sent.clone();
    let pusher = Pusher::builder()
        .start(vec![()], move |(), _n: u32| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        })
        .unwrap();
    for n in 0..100 {
        pusher.try_push(n).unwrap();
    }
    drop(pusher);
    eventually("the buffer drained", || sent.load(Ordering::SeqCst) == 100).await;
}

#[tokio::test]
async fn bad_settings_are_refused() {
    let send = |(), _n: u32| async { Ok::<(), String>(()) };
    let e = Pusher::builder()
        .window(0)
        .start(vec![()], send)
        .unwrap_err();
    assert!(e.to_string().contains("window"));
    let e = Pusher::builder()
        .capacity(0)
        .start(vec![()], send)
        .unwrap_err();
    assert!(e.to_string().contains("capacity"));
    let e = Pusher::builder().start(Vec::<()>::new(), send).unwrap_err();
    assert!(e.to_string().contains("sender"));
}

#[tokio::test]
async fn metrics_and_outbound_lanes() {
    let limits = crate::Limits::default();
    let queue: Arc<dyn crate::Queue> = Arc::new(crate::MemoryQueue::new(&limits));
    let telemetry = Telemetry::new(queue).unwrap();
    let recorder = Arc::new(crate::testing::RecordingOutbound::new(
        crate::Platform::LINE,
    ));
    recorder.fail_next(1);
    let pusher = Pusher::builder()
        .name("campaign")
        .capacity(3)
        .overflow(Overflow::DropNewest)
        .telemetry(telemetry.clone())
        .start_outbound(vec![recorder.clone() as Arc<dyn Outbound>])
        .unwrap();
    let mut dropped = 0;
    for n in 0..10 {
        if pusher.try_push(Push::new(format!("U{n}"), "sale")).unwrap() == Pushed::Dropped {
            dropped += 1;
        }
    }
    let report = pusher.close().await;
    assert_eq!(report.dropped_newest, dropped);
    assert_eq!(report.failed, 1);
    assert_eq!(recorder.len() as u64, report.sent);
    assert!(report.is_balanced(), "{report:?}");
    let text = telemetry.render_prometheus();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .to_owned()
    };
    assert!(line("bot_push_offered_total{pusher=\"campaign\"}").ends_with(" 10"));
    assert!(
        line("bot_push_sent_total{pusher=\"campaign\"}").ends_with(&format!(" {}", report.sent))
    );
    assert!(
        line("bot_push_dropped_total{pusher=\"campaign\",reason=\"overflow_newest\"}")
            .ends_with(&format!(" {dropped}"))
    );
    assert!(line("bot_push_failed_total{pusher=\"campaign\"}").ends_with(" 1"));
    assert!(text.contains("bot_push_duration_seconds_count{pusher=\"campaign\"}"));
}
