//! The crate's error type.

use std::fmt;
use std::time::Duration;

use bot_core::BoxError;
use http::StatusCode;

use crate::model::send::GraphError;

/// An error of the Messenger adapter: configuration, a refused or failed Graph API call.
///
/// Inspect it with [`Error::kind`], [`Error::status`], [`Error::graph_error`] and the predicates.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: String,
    status: Option<StatusCode>,
    graph_error: Option<GraphError>,
    retry_after: Option<Duration>,
    attempts: u32,
    maybe_delivered: bool,
    source: Option<BoxError>,
}

/// What went wrong, broadly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is missing or invalid.
    Config,
    /// The request breaks one of Messenger's limits before it is sent (too many quick replies or
    /// buttons, too long a title or payload, nothing to send).
    InvalidRequest,
    /// Meta kept refusing for rate limiting (HTTP 429, or Graph codes 4, 17, 32, 613, or the
    /// Business Use Case codes 80001, 80002, 80006) after every retry, or asked for a wait longer
    /// than the call's deadline ([`Error::retry_after`]).
    RateLimited,
    /// Meta answered 5xx or a temporary Graph error (codes 1, 2, 1200): after every retry for
    /// 503 and codes 2 and 1200; at once, with [`Error::maybe_delivered`], for a message answered
    /// with another 5xx (the message may have been sent).
    Server,
    /// The page access token is invalid or expired (Graph code 190). Not retried.
    InvalidToken,
    /// No user matches the recipient (Graph code 100, subcode 2018001). Not retried.
    UserNotFound,
    /// The message is outside the allowed window: more than 24 hours after the user's last
    /// message, without a tag (Graph code 10, subcode 2018278). Not retried.
    OutsideWindow,
    /// The person is not available right now (Graph code 551). Not retried.
    UserUnavailable,
    /// Meta refused the call for another reason (its Graph error is kept). Not retried.
    Api,
    /// Meta could not be reached, or the connection failed, after every retry.
    Transport,
    /// The call timed out (retried only when it is safe, see [`crate::client`]).
    Timeout,
    /// Meta's answer could not be read.
    Decode,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            kind,
            message: message.into(),
            status: None,
            graph_error: None,
            retry_after: None,
            attempts: 0,
            maybe_delivered: false,
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

    pub(crate) fn with_graph_error(mut self, graph_error: Option<GraphError>) -> Self {
        self.0.graph_error = graph_error;
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

    pub(crate) fn with_maybe_delivered(mut self, maybe_delivered: bool) -> Self {
        self.0.maybe_delivered = maybe_delivered;
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

    /// The HTTP status Meta answered, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.0.status
    }

    /// Meta's Graph error, if it sent one.
    pub fn graph_error(&self) -> Option<&GraphError> {
        self.0.graph_error.as_ref()
    }

    /// How many times the call was tried (0 when it was refused before sending).
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// When Meta said to retry, if it did (`Retry-After`, else the
    /// `estimated_time_to_regain_access` of `X-Business-Use-Case-Usage` for a rate limit).
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// Whether the message may have reached Meta although the call failed: it timed out, the
    /// connection broke after the request was written, or Meta (or a gateway before it) answered
    /// a 5xx other than 503 without a Graph code saying nothing was sent (2, 1200). Sending it again may show it twice, so
    /// the client does not, and a bot error made from it ([`From`]) is permanent; the
    /// [`bot_core::Outbound`] of the client instead remembers the part as sent, so that a
    /// retried handler skips it (see [`crate::client`]).
    pub fn maybe_delivered(&self) -> bool {
        self.0.maybe_delivered
    }

    /// Whether the same call may succeed later (rate limits, server errors, transport failures,
    /// time-outs). For a message, see also [`Error::maybe_delivered`].
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::RateLimited | ErrorKind::Server | ErrorKind::Transport | ErrorKind::Timeout
        )
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
        if let Some(graph) = &self.0.graph_error {
            d.field("graph_error", graph);
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
            if let Some(graph) = &self.0.graph_error {
                write!(f, ", code {}", graph.code)?;
                if let Some(subcode) = graph.error_subcode {
                    write!(f, "/{subcode}")?;
                }
                if !graph.message.is_empty() {
                    write!(f, ": {}", graph.message)?;
                }
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

impl Error {
    /// The bot error for this one; `recorded` when the part the call sent is remembered as sent,
    /// so that a retried handler skips it and a maybe-delivered failure may stay retryable.
    pub(crate) fn into_core(self, recorded: bool) -> bot_core::Error {
        use bot_core::ErrorKind as Core;
        let e = self;
        let kind = match e.0.kind {
            ErrorKind::Config => Core::Config,
            ErrorKind::RateLimited => Core::RateLimited,
            ErrorKind::Timeout => Core::Timeout,
            _ => Core::Outbound,
        };
        let retryable = e.is_retryable() && (recorded || !e.0.maybe_delivered);
        let retry_after = e.0.retry_after;
        let mut core = bot_core::Error::new(kind, e.to_string()).with_source(e);
        if let Some(after) = retry_after {
            core = core.with_retry_after(after);
        }
        if retryable { core } else { core.permanent() }
    }
}

impl From<Error> for bot_core::Error {
    /// Rate limits, server errors and transport failures stay retryable for the runtime;
    /// refusals that retrying cannot fix (a bad token, no such user, outside the window, a request
    /// over Messenger's limits) are marked permanent so the event is dead-lettered at once, and
    /// so are messages that may have been delivered ([`Error::maybe_delivered`]), since a retried
    /// handler would send them again.
    fn from(e: Error) -> Self {
        e.into_core(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_status_graph_code_and_attempts() {
        let e = Error::new(ErrorKind::UserNotFound, "messenger: no such user")
            .with_status(StatusCode::BAD_REQUEST)
            .with_graph_error(Some(GraphError {
                message: "(#100) No matching user found".into(),
                code: 100,
                error_subcode: Some(2018001),
                ..GraphError::default()
            }))
            .with_attempts(1);
        assert_eq!(
            e.to_string(),
            "messenger: no such user (status 400, code 100/2018001: (#100) No matching user found)"
        );
        assert!(!e.is_retryable());
        let core: bot_core::Error = e.into();
        assert!(!core.is_retryable());

        let busy = Error::new(ErrorKind::RateLimited, "messenger: rate limited")
            .with_retry_after(Some(Duration::from_secs(2)))
            .with_attempts(3);
        assert!(busy.to_string().ends_with("after 3 attempts"));
        let core: bot_core::Error = busy.into();
        assert!(core.is_retryable());
        assert_eq!(core.kind(), bot_core::ErrorKind::RateLimited);
        assert_eq!(core.retry_after(), Some(Duration::from_secs(2)));

        let timed_out =
            || Error::new(ErrorKind::Timeout, "messenger: timed out").with_maybe_delivered(true);
        assert!(timed_out().is_retryable() && timed_out().maybe_delivered());
        assert!(!bot_core::Error::from(timed_out()).is_retryable());
        let recorded = timed_out().into_core(true);
        assert!(recorded.is_retryable());
        assert_eq!(recorded.kind(), bot_core::ErrorKind::Timeout);
    }
}
