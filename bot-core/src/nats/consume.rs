//! The consumer of one owned partition: its messages, in stream order, onto the board.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::message::AckKind;
use futures::{FutureExt as _, StreamExt as _};
use tokio_util::sync::CancellationToken;

use super::handle::Inner;
use super::order::Arrival;
use super::setup::Names;
use crate::error::Error;
use crate::event::Event;

/// Where one delivered message is acknowledged: its reply subject.
#[derive(Debug, Clone)]
pub(super) struct Ack(async_nats::Subject);

impl Inner {
    /// Sends `kind` for a delivered message; a failure is logged: the message then comes back
    /// after its `AckWait`, which at-least-once delivery allows.
    pub(super) async fn send_ack(&self, ack: &Ack, kind: AckKind) {
        if let Err(e) = self.client.publish(ack.0.clone(), kind.into()).await {
            tracing::warn!(error = %e, "nats: an acknowledgement was not sent; the message comes back after AckWait");
        }
    }
}

/// Creates the consumer of `partition`'s stream for the ownership won at `revision`, after
/// deleting every earlier consumer of it: a work-queue stream allows one unfiltered consumer,
/// and the deletion fences the former owner off (its acknowledgements reach no consumer).
pub(super) async fn create(
    inner: &Inner,
    partition: u32,
    revision: u64,
) -> Result<PullConsumer, Error> {
    let prefix = Names::consumer_prefix(partition);
    let mine = Names::consumer(partition, revision);
    let events = inner.stream(partition);
    let mut names = events.consumer_names();
    let mut stale = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.map_err(|e| super::error::nats("listing consumers", e))?;
        if name.starts_with(&prefix) && name != mine {
            stale.push(name);
        }
    }
    tracing::debug!(partition, ?stale, "nats: former owners' consumers");
    for name in stale {
        if let Err(e) = events.delete_consumer(&name).await {
            tracing::debug!(consumer = %name, error = %e, "nats: deleting a former owner's consumer");
        }
    }
    let settings = &inner.settings;
    events
        .get_or_create_consumer(
            &mine,
            consumer::pull::Config {
                durable_name: Some(mine.clone()),
                // The stream is the partition's alone: no filter, so the server hands out its
                // messages in order without looking at their subjects.
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                // Attempts are counted and ended by the runtime (dead letters), not by the server.
                max_deliver: -1,
                max_ack_pending: i64::try_from(settings.partition_in_flight).unwrap_or(i64::MAX),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| super::error::nats("creating a partition's consumer", e))
}

/// Runs until `stop`: pulls the partition's messages and puts them on the board.
pub(super) async fn run(
    inner: Arc<Inner>,
    partition: u32,
    revision: u64,
    consumer: PullConsumer,
    stop: CancellationToken,
) {
    let settings = &inner.settings;
    while !stop.is_cancelled() {
        let messages = consumer
            .stream()
            .max_messages_per_batch(settings.fetch_batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(partition, error = %e, "nats: pulling a partition failed; trying again");
                pause(&stop).await;
                continue;
            }
        };
        let mut arrived = Vec::with_capacity(settings.fetch_batch);
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = messages.next() => next,
            };
            // Take what else has arrived already too: one lock and one wake-up per burst.
            let mut next = next;
            let mut failed = false;
            loop {
                match next {
                    Some(Ok(message)) => {
                        if let Some(a) = decode(&inner, partition, message).await {
                            arrived.push(a);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(partition, error = %e, "nats: a pull of a partition failed");
                        failed = true;
                        break;
                    }
                    None => {
                        failed = true;
                        break;
                    }
                }
                if arrived.len() >= settings.fetch_batch {
                    break;
                }
                match messages.next().now_or_never() {
                    Some(more) => next = more,
                    None => break,
                }
            }
            if !arrived.is_empty() {
                let ready = {
                    let mut board = inner.board();
                    arrived.drain(..).fold(false, |ready, a| {
                        board.arrive(partition, revision, a) | ready
                    })
                };
                if ready {
                    inner.delivered.notify_waiters();
                }
            }
            if failed {
                break;
            }
        }
        pause(&stop).await;
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
}

/// A delivered message as the board takes it; `None` (and the message dropped) when it is not
/// an event.
async fn decode(
    inner: &Inner,
    partition: u32,
    message: async_nats::jetstream::Message,
) -> Option<Arrival<Ack>> {
    let (seq, delivered) = match message.info() {
        Ok(info) => (
            info.stream_sequence,
            u32::try_from(info.delivered).unwrap_or(u32::MAX),
        ),
        Err(e) => {
            tracing::error!(partition, error = %e, "nats: a message without JetStream metadata");
            return None;
        }
    };
    inner.count(&inner.counters.delivered, 1);
    let acker = Ack(message.message.reply.clone()?);
    match serde_json::from_slice::<Event>(&message.message.payload) {
        Ok(event) => Some(Arrival {
            seq,
            delivered,
            event,
            acker,
        }),
        Err(e) => {
            // Nothing can run it: drop it rather than block the partition.
            tracing::error!(partition, seq, error = %e, "nats: a message is not an event; dropped");
            inner.send_ack(&acker, AckKind::Ack).await;
            None
        }
    }
}
