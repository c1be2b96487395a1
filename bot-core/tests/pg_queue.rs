//! `PgQueue` against a real PostgreSQL: dedup, fenced completions, retries, dead letters,
//! the rescuer, release at shutdown, and per-conversation ordering across two instances (two
//! "processes" sharing one schema), capacity and overflow, dead-letter retention, migration of
//! a version 1 schema.

mod support;

use std::time::Duration;

use bot_core::queue::{Dead, Delivery, Lease, Nack, Queue};
use bot_core::{ErrorKind, Ordering};
use support::pg::{eventually, fresh_pool, queue_builder};
use support::text_event;

const DEADLINE: Duration = Duration::from_secs(10);

/// Pulls until `n` deliveries came, failing after [`DEADLINE`].
async fn pull_n(queue: &dyn Queue, n: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = tokio::time::timeout(DEADLINE, queue.pull(n - got.len()))
            .await
            .expect("events come within the deadline")
            .expect("pull");
        assert!(!batch.is_empty(), "queue closed while pulling");
        got.extend(batch);
    }
    got
}

/// What one pull hands out within `wait` (empty when nothing comes).
async fn pull_within(queue: &dyn Queue, max: usize, wait: Duration) -> Vec<Delivery> {
    tokio::time::timeout(wait, queue.pull(max))
        .await
        .map(|r| r.expect("pull"))
        .unwrap_or_default()
}

fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.event.id.to_string()).collect()
}

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
async fn migrations_are_idempotent_and_safe_when_run_at_once() {
    let pool = fresh_pool("migrate").await;
    // Already migrated once; three more at the same time.
    let (a, b, c) = tokio::join!(
        bot_core::pg::migrate(&pool),
        bot_core::pg::migrate(&pool),
        bot_core::pg::migrate(&pool)
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    let conn = pool.get().await.unwrap();
    let n: i64 = conn
        .query_one("SELECT count(*) FROM botrt_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, bot_core::pg::MIGRATIONS.len());
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

/// Leases and dead-letters `n` events, one per conversation `{prefix}-i`, oldest first.
async fn dead_letter_n(queue: &dyn Queue, prefix: &str, n: usize) {
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        queue
            .push_batch(vec![text_event(&format!("{id}-conv"), &id)])
            .await
            .unwrap();
        let d = pull_n(queue, 1).await.remove(0);
        assert_eq!(d.event.id.as_str(), id);
        let letters = queue
            .dead(vec![Dead {
                lease: d.lease,
                error: "gave up".into(),
                event: d.event,
            }])
            .await
            .unwrap();
        assert_eq!(letters.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_pushes_with_retry_after_in_every_process_until_it_drains() {
    let pool = fresh_pool("capacity").await;
    let build = || {
        queue_builder(&pool)
            .queue_capacity(3)
            .retry_after(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let report = a
        .push_batch(vec![
            text_event("c1", "e1"),
            text_event("c2", "e2"),
            text_event("c3", "e3"),
        ])
        .await
        .unwrap();
    assert_eq!(report.accepted, 3);
    let full = a
        .push_batch(vec![text_event("c4", "e4")])
        .await
        .unwrap_err();
    assert_eq!(full.kind(), ErrorKind::QueueFull);
    assert_eq!(full.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(a.counters().refused_full, 1);
    // Another process sees the events of the first at its next count.
    b.stats().await.unwrap();
    let full = b
        .push_batch(vec![text_event("c4", "e4")])
        .await
        .unwrap_err();
    assert_eq!(full.kind(), ErrorKind::QueueFull);
    // Nothing of a refused push was kept, not even its dedup key.
    assert_eq!(a.stats().await.unwrap().ready, 3);
    let got = pull_n(&a, 3).await;
    let leases: Vec<Lease> = got.iter().map(|d| d.lease).collect();
    // Leased events still take room.
    assert_eq!(
        a.push_batch(vec![text_event("c4", "e4")])
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::QueueFull
    );
    a.ack(&leases).await.unwrap();
    // The process that completed them knows at once; the other at its next count.
    assert_eq!(
        a.push_batch(vec![text_event("c4", "e4")])
            .await
            .unwrap()
            .accepted,
        1
    );
    b.stats().await.unwrap();
    assert_eq!(
        b.push_batch(vec![text_event("c5", "e5")])
            .await
            .unwrap()
            .accepted,
        1
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_capacity_refuses_a_flood_of_large_events() {
    let pool = fresh_pool("capacity_bytes").await;
    let queue = queue_builder(&pool)
        .queue_capacity_bytes(30_000)
        .build()
        .unwrap();
    // 10,000 letters that do not compress, so that stored and sent sizes agree.
    let mut seed = 0x2545_f491_u32;
    let mut noise = || {
        (0..10_000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                char::from(b'a' + (seed >> 16) as u8 % 26)
            })
            .collect::<String>()
    };
    let mut large = |i: usize| {
        bot_core::Event::text(bot_core::Platform::TEST, format!("c{i}"), noise())
            .with_id(format!("big-{i}"))
    };
    // One batch: the queue's count at start may run beside a push and count it twice (the
    // estimate errs high on purpose), so a second push of its own could be refused already.
    queue.push_batch(vec![large(0), large(1)]).await.unwrap();
    // Counted (the count at start may have seen the push and counted it twice meanwhile).
    queue.stats().await.unwrap();
    let third = large(2);
    let full = queue.push_batch(vec![third.clone()]).await.unwrap_err();
    assert_eq!(full.kind(), ErrorKind::QueueFull);
    assert!(full.retry_after().is_some());
    let stats = queue.stats().await.unwrap();
    assert!(
        (20_000..30_000).contains(&stats.bytes),
        "two events of 10 kB counted: {stats:?}"
    );
    assert_eq!(
        queue
            .push_batch(vec![third.clone()])
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::QueueFull
    );
    let first = pull_n(&queue, 1).await.remove(0);
    queue.ack(&[first.lease]).await.unwrap();
    queue.stats().await.unwrap();
    assert_eq!(queue.push_batch(vec![third]).await.unwrap().accepted, 1);
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_keeps_what_fits_and_wait_waits_for_room() {
    let pool = fresh_pool("overflow").await;
    let dropping = queue_builder(&pool)
        .queue_capacity(3)
        .overflow(bot_core::Overflow::DropNewest)
        .build()
        .unwrap();
    let report = dropping
        .push_batch(
            (1..=5)
                .map(|i| text_event(&format!("c{i}"), &format!("e{i}")))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!((report.accepted, report.dropped_newest), (3, 2));
    assert_eq!(dropping.counters().dropped_full, 2);
    let got = pull_n(&dropping, 3).await;
    let mut got_ids = ids(&got);
    got_ids.sort();
    assert_eq!(got_ids, ["e1", "e2", "e3"]);
    dropping
        .ack(&got.iter().map(|d| d.lease).collect::<Vec<_>>())
        .await
        .unwrap();
    // A dropped event was not remembered: its redelivery is taken (after a count: the first
    // one, at start, may have counted the first push twice).
    dropping.stats().await.unwrap();
    let report = dropping
        .push_batch(vec![text_event("c4", "e4")])
        .await
        .unwrap();
    assert_eq!(report.accepted, 1);
    let e4 = pull_n(&dropping, 1).await.remove(0);
    dropping.ack(&[e4.lease]).await.unwrap();

    let waiting = std::sync::Arc::new(
        queue_builder(&pool)
            .queue_capacity(1)
            .overflow(bot_core::Overflow::Wait)
            .push_timeout(Duration::from_secs(8))
            .build()
            .unwrap(),
    );
    waiting.stats().await.unwrap();
    waiting
        .push_batch(vec![text_event("w1", "w1")])
        .await
        .unwrap();
    let q = waiting.clone();
    #[allow(clippy::disallowed_methods)] // the push that waits runs as a task of its own
    let second = tokio::spawn(async move { q.push_batch(vec![text_event("w2", "w2")]).await });
    // The second push waits for room; the first event's completion makes it.
    let first = pull_n(&*waiting, 1).await.remove(0);
    assert!(!second.is_finished(), "a push into a full queue waits");
    waiting.ack(&[first.lease]).await.unwrap();
    let report = tokio::time::timeout(DEADLINE, second)
        .await
        .expect("the waiting push ends")
        .unwrap()
        .expect("the waiting push is taken once there is room");
    assert_eq!(report.accepted, 1);
    dropping.shutdown().await;
    waiting.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_refuses_when_no_room_comes_within_the_push_timeout() {
    let pool = fresh_pool("overflow_wait").await;
    let queue = queue_builder(&pool)
        .queue_capacity(1)
        .overflow(bot_core::Overflow::Wait)
        .push_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    queue
        .push_batch(vec![text_event("c1", "e1")])
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let full = queue
        .push_batch(vec![text_event("c2", "e2")])
        .await
        .unwrap_err();
    assert_eq!(full.kind(), ErrorKind::QueueFull);
    assert!(started.elapsed() >= Duration::from_millis(300));
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_pruned_by_count_and_by_age() {
    let pool = fresh_pool("dead_prune").await;
    let queue = queue_builder(&pool)
        .dead_letter_capacity(2)
        .dead_letter_retention(Duration::from_secs(3600))
        .build()
        .unwrap();
    dead_letter_n(&queue, "d", 5).await;
    assert_eq!(queue.prune_dead_letters().await.unwrap(), 3);
    let kept: Vec<String> = queue
        .dead_letters(10)
        .await
        .unwrap()
        .iter()
        .map(|l| l.event.id.to_string())
        .collect();
    assert_eq!(kept, ["d-3", "d-4"], "the newest are kept");
    // One of them grows old.
    let conn = pool.get().await.unwrap();
    conn.execute(
        "UPDATE botrt_dead_letters SET failed_at = now() - interval '2 hours' WHERE event_id = 'd-3'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(queue.prune_dead_letters().await.unwrap(), 1);
    let kept = queue.dead_letters(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].event.id.as_str(), "d-4");
    assert_eq!(queue.counters().dead_letters_pruned, 4);
    assert_eq!(queue.dead_letters_evicted(), 4);
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_task_prunes_dead_letters_and_counts_them_in_a_metric() {
    let pool = fresh_pool("dead_prune_task").await;
    let queue = std::sync::Arc::new(
        queue_builder(&pool)
            .dead_letter_capacity(1)
            .prune_interval(Duration::from_millis(100))
            .build()
            .unwrap(),
    );
    let bot = bot_core::Bot::builder()
        .queue(queue.clone())
        .handler(|_cx: bot_core::Context, _e: bot_core::Event| async {
            Ok::<_, bot_core::Error>(())
        })
        .build()
        .unwrap();
    queue.register_metrics(bot.telemetry());
    dead_letter_n(&*queue, "m", 3).await;
    eventually("the maintenance task to prune", DEADLINE, || async {
        (queue.dead_letters(10).await.unwrap().len() == 1).then_some(())
    })
    .await;
    let text = bot.telemetry().render_prometheus();
    let line = text
        .lines()
        .find(|l| l.starts_with("bot_dead_letters_pruned_total"))
        .unwrap_or_else(|| panic!("no bot_dead_letters_pruned_total in\n{text}"));
    assert!(line.ends_with(" 2"), "{line}");
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_migrates_with_its_queued_events() {
    // A schema as version 1 left it, with events queued.
    let pool = bot_core::pg::PgPool::builder(support::pg::database_url())
        .schema("t_migrate_v1")
        .build()
        .unwrap();
    let conn = pool.get().await.unwrap();
    conn.batch_execute("DROP SCHEMA IF EXISTS t_migrate_v1 CASCADE; CREATE SCHEMA t_migrate_v1")
        .await
        .unwrap();
    let (version, name, v1) = bot_core::pg::MIGRATIONS[0];
    assert_eq!(version, 1);
    conn.batch_execute(&format!(
        "CREATE TABLE botrt_migrations (version integer PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());
         {v1}
         INSERT INTO botrt_migrations (version, name) VALUES (1, '{name}');"
    ))
    .await
    .unwrap();
    for id in ["old-1", "old-2"] {
        let payload = serde_json::to_string(&text_event("c", id)).unwrap();
        conn.execute(
            "INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
             VALUES (hashtextextended('test' || chr(31) || 'c', 0), 'test', $1, 'c', $2::text::json)",
            &[&id, &payload],
        )
        .await
        .unwrap();
    }
    drop(conn);
    bot_core::pg::migrate(&pool).await.unwrap();
    let queue = queue_builder(&pool).build().unwrap();
    queue
        .push_batch(vec![text_event("c", "new")])
        .await
        .unwrap();
    let mut handled = Vec::new();
    for _ in 0..3 {
        let d = pull_n(&queue, 1).await.remove(0);
        handled.push(d.event.id.to_string());
        queue.ack(&[d.lease]).await.unwrap();
    }
    assert_eq!(handled, ["old-1", "old-2", "new"]);
    let conn = pool.get().await.unwrap();
    let versions: Vec<i32> = conn
        .query("SELECT version FROM botrt_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2]);
    queue.shutdown().await;
}
