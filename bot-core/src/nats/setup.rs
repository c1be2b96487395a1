//! The streams and the bucket a queue lives in, their names, and which partition an event
//! goes to.
//!
//! Each partition is a work-queue stream of its own, with one subject. One stream with a
//! subject per partition and a filtered consumer on each was measured first: nats-server
//! (2.9) then finds a consumer's next message by stepping over the other partitions' messages,
//! so the server's work per message grew with the partitions (15-20 µs at 16 partitions, 58
//! µs at 64, against 7-10 µs for a stream per partition; BENCHMARKS.md).

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Deserialize;

use super::config::Settings;
use super::error::nats;
use crate::error::{Error, ErrorKind};
use crate::event::Event;

/// The names derived from the queue's name.
#[derive(Debug, Clone)]
pub(super) struct Names {
    /// The queue's name: the first token of its subjects, and the stream that held every
    /// partition before partitions had streams of their own.
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

    /// The work-queue stream of partition `partition`.
    pub(super) fn partition_stream(&self, partition: u32) -> String {
        format!("{}_p{partition}", self.stream)
    }

    /// The subjects of every partition, as a filter.
    pub(super) fn partition_subjects(&self) -> String {
        format!("{}.p.*", self.stream)
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

/// The description a partition's stream carries, through which processes check they agree on
/// the partitions (a server before 2.10 has no stream metadata).
fn description(settings: &Settings, partition: u32) -> String {
    format!(
        "botrt queue: partition {partition} of {}",
        settings.partitions
    )
}

/// The events a partition's stream holds at most: its even share of the queue's capacity.
pub(super) fn partition_capacity(capacity: usize, partitions: u32) -> usize {
    capacity.div_ceil(partitions.max(1) as usize)
}

/// Streams created or checked at once while a queue starts.
const SETUP_CONCURRENCY: usize = 16;

/// Attempts at creating a stream when the server answers with a fault of its own.
const CREATE_ATTEMPTS: u32 = 4;

/// Whether the server answered a stream's creation with a fault of its own (500), which may
/// pass, rather than a refusal of the configuration.
fn is_server_fault(e: &jetstream::context::CreateStreamError) -> bool {
    matches!(e.kind(), jetstream::context::CreateStreamErrorKind::JetStream(j) if j.code() == 500)
}

/// Creates the partition's stream, or checks the one that exists.
async fn ensure_partition(
    js: &jetstream::Context,
    names: &Names,
    settings: &Settings,
    partition: u32,
) -> Result<stream::Stream, Error> {
    let name = names.partition_stream(partition);
    let config = stream::Config {
        name: name.clone(),
        description: Some(description(settings, partition)),
        subjects: vec![names.partition_subject(partition)],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        max_messages: i64::try_from(partition_capacity(settings.capacity, settings.partitions))
            .unwrap_or(i64::MAX),
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.replicas,
        ..Default::default()
    };
    // A fault of the server's own (a 500: it could not create the stream's store) can pass; a
    // queue starting while the server is busy tries again a few times before it fails.
    let mut attempt = 0;
    let created = loop {
        attempt += 1;
        match js.get_or_create_stream(config.clone()).await {
            Err(e) if attempt < CREATE_ATTEMPTS && is_server_fault(&e) => {
                tracing::debug!(error = %e, stream = %name, attempt, "nats: creating a stream failed; trying again");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            other => break other,
        }
    };
    let events = match created {
        Ok(events) => events,
        Err(e) => {
            // The subjects overlap with the single stream of the layout before partitions had
            // streams of their own: say so rather than pass the server's words on.
            let legacy = match js.get_stream(&names.stream).await {
                Ok(old) => old
                    .cached_info()
                    .config
                    .subjects
                    .contains(&names.partition_subjects()),
                Err(_) => false,
            };
            if legacy {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "nats: stream {} holds every partition of queue {} (the layout of an \
                         earlier version); drain it with that version, then delete it",
                        names.stream, names.stream
                    ),
                ));
            }
            return Err(nats("creating a partition's stream", e));
        }
    };
    let info = events.cached_info();
    let wanted = description(settings, partition);
    if info.config.retention != stream::RetentionPolicy::WorkQueue
        || info.config.description.as_deref() != Some(wanted.as_str())
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "nats: stream {name} exists as {:?} ({:?}), not partition {partition} of a work \
                 queue with {} partitions",
                info.config.retention, info.config.description, settings.partitions
            ),
        ));
    }
    Ok(events)
}

/// Creates the streams and the bucket, or checks those that exist. Returns the partitions'
/// streams, in partition order, and the bucket.
pub(super) async fn ensure(
    js: &jetstream::Context,
    names: &Names,
    settings: &Settings,
) -> Result<(Vec<stream::Stream>, kv::Store), Error> {
    // The first alone: a process that disagrees on the partitions stops there, before making
    // streams of its own count.
    let first = ensure_partition(js, names, settings, 0).await?;
    let mut events = vec![first];
    let rest: Vec<stream::Stream> = futures::stream::iter(1..settings.partitions)
        .map(|partition| ensure_partition(js, names, settings, partition))
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    events.extend(rest);
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

/// A page of the server's stream list, as far as it is read here.
#[derive(Debug, Deserialize)]
struct ListPage {
    total: usize,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: usize,
    #[serde(default)]
    streams: Option<Vec<Listed>>,
    /// Streams of the page whose leaders did not answer in time (a cluster): left out.
    #[serde(default)]
    missing: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Listed {
    state: ListedState,
}

#[derive(Debug, Deserialize)]
struct ListedState {
    messages: u64,
}

/// The events in every partition's stream: one request per 256 partitions (the server's page),
/// not one per partition.
pub(super) async fn depth(js: &jetstream::Context, names: &Names) -> Result<u64, Error> {
    let mut messages = 0;
    let mut offset = 0;
    loop {
        let page: jetstream::response::Response<ListPage> = js
            .request(
                "STREAM.LIST",
                &serde_json::json!({ "offset": offset, "subject": names.partition_subjects() }),
            )
            .await
            .map_err(|e| nats("listing the partitions' streams", e))?;
        let page = match page {
            jetstream::response::Response::Ok(page) => page,
            jetstream::response::Response::Err { error } => {
                return Err(nats("listing the partitions' streams", error));
            }
        };
        if page.missing.as_ref().is_some_and(|m| !m.is_empty()) {
            // A count without them would be too low: keep the last good one.
            return Err(Error::new(
                ErrorKind::Queue,
                "jetstream: some partitions' streams did not answer the list in time",
            ));
        }
        let streams = page.streams.unwrap_or_default();
        messages += streams.iter().map(|s| s.state.messages).sum::<u64>();
        // The next page starts after this one's slots, whatever came back in it.
        let next = if page.limit > 0 {
            page.offset + page.limit
        } else {
            offset + streams.len()
        };
        if streams.is_empty() || next >= page.total {
            return Ok(messages);
        }
        offset = next;
    }
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
    fn each_partition_holds_its_share_of_the_capacity() {
        assert_eq!(partition_capacity(100_000, 16), 6_250);
        // Rounded up: the shares together hold at least the capacity.
        assert_eq!(partition_capacity(3, 4), 1);
        assert_eq!(partition_capacity(17, 4), 5);
        assert_eq!(partition_capacity(3, 1), 3);
        let names = Names::new("q");
        assert_eq!(names.partition_stream(7), "q_p7");
        assert_eq!(names.partition_subject(7), "q.p.7");
    }

    #[test]
    fn consumer_names_are_new_per_ownership() {
        assert_eq!(Names::consumer(3, 17), "p3g17");
        assert!(Names::consumer(3, 17).starts_with(&Names::consumer_prefix(3)));
        assert!(!Names::consumer(31, 1).starts_with(&Names::consumer_prefix(3)));
    }
}
