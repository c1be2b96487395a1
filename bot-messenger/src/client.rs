// Over 700 lines: the client core, its retry and part memory, and their tests; split by its rewrite.
//! The Send API client: messages, sender actions, user profiles; rate-limited, retried, and the
//! [`Outbound`] of Messenger events.
//!
//! - **Authentication**: the page access token goes in an `Authorization: Bearer` header, which
//!   the Graph API accepts like the `access_token` query parameter; unlike the query, it never
//!   shows up in URLs, proxy logs or error messages.
//! - **Rate limits**: governor limiters at Messenger's published per-page limits by default
//!   ([`RateLimits`]: 300 sends a second, 10 for audio, video and file attachments), so refusals
//!   are rare; time spent waiting is recorded as `bot.outbound.ratelimit.wait`.
//! - **Retries**, with exponential backoff and jitter ([`RetryPolicy`]), honouring `Retry-After`
//!   when present, only where a retry cannot send a message twice: rate limits (HTTP 429, Graph
//!   codes 4, 17, 32, 613, and the Business Use Case codes 80001 pages, 80002 Instagram, 80006
//!   Messenger: Meta refused the call; without `Retry-After`, the
//!   `estimated_time_to_regain_access` minutes of `X-Business-Use-Case-Usage` are the hint),
//!   the server errors that say nothing was sent (503, temporary Graph codes 2 and 1200) and
//!   connections that failed before the request went out. Other server errors (500, a 502 or
//!   504 from a gateway that may have passed the message on, Graph code 1) may hide a sent
//!   message: a message is not resent after them and counts as possibly delivered, like a
//!   time-out. A message whose call timed out, or whose connection broke after the request was
//!   written, may have been delivered, so it is not resent ([`Error::maybe_delivered`]): in a
//!   reply, the part is remembered as sent (below) and the error stays retryable, so a retried
//!   handler sends only the parts after it; elsewhere the bot error is permanent. A 2xx whose
//!   answer cannot be read is a sent message without its id. Sender actions and profile reads
//!   are idempotent and retried on time-outs too. Refusals are typed and never retried: a bad token (190), no such
//!   user (100/2018001), outside the 24-hour window (10/2018278), person unavailable (551).
//! - **Deadline**: a call, its retries and rate-limiter waits included, ends after
//!   [`DEFAULT_DEADLINE`] (20 s; [`MessengerClientBuilder::deadline`]), and so does a reply
//!   with all its parts: under the runtime's 30 s handler time-out, which the worst case of the
//!   retries alone (4 attempts of up to 10 s, backoff, `Retry-After`) would exceed. No retry
//!   starts that could not end in time; a `Retry-After` longer than the time left ends the
//!   call at once with the hint, for the runtime to wait (a shorter one is waited in full).
//! - **Replies** ([`Outbound::send`] for a handled event) go out with `messaging_type: RESPONSE`;
//!   messages that answer no event with `UPDATE`; [`MessengerClient::send_message`] takes any
//!   [`MessagingType`], including `MESSAGE_TAG` with its tag.
//! - **No idempotency key**: the Send API has none, so a reply of several messages (a long text
//!   split in parts, an image and a template) goes out one call at a time. The client remembers
//!   the parts it sent for a handler (replies and sends to other conversations alike), by
//!   ([`Target::origin`], [`Target::send_index`], part), for
//!   [`SENT_PARTS_TTL`] and at most [`MAX_SENT_PARTS`] of them: when a later part fails and the
//!   runtime retries the handler, the parts that went out already are skipped, not sent again.
//!   The memory is this process's: a retry handled by another instance, or after a restart,
//!   sends them again. Sends that answer no event ([`Target::conversation`]) have no such key:
//!   when a later part of one fails after earlier parts went out, the error is permanent, so
//!   that no retry sends those parts twice.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bot_core::event::ConversationId;
pub use bot_core::outbound::{MAX_SENT_PARTS, SENT_PARTS_TTL};
use bot_core::outbound::{OutgoingMessage, RateLimit, SentParts, Target};
use bot_core::telemetry::Telemetry;
use bot_core::{Outbound, Platform, RetryPolicy, Secret};
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::error::{Error, ErrorKind};
use crate::model::send::{
    GraphError, Message, MessagingType, Profile, Recipient, SendResponse, SenderAction,
};
pub use crate::render::to_messenger_messages;

/// The Graph API base, with the version this crate was written against.
pub const DEFAULT_API_BASE: &str = "https://graph.facebook.com/v21.0";
/// The Send API path under the base.
pub const SEND_PATH: &str = "/me/messages";
/// The profile fields [`MessengerClient::profile`] asks for.
pub const PROFILE_FIELDS: &str = "first_name,last_name,profile_pic";
/// Default time-out of one HTTP attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of a call with all its retries, and of a reply with all its parts: under the
/// runtime's default handler time-out (30 s), so that a failed send reaches the handler as an
/// error (and the parts that went out are remembered) before the handler is cut off.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Send,
    Media,
    Profile,
}

struct Limiters {
    send: RateLimit,
    media: RateLimit,
    profile: RateLimit,
}

impl Limiters {
    fn new(limits: RateLimits) -> Result<Self, Error> {
        let quota = |name: &str, per_second: u32| {
            RateLimit::per_second(per_second)
                .ok_or_else(|| Error::config(format!("messenger: {name} must be above zero")))
        };
        Ok(Self {
            send: quota("send_per_second", limits.send_per_second)?,
            media: quota("media_per_second", limits.media_per_second)?,
            profile: quota("profile_per_second", limits.profile_per_second)?,
        })
    }

    fn get(&self, endpoint: Endpoint) -> &RateLimit {
        match endpoint {
            Endpoint::Send => &self.send,
            Endpoint::Media => &self.media,
            Endpoint::Profile => &self.profile,
        }
    }
}

/// The Messenger Send API client. Cloning is cheap; clones share limiters and connections.
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
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    api_base: String,
    access_token: Secret,
    retry: RetryPolicy,
    timeout: Duration,
    deadline: Duration,
    limiters: Limiters,
    telemetry: OnceLock<Telemetry>,
    sent: SentParts,
}

impl fmt::Debug for MessengerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessengerClient")
            .field("api_base", &self.inner.api_base)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// Builds a [`MessengerClient`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MessengerClientBuilder {
    access_token: Secret,
    api_base: String,
    retry: RetryPolicy,
    rate_limits: RateLimits,
    timeout: Duration,
    deadline: Duration,
}

impl MessengerClientBuilder {
    /// Sends to `api_base` instead of [`DEFAULT_API_BASE`] (another Graph version, a proxy, or
    /// the fake in tests).
    pub fn api_base(mut self, api_base: impl Into<String>) -> Self {
        self.api_base = api_base.into();
        self
    }

    /// Retries calls by `policy` (default [`default_retry_policy`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Limits calls per second (default Messenger's published limits).
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Gives up on one HTTP attempt after `timeout` (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Gives up on a call, retries and waits for the rate limiter included, after `deadline`;
    /// for a reply ([`Outbound::send`]), on all its parts together (default
    /// [`DEFAULT_DEADLINE`], 20 s). No retry starts that could not end in time, and a
    /// `Retry-After` longer than the time left ends the call at once, handing the hint to the
    /// runtime. Keep it under the bot's handler time-out (`Limits::handler_timeout`, 30 s by
    /// default), or the runtime may cut the handler off mid-send.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the token is empty, the base URL is not http(s), a rate limit is
    /// zero, the time-out or deadline is zero, the retry policy is invalid, or the HTTP client
    /// cannot be set up.
    pub fn build(self) -> Result<MessengerClient, Error> {
        if self.access_token.is_empty() {
            return Err(Error::config("messenger: the page access token is empty"));
        }
        let api_base = self.api_base.trim_end_matches('/').to_owned();
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            return Err(Error::config(format!(
                "messenger: api base {api_base:?} is not an http(s) URL"
            )));
        }
        self.retry
            .validate()
            .map_err(|e| Error::config(format!("messenger: retry policy: {e}")))?;
        if self.timeout.is_zero() || self.deadline.is_zero() {
            return Err(Error::config(
                "messenger: the time-out and the deadline must be above zero",
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("botrt-messenger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::config("messenger: cannot build the http client").with_source(e))?;
        Ok(MessengerClient {
            inner: Arc::new(Inner {
                http,
                api_base,
                access_token: self.access_token,
                retry: self.retry,
                timeout: self.timeout,
                deadline: self.deadline,
                limiters: Limiters::new(self.rate_limits)?,
                telemetry: OnceLock::new(),
                sent: SentParts::default(),
            }),
        })
    }
}

/// A failed attempt, and whether the request may have reached Meta.
struct Failed {
    error: Error,
    maybe_delivered: bool,
}

impl MessengerClient {
    /// Starts a client with the page access token.
    pub fn builder(access_token: impl Into<Secret>) -> MessengerClientBuilder {
        MessengerClientBuilder {
            access_token: access_token.into(),
            api_base: DEFAULT_API_BASE.to_owned(),
            retry: default_retry_policy(),
            rate_limits: RateLimits::default(),
            timeout: DEFAULT_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// Records this client's calls in `telemetry` (the adapter does it when the bot starts).
    pub fn set_telemetry(&self, telemetry: Telemetry) {
        let _ = self.inner.telemetry.set(telemetry);
    }

    /// The API base calls go to.
    pub fn api_base(&self) -> &str {
        &self.inner.api_base
    }

    /// Sends one message through the Send API.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] for a text over 2,000 characters or over 13 quick replies
    /// (nothing sent); the typed refusals of [`ErrorKind`]; [`ErrorKind::RateLimited`] or
    /// [`ErrorKind::Server`] once the retries are used up; [`ErrorKind::Timeout`] or
    /// [`ErrorKind::Transport`] with [`Error::maybe_delivered`] when the request may have reached
    /// Meta (not retried). When Meta answers 2xx but the answer cannot be read, the message was
    /// sent: `Ok` with no `message_id`.
    pub async fn send_message(
        &self,
        recipient: &Recipient,
        message: &Message,
        messaging_type: &MessagingType,
    ) -> Result<SendResponse, Error> {
        let deadline = self.deadline_from_now();
        self.send_message_until(recipient, message, messaging_type, deadline)
            .await
    }

    fn deadline_from_now(&self) -> Instant {
        Instant::now() + self.inner.deadline
    }

    async fn send_message_until(
        &self,
        recipient: &Recipient,
        message: &Message,
        messaging_type: &MessagingType,
        deadline: Instant,
    ) -> Result<SendResponse, Error> {
        crate::render::check_message(message)?;
        let mut body = json!({
            "recipient": recipient.to_json(),
            "messaging_type": messaging_type.as_str(),
            "message": message,
        });
        if let Some(tag) = messaging_type.tag() {
            body["tag"] = Value::String(tag.as_str().to_owned());
        }
        let endpoint = match message.attachment_type() {
            Some("audio" | "video" | "file") => Endpoint::Media,
            _ => Endpoint::Send,
        };
        let answer = self
            .call(
                endpoint,
                Method::POST,
                SEND_PATH,
                Some(&body),
                false,
                deadline,
            )
            .await?;
        // A 2xx means the message was sent: an answer that cannot be read loses only its id.
        Ok(serde_json::from_slice(&answer).unwrap_or_else(|e| {
            if !answer.is_empty() {
                tracing::warn!(
                    category = ?e.classify(),
                    "messenger send answer is not a send response; the message was sent"
                );
            }
            SendResponse::default()
        }))
    }

    /// Sends a typing indicator or read receipt (alone, as the Send API requires).
    ///
    /// # Errors
    ///
    /// As [`MessengerClient::send_message`].
    pub async fn sender_action(
        &self,
        recipient: &Recipient,
        action: SenderAction,
    ) -> Result<(), Error> {
        let body = json!({"recipient": recipient.to_json(), "sender_action": action.as_str()});
        let deadline = self.deadline_from_now();
        self.call(
            Endpoint::Send,
            Method::POST,
            SEND_PATH,
            Some(&body),
            true,
            deadline,
        )
        .await
        .map(|_| ())
    }

    /// A user's profile: first and last name and picture, as far as the page may see them.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when `psid` is not an id; otherwise as any call;
    /// [`ErrorKind::Decode`] when the answer is not a profile.
    pub async fn profile(&self, psid: &str) -> Result<Profile, Error> {
        if psid.is_empty()
            || !psid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::invalid_request(format!(
                "messenger: {psid:?} is not a user id"
            )));
        }
        let path = format!("/{psid}?fields={PROFILE_FIELDS}");
        let answer = self
            .call(
                Endpoint::Profile,
                Method::GET,
                &path,
                None,
                true,
                self.deadline_from_now(),
            )
            .await?;
        serde_json::from_slice(&answer).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                "messenger: the profile answer is not a profile",
            )
            .with_source(e)
        })
    }

    fn telemetry(&self) -> Option<&Telemetry> {
        self.inner.telemetry.get()
    }

    /// One API call with rate limiting and retries, given up at `deadline`; `idempotent` calls
    /// are also retried when the request may have reached Meta.
    async fn call(
        &self,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotent: bool,
        deadline: Instant,
    ) -> Result<Bytes, Error> {
        let url = format!("{}{path}", self.inner.api_base);
        let body = body.map(|b| Bytes::from(b.to_string()));
        let max_attempts = self.inner.retry.max_attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let waited = tokio::time::timeout(left, self.wait_for_limiter(endpoint)).await;
            let left = deadline.saturating_duration_since(Instant::now());
            if waited.is_err() || left.is_zero() {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "messenger: the call's deadline passed before it could be sent",
                )
                .with_attempts(attempt - 1));
            }
            let timeout = self.inner.timeout.min(left);
            let failure = match self
                .attempt(&method, &url, body.clone(), idempotent, timeout)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(failed) => failed,
            };
            let safe = idempotent || !failure.maybe_delivered;
            if !failure.error.is_retryable() || !safe || attempt >= max_attempts {
                return Err(failure
                    .error
                    .with_attempts(attempt)
                    .with_maybe_delivered(failure.maybe_delivered && !idempotent));
            }
            let delay = match failure.error.retry_after() {
                // Meta's hint is not cut short: the runtime waits for it if the deadline cannot.
                Some(after) => after,
                None => self
                    .inner
                    .retry
                    .backoff(attempt)
                    .min(self.inner.retry.max_backoff),
            };
            if Instant::now() + delay >= deadline {
                tracing::debug!(
                    error = %failure.error, attempt, ?delay,
                    "messenger api call failed; no time left to retry before the deadline"
                );
                return Err(failure.error.with_attempts(attempt));
            }
            tracing::debug!(
                error = %failure.error, attempt, ?delay, path = path.split('?').next(),
                "messenger api call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn wait_for_limiter(&self, endpoint: Endpoint) {
        self.inner
            .limiters
            .get(endpoint)
            .acquire(&Platform::MESSENGER, self.telemetry())
            .await;
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        body: Option<Bytes>,
        idempotent: bool,
        timeout: Duration,
    ) -> Result<Bytes, Failed> {
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .timeout(timeout)
            .bearer_auth(self.inner.access_token.expose());
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                self.count("error");
                // A refused connection never carried the request; anything later may have.
                let maybe_delivered = !e.is_connect();
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Transport
                };
                return Err(Failed {
                    error: Error::new(kind, "messenger: the api call failed")
                        .with_source(e.without_url()),
                    maybe_delivered,
                });
            }
        };
        let status = response.status();
        self.count(status.as_str());
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let business_usage = response
            .headers()
            .get(BUSINESS_USE_CASE_USAGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) if status.is_success() && !idempotent => {
                // Meta accepted the message; only its answer (the message id) was lost.
                tracing::warn!(
                    error = %e.without_url(),
                    "messenger api accepted the call but its answer could not be read"
                );
                return Ok(Bytes::new());
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Transport
                };
                return Err(Failed {
                    error: Error::new(kind, "messenger: reading the answer failed")
                        .with_source(e.without_url()),
                    maybe_delivered: true,
                });
            }
        };
        if status.is_success() {
            return Ok(body);
        }
        let graph_error = GraphError::from_body(&body);
        let (kind, text) = classify(status, graph_error.as_ref());
        let retry_after = match retry_after {
            None if kind == ErrorKind::RateLimited => business_use_case_wait(&business_usage),
            hint => hint,
        };
        let maybe_delivered = server_error_maybe_delivered(kind, status, graph_error.as_ref());
        Err(Failed {
            error: Error::new(kind, text)
                .with_status(status)
                .with_graph_error(graph_error)
                .with_retry_after(retry_after),
            maybe_delivered,
        })
    }

    fn count(&self, status: &str) {
        if let Some(t) = self.telemetry() {
            t.outbound_request(&Platform::MESSENGER, status);
        }
    }
}

/// The header in which Meta reports a Business Use Case's rate limit usage.
pub const BUSINESS_USE_CASE_USAGE: &str = "x-business-use-case-usage";

/// The wait `X-Business-Use-Case-Usage` asks for: the longest `estimated_time_to_regain_access`
/// (minutes) of its entries, `{"<business id>": [{"type", "call_count", ...,
/// "estimated_time_to_regain_access"}]}`; `None` when absent, unreadable or zero.
fn business_use_case_wait(header: &Option<String>) -> Option<Duration> {
    let usage: Value = serde_json::from_str(header.as_deref()?).ok()?;
    let minutes = usage
        .as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|entry| entry.get("estimated_time_to_regain_access")?.as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes.saturating_mul(60)))
}

/// Whether a failed answer leaves the message possibly sent. Rate limits and refusals mean Meta
/// did not send it; of the server errors, only 503 and the Graph codes 2 and 1200 say that it
/// was not sent. Any other 5xx (a 500 with code 1, or a 502 or 504 without a Graph error, which
/// may come from a gateway or proxy after the backend sent the message) may hide a sent message.
fn server_error_maybe_delivered(
    kind: ErrorKind,
    status: StatusCode,
    graph: Option<&GraphError>,
) -> bool {
    kind == ErrorKind::Server
        && status != StatusCode::SERVICE_UNAVAILABLE
        && !matches!(graph.map(|g| g.code), Some(2 | 1200))
}

/// The kind of a refused call, by Graph error code first (Meta answers rate limits with 400 or
/// 403 as often as with 429), then by status.
fn classify(status: StatusCode, graph: Option<&GraphError>) -> (ErrorKind, &'static str) {
    let code = graph.map(|g| (g.code, g.error_subcode));
    match code {
        Some((4 | 17 | 32 | 613, _)) => (ErrorKind::RateLimited, "messenger: rate limited"),
        Some((80_001 | 80_002 | 80_006, _)) => (
            ErrorKind::RateLimited,
            "messenger: business use case rate limited",
        ),
        Some((190, _)) => (
            ErrorKind::InvalidToken,
            "messenger: the page access token is invalid or expired",
        ),
        Some((100, Some(2_018_001))) => (
            ErrorKind::UserNotFound,
            "messenger: no user matches the recipient",
        ),
        Some((10, Some(2_018_278))) => (
            ErrorKind::OutsideWindow,
            "messenger: the message is outside the allowed window",
        ),
        Some((551, _)) => (
            ErrorKind::UserUnavailable,
            "messenger: the person is not available",
        ),
        Some((1 | 2 | 1200, _)) => (ErrorKind::Server, "messenger: temporary graph error"),
        _ if status == StatusCode::TOO_MANY_REQUESTS => {
            (ErrorKind::RateLimited, "messenger: rate limited")
        }
        _ if status.is_server_error() => (ErrorKind::Server, "messenger: server error"),
        _ => (ErrorKind::Api, "messenger: the api refused the call"),
    }
}

#[async_trait]
impl Outbound for MessengerClient {
    fn platform(&self) -> Platform {
        Platform::MESSENGER
    }

    /// Sends each message to the conversation's PSID, with `messaging_type: RESPONSE` when
    /// answering an event and `UPDATE` otherwise.
    async fn send(
        &self,
        target: &Target,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), bot_core::Error> {
        let (typing, mapped) = crate::render::render_send(&messages)?;
        if typing {
            self.typing(&target.conversation).await?; // alone, as sender actions must be, and first
        }
        let recipient = Recipient::for_conversation(target.conversation.as_str());
        let deadline = self.deadline_from_now();
        let messaging_type = if target.is_reply() {
            MessagingType::Response
        } else {
            MessagingType::Update
        };
        for (part, message) in mapped.iter().enumerate() {
            let key = target
                .origin
                .as_ref()
                .map(|event| (event.clone(), target.send_index, part));
            if let Some(key) = &key
                && self.inner.sent.contains(key)
            {
                // An earlier attempt of this handler sent this part already.
                tracing::debug!(
                    event = %key.0, send_index = key.1, part,
                    "messenger part already sent; skipped on this retry"
                );
                continue;
            }
            match self
                .send_message_until(&recipient, message, &messaging_type, deadline)
                .await
            {
                Ok(_) => {
                    if let Some(key) = key {
                        self.inner.sent.insert(key);
                    }
                }
                Err(e) if e.maybe_delivered() => {
                    // The part may be out: remember it as sent, so that a retry of the handler
                    // skips it (at most once) and sends only the parts after it.
                    let recorded = key.is_some();
                    if let Some(key) = key {
                        self.inner.sent.insert(key);
                    }
                    return Err(e.into_core(recorded));
                }
                Err(e) if key.is_none() && part > 0 && e.is_retryable() => {
                    // Not a reply: nothing remembers the parts before this one, which went out,
                    // so a retried handler would send them again. At most once: permanent.
                    return Err(bot_core::Error::from(e).permanent());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `typing_on`, shown until the next message or for 20 seconds.
    async fn typing(&self, conversation: &ConversationId) -> Result<(), bot_core::Error> {
        let recipient = Recipient::for_conversation(conversation.as_str());
        Ok(self
            .sender_action(&recipient, SenderAction::TypingOn)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_codes_decide_the_kind_before_the_status() {
        let graph = |code, subcode| GraphError {
            code,
            error_subcode: subcode,
            ..GraphError::default()
        };
        let kind = |status: u16, g: Option<GraphError>| {
            classify(StatusCode::from_u16(status).unwrap(), g.as_ref()).0
        };
        assert_eq!(kind(400, Some(graph(613, None))), ErrorKind::RateLimited);
        assert_eq!(kind(403, Some(graph(4, None))), ErrorKind::RateLimited);
        assert_eq!(kind(429, None), ErrorKind::RateLimited);
        assert_eq!(kind(500, Some(graph(1200, None))), ErrorKind::Server);
        assert_eq!(kind(400, Some(graph(2, None))), ErrorKind::Server);
        assert_eq!(kind(503, None), ErrorKind::Server);
        assert_eq!(
            kind(400, Some(graph(190, Some(460)))),
            ErrorKind::InvalidToken
        );
        assert_eq!(
            kind(400, Some(graph(100, Some(2_018_001)))),
            ErrorKind::UserNotFound
        );
        assert_eq!(kind(400, Some(graph(100, None))), ErrorKind::Api);
        assert_eq!(
            kind(400, Some(graph(10, Some(2_018_278)))),
            ErrorKind::OutsideWindow
        );
        assert_eq!(
            kind(400, Some(graph(551, None))),
            ErrorKind::UserUnavailable
        );
        assert_eq!(kind(404, None), ErrorKind::Api);
        for code in [80_001, 80_002, 80_006] {
            assert_eq!(kind(400, Some(graph(code, None))), ErrorKind::RateLimited);
        }

        let maybe = |status: u16, g: Option<GraphError>| {
            let status = StatusCode::from_u16(status).unwrap();
            let (kind, _) = classify(status, g.as_ref());
            server_error_maybe_delivered(kind, status, g.as_ref())
        };
        assert!(!maybe(503, None));
        assert!(!maybe(500, Some(graph(1200, None))));
        assert!(!maybe(400, Some(graph(2, None))));
        assert!(!maybe(500, Some(graph(613, None))));
        assert!(!maybe(429, None));
        assert!(!maybe(400, Some(graph(551, None))));
        assert!(maybe(500, None));
        assert!(maybe(502, None));
        assert!(maybe(504, None));
        assert!(maybe(500, Some(graph(1, None))));
    }

    #[test]
    fn business_use_case_usage_gives_the_longest_wait() {
        let wait = |h: &str| business_use_case_wait(&Some(h.to_owned()));
        assert_eq!(
            wait(
                r#"{"1": [{"type": "messenger", "call_count": 100, "estimated_time_to_regain_access": 2}],
                    "2": [{"type": "pages", "estimated_time_to_regain_access": 5}]}"#
            ),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            wait(r#"{"1": [{"type": "messenger", "estimated_time_to_regain_access": 0}]}"#),
            None
        );
        assert_eq!(wait(r#"{"1": [{"type": "messenger"}]}"#), None);
        assert_eq!(wait("not json"), None);
        assert_eq!(business_use_case_wait(&None), None);
    }

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
            send_per_second: 0,
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
