//! [`Messenger`]: the adapter that plugs the webhook and the client into a bot.

use std::sync::Arc;

use async_trait::async_trait;
use bot_core::adapter::{Attach, Clients};
use bot_core::outbound::{Channels, numbered_vars};
use bot_core::{Adapter, Ingress, Outbound, Platform, Secret};

use crate::client::{ConfigureApi, DEFAULT_API_BASE, MessengerClient, MessengerClientBuilder};
use crate::error::Error;
use crate::webhook::{self, WebhookConfig};

/// The environment variable with the app secret (signs webhooks).
pub const ENV_APP_SECRET: &str = "MESSENGER_APP_SECRET";
/// The environment variable with the verify token (the webhook subscription handshake).
pub const ENV_VERIFY_TOKEN: &str = "MESSENGER_VERIFY_TOKEN";
/// The environment variable with the page access token (authorises Send API calls).
pub const ENV_PAGE_ACCESS_TOKEN: &str = "MESSENGER_PAGE_ACCESS_TOKEN";
/// The environment variable with the Graph API base URL (default
/// `https://graph.facebook.com/v21.0`).
pub const ENV_API_BASE: &str = "MESSENGER_API_BASE";
/// The environment variable with the id of the page `MESSENGER_PAGE_ACCESS_TOKEN` belongs to,
/// needed when more pages are configured.
pub const ENV_PAGE_ID: &str = "MESSENGER_PAGE_ID";
/// The prefix of the variables of further pages, numbered from 2 without gaps:
/// `MESSENGER_PAGE_2_ID`, `MESSENGER_PAGE_2_ACCESS_TOKEN`, then 3.
pub const ENV_PAGE_PREFIX: &str = "MESSENGER_PAGE_";
/// Every variable [`Messenger::from_env`] reads, `#` standing for a page's number: a variable
/// whose name is close to one of them but none is an error, not ignored.
pub const ENV_VARS: &[&str] = &[
    ENV_APP_SECRET,
    ENV_VERIFY_TOKEN,
    ENV_PAGE_ACCESS_TOKEN,
    ENV_API_BASE,
    ENV_PAGE_ID,
    "MESSENGER_PAGE_#_ID",
    "MESSENGER_PAGE_#_ACCESS_TOKEN",
];

/// The Messenger adapter: the webhook at `GET`+`POST /messenger/webhook` and the
/// [`MessengerClient`] that answers.
///
/// Cloning is cheap.
///
/// # Examples
///
/// ```no_run
/// use bot_core::{Bot, Context, Error, Event};
/// use bot_messenger::Messenger;
///
/// async fn echo(cx: Context, event: Event) -> Result<(), Error> {
///     match event.text_content() {
///         Some(text) => cx.reply(text).await,
///         None => Ok(()),
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bot = Bot::builder().adapter(Messenger::from_env()?).handler(echo).build()?;
/// bot.serve("0.0.0.0:8080").await?;
/// # Ok(()) }
/// ```
///
/// # Several pages
///
/// One adapter (one app, one webhook) serves several pages: give each page's id and token. Each
/// event carries its page as its [`bot_core::EventData::channel`] and is answered with that page's
/// token, under that page's rate limits.
///
/// ```no_run
/// use bot_messenger::Messenger;
///
/// # fn run() -> Result<(), bot_messenger::Error> {
/// let messenger = Messenger::builder("app-secret", "verify-token", "token-of-page-1")
///     .page_id("1000000000001")
///     .page("1000000000002", "token-of-page-2")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Messenger {
    webhook: WebhookConfig,
    clients: Channels<MessengerClient>,
}

/// Builds a [`Messenger`] adapter.
#[derive(Debug, Clone)]
#[must_use]
pub struct MessengerBuilder {
    webhook: WebhookConfig,
    client: MessengerClientBuilder,
    page_id: Option<String>,
    pages: Vec<(String, MessengerClientBuilder)>,
}

impl MessengerBuilder {
    /// Serves the webhook at `path` instead of `/messenger/webhook`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.webhook.path = path.into();
        self
    }

    /// The id of the page whose token the adapter was built with; needed with
    /// [`MessengerBuilder::page`].
    pub fn page_id(mut self, page_id: impl Into<String>) -> Self {
        self.page_id = Some(page_id.into());
        self
    }

    /// Serves another page of the same app, with its page access token.
    pub fn page(
        mut self,
        page_id: impl Into<String>,
        page_access_token: impl Into<Secret>,
    ) -> Self {
        self.pages
            .push((page_id.into(), MessengerClient::builder(page_access_token)));
        self
    }

    /// Configures the API client (retries, rate limits, time-out, deadline: the settings of
    /// [`ConfigureApi`] and [`MessengerClientBuilder::rate_limits`]).
    pub fn client(
        mut self,
        configure: impl FnOnce(MessengerClientBuilder) -> MessengerClientBuilder,
    ) -> Self {
        self.client = configure(self.client);
        self
    }

    /// Delivers echoes of the page's own messages to the handlers (default: acknowledged and
    /// counted, not delivered; see [`WebhookConfig::deliver_echoes`]).
    pub fn deliver_echoes(mut self, deliver: bool) -> Self {
        self.webhook.deliver_echoes = deliver;
        self
    }

    /// Delivers `standby[]` items to the handlers (default: acknowledged and counted, not
    /// delivered; see [`WebhookConfig::deliver_standby`]).
    pub fn deliver_standby(mut self, deliver: bool) -> Self {
        self.webhook.deliver_standby = deliver;
        self
    }

    /// Builds the adapter.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when a secret is empty, the path does not start with `/`, a
    /// client's configuration is invalid, or with several pages the first has no id or two have
    /// the same.
    pub fn build(self) -> Result<Messenger, Error> {
        if self.webhook.app_secret.is_empty() {
            return Err(Error::config("messenger: the app secret is empty"));
        }
        if self.webhook.verify_token.is_empty() {
            return Err(Error::config("messenger: the verify token is empty"));
        }
        if !self.webhook.path.starts_with('/') {
            return Err(Error::config(format!(
                "messenger: webhook path {:?} must start with /",
                self.webhook.path
            )));
        }
        let clients = Channels::from_builders(
            &Platform::MESSENGER,
            DEFAULT_API_BASE,
            self.page_id.as_deref(),
            self.client.clone(),
            (self.pages.iter()).map(|(id, client)| (id.as_str(), client.clone())),
        )?;
        Ok(Messenger {
            webhook: self.webhook,
            clients,
        })
    }
}

impl ConfigureApi for MessengerBuilder {
    /// The first page's client configuration (base URL, retries, time-out, deadline); other
    /// pages send to the same base URL unless their own was set.
    fn api_config(&mut self) -> &mut bot_core::api::ApiConfig {
        self.client.api_config()
    }
}

impl Messenger {
    /// Starts an adapter with the app secret, the verify token you chose for the webhook
    /// subscription, and the page access token.
    pub fn builder(
        app_secret: impl Into<Secret>,
        verify_token: impl Into<Secret>,
        page_access_token: impl Into<Secret>,
    ) -> MessengerBuilder {
        MessengerBuilder {
            webhook: WebhookConfig::new(app_secret.into(), verify_token.into()),
            client: MessengerClient::builder(page_access_token),
            page_id: None,
            pages: Vec::new(),
        }
    }

    /// An adapter configured from `MESSENGER_APP_SECRET`, `MESSENGER_VERIFY_TOKEN`,
    /// `MESSENGER_PAGE_ACCESS_TOKEN` and `MESSENGER_API_BASE` (optional). With `REDIS_URL` set
    /// and the feature `redis`, the pages' rate limits are shared in that Redis by every process
    /// ([`SharedLimits::for_adapter_env`](bot_core::ratelimit::SharedLimits::for_adapter_env)).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] naming the variables missing, or when they are invalid.
    pub fn from_env() -> Result<Self, Error> {
        Self::try_from_env()?.ok_or_else(|| {
            Error::config(format!(
                "messenger: set {ENV_APP_SECRET}, {ENV_VERIFY_TOKEN} and {ENV_PAGE_ACCESS_TOKEN}"
            ))
        })
    }

    /// As [`Messenger::from_env`], but `Ok(None)` when none of `MESSENGER_APP_SECRET`,
    /// `MESSENGER_VERIFY_TOKEN` and `MESSENGER_PAGE_ACCESS_TOKEN` is set, for bots that serve
    /// whichever platforms are configured.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] naming the variables missing when only some are set, a
    /// misspelt variable (close to one of [`ENV_VARS`]), or when they are invalid.
    pub fn try_from_env() -> Result<Option<Self>, Error> {
        bot_core::env::check_spelling("messenger", ENV_VARS)
            .map_err(|e| Error::config(e.to_string()))?;
        from_vars(|name| std::env::var(name).ok())
    }

    /// The API client of the first page, for calls beyond replies (tags, sender actions,
    /// profiles).
    pub fn client(&self) -> &MessengerClient {
        self.clients.default_client()
    }

    /// The API clients of every page, by page id.
    pub fn pages(&self) -> &Channels<MessengerClient> {
        &self.clients
    }

    /// The webhook's path.
    pub fn path(&self) -> &str {
        &self.webhook.path
    }
}

fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Messenger>, Error> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let required = [ENV_APP_SECRET, ENV_VERIFY_TOKEN, ENV_PAGE_ACCESS_TOKEN];
    let values: Vec<Option<String>> = required.iter().map(|name| var(name)).collect();
    let missing: Vec<&str> = required
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| *name)
        .collect();
    match (missing.len(), values.as_slice()) {
        (3, _) => Ok(None),
        (0, [Some(secret), Some(verify), Some(token)]) => {
            let api_base = var(ENV_API_BASE).unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
            let mut builder = Messenger::builder(secret.as_str(), verify.as_str(), token.as_str())
                .api_base(api_base);
            if let Some(limits) = bot_core::ratelimit::SharedLimits::for_adapter_env(
                "messenger",
                var(bot_core::ratelimit::REDIS_URL_ENV).as_deref(),
            )
            .map_err(|e| Error::config(e.to_string()))?
            {
                builder = builder.shared_limits(limits);
            }
            if let Some(id) = var(ENV_PAGE_ID) {
                builder = builder.page_id(id);
            }
            let parts = [("ID", true), ("ACCESS_TOKEN", true)];
            for page in numbered_vars(&Platform::MESSENGER, ENV_PAGE_PREFIX, parts, var)? {
                if let [Some(id), Some(token)] = page {
                    builder = builder.page(id, token);
                }
            }
            builder.build().map(Some)
        }
        _ => Err(Error::config(format!(
            "messenger: some settings are given but {} is not set",
            missing.join(" and ")
        ))),
    }
}

#[async_trait]
impl Adapter for Messenger {
    fn platform(&self) -> Platform {
        Platform::MESSENGER
    }

    /// The client records its calls in the bot's telemetry from now on.
    fn attach(&mut self, bot: &Attach) -> Result<(), bot_core::Error> {
        self.clients.record_in(bot.telemetry());
        Ok(())
    }

    fn outbound(&self) -> Option<Arc<dyn Outbound>> {
        Some(Arc::new(self.clients.clone()))
    }

    fn register_clients(&self, clients: &mut Clients) {
        self.clients.register(clients);
    }

    fn routes(&self, ingress: Ingress) -> Option<axum::Router> {
        Some(webhook::router(self.webhook.clone(), ingress))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn vars(set: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let set: Vec<(String, String)> = set
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| set.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_url_shares_the_pages_rate_limits_in_that_redis() {
        let base = [
            (ENV_APP_SECRET, "s"),
            (ENV_VERIFY_TOKEN, "v"),
            (ENV_PAGE_ACCESS_TOKEN, "t"),
        ];
        let m = from_vars(vars(&base)).unwrap().unwrap();
        assert!(m.client().api().shared_limits().is_none());
        let mut with = base.to_vec();
        with.push((
            bot_core::ratelimit::REDIS_URL_ENV,
            "redis://127.0.0.1:6379/0",
        ));
        let m = from_vars(vars(&with)).unwrap().unwrap();
        let store = m.client().api().shared_limits().map(|l| l.store_name());
        assert_eq!(store, Some("redis"));
        with[3].1 = "not a url";
        assert_eq!(
            from_vars(vars(&with)).unwrap_err().kind(),
            ErrorKind::Config
        );
    }

    #[test]
    fn configuration_from_the_environment() {
        assert!(from_vars(vars(&[])).unwrap().is_none());
        assert!(
            from_vars(vars(&[(ENV_API_BASE, "http://127.0.0.1:9")]))
                .unwrap()
                .is_none()
        );
        let partial =
            from_vars(vars(&[(ENV_APP_SECRET, "s"), (ENV_VERIFY_TOKEN, "")])).unwrap_err();
        assert_eq!(partial.kind(), ErrorKind::Config);
        let text = partial.to_string();
        assert!(
            text.contains(ENV_VERIFY_TOKEN) && text.contains(ENV_PAGE_ACCESS_TOKEN),
            "{text}"
        );
        assert!(!text.contains(ENV_APP_SECRET), "{text}");

        let full = [
            (ENV_APP_SECRET, "s"),
            (ENV_VERIFY_TOKEN, "v"),
            (ENV_PAGE_ACCESS_TOKEN, "t"),
        ];
        let m = from_vars(vars(&full)).unwrap().unwrap();
        assert_eq!(m.client().api_base(), DEFAULT_API_BASE);
        assert_eq!(m.path(), "/messenger/webhook");
        let mut with_base = full.to_vec();
        with_base.push((ENV_API_BASE, "http://127.0.0.1:9/"));
        let m = from_vars(vars(&with_base)).unwrap().unwrap();
        assert_eq!(m.client().api_base(), "http://127.0.0.1:9");
        let mut bad_base = full.to_vec();
        bad_base.push((ENV_API_BASE, "graph.facebook.com"));
        assert!(from_vars(vars(&bad_base)).is_err());
    }

    #[test]
    fn a_misspelt_variable_is_named_with_the_right_name() {
        let names = ["MESSENGER_APP_SECRET", "MESSENGER_VERYFY_TOKEN"].map(String::from);
        let error = bot_core::env::check_names("messenger", ENV_VARS, names).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("MESSENGER_VERYFY_TOKEN is not a variable messenger reads; did you mean MESSENGER_VERIFY_TOKEN?"),
            "{error}"
        );
        let fine = ENV_VARS.iter().map(|n| n.replace('#', "2"));
        bot_core::env::check_names("messenger", ENV_VARS, fine).unwrap();
    }

    #[test]
    fn the_builder_refuses_empty_secrets_and_relative_paths() {
        assert!(Messenger::builder("", "v", "t").build().is_err());
        assert!(Messenger::builder("s", "", "t").build().is_err());
        assert!(Messenger::builder("s", "v", "").build().is_err());
        assert!(
            Messenger::builder("s", "v", "t")
                .path("hook")
                .build()
                .is_err()
        );
        let m = Messenger::builder("s", "v", "t")
            .path("/fb")
            .build()
            .unwrap();
        assert_eq!(m.path(), "/fb");
        let debug = format!("{m:?}");
        assert!(debug.contains("redacted"), "{debug}");
    }
}
