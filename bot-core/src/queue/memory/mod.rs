//! The in-memory queue: bounded, with per-conversation lanes, no server.
//!
//! The rooms: `handle.rs` ([`MemoryQueue`], its construction and admission of pushes),
//! `queue_impl.rs` (the [`Queue`](super::Queue) implementation), `lanes.rs` (the waiting
//! events, their per-conversation lanes and leases) and `tests.rs`.

mod handle;
mod lanes;
mod queue_impl;
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests spawn producers and pullers directly
mod tests;

pub use handle::MemoryQueue;
