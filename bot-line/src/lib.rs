#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adapter;
pub mod client;
mod error;
pub mod event;
pub mod model;
mod render;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod webhook;

pub use adapter::{
    ENV_API_BASE, ENV_CHANNEL_ACCESS_TOKEN, ENV_CHANNEL_PREFIX, ENV_CHANNEL_SECRET,
    ENV_DESTINATION, ENV_VARS, Line, LineBuilder, LineChannel,
};
pub use client::{ConfigureApi, Content, LineClient, LineClientBuilder, RateLimits, RetryKey};
pub use error::{Error, ErrorKind};
pub use event::LineEventExt;
pub use webhook::{SignatureError, WebhookChannel};

#[cfg(test)]
mod tests {
    /// Every public type can cross threads and tasks (STYLE.md, conventions 7).
    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::Line>();
        assert_send_sync::<crate::LineBuilder>();
        assert_send_sync::<crate::LineClient>();
        assert_send_sync::<crate::Error>();
        assert_send_sync::<crate::model::WebhookEvent>();
        assert_send_sync::<crate::model::send::Message>();
        assert_send_sync::<crate::client::LineSpec>();
        assert_send_sync::<crate::model::RichMenu>();
        assert_send_sync::<crate::model::RichMenuResponse>();
        assert_send_sync::<crate::model::WebhookEndpoint>();
        assert_send_sync::<crate::model::WebhookTest>();
        assert_send_sync::<crate::model::flex::FlexMessage>();
    }
}
