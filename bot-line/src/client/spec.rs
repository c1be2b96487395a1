//! [`LineSpec`]: what LINE adds to the client core — `X-Line-Retry-Key`, a 409 to a retry key as
//! acceptance, and how LINE's refusals read.

use bot_core::Platform;
use bot_core::api::{Answer, ApiError, ApiSpec, Call};
use http::{HeaderName, StatusCode};

use crate::error::ErrorKind;
use crate::model::send::ApiError as LineErrorBody;

/// The header that makes push and multicast idempotent.
pub const RETRY_KEY_HEADER: &str = "x-line-retry-key";
/// The header naming the request LINE recorded, for LINE support.
pub const REQUEST_ID_HEADER: &str = "x-line-request-id";
/// The header of a 409 naming the request that accepted a retry key before.
pub const ACCEPTED_REQUEST_ID_HEADER: &str = "x-line-accepted-request-id";

/// The endpoint name of the Reply API, which the reply token check applies to.
pub(crate) const REPLY: &str = "reply";

/// LINE's part of the client: `X-Line-Retry-Key` on push and multicast, a 409 to a retry key as
/// acceptance, and LINE's refusals read into [`ErrorKind`]s.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct LineSpec;

impl ApiSpec for LineSpec {
    type Permit = ();

    fn platform(&self) -> Platform {
        Platform::LINE
    }

    fn user_agent(&self) -> &'static str {
        concat!("botrt-line/", env!("CARGO_PKG_VERSION"))
    }

    fn idempotency_header(&self) -> Option<HeaderName> {
        Some(HeaderName::from_static(RETRY_KEY_HEADER))
    }

    async fn admit(&self, _call: &Call, _deadline: std::time::Instant) -> Result<(), ApiError> {
        // LINE's limits are per endpoint, which the core's quotas enforce.
        Ok(())
    }

    /// 2xx, or 409 to a retry key: an earlier attempt with the key was accepted, so nothing is
    /// sent twice.
    fn accepted(&self, call: &Call, status: StatusCode) -> bool {
        status.is_success() || (status == StatusCode::CONFLICT && call.key().is_some())
    }

    fn refusal(&self, call: &Call, answer: &Answer) -> ApiError {
        let body: Option<LineErrorBody> = serde_json::from_slice(&answer.body).ok();
        let message = body.as_ref().map_or("", |b| b.message.as_str());
        let (kind, text) = classify(call.endpoint(), answer.status, message);
        ApiError::new(kind, text)
            .with_platform_message(body.as_ref().map(|b| b.message.clone()))
            .with_request_id(answer.header(REQUEST_ID_HEADER).map(str::to_owned))
            .with_retry_after(answer.retry_after())
            // A 5xx other than 503 does not say that nothing was done.
            .with_maybe_delivered(
                answer.status.is_server_error() && answer.status != StatusCode::SERVICE_UNAVAILABLE,
            )
            .with_details(body)
    }
}

/// The kind and message of a refusal of `endpoint` with `status` and LINE's `message`.
fn classify(endpoint: &str, status: StatusCode, message: &str) -> (ErrorKind, &'static str) {
    match status {
        // LINE uses 429 for its monthly quota too, which no retry can fix.
        StatusCode::TOO_MANY_REQUESTS if message.contains("monthly limit") => (
            ErrorKind::QuotaExceeded,
            "line: the monthly message quota is used up",
        ),
        StatusCode::TOO_MANY_REQUESTS => (ErrorKind::RateLimited, "line: rate limited"),
        StatusCode::UNAUTHORIZED => (
            ErrorKind::Authentication,
            "line: the channel access token was refused",
        ),
        s if s.is_server_error() => (ErrorKind::Server, "line: server error"),
        StatusCode::BAD_REQUEST
            if endpoint == REPLY && message.to_ascii_lowercase().contains("reply token") =>
        {
            (
                ErrorKind::InvalidReplyToken,
                "line: the reply token was refused",
            )
        }
        _ => (ErrorKind::Api, "line: the api refused the call"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_lines_kinds() {
        let kind = |endpoint, status: u16, message| {
            classify(endpoint, StatusCode::from_u16(status).unwrap(), message).0
        };
        assert_eq!(
            kind("push", 429, "You have reached your monthly limit."),
            ErrorKind::QuotaExceeded
        );
        assert_eq!(
            kind("push", 429, "The API rate limit has been exceeded."),
            ErrorKind::RateLimited
        );
        assert_eq!(
            kind(REPLY, 400, "Invalid reply token"),
            ErrorKind::InvalidReplyToken
        );
        assert_eq!(kind("push", 400, "Invalid reply token"), ErrorKind::Api);
        assert_eq!(kind("profile", 401, ""), ErrorKind::Authentication);
        assert_eq!(kind("push", 502, ""), ErrorKind::Server);
        assert_eq!(kind("profile", 404, "Not found"), ErrorKind::Api);
    }
}
