//! [`ApiConfig`] and [`ConfigureApi`]: what every platform's client is configured with, and the
//! builder methods every adapter's client builder shares.

use std::time::Duration;

use crate::limits::RetryPolicy;
use crate::ratelimit::SharedLimits;
use crate::secret::Secret;
use crate::telemetry::Telemetry;

/// Default time-out of one HTTP attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of one call with its retries and rate-limit waits: under the 30 s a
/// platform's webhook or a handler's time-out usually allows.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);
/// Default longest `Retry-After` a call waits for; a longer hint fails the call at once with
/// the hint, and the runtime retries the handler after it.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The retry policy of API calls by default: 4 attempts, 500 ms doubling up to 30 s, 20 % jitter.
pub fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(30),
        multiplier: 2.0,
        jitter: 0.2,
    }
}

/// How a platform's API client is set up: base URL, token, retries, time-outs, rate limits,
/// telemetry. Adapters' client builders hold one and offer its settings through
/// [`ConfigureApi`].
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub(crate) base: String,
    pub(crate) token: Secret,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
    pub(crate) deadline: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) limits: Vec<(&'static str, u32)>,
    pub(crate) http: Option<reqwest::Client>,
    pub(crate) http2_prior_knowledge: bool,
    pub(crate) root_certificates: Vec<Vec<u8>>,
    pub(crate) telemetry: Option<Telemetry>,
    pub(crate) channel: Option<String>,
    pub(crate) shared_limits: Option<SharedLimits>,
}

impl ApiConfig {
    /// Calls to `base` authorised by `token`, with the defaults: [`default_retry_policy`],
    /// [`DEFAULT_TIMEOUT`], [`DEFAULT_DEADLINE`], [`DEFAULT_MAX_RETRY_AFTER`], no rate limit.
    pub fn new(base: impl Into<String>, token: impl Into<Secret>) -> Self {
        Self {
            base: base.into(),
            token: token.into(),
            retry: default_retry_policy(),
            timeout: DEFAULT_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            limits: Vec::new(),
            http: None,
            http2_prior_knowledge: false,
            root_certificates: Vec::new(),
            telemetry: None,
            channel: None,
            shared_limits: None,
        }
    }

    /// Limits calls of `endpoint` ([`super::Call::new`]) to `per_second` (bursts of as many; with
    /// [`ConfigureApi::shared_limits`], shared by every process and without bursts); replaces an
    /// earlier limit of the same endpoint.
    pub fn limit(&mut self, endpoint: &'static str, per_second: u32) {
        self.limits.retain(|(e, _)| *e != endpoint);
        self.limits.push((endpoint, per_second));
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The token.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    /// The per-attempt time-out.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

/// The settings every platform's client builder shares. An adapter's builder implements
/// [`ConfigureApi::api_config`]; the rest comes with it.
pub trait ConfigureApi: Sized {
    /// The configuration the settings go to.
    fn api_config(&mut self) -> &mut ApiConfig;

    /// Sends calls to `base` instead of the platform's (a proxy, or a fake in tests).
    #[must_use]
    fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_config().base = base.into();
        self
    }

    /// Retries calls by `policy` (default [`default_retry_policy`]).
    #[must_use]
    fn retry(mut self, policy: RetryPolicy) -> Self {
        self.api_config().retry = policy;
        self
    }

    /// Gives up on one HTTP attempt after `timeout` (default [`DEFAULT_TIMEOUT`]).
    #[must_use]
    fn timeout(mut self, timeout: Duration) -> Self {
        self.api_config().timeout = timeout;
        self
    }

    /// Gives up on a call, retries and rate-limit waits included, after `deadline` (default
    /// [`DEFAULT_DEADLINE`]).
    #[must_use]
    fn deadline(mut self, deadline: Duration) -> Self {
        self.api_config().deadline = deadline;
        self
    }

    /// The longest `Retry-After` a call waits for (default [`DEFAULT_MAX_RETRY_AFTER`]); a
    /// longer one fails the call at once, carrying the hint for the runtime.
    #[must_use]
    fn max_retry_after(mut self, max: Duration) -> Self {
        self.api_config().max_retry_after = max;
        self
    }

    /// Sends through `http` instead of the client's own transport: to set a proxy, or to speak
    /// HTTP/1.1 only. The per-attempt time-out still applies; the settings of the built-in
    /// transport ([`http2_prior_knowledge`](ConfigureApi::http2_prior_knowledge),
    /// [`add_root_certificate`](ConfigureApi::add_root_certificate)) do not.
    ///
    /// Without it, an `https://` base is served by the client's built-in HTTP/2 transport (with
    /// HTTP/1.1 through `reqwest` for a server that does not speak HTTP/2), an `http://` base by
    /// `reqwest` over HTTP/1.1; see [`crate::api`]'s transport table.
    #[must_use]
    fn http_client(mut self, http: reqwest::Client) -> Self {
        self.api_config().http = Some(http);
        self
    }

    /// Speaks HTTP/2 without TLS (h2c, "prior knowledge") to an `http://` base, through the
    /// client's built-in HTTP/2 transport: for a local fake or a sidecar that speaks HTTP/2 in
    /// the clear. Without it an `http://` base is spoken to over HTTP/1.1.
    #[must_use]
    fn http2_prior_knowledge(mut self) -> Self {
        self.api_config().http2_prior_knowledge = true;
        self
    }

    /// Trusts the certificate authority `der` (a DER-encoded certificate) for `https://` bases,
    /// besides the platform's roots: for a test server, or a proxy with a private CA.
    #[must_use]
    fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.api_config().root_certificates.push(der.into());
        self
    }

    /// Records calls in `telemetry` (an adapter in a bot does it by itself).
    #[must_use]
    fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.api_config().telemetry = Some(telemetry);
        self
    }

    /// Labels this client's metrics with `channel` (`bot.channel`), to tell apart the channels,
    /// pages or applications of one platform in one process.
    #[must_use]
    fn channel_label(mut self, channel: impl Into<String>) -> Self {
        self.api_config().channel = Some(channel.into());
        self
    }

    /// Shares the per-endpoint rate limits with every process of this channel through
    /// `limits`' store (PostgreSQL or Redis): the platform's quota is for the channel, not for
    /// each process. The limits' keys are the platform, the channel and the endpoint; the
    /// channel is the client's [`channel_label`](ConfigureApi::channel_label) when it has one —
    /// give one when the processes of a channel hold different tokens (LINE's per-process or
    /// rotated tokens) — otherwise the first 16 hex digits of a SHA-256 of the token (never the
    /// token). The window of
    /// calls in flight stays per process. See [`crate::ratelimit`].
    #[must_use]
    fn shared_limits(mut self, limits: SharedLimits) -> Self {
        self.api_config().shared_limits = Some(limits);
        self
    }
}

/// A platform client's builder, as an adapter serving several channels builds one client per
/// channel ([`crate::outbound::Channels::from_builders`]).
pub trait BuildClient: ConfigureApi + Clone {
    /// The client it builds.
    type Client;

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`super::ApiErrorKind::Config`] when the configuration is invalid.
    fn build_client(self) -> Result<Self::Client, super::ApiError>;
}

impl ConfigureApi for ApiConfig {
    fn api_config(&mut self) -> &mut ApiConfig {
        self
    }
}
