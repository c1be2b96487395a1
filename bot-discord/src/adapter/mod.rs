//! [`Discord`]: the adapter that runs the gateway shards, serves the interactions endpoint, and
//! answers through the REST client, for one application or several.
//!
//! Its rooms: `builder.rs` (the settings, [`DiscordApplication`]), `env.rs` (the same from the
//! environment), `gateway.rs` (each application's shards) and `setup.rs` (guild commands
//! registered at start-up).

mod builder;
mod env;
mod gateway;
mod setup;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bot_core::adapter::{Attach, Clients};
use bot_core::event::ChannelId;
use bot_core::outbound::Channels;
use bot_core::readiness::Component;
use bot_core::{Adapter, Ingress, Outbound, Platform};
use tokio_util::sync::CancellationToken;

use crate::client::DiscordClient;
use crate::gateway::{IdentifyCoordinator, ShardConfig, ShardRange};
use crate::http::DiscordHttp;
use crate::interactions::{self, InteractionsConfig, Pending};

pub use builder::{DiscordApplication, DiscordBuilder};
pub use env::{
    ENV_API_BASE, ENV_APPLICATION_ID, ENV_APPLICATION_PREFIX, ENV_DEV_GUILD_ID, ENV_GATEWAY_URL,
    ENV_GLOBAL_PER_SECOND, ENV_INTENTS, ENV_PUBLIC_KEY, ENV_SHARDS, ENV_TOKEN, ENV_VARS, env_var,
};
use setup::GuildCommands;

/// The Discord adapter: gateway shards, the HTTP interactions endpoint at
/// `POST /discord/interactions`, and the [`DiscordClient`] that answers.
///
/// Cloning is cheap.
///
/// # Examples
///
/// ```no_run
/// use bot_core::{Bot, Context, Error, Event};
/// use bot_discord::Discord;
///
/// async fn echo(cx: Context, event: Event) -> Result<(), Error> {
///     match event.text_content() {
///         Some(text) => cx.reply(text).await,
///         None => Ok(()),
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bot = Bot::builder().adapter(Discord::from_env()?).handler(echo).build()?;
/// bot.serve("0.0.0.0:8080").await?;
/// # Ok(()) }
/// ```
///
/// # Several applications
///
/// One adapter serves several Discord applications (several bots), each with its own token,
/// shards, rate limits and public key. Each event carries its application id as its
/// [`bot_core::EventData::channel`] and is answered through that application's client. Interactions
/// are verified with the key of the application they are for: give each application's portal
/// `…/discord/interactions/<application id>` (the bare path tries every key, the first's
/// first).
///
/// ```no_run
/// use bot_discord::{Discord, DiscordApplication};
/// use bot_discord::interactions::PublicKey;
///
/// # fn run() -> Result<(), bot_discord::Error> {
/// let discord = Discord::builder("token-of-app-1")
///     .application_id("1100000000000000001")
///     .public_key(PublicKey::from_hex(&"ab".repeat(32))?)
///     .application(
///         DiscordApplication::new("1100000000000000002", "token-of-app-2")
///             .public_key(PublicKey::from_hex(&"cd".repeat(32))?),
///     )
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Discord {
    clients: Channels<DiscordClient>,
    pending: Arc<Pending>,
    /// The first (the builder's own) first.
    applications: Vec<Application>,
    gateway_url_override: bool,
    interactions: Option<InteractionsConfig>,
    commands: Option<Arc<GuildCommands>>,
    /// Set once a part stopped for good (a refused token, disallowed intents, guild commands
    /// required and refused): the bot is not ready until it restarts.
    stopped: Arc<Mutex<Vec<Component>>>,
}

/// One application's gateway side: its shards and how they identify.
#[derive(Debug, Clone)]
struct Application {
    /// `None` for a single application whose id the adapter was not told.
    id: Option<ChannelId>,
    /// `None` when the gateway is off.
    shard_config: Option<ShardConfig>,
    shards: ShardRange,
    identify: IdentifyOptions,
}

/// How the shards identify: a coordinator shared with other processes, and the reserve of
/// session starts kept back.
#[derive(Debug, Clone)]
struct IdentifyOptions {
    coordinator: Option<Arc<dyn IdentifyCoordinator>>,
    interval: Duration,
    reserve: u32,
}

impl Discord {
    /// The client that sends replies, of the first application.
    pub fn client(&self) -> &DiscordClient {
        self.clients.default_client()
    }

    /// The REST client of the first application.
    pub fn http(&self) -> &DiscordHttp {
        self.client().http()
    }

    /// The clients of every application, by application id.
    pub fn applications(&self) -> &Channels<DiscordClient> {
        &self.clients
    }

    /// What this configuration cannot do, found when it was built; each is logged as a warning
    /// when the adapter starts. A gateway bot without its application id, for one, can answer
    /// a pressed button or a slash command once, but not with a second message or after a
    /// deferral: [`DiscordBuilder::application_id`] (`DISCORD_APPLICATION_ID`) lifts that.
    pub fn warnings(&self) -> Vec<String> {
        let gateway_without_id = self
            .applications
            .first()
            .is_some_and(|app| app.id.is_none() && app.shard_config.is_some());
        gateway_without_id
            .then(|| {
                format!(
                    "discord: the gateway is on without the application id ({ENV_APPLICATION_ID}): \
                     a pressed button, quick reply or slash command arriving over the gateway \
                     gets its first answer, but a second message or an answer after a deferral \
                     fails and the event is dead-lettered; set {ENV_APPLICATION_ID}"
                )
            })
            .into_iter()
            .collect()
    }

    /// Reports `part` stopped for good: `/readyz` answers 503 naming it until a restart.
    fn stopped_for_good(&self, ingress: &Ingress, part: String, reason: String) {
        let component = ingress.readiness().component(part);
        component.set_not_ready(reason);
        (self.stopped.lock().unwrap_or_else(|p| p.into_inner())).push(component);
    }
}

#[async_trait]
impl Adapter for Discord {
    fn platform(&self) -> Platform {
        Platform::DISCORD
    }

    /// The clients record their calls in the bot's telemetry.
    fn attach(&mut self, bot: &Attach) -> Result<(), bot_core::Error> {
        self.clients.record_in(bot.telemetry());
        Ok(())
    }

    fn outbound(&self) -> Option<Arc<dyn Outbound>> {
        Some(Arc::new(self.clients.clone()))
    }

    /// `Channels<DiscordClient>` always; with one application, its `DiscordClient` and
    /// `DiscordHttp` too.
    fn register_clients(&self, clients: &mut Clients) {
        self.clients.register(clients);
        if self.clients.len() == 1 {
            clients.insert(Arc::new(self.http().clone()));
        }
    }

    fn routes(&self, ingress: Ingress) -> Option<axum::Router> {
        let config = self.interactions.clone()?;
        Some(interactions::router(config, ingress, self.pending.clone()))
    }

    /// Every application's shards, and the guild commands registered once.
    async fn run(
        &self,
        ingress: Ingress,
        shutdown: CancellationToken,
    ) -> Result<(), bot_core::Error> {
        for warning in self.warnings() {
            tracing::warn!("{warning}");
        }
        // Guild commands required and refused stop the shards too.
        let stop = shutdown.child_token();
        let gateways = futures::future::join_all(
            (self.applications.iter()).map(|app| self.run_gateway(app, &ingress, &stop)),
        );
        let setup = async {
            let result = self.register_guild_commands(&ingress, &shutdown).await;
            if result.is_err() {
                stop.cancel();
            }
            result
        };
        let (setup, gateways) = tokio::join!(setup, gateways);
        setup?;
        gateways.into_iter().collect()
    }
}
