//! [`ApiError`]: the one error of every platform's API client.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::error::BoxError;
use crate::event::Platform;

/// What went wrong in a platform API call (or in setting a client up), broadly.
///
/// The kinds are shared by every platform; each says which platforms produce it when not all do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// The configuration is missing or invalid (an empty token, a base URL that is not http(s)).
    Config,
    /// The request breaks one of the platform's limits before it is sent (too many messages, too
    /// long a text, a kind the platform cannot show); nothing was sent.
    InvalidRequest,
    /// The platform refused the call (a 4xx that retrying cannot fix; its error body is kept).
    Api,
    /// The token is invalid, expired or revoked (401; Messenger's Graph code 190).
    Authentication,
    /// LINE: the reply token was used already, expired, or came from a standby event.
    InvalidReplyToken,
    /// The platform kept answering "rate limited" after every retry, or asked for a wait longer
    /// than the client waits ([`ApiError::retry_after`] says how long).
    RateLimited,
    /// LINE: the channel's monthly message quota is used up (a 429 that retrying cannot fix).
    QuotaExceeded,
    /// Discord: too many invalid requests in ten minutes; the client refuses to send until the
    /// window passes, so that Discord does not ban the bot's address.
    InvalidRequestLimit,
    /// The platform kept answering 5xx after every retry.
    Server,
    /// The platform could not be reached, or the connection failed.
    Transport,
    /// An attempt timed out, or the call's deadline passed (retries and rate limits included).
    Timeout,
    /// The platform's answer could not be read.
    Decode,
    /// Messenger: no user matches the recipient.
    UserNotFound,
    /// Messenger: the message is outside the allowed window (24 hours without a tag).
    OutsideWindow,
    /// Messenger: the person is not available right now.
    UserUnavailable,
    /// Discord gateway: the connection failed or Discord closed it (the close code is kept).
    Gateway,
    /// Discord gateway: the shard id or count is invalid (close code 4010).
    InvalidShard,
    /// Discord gateway: the bot is in too many guilds for one shard (close code 4011).
    ShardingRequired,
    /// Discord gateway: the gateway version is invalid (close code 4012).
    InvalidApiVersion,
    /// Discord gateway: the intents are invalid (close code 4013).
    InvalidIntents,
    /// Discord gateway: an intent is not enabled for the application (close code 4014).
    DisallowedIntents,
    /// Discord gateway: the session start limit is used up until it resets.
    SessionStartLimit,
}

/// What a platform sent back about a refusal, typed by the adapter (LINE's error body, Meta's
/// Graph error), readable with [`ApiError::details`].
pub trait ErrorDetails: fmt::Debug + Send + Sync + 'static {
    /// The details as [`Any`], to downcast to the adapter's type.
    fn as_any(&self) -> &dyn Any;
}

impl<T: fmt::Debug + Send + Sync + 'static> ErrorDetails for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The error of every platform's API client: one shape, with the platform's details.
///
/// Inspect it with [`ApiError::kind`], [`ApiError::status`], [`ApiError::code`],
/// [`ApiError::details`] and the predicates. Adapters build it with the `with_*` methods.
pub struct ApiError(Box<Inner>);

struct Inner {
    kind: ApiErrorKind,
    platform: Option<Platform>,
    message: Cow<'static, str>,
    platform_message: Option<String>,
    status: Option<StatusCode>,
    code: Option<i64>,
    subcode: Option<i64>,
    close_code: Option<u16>,
    details: Option<Box<dyn ErrorDetails>>,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    attempts: u32,
    maybe_delivered: bool,
    source: Option<BoxError>,
}

impl ApiError {
    /// An error of `kind`; `message` is lowercase and names the platform ("line: ...").
    pub fn new(kind: ApiErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self(Box::new(Inner {
            kind,
            platform: None,
            message: message.into(),
            platform_message: None,
            status: None,
            code: None,
            subcode: None,
            close_code: None,
            details: None,
            request_id: None,
            retry_after: None,
            attempts: 0,
            maybe_delivered: false,
            source: None,
        }))
    }

    /// An [`ApiErrorKind::Config`] error.
    pub fn config(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::Config, message)
    }

    /// An [`ApiErrorKind::InvalidRequest`] error: nothing was sent.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::InvalidRequest, message)
    }

    /// Names the platform.
    #[must_use]
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.0.platform = Some(platform);
        self
    }

    /// Keeps the HTTP status the platform answered.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.0.status = Some(status);
        self
    }

    /// Keeps the platform's own error message (shown after the status).
    #[must_use]
    pub fn with_platform_message(mut self, message: Option<String>) -> Self {
        self.0.platform_message = message.filter(|m| !m.is_empty());
        self
    }

    /// Keeps the platform's error code (Discord's JSON `code`, Meta's Graph `code`).
    #[must_use]
    pub fn with_code(mut self, code: Option<i64>) -> Self {
        self.0.code = code;
        self
    }

    /// Keeps the platform's error subcode (Meta's `error_subcode`).
    #[must_use]
    pub fn with_subcode(mut self, subcode: Option<i64>) -> Self {
        self.0.subcode = subcode;
        self
    }

    /// Keeps the WebSocket close code a gateway closed with.
    #[must_use]
    pub fn with_close_code(mut self, code: u16) -> Self {
        self.0.close_code = Some(code);
        self
    }

    /// Keeps the platform's typed error body, for [`ApiError::details`].
    #[must_use]
    pub fn with_details(mut self, details: Option<impl ErrorDetails>) -> Self {
        self.0.details = details.map(|d| Box::new(d) as Box<dyn ErrorDetails>);
        self
    }

    /// Keeps the platform's request id (LINE's `x-line-request-id`).
    #[must_use]
    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.0.request_id = request_id;
        self
    }

    /// Keeps when the platform said to retry.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.0.retry_after = retry_after;
        self
    }

    /// Records how many times the call was tried.
    #[must_use]
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.0.attempts = attempts;
        self
    }

    /// Marks the call as one that may have reached the platform although it failed.
    #[must_use]
    pub fn with_maybe_delivered(mut self, maybe_delivered: bool) -> Self {
        self.0.maybe_delivered = maybe_delivered;
        self
    }

    /// Keeps the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ApiErrorKind {
        self.0.kind
    }

    /// The platform whose API failed, when a client made the call.
    pub fn platform(&self) -> Option<&Platform> {
        self.0.platform.as_ref()
    }

    /// The HTTP status the platform answered, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.0.status
    }

    /// The platform's error code, if it gave one.
    pub fn code(&self) -> Option<i64> {
        self.0.code
    }

    /// The platform's error subcode, if it gave one.
    pub fn subcode(&self) -> Option<i64> {
        self.0.subcode
    }

    /// The WebSocket close code a gateway closed with.
    pub fn close_code(&self) -> Option<u16> {
        self.0.close_code
    }

    /// The platform's own error message, if it gave one.
    pub fn platform_message(&self) -> Option<&str> {
        self.0.platform_message.as_deref()
    }

    /// The platform's typed error body, when it is a `T` (`bot_line::model::send::ApiError`,
    /// `bot_messenger::model::GraphError`).
    pub fn details<T: 'static>(&self) -> Option<&T> {
        self.0.details.as_deref()?.as_any().downcast_ref()
    }

    /// The platform's request id, if it sent one.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// When the platform said to retry, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// How many times the call was tried (0 when refused before sending).
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// Whether a call that the platform cannot deduplicate may have reached it although it
    /// failed: it timed out or the connection broke after the request was written, or a server
    /// error does not say that nothing was done. The client does not send such a call again, and
    /// the runtime does not retry its handler unless the client remembered the send.
    pub fn maybe_delivered(&self) -> bool {
        self.0.maybe_delivered
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        use ApiErrorKind as K;
        matches!(
            self.0.kind,
            K::RateLimited
                | K::Server
                | K::Transport
                | K::Timeout
                | K::Gateway
                | K::InvalidRequestLimit
                | K::SessionStartLimit
        )
    }

    /// Whether a gateway connection that stopped with this error must not be restarted as it
    /// is (a bad token, invalid intents or shards): restarting would only be refused again.
    pub fn is_fatal(&self) -> bool {
        use ApiErrorKind as K;
        matches!(
            self.0.kind,
            K::Authentication
                | K::InvalidShard
                | K::ShardingRequired
                | K::InvalidApiVersion
                | K::InvalidIntents
                | K::DisallowedIntents
                | K::Config
        )
    }

    /// Whether the reply token could not be used (LINE).
    pub fn is_invalid_reply_token(&self) -> bool {
        self.0.kind == ApiErrorKind::InvalidReplyToken
    }

    /// The runtime's error. Rate limits, server errors and time-outs stay retryable; refusals are
    /// permanent (the event is dead-lettered at once), and so is a send that may have been
    /// delivered unless `recorded` says the client remembered it, so that a retried handler
    /// skips it instead of posting it twice.
    pub fn into_core(self, recorded: bool) -> crate::Error {
        use crate::ErrorKind as Core;
        let kind = match self.0.kind {
            ApiErrorKind::Config => Core::Config,
            ApiErrorKind::RateLimited | ApiErrorKind::InvalidRequestLimit => Core::RateLimited,
            ApiErrorKind::Timeout => Core::Timeout,
            _ => Core::Outbound,
        };
        let retryable = self.is_retryable() && (recorded || !self.0.maybe_delivered);
        let retry_after = self.0.retry_after;
        let mut core = crate::Error::new(kind, self.to_string()).with_source(self);
        if let Some(after) = retry_after {
            core = core.with_retry_after(after);
        }
        if retryable { core } else { core.permanent() }
    }
}

impl From<ApiError> for crate::Error {
    /// As [`ApiError::into_core`] with nothing remembered.
    fn from(e: ApiError) -> Self {
        e.into_core(false)
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.0;
        let mut d = f.debug_struct("ApiError");
        d.field("kind", &i.kind).field("message", &i.message);
        if let Some(platform) = &i.platform {
            d.field("platform", platform);
        }
        if let Some(status) = i.status {
            d.field("status", &status);
        }
        if let Some(code) = i.code {
            d.field("code", &code);
        }
        if let Some(code) = i.subcode {
            d.field("subcode", &code);
        }
        if let Some(code) = i.close_code {
            d.field("close_code", &code);
        }
        if let Some(details) = &i.details {
            d.field("details", details);
        }
        if let Some(id) = &i.request_id {
            d.field("request_id", id);
        }
        if let Some(after) = i.retry_after {
            d.field("retry_after", &after);
        }
        if i.attempts > 0 {
            d.field("attempts", &i.attempts);
        }
        if i.maybe_delivered {
            d.field("maybe_delivered", &true);
        }
        if let Some(source) = &i.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.0;
        f.write_str(&i.message)?;
        if let Some(status) = i.status {
            write!(f, " (status {}", status.as_u16())?;
            if let Some(message) = &i.platform_message {
                write!(f, ": {message}")?;
            }
            f.write_str(")")?;
        }
        if let Some(code) = i.close_code {
            write!(f, " (close code {code})")?;
        }
        if i.attempts > 1 {
            write!(f, " after {} attempts", i.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Body {
        message: String,
    }

    #[test]
    fn display_names_status_platform_message_and_attempts() {
        let e = ApiError::new(ApiErrorKind::Server, "line: push failed")
            .with_status(StatusCode::BAD_GATEWAY)
            .with_platform_message(Some("upstream".into()))
            .with_attempts(3);
        assert_eq!(
            e.to_string(),
            "line: push failed (status 502: upstream) after 3 attempts"
        );
        let gateway = ApiError::new(
            ApiErrorKind::Authentication,
            "discord: authentication failed",
        )
        .with_close_code(4004);
        assert_eq!(
            gateway.to_string(),
            "discord: authentication failed (close code 4004)"
        );
        assert!(gateway.is_fatal() && !gateway.is_retryable());
    }

    #[test]
    fn details_downcast_to_the_adapters_type_only() {
        let e = ApiError::new(ApiErrorKind::Api, "x").with_details(Some(Body {
            message: "bad".into(),
        }));
        assert_eq!(e.details::<Body>().map(|b| b.message.as_str()), Some("bad"));
        assert!(e.details::<String>().is_none());
        assert!(format!("{e:?}").contains("bad"));
    }

    #[test]
    fn the_runtime_retries_only_what_can_succeed_and_cannot_double_send() {
        let server = ApiError::new(ApiErrorKind::Server, "x");
        assert!(crate::Error::from(server).is_retryable());
        let quota: crate::Error = ApiError::new(ApiErrorKind::QuotaExceeded, "q").into();
        assert!(!quota.is_retryable());
        let maybe = || ApiError::new(ApiErrorKind::Timeout, "t").with_maybe_delivered(true);
        assert!(!maybe().into_core(false).is_retryable());
        assert!(maybe().into_core(true).is_retryable());
        let limited: crate::Error = ApiError::new(ApiErrorKind::RateLimited, "r")
            .with_retry_after(Some(Duration::from_secs(7)))
            .into();
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(limited.kind(), crate::ErrorKind::RateLimited);
    }
}
