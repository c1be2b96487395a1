//! `JetStreamQueue` against a real NATS server with JetStream: deduplication on the message id,
//! fenced completions, retries with back-off holding their conversation, dead letters and
//! their re-drive, release, capacity, and per-conversation ordering with two consumers (two
//! "processes" sharing one stream). The crash (`kill -9`) and server-restart cases are in
//! `nats_faults.rs`.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::queue::{Dead, Lease, Nack, Queue};
use bot_core::{ErrorKind, Ordering};
use support::nats::{Cleanup, connect, queue_builder, unique_name};
use support::queue::{DEADLINE, ids, pull_n, pull_within};
use support::text_event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_within_the_window_are_dropped_by_the_server() {
    let name = unique_name("dedup");
    let _cleanup = Cleanup::new(&name);
    let queue = queue_builder(connect().await, &name).build().await.unwrap();
    let report = queue
        .push_batch(vec![
            text_event("c1", "e1"),
            text_event("c1", "e2"),
            text_event("c1", "e1"),
        ])
        .await
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (2, 1));
    // A second process's push of the same ids: the window is the stream's, not the process's.
    let other = queue_builder(connect().await, &name)
        .consume(false)
        .build()
        .await
        .unwrap();
    let report = other
        .push_batch(vec![text_event("c1", "e2"), text_event("c1", "e3")])
        .await
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 1));
    // Still a duplicate once handled: the id outlives the event, for the window.
    let got = pull_n(&queue, 1).await;
    assert_eq!(ids(&got), ["e1"]);
    queue.ack(&[got[0].lease]).await.unwrap();
    let report = queue
        .push_batch(vec![text_event("c1", "e1")])
        .await
        .unwrap();
    assert_eq!(report.duplicates, 1);
    assert_eq!(queue.counters().duplicates + other.counters().duplicates, 3);
    queue.shutdown().await;
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_token_cannot_complete() {
    let name = unique_name("fenced");
    let _cleanup = Cleanup::new(&name);
    let queue = queue_builder(connect().await, &name).build().await.unwrap();
    queue
        .push_batch(vec![text_event("c1", "e1")])
        .await
        .unwrap();
    let d = pull_n(&queue, 1).await.remove(0);
    let forged = Lease {
        id: d.lease.id,
        token: d.lease.token.wrapping_add(1),
    };
    let done = queue.ack(&[forged]).await.unwrap();
    assert_eq!((done.applied, done.stale), (0, 1));
    let nack = Nack {
        lease: forged,
        delay: Duration::ZERO,
        error: "x".into(),
        event: d.event.clone(),
    };
    assert_eq!(queue.nack(vec![nack]).await.unwrap().stale, 1);
    assert_eq!(
        queue.extend_lease(&[forged], DEADLINE).await.unwrap().stale,
        1
    );
    let done = queue.ack(&[d.lease]).await.unwrap();
    assert_eq!((done.applied, done.stale), (1, 0));
    assert_eq!(queue.ack(&[d.lease]).await.unwrap().stale, 1, "twice");
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_event_comes_back_after_its_delay_and_holds_its_conversation() {
    let name = unique_name("nack");
    let _cleanup = Cleanup::new(&name);
    let queue = queue_builder(connect().await, &name).build().await.unwrap();
    queue
        .push_batch(vec![
            text_event("c1", "e1"),
            text_event("c1", "e2"),
            text_event("c2", "f1"),
        ])
        .await
        .unwrap();
    let mut got = pull_n(&queue, 2).await;
    got.sort_by_key(|d| d.event.id.to_string());
    assert_eq!(ids(&got), ["e1", "f1"]);
    let e1 = got.remove(0);
    let delay = Duration::from_millis(400);
    let nacked_at = tokio::time::Instant::now();
    queue
        .nack(vec![Nack {
            lease: e1.lease,
            delay,
            error: "boom".into(),
            event: e1.event,
        }])
        .await
        .unwrap();
    // e2 must not overtake e1 while e1 waits for its retry.
    let again = pull_n(&queue, 1).await.remove(0);
    assert!(nacked_at.elapsed() >= delay, "retried before its delay");
    assert_eq!((again.event.id.as_str(), again.attempt), ("e1", 2));
    queue.ack(&[again.lease]).await.unwrap();
    let next = pull_n(&queue, 1).await.remove(0);
    assert_eq!((next.event.id.as_str(), next.attempt), ("e2", 1));
    queue.ack(&[next.lease]).await.unwrap();
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_kept_inspectable_and_redriven() {
    let name = unique_name("dead");
    let _cleanup = Cleanup::new(&name);
    let queue = queue_builder(connect().await, &name).build().await.unwrap();
    queue
        .push_batch(vec![text_event("c1", "e1"), text_event("c1", "e2")])
        .await
        .unwrap();
    // Two failed attempts, then the runtime gives up on the third.
    let mut d = pull_n(&queue, 1).await.remove(0);
    for attempt in 1..=2 {
        assert_eq!((d.event.id.as_str(), d.attempt), ("e1", attempt));
        queue
            .nack(vec![Nack {
                lease: d.lease,
                delay: Duration::from_millis(50),
                error: "boom".into(),
                event: d.event.clone(),
            }])
            .await
            .unwrap();
        d = pull_n(&queue, 1).await.remove(0);
    }
    assert_eq!(d.attempt, 3);
    let letters = queue
        .dead(vec![Dead {
            lease: d.lease,
            error: "gave up".into(),
            event: d.event.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].attempts, letters[0].error.as_str()),
        (3, "gave up")
    );
    // The conversation moves on past its dead letter.
    let e2 = pull_n(&queue, 1).await.remove(0);
    assert_eq!(e2.event.id.as_str(), "e2");
    queue.ack(&[e2.lease]).await.unwrap();
    // Kept in their own stream, readable by another process too.
    let other = queue_builder(connect().await, &name)
        .consume(false)
        .build()
        .await
        .unwrap();
    let kept = other.dead_letters(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].event, d.event);
    assert_eq!(other.redrive(10).await.unwrap(), 1);
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
    other.shutdown().await;
    let again = pull_n(&queue, 1).await.remove(0);
    assert_eq!((again.event.id.as_str(), again.attempt), ("e1", 1));
    queue.ack(&[again.lease]).await.unwrap();
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_events_come_back_without_an_attempt_and_shutdown_hands_partitions_over() {
    let name = unique_name("release");
    let _cleanup = Cleanup::new(&name);
    let first = queue_builder(connect().await, &name).build().await.unwrap();
    let events: Vec<_> = (0..20)
        .map(|i| text_event(&format!("c{i}"), &format!("e{i}")))
        .collect();
    first.push_batch(events).await.unwrap();
    let d = pull_n(&first, 5).await;
    assert_eq!(first.release(d).await.unwrap().applied, 5);
    let again = pull_n(&first, 20).await;
    assert!(again.iter().all(|d| d.attempt == 1));
    first.release(again).await.unwrap();
    // Shutdown gives every partition up at once: another process takes them without waiting
    // for the ownership lease, and gets everything unacknowledged.
    first.shutdown().await;
    assert_eq!(first.counters().partitions_given_up, 4);
    let other = queue_builder(connect().await, &name).build().await.unwrap();
    let started = tokio::time::Instant::now();
    let all = pull_n(&other, 20).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}, as long as the ownership lease",
        started.elapsed()
    );
    assert!(
        all.iter().all(|d| d.attempt == 1),
        "released events count no attempt"
    );
    assert_eq!(
        first.pull(5).await.unwrap().len(),
        0,
        "a closed queue hands out nothing"
    );
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_queues_hand_out_a_conversation_in_parallel() {
    let name = unique_name("unordered");
    let _cleanup = Cleanup::new(&name);
    let queue = queue_builder(connect().await, &name)
        .ordering(Ordering::Unordered)
        .build()
        .await
        .unwrap();
    queue
        .push_batch((0..5).map(|i| text_event("c1", &format!("e{i}"))).collect())
        .await
        .unwrap();
    let got = pull_n(&queue, 5).await;
    assert_eq!(ids(&got), ["e0", "e1", "e2", "e3", "e4"]);
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_refuses_pushes_with_a_retry_hint() {
    let name = unique_name("full");
    let _cleanup = Cleanup::new(&name);
    // One partition: the capacity is shared evenly by the partitions' streams.
    let queue = queue_builder(connect().await, &name)
        .partitions(1)
        .capacity(3)
        .build()
        .await
        .unwrap();
    let report = queue
        .push_batch((0..3).map(|i| text_event("c1", &format!("e{i}"))).collect())
        .await
        .unwrap();
    assert_eq!(report.accepted, 3);
    let e = queue
        .push_batch(vec![text_event("c1", "e3")])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull, "{e}");
    assert!(e.retry_after().is_some());
    // Room again once one is handled.
    let d = pull_n(&queue, 1).await;
    queue.ack(&[d[0].lease]).await.unwrap();
    let mut accepted = 0;
    for _ in 0..50 {
        match queue.push_batch(vec![text_event("c1", "e3")]).await {
            Ok(r) => {
                accepted = r.accepted;
                break;
            }
            // The acknowledgement is asynchronous: the deletion follows it shortly.
            Err(e) if e.kind() == ErrorKind::QueueFull => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(accepted, 1);
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_must_agree_on_the_partitions() {
    let name = unique_name("agree");
    let _cleanup = Cleanup::new(&name);
    let queue = queue_builder(connect().await, &name).build().await.unwrap();
    let e = queue_builder(connect().await, &name)
        .partitions(8)
        .build()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_partition_holds_its_share_of_the_capacity() {
    let name = unique_name("share");
    let _cleanup = Cleanup::new(&name);
    // 4 partitions share 8 events: 2 each.
    let queue = queue_builder(connect().await, &name)
        .capacity(8)
        .consume(false)
        .build()
        .await
        .unwrap();
    let report = queue
        .push_batch(vec![text_event("c1", "e0"), text_event("c1", "e1")])
        .await
        .unwrap();
    assert_eq!(report.accepted, 2);
    let e = queue
        .push_batch(vec![text_event("c1", "e2")])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull, "{e}");
    // Other partitions' conversations still have room: of 20 conversations, some land on
    // another partition (c1's refuses) and are stored.
    let mut stored = 0;
    for i in 0..20 {
        match queue
            .push_batch(vec![text_event(&format!("o{i}"), &format!("o{i}"))])
            .await
        {
            Ok(r) => stored += r.accepted,
            Err(e) => assert_eq!(e.kind(), ErrorKind::QueueFull, "{e}"),
        }
    }
    assert!(
        (1..=6).contains(&stored),
        "stored {stored} of 20 in 3 partitions of 2"
    );
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_the_earlier_single_stream_layout_is_a_config_error() {
    let name = unique_name("layout");
    let _cleanup = Cleanup::new(&name);
    let client = connect().await;
    let js = bot_core::nats::async_nats::jetstream::new(client.clone());
    js.create_stream(bot_core::nats::async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.p.*")],
        retention: bot_core::nats::async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .unwrap();
    let e = queue_builder(client, &name).build().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("earlier version"), "{e}");
}

/// Per conversation: whether an event of it runs now, and the sequences run so far.
type Runs = HashMap<String, (bool, Vec<usize>)>;

/// Two consumers share one stream: each conversation runs one event at a time, in push order,
/// across both, and both get work (the second takes its share of the partitions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_run_one_at_a_time_in_order_across_two_consumers() {
    const CONVERSATIONS: usize = 40;
    const PER_CONVERSATION: usize = 25;
    let name = unique_name("order_two");
    let _cleanup = Cleanup::new(&name);
    let a = Arc::new(queue_builder(connect().await, &name).build().await.unwrap());
    let b = Arc::new(queue_builder(connect().await, &name).build().await.unwrap());
    // The second takes its share from the first, which gives partitions up.
    let t0 = tokio::time::Instant::now();
    let until = t0 + DEADLINE;
    while a.owned_partitions().len() != 2 || b.owned_partitions().len() != 2 {
        assert!(
            tokio::time::Instant::now() < until,
            "no fair split: {:?} and {:?}",
            a.owned_partitions(),
            b.owned_partitions()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events = Vec::new();
    for seq in 0..PER_CONVERSATION {
        for conv in 0..CONVERSATIONS {
            events.push(text_event(&format!("c{conv}"), &format!("c{conv}-{seq}")));
        }
    }
    for chunk in events.chunks(100) {
        a.push_batch(chunk.to_vec()).await.unwrap();
    }
    let running: Arc<Mutex<Runs>> = Arc::default();
    let total = CONVERSATIONS * PER_CONVERSATION;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker = |queue: Arc<bot_core::nats::JetStreamQueue>| {
        let running = running.clone();
        let done = done.clone();
        async move {
            let mut handled = 0usize;
            while done.load(std::sync::atomic::Ordering::SeqCst) < total {
                let batch = pull_within(&*queue, 16, Duration::from_millis(200)).await;
                for d in &batch {
                    let (conv, seq) = d.event.id.as_str().split_once('-').unwrap();
                    let mut map = running.lock().unwrap();
                    let entry = map.entry(conv.to_owned()).or_default();
                    assert!(!entry.0, "{conv} runs twice at once");
                    entry.0 = true;
                    entry.1.push(seq.parse().unwrap());
                }
                // Let the other consumer run while these are "handled".
                tokio::task::yield_now().await;
                for d in &batch {
                    let conv = d.event.conversation.as_str();
                    running.lock().unwrap().get_mut(conv).unwrap().0 = false;
                }
                let leases: Vec<Lease> = batch.iter().map(|d| d.lease).collect();
                let acked = queue.ack(&leases).await.unwrap();
                done.fetch_add(acked.applied, std::sync::atomic::Ordering::SeqCst);
                handled += acked.applied;
            }
            handled
        }
    };
    let (ha, hb) = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join(worker(a.clone()), worker(b.clone())),
    )
    .await
    .expect("every event handled within 60 s");
    assert_eq!(ha + hb, total);
    assert!(ha > 0 && hb > 0, "both consumers got work: {ha} and {hb}");
    for (conv, (_, seqs)) in running.lock().unwrap().iter() {
        let want: Vec<usize> = (0..PER_CONVERSATION).collect();
        assert_eq!(seqs, &want, "{conv} ran out of order");
    }
    a.shutdown().await;
    b.shutdown().await;
}
