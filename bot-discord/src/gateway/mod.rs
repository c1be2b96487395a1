//! The gateway: shards over WebSockets, identify concurrency, and the shard manager.
//!
//! See [`Shard`] for the connection lifecycle (heartbeats, zombie detection, resume, close
//! codes, back-pressure) and [`ShardManager`] for running a range of shards.

mod batch;
mod close;
mod compression;
mod config;
mod frame;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
#[doc(hidden)]
pub mod fuzz;
mod identify;
#[cfg(feature = "postgres")]
mod identify_pg;
mod manager;
mod session;
mod shard;
mod status;

pub use config::{Intents, ShardConfig, ShardId};
pub use identify::{
    DEFAULT_BUDGET_REFRESH, DEFAULT_IDENTIFY_RESERVE, IDENTIFY_INTERVAL, IdentifyCoordinator,
    IdentifyQueue, SessionStartSource,
};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use identify_pg::{IDENTIFY_TABLE, PgIdentifyCoordinator};
pub use manager::{GatewayInfo, SessionStartLimit, ShardManager, ShardRange};
pub use session::Session;
pub use shard::{GATEWAY_VERSION, QUEUE_ERROR_LOG_INTERVAL, Shard};
pub use status::ShardStatus;
