//! [`DiscordHttp`]: the client and its generic call; the endpoints live in the files by area.

use bot_core::Secret;
use bot_core::api::{Answer, ApiClient, Call};
use bot_core::telemetry::Telemetry;
use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::builder::DiscordHttpBuilder;
use super::spec::{DiscordSpec, is_idempotent};
use crate::error::Error;

/// Discord's REST API. Cloning is cheap; clones share connections and the rate-limit state.
#[derive(Debug, Clone)]
pub struct DiscordHttp {
    client: ApiClient<DiscordSpec>,
}

impl DiscordHttp {
    /// Starts a client with the bot token.
    pub fn builder(token: impl Into<Secret>) -> DiscordHttpBuilder {
        DiscordHttpBuilder::new(token.into())
    }

    pub(super) fn from_client(client: ApiClient<DiscordSpec>) -> Self {
        Self { client }
    }

    /// This client recording its calls in `telemetry`, sharing connections and limits with
    /// `self` (the adapter does it when the bot is built).
    #[must_use]
    pub fn with_telemetry(&self, telemetry: Telemetry) -> Self {
        Self {
            client: self.client.with_telemetry(telemetry),
        }
    }

    /// The rate limits shared across processes, when the client has them
    /// ([`ConfigureApi::shared_limits`](bot_core::api::ConfigureApi::shared_limits)).
    pub fn shared_limits(&self) -> Option<&bot_core::ratelimit::SharedLimits> {
        self.client.shared_limits()
    }

    /// The base URL calls go to.
    pub fn api_base(&self) -> &str {
        self.client.base()
    }

    /// When a call made now gives up, by default (the client's deadline from now).
    pub fn deadline_from_now(&self) -> std::time::Instant {
        self.client.deadline_from_now()
    }

    /// Invalid requests (401, 403, 429) counted in the last 10 minutes.
    pub fn invalid_requests(&self) -> usize {
        self.client.spec().invalid_requests()
    }

    /// Any REST call, through the limits and retries; the JSON answer (`null` for 204).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Api`](crate::ErrorKind::Api) for 4xx (Discord's `code` kept, its body in
    /// [`Error::details`] as [`super::ErrorBody`]),
    /// [`ErrorKind::Authentication`](crate::ErrorKind::Authentication) for 401,
    /// [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited),
    /// [`ErrorKind::Server`](crate::ErrorKind::Server),
    /// [`ErrorKind::Transport`](crate::ErrorKind::Transport) or
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) after the last attempt,
    /// [`ErrorKind::InvalidRequestLimit`](crate::ErrorKind::InvalidRequestLimit) when the invalid
    /// request budget is spent. A call that is not idempotent (a `POST` without `enforce_nonce`,
    /// typing aside) fails at its first ambiguous failure, with [`Error::maybe_delivered`]; a
    /// rate limit longer than the cap fails at once.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let call = match body {
            Some(body) => Self::call(method, "request", path, Some(body))?,
            None => Self::call::<Value>(method, "request", path, None)?,
        };
        self.value(call).await
    }

    /// A call of `endpoint` (its name in metrics), idempotent as Discord makes it.
    pub(super) fn call<T: Serialize + ?Sized>(
        method: Method,
        endpoint: &'static str,
        path: &str,
        body: Option<&T>,
    ) -> Result<Call, Error> {
        let json = body.map(serde_json::to_value).transpose().map_err(|e| {
            Error::invalid_request("discord: the request body is not JSON").with_source(e)
        })?;
        let idempotent = is_idempotent(&method, path, json.as_ref());
        let call = Call::new(method, endpoint, path).idempotent(idempotent);
        match &json {
            Some(json) => call.json(json),
            None => Ok(call),
        }
    }

    /// Makes `call`; its answer's JSON (`null` when empty or not JSON: Discord took the call).
    pub(super) async fn value(&self, call: Call) -> Result<Value, Error> {
        let answer = self.client.call(call).await?;
        Ok(serde_json::from_slice(&answer.body).unwrap_or(Value::Null))
    }

    /// Makes `call`; its answer as a `T`.
    pub(super) async fn typed<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        self.answer(call).await?.json()
    }

    /// Makes `call`; its answer.
    pub(super) async fn answer(&self, call: Call) -> Result<Answer, Error> {
        self.client.call(call).await
    }
}
