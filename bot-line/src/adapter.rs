//! [`Line`]: the adapter that plugs the webhook and the client into a bot.

use std::sync::Arc;

use async_trait::async_trait;
use bot_core::adapter::{Attach, Clients};
use bot_core::api::ApiConfig;
use bot_core::outbound::{Channels, numbered_vars};
use bot_core::{Adapter, Ingress, Outbound, Platform, Secret};

use crate::client::{ConfigureApi, DEFAULT_API_BASE, LineClient, LineClientBuilder};
use crate::error::Error;
use crate::webhook::{self, WebhookChannel, WebhookConfig};

/// The environment variable with the channel secret (signs webhooks).
pub const ENV_CHANNEL_SECRET: &str = "LINE_CHANNEL_SECRET";
/// The environment variable with the channel access token (authorises API calls).
pub const ENV_CHANNEL_ACCESS_TOKEN: &str = "LINE_CHANNEL_ACCESS_TOKEN";
/// The environment variable with the API base URL (default `https://api.line.me`).
pub const ENV_API_BASE: &str = "LINE_API_BASE";
/// The environment variable with the first channel's bot user id (the webhooks' `destination`),
/// needed when more channels are configured.
pub const ENV_DESTINATION: &str = "LINE_DESTINATION";
/// The prefix of the variables of further channels, numbered from 2 without gaps:
/// `LINE_CHANNEL_2_DESTINATION`, `LINE_CHANNEL_2_SECRET`, `LINE_CHANNEL_2_ACCESS_TOKEN`, then 3.
pub const ENV_CHANNEL_PREFIX: &str = "LINE_CHANNEL_";
/// Every variable [`Line::from_env`] reads, `#` standing for a channel's number: a variable
/// whose name is close to one of them but none is an error, not ignored.
pub const ENV_VARS: &[&str] = &[
    ENV_CHANNEL_SECRET,
    ENV_CHANNEL_ACCESS_TOKEN,
    ENV_API_BASE,
    ENV_DESTINATION,
    "LINE_CHANNEL_#_DESTINATION",
    "LINE_CHANNEL_#_SECRET",
    "LINE_CHANNEL_#_ACCESS_TOKEN",
];

/// The LINE adapter: the webhook at `POST /line/webhook` and the [`LineClient`] that answers.
///
/// Cloning is cheap.
///
/// # Examples
///
/// ```no_run
/// use bot_core::{Bot, Context, Error, Event};
/// use bot_line::Line;
///
/// async fn echo(cx: Context, event: Event) -> Result<(), Error> {
///     cx.reply(event.text_content().unwrap_or_default()).await
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bot = Bot::builder().adapter(Line::from_env()?).handler(echo).build()?;
/// bot.serve("0.0.0.0:8080").await?;
/// # Ok(()) }
/// ```
///
/// # Several channels
///
/// One adapter serves several LINE channels at one webhook path: name each by its bot user id
/// (the `destination` of its webhooks, shown in the console or by `GET /v2/bot/info`). Each
/// event carries its channel ([`bot_core::EventData::channel`]) and is answered with that channel's
/// token, under that channel's rate limits.
///
/// ```no_run
/// use bot_line::{Line, LineChannel};
///
/// # fn run() -> Result<(), bot_line::Error> {
/// let line = Line::builder("secret-a", "token-a")
///     .destination("U0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a")
///     .channel(LineChannel::new("U1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b", "secret-b", "token-b"))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Line {
    webhook: WebhookConfig,
    clients: Channels<LineClient>,
}

/// Builds a [`Line`] adapter.
#[derive(Debug, Clone)]
#[must_use]
pub struct LineBuilder {
    webhook: WebhookConfig,
    client: LineClientBuilder,
    channels: Vec<LineChannel>,
}

/// Another LINE channel a [`Line`] adapter serves, besides the one it was built with.
#[derive(Debug, Clone)]
#[must_use]
pub struct LineChannel {
    destination: String,
    channel_secret: Secret,
    client: LineClientBuilder,
}

impl LineChannel {
    /// The channel whose bot user id is `destination`, with its secret and access token.
    pub fn new(
        destination: impl Into<String>,
        channel_secret: impl Into<Secret>,
        channel_access_token: impl Into<Secret>,
    ) -> Self {
        Self {
            destination: destination.into(),
            channel_secret: channel_secret.into(),
            client: LineClient::builder(channel_access_token),
        }
    }

    /// Configures this channel's API client (retries, rate limits, time-out, push fallback).
    pub fn client(
        mut self,
        configure: impl FnOnce(LineClientBuilder) -> LineClientBuilder,
    ) -> Self {
        self.client = configure(self.client);
        self
    }
}

impl LineBuilder {
    /// Serves the webhook at `path` instead of `/line/webhook`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.webhook.path = path.into();
        self
    }

    /// Delivers events in standby mode to the handlers (default: acknowledged and counted, not
    /// delivered; see [`WebhookConfig::deliver_standby`]).
    pub fn deliver_standby(mut self, deliver: bool) -> Self {
        self.webhook.deliver_standby = deliver;
        self
    }

    /// The bot user id of the channel this adapter was built with (the `destination` of its
    /// webhooks): its events then carry it as their channel. Needed with [`LineBuilder::channel`].
    pub fn destination(mut self, bot_user_id: impl Into<String>) -> Self {
        self.webhook.destination = Some(bot_user_id.into());
        self
    }

    /// Serves another channel at the same webhook path, told apart by the body's `destination`.
    /// Its client sends to this builder's API base unless its own was set.
    pub fn channel(mut self, channel: LineChannel) -> Self {
        self.channels.push(channel);
        self
    }

    /// Configures the API client (rate limits, push fallback, the data API base); the settings
    /// every platform shares (base URL, retries, time-out, deadline) are [`ConfigureApi`]'s, on
    /// this builder too.
    pub fn client(
        mut self,
        configure: impl FnOnce(LineClientBuilder) -> LineClientBuilder,
    ) -> Self {
        self.client = configure(self.client);
        self
    }

    /// Builds the adapter.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when a secret is empty, the path does not start with `/`,
    /// a client's configuration is invalid, or with several channels one has no destination or
    /// two have the same.
    pub fn build(mut self) -> Result<Line, Error> {
        if self.webhook.channel_secret.is_empty()
            || self.channels.iter().any(|c| c.channel_secret.is_empty())
        {
            return Err(Error::config("line: a channel secret is empty"));
        }
        let clients = Channels::from_builders(
            &Platform::LINE,
            DEFAULT_API_BASE,
            self.webhook.destination.as_deref(),
            self.client.clone(),
            (self.channels.iter()).map(|c| (c.destination.as_str(), c.client.clone())),
        )?;
        self.webhook.channels = self
            .channels
            .iter()
            .map(|c| WebhookChannel::new(c.destination.clone(), c.channel_secret.clone()))
            .collect();
        if !self.webhook.path.starts_with('/') {
            return Err(Error::config(format!(
                "line: webhook path {:?} must start with /",
                self.webhook.path
            )));
        }
        Ok(Line {
            webhook: self.webhook,
            clients,
        })
    }
}

impl ConfigureApi for LineBuilder {
    fn api_config(&mut self) -> &mut ApiConfig {
        self.client.api_config()
    }
}

impl Line {
    /// Starts an adapter with the channel secret and access token from the LINE console.
    pub fn builder(
        channel_secret: impl Into<Secret>,
        channel_access_token: impl Into<Secret>,
    ) -> LineBuilder {
        LineBuilder {
            webhook: WebhookConfig::new(channel_secret.into()),
            client: LineClient::builder(channel_access_token),
            channels: Vec::new(),
        }
    }

    /// An adapter configured from `LINE_CHANNEL_SECRET`, `LINE_CHANNEL_ACCESS_TOKEN` and
    /// `LINE_API_BASE` (optional). With `REDIS_URL` set and the feature `redis`, the channels'
    /// rate limits are shared in that Redis by every process
    /// ([`SharedLimits::for_adapter_env`](bot_core::ratelimit::SharedLimits::for_adapter_env)).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] naming the variables missing, or when they are invalid.
    pub fn from_env() -> Result<Self, Error> {
        Self::try_from_env()?.ok_or_else(|| {
            Error::config(format!(
                "line: set {ENV_CHANNEL_SECRET} and {ENV_CHANNEL_ACCESS_TOKEN}"
            ))
        })
    }

    /// As [`Line::from_env`], with further channels from [`ENV_DESTINATION`] and the numbered
    /// [`ENV_CHANNEL_PREFIX`] variables; `Ok(None)` when neither `LINE_CHANNEL_SECRET` nor
    /// `LINE_CHANNEL_ACCESS_TOKEN` is set, for bots that serve whichever platforms are configured.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when only one of them is set, a variable's name is
    /// misspelt (close to one of [`ENV_VARS`]), or they are invalid.
    pub fn try_from_env() -> Result<Option<Self>, Error> {
        let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
        from_vars(|name| std::env::var(name).ok(), names)
    }

    /// The API client of the first channel, for calls beyond replies (push, multicast, profile).
    pub fn client(&self) -> &LineClient {
        self.clients.default_client()
    }

    /// The API clients of every channel, by channel (the bot user id).
    pub fn channels(&self) -> &Channels<LineClient> {
        &self.clients
    }

    /// The webhook's path.
    pub fn path(&self) -> &str {
        &self.webhook.path
    }
}

/// The adapter the variables `var` give (see [`Line::try_from_env`]); `names` are every
/// variable's name, checked for misspellings of [`ENV_VARS`].
fn from_vars(
    var: impl Fn(&str) -> Option<String>,
    names: impl IntoIterator<Item = String>,
) -> Result<Option<Line>, Error> {
    bot_core::env::check_names("line", ENV_VARS, names)
        .map_err(|e| Error::config(e.to_string()))?;
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    match (var(ENV_CHANNEL_SECRET), var(ENV_CHANNEL_ACCESS_TOKEN)) {
        (None, None) => Ok(None),
        (Some(secret), Some(token)) => {
            let api_base = var(ENV_API_BASE).unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
            let mut builder = Line::builder(secret, token).api_base(api_base);
            if let Some(limits) = bot_core::ratelimit::SharedLimits::for_adapter_env(
                "line",
                var(bot_core::ratelimit::REDIS_URL_ENV).as_deref(),
            )
            .map_err(|e| Error::config(e.to_string()))?
            {
                builder = builder.shared_limits(limits);
            }
            if let Some(destination) = var(ENV_DESTINATION) {
                builder = builder.destination(destination);
            }
            let parts = [
                ("DESTINATION", true),
                ("SECRET", true),
                ("ACCESS_TOKEN", true),
            ];
            for channel in numbered_vars(&Platform::LINE, ENV_CHANNEL_PREFIX, parts, var)? {
                if let [Some(destination), Some(secret), Some(token)] = channel {
                    builder = builder.channel(LineChannel::new(destination, secret, token));
                }
            }
            builder.build().map(Some)
        }
        (None, Some(_)) => Err(Error::config(format!(
            "line: {ENV_CHANNEL_ACCESS_TOKEN} is set but {ENV_CHANNEL_SECRET} is not"
        ))),
        (Some(_), None) => Err(Error::config(format!(
            "line: {ENV_CHANNEL_SECRET} is set but {ENV_CHANNEL_ACCESS_TOKEN} is not"
        ))),
    }
}

#[async_trait]
impl Adapter for Line {
    fn platform(&self) -> Platform {
        Platform::LINE
    }

    fn outbound(&self) -> Option<Arc<dyn Outbound>> {
        Some(Arc::new(self.clients.clone()))
    }

    fn register_clients(&self, clients: &mut Clients) {
        self.clients.register(clients);
    }

    /// The clients record their calls in the bot's telemetry.
    fn attach(&mut self, bot: &Attach) -> Result<(), bot_core::Error> {
        self.clients.record_in(bot.telemetry());
        Ok(())
    }

    fn routes(&self, ingress: Ingress) -> Option<axum::Router> {
        Some(webhook::router(self.webhook.clone(), ingress))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(set: &[(&str, &str)]) -> (impl Fn(&str) -> Option<String>, Vec<String>) {
        let set: Vec<(String, String)> = set
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let names = set.iter().map(|(k, _)| k.clone()).collect();
        let var = move |name: &str| set.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        (var, names)
    }

    fn from(set: &[(&str, &str)]) -> Result<Option<Line>, Error> {
        let (var, names) = vars(set);
        from_vars(var, names)
    }

    #[test]
    fn a_partly_configured_channel_is_an_error_naming_the_missing_variable() {
        assert!(from(&[]).unwrap().is_none());
        let error = from(&[(ENV_CHANNEL_SECRET, "s")]).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Config);
        assert_eq!(
            error.to_string(),
            "line: LINE_CHANNEL_SECRET is set but LINE_CHANNEL_ACCESS_TOKEN is not"
        );
        let error = from(&[(ENV_CHANNEL_ACCESS_TOKEN, "t")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line: LINE_CHANNEL_ACCESS_TOKEN is set but LINE_CHANNEL_SECRET is not"
        );
        let line = from(&[(ENV_CHANNEL_SECRET, "s"), (ENV_CHANNEL_ACCESS_TOKEN, "t")]).unwrap();
        assert!(line.is_some());
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_url_shares_the_channels_rate_limits_in_that_redis() {
        let base = [(ENV_CHANNEL_SECRET, "s"), (ENV_CHANNEL_ACCESS_TOKEN, "t")];
        let line = from(&base).unwrap().unwrap();
        assert!(line.client().api().shared_limits().is_none());
        let mut with = base.to_vec();
        with.push((
            bot_core::ratelimit::REDIS_URL_ENV,
            "redis://127.0.0.1:6379/0",
        ));
        let line = from(&with).unwrap().unwrap();
        let store = line.client().api().shared_limits().map(|l| l.store_name());
        assert_eq!(store, Some("redis"));
        with[2].1 = "not a url";
        assert_eq!(from(&with).unwrap_err().kind(), crate::ErrorKind::Config);
    }

    #[test]
    fn a_misspelt_variable_is_an_error_even_beside_correct_ones() {
        let misspelt = [
            ("LINE_CHANEL_SECRET", "s"),
            (ENV_CHANNEL_ACCESS_TOKEN, "t"),
            ("HOME", "/root"),
        ];
        let error = from(&misspelt).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Config);
        assert_eq!(
            error.to_string(),
            "line: LINE_CHANEL_SECRET is not a variable line reads; \
             did you mean LINE_CHANNEL_SECRET? Rename or unset it"
        );
        // Alone, too: not a silent "LINE is not configured".
        assert!(from(&misspelt[..1]).is_err());
        let numbered = [
            (ENV_CHANNEL_SECRET, "s"),
            (ENV_CHANNEL_ACCESS_TOKEN, "t"),
            ("LINE_CHANNEL_2_SECRETS", "s2"),
        ];
        let error = from(&numbered).unwrap_err().to_string();
        assert!(
            error.contains("did you mean LINE_CHANNEL_2_SECRET?"),
            "{error}"
        );
    }

    #[test]
    fn the_shared_settings_on_the_adapter_builder_reach_its_client() {
        let line = Line::builder("secret", "token")
            .api_base("http://127.0.0.1:9/")
            .build()
            .unwrap();
        assert_eq!(line.client().api().base(), "http://127.0.0.1:9");
        assert_eq!(line.client().data_api_base(), "http://127.0.0.1:9");
        let refused = Line::builder("secret", "token")
            .deadline(std::time::Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(refused.kind(), crate::ErrorKind::Config);
    }
}
