//! [`Discord::from_env`]: the adapter configured from `DISCORD_*` variables.

use super::Discord;
use super::builder::{DiscordApplication, DiscordBuilder};
use crate::ConfigureApi as _;
use crate::error::Error;
use crate::gateway::Intents;
use crate::interactions::PublicKey;
use bot_core::Platform;
use bot_core::outbound::numbered_vars;

/// `DISCORD_TOKEN`: the bot token (gateway and REST).
pub const ENV_TOKEN: &str = "DISCORD_TOKEN";
/// `DISCORD_APPLICATION_ID`: the application id (to answer interactions; needed when more
/// applications are configured).
pub const ENV_APPLICATION_ID: &str = "DISCORD_APPLICATION_ID";
/// `DISCORD_PUBLIC_KEY`: the application's public key (hex), to verify HTTP interactions.
pub const ENV_PUBLIC_KEY: &str = "DISCORD_PUBLIC_KEY";
/// The prefix of the variables of further applications, numbered from 2 without gaps:
/// `DISCORD_APPLICATION_2_ID`, `DISCORD_APPLICATION_2_TOKEN`, `DISCORD_APPLICATION_2_PUBLIC_KEY`
/// (optional: only for HTTP interactions), then 3.
pub const ENV_APPLICATION_PREFIX: &str = "DISCORD_APPLICATION_";
/// `DISCORD_API_BASE`: the REST base (default `https://discord.com/api/v10`).
pub const ENV_API_BASE: &str = "DISCORD_API_BASE";
/// `DISCORD_GATEWAY_URL`: overrides the gateway URL `GET /gateway/bot` gives.
pub const ENV_GATEWAY_URL: &str = "DISCORD_GATEWAY_URL";
/// `DISCORD_INTENTS`: a number or names joined by `|` (default: the message intents).
pub const ENV_INTENTS: &str = "DISCORD_INTENTS";
/// `DISCORD_SHARDS`: `auto`, a count, or `from..to/total` (default `auto`), of the first
/// application.
pub const ENV_SHARDS: &str = "DISCORD_SHARDS";
/// `DISCORD_GLOBAL_PER_SECOND`: the REST clients' proactive global limit (default 50; Discord
/// grants large bots more, and load tests against a fake lift it), for every application.
pub const ENV_GLOBAL_PER_SECOND: &str = "DISCORD_GLOBAL_PER_SECOND";
/// `DISCORD_DEV_GUILD_ID`: the guild where [`DiscordBuilder::guild_commands`] are registered at
/// start-up (see [`DiscordBuilder::dev_guild`]).
pub const ENV_DEV_GUILD_ID: &str = "DISCORD_DEV_GUILD_ID";
/// Every variable [`Discord::from_env`] reads, `#` standing for an application's number: a
/// variable whose name is close to one of them but none is an error, not ignored.
pub const ENV_VARS: &[&str] = &[
    ENV_TOKEN,
    ENV_APPLICATION_ID,
    ENV_PUBLIC_KEY,
    ENV_API_BASE,
    ENV_GATEWAY_URL,
    ENV_INTENTS,
    ENV_SHARDS,
    ENV_GLOBAL_PER_SECOND,
    ENV_DEV_GUILD_ID,
    "DISCORD_APPLICATION_#_ID",
    "DISCORD_APPLICATION_#_TOKEN",
    "DISCORD_APPLICATION_#_PUBLIC_KEY",
];

/// The variable `name` as [`Discord::from_env`] reads it: `None` when unset, blank or not
/// UTF-8. Code that decides something from the same variables (whether there is a dev guild to
/// register commands in) reads them with this, so that it and the adapter agree.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Discord {
    /// An adapter configured from `DISCORD_TOKEN`, `DISCORD_APPLICATION_ID`, `DISCORD_PUBLIC_KEY`,
    /// the numbered `DISCORD_APPLICATION_<n>_*` of further applications, `DISCORD_API_BASE`,
    /// `DISCORD_GATEWAY_URL`, `DISCORD_INTENTS`, `DISCORD_SHARDS`, `DISCORD_GLOBAL_PER_SECOND`
    /// and `DISCORD_DEV_GUILD_ID`; with `REDIS_URL` set and the feature `redis`, rate limits
    /// shared in that Redis by every process
    /// ([`SharedLimits::for_adapter_env`](bot_core::ratelimit::SharedLimits::for_adapter_env)).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when `DISCORD_TOKEN` is missing or a variable is invalid.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_with(|builder| builder)
    }

    /// As [`Discord::from_env`], then `configure` on the builder (guild commands, handlers of
    /// settings the environment does not carry).
    ///
    /// # Errors
    ///
    /// As [`Discord::from_env`].
    pub fn from_env_with(
        configure: impl FnOnce(DiscordBuilder) -> DiscordBuilder,
    ) -> Result<Self, Error> {
        Self::try_from_env_with(configure)?
            .ok_or_else(|| Error::config(format!("discord: set {ENV_TOKEN}")))
    }

    /// As [`Discord::from_env`], but `Ok(None)` when `DISCORD_TOKEN` is not set.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when a variable is invalid or misspelt (close to one of
    /// [`ENV_VARS`]).
    pub fn try_from_env() -> Result<Option<Self>, Error> {
        Self::try_from_env_with(|builder| builder)
    }

    /// As [`Discord::try_from_env`], then `configure` on the builder.
    ///
    /// # Errors
    ///
    /// As [`Discord::try_from_env`].
    pub fn try_from_env_with(
        configure: impl FnOnce(DiscordBuilder) -> DiscordBuilder,
    ) -> Result<Option<Self>, Error> {
        bot_core::env::check_spelling("discord", ENV_VARS)
            .map_err(|e| Error::config(e.to_string()))?;
        match builder_from_vars(env_var)? {
            Some(builder) => configure(builder).build().map(Some),
            None => Ok(None),
        }
    }
}

/// The builder the variables `var` gives; `None` when there is no token.
fn builder_from_vars(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<DiscordBuilder>, Error> {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let Some(token) = var(ENV_TOKEN) else {
        if var(ENV_PUBLIC_KEY).is_some() || var(ENV_APPLICATION_ID).is_some() {
            return Err(Error::config(format!(
                "discord: {ENV_PUBLIC_KEY} or {ENV_APPLICATION_ID} is set but {ENV_TOKEN} is not"
            )));
        }
        return Ok(None);
    };
    let mut builder = Discord::builder(token);
    if let Some(limits) = bot_core::ratelimit::SharedLimits::for_adapter_env(
        "discord",
        var(bot_core::ratelimit::REDIS_URL_ENV).as_deref(),
    )
    .map_err(|e| Error::config(e.to_string()))?
    {
        builder = builder.shared_limits(limits);
    }
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
    let global_per_second = match var(ENV_GLOBAL_PER_SECOND) {
        Some(limit) => Some(limit.trim().parse::<u32>().map_err(|_| {
            Error::config(format!(
                "discord: {ENV_GLOBAL_PER_SECOND} must be a number of requests per second, not {limit:?}"
            ))
        })?),
        None => None,
    };
    if let Some(per_second) = global_per_second {
        builder = builder.http(|h| h.global_per_second(per_second));
    }
    if let Some(guild) = var(ENV_DEV_GUILD_ID) {
        builder = builder.dev_guild(guild);
    }
    let parts = [("ID", true), ("TOKEN", true), ("PUBLIC_KEY", false)];
    let more = numbered_vars(&Platform::DISCORD, ENV_APPLICATION_PREFIX, parts, var)?;
    for (n, [id, token, key]) in (2..).zip(more) {
        let (Some(id), Some(token)) = (id, token) else {
            continue;
        };
        let mut application = DiscordApplication::new(id, token);
        if let Some(key) = key {
            let key = PublicKey::from_hex(&key).map_err(|e| {
                let name = format!("{ENV_APPLICATION_PREFIX}{n}_PUBLIC_KEY");
                Error::config(format!("discord: {name} is not a public key")).with_source(e)
            })?;
            application = application.public_key(key);
        }
        if let Some(per_second) = global_per_second {
            application = application.http(|h| h.global_per_second(per_second));
        }
        builder = builder.application(application);
    }
    Ok(Some(builder))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use bot_core::event::ChannelId;

    fn vars(set: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let set: Vec<(String, String)> = set
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| set.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn build(set: &[(&str, &str)]) -> Result<Option<Discord>, Error> {
        builder_from_vars(vars(set))?
            .map(DiscordBuilder::build)
            .transpose()
    }

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[cfg(feature = "redis")]
    #[test]
    fn redis_url_shares_the_rate_limits_in_that_redis() {
        let base = [(ENV_TOKEN, "t")];
        let d = build(&base).unwrap().unwrap();
        assert!(d.http().shared_limits().is_none());
        let mut with = base.to_vec();
        with.push((
            bot_core::ratelimit::REDIS_URL_ENV,
            "redis://127.0.0.1:6379/0",
        ));
        let d = build(&with).unwrap().unwrap();
        let store = d.http().shared_limits().map(|l| l.store_name());
        assert_eq!(store, Some("redis"));
        with[1].1 = "not a url";
        assert_eq!(build(&with).unwrap_err().kind(), ErrorKind::Config);
    }

    #[test]
    fn numbered_applications_come_from_the_environment() {
        assert!(build(&[]).unwrap().is_none());
        let two = [
            (ENV_TOKEN, "t1"),
            (ENV_APPLICATION_ID, "1"),
            ("DISCORD_APPLICATION_2_ID", "2"),
            ("DISCORD_APPLICATION_2_TOKEN", "t2"),
            ("DISCORD_APPLICATION_2_PUBLIC_KEY", KEY),
            ("DISCORD_APPLICATION_4_ID", "4"),
            (ENV_API_BASE, "http://127.0.0.1:9"),
        ];
        let discord = build(&two).unwrap().unwrap();
        let clients = discord.applications();
        assert_eq!(
            clients.len(),
            2,
            "numbered from 2 without gaps: 4 is not read"
        );
        let second = clients.get(Some(&ChannelId::new("2"))).unwrap();
        assert_eq!(second.http().api_base(), "http://127.0.0.1:9");
        let served = discord.interactions.as_ref().unwrap();
        assert_eq!(served.applications.len(), 1, "only the second has a key");

        let mut half = two.to_vec();
        half.push(("DISCORD_APPLICATION_3_ID", "3"));
        let error = build(&half).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(
            error.to_string().contains("DISCORD_APPLICATION_3_TOKEN"),
            "{error}"
        );

        let mut bad_key = two.to_vec();
        bad_key[4] = ("DISCORD_APPLICATION_2_PUBLIC_KEY", "zz");
        let error = build(&bad_key).unwrap_err();
        assert!(error.to_string().contains("_2_PUBLIC_KEY"), "{error}");

        let without_first_id: Vec<_> = two
            .iter()
            .copied()
            .filter(|(k, _)| *k != ENV_APPLICATION_ID)
            .collect();
        let error = build(&without_first_id).unwrap_err();
        assert!(error.to_string().contains(ENV_APPLICATION_ID), "{error}");

        let mut twice = two.to_vec();
        twice[2] = ("DISCORD_APPLICATION_2_ID", "1");
        assert!(build(&twice).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn the_dev_guild_comes_from_the_environment() {
        let set = [(ENV_TOKEN, "t1"), (ENV_DEV_GUILD_ID, "77")];
        let builder = builder_from_vars(vars(&set)).unwrap().unwrap();
        let discord = builder
            .application_id("1")
            .guild_commands([crate::http::CommandSpec::slash("ping", "Pong")])
            .build()
            .unwrap();
        assert_eq!(discord.commands.as_ref().unwrap().guild, "77");
        let without = builder_from_vars(vars(&set[..1])).unwrap().unwrap();
        let discord = without
            .guild_commands([crate::http::CommandSpec::slash("ping", "Pong")])
            .build()
            .unwrap();
        assert!(
            discord.commands.is_none(),
            "no dev guild, nothing to register"
        );
        let not_a_guild = [(ENV_TOKEN, "t1"), (ENV_DEV_GUILD_ID, "my-server")];
        let error = build(&not_a_guild).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains(ENV_DEV_GUILD_ID), "{error}");
    }

    /// Values read from secret files end in a newline.
    #[test]
    fn ids_from_secret_files_are_trimmed() {
        let set = [
            (ENV_TOKEN, "t1"),
            (ENV_APPLICATION_ID, "1\n"),
            (ENV_PUBLIC_KEY, KEY),
            (ENV_DEV_GUILD_ID, "77\n"),
            ("DISCORD_APPLICATION_2_ID", "2\n"),
            ("DISCORD_APPLICATION_2_TOKEN", "t2"),
        ];
        let builder = builder_from_vars(vars(&set)).unwrap().unwrap();
        let discord = builder
            .guild_commands([crate::http::CommandSpec::slash("ping", "Pong")])
            .build()
            .unwrap();
        let clients = discord.applications();
        assert_eq!(clients.default_id().as_str(), "1");
        assert!(clients.get(Some(&ChannelId::new("2"))).is_ok());
        assert_eq!(discord.commands.as_ref().unwrap().guild, "77");
    }

    #[test]
    fn a_misspelt_variable_is_named_with_the_right_name() {
        let names = ["DISCORD_TOKEN", "DISCORD_PUBLICKEY"].map(String::from);
        let error = bot_core::env::check_names("discord", ENV_VARS, names).unwrap_err();
        assert!(
            (error.to_string()).contains("DISCORD_PUBLICKEY is not a variable discord reads; did you mean DISCORD_PUBLIC_KEY?"),
            "{error}"
        );
        let fine = ENV_VARS.iter().map(|n| n.replace('#', "2"));
        bot_core::env::check_names("discord", ENV_VARS, fine).unwrap();
    }

    #[test]
    fn an_all_zero_public_key_is_a_config_error() {
        let zero = "0".repeat(64);
        let set = [
            (ENV_TOKEN, "t1"),
            (ENV_APPLICATION_ID, "1"),
            (ENV_PUBLIC_KEY, &zero),
        ];
        let error = build(&set).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("weak"), "{error}");
    }
}
