//! [`LineClient`] and how it is made: [`LineClientBuilder`] with LINE's [`RateLimits`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bot_core::api::{Answer, ApiClient, ApiConfig, BuildClient, Call, ConfigureApi, SentKeys};
use bot_core::telemetry::Telemetry;
use bot_core::{EventId, Platform, Secret};
use serde::de::DeserializeOwned;

use super::spec::{LineSpec, REQUEST_ID_HEADER};
use crate::error::{Error, ErrorKind};

/// LINE's API base.
pub const DEFAULT_API_BASE: &str = "https://api.line.me";
/// LINE's API base for content (what users send, rich menu images).
pub const DEFAULT_DATA_API_BASE: &str = "https://api-data.line.me";

/// Endpoint names: the rate limit each call is under, and its name in metrics.
pub(crate) mod endpoint {
    pub(crate) const REPLY: &str = super::super::spec::REPLY;
    pub(crate) const PUSH: &str = "push";
    pub(crate) const MULTICAST: &str = "multicast";
    pub(crate) const PROFILE: &str = "profile";
    pub(crate) const LOADING: &str = "loading";
    pub(crate) const CONTENT: &str = "content";
    pub(crate) const RICH_MENU: &str = "rich_menu";
    pub(crate) const WEBHOOK_ENDPOINT: &str = "webhook_endpoint";
    pub(crate) const WEBHOOK_TEST: &str = "webhook_test";
}

/// A reply token is unusable 20 minutes after its event.
const REPLY_TOKEN_LIFETIME: Duration = Duration::from_secs(20 * 60);
/// Replies remembered at most.
const MAX_REPLIED: usize = 100_000;

/// Requests per second allowed per endpoint; defaults are LINE's published per-channel limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Reply API. Default 2,000.
    pub reply_per_second: u32,
    /// Push API. Default 2,000.
    pub push_per_second: u32,
    /// Multicast API. Default 200.
    pub multicast_per_second: u32,
    /// Profile API. Default 2,000.
    pub profile_per_second: u32,
    /// Loading animation API. Default 100.
    pub loading_per_second: u32,
    /// Content API (downloads of what users send). Default 2,000.
    pub content_per_second: u32,
    /// Rich menu APIs (create, get, list, delete, default, link, image). Default 2,000.
    pub rich_menu_per_second: u32,
    /// Set and get the webhook endpoint: 1,000 a minute, so default 16 a second.
    pub webhook_endpoint_per_second: u32,
    /// Test the webhook endpoint. Default 1: LINE allows 60 an hour, which a per-second quota
    /// cannot express; this only keeps a loop from spending the hour's tests at once.
    pub webhook_test_per_second: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            reply_per_second: 2000,
            push_per_second: 2000,
            multicast_per_second: 200,
            profile_per_second: 2000,
            loading_per_second: 100,
            content_per_second: 2000,
            rich_menu_per_second: 2000,
            webhook_endpoint_per_second: 16,
            webhook_test_per_second: 1,
        }
    }
}

impl RateLimits {
    fn apply(&self, config: &mut ApiConfig) {
        for (name, per_second) in [
            (endpoint::REPLY, self.reply_per_second),
            (endpoint::PUSH, self.push_per_second),
            (endpoint::MULTICAST, self.multicast_per_second),
            (endpoint::PROFILE, self.profile_per_second),
            (endpoint::LOADING, self.loading_per_second),
            (endpoint::CONTENT, self.content_per_second),
            (endpoint::RICH_MENU, self.rich_menu_per_second),
            (endpoint::WEBHOOK_ENDPOINT, self.webhook_endpoint_per_second),
            (endpoint::WEBHOOK_TEST, self.webhook_test_per_second),
        ] {
            config.limit(name, per_second);
        }
    }
}

/// The LINE Messaging API client. Cloning is cheap; clones share limits and connections.
///
/// # Examples
///
/// ```no_run
/// use bot_line::LineClient;
/// use bot_line::model::send::Message;
///
/// # async fn run() -> Result<(), bot_line::Error> {
/// let client = LineClient::builder("channel-access-token").build()?;
/// client.push("U4af4980629...", &[Message::text("Hello")], None).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LineClient {
    pub(super) api: ApiClient<LineSpec>,
    pub(super) shared: Arc<Shared>,
}

/// What clones share beyond the core client.
pub(super) struct Shared {
    /// Where content and rich menu images go.
    pub(super) data_api_base: Arc<str>,
    pub(super) push_fallback: bool,
    /// Replies made, by (event, send index), for as long as a reply token lives: a retried
    /// handler skips a reply that went out already instead of failing on the used token.
    pub(super) replied: SentKeys<(EventId, u32)>,
    /// Replies whose call failed in a way that may have reached LINE: a retried handler tries
    /// the token again, but never pushes instead when LINE refuses it (it may have been used).
    pub(super) maybe_replied: SentKeys<(EventId, u32)>,
}

impl fmt::Debug for LineClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineClient")
            .field("api", &self.api)
            .field("data_api_base", &self.shared.data_api_base)
            .field("push_fallback", &self.shared.push_fallback)
            .finish_non_exhaustive()
    }
}

/// Builds a [`LineClient`]; the settings every platform shares (base URL, retries, time-out,
/// deadline, HTTP client, telemetry) come from [`ConfigureApi`].
#[derive(Debug, Clone)]
#[must_use]
pub struct LineClientBuilder {
    config: ApiConfig,
    data_api_base: Option<String>,
    rate_limits: RateLimits,
    push_fallback: bool,
}

impl ConfigureApi for LineClientBuilder {
    fn api_config(&mut self) -> &mut ApiConfig {
        &mut self.config
    }
}

impl BuildClient for LineClientBuilder {
    type Client = LineClient;

    fn build_client(self) -> Result<LineClient, Error> {
        self.build()
    }
}

impl LineClientBuilder {
    /// Downloads content and uploads rich menu images at `data_api_base`. Default:
    /// [`DEFAULT_DATA_API_BASE`] when the API base is LINE's own, otherwise the API base (a
    /// proxy or fake serving both).
    pub fn data_api_base(mut self, data_api_base: impl Into<String>) -> Self {
        self.data_api_base = Some(data_api_base.into());
        self
    }

    /// Limits requests per endpoint (default LINE's published limits).
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Pushes the messages when LINE refuses a reply token (expired or used). Off by default,
    /// because pushes count against the monthly message quota.
    pub fn push_fallback(mut self, enabled: bool) -> Self {
        self.push_fallback = enabled;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] when the token is empty, a base URL is not http(s), a rate
    /// limit, the time-out or the deadline is zero, the retry policy is invalid, or the HTTP
    /// client cannot be set up.
    pub fn build(mut self) -> Result<LineClient, Error> {
        self.rate_limits.apply(&mut self.config);
        let api_base = self.config.base().trim_end_matches('/').to_owned();
        let data_api_base = match self.data_api_base {
            Some(base) => {
                let base = base.trim_end_matches('/').to_owned();
                if !(base.starts_with("https://") || base.starts_with("http://")) {
                    return Err(Error::config(format!(
                        "line: data api base {base:?} is not an http(s) URL"
                    )));
                }
                base
            }
            None if api_base == DEFAULT_API_BASE => DEFAULT_DATA_API_BASE.to_owned(),
            None => api_base,
        };
        Ok(LineClient {
            api: ApiClient::new(LineSpec, self.config)?,
            shared: Arc::new(Shared {
                data_api_base: data_api_base.into(),
                push_fallback: self.push_fallback,
                replied: SentKeys::new(REPLY_TOKEN_LIFETIME, MAX_REPLIED),
                maybe_replied: SentKeys::new(REPLY_TOKEN_LIFETIME, MAX_REPLIED),
            }),
        })
    }
}

impl LineClient {
    /// Starts a client with the channel access token.
    pub fn builder(access_token: impl Into<Secret>) -> LineClientBuilder {
        LineClientBuilder {
            config: ApiConfig::new(DEFAULT_API_BASE, access_token),
            data_api_base: None,
            rate_limits: RateLimits::default(),
            push_fallback: false,
        }
    }

    /// This client recording its calls in `telemetry`, sharing connections, limits and the
    /// memory of replies with `self` (the adapter does it when the bot is built).
    #[must_use]
    pub fn with_telemetry(&self, telemetry: Telemetry) -> Self {
        Self {
            api: self.api.with_telemetry(telemetry),
            shared: self.shared.clone(),
        }
    }

    /// The client core the calls go through.
    pub fn api(&self) -> &ApiClient<LineSpec> {
        &self.api
    }

    /// The base URL of content and rich menu images.
    pub fn data_api_base(&self) -> &str {
        &self.shared.data_api_base
    }

    /// `call`, until `deadline` when a send of several parts shares one.
    // Not an `async fn`: one would keep the call besides the client core's future, which holds
    // it already, for the seconds the answer takes.
    pub(super) fn call(
        &self,
        call: Call,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Answer, Error>> + Send + '_ {
        let call = match deadline {
            Some(deadline) => call.deadline(deadline),
            None => call,
        };
        self.api.call(call)
    }

    /// The JSON of `answer`, as a `what`.
    pub(super) fn decode<T: DeserializeOwned>(answer: &Answer, what: &str) -> Result<T, Error> {
        serde_json::from_slice(&answer.body).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("line: the answer is not a {what}"),
            )
            .with_platform(Platform::LINE)
            .with_status(answer.status)
            .with_request_id(answer.header(REQUEST_ID_HEADER).map(str::to_owned))
            .with_source(e)
        })
    }

    /// `call` to the data API.
    pub(super) fn on_data_api(&self, call: Call) -> Call {
        call.base(self.shared.data_api_base.clone())
    }
}

impl bot_core::outbound::Instrumented for LineClient {
    fn with_telemetry(&self, telemetry: bot_core::Telemetry) -> Self {
        LineClient::with_telemetry(self, telemetry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_goes_to_the_data_api_unless_a_base_is_set() {
        let line = LineClient::builder("t").build().unwrap();
        assert_eq!(line.data_api_base(), DEFAULT_DATA_API_BASE);
        let proxied = LineClient::builder("t")
            .api_base("http://proxy:9/")
            .build()
            .unwrap();
        assert_eq!(proxied.data_api_base(), "http://proxy:9");
        let both = LineClient::builder("t")
            .api_base("http://proxy:9")
            .data_api_base("https://data.example")
            .build()
            .unwrap();
        assert_eq!(both.data_api_base(), "https://data.example");
    }

    #[test]
    fn builder_refuses_bad_configuration() {
        assert_eq!(
            LineClient::builder("").build().unwrap_err().kind(),
            ErrorKind::Config
        );
        assert!(
            LineClient::builder("t")
                .api_base("ftp://x")
                .build()
                .is_err()
        );
        assert!(
            LineClient::builder("t")
                .data_api_base("ftp://x")
                .build()
                .is_err()
        );
        let zero = RateLimits {
            push_per_second: 0,
            ..RateLimits::default()
        };
        assert!(LineClient::builder("t").rate_limits(zero).build().is_err());
    }
}
