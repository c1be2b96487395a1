//! [`PgQueue`]: the durable queue, shared by any number of processes.
//!
//! The rooms:
//!
//! - `handle.rs`: [`PgQueue`], what it tells about the queue, its metrics and its shutdown;
//! - `queue_impl.rs`: the [`Queue`](crate::Queue) implementation (push, pull, complete);
//! - `builder.rs`: [`PgQueueBuilder`], the settings, their defaults and the start of the tasks;
//! - `inner.rs`: the state shared by the handle and the tasks, and how one statement runs;
//! - `claimer.rs`: the task that claims events for the pullers;
//! - `maintenance.rs`: the task that rescues expired leases, prunes and counts;
//! - `push.rs`: the writers that write the pushes waiting in line together;
//! - `capacity.rs`: the capacity check of pushes;
//! - `counters.rs`: [`QueueCounters`] and [`QueueStats`];
//! - `import.rs`: [`import`], bulk loading through `COPY`;
//! - `sql.rs`: the statements.
//!
//! The `LISTEN` and `NOTIFY` tasks live beside this module (`pg/notify.rs`) and know only the
//! signals the queue shares with them (`pg/wakeup.rs`).

mod builder;
mod capacity;
mod claimer;
mod counters;
mod handle;
mod import;
mod inner;
mod maintenance;
mod push;
mod queue_impl;
mod sql;

pub use builder::PgQueueBuilder;
pub use counters::{QueueCounters, QueueStats};
pub use handle::PgQueue;
pub use import::import;
