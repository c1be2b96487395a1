//! The crate's error type.

use std::fmt;
use std::time::Duration;

use bot_core::BoxError;
use http::StatusCode;

use crate::model::send::ApiError;

/// An error of the LINE adapter: configuration, a refused or failed API call.
///
/// Inspect it with [`Error::kind`], [`Error::status`], [`Error::api_error`] and the predicates.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: String,
    status: Option<StatusCode>,
    api_error: Option<ApiError>,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    attempts: u32,
    source: Option<BoxError>,
}

/// What went wrong, broadly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is missing or invalid.
    Config,
    /// The request breaks one of LINE's limits before it is sent (too many messages, too long a
    /// text, too many recipients).
    InvalidRequest,
    /// LINE refused the call with a 4xx status (its error body is kept).
    Api,
    /// The reply token was invalid: used already, expired, or from a standby event.
    InvalidReplyToken,
    /// LINE kept answering 429 for rate limiting after every retry.
    RateLimited,
    /// The channel's monthly message quota is used up (429 that retrying cannot fix).
    QuotaExceeded,
    /// LINE kept answering 5xx after every retry.
    Server,
    /// LINE could not be reached, or the connection failed, after every retry.
    Transport,
    /// The call timed out after every retry.
    Timeout,
    /// LINE's answer could not be read.
    Decode,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            kind,
            message: message.into(),
            status: None,
            api_error: None,
            request_id: None,
            retry_after: None,
            attempts: 0,
            source: None,
        }))
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.0.status = Some(status);
        self
    }

    pub(crate) fn with_api_error(mut self, api_error: Option<ApiError>) -> Self {
        self.0.api_error = api_error;
        self
    }

    pub(crate) fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.0.request_id = request_id;
        self
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.0.retry_after = retry_after;
        self
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> Self {
        self.0.attempts = attempts;
        self
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The HTTP status LINE answered, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.0.status
    }

    /// LINE's error body, if it sent one.
    pub fn api_error(&self) -> Option<&ApiError> {
        self.0.api_error.as_ref()
    }

    /// `X-Line-Request-Id` of the failed request, for LINE support.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// How many times the call was tried (0 when it was refused before sending).
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// When LINE said to retry, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// Whether the same call may succeed later (rate limits, server errors, time-outs).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::RateLimited | ErrorKind::Server | ErrorKind::Transport | ErrorKind::Timeout
        )
    }

    /// Whether the reply token could not be used.
    pub fn is_invalid_reply_token(&self) -> bool {
        self.0.kind == ErrorKind::InvalidReplyToken
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind)
            .field("message", &self.0.message);
        if let Some(status) = self.0.status {
            d.field("status", &status);
        }
        if let Some(api) = &self.0.api_error {
            d.field("api_error", api);
        }
        if let Some(id) = &self.0.request_id {
            d.field("request_id", id);
        }
        if self.0.attempts > 0 {
            d.field("attempts", &self.0.attempts);
        }
        if let Some(source) = &self.0.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)?;
        if let Some(status) = self.0.status {
            write!(f, " (status {}", status.as_u16())?;
            if let Some(api) = self.0.api_error.as_ref().filter(|a| !a.message.is_empty()) {
                write!(f, ": {}", api.message)?;
            }
            f.write_str(")")?;
        }
        if self.0.attempts > 1 {
            write!(f, " after {} attempts", self.0.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for bot_core::Error {
    /// Rate limits stay retryable for the runtime; refusals that retrying cannot fix (4xx,
    /// exhausted quota, invalid reply token, a request over LINE's limits) are marked permanent
    /// so the event is dead-lettered at once.
    fn from(e: Error) -> Self {
        use bot_core::ErrorKind as Core;
        let kind = match e.0.kind {
            ErrorKind::Config => Core::Config,
            ErrorKind::RateLimited => Core::RateLimited,
            ErrorKind::Timeout => Core::Timeout,
            _ => Core::Outbound,
        };
        let retryable = e.is_retryable();
        let retry_after = e.0.retry_after;
        let mut core = bot_core::Error::new(kind, e.to_string()).with_source(e);
        if let Some(after) = retry_after {
            core = core.with_retry_after(after);
        }
        if retryable { core } else { core.permanent() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_status_line_message_and_attempts() {
        let e = Error::new(ErrorKind::Server, "line push failed")
            .with_status(StatusCode::BAD_GATEWAY)
            .with_api_error(Some(ApiError {
                message: "upstream".into(),
                details: vec![],
            }))
            .with_attempts(3);
        assert_eq!(
            e.to_string(),
            "line push failed (status 502: upstream) after 3 attempts"
        );
        assert!(e.is_retryable());
        let core: bot_core::Error = e.into();
        assert!(core.is_retryable());

        let quota: bot_core::Error = Error::new(ErrorKind::QuotaExceeded, "quota").into();
        assert!(!quota.is_retryable());
    }
}
