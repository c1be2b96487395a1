//! The crate's error type.

use std::fmt;
use std::time::Duration;

/// A boxed error as returned by handlers and dependencies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error returned by bot-core operations.
///
/// Fields are private; inspect it with [`Error::kind`] and the predicates.
pub struct Error {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
    permanent: bool,
    source: Option<BoxError>,
}

/// What went wrong, broadly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Configuration is invalid (for example `Limits` that fail validation).
    Config,
    /// The queue is full and the overflow policy refused the events.
    QueueFull,
    /// The queue is closed (the bot is shutting down).
    QueueClosed,
    /// A lease was not found or no longer belongs to the caller.
    LeaseLost,
    /// Any other queue backend failure.
    Queue,
    /// No outbound client is registered for the event's platform.
    NoOutbound,
    /// A platform API call failed.
    Outbound,
    /// A platform API refused the call for rate limiting.
    RateLimited,
    /// An operation did not finish in time.
    Timeout,
    /// A conversation state write lost an optimistic version check.
    StateConflict,
    /// The state store failed or the state could not be (de)serialised.
    State,
    /// An I/O error (binding a socket, reading stdin).
    Io,
    /// Anything else.
    Other,
}

impl Error {
    /// Creates an error of `kind` with a lowercase message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
            permanent: false,
            source: None,
        }
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attaches a hint of when the operation may be retried.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Marks the error as one that retrying cannot fix (a platform that refused the request for
    /// good, such as a bad request or an exhausted monthly quota), whatever its kind: the runtime
    /// then dead-letters the event at once instead of retrying it.
    #[must_use]
    pub fn permanent(mut self) -> Self {
        self.permanent = true;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// When the caller may retry, if the failure said so (a full queue, a 429).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether retrying the same operation later can succeed.
    pub fn is_retryable(&self) -> bool {
        !self.permanent
            && matches!(
                self.kind,
                ErrorKind::QueueFull
                    | ErrorKind::RateLimited
                    | ErrorKind::Timeout
                    | ErrorKind::Outbound
                    | ErrorKind::StateConflict
                    | ErrorKind::Queue
                    | ErrorKind::Io
            )
    }

    /// Whether this is a lost optimistic version check.
    pub fn is_conflict(&self) -> bool {
        self.kind == ErrorKind::StateConflict
    }

    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(r) = self.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// An error and its sources, joined by `": "`, each message printed once.
///
/// A source whose message its wrapper already shows (an adapter's error carried inside a
/// [`crate::Error`] with the same message) is skipped, so that logs and dead letters read
/// `discord: no application id` rather than the same words twice.
///
/// ```
/// use bot_core::{Error, ErrorChain, ErrorKind};
///
/// let inner = std::io::Error::other("connection reset");
/// let e = Error::new(ErrorKind::Outbound, "line api unreachable").with_source(inner);
/// assert_eq!(ErrorChain(&e).to_string(), "line api unreachable: connection reset");
///
/// let same = Error::new(ErrorKind::Config, "no application id")
///     .with_source(Error::new(ErrorKind::Config, "no application id"));
/// assert_eq!(ErrorChain(&same).to_string(), "no application id");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !text.is_empty() && !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            source = s.source();
        }
        Ok(())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, "i/o error").with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_message_and_source_is_kept() {
        let e = Error::new(ErrorKind::Outbound, "line api refused the call")
            .with_source(std::io::Error::other("reset"));
        assert_eq!(e.to_string(), "line api refused the call");
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.is_retryable());
        assert!(!Error::config("bad").is_retryable());
        assert!(!e.permanent().is_retryable());
    }

    #[test]
    fn a_chain_prints_each_message_once() {
        // What the Discord client returns when it cannot answer an interaction, as the runtime
        // gets it: the client core's error inside the runtime's, with the same message.
        let api = crate::api::ApiError::config(
            "discord: DISCORD_APPLICATION_ID is needed to answer interactions",
        );
        let core: Error = api.into();
        assert_eq!(
            ErrorChain(&core).to_string(),
            "discord: DISCORD_APPLICATION_ID is needed to answer interactions"
        );
        // Different messages all show, in order; a repeat further down is dropped too.
        let e = Error::new(ErrorKind::Io, "reading state").with_source(
            Error::new(ErrorKind::Io, "pool").with_source(std::io::Error::other("pool")),
        );
        assert_eq!(ErrorChain(&e).to_string(), "reading state: pool");
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }
}
