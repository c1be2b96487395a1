//! Mapping PostgreSQL and pool failures to the crate's [`Error`].

use std::time::Duration;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::error::{Error, ErrorKind};

/// Whether a client error means the database cannot be reached (rather than refusing a statement).
pub(crate) fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // No SQLSTATE: an I/O or protocol failure on the way to the server.
        None => true,
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::QUERY_CANCELED
        }
    }
}

/// A failed statement of `what` (lowercase, e.g. "claiming events").
pub(crate) fn db(kind: ErrorKind, what: &str, e: tokio_postgres::Error) -> Error {
    let message = match e.as_db_error() {
        Some(db) => format!("postgres: {what}: {}", db.message()),
        None => format!("postgres: {what}"),
    };
    Error::new(kind, message).with_source(e)
}

/// A connection that could not be had from the pool for `what`.
pub(crate) fn pool(kind: ErrorKind, what: &str, e: PoolError) -> Error {
    match e {
        PoolError::Timeout(t) => Error::new(
            ErrorKind::Timeout,
            format!("postgres: {what}: no pool connection in time ({t:?})"),
        ),
        // Without a server message, the client's (a refused connection, a TLS certificate
        // that does not verify) is the only clue: say it here, where logs show it.
        PoolError::Backend(e) if e.as_db_error().is_none() => {
            let mut message = format!("postgres: {what}: connecting: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message.push_str(&format!(": {c}"));
                cause = c.source();
            }
            Error::new(kind, message).with_source(e)
        }
        PoolError::Backend(e) => db(kind, &format!("{what}: connecting"), e),
        other => Error::new(kind, format!("postgres: {what}: pool: {other}")),
    }
}

/// For pushes: a database that is down or slow becomes a retryable refusal, so that a webhook
/// answers 503 with `Retry-After` and the platform delivers again later.
pub(crate) fn unavailable(what: &str, retry_after: Duration, source: Error) -> Error {
    Error::new(
        ErrorKind::QueueFull,
        format!("postgres unavailable while {what}: {source}"),
    )
    .with_retry_after(retry_after)
    .with_source(source)
}
