//! The crate's error type.

use std::fmt;
use std::time::Duration;

use bot_core::BoxError;
use http::StatusCode;

/// An error of the Discord adapter: configuration, a gateway that cannot go on, a refused or
/// failed REST call.
///
/// Inspect it with [`Error::kind`] and the accessors.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: String,
    status: Option<StatusCode>,
    code: Option<u64>,
    close_code: Option<u16>,
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
    /// The token was refused (gateway close 4004, REST 401). The shard stops; no reconnect loop.
    Authentication,
    /// The shard id or count is invalid for this bot (close 4010).
    InvalidShard,
    /// The bot has too many guilds for its shard count (close 4011).
    ShardingRequired,
    /// The gateway version is not supported (close 4012).
    InvalidApiVersion,
    /// The intents are invalid (close 4013).
    InvalidIntents,
    /// Privileged intents are requested but not enabled in the developer portal (close 4014).
    DisallowedIntents,
    /// The gateway connection failed in a way the shard retries (reported only when it stops).
    Gateway,
    /// Discord refused a REST call with a 4xx status (its error body is kept).
    Api,
    /// Discord kept answering 429 after every retry.
    RateLimited,
    /// The client refused to send, to stay under Discord's invalid request limit (10,000 per 10
    /// minutes, after which Cloudflare bans the IP).
    InvalidRequestLimit,
    /// Discord kept answering 5xx after every retry.
    Server,
    /// Discord could not be reached after every retry.
    Transport,
    /// The call timed out after every retry.
    Timeout,
    /// An answer could not be read.
    Decode,
    /// A request breaks a Discord limit before it is sent (too long a message, too many buttons).
    InvalidRequest,
    /// The day's session starts are spent down to the reserve: no identify until the reset
    /// ([`Error::retry_after`]); Discord resets the token of a bot that runs out.
    SessionStartLimit,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            kind,
            message: message.into(),
            status: None,
            code: None,
            close_code: None,
            retry_after: None,
            attempts: 0,
            maybe_delivered: false,
            source: None,
        }))
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.0.status = Some(status);
        self
    }

    pub(crate) fn with_code(mut self, code: Option<u64>) -> Self {
        self.0.code = code;
        self
    }

    pub(crate) fn with_close_code(mut self, code: u16) -> Self {
        self.0.close_code = Some(code);
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

    /// The HTTP status Discord answered, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.0.status
    }

    /// Discord's JSON error code (`{"code": 50035, ...}`), if it sent one.
    pub fn code(&self) -> Option<u64> {
        self.0.code
    }

    /// The gateway close code that ended the shard, for gateway errors.
    pub fn close_code(&self) -> Option<u16> {
        self.0.close_code
    }

    /// When Discord said to retry.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// How many times the call was tried (0 when refused before sending).
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// Whether a call that cannot be made idempotent (a follow-up, an interaction response, a
    /// message without nonce) may have reached Discord although it failed: it timed out, or the
    /// connection broke after the request was written, or a gateway answered 500, 502 or 504.
    /// Such a call is not sent again by the client; sending it again could post it twice.
    pub fn maybe_delivered(&self) -> bool {
        self.0.maybe_delivered
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::RateLimited
                | ErrorKind::Server
                | ErrorKind::Transport
                | ErrorKind::Timeout
                | ErrorKind::Gateway
                | ErrorKind::InvalidRequestLimit
                | ErrorKind::SessionStartLimit
        )
    }

    /// Whether a shard that stopped with this error must not be restarted as it is (a bad token,
    /// invalid intents or shards): restarting would only be refused again.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::Authentication
                | ErrorKind::InvalidShard
                | ErrorKind::ShardingRequired
                | ErrorKind::InvalidApiVersion
                | ErrorKind::InvalidIntents
                | ErrorKind::DisallowedIntents
                | ErrorKind::Config
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
        if let Some(code) = self.0.code {
            d.field("code", &code);
        }
        if let Some(code) = self.0.close_code {
            d.field("close_code", &code);
        }
        if self.0.attempts > 0 {
            d.field("attempts", &self.0.attempts);
        }
        if self.0.maybe_delivered {
            d.field("maybe_delivered", &true);
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
            write!(f, " (status {})", status.as_u16())?;
        }
        if let Some(code) = self.0.close_code {
            write!(f, " (close code {code})")?;
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
    /// The runtime's error; `recorded` says the client remembered a maybe-delivered send, so a
    /// retried handler skips it and the error may stay retryable.
    pub(crate) fn into_core(self, recorded: bool) -> bot_core::Error {
        use bot_core::ErrorKind as Core;
        let kind = match self.0.kind {
            ErrorKind::Config => Core::Config,
            ErrorKind::RateLimited | ErrorKind::InvalidRequestLimit => Core::RateLimited,
            ErrorKind::Timeout => Core::Timeout,
            _ => Core::Outbound,
        };
        let retryable = self.is_retryable() && (recorded || !self.0.maybe_delivered);
        let retry_after = self.0.retry_after;
        let mut core = bot_core::Error::new(kind, self.to_string()).with_source(self);
        if let Some(after) = retry_after {
            core = core.with_retry_after(after);
        }
        if retryable { core } else { core.permanent() }
    }
}

impl From<Error> for bot_core::Error {
    /// Rate limits and server errors stay retryable for the runtime; refusals are permanent, and
    /// so is a send that may have been delivered (unless the client remembered it, see
    /// [`Error::maybe_delivered`]): a retried handler would post it again.
    fn from(e: Error) -> Self {
        e.into_core(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_gateway_errors_are_neither_retryable_nor_hidden() {
        let e = Error::new(ErrorKind::Authentication, "discord: authentication failed")
            .with_close_code(4004);
        assert!(e.is_fatal());
        assert!(!e.is_retryable());
        assert_eq!(e.close_code(), Some(4004));
        assert_eq!(
            e.to_string(),
            "discord: authentication failed (close code 4004)"
        );
        let core: bot_core::Error = Error::new(ErrorKind::Server, "x").into();
        assert!(core.is_retryable());
    }
}
