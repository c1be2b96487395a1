//! Each application's shards: `GET /gateway/bot` with its token, its identify queue, its
//! manager.

use std::sync::Arc;
use std::time::Duration;

use bot_core::Ingress;
use tokio_util::sync::CancellationToken;

use super::{Application, Discord};
use crate::gateway::{
    DEFAULT_BUDGET_REFRESH, GatewayInfo, IdentifyQueue, SessionStartLimit, ShardConfig,
    ShardManager, ShardRange,
};
use crate::http::DiscordHttp;

/// How long to wait before asking `GET /gateway/bot` again after it failed.
const GATEWAY_INFO_RETRY: Duration = Duration::from_secs(5);

impl Discord {
    /// The readiness component of `app`'s gateway: `discord gateway`, followed by the
    /// application id when there are several.
    fn gateway_part(&self, app: &Application) -> String {
        match (&app.id, self.applications.len()) {
            (Some(id), 2..) => format!("discord gateway {id}"),
            _ => "discord gateway".to_owned(),
        }
    }

    /// Runs `app`'s shards until `shutdown`, or until the gateway refuses them for good.
    pub(super) async fn run_gateway(
        &self,
        app: &Application,
        ingress: &Ingress,
        shutdown: &CancellationToken,
    ) -> Result<(), bot_core::Error> {
        let Some(config) = app.shard_config.clone() else {
            return Ok(());
        };
        let http = self.clients.get(app.id.as_ref())?.http().clone();
        let Some(info) = self.gateway_info(&http, app, &config, shutdown).await else {
            if !shutdown.is_cancelled() {
                self.stopped_for_good(
                    ingress,
                    self.gateway_part(app),
                    "stopped: GET /gateway/bot refused the token".to_owned(),
                );
            }
            return Ok(());
        };
        let limit = info.session_start_limit;
        let identify = match &app.identify.coordinator {
            Some(coordinator) => IdentifyQueue::with_coordinator(
                limit.max_concurrency,
                app.identify.interval,
                coordinator.clone(),
            ),
            None => IdentifyQueue::new(limit.max_concurrency),
        }
        .session_start_limit(&limit, app.identify.reserve)
        .refresh_budget_from(Arc::new(http), DEFAULT_BUDGET_REFRESH);
        let manager = ShardManager::from_gateway_info_with(config, app.shards, &info, identify);
        tracing::info!(application = ?app.id, shards = ?manager, "discord gateway starting");
        let result = manager.run(ingress.clone(), shutdown.clone()).await;
        if let Err(error) = &result {
            self.stopped_for_good(ingress, self.gateway_part(app), format!("stopped: {error}"));
        }
        result.map_err(bot_core::Error::from)
    }

    /// Asks `GET /gateway/bot` until it answers (or the bot stops). With an explicit gateway URL
    /// and shard count, a failure falls back to one identify bucket.
    async fn gateway_info(
        &self,
        http: &DiscordHttp,
        app: &Application,
        config: &ShardConfig,
        shutdown: &CancellationToken,
    ) -> Option<GatewayInfo> {
        loop {
            match http.gateway_bot().await {
                Ok(info) => return Some(info),
                Err(error)
                    if error.is_fatal() || error.kind() == crate::ErrorKind::Authentication =>
                {
                    tracing::error!(%error, application = ?app.id, "discord: GET /gateway/bot refused the token");
                    return None;
                }
                Err(error) if self.gateway_url_override && app.shards != ShardRange::Auto => {
                    tracing::warn!(%error, application = ?app.id, "discord: GET /gateway/bot failed; using the configured gateway and shards");
                    return Some(GatewayInfo {
                        url: config.url.clone(),
                        shards: 1,
                        session_start_limit: SessionStartLimit {
                            total: 1000,
                            remaining: 1000,
                            reset_after: 0,
                            max_concurrency: 1,
                        },
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, application = ?app.id, "discord: GET /gateway/bot failed; asking again");
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(GATEWAY_INFO_RETRY) => {}
                    }
                }
            }
        }
    }
}
