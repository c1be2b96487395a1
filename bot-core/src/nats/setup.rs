//! The streams and the bucket a queue lives in, their names, and which partition an event
//! goes to.

use async_nats::jetstream::{self, kv, stream};

use super::config::Settings;
use super::error::nats;
use crate::error::{Error, ErrorKind};
use crate::event::Event;

/// The names derived from the queue's name.
#[derive(Debug, Clone)]
pub(super) struct Names {
    /// The work-queue stream of the events.
    pub(super) stream: String,
    /// The dead letters' stream.
    pub(super) dead_stream: String,
    /// The subject of the dead letters.
    pub(super) dead_subject: String,
    /// The key-value bucket of partition owners and live members.
    pub(super) bucket: String,
}

impl Names {
    pub(super) fn new(name: &str) -> Self {
        Self {
            stream: name.to_owned(),
            dead_stream: format!("{name}_dead"),
            dead_subject: format!("{name}.dead"),
            bucket: format!("{name}_owners"),
        }
    }

    /// The subject of partition `partition`.
    pub(super) fn partition_subject(&self, partition: u32) -> String {
        format!("{}.p.{partition}", self.stream)
    }

    /// The durable consumer of `partition` for the ownership won at `revision`: a new name per
    /// owner, so that a former owner's late acknowledgements reach no one.
    pub(super) fn consumer(partition: u32, revision: u64) -> String {
        format!("p{partition}g{revision}")
    }

    /// The prefix of every consumer name of `partition`.
    pub(super) fn consumer_prefix(partition: u32) -> String {
        format!("p{partition}g")
    }
}

/// The partition of an event's conversation: FNV-1a over platform and conversation, stable
/// across processes and builds (unlike the std hashers, which are seeded).
pub(super) fn partition_of(event: &Event, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = event
        .platform
        .as_str()
        .bytes()
        .chain(std::iter::once(0))
        .chain(event.conversation.as_str().bytes());
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions)) as u32
}

/// The description the stream carries, through which processes check they agree on the
/// partitions (a server before 2.10 has no stream metadata).
fn description(settings: &Settings) -> String {
    format!("botrt queue: {} partitions", settings.partitions)
}

/// Creates the streams and the bucket, or checks those that exist.
pub(super) async fn ensure(
    js: &jetstream::Context,
    names: &Names,
    settings: &Settings,
) -> Result<(stream::Stream, kv::Store), Error> {
    let config = stream::Config {
        name: names.stream.clone(),
        description: Some(description(settings)),
        subjects: vec![format!("{}.p.*", names.stream)],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        max_messages: i64::try_from(settings.capacity).unwrap_or(i64::MAX),
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.replicas,
        ..Default::default()
    };
    let mut events = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| nats("creating the events stream", e))?;
    let info = events
        .info()
        .await
        .map_err(|e| nats("reading the events stream", e))?;
    let wanted = description(settings);
    if info.config.retention != stream::RetentionPolicy::WorkQueue
        || info.config.description.as_deref() != Some(wanted.as_str())
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "nats: stream {} exists as {:?} ({:?}), not a work queue with {} partitions",
                names.stream, info.config.retention, info.config.description, settings.partitions
            ),
        ));
    }
    js.get_or_create_stream(stream::Config {
        name: names.dead_stream.clone(),
        subjects: vec![names.dead_subject.clone()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        max_messages: i64::try_from(settings.dead_letter_capacity.max(1)).unwrap_or(i64::MAX),
        num_replicas: settings.replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| nats("creating the dead letters' stream", e))?;
    // The bucket's stream as the client's `create_key_value` makes it, created directly: that
    // call first reads the account's API level, which servers before 2.10 do not answer in the
    // form the client expects.
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{}", names.bucket),
        subjects: vec![format!("$KV.{}.>", names.bucket)],
        max_messages_per_subject: 1,
        max_age: settings.ownership_lease,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: settings.replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| nats("creating the owners' bucket", e))?;
    let owners = js
        .get_key_value(&names.bucket)
        .await
        .map_err(|e| nats("opening the owners' bucket", e))?;
    let mut bucket = js
        .get_stream(format!("KV_{}", names.bucket))
        .await
        .map_err(|e| nats("reading the owners' bucket", e))?;
    let max_age = bucket
        .info()
        .await
        .map_err(|e| nats("reading the owners' bucket", e))?
        .config
        .max_age;
    if max_age != settings.ownership_lease {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "nats: bucket {} keeps owners for {max_age:?}, this process's ownership lease \
                 is {:?}: every process of a queue must use the same",
                names.bucket, settings.ownership_lease
            ),
        ));
    }
    Ok((events, owners))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Platform;

    #[test]
    fn a_conversation_always_lands_on_the_same_partition() {
        let demo = Platform::from_static("demo");
        let a = Event::text(demo.clone(), "c1", "x");
        let b = Event::text(demo.clone(), "c1", "y").with_id("other");
        assert_eq!(partition_of(&a, 16), partition_of(&b, 16));
        // Fixed by the algorithm, not by the build: processes must agree.
        assert_eq!(partition_of(&a, 16), partition_of(&a.clone(), 16));
        let spread: std::collections::HashSet<u32> = (0..200)
            .map(|i| partition_of(&Event::text(demo.clone(), format!("c{i}"), "x"), 16))
            .collect();
        assert_eq!(spread.len(), 16);
    }

    #[test]
    fn consumer_names_are_new_per_ownership() {
        assert_eq!(Names::consumer(3, 17), "p3g17");
        assert!(Names::consumer(3, 17).starts_with(&Names::consumer_prefix(3)));
        assert!(!Names::consumer(31, 1).starts_with(&Names::consumer_prefix(3)));
    }
}
