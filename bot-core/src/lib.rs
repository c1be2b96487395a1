#![doc = include_str!("../README.md")]

pub mod adapter;
mod bot;
pub mod console;
pub mod context;
mod error;
pub mod event;
pub mod handler;
pub mod limits;
pub mod outbound;
pub mod queue;
pub mod router;
pub mod runtime;
mod server;
pub mod state;
pub mod telemetry;
pub mod testing;

pub use adapter::{Adapter, Ingress};
pub use bot::{Bot, BotBuilder, DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT};
pub use context::Context;
pub use error::{BoxError, Error, ErrorKind};
pub use event::{ConversationId, Event, EventId, EventKind, Message, Platform, UserId};
pub use handler::{Handler, HandlerExt};
pub use limits::{Limits, Ordering, Overflow, RetryPolicy};
pub use outbound::{Outbound, OutgoingMessage};
pub use queue::{MemoryQueue, Queue};
pub use router::Router;
pub use runtime::ShutdownReport;
pub use state::{MemoryStateStore, StateStore};
pub use telemetry::{LoggingGuard, Telemetry, init_logging};
