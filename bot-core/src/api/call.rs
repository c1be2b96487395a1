//! [`Call`] and [`Answer`]: one API request as the client core sends it, and what came back.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiErrorKind};

/// One API request: what to send, where, under which rate limit, and whether sending it twice
/// does harm.
///
/// Its `Debug` names the endpoint, never the path or the body: they may hold a token (a Discord
/// interaction token, a LINE reply token) or a user's words.
#[derive(Clone)]
pub struct Call {
    pub(crate) method: Method,
    pub(crate) endpoint: &'static str,
    pub(crate) path: String,
    pub(crate) base: Option<Arc<str>>,
    pub(crate) body: Option<(Bytes, HeaderValue)>,
    pub(crate) idempotent: bool,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) answer_optional: Option<bool>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("endpoint", &self.endpoint)
            .field("body_bytes", &self.body.as_ref().map(|(b, _)| b.len()))
            .field("idempotent", &self.idempotent)
            .field("keyed", &self.idempotency_key.is_some())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Call {
    /// A `method` request to `path` (appended to the client's base URL) under the rate limit of
    /// `endpoint`, which also names the call in metrics and logs (never the path: it may hold a
    /// user id or a token).
    ///
    /// A `POST` is taken as not idempotent (see [`Call::idempotent`]); any other method as
    /// idempotent.
    pub fn new(method: Method, endpoint: &'static str, path: impl Into<String>) -> Self {
        Self {
            idempotent: method != Method::POST,
            method,
            endpoint,
            path: path.into(),
            base: None,
            body: None,
            idempotency_key: None,
            deadline: None,
            answer_optional: None,
        }
    }

    /// A `GET` request.
    pub fn get(endpoint: &'static str, path: impl Into<String>) -> Self {
        Self::new(Method::GET, endpoint, path)
    }

    /// A `POST` request.
    pub fn post(endpoint: &'static str, path: impl Into<String>) -> Self {
        Self::new(Method::POST, endpoint, path)
    }

    /// Sends `body` as JSON, written out now so that only its bytes are held while the call
    /// waits and retries.
    ///
    /// # Errors
    ///
    /// [`ApiErrorKind::InvalidRequest`] when `body` cannot be written as JSON.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self, ApiError> {
        let mut bytes = serde_json::to_vec(body).map_err(|e| {
            ApiError::new(ApiErrorKind::InvalidRequest, "the request body is not JSON")
                .with_source(e)
        })?;
        // At its exact size: the call keeps its body (for a retry) for as long as it is in
        // flight, and the writer's doubling leaves up to half of its buffer unused (a LINE reply
        // of 90 bytes in 128).
        bytes.shrink_to_fit();
        self.body = Some((
            Bytes::from(bytes),
            HeaderValue::from_static("application/json"),
        ));
        Ok(self)
    }

    /// Sends `body` with `content_type`.
    #[must_use]
    pub fn body(mut self, body: Bytes, content_type: HeaderValue) -> Self {
        self.body = Some((body, content_type));
        self
    }

    /// Says whether sending the request twice does no harm (a read, an edit, a send the platform
    /// deduplicates): only then does the client send it again after a failure that may have
    /// reached the platform (a time-out, a broken connection, a server error).
    #[must_use]
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    crate::setters! {
        /// Sends the key in the platform's idempotency header, the same on every attempt, which
        /// makes the call idempotent where the platform has such a header.
        idempotency_key: into String;

        /// Says whether a 2xx whose body is lost on the way still counts as done (with an empty
        /// body) instead of a failure to retry: by default for the calls that are not idempotent
        /// (sending them again would repeat them), not for the others (they are sent again for
        /// their answer). A LINE reply is idempotent (its token is single-use) yet done on a 2xx: a
        /// second attempt would only be refused.
        answer_optional: set bool;

        /// Gives up at this deadline, retries and rate-limit waits included, instead of the
        /// client's deadline from now (a reply of several parts shares one).
        deadline: set Instant;

        /// Sends to this base URL instead of the client's (LINE's data API).
        base: into Arc<str>;
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The endpoint whose rate limit applies.
    pub fn endpoint(&self) -> &'static str {
        self.endpoint
    }

    /// The path after the base URL.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The body's bytes, if any.
    pub fn body_bytes(&self) -> Option<&Bytes> {
        self.body.as_ref().map(|(b, _)| b)
    }

    /// Whether sending the call twice does no harm.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// The idempotency key, if any.
    pub fn key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }
}

/// A platform's answer: its status, headers and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (empty when the platform accepted a call but its answer could not be read).
    pub body: Bytes,
}

impl Answer {
    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON of type `T`.
    ///
    /// # Errors
    ///
    /// [`ApiErrorKind::Decode`] when it is not one.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::new(
                ApiErrorKind::Decode,
                "the api's answer is not what was expected",
            )
            .with_source(e)
            .with_status(self.status)
        })
    }

    /// The `Retry-After` header in seconds (whole or fractional), if present and readable.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        let value = self.header(header::RETRY_AFTER.as_str())?.trim();
        let secs: f64 = value.parse().ok()?;
        std::time::Duration::try_from_secs_f64(secs).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_the_endpoint_never_the_path_or_the_body() {
        let call = Call::post("followup", "/webhooks/1/interaction-token-secret")
            .json(&serde_json::json!({"replyToken": "reply-token-secret", "text": "hello"}))
            .unwrap()
            .idempotency_key("key-1");
        let debug = format!("{call:?}");
        assert!(debug.contains("followup"), "{debug}");
        for secret in [
            "interaction-token-secret",
            "reply-token-secret",
            "hello",
            "key-1",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }
}
