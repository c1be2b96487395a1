//! [`GraphApi`]: how Meta's Graph API refuses a call, for the client core.
//!
//! Graph error codes decide the kind before the HTTP status, since Meta answers rate limits with
//! 400 or 403 as often as with 429.

use std::time::Duration;

use bot_core::Platform;
use bot_core::api::{Answer, ApiError, ApiErrorKind, ApiSpec, Call};
use http::StatusCode;
use serde_json::Value;

use crate::model::send::GraphError;

/// The header in which Meta reports a Business Use Case's rate limit usage.
pub const BUSINESS_USE_CASE_USAGE: &str = "x-business-use-case-usage";

/// The Graph API's part of the client: who it is and how its refusals read. Rate limits are
/// per endpoint only ([`crate::RateLimits`]); the Send API has no idempotency key.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct GraphApi;

impl ApiSpec for GraphApi {
    type Permit = ();

    fn platform(&self) -> Platform {
        Platform::MESSENGER
    }

    fn user_agent(&self) -> &'static str {
        concat!("botrt-messenger/", env!("CARGO_PKG_VERSION"))
    }

    async fn admit(&self, _call: &Call, _deadline: std::time::Instant) -> Result<(), ApiError> {
        Ok(())
    }

    /// The kind by Graph code, then status; the retry hint from `Retry-After`, else, for a rate
    /// limit, from `X-Business-Use-Case-Usage`; the Graph error as details.
    fn refusal(&self, _call: &Call, answer: &Answer) -> ApiError {
        let graph = GraphError::from_body(&answer.body);
        let (kind, message) = classify(answer.status, graph.as_ref());
        let retry_after = answer.retry_after().or_else(|| {
            (kind == ApiErrorKind::RateLimited)
                .then(|| business_use_case_wait(answer.header(BUSINESS_USE_CASE_USAGE)))
                .flatten()
        });
        let maybe_delivered = server_error_maybe_delivered(kind, answer.status, graph.as_ref());
        let platform_message = graph.as_ref().map(|g| {
            let mut text = format!("code {}", g.code);
            if let Some(subcode) = g.error_subcode {
                text.push_str(&format!("/{subcode}"));
            }
            if !g.message.is_empty() {
                text.push_str(": ");
                text.push_str(&g.message);
            }
            text
        });
        ApiError::new(kind, message)
            .with_code(graph.as_ref().map(|g| g.code))
            .with_subcode(graph.as_ref().and_then(|g| g.error_subcode))
            .with_platform_message(platform_message)
            .with_retry_after(retry_after)
            .with_maybe_delivered(maybe_delivered)
            .with_details(graph)
    }
}

/// The wait `X-Business-Use-Case-Usage` asks for: the longest `estimated_time_to_regain_access`
/// (minutes) of its entries, `{"<business id>": [{"type", "call_count", ...,
/// "estimated_time_to_regain_access"}]}`; `None` when absent, unreadable or zero.
fn business_use_case_wait(header: Option<&str>) -> Option<Duration> {
    let usage: Value = serde_json::from_str(header?).ok()?;
    let minutes = usage
        .as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|entry| entry.get("estimated_time_to_regain_access")?.as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes.saturating_mul(60)))
}

/// Whether a refusal leaves the message possibly sent. Rate limits and refusals mean Meta did
/// not send it; of the server errors, only 503 and the Graph codes 2 and 1200 say that it was
/// not sent. Any other 5xx (a 500 with code 1, or a 502 or 504 without a Graph error, which may
/// come from a gateway or proxy after the backend sent the message) may hide a sent message.
fn server_error_maybe_delivered(
    kind: ApiErrorKind,
    status: StatusCode,
    graph: Option<&GraphError>,
) -> bool {
    kind == ApiErrorKind::Server
        && status != StatusCode::SERVICE_UNAVAILABLE
        && !matches!(graph.map(|g| g.code), Some(2 | 1200))
}

/// The kind of a refused call, by Graph error code first, then by status.
fn classify(status: StatusCode, graph: Option<&GraphError>) -> (ApiErrorKind, &'static str) {
    use ApiErrorKind as K;
    match graph.map(|g| (g.code, g.error_subcode)) {
        Some((4 | 17 | 32 | 613, _)) => (K::RateLimited, "messenger: rate limited"),
        Some((80_001 | 80_002 | 80_006, _)) => {
            (K::RateLimited, "messenger: business use case rate limited")
        }
        Some((190, _)) => (
            K::Authentication,
            "messenger: the page access token is invalid or expired",
        ),
        Some((100, Some(2_018_001))) => {
            (K::UserNotFound, "messenger: no user matches the recipient")
        }
        Some((10, Some(2_018_278))) => (
            K::OutsideWindow,
            "messenger: the message is outside the allowed window",
        ),
        Some((551, _)) => (K::UserUnavailable, "messenger: the person is not available"),
        Some((1 | 2 | 1200, _)) => (K::Server, "messenger: temporary graph error"),
        _ if status == StatusCode::TOO_MANY_REQUESTS => (K::RateLimited, "messenger: rate limited"),
        _ if status.is_server_error() => (K::Server, "messenger: server error"),
        _ => (K::Api, "messenger: the api refused the call"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderMap;

    fn graph(code: i64, subcode: Option<i64>) -> Option<GraphError> {
        Some(GraphError {
            code,
            error_subcode: subcode,
            message: format!("(#{code}) test"),
            ..GraphError::default()
        })
    }

    fn refusal(status: u16, graph: Option<GraphError>, headers: &[(&str, &str)]) -> ApiError {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let body = graph.map_or_else(Bytes::new, |g| Bytes::from(g.to_body().to_string()));
        let answer = Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body,
        };
        GraphApi.refusal(&Call::post("send", "/me/messages"), &answer)
    }

    #[test]
    fn graph_codes_decide_the_kind_before_the_status() {
        use ApiErrorKind as K;
        let kind = |status: u16, g: Option<GraphError>| refusal(status, g, &[]).kind();
        assert_eq!(kind(400, graph(613, None)), K::RateLimited);
        assert_eq!(kind(403, graph(4, None)), K::RateLimited);
        assert_eq!(kind(400, graph(17, None)), K::RateLimited);
        assert_eq!(kind(400, graph(32, None)), K::RateLimited);
        assert_eq!(kind(429, None), K::RateLimited);
        assert_eq!(kind(500, graph(1200, None)), K::Server);
        assert_eq!(kind(400, graph(2, None)), K::Server);
        assert_eq!(kind(400, graph(1, None)), K::Server);
        assert_eq!(kind(503, None), K::Server);
        assert_eq!(kind(400, graph(190, Some(460))), K::Authentication);
        assert_eq!(kind(400, graph(100, Some(2_018_001))), K::UserNotFound);
        assert_eq!(kind(400, graph(100, None)), K::Api);
        assert_eq!(kind(400, graph(10, Some(2_018_278))), K::OutsideWindow);
        assert_eq!(kind(400, graph(551, None)), K::UserUnavailable);
        assert_eq!(kind(404, None), K::Api);
        for code in [80_001, 80_002, 80_006] {
            assert_eq!(kind(400, graph(code, None)), K::RateLimited);
        }
    }

    #[test]
    fn only_server_errors_that_say_nothing_was_sent_are_not_maybe_delivered() {
        let maybe = |status: u16, g: Option<GraphError>| refusal(status, g, &[]).maybe_delivered();
        assert!(!maybe(503, None));
        assert!(!maybe(500, graph(1200, None)));
        assert!(!maybe(400, graph(2, None)));
        assert!(!maybe(500, graph(613, None)));
        assert!(!maybe(429, None));
        assert!(!maybe(400, graph(551, None)));
        assert!(maybe(500, None));
        assert!(maybe(502, None));
        assert!(maybe(504, None));
        assert!(maybe(500, graph(1, None)));
    }

    #[test]
    fn the_graph_error_is_kept_as_details_code_and_message() {
        let e = refusal(400, graph(100, Some(2_018_001)), &[]);
        let details = e.details::<GraphError>().unwrap();
        assert_eq!(
            (details.code, details.error_subcode),
            (100, Some(2_018_001))
        );
        assert_eq!((e.code(), e.subcode()), (Some(100), Some(2_018_001)));
        assert_eq!(
            e.with_status(StatusCode::BAD_REQUEST).to_string(),
            "messenger: no user matches the recipient (status 400: code 100/2018001: (#100) test)"
        );
        let bare = refusal(502, None, &[]);
        assert!(bare.details::<GraphError>().is_none() && bare.code().is_none());
    }

    #[test]
    fn the_business_use_case_estimate_is_the_hint_of_a_rate_limit_only() {
        let usage = concat!(
            r#"{"1": [{"type": "messenger", "call_count": 100, "estimated_time_to_regain_access": 2}], "#,
            r#""2": [{"type": "pages", "estimated_time_to_regain_access": 5}]}"#
        );
        let header = [(BUSINESS_USE_CASE_USAGE, usage)];
        assert_eq!(
            refusal(400, graph(80_006, None), &header).retry_after(),
            Some(Duration::from_secs(300))
        );
        let both = [(BUSINESS_USE_CASE_USAGE, usage), ("retry-after", "3")];
        assert_eq!(
            refusal(400, graph(613, None), &both).retry_after(),
            Some(Duration::from_secs(3)),
            "retry-after comes first"
        );
        assert_eq!(refusal(400, graph(100, None), &header).retry_after(), None);
    }

    #[test]
    fn business_use_case_usage_gives_the_longest_wait() {
        let wait = business_use_case_wait;
        assert_eq!(
            wait(Some(
                r#"{"1": [{"type": "messenger", "estimated_time_to_regain_access": 0}]}"#
            )),
            None
        );
        assert_eq!(wait(Some(r#"{"1": [{"type": "messenger"}]}"#)), None);
        assert_eq!(wait(Some("not json")), None);
        assert_eq!(wait(None), None);
    }
}
