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
    ENV_API_BASE, ENV_APP_SECRET, ENV_PAGE_ACCESS_TOKEN, ENV_PAGE_ID, ENV_PAGE_PREFIX, ENV_VARS,
    ENV_VERIFY_TOKEN, Messenger, MessengerBuilder,
};
pub use client::{ConfigureApi, MessengerClient, MessengerClientBuilder, RateLimits};
pub use error::{Error, ErrorKind};
pub use event::MessengerEventExt;
pub use webhook::{SignatureError, WebhookConfig};

#[cfg(test)]
mod tests {
    /// Every public type can cross threads and tasks (STYLE.md, conventions 7).
    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::Messenger>();
        assert_send_sync::<crate::MessengerBuilder>();
        assert_send_sync::<crate::MessengerClient>();
        assert_send_sync::<crate::MessengerClientBuilder>();
        assert_send_sync::<crate::RateLimits>();
        assert_send_sync::<crate::Error>();
        assert_send_sync::<crate::ErrorKind>();
        assert_send_sync::<crate::SignatureError>();
        assert_send_sync::<crate::event::Batch>();
        assert_send_sync::<crate::webhook::WebhookConfig>();
        assert_send_sync::<crate::model::WebhookBody>();
        assert_send_sync::<crate::model::MessagingEvent>();
        assert_send_sync::<crate::model::send::Message>();
        assert_send_sync::<crate::model::send::GraphError>();
        assert_send_sync::<crate::model::send::Profile>();
        assert_send_sync::<crate::model::send::Recipient>();
        assert_send_sync::<crate::client::GraphApi>();
        assert_send_sync::<crate::model::profile::MessengerProfile>();
        assert_send_sync::<crate::model::profile::MenuItem>();
        assert_send_sync::<crate::model::profile::ProfileField>();
        assert_send_sync::<crate::model::subscription::SubscribedApp>();
        assert_send_sync::<crate::model::subscription::WebhookField>();
        assert_send_sync::<crate::model::template::GenericTemplate>();
        assert_send_sync::<crate::model::template::MediaTemplate>();
    }

    #[cfg(feature = "testing")]
    #[test]
    fn testing_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::testing::FakeMessenger>();
        assert_send_sync::<crate::testing::WebhookBuilder>();
        assert_send_sync::<crate::testing::SignedWebhook>();
        assert_send_sync::<crate::testing::SentMessage>();
        assert_send_sync::<crate::testing::SentAction>();
    }
}
