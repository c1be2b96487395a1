//! Gateway shards against the fake gateway over real WebSockets: identify, dispatches, resume,
//! zombies, invalid sessions, fatal close codes, identify buckets, compression, back-pressure.
#![allow(clippy::disallowed_methods)] // the shards under test run in spawned tasks

/// Prints what a fault case counted straight to stderr, past the test harness's capture, so
/// that CI's log shows it for passing tests too.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bot_core::{Bot, Context, Error, Event, Limits};
use bot_discord::ErrorKind;
use bot_discord::gateway::{IdentifyQueue, Shard, ShardConfig, ShardId, ShardManager};
use bot_discord::testing::{BOT_USER_ID, FakeGateway};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "gateway-test-token";

/// What the handler saw: event ids in order, and a wake-up per event.
#[derive(Clone, Default)]
struct Seen {
    ids: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
}

impl Seen {
    fn handler(&self, gate: Option<Arc<Semaphore>>) -> impl bot_core::Handler + use<> {
        let seen = self.clone();
        move |_cx: Context, event: Event| {
            let seen = seen.clone();
            let gate = gate.clone();
            async move {
                if let Some(gate) = gate {
                    let _permit = gate.acquire().await.expect("open");
                }
                seen.ids.lock().unwrap().push(event.id.to_string());
                seen.notify.notify_waiters();
                Ok::<_, Error>(())
            }
        }
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.ids().len() >= count {
                return self.ids();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("handled {} of {count}", self.ids().len());
            }
        }
    }
}

fn bot(seen: &Seen, limits: Limits, gate: Option<Arc<Semaphore>>) -> Bot {
    let bot = Bot::builder()
        .handler(seen.handler(gate))
        .limits(limits)
        .build()
        .unwrap();
    bot.start();
    bot
}

fn config(gateway: &FakeGateway) -> ShardConfig {
    ShardConfig::new(TOKEN)
        .url(gateway.url())
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
}

struct Running {
    shard: Arc<Shard>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), bot_discord::Error>>,
}

impl Running {
    async fn stop(self) -> Result<(), bot_discord::Error> {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}

fn run(config: ShardConfig, bot: &Bot) -> Running {
    run_with(config, IdentifyQueue::new(1), bot)
}

fn run_with(config: ShardConfig, identify: IdentifyQueue, bot: &Bot) -> Running {
    let shard = Arc::new(Shard::new(ShardId::ONE, Arc::new(config), identify));
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let shard = shard.clone();
        let ingress = bot.ingress();
        let stop = stop.clone();
        async move { shard.run(ingress, stop).await }
    });
    Running { shard, stop, task }
}

/// Runs shards `0..count` of `count` through a manager with `identify`.
fn run_manager(config: ShardConfig, count: u32, identify: IdentifyQueue, bot: &Bot) -> Managed {
    let ids: Vec<ShardId> = (0..count)
        .map(|n| ShardId::new(n, count).unwrap())
        .collect();
    let manager = Arc::new(ShardManager::new(config, &ids, identify));
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let manager = manager.clone();
        let ingress = bot.ingress();
        let stop = stop.clone();
        async move { manager.run(ingress, stop).await }
    });
    Managed { stop, task }
}

struct Managed {
    stop: CancellationToken,
    task: JoinHandle<Result<(), bot_discord::Error>>,
}

impl Managed {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn message(id: u64, channel: &str, bot: bool) -> Value {
    json!({"id": id.to_string(), "channel_id": channel, "guild_id": "1",
           "author": {"id": if bot { BOT_USER_ID.to_owned() } else { format!("{}", 500 + id % 7) }, "bot": bot},
           "content": format!("message {id}"), "attachments": [], "mentions": []})
}

fn assert_each_once(ids: &[String], expected: usize) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), expected, "distinct events");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
}

#[tokio::test]
async fn identify_ready_then_a_thousand_dispatches_reach_the_handler_and_bots_do_not() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let shard = run(config(&gateway), &bot);
    gateway.wait_for_readies(1).await;

    let identify = &gateway.received_op(2)[0].d;
    assert_eq!(identify["token"], TOKEN);
    assert_eq!(identify["shard"], json!([0, 1]));
    assert!(identify["intents"].as_u64().unwrap() > 0);

    for i in 0..1000_u64 {
        gateway
            .dispatch(
                "MESSAGE_CREATE",
                message(10_000 + i, &format!("c{}", i % 10), false),
            )
            .await;
        if i % 10 == 0 {
            gateway
                .dispatch("MESSAGE_CREATE", message(90_000 + i, "c0", true))
                .await;
        }
    }
    let ids = seen.wait_for(1000).await;
    bot.idle().await;
    assert_each_once(&seen.ids(), 1000);
    assert!(
        ids.iter().all(|id| !id.starts_with('9')),
        "no bot-authored message is handled"
    );
    assert_eq!(shard.shard.status().identifies(), 1);
    assert_eq!(
        shard.shard.status().dispatches(),
        1101,
        "READY + 1,000 + 100 from bots"
    );
    shard.stop().await.unwrap();
    bot.shutdown().await;
}

#[tokio::test]
async fn reconnect_mid_stream_resumes_on_the_resume_url_without_loss_or_duplicates() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let shard = run(config(&gateway), &bot);
    gateway.wait_for_readies(1).await;

    for i in 0..100 {
        gateway
            .dispatch("MESSAGE_CREATE", message(20_000 + i, "c", false))
            .await;
    }
    gateway.reconnect().await;
    // Sent while the shard reconnects: they wait in the session and are replayed on resume.
    for i in 100..200 {
        gateway
            .dispatch("MESSAGE_CREATE", message(20_000 + i, "c", false))
            .await;
    }
    gateway.wait_for_resumes(1).await;
    seen.wait_for(200).await;
    bot.idle().await;

    assert_each_once(&seen.ids(), 200);
    let expected: Vec<String> = (0..200).map(|i| (20_000 + i).to_string()).collect();
    assert_eq!(seen.ids(), expected, "one conversation: in order");
    let connections = gateway.connections();
    assert_eq!(connections.len(), 2);
    assert_eq!(
        connections[1].path.trim_end_matches('/'),
        "/resume",
        "resumed on resume_gateway_url"
    );
    let resume = &gateway.received_op(6)[0].d;
    assert_eq!(resume["session_id"], "session-1");
    assert_eq!(
        resume["seq"], 101,
        "READY + the 100 dispatches read before op 7"
    );
    assert_eq!(gateway.readies(), 1, "no new session");
    shard.stop().await.unwrap();
    bot.shutdown().await;
}

/// The heartbeat interval of the zombie tests: long enough that two intervals plus room for a
/// reconnection on a loaded machine stay below three.
const ZOMBIE_INTERVAL: Duration = Duration::from_millis(500);

/// Stops the fake's ACKs until the shard opens another connection, then lets it resume; asserts
/// the shard noticed within two heartbeat intervals (plus room for the reconnection).
async fn assert_zombie_detected_in_time(gateway: &FakeGateway) {
    gateway.set_acks(false);
    let silent_since = Instant::now();
    gateway
        .wait_until("a second connection", |g| g.connections().len() >= 2)
        .await;
    let detected_after = gateway.connections()[1].at - silent_since;
    gateway.set_acks(true);
    gateway.wait_for_resumes(1).await;
    assert!(
        detected_after <= ZOMBIE_INTERVAL * 2 + Duration::from_millis(400),
        "zombie detected after {detected_after:?}"
    );
}

#[tokio::test]
async fn a_zombie_connection_is_detected_within_two_heartbeats_and_resumed() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    gateway.set_heartbeat_interval(ZOMBIE_INTERVAL);
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let shard = run(config(&gateway), &bot);
    gateway.wait_for_readies(1).await;
    gateway.wait_for_op(1, 2).await;

    assert_zombie_detected_in_time(&gateway).await;
    assert_eq!(
        gateway.connections()[1].path.trim_end_matches('/'),
        "/resume"
    );
    assert_eq!(gateway.received_op(6).len(), 1);
    assert_eq!(gateway.readies(), 1);
    // The resumed session goes on.
    gateway
        .dispatch("MESSAGE_CREATE", message(30_000, "c", false))
        .await;
    assert_eq!(seen.wait_for(1).await, ["30000"]);
    shard.stop().await.unwrap();
    bot.shutdown().await;
}

#[tokio::test]
async fn an_invalid_session_that_cannot_resume_identifies_again_after_the_wait() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let wait = Duration::from_millis(300);
    let shard = run(
        config(&gateway).invalid_session_wait(wait, wait + Duration::from_millis(100)),
        &bot,
    );
    gateway.wait_for_readies(1).await;

    let invalidated = Instant::now();
    gateway.invalid_session(false).await;
    gateway.wait_for_readies(2).await;
    let identifies = gateway.received_op(2);
    assert_eq!(identifies.len(), 2);
    assert!(
        identifies[1].at - invalidated >= wait,
        "identified again after {:?}",
        identifies[1].at - invalidated
    );
    assert!(
        gateway.received_op(6).is_empty(),
        "no resume of a dead session"
    );
    gateway
        .dispatch("MESSAGE_CREATE", message(40_000, "c", false))
        .await;
    seen.wait_for(1).await;
    shard.stop().await.unwrap();
    bot.shutdown().await;
}

#[tokio::test]
async fn close_4004_stops_the_shard_with_an_authentication_error_and_no_reconnect() {
    let gateway = FakeGateway::start("the-real-token").await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let shard = run(config(&gateway), &bot);
    let error = tokio::time::timeout(Duration::from_secs(20), shard.task)
        .await
        .expect("the shard stops by itself")
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Authentication);
    assert_eq!(error.close_code(), Some(4004));
    assert!(error.is_fatal());
    assert_eq!(gateway.connections().len(), 1, "no reconnect loop");
    bot.shutdown().await;
}

#[tokio::test]
async fn other_fatal_codes_stop_and_resumable_codes_resume() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let shard = run(config(&gateway), &bot);
    gateway.wait_for_readies(1).await;
    gateway.close(4000).await;
    gateway.wait_for_resumes(1).await;
    gateway.close(4009).await; // session timed out: a new one
    gateway.wait_for_readies(2).await;
    gateway.close(4014).await;
    let error = tokio::time::timeout(Duration::from_secs(20), shard.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DisallowedIntents);
    assert_eq!(gateway.connections().len(), 3);
    bot.shutdown().await;
}

#[tokio::test]
async fn sixteen_shards_with_one_bucket_identify_one_interval_apart() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let spacing = Duration::from_millis(150);
    let shards = run_manager(
        config(&gateway),
        16,
        IdentifyQueue::with_interval(1, spacing),
        &bot,
    );
    gateway.wait_for_readies(16).await;
    let identifies = gateway.received_op(2);
    let mut numbers: Vec<u64> = identifies
        .iter()
        .map(|r| r.d["shard"][0].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..16).collect::<Vec<_>>());
    // The fake stamps arrivals, which scheduling can delay a little: each gap at least half the
    // interval (one bucket: never two at once), and the whole run at least 15 intervals less one.
    for pair in identifies.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= spacing / 2, "identifies {gap:?} apart");
    }
    let span = identifies[15].at - identifies[0].at;
    assert!(span >= spacing * 14, "16 identifies over {span:?}");
    assert_eq!(
        gateway.timed_out(),
        0,
        "every shard heartbeated while it waited"
    );
    shards.stop().await;
    bot.shutdown().await;
}

#[tokio::test]
async fn zlib_stream_compression_carries_every_dispatch() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let shard = run(config(&gateway).compress(true), &bot);
    gateway.wait_for_readies(1).await;
    assert!(
        gateway.connections()[0]
            .query
            .contains("compress=zlib-stream")
    );
    for i in 0..50 {
        gateway
            .dispatch("MESSAGE_CREATE", message(50_000 + i, "c", false))
            .await;
    }
    seen.wait_for(50).await;
    assert_each_once(&seen.ids(), 50);
    shard.stop().await.unwrap();
    bot.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_holds_the_reading_back_while_heartbeats_go_on() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    // Short enough that several beats fall while reading is held back, long enough that a
    // loaded CI machine (the whole suite on two cores) answers each beat within one interval.
    gateway.set_heartbeat_interval(Duration::from_millis(400));
    let seen = Seen::default();
    let gate = Arc::new(Semaphore::new(0));
    let limits = Limits {
        max_in_flight: 1,
        queue_capacity: 4,
        ..Limits::default()
    };
    let bot = bot(&seen, limits, Some(gate.clone()));
    // Batches of 4: the shard holds at most two batches beyond what the queue holds.
    let shard = run(config(&gateway).hand_over_batch(4, 1024 * 1024), &bot);
    gateway.wait_for_readies(1).await;
    for i in 0..50 {
        gateway
            .dispatch("MESSAGE_CREATE", message(60_000 + i, "c", false))
            .await;
    }
    // The queue holds 4 and one handler runs: the shard holds the rest unread.
    let beats_before = gateway.received_op(1).len();
    gateway.wait_for_op(1, beats_before + 5).await;
    assert!(
        shard.shard.status().dispatches() < 50,
        "reading is held back"
    );
    assert_eq!(
        gateway.connections().len(),
        1,
        "heartbeats went on; no false zombie"
    );

    gate.add_permits(1000);
    seen.wait_for(50).await;
    assert_each_once(&seen.ids(), 50);
    assert_eq!(gateway.connections().len(), 1);
    shard.stop().await.unwrap();
    bot.shutdown().await;
}

#[tokio::test]
async fn a_zombie_is_detected_while_dispatches_keep_flowing() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    gateway.set_heartbeat_interval(ZOMBIE_INTERVAL);
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let shard = run(config(&gateway), &bot);
    gateway.wait_for_readies(1).await;
    gateway.wait_for_op(1, 1).await;

    let stop = CancellationToken::new();
    let traffic = tokio::spawn({
        let gateway = gateway.clone();
        let stop = stop.clone();
        async move {
            let mut i = 0;
            while !stop.is_cancelled() {
                gateway
                    .dispatch(
                        "TYPING_START",
                        json!({"channel_id": "c", "user_id": "u", "timestamp": i}),
                    )
                    .await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    assert_zombie_detected_in_time(&gateway).await;
    stop.cancel();
    traffic.await.unwrap();
    shard.stop().await.unwrap();
    bot.shutdown().await;
}

#[tokio::test]
async fn shards_waiting_long_for_their_bucket_keep_their_connection_alive() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    // Shard 3 waits 3 s for its turn: six heartbeat intervals. The fake drops a connection
    // silent for 1.5 intervals; at 500 ms a loaded machine (the suite on two cores) still beats
    // in time, where at 150 ms the 75 ms margin after a jittered first beat was not enough.
    gateway.set_heartbeat_interval(Duration::from_millis(500));
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let shards = run_manager(
        config(&gateway),
        4,
        IdentifyQueue::with_interval(1, Duration::from_millis(1000)),
        &bot,
    );
    gateway.wait_for_readies(4).await;
    assert_eq!(
        gateway.timed_out(),
        0,
        "no connection went silent while waiting to identify"
    );
    assert_eq!(gateway.connections().len(), 4, "no shard had to reconnect");
    assert_eq!(gateway.received_op(2).len(), 4, "one identify each");
    shards.stop().await;
    bot.shutdown().await;
}

/// Discord's own rule, with its own 5-second interval, over real sockets (three shards).
#[tokio::test]
async fn three_shards_in_one_bucket_identify_five_seconds_apart() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let shards = run_manager(config(&gateway), 3, IdentifyQueue::new(1), &bot);
    gateway.wait_for_readies(3).await;
    let identifies = gateway.received_op(2);
    for pair in identifies.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(4500),
            "identifies {gap:?} apart"
        );
    }
    shards.stop().await;
    bot.shutdown().await;
}

#[tokio::test]
async fn commands_reach_the_gateway_on_the_live_connection() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let shard = run(config(&gateway), &bot);
    gateway.wait_for_readies(1).await;
    let presence =
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "idle", "afk": false}});
    shard.shard.send(presence).await.unwrap();
    gateway.wait_for_op(3, 1).await;
    assert_eq!(gateway.received_op(3)[0].d["status"], "idle");
    shard.stop().await.unwrap();
    bot.shutdown().await;
}

#[tokio::test]
async fn invalid_sessions_in_a_row_wait_twice_as_long_each_time() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let wait = Duration::from_millis(100);
    // No identify spacing: the waits measured are the shard's own.
    let shard = run_with(
        config(&gateway).invalid_session_wait(wait, wait),
        IdentifyQueue::with_interval(1, Duration::ZERO),
        &bot,
    );
    // READY, then op 9 at once, four times: the loop Discord ends by resetting the token.
    for readies in 1..=4 {
        gateway.wait_for_readies(readies).await;
        gateway.invalid_session(false).await;
    }
    gateway.wait_for_readies(5).await;
    let identifies = gateway.received_op(2);
    let gaps: Vec<Duration> = identifies.windows(2).map(|p| p[1].at - p[0].at).collect();
    report!("identify gaps after invalid sessions in a row: {gaps:?}");
    for (i, gap) in gaps.iter().enumerate() {
        let least = wait * (1 << i);
        assert!(*gap >= least, "gap {i} is {gap:?}, not at least {least:?}");
    }
    shard.stop().await.unwrap();
    bot.shutdown().await;
}

#[tokio::test]
async fn identifies_stop_at_the_reserve_of_the_session_budget_until_it_resets() {
    use bot_discord::gateway::SessionStartLimit;

    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let seen = Seen::default();
    let bot = bot(&seen, Limits::default(), None);
    let limit: SessionStartLimit = serde_json::from_value(json!({
        "total": 1000, "remaining": 3, "reset_after": 2500, "max_concurrency": 1
    }))
    .unwrap();
    // Three starts left, one kept back: two identifies, then none until the reset.
    let identify = IdentifyQueue::with_interval(1, Duration::ZERO).session_start_limit(&limit, 1);
    let started = Instant::now();
    let shard = Arc::new(Shard::new(
        ShardId::ONE,
        Arc::new(
            config(&gateway)
                .invalid_session_wait(Duration::from_millis(10), Duration::from_millis(10)),
        ),
        identify.clone(),
    ));
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (shard, ingress, stop) = (shard.clone(), bot.ingress(), stop.clone());
        async move { shard.run(ingress, stop).await }
    });
    gateway.wait_for_readies(1).await;
    gateway.invalid_session(false).await;
    gateway.wait_for_readies(2).await;
    assert!(bot.is_ready());
    gateway.invalid_session(false).await;

    // Refused: the shard says it is not ready, and why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bot.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reported not ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused_after = started.elapsed();
    let reasons = bot.ingress().readiness().not_ready();
    assert!(
        reasons
            .iter()
            .any(|(c, r)| c == "discord shard 0/1" && r.contains("session starts")),
        "{reasons:?}"
    );
    assert_eq!(
        gateway.received_op(2).len(),
        2,
        "no identify past the reserve"
    );
    assert_eq!(identify.session_starts_remaining(), Some(1));

    // At the reset the budget is whole again: the shard identifies and is ready.
    gateway.wait_for_readies(3).await;
    let third = gateway.received_op(2)[2].at - started;
    assert!(
        third >= Duration::from_millis(2500),
        "identified {third:?} after the start"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !bot.is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    report!("session budget: refused after {refused_after:?}, identified again after {third:?}");
    assert_eq!(identify.session_starts_remaining(), Some(999));
    stop.cancel();
    task.await.unwrap().unwrap();
    bot.shutdown().await;
}
