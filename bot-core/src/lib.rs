#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adapter;
pub mod api;
mod bot;
pub mod console;
pub mod context;
pub mod dialog;
pub mod env;
mod error;
pub mod event;
pub mod handler;
pub mod limits;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
pub mod outbound;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod outbox;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod pg;
pub mod pusher;
pub mod queue;
pub mod ratelimit;
pub mod readiness;
pub mod router;
pub mod runtime;
mod secret;
mod server;
mod setters;
pub mod signature;
mod slots;
pub mod state;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use adapter::{Adapter, Attach, Ingress, WebhookRequest, body_for_events};
pub use bot::{Bot, BotBuilder, DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT};
pub use context::Context;
pub use error::{BoxError, Error, ErrorChain, ErrorKind};
pub use event::{
    ChannelId, ConversationId, Event, EventBuffer, EventData, EventId, EventKind, Message,
    Platform, UserId,
};
pub use handler::{Handler, HandlerExt};
pub use limits::{Limits, Ordering, Overflow, RetryPolicy};
pub use outbound::{Outbound, OutgoingMessage};
pub use pusher::Pusher;
pub use queue::{MemoryQueue, Queue};
/// The `regex` crate, for [`Router::text_regex`] without a dependency of one's own.
pub use regex;
pub use router::Router;
pub use runtime::ShutdownReport;
pub use secret::Secret;
pub use server::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_CONNECTIONS, OPS_ADDR_ENV,
};
pub use state::{MemoryStateStore, StateStore};
pub use telemetry::{LoggingGuard, Telemetry, init_logging};

#[cfg(test)]
mod tests {
    /// Every public type can cross threads and tasks (STYLE.md, conventions 7).
    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::Bot>();
        assert_send_sync::<crate::BotBuilder>();
        assert_send_sync::<crate::Ingress>();
        assert_send_sync::<crate::readiness::Readiness>();
        assert_send_sync::<crate::readiness::Component>();
        assert_send_sync::<crate::adapter::Clients>();
        assert_send_sync::<crate::adapter::WebhookRequest>();
        assert_send_sync::<crate::Context>();
        assert_send_sync::<crate::Event>();
        assert_send_sync::<crate::EventBuffer>();
        assert_send_sync::<crate::Error>();
        assert_send_sync::<crate::Limits>();
        assert_send_sync::<crate::MemoryQueue>();
        assert_send_sync::<crate::MemoryStateStore>();
        assert_send_sync::<crate::Router>();
        assert_send_sync::<crate::router::TextMatch>();
        assert_send_sync::<crate::dialog::Dialogs>();
        assert_send_sync::<crate::dialog::DialogPosition>();
        assert_send_sync::<crate::dialog::Answer>();
        assert_send_sync::<crate::dialog::Dialog<String>>();
        assert_send_sync::<crate::state::StateKey>();
        assert_send_sync::<crate::context::StateHandle<'static>>();
        assert_send_sync::<crate::Secret>();
        assert_send_sync::<crate::testing::fake_api::FakeApi>();
        assert_send_sync::<crate::ShutdownReport>();
        assert_send_sync::<crate::Telemetry>();
        assert_send_sync::<crate::handler::BoxHandler>();
        assert_send_sync::<crate::queue::Delivery>();
        assert_send_sync::<crate::queue::DeadLetter>();
        assert_send_sync::<crate::outbound::OutgoingMessage>();
        assert_send_sync::<crate::outbound::PlatformMessage>();
        assert_send_sync::<crate::testing::TestBot>();
        assert_send_sync::<crate::console::Console>();
        assert_send_sync::<crate::Pusher<crate::pusher::Push>>();
        assert_send_sync::<crate::pusher::PushReport>();
        assert_send_sync::<crate::pusher::PushError<String>>();
        assert_send_sync::<crate::ratelimit::SharedLimits>();
        assert_send_sync::<crate::ratelimit::SharedLimitsBuilder>();
        assert_send_sync::<crate::ratelimit::SharedLimit>();
        assert_send_sync::<crate::ratelimit::SharedLimitStats>();
        assert_send_sync::<crate::ratelimit::MemoryRateStore>();
        #[cfg(feature = "postgres")]
        assert_send_sync::<crate::ratelimit::PgRateStore>();
        #[cfg(feature = "redis")]
        assert_send_sync::<crate::ratelimit::RedisRateStore>();
        #[cfg(feature = "nats")]
        {
            assert_send_sync::<crate::nats::JetStreamQueue>();
            assert_send_sync::<crate::nats::JetStreamQueueBuilder>();
            assert_send_sync::<crate::nats::JetStreamCounters>();
        }
    }
}
