#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adapter;
pub mod client;
mod error;
pub mod event;
pub mod gateway;
pub mod http;
pub mod interactions;
pub mod model;
mod render;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use adapter::{
    Discord, DiscordApplication, DiscordBuilder, ENV_API_BASE, ENV_APPLICATION_ID,
    ENV_APPLICATION_PREFIX, ENV_DEV_GUILD_ID, ENV_GATEWAY_URL, ENV_GLOBAL_PER_SECOND, ENV_INTENTS,
    ENV_PUBLIC_KEY, ENV_SHARDS, ENV_TOKEN, ENV_VARS, env_var,
};
pub use client::DiscordClient;
pub use error::{Error, ErrorKind};
pub use event::DiscordEventExt;
pub use http::{ConfigureApi, DiscordHttp};

/// Discord's gateway URL, used until `GET /gateway/bot` or `DISCORD_GATEWAY_URL` says otherwise.
pub const DEFAULT_GATEWAY_URL: &str = "wss://gateway.discord.gg";
/// Discord's REST API base.
pub const DEFAULT_API_BASE: &str = "https://discord.com/api/v10";

#[cfg(test)]
mod tests {
    /// Every public type can cross threads and tasks (STYLE.md, conventions 7).
    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::Discord>();
        assert_send_sync::<crate::DiscordApplication>();
        assert_send_sync::<crate::DiscordBuilder>();
        assert_send_sync::<crate::interactions::InteractionsConfig>();
        assert_send_sync::<crate::DiscordClient>();
        assert_send_sync::<crate::DiscordHttp>();
        assert_send_sync::<crate::http::DiscordHttpBuilder>();
        assert_send_sync::<crate::http::ApplicationCommand>();
        assert_send_sync::<crate::http::CommandSpec>();
        assert_send_sync::<crate::http::ErrorBody>();
        assert_send_sync::<crate::Error>();
        assert_send_sync::<crate::gateway::Shard>();
        assert_send_sync::<crate::gateway::ShardManager>();
        assert_send_sync::<crate::gateway::IdentifyQueue>();
        #[cfg(feature = "postgres")]
        assert_send_sync::<crate::gateway::PgIdentifyCoordinator>();
        assert_send_sync::<crate::interactions::Pending>();
        assert_send_sync::<crate::model::Message>();
        assert_send_sync::<crate::model::Interaction>();
        assert_send_sync::<crate::model::components::DiscordMessage>();
        assert_send_sync::<crate::model::components::Modal>();
    }
}
