//! The bot pipeline through `JetStreamQueue`: webhooks answer once JetStream stored their
//! events, the supervisor runs them from the stream once each, failing events are retried with
//! back-off, dead-lettered after the last attempt and re-driven.

mod support;

use std::sync::Arc;

use support::bot_contract::{
    an_event_failing_three_times_is_dead_lettered_and_redriven, fifty_events_with_ten_redelivered,
};
use support::nats::{Cleanup, connect, queue_builder, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_run_through_jetstream_once_each_in_order() {
    let name = unique_name("bot_e2e");
    let _cleanup = Cleanup::new(&name);
    let queue = Arc::new(queue_builder(connect().await, &name).build().await.unwrap());
    let seen = fifty_events_with_ten_redelivered(queue.clone()).await;
    // Each conversation in push order, each event once.
    for conv in 0..5 {
        let order: Vec<&String> = seen
            .iter()
            .filter(|id| id[1..].parse::<usize>().unwrap() % 5 == conv)
            .collect();
        let want: Vec<String> = (0..10).map(|k| format!("e{}", k * 5 + conv)).collect();
        assert_eq!(
            order,
            want.iter().collect::<Vec<_>>(),
            "conversation c{conv}"
        );
    }
    assert_eq!(seen.len(), 50);
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_events_are_retried_then_dead_lettered_and_redriven() {
    let name = unique_name("bot_dead");
    let _cleanup = Cleanup::new(&name);
    let queue = Arc::new(queue_builder(connect().await, &name).build().await.unwrap());
    an_event_failing_three_times_is_dead_lettered_and_redriven(queue.clone(), || {
        assert_eq!(queue.counters().nacked, 2)
    })
    .await;
    queue.shutdown().await;
}
