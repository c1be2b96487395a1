//! The crate's [`Error`]: an opaque error with a [`ErrorKind`] to match on.

use std::fmt;

use bot_core::BoxError;

/// What went wrong, broadly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The adapter's configuration is invalid (an empty secret, a path without `/`).
    Config,
    /// A value given to the adapter is refused (a user id that is empty or too long, a
    /// message that cannot be rendered for web chat).
    Invalid,
    /// PostgreSQL refused a statement or could not be reached (presence, cross-node fan-out).
    Database,
    /// The message broker of the cross-node fan-out (NATS) refused a message or could not be
    /// reached.
    Broker,
}

/// An error of the web chat adapter.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    #[cfg_attr(not(any(feature = "postgres", feature = "nats")), allow(dead_code))]
    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
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
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for bot_core::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind {
            ErrorKind::Config => bot_core::ErrorKind::Config,
            ErrorKind::Invalid => bot_core::ErrorKind::Outbound,
            ErrorKind::Database | ErrorKind::Broker => bot_core::ErrorKind::Other,
        };
        let message = e.message.clone();
        let core = bot_core::Error::new(kind, message).with_source(e);
        // A message web chat cannot show stays unshowable however often it is retried.
        if kind == bot_core::ErrorKind::Outbound {
            core.permanent()
        } else {
            core
        }
    }
}
