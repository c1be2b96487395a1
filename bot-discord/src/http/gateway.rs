//! Gateway information: where to connect, how many shards, how many session starts are left.

use bot_core::api::Call;

use super::client::DiscordHttp;
use crate::error::Error;
use crate::gateway::GatewayInfo;

impl DiscordHttp {
    /// `GET /gateway/bot`: the gateway URL, recommended shards and session start limit.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`]; [`ErrorKind::Decode`](crate::ErrorKind::Decode) when the
    /// answer has another shape.
    pub async fn gateway_bot(&self) -> Result<GatewayInfo, Error> {
        self.typed(Call::get("gateway_bot", "/gateway/bot")).await
    }
}
