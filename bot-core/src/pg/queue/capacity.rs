//! The capacity check: the queue's estimated size and what a push does when it is full.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use tokio::time::Instant;

use super::inner::Inner;
use crate::error::{Error, ErrorKind};
use crate::limits::Overflow;

/// The queue's size at the last refresh, and this process's counters read around it (additions
/// before, removals after): the estimate adds what this process did since (other processes'
/// pushes are seen at the next refresh).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SizeBase {
    pub(super) events: u64,
    pub(super) bytes: u64,
    pub(super) pushed: u64,
    pub(super) pushed_bytes: u64,
    pub(super) redriven: u64,
    pub(super) acked: u64,
    pub(super) dead: u64,
}

impl Inner {
    /// This process's counters that change the queue's size.
    pub(super) fn local_counts(&self) -> SizeBase {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(AtomicOrdering::Relaxed);
        SizeBase {
            events: 0,
            bytes: 0,
            pushed: get(&c.pushed),
            pushed_bytes: get(&c.pushed_bytes),
            redriven: get(&c.redriven),
            acked: get(&c.acked),
            dead: get(&c.dead),
        }
    }

    /// The queue's size (events in any state, payload bytes) as estimated: the last count plus
    /// what this process pushed, completed and dead-lettered since. Bytes only grow between
    /// counts (completions do not say how large their events were).
    pub(super) fn estimated_size(&self) -> (u64, u64) {
        let base = *self.size.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.local_counts();
        let added =
            now.pushed.saturating_sub(base.pushed) + now.redriven.saturating_sub(base.redriven);
        let removed = now.acked.saturating_sub(base.acked) + now.dead.saturating_sub(base.dead);
        let events = (base.events + added).saturating_sub(removed);
        let bytes = base.bytes + now.pushed_bytes.saturating_sub(base.pushed_bytes);
        (events, bytes)
    }

    /// How many of a batch whose payloads are `sizes` long go in, by the capacity and the
    /// overflow policy: all, the first few ([`Overflow::DropNewest`]), or none (an error).
    /// [`Overflow::Wait`] waits for room up to `push_timeout`.
    pub(super) async fn room_for(&self, sizes: &[usize]) -> Result<usize, Error> {
        let deadline = Instant::now() + self.push_timeout;
        loop {
            let refreshed = self.stats_refreshed.notified();
            tokio::pin!(refreshed);
            refreshed.as_mut().enable();
            let (events, bytes) = self.estimated_size();
            let fitting = sizes
                .iter()
                .scan((events, bytes), |(n, b), &size| {
                    *n += 1;
                    *b += size as u64;
                    (*n <= self.capacity && *b <= self.capacity_bytes).then_some(())
                })
                .count();
            if fitting == sizes.len() {
                return Ok(fitting);
            }
            self.wants_room.store(true, AtomicOrdering::Relaxed);
            match self.overflow {
                Overflow::DropNewest => {
                    // One event larger than the byte capacity still goes into an empty queue.
                    let fitting = if events == 0 { fitting.max(1) } else { fitting };
                    self.count(&self.counters.dropped_full, (sizes.len() - fitting) as u64);
                    return Ok(fitting);
                }
                // A batch larger than the whole capacity goes in once the queue is empty (else
                // it would be refused forever): the bound is then exceeded by at most one batch.
                _ if events == 0 => return Ok(sizes.len()),
                Overflow::Wait if Instant::now() < deadline => {
                    tokio::select! {
                        () = refreshed => {}
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.wakeups.closed.cancelled() => {
                            return Err(Error::new(ErrorKind::QueueClosed, "queue is closed"));
                        }
                    }
                }
                _ => {
                    self.count(&self.counters.refused_full, sizes.len() as u64);
                    tracing::debug!(
                        events,
                        bytes,
                        capacity = self.capacity,
                        capacity_bytes = self.capacity_bytes,
                        batch = sizes.len(),
                        "postgres: queue full; refusing the batch"
                    );
                    return Err(Error::new(
                        ErrorKind::QueueFull,
                        format!(
                            "postgres queue is full (about {events} events and {bytes} payload \
                             bytes; capacity {} events, {} bytes)",
                            self.capacity, self.capacity_bytes
                        ),
                    )
                    .with_retry_after(self.retry_after));
                }
            }
        }
    }
}
