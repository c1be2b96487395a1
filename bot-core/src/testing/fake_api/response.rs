//! What the fake answers: [`FakeResponse`], injected [`Fault`]s and [`Latency`].

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use super::request::FakeRequest;

/// What the fake answers.
#[derive(Debug, Clone)]
pub struct FakeResponse {
    /// The status.
    pub status: StatusCode,
    /// Extra headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl FakeResponse {
    /// A JSON answer.
    pub fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Self {
            status,
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    /// An answer without a body.
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    ///
    /// # Panics
    ///
    /// When `value` is not a valid header value (a test's own mistake).
    #[must_use]
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let name = HeaderName::try_from(name.as_ref()).expect("a valid header name");
        let value = HeaderValue::try_from(value.as_ref()).expect("a valid header value");
        self.headers.insert(name, value);
        self
    }
}

/// A failure to answer instead of the responder's answer, for the next matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    pub(super) path_prefix: Option<String>,
    pub(super) times: usize,
    pub(super) response: FakeResponse,
}

impl Fault {
    /// Answers with `status` and an empty JSON object.
    pub fn status(status: StatusCode) -> Self {
        Self::response(FakeResponse::json(status, &serde_json::json!({})))
    }

    /// Answers with `response`.
    pub fn response(response: FakeResponse) -> Self {
        Self {
            path_prefix: None,
            times: 1,
            response,
        }
    }

    /// Applies to this many matching requests (default 1).
    #[must_use]
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// Applies only to requests whose path starts with `prefix`.
    #[must_use]
    pub fn on_path(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Replaces the body with `body` as JSON.
    #[must_use]
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        let status = self.response.status;
        let headers = std::mem::take(&mut self.response.headers);
        self.response = FakeResponse::json(status, body);
        self.response.headers.extend(headers);
        self
    }

    /// Adds a header to the answer.
    #[must_use]
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.response = self.response.header(name, value);
        self
    }
}

/// How long the fake takes to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latency {
    /// At once.
    #[default]
    None,
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between the two.
    Uniform(Duration, Duration),
}

impl Latency {
    pub(super) fn sample(self) -> Duration {
        match self {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Uniform(low, high) if high > low => {
                let span = u64::try_from((high - low).as_micros()).unwrap_or(u64::MAX);
                low + Duration::from_micros(fastrand::u64(0..=span))
            }
            Latency::Uniform(low, _) => low,
        }
    }
}

pub(super) type Responder = dyn Fn(&FakeRequest) -> FakeResponse + Send + Sync;
