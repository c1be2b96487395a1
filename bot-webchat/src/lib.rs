#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adapter;
mod api;
pub mod client;
pub mod config;
mod error;
mod event;
pub mod fanout;
mod hub;
mod metrics;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod pg;
pub mod protocol;
mod render;
mod socket;
pub mod token;
pub mod widget;

pub use adapter::{WebChat, WebChatBuilder};
pub use client::WebChatClient;
pub use config::{ENV_ADDR, ENV_PATH, ENV_SECRET, ENV_VARS, WebChatConfig};
pub use error::{Error, ErrorKind};
pub use fanout::{Envelope, Fanout, LocalDelivery};
pub use hub::Delivery;
pub use metrics::Stats;
pub use protocol::CloseReason;
pub use render::{PLATFORM, WireAction, WireButton, WireCard, WireFile, WireImage, WireMessage};

#[cfg(test)]
mod tests {
    /// Every public type can cross threads and tasks (STYLE.md, conventions 7).
    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::WebChat>();
        assert_send_sync::<crate::WebChatBuilder>();
        assert_send_sync::<crate::WebChatClient>();
        assert_send_sync::<crate::WebChatConfig>();
        assert_send_sync::<crate::Error>();
        assert_send_sync::<crate::Stats>();
        assert_send_sync::<crate::Delivery>();
        assert_send_sync::<crate::WireMessage>();
        assert_send_sync::<crate::protocol::Inbound>();
    }
}
