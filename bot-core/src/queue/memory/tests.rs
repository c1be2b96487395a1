use std::time::Duration;

use tokio::time::Instant;

use super::lanes::FULL_RETRY_AFTER;
use super::*;
use crate::error::ErrorKind;
use crate::event::Platform;
use crate::event::{Event, EventData};
use crate::limits::{Limits, Ordering, Overflow};
use crate::queue::{Dead, DeadLetter, Delivery, Nack, Queue};

fn limits(capacity: usize, overflow: Overflow, ordering: Ordering) -> Limits {
    Limits {
        queue_capacity: capacity,
        overflow,
        ordering,
        ..Limits::default()
    }
}

fn ev(conv: &str, id: &str) -> Event {
    Event::text(Platform::TEST, conv, id).with_id(id)
}

fn ids(d: &[Delivery]) -> Vec<String> {
    d.iter().map(|d| d.event.id.to_string()).collect()
}

#[tokio::test]
async fn ordered_lanes_hand_out_one_event_per_conversation() {
    let q = MemoryQueue::new(&limits(100, Overflow::Reject, Ordering::PerConversation));
    q.push_batch(vec![ev("a", "a1"), ev("a", "a2"), ev("b", "b1")])
        .await
        .unwrap();
    let first = q.pull(10).await.unwrap();
    assert_eq!(ids(&first), ["a1", "b1"]);
    // a2 waits for a1
    q.ack(&[first[1].lease]).await.unwrap();
    assert_eq!(q.depth(), 1);
    q.ack(&[first[0].lease]).await.unwrap();
    let second = q.pull(10).await.unwrap();
    assert_eq!(ids(&second), ["a2"]);
    q.ack(&[second[0].lease]).await.unwrap();
    assert_eq!(q.lanes(), 0, "idle lanes are evicted");
    assert_eq!(q.leased(), 0);
}

#[tokio::test]
async fn unordered_hands_out_a_conversation_in_parallel() {
    let q = MemoryQueue::new(&limits(100, Overflow::Reject, Ordering::Unordered));
    q.push_batch(vec![ev("a", "a1"), ev("a", "a2"), ev("a", "a3")])
        .await
        .unwrap();
    assert_eq!(ids(&q.pull(10).await.unwrap()), ["a1", "a2", "a3"]);
}

#[tokio::test(start_paused = true)]
async fn reject_refuses_the_whole_batch() {
    let q = MemoryQueue::new(&limits(3, Overflow::Reject, Ordering::PerConversation));
    q.push_batch(vec![ev("a", "1"), ev("a", "2")])
        .await
        .unwrap();
    let e = q
        .push_batch(vec![ev("b", "3"), ev("b", "4")])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    assert_eq!(e.retry_after(), Some(FULL_RETRY_AFTER));
    assert_eq!(q.depth(), 2, "nothing of the refused batch was added");
    // The refused events were not remembered: the platform's redelivery is accepted.
    let r = q.push_batch(vec![ev("b", "3")]).await.unwrap();
    assert_eq!(r.accepted, 1);
}

#[tokio::test]
async fn drop_newest_and_drop_oldest_drop_the_expected_events() {
    let q = MemoryQueue::new(&limits(2, Overflow::DropNewest, Ordering::Unordered));
    let r = q
        .push_batch(vec![ev("a", "1"), ev("b", "2"), ev("c", "3"), ev("d", "4")])
        .await
        .unwrap();
    assert_eq!((r.accepted, r.dropped_newest), (2, 2));
    assert_eq!(ids(&q.pull(10).await.unwrap()), ["1", "2"]);

    let q = MemoryQueue::new(&limits(2, Overflow::DropOldest, Ordering::PerConversation));
    let r = q
        .push_batch(vec![ev("a", "1"), ev("a", "2"), ev("b", "3"), ev("c", "4")])
        .await
        .unwrap();
    assert_eq!((r.accepted, r.evicted_oldest), (4, 2));
    let mut got = ids(&q.pull(10).await.unwrap());
    got.sort();
    assert_eq!(got, ["3", "4"]);
    assert_eq!(q.lanes(), 2, "the emptied lane of a was evicted");
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_never_evicts_an_event_waiting_for_its_retry() {
    let q = MemoryQueue::new(&limits(2, Overflow::DropOldest, Ordering::PerConversation));
    q.push_batch(vec![ev("a", "a1")]).await.unwrap();
    let d = q.pull(1).await.unwrap();
    q.nack(vec![Nack {
        lease: d[0].lease,
        delay: Duration::from_secs(5),
        error: "down".into(),
        event: d[0].event.clone(),
    }])
    .await
    .unwrap();
    // a1 waits for its retry; b1 fills the buffer; c1 must evict b1, not a1.
    let r = q
        .push_batch(vec![ev("b", "b1"), ev("c", "c1")])
        .await
        .unwrap();
    assert_eq!((r.accepted, r.evicted_oldest), (2, 1));
    assert_eq!(q.depth(), 2);
    assert_eq!(ids(&q.pull(10).await.unwrap()), ["c1"]);
    // The retry comes once its delay is over.
    assert_eq!(ids(&q.pull(10).await.unwrap()), ["a1"]);
}

#[tokio::test]
async fn duplicates_are_skipped_and_counted() {
    let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
    let r = q
        .push_batch(vec![ev("a", "1"), ev("a", "1")])
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (1, 1));
    let r = q.push_batch(vec![ev("a", "1")]).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn nack_delays_the_event_and_blocks_its_conversation() {
    let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
    q.push_batch(vec![ev("a", "1"), ev("a", "2"), ev("b", "3")])
        .await
        .unwrap();
    let d = q.pull(10).await.unwrap();
    assert_eq!(ids(&d), ["1", "3"]);
    q.ack(&[d[1].lease]).await.unwrap();
    q.nack(vec![Nack {
        lease: d[0].lease,
        delay: Duration::from_secs(5),
        error: "boom".into(),
        event: d[0].event.clone(),
    }])
    .await
    .unwrap();
    let start = Instant::now();
    let again = q.pull(10).await.unwrap();
    assert_eq!(ids(&again), ["1"], "the retry comes before a2");
    assert_eq!(again[0].attempt, 2);
    assert!(start.elapsed() >= Duration::from_secs(5));
    // Stale completion of the first lease is ignored and counted.
    let c = q.ack(&[d[0].lease]).await.unwrap();
    assert_eq!(c.stale, 1);
    assert_eq!(q.stale_completions(), 1);
}

#[tokio::test]
async fn dead_letters_are_bounded_and_redrivable() {
    let l = Limits {
        dead_letter_capacity: 1,
        ..limits(10, Overflow::Reject, Ordering::PerConversation)
    };
    let q = MemoryQueue::new(&l);
    q.push_batch(vec![ev("a", "1"), ev("b", "2")])
        .await
        .unwrap();
    let d = q.pull(10).await.unwrap();
    q.dead(
        d.iter()
            .map(|d| Dead {
                lease: d.lease,
                error: "x".into(),
                event: d.event.clone(),
            })
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(q.dead_letters(10).await.unwrap().len(), 1);
    assert_eq!(q.dead_letters_evicted(), 1);
    assert_eq!(q.redrive(10).await.unwrap(), 1);
    assert_eq!(q.pull(10).await.unwrap()[0].attempt, 1);
}

/// A redriven event goes back into its conversation's lane (its key made as a push makes it):
/// behind the event of that conversation already waiting, handed out after it, not beside it.
#[tokio::test]
async fn a_redriven_event_waits_in_its_conversations_lane() {
    let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
    q.push_batch(vec![ev("a", "1")]).await.unwrap();
    let first = q.pull(10).await.unwrap().remove(0);
    q.dead(vec![Dead {
        lease: first.lease,
        error: "x".into(),
        event: first.event.clone(),
    }])
    .await
    .unwrap();
    q.push_batch(vec![ev("a", "2")]).await.unwrap();
    assert_eq!(q.redrive(10).await.unwrap(), 1);
    let one = q.pull(10).await.unwrap();
    assert_eq!(one.len(), 1, "one event of the conversation at a time");
    assert_eq!(one[0].event.id.as_str(), "2");
    q.ack(&[one[0].lease]).await.unwrap();
    let next = q.pull(10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event.id.as_str(), "1");
    assert_eq!(q.lanes(), 1);
}

#[tokio::test(start_paused = true)]
async fn wait_blocks_the_producer_until_room() {
    let q = std::sync::Arc::new(MemoryQueue::new(&limits(
        1,
        Overflow::Wait,
        Ordering::Unordered,
    )));
    q.push_batch(vec![ev("a", "1")]).await.unwrap();
    let q2 = q.clone();
    let mut producer =
        tokio::spawn(async move { q2.push_batch(vec![ev("a", "2")]).await.unwrap() });
    // The producer cannot finish while the buffer is full.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut producer)
            .await
            .is_err()
    );
    let d = q.pull(1).await.unwrap();
    assert_eq!(ids(&d), ["1"]);
    let r = producer.await.unwrap();
    assert_eq!(r.accepted, 1);
    assert_eq!(ids(&q.pull(1).await.unwrap()), ["2"]);
}

/// A queue of `capacity` events under [`Overflow::Reject`] whose pushes wait up to `wait`.
fn reject_waiting(capacity: usize, wait: Duration) -> std::sync::Arc<MemoryQueue> {
    std::sync::Arc::new(MemoryQueue::new(&Limits {
        reject_wait: wait,
        ..limits(capacity, Overflow::Reject, Ordering::PerConversation)
    }))
}

#[tokio::test(start_paused = true)]
async fn reject_takes_a_batch_when_room_frees_up_within_the_wait() {
    let wait = Duration::from_millis(300);
    let q = reject_waiting(2, wait);
    q.push_batch(vec![ev("a", "1"), ev("b", "2")])
        .await
        .unwrap();
    let start = Instant::now();
    let q2 = q.clone();
    let mut producer = tokio::spawn(async move {
        let r = q2.push_batch(vec![ev("c", "3"), ev("d", "4")]).await;
        (r, Instant::now())
    });
    // The producer waits while the buffer is full, well inside its wait...
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut producer)
            .await
            .is_err()
    );
    assert_eq!(q.depth(), 2, "nothing of the waiting batch is in yet");
    // ...and a pull that frees room lets it in at once.
    assert_eq!(ids(&q.pull(2).await.unwrap()), ["1", "2"]);
    let (r, at) = producer.await.unwrap();
    assert_eq!(r.unwrap().accepted, 2);
    assert_eq!(
        at - start,
        Duration::from_millis(200),
        "in when room came, not at the deadline"
    );
    assert_eq!(ids(&q.pull(2).await.unwrap()), ["3", "4"]);
}

#[tokio::test(start_paused = true)]
async fn one_pull_that_frees_room_for_several_waiting_pushes_lets_each_in_in_turn() {
    let wait = Duration::from_millis(300);
    let q = reject_waiting(3, wait);
    q.push_batch(vec![ev("a", "1"), ev("b", "2"), ev("c", "3")])
        .await
        .unwrap();
    let start = Instant::now();
    let mut producers = Vec::new();
    for (conv, id) in [("d", "4"), ("e", "5"), ("f", "6")] {
        let q = q.clone();
        producers.push(tokio::spawn(async move {
            let r = q.push_batch(vec![ev(conv, id)]).await;
            (r, Instant::now())
        }));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        q.space_waiters.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "all three wait"
    );
    // One pull frees room for all three: a pull wakes one push, and each push let in wakes
    // the next, so none waits for its deadline.
    assert_eq!(ids(&q.pull(3).await.unwrap()), ["1", "2", "3"]);
    for producer in producers {
        let (r, at) = producer.await.unwrap();
        assert_eq!(r.unwrap().accepted, 1);
        assert!(at - start < wait, "in when room came, not at the deadline");
    }
    let mut rest = ids(&q.pull(3).await.unwrap());
    rest.sort();
    assert_eq!(rest, ["4", "5", "6"]);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_push_that_does_not_fit_passes_the_wake_up_to_one_that_does() {
    let wait = Duration::from_millis(300);
    let q = reject_waiting(3, wait);
    q.push_batch(vec![ev("a", "1"), ev("b", "2"), ev("c", "3")])
        .await
        .unwrap();
    let start = Instant::now();
    // The first in line needs two places, the second one.
    let big = tokio::spawn({
        let q = q.clone();
        async move { q.push_batch(vec![ev("d", "4"), ev("e", "5")]).await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    let small = tokio::spawn({
        let q = q.clone();
        async move {
            let r = q.push_batch(vec![ev("f", "6")]).await;
            (r, Instant::now())
        }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    // One place freed: the big batch is woken first, does not fit, and wakes the small one.
    assert_eq!(ids(&q.pull(1).await.unwrap()), ["1"]);
    let (r, at) = small.await.unwrap();
    assert_eq!(r.unwrap().accepted, 1);
    assert!(at - start < wait, "in when room came, not at the deadline");
    // The big one still waits, and is refused at its deadline (no more room came).
    let e = big.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    assert_eq!(
        q.space_waiters.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn reject_refuses_after_the_wait_when_no_room_comes() {
    let wait = Duration::from_millis(300);
    let q = reject_waiting(2, wait);
    q.push_batch(vec![ev("a", "1"), ev("b", "2")])
        .await
        .unwrap();
    let start = Instant::now();
    let e = q
        .push_batch(vec![ev("c", "3"), ev("d", "4")])
        .await
        .unwrap_err();
    assert_eq!(
        Instant::now() - start,
        wait,
        "refused when the wait is over"
    );
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    assert_eq!(e.retry_after(), Some(FULL_RETRY_AFTER));
    assert_eq!(q.depth(), 2, "nothing of the refused batch was added");
    // Room that frees up for too small a part of the batch does not let it in either.
    let q2 = q.clone();
    let producer = tokio::spawn(async move {
        let start = Instant::now();
        let r = q2.push_batch(vec![ev("c", "3"), ev("d", "4")]).await;
        (r, Instant::now() - start)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ids(&q.pull(1).await.unwrap()), ["1"]);
    let (r, waited) = producer.await.unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::QueueFull);
    assert_eq!(waited, wait);
    assert_eq!(q.depth(), 1);
    assert_eq!(
        q.space_waiters.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn reject_with_no_wait_refuses_at_once_and_a_dropped_push_stops_waiting() {
    let q = reject_waiting(1, Duration::ZERO);
    q.push_batch(vec![ev("a", "1")]).await.unwrap();
    let start = Instant::now();
    let e = q.push_batch(vec![ev("b", "2")]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    assert_eq!(Instant::now(), start);

    // A push abandoned while it waits (its client went away) adds nothing and is no longer
    // counted as waiting.
    let q = reject_waiting(1, Duration::from_secs(1));
    q.push_batch(vec![ev("a", "1")]).await.unwrap();
    let abandoned =
        tokio::time::timeout(Duration::from_millis(10), q.push_batch(vec![ev("b", "2")])).await;
    assert!(abandoned.is_err());
    assert_eq!(
        q.space_waiters.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        q.space_waiting_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "its bytes no longer count against the share"
    );
    assert_eq!(ids(&q.pull(10).await.unwrap()), ["1"]);
    assert_eq!(q.depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_reject_push_waiting_for_room_is_refused_as_closed_when_the_queue_closes() {
    use crate::queue::Queue as _;
    let q = reject_waiting(1, Duration::from_secs(5));
    q.push_batch(vec![ev("a", "1")]).await.unwrap();
    let waiting = tokio::spawn({
        let q = q.clone();
        async move { q.push_batch(vec![ev("b", "2")]).await }
    });
    while q.space_waiters.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        tokio::task::yield_now().await;
    }
    let start = Instant::now();
    q.close();
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueClosed);
    assert_eq!(
        Instant::now(),
        start,
        "woken by the close, not by its deadline"
    );
    assert_eq!(
        q.space_waiters.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        q.space_waiting_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn release_returns_events_without_counting_an_attempt() {
    let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
    q.push_batch(vec![ev("a", "1")]).await.unwrap();
    let d = q.pull(1).await.unwrap();
    q.release(d).await.unwrap();
    let d = q.pull(1).await.unwrap();
    assert_eq!(d[0].attempt, 1);
    assert_eq!(q.lanes(), 1);
}

/// An event whose text is `len` bytes long.
fn sized(conv: &str, id: &str, len: usize) -> Event {
    Event::text(Platform::TEST, conv, "x".repeat(len)).with_id(id)
}

fn bytes_limits(bytes: usize, overflow: Overflow, ordering: Ordering) -> Limits {
    Limits {
        queue_capacity_bytes: bytes,
        ..limits(1000, overflow, ordering)
    }
}

#[tokio::test(start_paused = true)]
async fn reject_refuses_by_bytes_although_the_count_allows() {
    let one = crate::queue::event_bytes(&sized("a", "1", 5000));
    // Room for two such events by bytes, for a thousand by count.
    let q = MemoryQueue::new(&bytes_limits(
        2 * one + one / 2,
        Overflow::Reject,
        Ordering::PerConversation,
    ));
    q.push_batch(vec![sized("a", "1", 5000), sized("b", "2", 5000)])
        .await
        .unwrap();
    assert_eq!(q.waiting_bytes(), 2 * one);
    let e = q.push_batch(vec![sized("c", "3", 5000)]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    assert_eq!(e.retry_after(), Some(FULL_RETRY_AFTER));
    assert_eq!(q.depth(), 2, "nothing of the refused batch was added");
    // A small event still fits in what is left.
    let small = sized("c", "4", 10);
    assert!(crate::queue::event_bytes(&small) < one / 2);
    assert_eq!(q.push_batch(vec![small]).await.unwrap().accepted, 1);
    // Pulling frees the bytes.
    let d = q.pull(10).await.unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(q.waiting_bytes(), 0);
    q.release(d).await.unwrap();
    assert_eq!(
        q.waiting_bytes(),
        2 * one + crate::queue::event_bytes(&sized("c", "4", 10))
    );
}

#[tokio::test]
async fn drop_oldest_evicts_by_bytes_and_counts_each_eviction() {
    let small = crate::queue::event_bytes(&sized("a", "1", 100));
    let q = MemoryQueue::new(&bytes_limits(
        3 * small,
        Overflow::DropOldest,
        Ordering::Unordered,
    ));
    let r = q
        .push_batch(vec![
            sized("a", "1", 100),
            sized("b", "2", 100),
            sized("c", "3", 100),
        ])
        .await
        .unwrap();
    assert_eq!((r.accepted, r.evicted_oldest), (3, 0));
    // An event of twice the size needs two of the oldest to go.
    let big = sized("d", "4", 100 + small);
    assert!(crate::queue::event_bytes(&big) <= 2 * small);
    let r = q.push_batch(vec![big]).await.unwrap();
    assert_eq!((r.accepted, r.evicted_oldest), (1, 2));
    assert_eq!(ids(&q.pull(10).await.unwrap()), ["3", "4"]);
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_never_loses_the_new_event_after_evicting_for_it() {
    let small = crate::queue::event_bytes(&sized("a", "r1", 100));
    let q = MemoryQueue::new(&bytes_limits(
        3 * small,
        Overflow::DropOldest,
        Ordering::Unordered,
    ));
    // Two events wait for their retries (never evicted), one first attempt waits.
    q.push_batch(vec![sized("a", "r1", 100), sized("b", "r2", 100)])
        .await
        .unwrap();
    let d = q.pull(2).await.unwrap();
    let nacks = d
        .iter()
        .map(|d| Nack {
            lease: d.lease,
            delay: Duration::from_secs(5),
            error: "down".into(),
            event: d.event.clone(),
        })
        .collect();
    q.nack(nacks).await.unwrap();
    q.push_batch(vec![sized("c", "f1", 100)]).await.unwrap();
    // A new event twice as large: evicting f1 is not enough room, but f1 is gone for it, so
    // it goes in rather than being lost as well.
    let big = sized("d", "big", 100 + small);
    let r = q.push_batch(vec![big]).await.unwrap();
    assert_eq!((r.accepted, r.evicted_oldest, r.dropped_newest), (1, 1, 0));
    assert_eq!(ids(&q.pull(10).await.unwrap()), ["big"]);
}

#[tokio::test]
async fn drop_newest_drops_by_bytes_but_an_empty_queue_takes_an_oversized_event() {
    let small = crate::queue::event_bytes(&sized("a", "1", 100));
    let q = MemoryQueue::new(&bytes_limits(
        2 * small,
        Overflow::DropNewest,
        Ordering::PerConversation,
    ));
    let r = q
        .push_batch(vec![
            sized("a", "1", 100),
            sized("b", "2", 100),
            sized("c", "3", 100),
        ])
        .await
        .unwrap();
    assert_eq!((r.accepted, r.dropped_newest), (2, 1));
    let d = q.pull(10).await.unwrap();
    assert_eq!(ids(&d), ["1", "2"]);
    // Larger than the whole budget: refused while others wait would be forever, so it goes in.
    let r = q
        .push_batch(vec![sized("d", "4", 10 * small)])
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
}

#[test]
fn event_bytes_count_the_content() {
    let base = crate::queue::event_bytes(&sized("a", "1", 0));
    assert_eq!(crate::queue::event_bytes(&sized("a", "1", 500)), base + 500);
    let raw = sized("a", "1", 0).with_raw(serde_json::json!({"k": "v".repeat(300)}));
    assert!(crate::queue::event_bytes(&raw) >= base + 300);
}

#[tokio::test]
async fn close_wakes_pullers_and_refuses_pushes() {
    let q = std::sync::Arc::new(MemoryQueue::new(&Limits::default()));
    let q2 = q.clone();
    let puller = tokio::spawn(async move { q2.pull(5).await.unwrap() });
    tokio::task::yield_now().await;
    q.close();
    assert!(puller.await.unwrap().is_empty());
    let e = q.push_batch(vec![ev("a", "1")]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueClosed);
}

/// The room the lanes' buffers hold, in events (a lane without a buffer holds its one event in
/// itself).
fn lane_buffer_entries(q: &MemoryQueue) -> usize {
    let inner = q.lock();
    inner
        .lanes
        .iter()
        .map(|(_, l)| l.pending.buffered_capacity())
        .sum()
}

#[tokio::test]
async fn a_lane_of_one_event_allocates_no_buffer_and_a_lane_run_empty_keeps_a_small_one_at_most() {
    let conversations = 5000;
    let q = MemoryQueue::new(&limits(
        2 * conversations,
        Overflow::Reject,
        Ordering::PerConversation,
    ));
    let events = (0..conversations)
        .map(|i| ev(&format!("c{i}"), &format!("e{i}")))
        .collect();
    q.push_batch(events).await.unwrap();
    assert_eq!(q.lanes(), conversations);
    assert_eq!(
        lane_buffer_entries(&q),
        0,
        "a lane waiting with one event holds it in itself"
    );

    // A second event of a conversation moves both into a buffer, in order.
    q.push_batch(vec![ev("c0", "second"), ev("c0", "third")])
        .await
        .unwrap();
    assert!(lane_buffer_entries(&q) >= 2);
    let running = q.pull(2 * conversations).await.unwrap();
    assert_eq!(
        running.len(),
        conversations,
        "one event per conversation runs"
    );
    assert_eq!(running[0].event.id.as_str(), "e0");
    assert!(lane_buffer_entries(&q) >= 2, "c0's next events still wait");
    let leases: Vec<_> = running.iter().map(|d| d.lease).collect();
    q.ack(&leases).await.unwrap();
    assert_eq!(q.lanes(), 1, "idle lanes are removed");

    let second = q.pull(10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].event.id.as_str(), "second");
    let third = {
        q.ack(&[second[0].lease]).await.unwrap();
        q.pull(10).await.unwrap()
    };
    assert_eq!(third[0].event.id.as_str(), "third");
    assert!(
        lane_buffer_entries(&q) <= super::lanes::KEPT_BUFFER,
        "a lane whose last event runs keeps a small buffer at most"
    );
    q.ack(&[third[0].lease]).await.unwrap();
    assert_eq!(q.lanes(), 0);
    assert_eq!(q.depth(), 0);

    // A burst in one conversation: its buffer is freed once the lane runs empty.
    let burst = (0..100).map(|i| ev("busy", &format!("b{i}"))).collect();
    q.push_batch(burst).await.unwrap();
    assert!(lane_buffer_entries(&q) >= 99);
    for i in 0..100 {
        let one = q.pull(10).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].event.id.as_str(), format!("b{i}"));
        if i == 99 {
            assert_eq!(lane_buffer_entries(&q), 0, "the burst's buffer is freed");
        }
        q.ack(&[one[0].lease]).await.unwrap();
    }
    assert_eq!(q.lanes(), 0);
}

#[tokio::test(start_paused = true)]
async fn pushes_wait_for_room_only_within_their_share_of_the_byte_budget() {
    let one = crate::queue::event_bytes(&sized("a", "probe", 1000));
    // Twelve events fill the budget; the pushes waiting may hold an eighth of it, 1.5 events.
    let q = std::sync::Arc::new(MemoryQueue::new(&Limits {
        reject_wait: Duration::from_millis(300),
        ..bytes_limits(12 * one, Overflow::Reject, Ordering::Unordered)
    }));
    assert_eq!(q.reject_wait_bytes, 12 * one / 8);
    let fill: Vec<Event> = (0..12)
        .map(|i| sized("a", &format!("f{i:04}"), 1000))
        .collect();
    q.push_batch(fill).await.unwrap();
    assert_eq!(q.waiting_bytes(), 12 * one);
    // The first push waits (one alone always may)...
    let q2 = q.clone();
    let mut first =
        tokio::spawn(async move { q2.push_batch(vec![sized("b", "w0001", 1000)]).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut first)
            .await
            .is_err()
    );
    assert_eq!(
        q.space_waiting_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        one
    );
    // ...a second would take the waiting pushes past their share: refused at once.
    let start = Instant::now();
    let e = q
        .push_batch(vec![sized("c", "w0002", 1000)])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    assert_eq!(e.retry_after(), Some(FULL_RETRY_AFTER));
    assert_eq!(Instant::now(), start, "refused without waiting");
    // Room for one: the waiting push goes in, and no bytes are counted as waiting any more.
    assert_eq!(q.pull(1).await.unwrap().len(), 1);
    assert_eq!(first.await.unwrap().unwrap().accepted, 1);
    assert_eq!(
        q.space_waiting_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        q.space_waiters.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn an_event_counts_its_shared_block_not_only_its_handle() {
    // The entry holds a handle; the event's data is in the block it points to, and that block
    // is what a queued event keeps alive: counting the handle alone would let a byte budget
    // hold far more events than it says.
    let event = sized("a", "1", 0);
    let data = std::mem::size_of::<crate::event::EventData>();
    let counts = 2 * std::mem::size_of::<usize>();
    assert!(
        crate::queue::EVENT_OVERHEAD_BYTES >= std::mem::size_of::<Event>() + data + 1312,
        "the overhead is {} bytes, the event's data {data}",
        crate::queue::EVENT_OVERHEAD_BYTES
    );
    // Alone in its block, it counts the block's counts whole...
    let alone_bytes = crate::queue::event_bytes(&event);
    assert!(alone_bytes >= crate::queue::EVENT_OVERHEAD_BYTES + counts);
    // ...in a batch of ten, a tenth of them (rounded up), and its data whole.
    let batch = Event::batch((0..10).map(|i| sized("a", "1", i % 2).into_data()));
    assert_eq!(
        crate::queue::event_bytes(&batch[0]),
        alone_bytes - counts + counts.div_ceil(10)
    );
    assert_eq!(
        crate::queue::event_bytes(&batch[1]),
        crate::queue::event_bytes(&batch[0]) + 1
    );
    // A copy on write moves the event into a block of its own: it counts the counts whole again.
    let mut alone = batch[0].clone();
    alone.redelivered = true;
    assert_eq!(crate::queue::event_bytes(&alone), alone_bytes);
}

/// An event whose payload is `{"id": id, "big": [1, 2, 3]}`, as its data.
fn with_payload(conv: &str, id: &str) -> EventData {
    let json = format!(r#"{{"id":"{id}","big":[1,2,3]}}"#);
    ev(conv, id)
        .with_raw_json(serde_json::value::RawValue::from_string(json).unwrap())
        .into_data()
}

/// Sends `retried` back for a retry in a second and `buried` to the dead letters; the letters,
/// checked to keep no tree.
async fn retry_and_bury(q: &MemoryQueue, retried: Delivery, buried: Delivery) -> Vec<DeadLetter> {
    q.nack(vec![Nack {
        lease: retried.lease,
        delay: Duration::from_secs(1),
        error: "boom".into(),
        event: retried.event,
    }])
    .await
    .unwrap();
    let letters = q
        .dead(vec![Dead {
            lease: buried.lease,
            error: "x".into(),
            event: buried.event,
        }])
        .await
        .unwrap();
    assert!(
        !letters[0].event.raw.has_tree(),
        "the dead letter kept the tree"
    );
    letters
}

/// A handler's read of the payload builds its tree in the event's shared block. An event that
/// goes back to the queue (a retry, a dead letter) keeps its text only, which is what the byte
/// budget counts, not the several times larger tree.
#[tokio::test(start_paused = true)]
async fn an_event_back_in_the_queue_keeps_no_tree_a_handler_built() {
    let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
    q.push_batch(vec![
        with_payload("a", "1").into(),
        with_payload("b", "2").into(),
    ])
    .await
    .unwrap();
    let mut got = q.pull(10).await.unwrap();
    assert_eq!(got.len(), 2);
    for d in &got {
        // What a handler's read does: the tree is built, in the block the queue handed out.
        assert_eq!(d.event.raw()["big"][2], 3);
        assert!(d.event.raw.has_tree());
    }
    let second = got.pop().unwrap();
    let first = got.pop().unwrap();
    let letters = retry_and_bury(&q, first, second).await;
    drop(letters);
    let again = q.pull(10).await.unwrap();
    assert_eq!(ids(&again), ["1"]);
    assert!(!again[0].event.raw.has_tree(), "the retry kept the tree");
    // The text is whole: the tree is built again when asked.
    assert_eq!(again[0].event.raw()["id"], "1");
    let kept = q.dead_letters(10).await.unwrap();
    assert!(!kept[0].event.raw.has_tree());
    assert_eq!(kept[0].event.raw.json(), r#"{"id":"2","big":[1,2,3]}"#);
}

/// The events of one body share a block: an event that goes back to the queue while its
/// siblings still run (their handles keep the block shared) leaves the tree behind all the same,
/// moved into a block of its own, and the siblings keep their data as it was.
#[tokio::test(start_paused = true)]
async fn an_event_back_in_the_queue_keeps_no_tree_while_its_siblings_run() {
    let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
    let batch = Event::batch([
        with_payload("a", "1"),
        with_payload("b", "2"),
        with_payload("c", "3"),
    ]);
    assert!(batch[0].shares_block_with(&batch[2]));
    q.push_batch(batch).await.unwrap();
    let mut got = q.pull(10).await.unwrap();
    assert_eq!(ids(&got), ["1", "2", "3"]);
    for d in &got {
        assert_eq!(d.event.raw()["big"][2], 3);
        assert!(d.event.raw.has_tree());
    }
    let third = got.pop().unwrap();
    let second = got.pop().unwrap();
    let first = got.pop().unwrap();
    // The first is retried and the second dead while the third still runs.
    let letters = retry_and_bury(&q, first, second).await;
    assert!(!letters[0].event.shares_block_with(&third.event));
    drop(letters);
    let again = q.pull(10).await.unwrap();
    assert_eq!(ids(&again), ["1"]);
    assert!(!again[0].event.raw.has_tree(), "the retry kept the tree");
    assert!(!again[0].event.shares_block_with(&third.event));
    assert_eq!(again[0].event.raw()["id"], "1");
    // The sibling still running kept its data, tree included.
    assert_eq!(third.event.id.as_str(), "3");
    assert!(third.event.raw.has_tree());
    let kept = q.dead_letters(10).await.unwrap();
    assert!(!kept[0].event.raw.has_tree());
    assert_eq!(kept[0].event.raw.json(), r#"{"id":"2","big":[1,2,3]}"#);
}

/// Pushes a batch of two events (`(conversation, id)` each) and pulls them; the second's handler
/// reads its payload (building its tree) and finishes. Returns the first, with no tree of its own
/// and now its block's last handle, and a weak handle to that block.
async fn last_of_a_pair(
    q: &MemoryQueue,
    first: (&str, &str),
    second: (&str, &str),
) -> (Delivery, std::sync::Weak<[EventData]>) {
    let batch = Event::batch([
        with_payload(first.0, first.1),
        with_payload(second.0, second.1),
    ]);
    q.push_batch(batch).await.unwrap();
    let mut got = q.pull(10).await.unwrap();
    let sibling = got.pop().unwrap();
    let last = got.pop().unwrap();
    assert_eq!(sibling.event.raw()["big"][0], 1);
    assert!(!last.event.raw.has_tree());
    let block = last.event.block_weak();
    q.ack(&[sibling.lease]).await.unwrap();
    drop(sibling);
    (last, block)
}

/// An event kept for a retry or as a dead letter leaves its batch's block even when it built no
/// tree itself and even when it is the block's last handle: else the siblings' data, and the
/// trees their handlers built, would stay alive with it, uncounted by the byte budget.
#[tokio::test]
async fn an_event_back_in_the_queue_keeps_none_of_its_siblings_alive() {
    let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
    // The first, the block's last handle once its sibling finished, is retried.
    let (first, block) = last_of_a_pair(&q, ("a", "1"), ("b", "2")).await;
    q.nack(vec![Nack {
        lease: first.lease,
        delay: Duration::ZERO,
        error: "boom".into(),
        event: first.event,
    }])
    .await
    .unwrap();
    assert_eq!(
        block.strong_count(),
        0,
        "the retried event kept its batch's block (and its sibling's tree) alive"
    );
    let again = q.pull(10).await.unwrap();
    assert_eq!(ids(&again), ["1"]);
    assert_eq!(again[0].event.block_len(), 1);
    assert_eq!(again[0].event.raw()["id"], "1");

    // The same for a dead letter: the last handle of a block of two, with no tree of its own.
    let (third, block) = last_of_a_pair(&q, ("c", "3"), ("d", "4")).await;
    let letters = q
        .dead(vec![Dead {
            lease: third.lease,
            error: "x".into(),
            event: third.event,
        }])
        .await
        .unwrap();
    drop(letters);
    assert_eq!(
        block.strong_count(),
        0,
        "the dead letter kept its batch's block (and its sibling's tree) alive"
    );
    let kept = q.dead_letters(10).await.unwrap();
    assert_eq!(kept[0].event.id.as_str(), "3");
    assert_eq!(kept[0].event.block_len(), 1);
}

/// An event kept for a retry or as a dead letter keeps none of the request body its payload and
/// long id were slices of: else one retried event of a large webhook would keep the whole body
/// alive, uncounted by the byte budget (which counts the event's own text).
#[tokio::test(start_paused = true)]
async fn an_event_back_in_the_queue_keeps_none_of_its_request_body_alive() {
    use crate::event::{EventId, Raw};
    /// The body's bytes, and a token that lives as long as they do.
    struct Body(
        Vec<u8>,
        #[allow(dead_code, reason = "held, never read")] std::sync::Arc<()>,
    );
    impl AsRef<[u8]> for Body {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    let alive = std::sync::Arc::new(());
    let body_alive = std::sync::Arc::downgrade(&alive);
    let long_ids = ["x".repeat(60), "y".repeat(60)];
    let parts: Vec<String> = (long_ids.iter())
        .map(|id| format!(r#"{{"id":"{id}","text":"hello"}}"#))
        .collect();
    let text = format!(r#"{{"events":[{}]}}"#, parts.join(","));
    let body = bytes::Bytes::from_owner(Body(text.clone().into_bytes(), alive));
    let events: Vec<EventData> = (parts.iter().zip(&long_ids))
        .map(|(part, id)| {
            let at = text.find(part.as_str()).unwrap();
            let json = std::str::from_utf8(&body[at..at + part.len()]).unwrap();
            let mut data = ev(id, "placeholder").into_data();
            data.id = EventId::from_shared(&body, &json[7..7 + id.len()]);
            data.raw = Raw::from_shared(&body, json);
            data
        })
        .collect();
    drop(body);
    let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
    q.push_batch(Event::batch(events)).await.unwrap();
    let mut got = q.pull(10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        body_alive.strong_count(),
        1,
        "the events are slices of the body"
    );
    let buried = got.pop().unwrap();
    let retried = got.pop().unwrap();
    drop(retry_and_bury(&q, retried, buried).await);
    assert_eq!(
        body_alive.strong_count(),
        0,
        "a retried event or a dead letter kept the request body alive"
    );
    // Copies, whole: the ids and payloads read the same.
    let again = q.pull(10).await.unwrap();
    assert_eq!(ids(&again), [long_ids[0].clone()]);
    assert_eq!(again[0].event.raw.json(), parts[0]);
    let kept = q.dead_letters(10).await.unwrap();
    assert_eq!(kept[0].event.id.as_str(), long_ids[1]);
    assert_eq!(kept[0].event.raw.json(), parts[1]);
}

/// A push's new id may turn the dedup set's generation, forgetting the oldest ids: a
/// redelivery later in the same batch, remembered when the push looked for room, is still a
/// duplicate (else it would run again, and the room reckoned without it be overshot).
#[tokio::test]
async fn a_generation_turned_by_a_push_does_not_let_its_own_redelivery_in() {
    let l = Limits {
        dedup_capacity: 2,
        ..limits(10, Overflow::Reject, Ordering::PerConversation)
    };
    let q = MemoryQueue::new(&l);
    // "a" and "b" fill a generation; "c" turns it ("a", "b" now the previous one); "d" fills
    // the new one.
    for id in ["a", "b", "c", "d"] {
        q.push_batch(vec![ev(id, id)]).await.unwrap();
    }
    // "e" turns the generation again, forgetting "a" and "b": "a" after it is a redelivery
    // all the same.
    let report = q
        .push_batch(vec![ev("e", "e"), ev("a", "a")])
        .await
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 1));
    assert_eq!(q.depth(), 5);
    // Once forgotten, it is new again.
    let report = q.push_batch(vec![ev("a", "a")]).await.unwrap();
    assert_eq!(report.accepted, 1);
}

/// A conversation's lane is keyed by its platform too: one conversation id on two platforms
/// is two conversations, handed out at once.
#[tokio::test]
async fn one_conversation_id_on_two_platforms_is_two_lanes() {
    let q = MemoryQueue::new(&limits(10, Overflow::Reject, Ordering::PerConversation));
    q.push_batch(vec![
        Event::text(Platform::LINE, "x", "1").with_id("1"),
        Event::text(Platform::MESSENGER, "x", "2").with_id("2"),
        Event::text(Platform::LINE, "x", "3").with_id("3"),
    ])
    .await
    .unwrap();
    let got = q.pull(10).await.unwrap();
    assert_eq!(
        ids(&got),
        ["1", "2"],
        "one lane per (platform, conversation)"
    );
}
