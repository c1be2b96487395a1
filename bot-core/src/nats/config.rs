//! [`JetStreamQueueBuilder`]: the settings of a [`JetStreamQueue`], their defaults and checks.

use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::limits::{Limits, Ordering};

use super::handle::JetStreamQueue;

/// Settings of a [`JetStreamQueue`], made with [`JetStreamQueue::builder`].
///
/// Every process sharing a queue must use the same [`name`](Self::name),
/// [`partitions`](Self::partitions) and [`ownership_lease`](Self::ownership_lease): the first
/// two are checked against the partitions' streams, the last against the ownership bucket,
/// and a mismatch fails [`build`](Self::build) with [`ErrorKind::Config`].
#[derive(Debug, Clone)]
#[must_use]
pub struct JetStreamQueueBuilder {
    pub(super) client: async_nats::Client,
    pub(super) settings: Settings,
}

/// The checked settings the queue runs with.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) name: String,
    pub(super) partitions: u32,
    pub(super) ordering: Ordering,
    pub(super) partition_in_flight: usize,
    pub(super) fetch_batch: usize,
    pub(super) ownership_lease: Duration,
    pub(super) ack_wait: Duration,
    pub(super) duplicate_window: Duration,
    pub(super) capacity: usize,
    pub(super) dead_letter_capacity: usize,
    pub(super) replicas: usize,
    pub(super) retry_after: Duration,
    pub(super) request_timeout: Duration,
    pub(super) consume: bool,
}

impl Default for Settings {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            name: "botrt".to_owned(),
            partitions: 16,
            ordering: limits.ordering,
            partition_in_flight: 512,
            fetch_batch: 256,
            ownership_lease: Duration::from_secs(10),
            ack_wait: Duration::from_secs(60),
            duplicate_window: Duration::from_secs(120),
            capacity: limits.queue_capacity,
            dead_letter_capacity: limits.dead_letter_capacity,
            replicas: 1,
            retry_after: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            consume: true,
        }
    }
}

impl JetStreamQueueBuilder {
    pub(super) fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            settings: Settings::default(),
        }
    }

    /// Takes the ordering, queue capacity and dead-letter capacity of `limits`.
    pub fn limits(mut self, limits: &Limits) -> Self {
        self.settings.ordering = limits.ordering;
        self.settings.capacity = limits.queue_capacity;
        self.settings.dead_letter_capacity = limits.dead_letter_capacity;
        self
    }

    /// The queue's name (default `botrt`): the partitions' streams `<name>_p<k>` with subjects
    /// `<name>.p.<k>`, the dead letters' stream `<name>_dead`, the ownership bucket
    /// `<name>_owners`. Letters, digits, `_` and `-` only.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// Partitions the conversations are hashed onto (default 16, at most 1,024). Each is a
    /// stream of its own, consumed by one process at a time, so it bounds how many processes
    /// share the work.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.settings.partitions = partitions;
        self
    }

    /// Events of one conversation one at a time, in order ([`Ordering::PerConversation`], the
    /// default), or not.
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.settings.ordering = ordering;
        self
    }

    /// Messages of one partition delivered to this process and not yet acknowledged, at most
    /// (the consumer's `max_ack_pending`, default 512): the bound on what a process holds.
    pub fn partition_in_flight(mut self, max: usize) -> Self {
        self.settings.partition_in_flight = max;
        self
    }

    /// Messages asked for in one pull request (default 256).
    pub fn fetch_batch(mut self, max: usize) -> Self {
        self.settings.fetch_batch = max;
        self
    }

    /// How long a process owns a partition unless it renews the claim (default 10 s, renewed
    /// every quarter): after a crash, its partitions go to other processes this long after the
    /// last renewal.
    pub fn ownership_lease(mut self, lease: Duration) -> Self {
        self.settings.ownership_lease = lease;
        self
    }

    /// JetStream's `AckWait` (default 60 s): kept alive by the supervisor's lease extensions
    /// (`+WPI`) while handlers run; a message waiting longer behind its conversation's head is
    /// redelivered to the owner, which ignores the copy.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.settings.ack_wait = ack_wait;
        self
    }

    /// The stream's deduplication window on `Nats-Msg-Id` (default 2 minutes): the same event
    /// id pushed again within it is dropped by the server; after it, it is queued again.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.settings.duplicate_window = window;
        self
    }

    /// Events the queue holds at most (default [`Limits::queue_capacity`]), shared evenly by
    /// the partitions: each partition's stream holds `ceil(capacity / partitions)`, and a push
    /// to a full partition fails with [`ErrorKind::QueueFull`].
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.settings.capacity = capacity;
        self
    }

    /// Dead letters kept (default [`Limits::dead_letter_capacity`]); the oldest go first.
    pub fn dead_letter_capacity(mut self, capacity: usize) -> Self {
        self.settings.dead_letter_capacity = capacity;
        self
    }

    /// Stream replicas on a clustered server (default 1).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.settings.replicas = replicas;
        self
    }

    /// The `Retry-After` hint of pushes refused because a partition is full or unreachable
    /// (default 1 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.settings.retry_after = retry_after;
        self
    }

    /// How long a JetStream request or publish acknowledgement may take (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// Whether this process consumes partitions (default `true`). `false` makes a push-only
    /// queue for processes that only take webhooks: it claims no partition and its
    /// [`pull`](crate::Queue::pull) waits until the queue is closed.
    pub fn consume(mut self, consume: bool) -> Self {
        self.settings.consume = consume;
        self
    }

    /// Checks the settings, creates or checks the streams and the bucket, and starts the task
    /// that claims partitions.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for settings out of range or different from those the streams or
    /// bucket was made with; [`ErrorKind::Queue`] when JetStream cannot be reached or refuses.
    pub async fn build(self) -> Result<JetStreamQueue, Error> {
        self.settings.check()?;
        JetStreamQueue::start(self.client, self.settings).await
    }
}

impl Settings {
    fn check(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::new(ErrorKind::Config, what));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return bad(format!(
                "nats: queue name {:?}: 1 to 64 letters, digits, '_' or '-'",
                self.name
            ));
        }
        if !(1..=1024).contains(&self.partitions) {
            return bad(format!(
                "nats: {} partitions: from 1 to 1,024",
                self.partitions
            ));
        }
        if self.partition_in_flight == 0 || self.fetch_batch == 0 {
            return bad("nats: partition_in_flight and fetch_batch must be at least 1".into());
        }
        if self.ownership_lease < Duration::from_millis(400) {
            return bad(format!(
                "nats: ownership lease {:?}: at least 400 ms",
                self.ownership_lease
            ));
        }
        if self.ack_wait < Duration::from_secs(1) {
            return bad(format!("nats: ack wait {:?}: at least 1 s", self.ack_wait));
        }
        if self.duplicate_window.is_zero() || self.capacity == 0 || self.replicas == 0 {
            return bad("nats: duplicate_window, capacity and replicas must be above zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_config_errors() {
        let ok = Settings::default();
        assert!(ok.check().is_ok());
        for bad in [
            Settings {
                name: "a.b".into(),
                ..ok.clone()
            },
            Settings {
                partitions: 0,
                ..ok.clone()
            },
            Settings {
                ownership_lease: Duration::from_millis(10),
                ..ok.clone()
            },
            Settings {
                fetch_batch: 0,
                ..ok.clone()
            },
        ] {
            assert_eq!(bad.check().unwrap_err().kind(), ErrorKind::Config);
        }
    }
}
