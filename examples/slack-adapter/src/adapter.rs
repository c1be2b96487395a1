//! [`Slack`]: the adapter a bot is built with.

use std::sync::Arc;

use async_trait::async_trait;
use bot_core::adapter::{Adapter, Attach, Clients};
use bot_core::outbound::Outbound;
use bot_core::{Error, ErrorKind, Ingress, Platform, Secret};

use crate::client::{DEFAULT_API_BASE, SlackClient};
use crate::event::PLATFORM;
use crate::webhook::{self, DEFAULT_PATH};

/// The signing secret (the app's "Basic Information" page).
pub const ENV_SIGNING_SECRET: &str = "SLACK_SIGNING_SECRET";
/// The bot token, `xoxb-...` (the app's "OAuth & Permissions" page).
pub const ENV_BOT_TOKEN: &str = "SLACK_BOT_TOKEN";
/// The Web API base (default `https://slack.com/api`): a proxy, or a fake in tests.
pub const ENV_API_BASE: &str = "SLACK_API_BASE";

/// Builds a [`Slack`] adapter.
#[derive(Debug)]
#[must_use]
pub struct SlackBuilder {
    signing_secret: Secret,
    bot_token: Secret,
    api_base: String,
    path: String,
}

impl SlackBuilder {
    /// Sends Web API calls to `base` instead of Slack's.
    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into();
        self
    }

    /// Serves the events URL at `path` (default `/slack/events`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The adapter.
    ///
    /// # Errors
    ///
    /// A configuration error naming what is wrong: an empty secret or token, a path without a
    /// leading `/`, a base that is not an http(s) URL.
    pub fn build(self) -> Result<Slack, Error> {
        if self.signing_secret.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("slack: {ENV_SIGNING_SECRET} is empty"),
            ));
        }
        if !self.path.starts_with('/') {
            return Err(Error::new(
                ErrorKind::Config,
                format!("slack: the path {:?} must start with /", self.path),
            ));
        }
        let client = SlackClient::new(self.api_base, self.bot_token)?;
        Ok(Slack {
            signing_secret: self.signing_secret,
            path: self.path,
            client,
        })
    }
}

// ANCHOR: adapter
/// Slack's Events API in, `chat.postMessage` out. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Slack {
    signing_secret: Secret,
    path: String,
    client: SlackClient,
}

impl Slack {
    /// An adapter with the app's signing secret and bot token.
    pub fn builder(
        signing_secret: impl Into<Secret>,
        bot_token: impl Into<Secret>,
    ) -> SlackBuilder {
        SlackBuilder {
            signing_secret: signing_secret.into(),
            bot_token: bot_token.into(),
            api_base: DEFAULT_API_BASE.to_owned(),
            path: DEFAULT_PATH.to_owned(),
        }
    }

    /// An adapter from `SLACK_SIGNING_SECRET`, `SLACK_BOT_TOKEN` and `SLACK_API_BASE`
    /// (optional), or `None` when neither of the first two is set.
    ///
    /// # Errors
    ///
    /// A configuration error naming the variable missing when only one of the two is set, or
    /// what [`SlackBuilder::build`] refuses.
    pub fn try_from_env() -> Result<Option<Self>, Error> {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        match (var(ENV_SIGNING_SECRET), var(ENV_BOT_TOKEN)) {
            (None, None) => Ok(None),
            (Some(secret), Some(token)) => {
                let mut builder = Self::builder(secret, token);
                if let Some(base) = var(ENV_API_BASE) {
                    builder = builder.api_base(base);
                }
                builder.build().map(Some)
            }
            (Some(_), None) => Err(Error::new(
                ErrorKind::Config,
                format!("slack: {ENV_SIGNING_SECRET} is set but {ENV_BOT_TOKEN} is not"),
            )),
            (None, Some(_)) => Err(Error::new(
                ErrorKind::Config,
                format!("slack: {ENV_BOT_TOKEN} is set but {ENV_SIGNING_SECRET} is not"),
            )),
        }
    }

    /// The Web API client, also reachable from handlers as `cx.client::<SlackClient>()`.
    pub fn client(&self) -> &SlackClient {
        &self.client
    }
}

#[async_trait]
impl Adapter for Slack {
    fn platform(&self) -> Platform {
        PLATFORM
    }

    /// The client records its calls in the bot's telemetry from now on.
    fn attach(&mut self, bot: &Attach) -> Result<(), Error> {
        self.client = self.client.with_telemetry(bot.telemetry().clone());
        Ok(())
    }

    fn outbound(&self) -> Option<Arc<dyn Outbound>> {
        Some(Arc::new(self.client.clone()))
    }

    fn register_clients(&self, clients: &mut Clients) {
        clients.insert(Arc::new(self.client.clone()));
    }

    fn routes(&self, ingress: Ingress) -> Option<axum::Router> {
        Some(webhook::routes(
            &self.path,
            self.signing_secret.clone(),
            ingress,
        ))
    }
}
// ANCHOR_END: adapter
