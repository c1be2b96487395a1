//! [`Discord`]: the adapter that runs the gateway shards, serves the interactions endpoint, and
//! answers through the REST client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bot_core::adapter::{Attach, Clients};
use bot_core::api::{ApiConfig, ConfigureApi};
use bot_core::readiness::Component;
use bot_core::{Adapter, Ingress, Outbound, Platform, Secret};
use tokio_util::sync::CancellationToken;

use crate::client::DiscordClient;
use crate::error::Error;
use crate::gateway::{
    DEFAULT_BUDGET_REFRESH, DEFAULT_IDENTIFY_RESERVE, GatewayInfo, IDENTIFY_INTERVAL,
    IdentifyCoordinator, IdentifyQueue, Intents, SessionStartLimit, ShardConfig, ShardManager,
    ShardRange,
};
use crate::http::{DiscordHttp, DiscordHttpBuilder};
use crate::interactions::{self, InteractionsConfig, Pending, PublicKey};

/// `DISCORD_TOKEN`: the bot token (gateway and REST).
pub const ENV_TOKEN: &str = "DISCORD_TOKEN";
/// `DISCORD_APPLICATION_ID`: the application id (to answer interactions).
pub const ENV_APPLICATION_ID: &str = "DISCORD_APPLICATION_ID";
/// `DISCORD_PUBLIC_KEY`: the application's public key (hex), to verify HTTP interactions.
pub const ENV_PUBLIC_KEY: &str = "DISCORD_PUBLIC_KEY";
/// `DISCORD_API_BASE`: the REST base (default `https://discord.com/api/v10`).
pub const ENV_API_BASE: &str = "DISCORD_API_BASE";
/// `DISCORD_GATEWAY_URL`: overrides the gateway URL `GET /gateway/bot` gives.
pub const ENV_GATEWAY_URL: &str = "DISCORD_GATEWAY_URL";
/// `DISCORD_INTENTS`: a number or names joined by `|` (default: the message intents).
pub const ENV_INTENTS: &str = "DISCORD_INTENTS";
/// `DISCORD_SHARDS`: `auto`, a count, or `from..to/total` (default `auto`).
pub const ENV_SHARDS: &str = "DISCORD_SHARDS";
/// `DISCORD_GLOBAL_PER_SECOND`: the REST client's proactive global limit (default 50; Discord
/// grants large bots more, and load tests against a fake lift it).
pub const ENV_GLOBAL_PER_SECOND: &str = "DISCORD_GLOBAL_PER_SECOND";

/// How long to wait before asking `GET /gateway/bot` again after it failed.
const GATEWAY_INFO_RETRY: Duration = Duration::from_secs(5);

/// The Discord adapter.
///
/// Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Discord {
    http: DiscordHttp,
    client: DiscordClient,
    pending: Arc<Pending>,
    shard_config: Option<ShardConfig>,
    shards: ShardRange,
    gateway_url_override: bool,
    interactions: Option<InteractionsConfig>,
    identify: IdentifyOptions,
    /// Set once the gateway stopped for good (a refused token, disallowed intents): the bot is
    /// not ready until it restarts.
    stopped: Arc<Mutex<Option<Component>>>,
}

/// How the shards identify: a coordinator shared with other processes, and the reserve of
/// session starts kept back.
#[derive(Debug, Clone)]
struct IdentifyOptions {
    coordinator: Option<Arc<dyn IdentifyCoordinator>>,
    interval: Duration,
    reserve: u32,
}

/// Builds a [`Discord`] adapter.
#[derive(Debug, Clone)]
#[must_use]
pub struct DiscordBuilder {
    token: Secret,
    application_id: Option<String>,
    public_key: Option<PublicKey>,
    http: DiscordHttpBuilder,
    shard_config: ShardConfig,
    gateway: bool,
    gateway_url: Option<String>,
    shards: ShardRange,
    defer_after: Option<Duration>,
    identify: IdentifyOptions,
}

impl DiscordBuilder {
    /// The application id, needed to answer interactions.
    pub fn application_id(mut self, id: impl Into<String>) -> Self {
        self.application_id = Some(id.into());
        self
    }

    /// Serves the HTTP interactions endpoint, verified with this public key.
    pub fn public_key(mut self, key: PublicKey) -> Self {
        self.public_key = Some(key);
        self
    }

    /// Configures the REST client's own settings (global limit, invalid request budget); the
    /// shared ones (base URL, retries, time-outs) are [`ConfigureApi`]'s, on this builder too.
    pub fn http(
        mut self,
        configure: impl FnOnce(DiscordHttpBuilder) -> DiscordHttpBuilder,
    ) -> Self {
        self.http = configure(self.http);
        self
    }

    /// Configures the shards (intents, compression, backoff, bot messages).
    pub fn shard_config(mut self, configure: impl FnOnce(ShardConfig) -> ShardConfig) -> Self {
        self.shard_config = configure(self.shard_config);
        self
    }

    /// Uses this gateway URL instead of what `GET /gateway/bot` says.
    pub fn gateway_url(mut self, url: impl Into<String>) -> Self {
        self.gateway_url = Some(url.into());
        self
    }

    /// Which shards this process runs (default all of Discord's recommendation).
    pub fn shards(mut self, shards: ShardRange) -> Self {
        self.shards = shards;
        self
    }

    /// Whether to connect to the gateway (default true). An interactions-only bot turns it off.
    pub fn gateway(mut self, gateway: bool) -> Self {
        self.gateway = gateway;
        self
    }

    /// Spaces identifies through `coordinator`, shared with the other processes that run slices
    /// of this bot's shards (`PgIdentifyCoordinator` with feature `postgres`), instead of within
    /// this process only.
    pub fn identify_coordinator(mut self, coordinator: Arc<dyn IdentifyCoordinator>) -> Self {
        self.identify.coordinator = Some(coordinator);
        self
    }

    /// Session starts of the day kept back (default [`DEFAULT_IDENTIFY_RESERVE`]): once only
    /// these are left, shards do not identify until the budget resets.
    pub fn identify_reserve(mut self, reserve: u32) -> Self {
        self.identify.reserve = reserve;
        self
    }

    /// How long the interactions endpoint waits for the handler before deferring (default 2.5 s).
    pub fn defer_after(mut self, wait: Duration) -> Self {
        self.defer_after = Some(wait);
        self
    }

    /// Builds the adapter.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] for an invalid REST configuration, or a public key without an
    /// application id.
    pub fn build(self) -> Result<Discord, Error> {
        if self.public_key.is_some() && self.application_id.is_none() {
            return Err(Error::config(format!(
                "discord: {ENV_PUBLIC_KEY} needs {ENV_APPLICATION_ID} too, to answer interactions"
            )));
        }
        let http = self.http.build()?;
        let pending = Arc::new(Pending::default());
        let client = DiscordClient::new(http.clone(), self.application_id, pending.clone());
        let mut shard_config = self.shard_config;
        shard_config.token = self.token;
        let gateway_url_override = self.gateway_url.is_some();
        if let Some(url) = self.gateway_url {
            shard_config.url = url;
        }
        let interactions = self.public_key.map(|key| {
            let mut config = InteractionsConfig::new(key);
            if let Some(wait) = self.defer_after {
                config.defer_after = wait;
            }
            config
        });
        Ok(Discord {
            http,
            client,
            pending,
            shard_config: self.gateway.then_some(shard_config),
            shards: self.shards,
            gateway_url_override,
            interactions,
            identify: self.identify,
            stopped: Arc::default(),
        })
    }
}

/// The REST client's settings: `Discord::builder(token).api_base(..).retry(..)`.
impl ConfigureApi for DiscordBuilder {
    fn api_config(&mut self) -> &mut ApiConfig {
        self.http.api_config()
    }

    fn max_retry_after(mut self, max: Duration) -> Self {
        self.http = self.http.max_retry_after(max);
        self
    }
}

impl Discord {
    /// Starts an adapter with the bot token.
    pub fn builder(token: impl Into<Secret>) -> DiscordBuilder {
        let token = token.into();
        DiscordBuilder {
            http: DiscordHttp::builder(token.clone()),
            shard_config: ShardConfig::new(token.clone()),
            token,
            application_id: None,
            public_key: None,
            gateway: true,
            gateway_url: None,
            shards: ShardRange::Auto,
            defer_after: None,
            identify: IdentifyOptions {
                coordinator: None,
                interval: IDENTIFY_INTERVAL,
                reserve: DEFAULT_IDENTIFY_RESERVE,
            },
        }
    }

    /// An adapter configured from `DISCORD_TOKEN`, `DISCORD_APPLICATION_ID`, `DISCORD_PUBLIC_KEY`,
    /// `DISCORD_API_BASE`, `DISCORD_GATEWAY_URL`, `DISCORD_INTENTS`, `DISCORD_SHARDS` and
    /// `DISCORD_GLOBAL_PER_SECOND`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when `DISCORD_TOKEN` is missing or a variable is invalid.
    pub fn from_env() -> Result<Self, Error> {
        Self::try_from_env()?.ok_or_else(|| Error::config(format!("discord: set {ENV_TOKEN}")))
    }

    /// As [`Discord::from_env`], but `Ok(None)` when `DISCORD_TOKEN` is not set.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when a variable is invalid.
    pub fn try_from_env() -> Result<Option<Self>, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let Some(token) = var(ENV_TOKEN) else {
            if var(ENV_PUBLIC_KEY).is_some() || var(ENV_APPLICATION_ID).is_some() {
                return Err(Error::config(format!(
                    "discord: {ENV_PUBLIC_KEY} or {ENV_APPLICATION_ID} is set but {ENV_TOKEN} is not"
                )));
            }
            return Ok(None);
        };
        let mut builder = Self::builder(token);
        if let Some(id) = var(ENV_APPLICATION_ID) {
            builder = builder.application_id(id);
        }
        if let Some(key) = var(ENV_PUBLIC_KEY) {
            builder = builder.public_key(PublicKey::from_hex(&key)?);
        }
        if let Some(base) = var(ENV_API_BASE) {
            builder = builder.api_base(base);
        }
        if let Some(url) = var(ENV_GATEWAY_URL) {
            builder = builder.gateway_url(url);
        }
        if let Some(intents) = var(ENV_INTENTS) {
            let intents: Intents = intents.parse()?;
            builder = builder.shard_config(|c| c.intents(intents));
        }
        if let Some(shards) = var(ENV_SHARDS) {
            builder = builder.shards(shards.parse()?);
        }
        if let Some(limit) = var(ENV_GLOBAL_PER_SECOND) {
            let per_second: u32 = limit.trim().parse().map_err(|_| {
                Error::config(format!(
                    "discord: {ENV_GLOBAL_PER_SECOND} must be a number of requests per second, not {limit:?}"
                ))
            })?;
            builder = builder.http(|h| h.global_per_second(per_second));
        }
        builder.build().map(Some)
    }

    /// The client that sends replies.
    pub fn client(&self) -> &DiscordClient {
        &self.client
    }

    /// The REST client.
    pub fn http(&self) -> &DiscordHttp {
        &self.http
    }

    /// Reports the gateway stopped for good: `/readyz` answers 503 naming it until a restart.
    fn stopped_for_good(&self, ingress: &Ingress, reason: String) {
        let component = ingress.readiness().component("discord gateway");
        component.set_not_ready(reason);
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some(component);
    }

    /// Asks `GET /gateway/bot` until it answers (or the bot stops). With an explicit gateway URL
    /// and shard count, a failure falls back to one identify bucket.
    async fn gateway_info(
        &self,
        config: &ShardConfig,
        shutdown: &CancellationToken,
    ) -> Option<GatewayInfo> {
        loop {
            match self.http.gateway_bot().await {
                Ok(info) => return Some(info),
                Err(error)
                    if error.is_fatal() || error.kind() == crate::ErrorKind::Authentication =>
                {
                    tracing::error!(%error, "discord: GET /gateway/bot refused the token");
                    return None;
                }
                Err(error) if self.gateway_url_override && self.shards != ShardRange::Auto => {
                    tracing::warn!(%error, "discord: GET /gateway/bot failed; using the configured gateway and shards");
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
                    tracing::warn!(%error, "discord: GET /gateway/bot failed; asking again");
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(GATEWAY_INFO_RETRY) => {}
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Adapter for Discord {
    fn platform(&self) -> Platform {
        Platform::DISCORD
    }

    fn attach(&mut self, bot: &Attach) -> Result<(), bot_core::Error> {
        self.http = self.http.with_telemetry(bot.telemetry().clone());
        self.client.set_http(self.http.clone());
        Ok(())
    }

    fn outbound(&self) -> Option<Arc<dyn Outbound>> {
        Some(Arc::new(self.client.clone()))
    }

    fn register_clients(&self, clients: &mut Clients) {
        clients.insert(Arc::new(self.client.clone()));
        clients.insert(Arc::new(self.http.clone()));
    }

    fn routes(&self, ingress: Ingress) -> Option<axum::Router> {
        let config = self.interactions.clone()?;
        Some(interactions::router(config, ingress, self.pending.clone()))
    }

    async fn run(
        &self,
        ingress: Ingress,
        shutdown: CancellationToken,
    ) -> Result<(), bot_core::Error> {
        let Some(config) = self.shard_config.clone() else {
            return Ok(());
        };
        let Some(info) = self.gateway_info(&config, &shutdown).await else {
            if !shutdown.is_cancelled() {
                self.stopped_for_good(
                    &ingress,
                    "stopped: GET /gateway/bot refused the token".to_owned(),
                );
            }
            return Ok(());
        };
        let limit = info.session_start_limit;
        let identify = match &self.identify.coordinator {
            Some(coordinator) => IdentifyQueue::with_coordinator(
                limit.max_concurrency,
                self.identify.interval,
                coordinator.clone(),
            ),
            None => IdentifyQueue::new(limit.max_concurrency),
        }
        .session_start_limit(&limit, self.identify.reserve)
        .refresh_budget_from(Arc::new(self.http.clone()), DEFAULT_BUDGET_REFRESH);
        let manager = ShardManager::from_gateway_info_with(config, self.shards, &info, identify);
        tracing::info!(shards = ?manager, "discord gateway starting");
        let result = manager.run(ingress.clone(), shutdown).await;
        if let Err(error) = &result {
            self.stopped_for_good(&ingress, format!("stopped: {error}"));
        }
        result.map_err(bot_core::Error::from)
    }
}
