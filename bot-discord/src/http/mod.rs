//! The REST client: per-route buckets learned from `X-RateLimit-*` headers, a proactive global
//! limit, 429 handling, and a guard against Discord's invalid request ban.
//!
//! - **Buckets**: every answer's `X-RateLimit-Bucket`, `-Remaining` and `-Reset-After` are
//!   remembered per route and major parameter (channel, guild, webhook); a call to a bucket with
//!   nothing remaining waits for its reset while calls to other buckets go on.
//! - **Global**: at most 50 requests per second by default (interaction responses and follow-ups
//!   excepted, as on Discord); a 429 with `X-RateLimit-Global` (or `"global": true`) pauses every
//!   global route for its `retry_after`.
//! - **Invalid requests**: 401, 403 and 429 (but the `shared` scope) are counted over 10 minutes;
//!   past the budget (9,000 by default, under Discord's 10,000 ban), calls are refused with
//!   [`ErrorKind::InvalidRequestLimit`] until the window drains.
//! - **Retries**: 429 after `retry_after`, 5xx and connection failures with backoff. Message
//!   creation carries a `nonce` with `enforce_nonce`, so a retry never posts twice.
//! - **Maybe delivered**: a call that cannot be made idempotent (a `POST` without a nonce:
//!   follow-ups, interaction responses) is not sent again after a failure that may hide a
//!   delivery: a time-out, a connection broken after the request was written, a 500, 502 or
//!   504. It fails with [`Error::maybe_delivered`]; a refused connection or a 503 is retried.
//! - **Long rate limits**: a 429 (or a bucket) that asks to wait longer than
//!   [`DiscordHttpBuilder::max_retry_after`] (default [`DEFAULT_MAX_RETRY_AFTER`]) is not
//!   waited: the call fails at once with [`ErrorKind::RateLimited`] and the hint in
//!   [`Error::retry_after`], so the runtime retries the handler later instead of a handler
//!   sleeping past its time-out.

mod ratelimit;
mod route;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bot_core::outbound::RateLimit;
use bot_core::telemetry::Telemetry;
use bot_core::{Platform, RetryPolicy, Secret};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::Value;
use tokio::time::Instant;

use ratelimit::{Admission, RateLimiter, Ticket, seconds};
pub use ratelimit::{INVALID_REQUEST_BAN, INVALID_WINDOW};
use route::RouteKey;

use crate::error::{Error, ErrorKind};
use crate::gateway::GatewayInfo;

/// Discord's global limit per bot.
pub const DEFAULT_GLOBAL_PER_SECOND: u32 = 50;
/// Invalid requests allowed per 10 minutes before the client refuses to send.
pub const DEFAULT_INVALID_BUDGET: usize = 9_000;
/// How long a call waits for another call's answer before asking its bucket again.
const ANSWER_WAIT: Duration = Duration::from_millis(250);
/// Default time-out of one HTTP attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest rate-limit wait a call sits through by default; longer ones fail the call.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The retry policy of REST calls by default: 4 attempts, 500 ms doubling up to 30 s.
pub fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(30),
        multiplier: 2.0,
        jitter: 0.2,
    }
}

/// Discord's REST API. Cloning is cheap; clones share the rate-limit state.
#[derive(Clone)]
pub struct DiscordHttp {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    api_base: String,
    token: Secret,
    retry: RetryPolicy,
    global: RateLimit,
    limits: RateLimiter,
    max_retry_after: Duration,
    telemetry: OnceLock<Telemetry>,
}

impl fmt::Debug for DiscordHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordHttp")
            .field("api_base", &self.inner.api_base)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// Builds a [`DiscordHttp`].
#[derive(Debug, Clone)]
#[must_use]
pub struct DiscordHttpBuilder {
    token: Secret,
    api_base: String,
    retry: RetryPolicy,
    global_per_second: u32,
    invalid_budget: usize,
    timeout: Duration,
    max_retry_after: Duration,
}

impl DiscordHttpBuilder {
    /// Calls `api_base` instead of `https://discord.com/api/v10`.
    pub fn api_base(mut self, api_base: impl Into<String>) -> Self {
        self.api_base = api_base.into();
        self
    }

    /// Retries by `policy`.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The proactive global limit (default 50 per second; large bots get more from Discord).
    pub fn global_per_second(mut self, per_second: u32) -> Self {
        self.global_per_second = per_second;
        self
    }

    /// Invalid requests (401, 403, 429) allowed per 10 minutes before refusing to send.
    pub fn invalid_budget(mut self, budget: usize) -> Self {
        self.invalid_budget = budget;
        self
    }

    /// The time-out of one attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest rate-limit wait (a 429's `retry_after`, a bucket's reset) a call sits
    /// through (default 10 s); a longer one fails the call with [`ErrorKind::RateLimited`]
    /// carrying the wait as [`Error::retry_after`].
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for an empty token, a base URL that is not http(s), a zero global
    /// limit or budget, or an invalid retry policy.
    pub fn build(self) -> Result<DiscordHttp, Error> {
        if self.token.is_empty() {
            return Err(Error::config("discord: the bot token is empty"));
        }
        let api_base = self.api_base.trim_end_matches('/').to_owned();
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            return Err(Error::config(format!(
                "discord: api base {api_base:?} is not an http(s) URL"
            )));
        }
        let global = RateLimit::per_second(self.global_per_second)
            .ok_or_else(|| Error::config("discord: the global limit must be above zero"))?;
        if self.invalid_budget == 0 {
            return Err(Error::config(
                "discord: the invalid request budget must be above zero",
            ));
        }
        self.retry
            .validate()
            .map_err(|e| Error::config(format!("discord: retry policy: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!(
                "DiscordBot (https://example.invalid/botrt, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()
            .map_err(|e| Error::config("discord: cannot build the http client").with_source(e))?;
        Ok(DiscordHttp {
            inner: Arc::new(Inner {
                http,
                api_base,
                token: self.token,
                retry: self.retry,
                global,
                limits: RateLimiter::new(self.invalid_budget),
                max_retry_after: self.max_retry_after,
                telemetry: OnceLock::new(),
            }),
        })
    }
}

impl DiscordHttp {
    /// Starts a client with the bot token.
    pub fn builder(token: impl Into<Secret>) -> DiscordHttpBuilder {
        DiscordHttpBuilder {
            token: token.into(),
            api_base: crate::DEFAULT_API_BASE.to_owned(),
            retry: default_retry_policy(),
            global_per_second: DEFAULT_GLOBAL_PER_SECOND,
            invalid_budget: DEFAULT_INVALID_BUDGET,
            timeout: DEFAULT_TIMEOUT,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }

    /// Records calls in `telemetry` (the adapter does it when the bot starts).
    pub fn set_telemetry(&self, telemetry: Telemetry) {
        let _ = self.inner.telemetry.set(telemetry);
    }

    /// Invalid requests (401, 403, 429) counted in the last 10 minutes.
    pub fn invalid_requests(&self) -> usize {
        self.inner.limits.invalid_count()
    }

    /// `GET /gateway/bot`: the gateway URL, recommended shards and session start limit.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`]; [`ErrorKind::Decode`] when the answer has another shape.
    pub async fn gateway_bot(&self) -> Result<GatewayInfo, Error> {
        let value = self.request(Method::GET, "/gateway/bot", None).await?;
        serde_json::from_value(value).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                "discord: /gateway/bot answered another shape",
            )
            .with_source(e)
        })
    }

    /// `POST /channels/{channel}/messages`. Give `body` a `nonce` (and `enforce_nonce: true`) to
    /// make retries safe; [`crate::DiscordClient`] does.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn create_message(&self, channel_id: &str, body: &Value) -> Result<Value, Error> {
        self.request(
            Method::POST,
            &format!("/channels/{channel_id}/messages"),
            Some(body),
        )
        .await
    }

    /// `PATCH /channels/{channel}/messages/{message}`.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn edit_message(
        &self,
        channel_id: &str,
        message_id: &str,
        body: &Value,
    ) -> Result<Value, Error> {
        self.request(
            Method::PATCH,
            &format!("/channels/{channel_id}/messages/{message_id}"),
            Some(body),
        )
        .await
    }

    /// `POST /interactions/{id}/{token}/callback`: the initial response to an interaction.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn interaction_callback(
        &self,
        interaction_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<(), Error> {
        self.request(
            Method::POST,
            &format!("/interactions/{interaction_id}/{token}/callback"),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /webhooks/{application}/{token}`: a follow-up message (for 15 minutes).
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn create_followup(
        &self,
        application_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<Value, Error> {
        self.request(
            Method::POST,
            &format!("/webhooks/{application_id}/{token}"),
            Some(body),
        )
        .await
    }

    /// `PATCH /webhooks/{application}/{token}/messages/@original`: edits the first response.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn edit_original(
        &self,
        application_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<Value, Error> {
        self.request(
            Method::PATCH,
            &format!("/webhooks/{application_id}/{token}/messages/@original"),
            Some(body),
        )
        .await
    }

    /// `PUT /applications/{application}/commands`: replaces the global slash commands with
    /// `commands` (an array of command objects).
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn register_commands(
        &self,
        application_id: &str,
        commands: &Value,
    ) -> Result<Value, Error> {
        self.request(
            Method::PUT,
            &format!("/applications/{application_id}/commands"),
            Some(commands),
        )
        .await
    }

    fn telemetry(&self) -> Option<&Telemetry> {
        self.inner.telemetry.get()
    }

    /// Any REST call, through the limits and retries; the JSON answer (`null` for 204).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Api`] for 4xx (the JSON `code` kept), [`ErrorKind::Authentication`] for 401,
    /// [`ErrorKind::RateLimited`], [`ErrorKind::Server`], [`ErrorKind::Transport`] or
    /// [`ErrorKind::Timeout`] after the last attempt, [`ErrorKind::InvalidRequestLimit`] when the
    /// invalid request budget is spent. A call that is not idempotent (a `POST` without
    /// `enforce_nonce`, typing aside) fails at its first ambiguous failure, with
    /// [`Error::maybe_delivered`]; a rate limit longer than the cap fails at once.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let key = RouteKey::new(&method, path);
        let url = format!("{}{path}", self.inner.api_base);
        let idempotent = is_idempotent(&method, path, body);
        let body = body.map(|b| Bytes::from(b.to_string()));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ticket = self.admit(&key).await?;
            let failure = match self
                .attempt(&key, ticket, &method, &url, body.clone(), idempotent)
                .await
            {
                Ok(value) => return Ok(value),
                Err(failure)
                    if !failure.is_retryable()
                        || failure.maybe_delivered()
                        || attempt >= self.inner.retry.max_attempts =>
                {
                    return Err(failure.with_attempts(attempt));
                }
                Err(failure)
                    if failure
                        .retry_after()
                        .is_some_and(|wait| wait > self.inner.max_retry_after) =>
                {
                    // Not worth holding a handler for: the runtime retries it after the hint.
                    return Err(failure.with_attempts(attempt));
                }
                Err(failure) => failure,
            };
            // A 429 already paused its bucket (or everything) in the limiter; others back off.
            if failure.kind() != ErrorKind::RateLimited {
                tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
            }
        }
    }

    /// Waits for the global limit and the route's bucket.
    async fn admit(&self, key: &RouteKey) -> Result<Ticket, Error> {
        let started = Instant::now();
        // The global limit first: nothing awaits between taking a bucket's request and sending,
        // so a dropped call never keeps one.
        if key.global {
            // The whole wait, bucket included, is recorded below.
            self.inner.global.acquire(&Platform::DISCORD, None).await;
        }
        let ticket = loop {
            match self.inner.limits.admit(key) {
                Admission::Go(ticket) => break ticket,
                Admission::Wait(until) => {
                    let wait = until.saturating_duration_since(Instant::now());
                    if wait > self.inner.max_retry_after {
                        return Err(Error::new(
                            ErrorKind::RateLimited,
                            "discord: rate limited for longer than the client waits",
                        )
                        .with_retry_after(Some(wait)));
                    }
                    tokio::time::sleep_until(until).await;
                }
                Admission::WaitForAnswer => {
                    self.inner.limits.wait_for_answer(ANSWER_WAIT).await;
                }
                Admission::Refuse(until) => {
                    return Err(Error::new(
                        ErrorKind::InvalidRequestLimit,
                        "discord: too many invalid requests in 10 minutes; refusing to send",
                    )
                    .with_retry_after(Some(until.saturating_duration_since(Instant::now()))));
                }
            }
        };
        let waited = started.elapsed();
        if waited > Duration::from_millis(1)
            && let Some(t) = self.telemetry()
        {
            t.outbound_ratelimit_wait(&Platform::DISCORD, waited);
        }
        Ok(ticket)
    }

    async fn attempt(
        &self,
        key: &RouteKey,
        ticket: Ticket,
        method: &Method,
        url: &str,
        body: Option<Bytes>,
        idempotent: bool,
    ) -> Result<Value, Error> {
        // Gives the bucket's request back if this call ends (or is dropped) without an answer.
        let mut flight = Flight {
            limits: &self.inner.limits,
            ticket: Some(ticket),
        };
        // Marked sensitive so that no layer below (hyper, h2, reqwest) ever prints it.
        let mut authorization =
            http::HeaderValue::try_from(format!("Bot {}", self.inner.token.expose())).map_err(
                |_| {
                    Error::new(
                        ErrorKind::Config,
                        "discord: the bot token is not a valid header",
                    )
                },
            )?;
        authorization.set_sensitive(true);
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .header(header::AUTHORIZATION, authorization);
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                self.count("error");
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Transport
                };
                // A refused connection never carried the request; anything later may have.
                let maybe_delivered = !idempotent && !e.is_connect();
                // The URL may hold an interaction token; errors travel to logs.
                return Err(Error::new(kind, "discord: the api call failed")
                    .with_source(e.without_url())
                    .with_maybe_delivered(maybe_delivered));
            }
        };
        let status = response.status();
        self.count(status.as_str());
        let headers = response.headers().clone();
        if let Some(ticket) = flight.ticket.take() {
            self.inner.limits.learn(key, &ticket, &headers);
        }
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) if status.is_success() && !idempotent => {
                // Discord took the call; only its answer (the message) was lost.
                tracing::warn!(error = %e.without_url(), "discord accepted a call but its answer could not be read");
                Bytes::new()
            }
            Err(e) => {
                return Err(
                    Error::new(ErrorKind::Transport, "discord: reading the answer failed")
                        .with_source(e.without_url())
                        .with_maybe_delivered(!idempotent),
                );
            }
        };
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(json);
        }
        let code = json.get("code").and_then(Value::as_u64);
        let message = json
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("refused")
            .to_owned();
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                let global = json.get("global").and_then(Value::as_bool) == Some(true)
                    || headers.get("x-ratelimit-global").is_some();
                let retry_after = json
                    .get("retry_after")
                    .and_then(Value::as_f64)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .or_else(|| header_seconds(&headers, header::RETRY_AFTER.as_str()))
                    .unwrap_or(Duration::from_secs(1));
                self.inner.limits.limited(key, global, retry_after);
                // Counted after the pause is in place, so that the count tells it is.
                let scope = headers
                    .get("x-ratelimit-scope")
                    .and_then(|v| v.to_str().ok());
                if scope != Some("shared") {
                    self.inner.limits.invalid();
                }
                Err(Error::new(
                    ErrorKind::RateLimited,
                    format!("discord: rate limited ({message})"),
                )
                .with_status(status)
                .with_code(code)
                .with_retry_after(Some(retry_after)))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                self.inner.limits.invalid();
                let kind = if status == StatusCode::UNAUTHORIZED {
                    ErrorKind::Authentication
                } else {
                    ErrorKind::Api
                };
                Err(Error::new(kind, format!("discord: {message}"))
                    .with_status(status)
                    .with_code(code))
            }
            s if s.is_server_error() => Err(Error::new(
                ErrorKind::Server,
                format!("discord: server error ({message})"),
            )
            .with_status(status)
            // A 503 says nothing was done; a 500 or a gateway's 502/504 may hide a delivery.
            .with_maybe_delivered(!idempotent && s != StatusCode::SERVICE_UNAVAILABLE)),
            _ => Err(Error::new(ErrorKind::Api, format!("discord: {message}"))
                .with_status(status)
                .with_code(code)),
        }
    }

    fn count(&self, status: &str) {
        if let Some(t) = self.telemetry() {
            t.outbound_request(&Platform::DISCORD, status);
        }
    }
}

/// A call's claim on its bucket, given back unless an answer settled it.
struct Flight<'a> {
    limits: &'a RateLimiter,
    ticket: Option<Ticket>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.limits.abandon(&ticket);
        }
    }
}

/// Whether sending the call twice does no harm: anything but a `POST`, a `POST` that Discord
/// deduplicates by its nonce, and the typing indicator.
fn is_idempotent(method: &Method, path: &str, body: Option<&Value>) -> bool {
    *method != Method::POST
        || path.ends_with("/typing")
        || body.is_some_and(|b| {
            b.get("enforce_nonce") == Some(&Value::Bool(true)) && b.get("nonce").is_some()
        })
}

fn header_seconds(headers: &HeaderMap, name: &str) -> Option<Duration> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(seconds)
}
