//! Hand-over in batches: the shard reads on while a batch is with the queue, maps the next one
//! meanwhile (submitted only once the one before is accepted), stops reading when its window
//! (one batch offered, one mapped, one filling) is full, and resumes from the last sequence the
//! queue accepted. A queue that holds each push at a gate the test opens shows each step, over
//! real sockets with the fake gateway.
#![allow(clippy::disallowed_methods)] // the shard runs in a spawned task

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bot_discord::gateway::{IdentifyQueue, Shard, ShardConfig, ShardId};
use bot_discord::testing::FakeGateway;
use support::{GatedQueue, Seen, TOKEN, message, recording_bot, wait_until};
use tokio_util::sync::CancellationToken;

fn start(config: ShardConfig, bot: &bot_core::Bot) -> (Arc<Shard>, CancellationToken) {
    let shard = Arc::new(Shard::new(
        ShardId::ONE,
        Arc::new(config),
        IdentifyQueue::new(1),
    ));
    let stop = CancellationToken::new();
    tokio::spawn({
        let (shard, ingress, stop) = (shard.clone(), bot.ingress(), stop.clone());
        async move { shard.run(ingress, stop).await }
    });
    (shard, stop)
}

/// A recording bot on `queue` and a shard with `config` on `gateway`, started and past READY;
/// with how many dispatches the shard had read by then.
async fn started(
    gateway: &FakeGateway,
    queue: &Arc<GatedQueue>,
    config: ShardConfig,
) -> (bot_core::Bot, Seen, Arc<Shard>, CancellationToken, u64) {
    let (bot, seen) = recording_bot(queue.clone());
    let (shard, stop) = start(config, &bot);
    gateway.wait_for_readies(1).await;
    wait_until("READY read", || shard.status().session().is_some()).await;
    let read_before = shard.status().dispatches();
    (bot, seen, shard, stop, read_before)
}

fn config(gateway: &FakeGateway) -> ShardConfig {
    ShardConfig::new(TOKEN)
        .url(gateway.url())
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
}

fn assert_each_once_in_order(ids: &[String], first: u64, count: u64) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "each once: {ids:?}");
    let expected: Vec<String> = (first..first + count).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected, "one channel: in order");
}

#[tokio::test]
async fn the_shard_reads_on_while_a_hand_over_waits_and_submits_many_at_once() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let queue = Arc::new(GatedQueue::new());
    let (bot, seen, shard, stop, read_before) = started(&gateway, &queue, config(&gateway)).await;

    for i in 0..40 {
        gateway
            .dispatch("MESSAGE_CREATE", message(80_000 + i))
            .await;
    }
    // The first push waits at the gate; the shard reads every dispatch meanwhile.
    wait_until("every dispatch read", || {
        shard.status().dispatches() == read_before + 40
    })
    .await;
    assert_eq!(queue.waiting(), 1, "one batch offered, held at the gate");
    assert!(queue.pushes().is_empty() && seen.ids().is_empty());
    assert_eq!(shard.status().hand_overs(), 0);

    queue.open(100);
    seen.wait_for(40).await;
    assert_each_once_in_order(&seen.ids(), 80_000, 40);
    let pushes = queue.pushes();
    assert_eq!(pushes.iter().sum::<usize>(), 40);
    assert!(
        pushes.len() <= 2,
        "the 39 read while the first waited go in one submit: {pushes:?}"
    );
    stop.cancel();
    bot.shutdown().await;
}

/// The shard's sequence now.
fn sequence(shard: &Shard) -> u64 {
    shard.status().session().map_or(0, |s| s.sequence)
}

#[tokio::test]
async fn a_full_window_stops_the_reading_and_the_batch_mapped_meanwhile_waits_its_turn() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    gateway.set_heartbeat_interval(Duration::from_millis(100));
    let queue = Arc::new(GatedQueue::new());
    let (bot, seen, shard, stop, read_before) = started(
        &gateway,
        &queue,
        config(&gateway).hand_over_batch(4, 1024 * 1024),
    )
    .await;
    assert_eq!(sequence(&shard), 1, "READY");

    for i in 0..30 {
        gateway
            .dispatch("MESSAGE_CREATE", message(81_000 + i))
            .await;
    }
    // One batch of 1 to 4 offered, one of 4 mapped and waiting for it, one of 4 filling: then
    // nothing more is read.
    wait_until("a full window", || {
        shard.status().dispatches() >= read_before + 9
    })
    .await;
    let beats = gateway.received_op(1).len();
    gateway.wait_for_op(1, beats + 3).await;
    let read = shard.status().dispatches() - read_before;
    assert!(
        (9..=12).contains(&read),
        "reading stopped at three batches: {read} read"
    );
    assert_eq!(
        queue.waiting(),
        1,
        "the second batch is not submitted before the first is accepted"
    );
    assert_eq!(sequence(&shard), 1, "nothing accepted yet");
    assert_eq!(gateway.connections().len(), 1, "heartbeats went on");

    // The first accepted: the sequence moves to its last dispatch, not past the second's,
    // which is now at the gate.
    queue.open(1);
    wait_until("the second batch offered", || {
        queue.pushes().len() == 1 && queue.waiting() == 1
    })
    .await;
    let first = queue.pushes()[0] as u64;
    wait_until("the first batch's sequence", || {
        sequence(&shard) == 1 + first
    })
    .await;
    assert_eq!(queue.waiting(), 1);
    assert_eq!(
        sequence(&shard),
        1 + first,
        "not past the batch at the gate"
    );

    // Accepted batch by batch, in order, the window moves on to the end.
    queue.open(1000);
    seen.wait_for(30).await;
    assert_each_once_in_order(&seen.ids(), 81_000, 30);
    assert_eq!(shard.status().dispatches() - read_before, 30);
    let pushes = queue.pushes();
    assert!(pushes.iter().all(|n| *n <= 4), "{pushes:?}");
    assert_eq!(
        pushes.iter().sum::<usize>(),
        30,
        "each batch pushed once: {pushes:?}"
    );
    wait_until("the last sequence", || sequence(&shard) == 31).await;
    assert_eq!(gateway.connections().len(), 1);
    stop.cancel();
    bot.shutdown().await;
}

#[tokio::test]
async fn a_connection_dropped_with_two_batches_in_flight_submits_neither_and_resumes_before_them() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let queue = Arc::new(GatedQueue::new());
    let (bot, seen, shard, stop, read_before) = started(
        &gateway,
        &queue,
        config(&gateway).hand_over_batch(4, 1024 * 1024),
    )
    .await;

    // 8: one batch of 1 to 4 at the gate, one of 4 mapped behind it, at most 3 filling, so
    // the reading is not held and the shard sees the connection drop.
    for i in 0..8 {
        gateway
            .dispatch("MESSAGE_CREATE", message(83_000 + i))
            .await;
    }
    wait_until("two batches in flight", || {
        shard.status().dispatches() == read_before + 8
    })
    .await;
    assert_eq!(queue.waiting(), 1);

    // The connection drops: after its wait for the hand-overs, the shard aborts both (the one
    // at the gate and the one behind it) and resumes from READY's sequence.
    gateway.close(4000).await;
    gateway.wait_for_resumes(1).await;
    let resume = &gateway.received_op(6)[0].d;
    assert_eq!(resume["seq"], 1, "resumed from the last accepted sequence");

    queue.open(1000);
    seen.wait_for(8).await;
    bot.idle().await;
    assert_each_once_in_order(&seen.ids(), 83_000, 8);
    let pushes = queue.pushes();
    assert_eq!(
        pushes.iter().sum::<usize>(),
        8,
        "the old connection's batches were never pushed: {pushes:?}"
    );
    assert_eq!(gateway.readies(), 1, "no new session");
    stop.cancel();
    bot.shutdown().await;
}

#[tokio::test]
async fn a_session_cut_with_batches_outstanding_resumes_from_the_last_accepted_sequence() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let queue = Arc::new(GatedQueue::new());
    let (bot, seen) = recording_bot(queue.clone());
    let (shard, stop) = start(config(&gateway), &bot);
    gateway.wait_for_readies(1).await;

    // READY is sequence 1; the first dispatch (2) is accepted.
    queue.open(1);
    gateway.dispatch("MESSAGE_CREATE", message(82_000)).await;
    seen.wait_for(1).await;
    wait_until("the first batch accepted", || {
        shard.status().session().is_some_and(|s| s.sequence == 2)
    })
    .await;
    let read_before = shard.status().dispatches();
    for i in 1..12 {
        gateway
            .dispatch("MESSAGE_CREATE", message(82_000 + i))
            .await;
    }
    wait_until("the rest read, one batch offered", || {
        shard.status().dispatches() == read_before + 11 && queue.waiting() == 1
    })
    .await;

    // The connection drops while a batch waits and another fills.
    gateway.close(4000).await;
    gateway.wait_for_resumes(1).await;
    let resume = &gateway.received_op(6)[0].d;
    assert_eq!(resume["session_id"], "session-1");
    assert_eq!(resume["seq"], 2, "resumed from the last accepted sequence");

    queue.open(1000);
    seen.wait_for(12).await;
    bot.idle().await;
    assert_each_once_in_order(&seen.ids(), 82_000, 12);
    assert_eq!(gateway.readies(), 1, "no new session");
    stop.cancel();
    bot.shutdown().await;
}

#[tokio::test]
async fn dispatches_written_otherwise_than_discord_writes_them_are_read_whole_in_order() {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let queue = Arc::new(GatedQueue::new());
    queue.open(1000);
    let (bot, seen, shard, stop, _) = started(&gateway, &queue, config(&gateway)).await;

    // Written as Discord writes it (`t`, `s`, `op`, then `d`): read from its envelope.
    gateway.dispatch("MESSAGE_CREATE", message(90_000)).await;
    // `d` first: parsed whole at once.
    let d_first =
        serde_json::json!({"d": message(90_001), "op": 0, "s": 100, "t": "MESSAGE_CREATE"});
    gateway
        .send_text(format!(
            r#"{{"d":{},"op":0,"s":100,"t":"MESSAGE_CREATE"}}"#,
            d_first["d"]
        ))
        .await;
    // A key after `d`: cut by the envelope, the data is not JSON, so the frame is parsed whole.
    gateway
        .send_text(format!(
            r#"{{"t":"MESSAGE_CREATE","s":101,"op":0,"d":{},"extra":{{"d":1}}}}"#,
            message(90_002)
        ))
        .await;
    // Not JSON at all, though its envelope reads: skipped, as a dispatch that cannot be read is,
    // its sequence counted as read (a resume would only replay it), and the connection goes on.
    gateway
        .send_text(r#"{"t":"MESSAGE_CREATE","s":102,"op":0,"d":{"id":"9"}"#)
        .await;
    gateway.dispatch("MESSAGE_CREATE", message(90_003)).await;

    seen.wait_for(4).await;
    bot.idle().await;
    assert_each_once_in_order(&seen.ids(), 90_000, 4);
    wait_until("the sequence of the last read", || {
        shard.status().session().is_some_and(|s| s.sequence == 102)
    })
    .await;
    // No `d` at all: handed over with `null` data, not dropped, so its sequence is recorded.
    gateway
        .send_text(r#"{"t":"SOMETHING_NEW","s":103,"op":0}"#)
        .await;
    wait_until("the sequence of a dispatch without data", || {
        shard.status().session().is_some_and(|s| s.sequence == 103)
    })
    .await;
    assert_eq!(gateway.connections().len(), 1, "one connection throughout");
    stop.cancel();
    bot.shutdown().await;
}
