//! What the fake records: [`FakeRequest`] and [`Call`].

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    /// The HTTP method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// When the fake received it.
    pub received_at: Instant,
}

impl FakeRequest {
    /// A header's value as a string, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub fn bearer(&self) -> Option<&str> {
        self.header(header::AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer "))
    }

    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A query parameter's value (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

/// A request and the status the fake answered it with.
#[derive(Debug, Clone)]
pub struct Call {
    /// What arrived.
    pub request: FakeRequest,
    /// What the fake answered.
    pub status: StatusCode,
}
