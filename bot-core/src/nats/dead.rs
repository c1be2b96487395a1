//! Dead letters: a stream of their own (`<name>_dead`, subject `<name>.dead`), kept to its
//! capacity (the oldest go first), readable by the console and by any NATS client.

use async_nats::jetstream::message::PublishMessage;

use super::error::nats;
use super::handle::Inner;
use super::setup::partition_of;
use crate::error::Error;
use crate::queue::DeadLetter;

/// Stores `letter`, waiting for JetStream's acknowledgement.
pub(super) async fn store(inner: &Inner, letter: &DeadLetter) -> Result<(), Error> {
    let payload =
        serde_json::to_vec(letter).map_err(|e| nats("a dead letter does not serialise", e))?;
    inner
        .js
        .publish(inner.names.dead_subject.clone(), payload.into())
        .await
        .map_err(|e| nats("storing a dead letter", e))?
        .await
        .map_err(|e| nats("storing a dead letter", e))?;
    Ok(())
}

/// The sequences and letters of up to `limit` dead letters, oldest first.
pub(super) async fn read(inner: &Inner, limit: usize) -> Result<Vec<(u64, DeadLetter)>, Error> {
    let mut stream = inner
        .js
        .get_stream(&inner.names.dead_stream)
        .await
        .map_err(|e| nats("reading dead letters", e))?;
    let state = stream
        .info()
        .await
        .map_err(|e| nats("reading dead letters", e))?
        .state
        .clone();
    let mut letters = Vec::new();
    if state.messages == 0 {
        return Ok(letters);
    }
    let mut seq = state.first_sequence;
    while letters.len() < limit && seq <= state.last_sequence {
        // Gaps (re-driven letters) answer "no message found": step over them.
        if let Ok(message) = stream.get_raw_message(seq).await {
            match serde_json::from_slice::<DeadLetter>(&message.payload) {
                Ok(letter) => letters.push((seq, letter)),
                Err(e) => tracing::error!(seq, error = %e, "nats: a dead letter does not decode"),
            }
        }
        seq += 1;
    }
    Ok(letters)
}

/// Pushes up to `max` dead letters back, oldest first, as new messages (attempts start
/// again), then deletes them from the dead letters.
pub(super) async fn redrive(inner: &Inner, max: usize) -> Result<usize, Error> {
    let letters = read(inner, max).await?;
    let stream = inner
        .js
        .get_stream(&inner.names.dead_stream)
        .await
        .map_err(|e| nats("re-driving dead letters", e))?;
    let mut done = 0;
    for (seq, letter) in letters {
        let event = &letter.event;
        let subject = inner
            .names
            .partition_subject(partition_of(event, inner.settings.partitions));
        let payload =
            serde_json::to_vec(event).map_err(|e| nats("an event does not serialise", e))?;
        // A message id of its own: the event's id may still be in the deduplication window.
        let publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(format!(
                "redrive:{seq}:{}",
                super::publish::message_id(event)
            ));
        inner
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| nats("re-driving a dead letter", e))?
            .await
            .map_err(|e| nats("re-driving a dead letter", e))?;
        stream
            .delete_message(seq)
            .await
            .map_err(|e| nats("deleting a re-driven dead letter", e))?;
        done += 1;
    }
    Ok(done)
}
