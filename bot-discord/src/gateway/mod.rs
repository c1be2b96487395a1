//! The gateway: shards over WebSockets, identify concurrency, and the shard manager.
//!
//! See [`Shard`] for the connection lifecycle (heartbeats, zombie detection, resume, close
//! codes, back-pressure) and [`ShardManager`] for running a range of shards.

mod close;
mod compression;
mod config;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzz;
mod identify;
mod manager;
mod session;
mod shard;

pub use config::{Intents, ShardConfig, ShardId};
pub use identify::{IDENTIFY_INTERVAL, IdentifyQueue};
pub use manager::{GatewayInfo, SessionStartLimit, ShardManager, ShardRange};
pub use session::Session;
pub use shard::{GATEWAY_VERSION, Shard, ShardStatus};
