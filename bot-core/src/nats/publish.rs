//! Ingress: pushes publish events to their partition's subject, deduplicated by JetStream on
//! `Nats-Msg-Id`.

use async_nats::jetstream::message::PublishMessage;
use sha2::{Digest as _, Sha256};

use super::error;
use super::handle::Inner;
use super::setup::partition_of;
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::queue::PushReport;

/// The `Nats-Msg-Id` of an event: `<platform>:<id>`, or its SHA-256 when that is long or not
/// plain printable ASCII (a header value cannot carry line breaks).
pub(super) fn message_id(event: &Event) -> String {
    let id = format!("{}:{}", event.platform.as_str(), event.id.as_str());
    if id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic()) {
        id
    } else {
        Sha256::digest(id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Publishes `events` in order, pipelined, and waits for every acknowledgement.
///
/// JetStream stores one connection's publishes to a stream in the order they were sent, so
/// the events of a batch keep their order within each conversation.
pub(super) async fn push(inner: &Inner, events: Vec<Event>) -> Result<PushReport, Error> {
    let retry_after = inner.settings.retry_after;
    let mut pending = Vec::with_capacity(events.len());
    for event in &events {
        let payload = serde_json::to_vec(event).map_err(|e| {
            Error::new(ErrorKind::Queue, "nats: event does not serialise").with_source(e)
        })?;
        let subject = inner
            .names
            .partition_subject(partition_of(event, inner.settings.partitions));
        let publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(message_id(event));
        let ack = inner
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| error::publish(e, retry_after))?;
        pending.push(ack);
    }
    let mut report = PushReport::default();
    for ack in pending {
        let ack = ack.await.map_err(|e| error::publish(e, retry_after))?;
        if ack.duplicate {
            report.duplicates += 1;
        } else {
            report.accepted += 1;
        }
    }
    inner.count(&inner.counters.pushed, report.accepted as u64);
    inner.count(&inner.counters.duplicates, report.duplicates as u64);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Platform;

    #[test]
    fn message_ids_are_plain_or_hashed() {
        let demo = Platform::from_static("demo");
        let plain = Event::text(demo.clone(), "c", "x").with_id("e1");
        assert_eq!(message_id(&plain), "demo:e1");
        let odd = Event::text(demo, "c", "x").with_id("line\r\nbreak");
        let hashed = message_id(&odd);
        assert_eq!(hashed.len(), 64);
        assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
