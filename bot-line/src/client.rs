// Over 700 lines: the client core, its limiters, reply memory and their tests; split by its rewrite.
//! The Messaging API client: reply, push, multicast, profile, content, loading animation; rate-limited,
//! retried, and the [`Outbound`] of LINE events.
//!
//! - **Rate limits**: one governor limiter per endpoint, at LINE's published per-channel limits by
//!   default ([`RateLimits`]), so 429s are rare; time spent waiting is recorded as
//!   `bot.outbound.ratelimit.wait`.
//! - **Retries**: 429 (rate limit), 5xx, time-outs and connection failures are retried with
//!   exponential backoff and jitter ([`RetryPolicy`]), honouring `Retry-After` when present. A 429
//!   for the monthly quota is not retried ([`ErrorKind::QuotaExceeded`]); other 4xx are not retried.
//! - **No double sends**: push and multicast carry `X-Line-Retry-Key`, the same on every retry, and
//!   a 409 answer (the key was accepted before) counts as success. Pushes made for a reply derive
//!   the key from the event id, so a handler retried by the runtime does not send twice either.
//!   Replies need no key: a reply token is single-use, so a retried reply can never be delivered
//!   twice.
//! - **Reply to push fallback** (opt-in, [`LineClientBuilder::push_fallback`]): when LINE refuses a
//!   reply token on the first attempt (expired after a backlog, or used), the messages are pushed
//!   instead; push counts against the message quota, so it is off by default.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bot_core::event::ConversationId;
use bot_core::outbound::{OutgoingMessage, RateLimit, Target};
use bot_core::telemetry::Telemetry;
use bot_core::{EventId, Outbound, Platform, RetryPolicy, Secret};
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{Error, ErrorKind};
use crate::model::send::{
    ApiError, MAX_MESSAGES_PER_CALL, MAX_MULTICAST_RECIPIENTS, Message, Profile, SendOutcome,
    SentMessages,
};
pub use crate::render::to_line_messages;

/// LINE's API base.
pub const DEFAULT_API_BASE: &str = "https://api.line.me";
/// LINE's API base for content (images, videos, audio and files users send).
pub const DEFAULT_DATA_API_BASE: &str = "https://api-data.line.me";
/// The header that makes push and multicast idempotent.
pub const RETRY_KEY_HEADER: &str = "x-line-retry-key";
/// Default time-out of one HTTP attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Namespace of the retry keys derived from event ids (UUID v5).
const RETRY_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6c69_6e65_2d72_6574_7279_2d6b_6579_0001);

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
        }
    }
}

/// The retry policy of API calls by default: 4 attempts, 500 ms doubling up to 30 s.
pub fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(30),
        multiplier: 2.0,
        jitter: 0.2,
    }
}

/// An `X-Line-Retry-Key`: the same key on every attempt of one push makes LINE send it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryKey(Uuid);

impl RetryKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The key for part `part` of the `send_index`-th send a handler made for `event`
    /// ([`Target::send_index`]): the same whenever the event is handled again, so a retried
    /// handler does not push twice, while two sends of one handler are two messages (LINE keeps
    /// keys for 24 hours).
    pub fn for_send(event: &EventId, send_index: u32, part: usize) -> Self {
        Self(Uuid::new_v5(
            &RETRY_KEY_NAMESPACE,
            format!("{event}/{send_index}/{part}").as_bytes(),
        ))
    }

    /// The key as LINE expects it (a hyphenated UUID).
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Reply,
    Push,
    Multicast,
    Profile,
    Loading,
    Content,
}

struct Limiters {
    reply: RateLimit,
    push: RateLimit,
    multicast: RateLimit,
    profile: RateLimit,
    loading: RateLimit,
    content: RateLimit,
}

impl Limiters {
    fn new(limits: RateLimits) -> Result<Self, Error> {
        let quota = |name: &str, per_second: u32| {
            RateLimit::per_second(per_second)
                .ok_or_else(|| Error::config(format!("line: {name} must be above zero")))
        };
        Ok(Self {
            reply: quota("reply_per_second", limits.reply_per_second)?,
            push: quota("push_per_second", limits.push_per_second)?,
            multicast: quota("multicast_per_second", limits.multicast_per_second)?,
            profile: quota("profile_per_second", limits.profile_per_second)?,
            loading: quota("loading_per_second", limits.loading_per_second)?,
            content: quota("content_per_second", limits.content_per_second)?,
        })
    }

    fn get(&self, endpoint: Endpoint) -> &RateLimit {
        match endpoint {
            Endpoint::Reply => &self.reply,
            Endpoint::Push => &self.push,
            Endpoint::Multicast => &self.multicast,
            Endpoint::Profile => &self.profile,
            Endpoint::Loading => &self.loading,
            Endpoint::Content => &self.content,
        }
    }
}

/// The LINE Messaging API client. Cloning is cheap; clones share limiters and connections.
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
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    api_base: String,
    data_api_base: String,
    access_token: Secret,
    retry: RetryPolicy,
    limiters: Limiters,
    push_fallback: bool,
    replied: Replied,
    telemetry: OnceLock<Telemetry>,
}

impl fmt::Debug for LineClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineClient")
            .field("api_base", &self.inner.api_base)
            .field("retry", &self.inner.retry)
            .field("push_fallback", &self.inner.push_fallback)
            .finish_non_exhaustive()
    }
}

/// Builds a [`LineClient`].
#[derive(Debug, Clone)]
#[must_use]
pub struct LineClientBuilder {
    access_token: Secret,
    api_base: String,
    data_api_base: Option<String>,
    retry: RetryPolicy,
    rate_limits: RateLimits,
    timeout: Duration,
    push_fallback: bool,
    http: Option<reqwest::Client>,
}

impl LineClientBuilder {
    /// Sends through `http` instead of a client of its own: to share a connection pool, set a
    /// proxy, or speak HTTP/2 without TLS to a local fake (`http2_prior_knowledge`). Its own
    /// time-out and user agent apply; [`LineClientBuilder::timeout`] does not.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Sends to `api_base` instead of [`DEFAULT_API_BASE`] (a proxy, or the fake in tests).
    pub fn api_base(mut self, api_base: impl Into<String>) -> Self {
        self.api_base = api_base.into();
        self
    }

    /// Downloads content from `data_api_base`. Default: [`DEFAULT_DATA_API_BASE`] when the API
    /// base is LINE's own, otherwise the API base (a proxy or fake serving both).
    pub fn data_api_base(mut self, data_api_base: impl Into<String>) -> Self {
        self.data_api_base = Some(data_api_base.into());
        self
    }

    /// Retries calls by `policy` (default [`default_retry_policy`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Limits requests per endpoint (default LINE's published limits).
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Gives up on one HTTP attempt after `timeout` (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
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
    /// [`ErrorKind::Config`] when the token is empty, the base URL is not http(s), a rate limit is
    /// zero, the retry policy is invalid, or the HTTP client cannot be set up.
    pub fn build(self) -> Result<LineClient, Error> {
        if self.access_token.is_empty() {
            return Err(Error::config("line: the channel access token is empty"));
        }
        let api_base = base_url(&self.api_base)?;
        let data_api_base = match &self.data_api_base {
            Some(base) => base_url(base)?,
            None if api_base == DEFAULT_API_BASE => DEFAULT_DATA_API_BASE.to_owned(),
            None => api_base.clone(),
        };
        self.retry
            .validate()
            .map_err(|e| Error::config(format!("line: retry policy: {e}")))?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .user_agent(concat!("botrt-line/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::config("line: cannot build the http client").with_source(e))?,
        };
        Ok(LineClient {
            inner: Arc::new(Inner {
                http,
                api_base,
                data_api_base,
                access_token: self.access_token,
                retry: self.retry,
                limiters: Limiters::new(self.rate_limits)?,
                push_fallback: self.push_fallback,
                replied: Replied::default(),
                telemetry: OnceLock::new(),
            }),
        })
    }
}

/// A successful HTTP answer.
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    body: Bytes,
    request_id: Option<String>,
    accepted_request_id: Option<String>,
}

impl LineClient {
    /// Starts a client with the channel access token.
    pub fn builder(access_token: impl Into<Secret>) -> LineClientBuilder {
        LineClientBuilder {
            access_token: access_token.into(),
            api_base: DEFAULT_API_BASE.to_owned(),
            data_api_base: None,
            retry: default_retry_policy(),
            rate_limits: RateLimits::default(),
            timeout: DEFAULT_TIMEOUT,
            push_fallback: false,
            http: None,
        }
    }

    /// Records this client's calls in `telemetry` (the adapter does it when the bot starts).
    pub fn set_telemetry(&self, telemetry: Telemetry) {
        let _ = self.inner.telemetry.set(telemetry);
    }

    /// Replies with 1 to 5 messages using a reply token.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] for 0 or more than 5 messages (nothing sent);
    /// [`ErrorKind::InvalidReplyToken`] when LINE refuses the token; otherwise as any call.
    pub async fn reply(
        &self,
        reply_token: &str,
        messages: &[Message],
    ) -> Result<SendOutcome, Error> {
        crate::render::check_count(messages)?;
        let body = json!({"replyToken": reply_token, "messages": messages});
        let answer = self
            .call(
                Endpoint::Reply,
                Method::POST,
                "/v2/bot/message/reply",
                Some(body),
                None,
            )
            .await?;
        Ok(outcome(answer))
    }

    /// Pushes 1 to 5 messages to a user, group or room. The call is retried with one
    /// `X-Line-Retry-Key` (`retry_key`, or a fresh one), so it is delivered at most once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] for 0 or more than 5 messages (nothing sent); otherwise as
    /// any call.
    pub async fn push(
        &self,
        to: &str,
        messages: &[Message],
        retry_key: Option<RetryKey>,
    ) -> Result<SendOutcome, Error> {
        crate::render::check_count(messages)?;
        let key = retry_key.unwrap_or_else(RetryKey::random);
        let body = json!({"to": to, "messages": messages});
        let answer = self
            .call(
                Endpoint::Push,
                Method::POST,
                "/v2/bot/message/push",
                Some(body),
                Some(key),
            )
            .await?;
        Ok(outcome(answer))
    }

    /// Sends 1 to 5 messages to up to 500 users, with an `X-Line-Retry-Key` as [`LineClient::push`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] for no recipients, more than 500, or a wrong number of
    /// messages; otherwise as any call.
    pub async fn multicast(
        &self,
        to: &[&str],
        messages: &[Message],
        retry_key: Option<RetryKey>,
    ) -> Result<SendOutcome, Error> {
        crate::render::check_count(messages)?;
        if to.is_empty() || to.len() > MAX_MULTICAST_RECIPIENTS {
            return Err(Error::invalid_request(format!(
                "line: multicast takes 1 to {MAX_MULTICAST_RECIPIENTS} recipients, got {}",
                to.len()
            )));
        }
        let key = retry_key.unwrap_or_else(RetryKey::random);
        let body = json!({"to": to, "messages": messages});
        let answer = self
            .call(
                Endpoint::Multicast,
                Method::POST,
                "/v2/bot/message/multicast",
                Some(body),
                Some(key),
            )
            .await?;
        Ok(outcome(answer))
    }

    /// A user's profile.
    ///
    /// # Errors
    ///
    /// As any call; [`ErrorKind::Decode`] when the answer is not a profile.
    pub async fn profile(&self, user_id: &str) -> Result<Profile, Error> {
        let path = format!("/v2/bot/profile/{user_id}");
        let answer = self
            .call(Endpoint::Profile, Method::GET, &path, None, None)
            .await?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                "line: the profile answer is not a profile",
            )
            .with_source(e)
            .with_request_id(answer.request_id)
        })
    }

    /// Shows the loading animation in a one-to-one chat for `seconds` (5 to 60, in steps of 5),
    /// or until the bot's next message.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] for a duration LINE does not take; otherwise as any call.
    pub async fn show_loading(&self, chat_id: &str, seconds: u32) -> Result<(), Error> {
        if !(5..=60).contains(&seconds) || !seconds.is_multiple_of(5) {
            return Err(Error::invalid_request(format!(
                "line: loading lasts 5 to 60 seconds in steps of 5, not {seconds}"
            )));
        }
        let body = json!({"chatId": chat_id, "loadingSeconds": seconds});
        self.call(
            Endpoint::Loading,
            Method::POST,
            "/v2/bot/chat/loading/start",
            Some(body),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Downloads what a user sent in an image, video, audio or file message (by message id),
    /// held in memory.
    ///
    /// # Errors
    ///
    /// As any call; LINE answers 404 once the content has expired.
    pub async fn content(&self, message_id: &str) -> Result<Content, Error> {
        let path = format!("/v2/bot/message/{message_id}/content");
        let answer = self
            .call(Endpoint::Content, Method::GET, &path, None, None)
            .await?;
        Ok(Content {
            bytes: answer.body,
            content_type: answer.content_type,
        })
    }

    fn telemetry(&self) -> Option<&Telemetry> {
        self.inner.telemetry.get()
    }

    /// One API call with rate limiting and retries.
    ///
    /// The body is taken by value and written out at once: only its bytes stay for the
    /// seconds a call may take, not the JSON tree (a pending reply held both).
    async fn call(
        &self,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        body: Option<Value>,
        retry_key: Option<RetryKey>,
    ) -> Result<Answer, Error> {
        let base = if endpoint == Endpoint::Content {
            &self.inner.data_api_base
        } else {
            &self.inner.api_base
        };
        let url = format!("{base}{path}");
        let body = body.map(|b| Bytes::from(b.to_string()));
        let retry_key = retry_key.map(|k| k.as_uuid().hyphenated().to_string());
        let max_attempts = self.inner.retry.max_attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.wait_for_limiter(endpoint).await;
            let failure = match self
                .attempt(endpoint, &method, &url, body.clone(), retry_key.as_deref())
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(failure) if !failure.is_retryable() || attempt >= max_attempts => {
                    return Err(failure.with_attempts(attempt));
                }
                Err(failure) => failure,
            };
            // LINE's own word wins over the policy's backoff, bounded so a bad header cannot
            // park a handler for hours.
            let delay = failure.retry_after().map_or_else(
                || self.inner.retry.backoff(attempt),
                |after| after.min(MAX_RETRY_AFTER),
            );
            tracing::debug!(
                error = %failure, attempt, ?delay, path, "line api call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn wait_for_limiter(&self, endpoint: Endpoint) {
        self.inner
            .limiters
            .get(endpoint)
            .acquire(&Platform::LINE, self.telemetry())
            .await;
    }

    async fn attempt(
        &self,
        endpoint: Endpoint,
        method: &Method,
        url: &str,
        body: Option<Bytes>,
        retry_key: Option<&str>,
    ) -> Result<Answer, Error> {
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .bearer_auth(self.inner.access_token.expose());
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(key) = retry_key {
            request = request.header(RETRY_KEY_HEADER, key);
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
                // The URL may name a user; errors travel to logs.
                return Err(
                    Error::new(kind, "line: the api call failed").with_source(e.without_url())
                );
            }
        };
        let status = response.status();
        self.count(status.as_str());
        let header_value = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header_value("x-line-request-id");
        let content_type = header_value(header::CONTENT_TYPE.as_str());
        let accepted_request_id = header_value("x-line-accepted-request-id");
        let retry_after = header_value(header::RETRY_AFTER.as_str())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Transport
                };
                return Err(Error::new(kind, "line: reading the answer failed")
                    .with_source(e.without_url()));
            }
        };
        if status.is_success() || (status == StatusCode::CONFLICT && retry_key.is_some()) {
            // 409 to a retry key: a previous attempt was accepted; nothing is sent twice.
            return Ok(Answer {
                status,
                content_type,
                body,
                request_id,
                accepted_request_id,
            });
        }
        let api_error: Option<ApiError> = serde_json::from_slice(&body).ok();
        let message = api_error.as_ref().map_or("", |a| a.message.as_str());
        let (kind, text) = match status {
            StatusCode::TOO_MANY_REQUESTS if message.contains("monthly limit") => (
                ErrorKind::QuotaExceeded,
                "line: the monthly message quota is used up",
            ),
            StatusCode::TOO_MANY_REQUESTS => (ErrorKind::RateLimited, "line: rate limited"),
            s if s.is_server_error() => (ErrorKind::Server, "line: server error"),
            StatusCode::BAD_REQUEST
                if endpoint == Endpoint::Reply
                    && message.to_ascii_lowercase().contains("reply token") =>
            {
                (
                    ErrorKind::InvalidReplyToken,
                    "line: the reply token was refused",
                )
            }
            _ => (ErrorKind::Api, "line: the api refused the call"),
        };
        Err(Error::new(kind, text)
            .with_status(status)
            .with_api_error(api_error)
            .with_request_id(request_id)
            .with_retry_after(retry_after))
    }

    fn count(&self, status: &str) {
        if let Some(t) = self.telemetry() {
            t.outbound_request(&Platform::LINE, status);
        }
    }

    async fn push_all(
        &self,
        target: &Target,
        messages: &[Message],
        first_part: usize,
    ) -> Result<(), Error> {
        let to = target.conversation.as_str();
        for (i, chunk) in messages.chunks(MAX_MESSAGES_PER_CALL).enumerate() {
            let key = target
                .origin
                .as_ref()
                .map(|e| RetryKey::for_send(e, target.send_index, first_part + i));
            self.push(to, chunk, key).await?;
        }
        Ok(())
    }

    async fn send_line(&self, target: &Target, messages: Vec<Message>) -> Result<(), Error> {
        if messages.is_empty() {
            return Ok(());
        }
        let to = target.conversation.as_str();
        let Some(token) = &target.reply_token else {
            return self.push_all(target, &messages, 0).await;
        };
        let split = messages.len().min(MAX_MESSAGES_PER_CALL);
        if split < messages.len() && !self.inner.push_fallback {
            return Err(Error::invalid_request(format!(
                "line: a reply carries at most {MAX_MESSAGES_PER_CALL} messages, got {}; send fewer \
                 or enable push_fallback to push the rest",
                messages.len()
            )));
        }
        let (first, rest) = messages.split_at(split);
        let send = target
            .origin
            .as_ref()
            .map(|event| (event.clone(), target.send_index));
        if let Some(send) = &send
            && self.inner.replied.contains(send)
        {
            // An earlier attempt of this handler made this reply already; only the rest may
            // be missing, and its pushes carry the same retry keys as then.
            return self.push_all(target, rest, 1_000).await;
        }
        match self.reply(token.expose(), first).await {
            Ok(_) => {
                if let Some(send) = send {
                    self.inner.replied.insert(send);
                }
            }
            Err(e)
                if e.is_invalid_reply_token() && e.attempts() == 1 && self.inner.push_fallback =>
            {
                tracing::info!(
                    conversation = to,
                    "line reply token refused; pushing instead"
                );
                return self.push_all(target, &messages, 0).await;
            }
            Err(e) if e.is_invalid_reply_token() && e.attempts() > 1 => {
                return Err(Error::new(
                    ErrorKind::InvalidReplyToken,
                    "line: the reply token was refused on a retry, so an earlier attempt may have \
                     been delivered; not pushing",
                )
                .with_attempts(e.attempts())
                .with_source(e));
            }
            Err(e) => return Err(e),
        }
        // Parts numbered after the reply's, so that these keys never collide with a fallback's.
        self.push_all(target, rest, 1_000).await
    }
}

#[async_trait]
impl Outbound for LineClient {
    fn platform(&self) -> Platform {
        Platform::LINE
    }

    async fn send(
        &self,
        target: &Target,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), bot_core::Error> {
        let (typing, line_messages) = crate::render::render_send(&messages)?;
        drop(messages); // converted: not held for the seconds the call may take
        if typing {
            self.typing(&target.conversation).await?; // first: one reply call takes the messages
        }
        if typing && line_messages.is_empty() {
            return Ok(());
        }
        Ok(self.send_line(target, line_messages).await?)
    }

    /// The loading animation, in one-to-one chats (LINE has none for groups and rooms).
    async fn typing(&self, conversation: &ConversationId) -> Result<(), bot_core::Error> {
        if conversation.as_str().starts_with('U') {
            self.show_loading(conversation.as_str(), 20).await?;
        }
        Ok(())
    }
}

/// Replies this process made, by (event, send index), for as long as a reply token lives: a
/// retried handler skips a reply that went out already instead of failing on the used token
/// (and, with push fallback, pushing it a second time).
#[derive(Default)]
struct Replied {
    sends: Mutex<SendSet>,
}

/// An event and the index of a send for it.
type SendKey = (EventId, u32);
/// The sends, and the order they came in for expiry.
type SendSet = (HashSet<SendKey>, VecDeque<(Instant, SendKey)>);

/// A reply token is unusable 20 minutes after its event.
const REPLY_TOKEN_LIFETIME: Duration = Duration::from_secs(20 * 60);
/// Replies remembered at most.
const MAX_REPLIED: usize = 100_000;

impl Replied {
    fn contains(&self, send: &SendKey) -> bool {
        let guard = self.sends.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.contains(send)
    }

    fn insert(&self, send: SendKey) {
        let now = Instant::now();
        let mut guard = self.sends.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        while let Some((at, _)) = order.front() {
            if now.duration_since(*at) < REPLY_TOKEN_LIFETIME && order.len() < MAX_REPLIED {
                break;
            }
            if let Some((_, old)) = order.pop_front() {
                set.remove(&old);
            }
        }
        if set.insert(send.clone()) {
            order.push_back((now, send));
        }
    }
}

/// Content a user sent, downloaded with [`LineClient::content`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Content {
    /// The bytes.
    pub bytes: Bytes,
    /// The MIME type LINE gave, such as `image/jpeg`.
    pub content_type: Option<String>,
}

fn base_url(base: &str) -> Result<String, Error> {
    let base = base.trim_end_matches('/').to_owned();
    if base.starts_with("https://") || base.starts_with("http://") {
        Ok(base)
    } else {
        Err(Error::config(format!(
            "line: api base {base:?} is not an http(s) URL"
        )))
    }
}

fn outcome(answer: Answer) -> SendOutcome {
    let sent: SentMessages = if answer.status == StatusCode::CONFLICT {
        SentMessages::default()
    } else {
        serde_json::from_slice(&answer.body).unwrap_or_default()
    };
    SendOutcome {
        sent_messages: sent.sent_messages,
        request_id: answer.request_id,
        accepted_request_id: answer.accepted_request_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn retry_keys_derive_from_events_and_parts() {
        let e = EventId::new("01HX");
        assert_eq!(RetryKey::for_send(&e, 0, 0), RetryKey::for_send(&e, 0, 0));
        assert_ne!(RetryKey::for_send(&e, 0, 0), RetryKey::for_send(&e, 0, 1));
        assert_ne!(RetryKey::for_send(&e, 0, 0), RetryKey::for_send(&e, 1, 0));
        assert_ne!(
            RetryKey::for_send(&e, 0, 0),
            RetryKey::for_send(&EventId::new("01HY"), 0, 0)
        );
        assert_ne!(RetryKey::random(), RetryKey::random());
    }

    #[test]
    fn content_goes_to_the_data_api_unless_a_base_is_set() {
        let line = LineClient::builder("t").build().unwrap();
        assert_eq!(line.inner.data_api_base, DEFAULT_DATA_API_BASE);
        let proxied = LineClient::builder("t")
            .api_base("http://proxy:9/")
            .build()
            .unwrap();
        assert_eq!(proxied.inner.data_api_base, "http://proxy:9");
        let both = LineClient::builder("t")
            .api_base("http://proxy:9")
            .data_api_base("https://data.example")
            .build()
            .unwrap();
        assert_eq!(both.inner.data_api_base, "https://data.example");
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
        let zero = RateLimits {
            push_per_second: 0,
            ..RateLimits::default()
        };
        assert!(LineClient::builder("t").rate_limits(zero).build().is_err());
    }
}
