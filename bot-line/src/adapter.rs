//! [`Line`]: the adapter that plugs the webhook and the client into a bot.

use std::sync::Arc;

use async_trait::async_trait;
use bot_core::adapter::{Attach, Clients};
use bot_core::api::ApiConfig;
use bot_core::{Adapter, Ingress, Outbound, Platform, Secret};

use crate::client::{ConfigureApi, DEFAULT_API_BASE, LineClient, LineClientBuilder};
use crate::error::Error;
use crate::webhook::{self, WebhookConfig};

/// The environment variable with the channel secret (signs webhooks).
pub const ENV_CHANNEL_SECRET: &str = "LINE_CHANNEL_SECRET";
/// The environment variable with the channel access token (authorises API calls).
pub const ENV_CHANNEL_ACCESS_TOKEN: &str = "LINE_CHANNEL_ACCESS_TOKEN";
/// The environment variable with the API base URL (default `https://api.line.me`).
pub const ENV_API_BASE: &str = "LINE_API_BASE";

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
#[derive(Debug, Clone)]
pub struct Line {
    webhook: WebhookConfig,
    client: LineClient,
}

/// Builds a [`Line`] adapter.
#[derive(Debug, Clone)]
#[must_use]
pub struct LineBuilder {
    webhook: WebhookConfig,
    client: LineClientBuilder,
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
    /// [`crate::ErrorKind::Config`] when the secret is empty, the path does not start with `/`,
    /// or the client's configuration is invalid.
    pub fn build(self) -> Result<Line, Error> {
        if self.webhook.channel_secret.is_empty() {
            return Err(Error::config("line: the channel secret is empty"));
        }
        if !self.webhook.path.starts_with('/') {
            return Err(Error::config(format!(
                "line: webhook path {:?} must start with /",
                self.webhook.path
            )));
        }
        Ok(Line {
            webhook: self.webhook,
            client: self.client.build()?,
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
        }
    }

    /// An adapter configured from `LINE_CHANNEL_SECRET`, `LINE_CHANNEL_ACCESS_TOKEN` and
    /// `LINE_API_BASE` (optional).
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

    /// As [`Line::from_env`], but `Ok(None)` when neither `LINE_CHANNEL_SECRET` nor
    /// `LINE_CHANNEL_ACCESS_TOKEN` is set, for bots that serve whichever platforms are configured.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when only one of them is set, or they are invalid.
    pub fn try_from_env() -> Result<Option<Self>, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var(ENV_CHANNEL_SECRET), var(ENV_CHANNEL_ACCESS_TOKEN)) {
            (None, None) => Ok(None),
            (Some(secret), Some(token)) => {
                let api_base = var(ENV_API_BASE).unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
                Self::builder(secret, token)
                    .api_base(api_base)
                    .build()
                    .map(Some)
            }
            (None, Some(_)) => Err(Error::config(format!(
                "line: {ENV_CHANNEL_ACCESS_TOKEN} is set but {ENV_CHANNEL_SECRET} is not"
            ))),
            (Some(_), None) => Err(Error::config(format!(
                "line: {ENV_CHANNEL_SECRET} is set but {ENV_CHANNEL_ACCESS_TOKEN} is not"
            ))),
        }
    }

    /// The API client, for calls beyond replies (push, multicast, profile).
    pub fn client(&self) -> &LineClient {
        &self.client
    }

    /// The webhook's path.
    pub fn path(&self) -> &str {
        &self.webhook.path
    }
}

#[async_trait]
impl Adapter for Line {
    fn platform(&self) -> Platform {
        Platform::LINE
    }

    fn outbound(&self) -> Option<Arc<dyn Outbound>> {
        Some(Arc::new(self.client.clone()))
    }

    fn register_clients(&self, clients: &mut Clients) {
        clients.insert(Arc::new(self.client.clone()));
    }

    /// The client records its calls in the bot's telemetry.
    fn attach(&mut self, bot: &Attach) -> Result<(), bot_core::Error> {
        self.client = self.client.with_telemetry(bot.telemetry().clone());
        Ok(())
    }

    fn routes(&self, ingress: Ingress) -> Option<axum::Router> {
        Some(webhook::router(self.webhook.clone(), ingress))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
