//! Fault suite, Discord gateway: a queue that fails (not full: unavailable) for a while in the
//! middle of a dispatch stream from the fake gateway, over real sockets.
//!
//! The shard must keep (or resume) its session, log an error, report not ready (`Bot::is_ready`
//! and `/readyz`, naming the shard) while it cannot hand over, and hand every dispatch over
//! exactly once when the queue is back. The failure window is opened and closed by a switch the
//! test flips once it observed the shard retrying, not by sleeps.
#![allow(clippy::disallowed_methods)] // the shard and the ops server run in spawned tasks

mod support;

use std::sync::Arc;

use support::{FlakyQueue, queue_fails_mid_stream};

#[tokio::test]
async fn a_failing_queue_holds_the_session_reports_not_ready_and_loses_nothing() {
    let queue = Arc::new(FlakyQueue::new());
    queue_fails_mid_stream(queue.clone(), &*queue, false, 256).await;
}

#[tokio::test]
async fn a_session_cut_while_the_queue_fails_resumes_from_the_last_accepted_dispatch() {
    let queue = Arc::new(FlakyQueue::new());
    queue_fails_mid_stream(queue.clone(), &*queue, true, 256).await;
}

/// Batches of 4: while the queue fails, one hand-over retries, the next is mapped and waits
/// its turn and reading stops at a third. Once the queue is back every dispatch is handled
/// once, in order: the second never goes in before the first was accepted.
#[tokio::test]
async fn a_failing_queue_with_two_small_batches_in_flight_keeps_their_order() {
    let queue = Arc::new(FlakyQueue::new());
    queue_fails_mid_stream(queue.clone(), &*queue, false, 4).await;
}

/// The same with the session cut while two batches are in flight: the resume replays from the
/// last accepted dispatch, each handled once, in order.
#[tokio::test]
async fn a_session_cut_with_two_small_batches_in_flight_resumes_before_them() {
    let queue = Arc::new(FlakyQueue::new());
    queue_fails_mid_stream(queue.clone(), &*queue, true, 4).await;
}
