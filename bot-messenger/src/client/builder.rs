//! [`MessengerClient`], its builder and its rate limits.

use std::fmt;
use std::sync::Arc;

use bot_core::Secret;
use bot_core::api::{ApiClient, ApiConfig, BuildClient, ConfigureApi, SentKeys};
use bot_core::outbound::PartKey;
use bot_core::telemetry::Telemetry;

use super::spec::GraphApi;
use crate::error::Error;

/// The Graph API base, with the version this crate was written against.
pub const DEFAULT_API_BASE: &str = "https://graph.facebook.com/v21.0";

/// The endpoint (rate limit and metrics name) of messages with text, images or templates, and
/// of sender actions.
pub(crate) const SEND: &str = "send";
/// The endpoint of messages with audio, video or file attachments.
pub(crate) const MEDIA: &str = "media";
/// The endpoint of user profile reads.
pub(crate) const USER_PROFILE: &str = "profile";

/// Calls per second allowed; defaults are Messenger's published per-page limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Messages with text, images, templates, and sender actions. Default 300.
    pub send_per_second: u32,
    /// Messages with audio, video or file attachments. Default 10.
    pub media_per_second: u32,
    /// Profile reads. Default 100.
    pub profile_per_second: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            send_per_second: 300,
            media_per_second: 10,
            profile_per_second: 100,
        }
    }
}

/// The Messenger Send API client. Cloning is cheap; clones share limits, connections and the
/// memory of sent parts.
///
/// # Examples
///
/// ```no_run
/// use bot_messenger::MessengerClient;
/// use bot_messenger::model::send::{Message, MessagingType, Recipient};
///
/// # async fn run() -> Result<(), bot_messenger::Error> {
/// let client = MessengerClient::builder("page-access-token").build()?;
/// let to = Recipient::Id("24386871164263049".into());
/// client.send_message(&to, &Message::text("Hello"), &MessagingType::Update).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MessengerClient {
    pub(super) api: ApiClient<GraphApi>,
    /// Parts of sends made for handlers, by (event, send index, part).
    pub(super) sent: Arc<SentKeys<PartKey>>,
}

impl fmt::Debug for MessengerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessengerClient")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// Builds a [`MessengerClient`]; the settings every platform shares come with [`ConfigureApi`]
/// (`api_base`, `retry`, `timeout`, `deadline`, `max_retry_after`, `http_client`, `telemetry`,
/// `channel_label`).
///
/// The deadline ([`ConfigureApi::deadline`], 20 s by default) bounds a call with its retries,
/// and a reply ([`bot_core::Outbound::send`]) with all its parts: keep it under the bot's
/// handler time-out (`Limits::handler_timeout`, 30 s by default), or the runtime may cut the
/// handler off mid-send.
#[derive(Debug, Clone)]
#[must_use]
pub struct MessengerClientBuilder {
    config: ApiConfig,
    rate_limits: RateLimits,
}

impl ConfigureApi for MessengerClientBuilder {
    fn api_config(&mut self) -> &mut ApiConfig {
        &mut self.config
    }
}

impl BuildClient for MessengerClientBuilder {
    type Client = MessengerClient;

    fn build_client(self) -> Result<MessengerClient, Error> {
        self.build()
    }
}

impl MessengerClientBuilder {
    /// Limits calls per second (default Messenger's published limits).
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when the token is empty, the base URL is not http(s), a rate
    /// limit is zero, the time-out or deadline is zero, the retry policy is invalid, or the HTTP
    /// client cannot be set up.
    pub fn build(self) -> Result<MessengerClient, Error> {
        let mut config = self.config;
        let limits = self.rate_limits;
        config.limit(SEND, limits.send_per_second);
        config.limit(MEDIA, limits.media_per_second);
        config.limit(USER_PROFILE, limits.profile_per_second);
        Ok(MessengerClient {
            api: ApiClient::new(GraphApi, config)?,
            sent: Arc::default(),
        })
    }
}

impl MessengerClient {
    /// Starts a client with the page access token.
    pub fn builder(access_token: impl Into<Secret>) -> MessengerClientBuilder {
        MessengerClientBuilder {
            config: ApiConfig::new(DEFAULT_API_BASE, access_token),
            rate_limits: RateLimits::default(),
        }
    }

    /// This client recording its calls in `telemetry`, sharing connections, limits and the
    /// memory of sent parts with `self` (the adapter does it when the bot is built).
    #[must_use]
    pub fn with_telemetry(&self, telemetry: Telemetry) -> Self {
        Self {
            api: self.api.with_telemetry(telemetry),
            sent: self.sent.clone(),
        }
    }

    /// The API base calls go to (no trailing `/`).
    pub fn api_base(&self) -> &str {
        self.api.base()
    }

    /// The client core underneath, for Graph calls this crate has no method for.
    pub fn api(&self) -> &ApiClient<GraphApi> {
        &self.api
    }
}

impl bot_core::outbound::Instrumented for MessengerClient {
    fn with_telemetry(&self, telemetry: bot_core::Telemetry) -> Self {
        MessengerClient::with_telemetry(self, telemetry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::time::Duration;

    #[test]
    fn builder_refuses_bad_configuration() {
        assert_eq!(
            MessengerClient::builder("").build().unwrap_err().kind(),
            ErrorKind::Config
        );
        assert!(
            MessengerClient::builder("t")
                .api_base("ftp://x")
                .build()
                .is_err()
        );
        let zero = RateLimits {
            media_per_second: 0,
            ..RateLimits::default()
        };
        assert!(
            MessengerClient::builder("t")
                .rate_limits(zero)
                .build()
                .is_err()
        );
        assert!(
            MessengerClient::builder("t")
                .deadline(Duration::ZERO)
                .build()
                .is_err()
        );
        let client = MessengerClient::builder("t")
            .api_base("http://127.0.0.1:1/")
            .build()
            .unwrap();
        assert_eq!(client.api_base(), "http://127.0.0.1:1");
        assert!(!format!("{client:?}").contains("\"t\""));
    }
}
