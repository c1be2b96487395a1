//! [`FakeDiscord`]: the fake gateway and the fake REST API that points at it.

use bot_core::Secret;
use bot_core::api::ConfigureApi as _;

use super::{FakeDiscordApi, FakeGateway};
use crate::gateway::ShardRange;
use crate::{Discord, DiscordBuilder};

/// A [`FakeGateway`] and a [`FakeDiscordApi`] whose `GET /gateway/bot` names it (one shard, one
/// identify bucket): what an end-to-end test of a Discord bot starts with.
#[derive(Debug)]
pub struct FakeDiscord {
    /// The gateway: dispatches in, what the shard sent recorded.
    pub gateway: FakeGateway,
    /// The REST API: messages, interaction callbacks and follow-ups recorded.
    pub api: FakeDiscordApi,
}

impl FakeDiscord {
    /// Starts both fakes for the bot token `token`.
    ///
    /// # Errors
    ///
    /// Fails when no port can be bound.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        let gateway = FakeGateway::start(token).await?;
        let api = FakeDiscordApi::start(token, &gateway.url(), 1, 1).await?;
        Ok(Self { gateway, api })
    }

    /// A [`Discord`] builder for `token` on these fakes: their REST API, one shard. Set what
    /// the test needs besides (an application id, the HTTP limits) and build.
    pub fn builder(&self, token: impl Into<Secret>) -> DiscordBuilder {
        Discord::builder(token)
            .api_base(self.api.url())
            .shards(ShardRange::Count(1))
    }
}
