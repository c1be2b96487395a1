//! Mapping NATS failures to the crate's [`Error`].

use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};

use crate::error::{BoxError, Error, ErrorKind};

/// A failed NATS operation of `what` (lowercase, e.g. "reading dead letters").
pub(super) fn nats(what: &str, e: impl Into<BoxError>) -> Error {
    let e = e.into();
    Error::new(ErrorKind::Queue, format!("nats: {what}: {e}")).with_source(e)
}

/// The server cannot take pushes now: retryable, with a hint for the platform's redelivery.
pub(super) fn unavailable(what: &str, retry_after: Duration, e: impl Into<BoxError>) -> Error {
    nats(what, e).with_retry_after(retry_after)
}

/// A refused or failed publish of a push.
///
/// A partition's stream at its `max_messages` or `max_bytes` (discard policy `new`) is
/// [`ErrorKind::QueueFull`]; a time-out or a lost connection is retryable; anything else is a
/// queue error.
pub(super) fn publish(e: PublishError, retry_after: Duration) -> Error {
    let text = chain(&e);
    if text.contains("maximum messages") || text.contains("maximum bytes") {
        return Error::new(
            ErrorKind::QueueFull,
            "nats: the event's partition of the queue is full",
        )
        .with_retry_after(retry_after)
        .with_source(e);
    }
    match e.kind() {
        PublishErrorKind::TimedOut => Error::new(
            ErrorKind::Timeout,
            "nats: pushing events: no acknowledgement from JetStream in time",
        )
        .with_retry_after(retry_after)
        .with_source(e),
        PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending
        | PublishErrorKind::StreamNotFound => unavailable("pushing events", retry_after, e),
        _ => nats("pushing events", e),
    }
}

/// The error and its sources, joined, for matching server messages.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
