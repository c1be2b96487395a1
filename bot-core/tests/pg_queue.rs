//! `PgQueue` against a real PostgreSQL: dedup, fenced completions, retries, dead letters,
//! the rescuer, release at shutdown, per-conversation ordering across two instances (two
//! "processes" sharing one schema), wake-ups and import. Capacity, overflow and dead-letter
//! retention are in `pg_queue_bounds.rs`, migrations in `pg_migrate.rs`.

mod support;

use std::time::Duration;

use bot_core::queue::{Dead, Delivery, Lease, Nack, Queue};
use bot_core::{ErrorKind, Ordering};
use support::pg::{database_url, eventually, fresh_pool, insert_raw, lock_lane, queue_builder};
use support::queue::{DEADLINE, ids, pull_n, pull_within};
use support::text_event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_skipped_in_the_insert_statement() {
    let pool = fresh_pool("dedup").await;
    let queue = queue_builder(&pool).build().unwrap();
    let report = queue
        .push_batch(vec![
            text_event("c1", "e1"),
            text_event("c1", "e2"),
            // The same id twice in one batch.
            text_event("c1", "e1"),
        ])
        .await
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (2, 1));
    // A redelivery of both, and one new event.
    let report = queue
        .push_batch(vec![
            text_event("c1", "e1"),
            text_event("c1", "e2"),
            text_event("c1", "e3"),
        ])
        .await
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 2));
    // Still a duplicate once handled: the key outlives the event.
    let got = pull_n(&queue, 1).await;
    queue.ack(&[got[0].lease]).await.unwrap();
    let report = queue
        .push_batch(vec![text_event("c1", "e1")])
        .await
        .unwrap();
    assert_eq!(report.duplicates, 1);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.ready, 2);
    assert_eq!(queue.counters().duplicates, 4);
    queue.shutdown().await;
}

/// The maintenance task forgets dedup keys past their time to live, in batches: an id seen
/// before the time to live is an event again after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_keys_are_pruned_after_their_time_to_live() {
    let pool = fresh_pool("dedup_prune").await;
    let queue = queue_builder(&pool)
        .dedup_ttl(Duration::from_millis(300))
        .prune_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let report = queue
        .push_batch(vec![text_event("c1", "e1")])
        .await
        .unwrap();
    assert_eq!(report.accepted, 1);
    let report = queue
        .push_batch(vec![text_event("c1", "e1")])
        .await
        .unwrap();
    assert_eq!(report.duplicates, 1, "within its time to live: a duplicate");
    let conn = pool.get().await.unwrap();
    eventually("the key pruned", Duration::from_secs(10), || async {
        let n: i64 = conn
            .query_one("SELECT count(*) FROM botrt_dedup", &[])
            .await
            .unwrap()
            .get(0);
        (n == 0).then_some(())
    })
    .await;
    let report = queue
        .push_batch(vec![text_event("c1", "e1")])
        .await
        .unwrap();
    assert_eq!(report.accepted, 1, "past its time to live: an event again");
    queue.shutdown().await;
}

/// An unordered queue's push deduplicates as an ordered one's does, without a lane row per
/// conversation (a campaign to a million recipients would write a million).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unordered_push_deduplicates_and_writes_no_lane_rows() {
    let pool = fresh_pool("unordered_push").await;
    let queue = queue_builder(&pool)
        .ordering(Ordering::Unordered)
        .build()
        .unwrap();
    let events = |ids: &[&str]| -> Vec<_> {
        ids.iter()
            .enumerate()
            .map(|(n, id)| text_event(&format!("c{n}"), id))
            .collect()
    };
    let report = queue
        .push_batch(events(&["e1", "e2", "e3", "e1"]))
        .await
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (3, 1));
    let report = queue.push_batch(events(&["e2", "e4"])).await.unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 1));
    let lanes: i64 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM botrt_lanes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lanes, 0);
    let got = pull_n(&queue, 4).await;
    assert_eq!(got.len(), 4);
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_token_cannot_complete() {
    let pool = fresh_pool("fenced").await;
    let queue = queue_builder(&pool).build().unwrap();
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
    let done = queue
        .nack(vec![Nack {
            lease: forged,
            delay: Duration::ZERO,
            error: "x".into(),
            event: d.event.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(done.stale, 1);
    assert_eq!(
        queue.extend_lease(&[forged], DEADLINE).await.unwrap().stale,
        1
    );
    assert_eq!(queue.stats().await.unwrap().leased, 1);
    let done = queue.ack(&[d.lease]).await.unwrap();
    assert_eq!((done.applied, done.stale), (1, 0));
    // A second ack of the same lease is stale too.
    assert_eq!(queue.ack(&[d.lease]).await.unwrap().stale, 1);
    assert_eq!(queue.counters().stale, 4);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.ready, stats.leased), (0, 0));
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_event_comes_back_after_its_delay_and_holds_its_conversation() {
    let pool = fresh_pool("nack").await;
    let queue = queue_builder(&pool).build().unwrap();
    queue
        .push_batch(vec![
            text_event("c1", "e1"),
            text_event("c1", "e2"),
            text_event("c2", "f1"),
        ])
        .await
        .unwrap();
    let mut got = pull_n(&queue, 2).await;
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
    assert_eq!(queue.stats().await.unwrap().retrying, 1);
    // e2 must not overtake e1 while e1 waits for its retry.
    let again = pull_n(&queue, 1).await.remove(0);
    assert!(nacked_at.elapsed() >= delay, "retried before its delay");
    assert_eq!(again.event.id.as_str(), "e1");
    assert_eq!(again.attempt, 2);
    queue.ack(&[again.lease]).await.unwrap();
    let next = pull_n(&queue, 1).await.remove(0);
    assert_eq!((next.event.id.as_str(), next.attempt), ("e2", 1));
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_kept_inspectable_and_redriven() {
    let pool = fresh_pool("dead").await;
    let queue = queue_builder(&pool).build().unwrap();
    queue
        .push_batch(vec![text_event("c1", "e1"), text_event("c1", "e2")])
        .await
        .unwrap();
    let e1 = pull_n(&queue, 1).await.remove(0);
    let letters = queue
        .dead(vec![Dead {
            lease: e1.lease,
            error: "gave up".into(),
            event: e1.event.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].attempts, letters[0].error.as_str()),
        (1, "gave up")
    );
    // The conversation moves on past its dead letter.
    let e2 = pull_n(&queue, 1).await.remove(0);
    assert_eq!(e2.event.id.as_str(), "e2");
    queue.ack(&[e2.lease]).await.unwrap();
    let kept = queue.dead_letters(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].event, e1.event);
    assert_eq!(queue.stats().await.unwrap().dead, 1);
    assert_eq!(queue.redrive(10).await.unwrap(), 1);
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
    let again = pull_n(&queue, 1).await.remove(0);
    assert_eq!((again.event.id.as_str(), again.attempt), ("e1", 1));
    queue.ack(&[again.lease]).await.unwrap();
    queue.shutdown().await;
}

/// A handler's error text is arbitrary; PostgreSQL refuses a NUL byte in text. Such a message
/// must not make the retry or the dead letter fail (for ever, as the completer retries it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_with_nul_bytes_or_of_any_length_are_stored_with_retries_and_dead_letters() {
    let pool = fresh_pool("nul_errors").await;
    let queue = queue_builder(&pool).build().unwrap();
    queue
        .push_batch(vec![text_event("c1", "e1")])
        .await
        .unwrap();
    let first = pull_n(&queue, 1).await.remove(0);
    let done = queue
        .nack(vec![Nack {
            lease: first.lease,
            delay: Duration::ZERO,
            error: "bad\0byte".into(),
            event: first.event,
        }])
        .await
        .expect("a nack whose error holds a NUL byte applies");
    assert_eq!(done.applied, 1);
    let second = pull_n(&queue, 1).await.remove(0);
    let long = format!("x\0{}", "é".repeat(10_000));
    let letters = queue
        .dead(vec![Dead {
            lease: second.lease,
            error: long,
            event: second.event,
        }])
        .await
        .expect("a dead letter whose error holds a NUL byte applies");
    assert_eq!(letters.len(), 1);
    let kept = queue.dead_letters(10).await.unwrap();
    assert!(kept[0].error.starts_with("xé"), "{}", &kept[0].error[..8]);
    assert!(kept[0].error.len() <= 4096, "cut to a bound");
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rescuer_returns_expired_leases_to_another_process() {
    let pool = fresh_pool("rescue").await;
    let crashed = queue_builder(&pool)
        .lease_duration(Duration::from_millis(300))
        .build()
        .unwrap();
    let survivor = queue_builder(&pool).build().unwrap();
    crashed
        .push_batch(vec![text_event("c1", "e1"), text_event("c1", "e2")])
        .await
        .unwrap();
    let lost = pull_n(&crashed, 1).await.remove(0);
    // The "crashed" process never extends nor completes; its lease expires and the survivor's
    // rescuer hands the event out again, with the attempt counted.
    let again = pull_n(&survivor, 1).await.remove(0);
    assert_eq!((again.event.id.as_str(), again.attempt), ("e1", 2));
    assert!(survivor.counters().rescued + crashed.counters().rescued >= 1);
    // The old holder's ack is fenced off.
    assert_eq!(crashed.ack(&[lost.lease]).await.unwrap().stale, 1);
    survivor.ack(&[again.lease]).await.unwrap();
    crashed.shutdown().await;
    let e2 = pull_n(&survivor, 1).await.remove(0);
    assert_eq!(e2.event.id.as_str(), "e2");
    survivor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_in_the_buffer_past_its_lease_is_never_handed_out() {
    let pool = fresh_pool("buffer_stale").await;
    let lease = Duration::from_millis(1500);
    // Its own maintenance rarely runs: nothing of this process extends or rescues meanwhile.
    let slow = queue_builder(&pool)
        .lease_duration(lease)
        .rescue_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let other = queue_builder(&pool).build().unwrap();
    let events: Vec<_> = (0..4)
        .map(|i| text_event(&format!("c{i}"), &format!("e{i}")))
        .collect();
    slow.push_batch(events).await.unwrap();
    // One pulled, three prefetched into the buffer; nobody pulls them there for a lease.
    let first = pull_n(&slow, 1).await;
    assert_eq!(slow.counters().claimed, 4);
    let leases: Vec<Lease> = first.iter().map(|d| d.lease).collect();
    assert_eq!(slow.ack(&leases).await.unwrap().applied, 1);
    let taken = pull_n(&other, 3).await;
    let mut taken_ids = ids(&taken);
    taken_ids.sort();
    assert_eq!(taken_ids, ["e1", "e2", "e3"]);
    // Released, not expired: the other process's claim counted no second attempt.
    assert!(
        taken.iter().all(|d| d.attempt == 1),
        "the buffered claims were left to expire: {:?}",
        taken.iter().map(|d| d.attempt).collect::<Vec<_>>()
    );
    // Counted once the release's answer came, which may be just after the other's claim.
    eventually("the stale claims counted", DEADLINE, || async {
        (slow.counters().released_stale == 3).then_some(())
    })
    .await;
    // The first process pulls again: none of what the other runs comes out of its buffer.
    other
        .push_batch(vec![text_event("c9", "e9")])
        .await
        .unwrap();
    let next = pull_n(&slow, 1).await;
    assert_eq!(ids(&next), ["e9"], "a stale buffered claim was handed out");
    let leases: Vec<Lease> = next.iter().map(|d| d.lease).collect();
    assert_eq!(slow.ack(&leases).await.unwrap().applied, 1);
    let leases: Vec<Lease> = taken.iter().map(|d| d.lease).collect();
    assert_eq!(other.ack(&leases).await.unwrap().applied, 3);
    slow.shutdown().await;
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_shutdown_return_unstarted_claims_at_once() {
    let pool = fresh_pool("release").await;
    let first = queue_builder(&pool).prefetch(8).build().unwrap();
    let other = queue_builder(&pool).build().unwrap();
    let events: Vec<_> = (0..20)
        .map(|i| text_event(&format!("c{i}"), &format!("e{i}")))
        .collect();
    first.push_batch(events).await.unwrap();
    // One demanded, eight prefetched: nine leased.
    let d = pull_n(&first, 1).await;
    assert_eq!(first.counters().claimed, 9);
    let done = first.release(d).await.unwrap();
    assert_eq!(done.applied, 1);
    // Shutdown releases the eight buffered claims before it returns.
    first.shutdown().await;
    let stats = other.stats().await.unwrap();
    assert_eq!((stats.ready, stats.leased), (20, 0));
    let all = pull_n(&other, 20).await;
    // Released events do not count an attempt.
    assert!(all.iter().all(|d| d.attempt == 1));
    assert_eq!(
        first.pull(5).await.unwrap().len(),
        0,
        "a closed queue hands out nothing"
    );
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_is_leased_by_one_process_at_a_time_in_order() {
    let pool = fresh_pool("order_two").await;
    let a = queue_builder(&pool).prefetch(0).build().unwrap();
    let b = queue_builder(&pool).prefetch(0).build().unwrap();
    let mut events = Vec::new();
    for seq in 0..3 {
        for conv in 0..10 {
            events.push(text_event(&format!("c{conv}"), &format!("c{conv}-{seq}")));
        }
    }
    a.push_batch(events).await.unwrap();
    // A takes the head of every conversation; B finds nothing while A holds them.
    let heads = pull_n(&a, 10).await;
    assert!(heads.iter().all(|d| d.event.id.as_str().ends_with("-0")));
    assert!(
        pull_within(&b, 10, Duration::from_millis(300))
            .await
            .is_empty()
    );
    // Once A acknowledges c3's head, B gets c3's second event and nothing else.
    let c3 = heads
        .iter()
        .find(|d| d.event.conversation.as_str() == "c3")
        .unwrap();
    a.ack(&[c3.lease]).await.unwrap();
    let got = pull_n(&b, 1).await;
    assert_eq!(ids(&got), ["c3-1"]);
    assert!(
        pull_within(&b, 10, Duration::from_millis(200))
            .await
            .is_empty()
    );
    // A retry waiting in one process holds the conversation for the other too.
    let c5 = heads
        .iter()
        .find(|d| d.event.conversation.as_str() == "c5")
        .unwrap();
    a.nack(vec![Nack {
        lease: c5.lease,
        delay: Duration::from_secs(60),
        error: "later".into(),
        event: c5.event.clone(),
    }])
    .await
    .unwrap();
    assert!(
        pull_within(&b, 10, Duration::from_millis(200))
            .await
            .is_empty()
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Ordered claims take no lock: four "processes" claiming at once on few conversations still
/// never lease a conversation twice, and run each conversation's events in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_running_at_once_never_lease_a_conversation_twice() {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Mutex};

    const CONVERSATIONS: usize = 8;
    const PER_CONVERSATION: usize = 150;
    let pool = fresh_pool("claim_race").await;
    let pusher = queue_builder(&pool).build().unwrap();
    let mut events = Vec::new();
    for seq in 0..PER_CONVERSATION {
        for conv in 0..CONVERSATIONS {
            events.push(text_event(&format!("c{conv}"), &format!("c{conv}-{seq}")));
        }
    }
    pusher.push_batch(events).await.unwrap();
    pusher.shutdown().await;
    // Running conversations, and the next sequence number each expects.
    let running = Arc::new(Mutex::new(HashSet::<String>::new()));
    let next = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let mut processes = Vec::new();
    for _ in 0..4 {
        let queue = queue_builder(&pool).prefetch(0).build().unwrap();
        let (running, next) = (running.clone(), next.clone());
        processes.push(async move {
            let mut handled = 0;
            loop {
                let batch = pull_within(&queue, 4, Duration::from_millis(500)).await;
                if batch.is_empty() {
                    break;
                }
                for d in &batch {
                    let conv = d.event.conversation.to_string();
                    assert!(
                        running.lock().unwrap().insert(conv.clone()),
                        "{conv} leased twice at once"
                    );
                    let seq: usize = d
                        .event
                        .id
                        .as_str()
                        .rsplit('-')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let expected = *next.lock().unwrap().get(&conv).unwrap_or(&0);
                    assert_eq!(seq, expected, "{conv} out of order");
                }
                tokio::task::yield_now().await;
                // Done before the acknowledgement commits: only then may another claim come.
                for d in &batch {
                    let conv = d.event.conversation.to_string();
                    running.lock().unwrap().remove(&conv);
                    *next.lock().unwrap().entry(conv).or_insert(0) += 1;
                }
                let leases: Vec<Lease> = batch.iter().map(|d| d.lease).collect();
                queue.ack(&leases).await.unwrap();
                handled += batch.len();
            }
            queue.shutdown().await;
            handled
        });
    }
    // One task: the four claimers (each queue's own task) still run at once in the database.
    let handled: usize = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join_all(processes),
    )
    .await
    .expect("drained within a minute")
    .into_iter()
    .sum();
    assert_eq!(handled, CONVERSATIONS * PER_CONVERSATION);
    let next = next.lock().unwrap();
    assert!(next.values().all(|&n| n == PER_CONVERSATION), "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_queues_hand_out_a_conversation_in_parallel() {
    let pool = fresh_pool("unordered").await;
    let queue = queue_builder(&pool)
        .ordering(Ordering::Unordered)
        .build()
        .unwrap();
    queue
        .push_batch((0..5).map(|i| text_event("c1", &format!("e{i}"))).collect())
        .await
        .unwrap();
    let got = pull_n(&queue, 5).await;
    assert_eq!(ids(&got), ["e0", "e1", "e2", "e3", "e4"]);
    queue.shutdown().await;
}

/// An unordered queue claims after its largest leased id between full claims: an event left
/// under the leases (here a retry, due at once) must still be claimed, and without waiting for
/// the events pushed after it to run out only by chance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unordered_claim_from_the_tail_still_takes_an_event_left_under_the_leases() {
    let pool = fresh_pool("tail").await;
    let queue = queue_builder(&pool)
        .ordering(Ordering::Unordered)
        .prefetch(0)
        .build()
        .unwrap();
    queue
        .push_batch(
            (0..3)
                .map(|i| text_event(&format!("a{i}"), &format!("a{i}")))
                .collect(),
        )
        .await
        .unwrap();
    let mut held = pull_n(&queue, 3).await;
    assert_eq!(ids(&held), ["a0", "a1", "a2"]);
    // a0 goes back, due now, under a1 and a2, which stay leased to the end.
    let a0 = held.remove(0);
    queue
        .nack(vec![Nack {
            lease: a0.lease,
            delay: Duration::ZERO,
            error: "again".into(),
            event: a0.event,
        }])
        .await
        .unwrap();
    queue
        .push_batch(
            (0..10)
                .map(|i| text_event(&format!("b{i}"), &format!("b{i}")))
                .collect(),
        )
        .await
        .unwrap();
    let got = pull_n(&queue, 11).await;
    let mut names = ids(&got);
    names.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("b{i}")).collect();
    want.insert(0, "a0".into());
    assert_eq!(names, want);
    let again = got.iter().find(|d| d.event.id.as_str() == "a0").unwrap();
    assert_eq!(again.attempt, 2);
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_to_an_unreachable_database_are_refused_with_retry_after() {
    // Nothing listens on port 1.
    let pool = bot_core::pg::PgPool::builder("postgres://postgres@127.0.0.1:1/postgres")
        .create_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let queue = bot_core::pg::PgQueue::builder(&pool)
        .retry_after(Duration::from_secs(7))
        .listen(false)
        .build()
        .unwrap();
    let e = queue
        .push_batch(vec![text_event("c1", "e1")])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull, "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_wakes_an_idle_puller_of_another_process() {
    let pool = fresh_pool("notify").await;
    // Polling so slow that only the NOTIFY can explain a quick pickup.
    let listener = queue_builder(&pool)
        .poll_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let pusher = queue_builder(&pool).listen(false).build().unwrap();
    eventually("the LISTEN connection", DEADLINE, || async {
        listener.is_listening().then_some(())
    })
    .await;
    // Let the listener's first (empty) claim happen so that it idles.
    assert!(
        pull_within(&listener, 1, Duration::from_millis(100))
            .await
            .is_empty()
    );
    let pull = async {
        tokio::time::timeout(Duration::from_secs(5), listener.pull(1))
            .await
            .expect("woken by NOTIFY, long before the 60 s poll")
            .unwrap()
    };
    let push = async {
        pusher
            .push_batch(vec![text_event("c1", "e1")])
            .await
            .unwrap();
    };
    let (got, ()) = tokio::join!(pull, push);
    assert_eq!(ids(&got), ["e1"]);
    assert!(listener.counters().notifications >= 1);
    listener.shutdown().await;
    pusher.shutdown().await;
}

/// Every push that commits events is announced once to the other processes, whichever way the
/// `NOTIFY` goes (carried in the push's statement after a quiet time, or sent right behind it on
/// its connection); a push of duplicates only announces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_announced_once_when_it_inserts_and_never_when_it_inserts_nothing() {
    let pool = fresh_pool("announce").await;
    // No debounce: every push may announce itself at once. One connection: the queue's
    // statements run one after the other on one session, so once a push has returned, every
    // statement sent before it on that session (the `NOTIFY`s behind the earlier pushes) has
    // run.
    let pusher = queue_builder(&pool)
        .listen(false)
        .notify_debounce(Duration::ZERO)
        .connections(1)
        .build()
        .unwrap();
    // A LISTEN connection of the test's own sees what goes out, in commit order.
    let (client, mut connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL answers");
    // Room for every notification the test can cause (a buggy push sends at most one each).
    let (tx, mut notifications) = tokio::sync::mpsc::channel(64);
    // The connection delivers notifications only while polled: one task drives it for the test.
    #[allow(clippy::disallowed_methods)]
    let driver = tokio::spawn(async move {
        while let Some(message) = futures::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let Ok(tokio_postgres::AsyncMessage::Notification(n)) = message {
                let _ = tx.send(n.payload().to_owned()).await;
            }
        }
    });
    const CHANNEL: &str = "botrt_events_t_announce";
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .unwrap();
    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        let fresh = format!("e{round}");
        let report = pusher
            .push_batch(vec![text_event("c1", &fresh)])
            .await
            .unwrap();
        assert_eq!(report.accepted, 1);
        // The same id again: duplicates only.
        let report = pusher
            .push_batch(vec![text_event("c1", &fresh)])
            .await
            .unwrap();
        assert_eq!(report.duplicates, 1);
    }
    // One more push of a duplicate: once it returned, what every push before it announced has
    // been committed; a mark committed after that comes behind all of it.
    pusher
        .push_batch(vec![text_event("c1", "e0")])
        .await
        .unwrap();
    client
        .execute("SELECT pg_notify($1, 'mark')", &[&CHANNEL])
        .await
        .unwrap();
    let mut before_mark = 0;
    loop {
        let payload = tokio::time::timeout(DEADLINE, notifications.recv())
            .await
            .expect("the mark arrives")
            .unwrap();
        if payload == "mark" {
            break;
        }
        before_mark += 1;
    }
    assert_eq!(
        before_mark, ROUNDS,
        "one notification per push that inserted, none for the duplicates"
    );
    pusher.shutdown().await;
    drop(client);
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_stay_fast_when_a_table_that_started_empty_fills_up() {
    let pool = fresh_pool("grow").await;
    let conn = pool.get().await.unwrap();
    // An empty queue, analysed as such (autovacuum does that once a burst has drained), and
    // claims on it, on one session: enough for PostgreSQL to cache a plan for an empty table.
    conn.batch_execute("ANALYZE botrt_events").await.unwrap();
    for _ in 0..10 {
        let rows = conn
            .query("SELECT * FROM botrt_claim(100, 30000, 1, true)", &[])
            .await
            .unwrap();
        assert!(rows.is_empty());
    }
    conn.execute(
        "INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
         SELECT g % 2000, 'test', 'e' || g, 'c' || (g % 2000), '{}'
         FROM generate_series(1, 20000) g",
        &[],
    )
    .await
    .unwrap();
    // Such a plan compares every row with every other one: minutes. Planned afresh, it probes
    // the indexes: milliseconds.
    let started = tokio::time::Instant::now();
    let rows = conn
        .query("SELECT * FROM botrt_claim(1000, 30000, 2, true)", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1000);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "claim took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_process_dies_on_every_attempt_is_dead_lettered() {
    let pool = fresh_pool("poison").await;
    let queue = queue_builder(&pool)
        .lease_duration(Duration::from_millis(200))
        .max_attempts(2)
        .build()
        .unwrap();
    queue
        .push_batch(vec![text_event("c1", "poison"), text_event("c1", "next")])
        .await
        .unwrap();
    // Two attempts whose "process" never completes them.
    let first = pull_n(&queue, 1).await.remove(0);
    assert_eq!((first.event.id.as_str(), first.attempt), ("poison", 1));
    let second = pull_n(&queue, 1).await.remove(0);
    assert_eq!((second.event.id.as_str(), second.attempt), ("poison", 2));
    // The second expiry dead-letters it, and its conversation moves on.
    let next = pull_n(&queue, 1).await.remove(0);
    assert_eq!(next.event.id.as_str(), "next");
    let letters = queue.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 2);
    assert!(
        letters[0].error.contains("lease expired"),
        "{}",
        letters[0].error
    );
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_events_run_in_order_per_conversation_and_skip_dedup() {
    let pool = fresh_pool("import").await;
    let events: Vec<_> = (0..3)
        .flat_map(|seq| {
            (0..4).map(move |conv| text_event(&format!("c{conv}"), &format!("c{conv}-{seq}")))
        })
        .collect();
    let loaded = bot_core::pg::import(&pool, events).await.unwrap();
    assert_eq!(loaded, 12);
    let queue = queue_builder(&pool).prefetch(0).build().unwrap();
    // The heads first, one per conversation, then the next of each once acknowledged.
    for seq in 0..3 {
        let got = pull_n(&queue, 4).await;
        let mut got_ids = ids(&got);
        got_ids.sort();
        assert_eq!(
            got_ids,
            (0..4).map(|c| format!("c{c}-{seq}")).collect::<Vec<_>>()
        );
        let leases: Vec<Lease> = got.iter().map(|d| d.lease).collect();
        assert_eq!(queue.ack(&leases).await.unwrap().applied, 4);
    }
    assert!(
        pull_within(&queue, 10, Duration::from_millis(200))
            .await
            .is_empty()
    );
    // Imported ids were not recorded for deduplication: a push of one is accepted.
    let report = queue
        .push_batch(vec![text_event("c0", "c0-0")])
        .await
        .unwrap();
    assert_eq!(report.accepted, 1);
    queue.shutdown().await;
}

/// Each event leaves a dead row in `botrt_leases`; autovacuum comes by once a minute at most,
/// long enough for a busy queue to bloat the table every claim reads. The queue vacuums it
/// itself after every 10,000 acknowledgements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_vacuums_its_leases_as_it_acknowledges() {
    let pool = fresh_pool("leases_vacuum").await;
    let queue = queue_builder(&pool).build().unwrap();
    let vacuums = || async {
        let conn = pool.get().await.unwrap();
        let row = conn
            .query_one(
                "SELECT vacuum_count FROM pg_stat_user_tables
                 WHERE schemaname = $1 AND relname = 'botrt_leases'",
                &[&pool.schema()],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };
    assert_eq!(vacuums().await, 0);
    for batch in 0..10 {
        let events = (0..1000)
            .map(|i| text_event(&format!("c{i}"), &format!("e{batch}-{i}")))
            .collect();
        queue.push_batch(events).await.unwrap();
        let got = pull_n(&queue, 1000).await;
        let leases: Vec<Lease> = got.iter().map(|d| d.lease).collect();
        queue.ack(&leases).await.unwrap();
    }
    eventually("a vacuum of the leases", DEADLINE, || async {
        (vacuums().await > 0).then_some(())
    })
    .await;
    queue.shutdown().await;
}

/// An ordered queue's claims between full ones start at the front (the smallest id) it read at
/// the last full claim. An event whose insert took its id before that and committed after it
/// (a slow push, an import) lies under that front: it must still be claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_claim_from_the_front_still_takes_an_event_committed_under_it() {
    let pool = fresh_pool("front").await;
    let queue = queue_builder(&pool).prefetch(0).build().unwrap();
    let late = text_event("late", "late");
    let mut holder = pool.get().await.unwrap();
    let held = holder.transaction().await.unwrap();
    let late_id = insert_raw(&*held, &late).await;
    queue
        .push_batch(
            (0..30)
                .map(|i| text_event(&format!("c{}", i % 3), &format!("e{i}")))
                .collect(),
        )
        .await
        .unwrap();
    // The full claim reads the front above the held id; the claims after it are bounded.
    let first = pull_n(&queue, 3).await;
    assert_eq!(ids(&first), ["e0", "e1", "e2"]);
    held.commit().await.unwrap();
    let mut done: Vec<Lease> = first.iter().map(|d| d.lease).collect();
    let mut seen = Vec::new();
    // The other 27 events and the late one, a conversation's head at a time.
    while seen.len() < 28 {
        queue.ack(&done).await.unwrap();
        let got = pull_n(&queue, 3.min(28 - seen.len())).await;
        done = got.iter().map(|d| d.lease).collect();
        seen.extend(got);
    }
    let late_got = seen
        .iter()
        .find(|d| d.event.id.as_str() == "late")
        .expect("the event committed under the front was claimed");
    assert_eq!(late_got.lease.id, late_id as u64);
    // Every conversation still ran in order.
    assert_each_in_order(&seen, &["c0", "c1", "c2"]);
    queue.shutdown().await;
}

/// An ordered queue's full claims and front reads start at a floor that two front reads prove
/// (migration 12): nothing the queue holds or will hold lies under it. A push that locked its
/// conversation and took its event's id, and whose transaction stays open while the queue hands
/// out round after round of later events, across several full claims and their front reads, must
/// keep the floor under its id: once it commits, its event is claimed. (With the floor raised
/// by any two reads, the full claims after them start above the held id and never take it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_open_across_front_reads_keeps_the_floor_under_its_event() {
    let pool = fresh_pool("floor_open_push").await;
    let queue = queue_builder(&pool).prefetch(0).build().unwrap();
    let late = text_event("late", "late");
    let mut holder = pool.get().await.unwrap();
    let held = holder.transaction().await.unwrap();
    // As a push: the conversation's lock row first, then the event.
    lock_lane(&*held, &late).await;
    let late_id = insert_raw(&*held, &late).await;
    // At least two full claims with their front reads while the push is open.
    rounds_for_a_floor(&queue).await;
    held.commit().await.unwrap();
    let got = pull_n(&queue, 1).await;
    assert_eq!(ids(&got), ["late"]);
    assert_eq!(got[0].lease.id, late_id as u64);
    queue.shutdown().await;
}

/// Rounds of three conversations' events, each drained and acknowledged, for 2.5 s: a full claim
/// with its front read runs at least once a second while claims go on (`FULL_CLAIM_EVERY`), so at
/// least two run, enough for the floor of migration 12 to rise (unless a transaction elsewhere
/// holds it back).
async fn rounds_for_a_floor(queue: &dyn Queue) {
    let started = tokio::time::Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_millis(2_500) {
        queue
            .push_batch(
                (0..3)
                    .map(|c| text_event(&format!("c{c}"), &format!("r{round}-{c}")))
                    .collect(),
            )
            .await
            .unwrap();
        let got = pull_n(queue, 3).await;
        let leases: Vec<Lease> = got.iter().map(|d| d.lease).collect();
        queue.ack(&leases).await.unwrap();
        round += 1;
    }
}

/// Ids can go backwards under a claimer's floor (a failover to a standby that lagged, a restore, a
/// sequence restarted by hand). A front read that then finds the queue empty from the floor up
/// and the sequence's next id under it drops the floor: events pushed after the rewind are
/// claimed within a claim or two, not only by the read from 0 that comes every 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_rewound_under_the_floor_drop_it_at_the_next_front_read() {
    let pool = fresh_pool("floor_rewound").await;
    let queue = queue_builder(&pool).prefetch(0).build().unwrap();
    rounds_for_a_floor(&queue).await;
    pool.get()
        .await
        .unwrap()
        .batch_execute("SELECT setval(pg_get_serial_sequence('botrt_events', 'id'), 1, false)")
        .await
        .unwrap();
    queue
        .push_batch(
            (0..3)
                .map(|c| text_event(&format!("n{c}"), &format!("new{c}")))
                .collect(),
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), pull_n(&queue, 3))
        .await
        .expect("the events under the floor are claimed within 5 s");
    let mut leases: Vec<u64> = got.iter().map(|d| d.lease.id).collect();
    leases.sort_unstable();
    assert_eq!(leases, [1, 2, 3]);
    queue.shutdown().await;
}

/// A rewind whose new ids pass the floor before the next front read leaves events under it that
/// no read from the floor sees; the full claim from 0 that comes every 10 s (`FLOOR_CHECK_EVERY`)
/// claims them and drops the floor. The events are three conversations' (several each under the
/// floor): the front last read from the floor bounds their lane probes, so that full claim finds
/// several of a conversation's events each first of it, and fails on the conversation's unique
/// lease (migration 13); the claimer then drops that front as well as the floor, and its next
/// claim probes each conversation whole. (Their order is not checked: until that read from 0,
/// the events of these conversations above the floor run before those under it, as the
/// durability chapter says.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_rewound_past_the_floor_are_claimed_by_the_periodic_read_from_zero() {
    let pool = fresh_pool("floor_rewound_past").await;
    let queue = queue_builder(&pool).prefetch(0).build().unwrap();
    rounds_for_a_floor(&queue).await;
    let db = pool.get().await.unwrap();
    let next: i64 = db
        .query_one(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('botrt_events', 'id')) + 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Back to 1, and as many events as it takes to pass every id handed out so far, so some lie
    // under the floor (wherever it is) and some above it.
    db.batch_execute("SELECT setval(pg_get_serial_sequence('botrt_events', 'id'), 1, false)")
        .await
        .unwrap();
    let count = next + 9;
    let conversations = ["p0", "p1", "p2"];
    // The last, above the floor, is held (not acknowledged) once handed out, so that the front
    // reads from the floor keep finding it: their front then bounds the probes of the events
    // under the floor.
    let mut events: Vec<_> = (0..count)
        .map(|c| text_event(conversations[(c % 3) as usize], &format!("past{c}")))
        .collect();
    events.push(text_event("hold", "held"));
    queue.push_batch(events).await.unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    let mut held = Vec::new();
    while (got.len() as i64) < count + 1 && tokio::time::Instant::now() < until {
        let wait = until - tokio::time::Instant::now();
        let batch = pull_within(&queue, 1_000, wait).await;
        let (hold, done): (Vec<_>, Vec<_>) = batch
            .iter()
            .map(|d| (d.event.conversation.as_str() == "hold", d.lease))
            .partition(|(hold, _)| *hold);
        held.extend(hold.into_iter().map(|(_, lease)| lease));
        let done: Vec<Lease> = done.into_iter().map(|(_, lease)| lease).collect();
        queue.ack(&done).await.unwrap();
        got.extend(batch);
    }
    queue.ack(&held).await.unwrap();
    let mut ids: Vec<i64> = got.iter().map(|d| d.lease.id as i64).collect();
    ids.sort_unstable();
    let missing: Vec<i64> = (1..=count + 1)
        .filter(|id| ids.binary_search(id).is_err())
        .collect();
    assert!(
        missing.is_empty() && ids.len() as i64 == count + 1,
        "{} of {} never claimed (the first: {:?}), {} claimed",
        missing.len(),
        count + 1,
        missing.first(),
        ids.len()
    );
    queue.shutdown().await;
}

/// An ordered full claim sends the front's read ahead of it on the same connection, each in a
/// transaction of its own. A front read that fails (here the function raises) must not cost the
/// claim: its batch is handed out, and the claims after it, bounded by the front read before
/// (none here), keep handing out each conversation's events in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_full_claim_hands_out_its_batch_when_the_front_read_fails() {
    let pool = fresh_pool("front_fails").await;
    pool.get()
        .await
        .unwrap()
        .batch_execute(
            "CREATE OR REPLACE FUNCTION botrt_front(p_floor bigint, OUT safe bigint,
                 OUT front bigint, OUT low bigint, OUT mark bigint)
             LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the front read fails'; END $$",
        )
        .await
        .unwrap();
    let queue = queue_builder(&pool).prefetch(0).build().unwrap();
    let events = |round: usize| {
        (0..3)
            .map(|c| text_event(&format!("c{c}"), &format!("e{round}-{c}")))
            .collect::<Vec<_>>()
    };
    queue.push_batch(events(0)).await.unwrap();
    // The first claim is a full one: it reads the front, which fails.
    let first = pull_n(&queue, 3).await;
    let mut got = ids(&first);
    got.sort();
    assert_eq!(got, ["e0-0", "e0-1", "e0-2"]);
    assert!(
        first.iter().all(|d| d.attempt == 1),
        "handed out on the first claim"
    );
    let mut done: Vec<Lease> = first.iter().map(|d| d.lease).collect();
    let mut seen = first;
    for round in 1..3 {
        queue.push_batch(events(round)).await.unwrap();
        queue.ack(&done).await.unwrap();
        let got = pull_n(&queue, 3).await;
        done = got.iter().map(|d| d.lease).collect();
        seen.extend(got);
    }
    queue.ack(&done).await.unwrap();
    assert_eq!(seen.len(), 9);
    assert_each_in_order(&seen, &["c0", "c1", "c2"]);
    queue.shutdown().await;
}

/// The lane probes of the claims between full ones start at the front only for candidates
/// whose ids were taken before the front was read (migration 8): an event of a conversation
/// committed under the front, whose next event was pushed after the front was read, still
/// holds that next event back. Bounded by the front alone, the bounded claim would hand out
/// "a2" while "a1", older, waits under the front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_lane_probe_never_hands_out_an_event_before_an_older_one_under_the_front() {
    let pool = fresh_pool("front_probe").await;
    let queue = queue_builder(&pool).prefetch(0).build().unwrap();
    let older = text_event("a", "a1");
    let mut holder = pool.get().await.unwrap();
    let held = holder.transaction().await.unwrap();
    let older_id = insert_raw(&*held, &older).await;
    queue
        .push_batch(
            (0..30)
                .map(|i| text_event(&format!("c{}", i % 3), &format!("e{i}")))
                .collect(),
        )
        .await
        .unwrap();
    // The full claim reads the front above the held id; the claims after it are bounded.
    let first = pull_n(&queue, 3).await;
    assert_eq!(ids(&first), ["e0", "e1", "e2"]);
    // "a1" commits under the front, then its conversation's next event is pushed: its id was
    // taken after the front was read.
    held.commit().await.unwrap();
    queue.push_batch(vec![text_event("a", "a2")]).await.unwrap();
    let mut done: Vec<Lease> = first.iter().map(|d| d.lease).collect();
    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut seen = Vec::new();
    while seen.len() < 29 {
        queue.ack(&done).await.unwrap();
        // Room for the three conversations' heads and "a2": a bounded claim that took "a2" as
        // a head would hand it out here, before "a1". (Whatever one pull hands out: there are
        // fewer than four conversations left at the end.)
        let got = pull_within(&queue, 4, DEADLINE).await;
        assert!(
            !got.is_empty(),
            "nothing came within {DEADLINE:?}: {batches:?}"
        );
        done = got.iter().map(|d| d.lease).collect();
        batches.push(ids(&got));
        seen.extend(got);
    }
    let at = |id: &str| {
        batches
            .iter()
            .position(|b| b.iter().any(|x| x == id))
            .unwrap_or_else(|| panic!("{id} was handed out: {batches:?}"))
    };
    assert!(
        at("a1") < at("a2"),
        "a2 was handed out before (or with) a1, the older event of its conversation: {batches:?}"
    );
    assert_eq!(
        seen.iter()
            .find(|d| d.event.id.as_str() == "a1")
            .unwrap()
            .lease
            .id,
        older_id as u64
    );
    assert_each_in_order(&seen, &["a", "c0", "c1", "c2"]);
    queue.shutdown().await;
}

/// Two events of one conversation written by one transaction (a push of several, pushes written
/// together, an import) while the claimer reads the front: the front does not see them, so the
/// second must never be taken for its conversation's head while the first lies under the front.
/// (With the probe bounded for every id taken before the front was read, "a2" was claimed here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_lane_probe_keeps_the_order_of_two_events_of_one_transaction() {
    let pool = fresh_pool("front_probe_one_tx").await;
    let (a1, a2, b) = (
        text_event("a", "a1"),
        text_event("a", "a2"),
        text_event("b", "b1"),
    );
    let mut writer = pool.get().await.unwrap();
    let tx = writer.transaction().await.unwrap();
    let a1_id = insert_raw(&*tx, &a1).await;
    // Another conversation's event commits meanwhile, above "a1".
    let other = pool.get().await.unwrap();
    let b_id = insert_raw(&**other, &b).await;
    let a2_id = insert_raw(&*tx, &a2).await;
    assert!(a1_id < b_id && b_id < a2_id);
    // The claimer reads the front while the transaction runs: "b" is the smallest id it sees.
    let claimer = pool.get().await.unwrap();
    let read = claimer
        .query_one("SELECT safe, front FROM botrt_front(0)", &[])
        .await
        .unwrap();
    let (safe, front): (i64, i64) = (read.get(0), read.get(1));
    assert_eq!(front, b_id);
    tx.commit().await.unwrap();
    let claim = |token: i64, tail: bool, from: i64| {
        let claimer = &claimer;
        async move {
            claimer
                .query(
                    "SELECT id FROM botrt_claim(10, 60000, $1, true, $2, $3, $4, $5)",
                    &[&token, &tail, &from, &front, &safe],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<i64>>()
        }
    };
    // A claim from the front, as the claimer makes them until its next full claim: "b" only;
    // "a2" is not its conversation's head ("a1", under the front, is).
    assert_eq!(claim(1, true, front).await, [b_id]);
    // The next full claim takes "a1", and still not "a2".
    assert_eq!(claim(2, false, 0).await, [a1_id]);
}

/// Each of `conversations` was handed out in the order of its events' ids.
fn assert_each_in_order(seen: &[Delivery], conversations: &[&str]) {
    for conv in conversations {
        let order: Vec<u64> = seen
            .iter()
            .filter(|d| d.event.conversation.as_str() == *conv)
            .map(|d| d.lease.id)
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{conv}: {order:?}");
    }
}

/// A queue's statements run under READ COMMITTED whatever the server's, the database's or the
/// role's default: an ordered claim must take its snapshot after its function took the claim
/// slot (migration 13), which REPEATABLE READ would take at the statement's start, before the
/// slot. The front read (replaced here by one that records the isolation it runs under) stands
/// for every statement of the queue's connections. The test's database defaults to REPEATABLE
/// READ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queues_statements_run_read_committed_whatever_the_default() {
    const DATABASE: &str = "botrt_test_repeatable_read";
    let admin = fresh_pool("isolation_admin").await;
    let conn = admin.get().await.unwrap();
    let exists = conn
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])
        .await
        .unwrap()
        .is_some();
    if !exists {
        conn.batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .unwrap();
    }
    conn.batch_execute(&format!(
        "ALTER DATABASE {DATABASE} SET default_transaction_isolation = 'repeatable read'"
    ))
    .await
    .unwrap();
    // The same server and user, the other database.
    let url = database_url();
    let (base, query) = url.split_once('?').unwrap_or((&url, ""));
    let (server, _) = base.rsplit_once('/').expect("a database URL with a path");
    let url = if query.is_empty() {
        format!("{server}/{DATABASE}")
    } else {
        format!("{server}/{DATABASE}?{query}")
    };
    let pool = support::pg::fresh_pool_on(&url, "isolation", |b| b).await;
    let db = pool.get().await.unwrap();
    let level: String = db
        .query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "repeatable read", "the database's default took");
    db.batch_execute(
        "CREATE TABLE seen_isolation (level text NOT NULL);
         CREATE OR REPLACE FUNCTION botrt_front(p_floor bigint, OUT safe bigint,
             OUT front bigint, OUT low bigint, OUT mark bigint)
         LANGUAGE plpgsql AS $$ BEGIN
             INSERT INTO seen_isolation VALUES (current_setting('transaction_isolation'));
             safe := 0; front := 0; low := NULL; mark := 0;
         END $$",
    )
    .await
    .unwrap();
    let queue = queue_builder(&pool).prefetch(0).build().unwrap();
    queue.push_batch(vec![text_event("c", "e1")]).await.unwrap();
    // The first claim is a full one, which reads the front.
    let got = pull_n(&queue, 1).await;
    queue
        .ack(&got.iter().map(|d| d.lease).collect::<Vec<_>>())
        .await
        .unwrap();
    queue.shutdown().await;
    let seen: Vec<String> = db
        .query("SELECT DISTINCT level FROM seen_isolation", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, ["read committed"]);
}
