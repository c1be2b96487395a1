//! `PgQueue`'s bounds against a real PostgreSQL: capacity in events and bytes, each overflow
//! policy, and dead-letter retention by count and age.

mod support;

use std::time::Duration;

use bot_core::ErrorKind;
use bot_core::pg::PgQueue;
use bot_core::queue::{Dead, Lease, Queue};
use support::pg::{eventually, fresh_pool, queue_builder};
use support::queue::{DEADLINE, ids, pull_n};
use support::text_event;

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

/// Waits until `pusher`, pushing all along, has counted its figures `counts` more times: several
/// of every queue's maintenance ticks, in which any queue whose figures are needed counts them.
async fn while_the_pusher_counts(pusher: &PgQueue, counts: u64, prefix: &str) {
    let until = pusher.counters().figure_counts + counts;
    let mut i = 0;
    eventually("the pushing process's counts", DEADLINE, || {
        i += 1;
        let id = format!("{prefix}-{i}");
        async move {
            pusher.push_batch(vec![text_event(&id, &id)]).await.unwrap();
            (pusher.counters().figure_counts >= until).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_figures_are_counted_while_the_process_pushes_or_they_are_read_and_not_otherwise() {
    let pool = fresh_pool("figures_needed").await;
    let build = || {
        queue_builder(&pool)
            .figures_interval(Duration::from_millis(100))
            .build()
            .unwrap()
    };
    let (worker, pusher) = (build(), build());
    eventually("each queue's first count", DEADLINE, || async {
        (worker.counters().figure_counts >= 1 && pusher.counters().figure_counts >= 1).then_some(())
    })
    .await;
    let counted = worker.counters().figure_counts;
    // A process that neither pushes nor has its figures read: no count after its first.
    while_the_pusher_counts(&pusher, 2, "a").await;
    assert_eq!(
        worker.counters().figure_counts,
        counted,
        "a process that only consumes, unwatched, does not count"
    );
    // Its own push: the capacity check needs the other processes' pushes, counted once...
    worker
        .push_batch(vec![text_event("own", "own")])
        .await
        .unwrap();
    eventually("a count after the process's push", DEADLINE, || async {
        (worker.counters().figure_counts > counted).then_some(())
    })
    .await;
    // ...and not again while it does not push.
    let counted = worker.counters().figure_counts;
    while_the_pusher_counts(&pusher, 2, "b").await;
    assert_eq!(worker.counters().figure_counts, counted);
    // A read (the gauges, `depth`) gets the figures as last counted and calls for a count,
    // which the next reads see.
    let queued = pusher.counters().pushed + 1;
    assert!(
        worker.depth() < queued,
        "the pusher's latest events are not in the last count yet"
    );
    eventually("a count after a read", DEADLINE, || async {
        (worker.depth() == queued).then_some(())
    })
    .await;
    // One read, one count: the call is answered, not kept.
    let counted = worker.counters().figure_counts;
    assert!(counted > 1);
    while_the_pusher_counts(&pusher, 2, "c").await;
    assert!(
        worker.counters().figure_counts <= counted + 1,
        "the last read called for one count, no more"
    );
    let counted = worker.counters().figure_counts;
    while_the_pusher_counts(&pusher, 2, "d").await;
    assert_eq!(worker.counters().figure_counts, counted);
    // A shutdown's report counts at once.
    let queued = pusher.counters().pushed + 1;
    assert!(worker.depth() < queued);
    assert_eq!(worker.depth_now().await, queued);
    worker.shutdown().await;
    pusher.shutdown().await;
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
    // The task counts what it pruned after its DELETE commits: the metric may trail the rows.
    let pruned = || {
        let text = bot.telemetry().render_prometheus();
        text.lines()
            .find(|l| l.starts_with("bot_dead_letters_pruned_total"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no bot_dead_letters_pruned_total in\n{text}"))
    };
    eventually("the metric to count both pruned", DEADLINE, || async {
        pruned().ends_with(" 2").then_some(())
    })
    .await;
    assert_eq!(queue.dead_letters(10).await.unwrap().len(), 1);
    queue.shutdown().await;
}

/// Above 50,000 ids from the front to the largest, the figures are estimated from ids drawn
/// from that span (migration 8) instead of a scan of the table; the estimate counts the live
/// events, not the span: half of 120,000 events deleted (as acknowledgements out of order
/// would), it finds about 60,000, within 4.5 standard errors of the draw. The capacity check
/// uses that estimate: a capacity below it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_queue_is_estimated_from_drawn_ids_not_scanned() {
    let pool = fresh_pool("figures_estimate").await;
    let queue = queue_builder(&pool).queue_capacity(40_000).build().unwrap();
    let n = 120_000usize;
    let loaded = bot_core::pg::import(
        &pool,
        (0..n).map(|i| text_event(&format!("c{}", i % 1_000), &format!("e{i}"))),
    )
    .await
    .unwrap();
    assert_eq!(loaded, n as u64);
    let conn = pool.get().await.unwrap();
    // Every other event gone: the span stays 120,000 ids, the live events are 60,000.
    conn.execute("DELETE FROM botrt_events WHERE id % 2 = 0", &[])
        .await
        .unwrap();
    let stats = queue.stats().await.unwrap();
    assert!(stats.estimated, "{stats:?}");
    let events = stats.ready + stats.retrying + stats.leased;
    // Standard error: 0.5 / sqrt(2,000) of 120,000 = 1,342.
    assert!(
        (54_000..=66_000).contains(&events),
        "60,000 live events estimated as {events}: {stats:?}"
    );
    assert_eq!((stats.retrying, stats.leased), (0, 0));
    assert!(stats.bytes > 0, "{stats:?}");
    let full = queue
        .push_batch(vec![text_event("c0", "one-more")])
        .await
        .unwrap_err();
    assert_eq!(full.kind(), ErrorKind::QueueFull);
    // Down to a span of 50,000 ids or less, the figures are counted again.
    conn.execute(
        "DELETE FROM botrt_events WHERE id < (SELECT max(id) - 40000 FROM botrt_events)",
        &[],
    )
    .await
    .unwrap();
    let left: i64 = conn
        .query_one("SELECT count(*) FROM botrt_events", &[])
        .await
        .unwrap()
        .get(0);
    let stats = queue.stats().await.unwrap();
    assert!(!stats.estimated, "{stats:?}");
    assert_eq!(stats.ready, left as u64, "{stats:?}");
    queue.shutdown().await;
}

/// A front held far back by one old event (a long handler's, a retry's) with nothing live
/// between it and the newest events: the figures count the front and the newest ids, so a
/// queue of eleven events reads eleven, not a multiple of the span's draws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_held_back_by_one_old_event_is_counted_not_estimated_from_the_gap() {
    let pool = fresh_pool("figures_pinned").await;
    let queue = queue_builder(&pool).build().unwrap();
    let n = 60_000usize;
    bot_core::pg::import(
        &pool,
        (0..n).map(|i| text_event(&format!("c{}", i % 1_000), &format!("e{i}"))),
    )
    .await
    .unwrap();
    let conn = pool.get().await.unwrap();
    // The oldest and the newest ten stay: 60,000 ids from the front to the largest.
    conn.execute(
        "DELETE FROM botrt_events
         WHERE id > (SELECT min(id) FROM botrt_events)
           AND id <= (SELECT max(id) - 10 FROM botrt_events)",
        &[],
    )
    .await
    .unwrap();
    let stats = queue.stats().await.unwrap();
    assert!(stats.estimated, "{stats:?}");
    assert_eq!(
        (stats.ready, stats.retrying, stats.leased),
        (11, 0, 0),
        "{stats:?}"
    );
    assert!(stats.bytes > 0, "{stats:?}");
    queue.shutdown().await;
}
