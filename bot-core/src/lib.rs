//! bot-core: the platform-neutral runtime under LINE, Messenger and Discord bots.
//!
//! Events from every platform become one [`Event`] type and go through one bounded pipeline:
//! an adapter verifies and parses a webhook, submits the events to a [`Queue`], and the supervisor
//! runs your [`Handler`] with a global in-flight bound, per-conversation ordering, time-outs,
//! retries, panic isolation, dead letters and a graceful drain.
//!
//! # Feature flags
//!
//! | feature      | default | what it adds |
//! |--------------|---------|--------------|
//! | `prometheus` | yes     | Prometheus text exposition on `/metrics` |
//! | `otlp`       | yes     | OTLP/HTTP export of metrics and traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set |

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
