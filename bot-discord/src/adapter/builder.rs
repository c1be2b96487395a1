//! [`DiscordBuilder`] and [`DiscordApplication`]: the adapter's settings, for its first
//! application and any further ones.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::api::{ApiConfig, ConfigureApi};
use bot_core::event::ChannelId;
use bot_core::outbound::Channels;
use bot_core::{Platform, Secret};

use super::setup::GuildCommands;
use super::{Application, Discord, IdentifyOptions};
use crate::client::DiscordClient;
use crate::error::Error;
use crate::gateway::{
    DEFAULT_IDENTIFY_RESERVE, IDENTIFY_INTERVAL, IdentifyCoordinator, ShardConfig, ShardRange,
};
use crate::http::{CommandSpec, DiscordHttp, DiscordHttpBuilder};
use crate::interactions::{InteractionsApplication, InteractionsConfig, Pending, PublicKey};

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
    applications: Vec<DiscordApplication>,
    dev_guild: Option<String>,
    guild_commands: Vec<CommandSpec>,
    require_guild_commands: bool,
    /// `None`: scoped when there are several applications.
    scoped_event_ids: Option<bool>,
}

/// Another Discord application (another bot) a [`Discord`] adapter serves, besides the one it
/// was built with: its own token, shards, rate limits and public key. The shard settings
/// ([`DiscordBuilder::shard_config`], the gateway URL, whether to connect) are the adapter's.
#[derive(Debug, Clone)]
#[must_use]
pub struct DiscordApplication {
    id: String,
    token: Secret,
    public_key: Option<PublicKey>,
    http: DiscordHttpBuilder,
    shards: ShardRange,
    coordinator: Option<Arc<dyn IdentifyCoordinator>>,
}

impl DiscordApplication {
    /// The application `id` (its snowflake, the `bot.channel` of its metrics; surrounding
    /// white space, such as a secret file's newline, is dropped), with its bot token.
    pub fn new(id: impl Into<String>, token: impl Into<Secret>) -> Self {
        let token = token.into();
        Self {
            id: trimmed(id.into()),
            http: DiscordHttp::builder(token.clone()),
            token,
            public_key: None,
            shards: ShardRange::Auto,
            coordinator: None,
        }
    }

    /// Verifies its HTTP interactions with this public key (served at
    /// `/discord/interactions/<id>`).
    pub fn public_key(mut self, key: PublicKey) -> Self {
        self.public_key = Some(key);
        self
    }

    /// Configures its REST client (global limit, retries, ...); its base URL is the adapter's
    /// unless set here.
    pub fn http(
        mut self,
        configure: impl FnOnce(DiscordHttpBuilder) -> DiscordHttpBuilder,
    ) -> Self {
        self.http = configure(self.http);
        self
    }

    /// Which of its shards this process runs (default all of Discord's recommendation).
    pub fn shards(mut self, shards: ShardRange) -> Self {
        self.shards = shards;
        self
    }

    /// Spaces its identifies through `coordinator`, shared with the other processes that run
    /// its shards (session starts are counted per bot, so each application has its own).
    pub fn identify_coordinator(mut self, coordinator: Arc<dyn IdentifyCoordinator>) -> Self {
        self.coordinator = Some(coordinator);
        self
    }
}

impl Discord {
    /// Starts an adapter with the bot token (of its first application).
    pub fn builder(token: impl Into<Secret>) -> DiscordBuilder {
        DiscordBuilder::new(token.into())
    }
}

impl DiscordBuilder {
    fn new(token: Secret) -> Self {
        Self {
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
            applications: Vec::new(),
            dev_guild: None,
            guild_commands: Vec::new(),
            require_guild_commands: false,
            scoped_event_ids: None,
        }
    }

    /// The application id, needed to answer interactions, to register commands, and with
    /// [`DiscordBuilder::application`]; events then carry it as their channel. Surrounding white
    /// space (a secret file's newline) is dropped.
    pub fn application_id(mut self, id: impl Into<String>) -> Self {
        self.application_id = Some(trimmed(id.into()));
        self
    }

    /// Serves the HTTP interactions endpoint, verified with this public key.
    pub fn public_key(mut self, key: PublicKey) -> Self {
        self.public_key = Some(key);
        self
    }

    /// Serves another application in the same bot, with its own token, shards and key.
    pub fn application(mut self, application: DiscordApplication) -> Self {
        self.applications.push(application);
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

    /// Configures the shards (intents, compression, backoff, bot messages), of every
    /// application.
    pub fn shard_config(mut self, configure: impl FnOnce(ShardConfig) -> ShardConfig) -> Self {
        self.shard_config = configure(self.shard_config);
        self
    }

    /// Uses this gateway URL instead of what `GET /gateway/bot` says, for every application.
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
    /// this process only. Further applications take theirs with
    /// [`DiscordApplication::identify_coordinator`].
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

    /// The development guild (env `DISCORD_DEV_GUILD_ID`): the
    /// [`DiscordBuilder::guild_commands`] are registered there when the adapter starts. A
    /// snowflake; surrounding white space is dropped.
    pub fn dev_guild(mut self, guild_id: impl Into<String>) -> Self {
        self.dev_guild = Some(trimmed(guild_id.into()));
        self
    }

    /// Commands registered in the development guild when the adapter starts, for every
    /// application, replacing that guild's commands (`PUT .../guilds/{guild}/commands`; a guild
    /// sees them at once, where global commands take up to an hour). Without a dev guild they are
    /// not registered, so the same code serves development (guild set) and production (not
    /// set). A failure is logged and counted (`bot.setup.steps{step="guild_commands"}`), and
    /// stops nothing unless [`DiscordBuilder::require_guild_commands`].
    pub fn guild_commands(mut self, commands: impl IntoIterator<Item = CommandSpec>) -> Self {
        self.guild_commands = commands.into_iter().collect();
        self
    }

    /// Whether a failure to register the guild commands stops the adapter (its shards stop, and
    /// `/readyz` answers 503 naming it). Default false.
    pub fn require_guild_commands(mut self, required: bool) -> Self {
        self.require_guild_commands = required;
        self
    }

    /// Whether gateway event ids are prefixed with their application id
    /// (`<application id>:<snowflake>`). Default: with several applications, so that two of
    /// them in one guild, seeing one message under one snowflake, are not deduplicated into one
    /// event. Adding a second application therefore changes every gateway event id of the
    /// first; a single-application bot that will grow sets it now, so that the ids change in a
    /// deploy of its choosing (with the queue drained: an old and a new process would see one
    /// message under two ids). Turned off with several applications, two bots in one guild
    /// answer each message once between them. Needs the application id.
    pub fn scoped_event_ids(mut self, scoped: bool) -> Self {
        self.scoped_event_ids = Some(scoped);
        self
    }

    /// Builds the adapter.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] for an invalid REST configuration, a public key, guild
    /// commands or scoped event ids without an application id, further applications while the
    /// first has no id, two applications with the same id, or an application or dev guild id
    /// that is not a snowflake.
    pub fn build(self) -> Result<Discord, Error> {
        let first_id = self.application_id.clone();
        if first_id.is_none() {
            let need = if !self.applications.is_empty() {
                Some("with several applications, the first")
            } else if self.public_key.is_some() {
                Some("to answer interactions, it")
            } else if self.dev_guild.is_some() && !self.guild_commands.is_empty() {
                Some("to register guild commands, it")
            } else if self.scoped_event_ids == Some(true) {
                Some("to scope event ids, it")
            } else {
                None
            };
            if let Some(need) = need {
                return Err(Error::config(format!(
                    "discord: {need} needs its application id ({})",
                    super::ENV_APPLICATION_ID
                )));
            }
        }
        let mut ids =
            (self.application_id.iter()).chain(self.applications.iter().map(|app| &app.id));
        if let Some(id) = ids.find(|id| !crate::interactions::is_snowflake(id)) {
            return Err(Error::config(format!(
                "discord: application id {id:?} is not a snowflake (digits, from the developer portal)"
            )));
        }
        if let Some(guild) = &self.dev_guild
            && !crate::interactions::is_snowflake(guild)
        {
            return Err(Error::config(format!(
                "discord: the dev guild id {guild:?} ({}) is not a snowflake (digits: the guild's \"Copy Server ID\")",
                super::ENV_DEV_GUILD_ID
            )));
        }
        let pending = Arc::new(Pending::default());
        let clients = self.clients(&pending)?;
        let several = !self.applications.is_empty();
        let interactions = self.interactions();
        let commands = (self.dev_guild.clone())
            .filter(|_| !self.guild_commands.is_empty())
            .map(|guild| {
                Arc::new(GuildCommands {
                    guild,
                    commands: self.guild_commands.clone(),
                    required: self.require_guild_commands,
                })
            });
        let gateway_url_override = self.gateway_url.is_some();
        let mut shard_config = self.shard_config;
        if let Some(url) = self.gateway_url {
            shard_config.url = url;
        }
        shard_config.scoped_event_ids = self.scoped_event_ids.unwrap_or(several);
        let shards_of = |id: Option<&str>, token: &Secret| {
            let mut config = shard_config.clone();
            config.token = token.clone();
            config.application = id.map(ChannelId::new);
            self.gateway.then_some(config)
        };
        let mut applications = vec![Application {
            id: first_id.as_deref().map(ChannelId::new),
            shard_config: shards_of(first_id.as_deref(), &self.token),
            shards: self.shards,
            identify: self.identify.clone(),
        }];
        for app in &self.applications {
            applications.push(Application {
                id: Some(ChannelId::new(&app.id)),
                shard_config: shards_of(Some(&app.id), &app.token),
                shards: app.shards,
                identify: IdentifyOptions {
                    coordinator: app.coordinator.clone(),
                    ..self.identify.clone()
                },
            });
        }
        Ok(Discord {
            clients,
            pending,
            applications,
            gateway_url_override,
            interactions,
            commands,
            stopped: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Every application's client, by id, sharing `pending` (an interaction answered over HTTP
    /// finds its response whichever application it is for).
    fn clients(&self, pending: &Arc<Pending>) -> Result<Channels<DiscordClient>, Error> {
        let https = Channels::from_builders(
            &Platform::DISCORD,
            crate::DEFAULT_API_BASE,
            self.application_id.as_deref(),
            self.http.clone(),
            (self.applications.iter()).map(|app| (app.id.as_str(), app.http.clone())),
        )?;
        let client = |id: Option<&str>, http: &DiscordHttp| {
            DiscordClient::new(http.clone(), id.map(str::to_owned), pending.clone())
        };
        let first = client(self.application_id.as_deref(), https.default_client());
        let more = (https.iter())
            .filter(|(id, _)| *id != https.default_id())
            .map(|(id, http)| (id.clone(), client(Some(id.as_str()), http)));
        Channels::from_parts(
            &Platform::DISCORD,
            self.application_id.as_deref().map(ChannelId::new),
            first,
            more,
        )
        .map_err(|e| Error::config(e.to_string()))
    }

    /// The interactions endpoint, when an application has a public key.
    fn interactions(&self) -> Option<InteractionsConfig> {
        // Without its id, a single application's events carry no channel.
        let first = (self.public_key).map(|key| {
            InteractionsApplication::new(self.application_id.as_deref().map(ChannelId::new), key)
        });
        let more = (self.applications.iter()).filter_map(|app| {
            let key = app.public_key?;
            Some(InteractionsApplication::new(
                Some(ChannelId::new(&app.id)),
                key,
            ))
        });
        let applications: Vec<_> = first.into_iter().chain(more).collect();
        let mut config = InteractionsConfig::new(applications.first()?.public_key);
        config.applications = applications;
        config.several_applications = !self.applications.is_empty();
        if let Some(wait) = self.defer_after {
            config.defer_after = wait;
        }
        Some(config)
    }
}

/// `id` without surrounding white space (an id read from a secret file ends in a newline).
fn trimmed(id: String) -> String {
    match id.trim() {
        trimmed if trimmed.len() == id.len() => id,
        trimmed => trimmed.to_owned(),
    }
}

/// The REST client's settings: `Discord::builder(token).api_base(..).retry(..)`, of the first
/// application, and the base URL of every application that sets none of its own.
impl ConfigureApi for DiscordBuilder {
    fn api_config(&mut self) -> &mut ApiConfig {
        self.http.api_config()
    }

    fn max_retry_after(mut self, max: Duration) -> Self {
        self.http = self.http.max_retry_after(max);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn key(byte: u8) -> PublicKey {
        let secret = ed25519_dalek::SigningKey::from_bytes(&[byte; 32]);
        PublicKey::from_hex(&hex::encode(secret.verifying_key().as_bytes())).unwrap()
    }

    #[test]
    fn several_applications_need_ids_and_distinct_ones() {
        let without_first_id = Discord::builder("t1")
            .application(DiscordApplication::new("2", "t2"))
            .build()
            .unwrap_err();
        assert_eq!(without_first_id.kind(), ErrorKind::Config);
        assert!(
            without_first_id
                .to_string()
                .contains("DISCORD_APPLICATION_ID"),
            "{without_first_id}"
        );
        let twice = Discord::builder("t1")
            .application_id("2")
            .application(DiscordApplication::new("2", "t2"))
            .build()
            .unwrap_err();
        assert_eq!(twice.kind(), ErrorKind::Config);
        assert!(twice.to_string().contains("configured twice"), "{twice}");
        let not_a_snowflake = Discord::builder("t1")
            .application_id("1")
            .application(DiscordApplication::new("app/2", "t2"))
            .build()
            .unwrap_err();
        assert!(
            not_a_snowflake.to_string().contains("app/2"),
            "{not_a_snowflake}"
        );
        let empty_token = Discord::builder("t1")
            .application_id("1")
            .application(DiscordApplication::new("2", ""))
            .build()
            .unwrap_err();
        assert_eq!(empty_token.kind(), ErrorKind::Config);
        let commands_without_id = Discord::builder("t1")
            .dev_guild("9")
            .guild_commands([CommandSpec::slash("ping", "Pong")])
            .build()
            .unwrap_err();
        assert!(
            commands_without_id.to_string().contains("guild commands"),
            "{commands_without_id}"
        );
        for guild in ["general", "77/commands", "77?x=1"] {
            let error = Discord::builder("t1").dev_guild(guild).build().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(
                error.to_string().contains("DISCORD_DEV_GUILD_ID"),
                "{error}"
            );
        }
    }

    #[test]
    fn ids_lose_surrounding_white_space() {
        let discord = Discord::builder("t1")
            .application_id("1\n")
            .application(DiscordApplication::new(" 2\r\n", "t2"))
            .dev_guild("77\n")
            .guild_commands([CommandSpec::slash("ping", "Pong")])
            .build()
            .unwrap();
        let ids: Vec<_> = (discord.applications.iter())
            .map(|app| app.id.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["1", "2"]);
        assert_eq!(discord.commands.as_ref().unwrap().guild, "77");
    }

    #[test]
    fn each_application_gets_its_client_shards_and_key() {
        let discord = Discord::builder("t1")
            .application_id("1")
            .public_key(key(1))
            .api_base("http://127.0.0.1:9")
            .application(DiscordApplication::new("2", "t2").public_key(key(2)))
            .application(DiscordApplication::new("3", "t3"))
            .build()
            .unwrap();
        let clients = discord.applications();
        assert_eq!(clients.len(), 3);
        assert_eq!(clients.default_id().as_str(), "1");
        for id in ["1", "2", "3"] {
            let client = clients.get(Some(&ChannelId::new(id))).unwrap();
            assert_eq!(
                client.http().api_base(),
                "http://127.0.0.1:9",
                "the adapter's base URL reaches every application"
            );
        }
        let tokens: Vec<_> = (discord.applications.iter())
            .map(|app| {
                let config = app.shard_config.as_ref().unwrap();
                assert!(config.scoped_event_ids);
                (
                    config.application.as_ref().unwrap().to_string(),
                    config.token.expose().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            tokens,
            [("1", "t1"), ("2", "t2"), ("3", "t3")].map(|(a, t)| (a.to_owned(), t.to_owned()))
        );
        let served: Vec<_> = (discord.interactions.as_ref().unwrap().applications.iter())
            .map(|app| (app.id.as_ref().unwrap().to_string(), app.public_key))
            .collect();
        assert_eq!(served, [("1".to_owned(), key(1)), ("2".to_owned(), key(2))]);
    }

    #[test]
    fn event_ids_are_scoped_as_asked_or_with_several_applications() {
        let scoped = |builder: DiscordBuilder| -> Vec<bool> {
            let discord = builder.build().unwrap();
            (discord.applications.iter())
                .map(|app| app.shard_config.as_ref().unwrap().scoped_event_ids)
                .collect()
        };
        let one = || Discord::builder("t1").application_id("1");
        let two = || one().application(DiscordApplication::new("2", "t2"));
        assert_eq!(scoped(one()), [false]);
        assert_eq!(scoped(one().scoped_event_ids(true)), [true]);
        assert_eq!(scoped(two()), [true, true]);
        assert_eq!(scoped(two().scoped_event_ids(false)), [false, false]);
        let without_id = Discord::builder("t1")
            .scoped_event_ids(true)
            .build()
            .unwrap_err();
        assert_eq!(without_id.kind(), ErrorKind::Config);
        assert!(
            without_id.to_string().contains("scope event ids"),
            "{without_id}"
        );
    }

    #[test]
    fn one_application_keeps_its_ids_unscoped_and_may_go_without_an_id() {
        let discord = Discord::builder("t1").build().unwrap();
        let config = discord.applications[0].shard_config.as_ref().unwrap();
        assert!(!config.scoped_event_ids);
        assert!(config.application.is_none());
        // Without an id, one client answers whatever channel an event names.
        assert!(
            discord
                .applications()
                .get(Some(&ChannelId::new("anything")))
                .is_ok()
        );
    }
}
