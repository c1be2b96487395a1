//! Faults for the fault suite (`tests/faults.rs`), off unless their variables are set.
//!
//! `ACK_FAIL_FILE=<path>`: while that file exists, every acknowledgement fails before it reaches
//! PostgreSQL, as if the database refused it; everything else (claims, lease extensions, retries)
//! works. The runtime must keep the leases of those handled events and apply the acknowledgements
//! once they succeed, so that none of them runs again.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use bot_core::pg::PgQueue;
use bot_core::queue::{Completed, Dead, DeadLetter, Delivery, Lease, Nack, PushReport};
use bot_core::{Error, ErrorKind, Event, Queue};

/// A [`PgQueue`] whose acknowledgements fail while a file exists.
#[derive(Debug)]
pub(crate) struct FailingAcks {
    pub(crate) inner: Arc<PgQueue>,
    pub(crate) flag: PathBuf,
    /// Acknowledgement calls refused.
    pub(crate) refused: AtomicU64,
}

#[async_trait::async_trait]
impl Queue for FailingAcks {
    async fn push_batch(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        self.inner.push_batch(events).await
    }

    async fn pull(&self, max: usize) -> Result<Vec<Delivery>, Error> {
        self.inner.pull(max).await
    }

    async fn ack(&self, leases: &[Lease]) -> Result<Completed, Error> {
        if self.flag.exists() {
            self.refused.fetch_add(1, AtomicOrdering::Relaxed);
            return Err(Error::new(
                ErrorKind::Queue,
                "injected fault: acknowledgement refused",
            ));
        }
        self.inner.ack(leases).await
    }

    async fn nack(&self, nacks: Vec<Nack>) -> Result<Completed, Error> {
        self.inner.nack(nacks).await
    }

    async fn dead(&self, dead: Vec<Dead>) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead(dead).await
    }

    async fn release(&self, deliveries: Vec<Delivery>) -> Result<Completed, Error> {
        self.inner.release(deliveries).await
    }

    async fn stop_pulling(&self) {
        self.inner.stop_pulling().await;
    }

    async fn extend_lease(&self, leases: &[Lease], by: Duration) -> Result<Completed, Error> {
        self.inner.extend_lease(leases, by).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead_letters(limit).await
    }

    async fn redrive(&self, max: usize) -> Result<usize, Error> {
        self.inner.redrive(max).await
    }

    fn lease_duration(&self) -> Option<Duration> {
        self.inner.lease_duration()
    }

    fn dead_letters_evicted(&self) -> u64 {
        self.inner.dead_letters_evicted()
    }

    fn close(&self) {
        self.inner.close();
    }

    fn depth(&self) -> u64 {
        self.inner.depth()
    }
}
