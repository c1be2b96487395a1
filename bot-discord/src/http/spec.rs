//! [`DiscordSpec`]: Discord's part of the client core: `Bot <token>` authorization, the global
//! limit and the buckets learned from headers, the invalid request budget, and how Discord's
//! refusals read.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bot_core::api::{Answer, ApiError, ApiErrorKind, ApiSpec, Call, header_value};
use bot_core::outbound::RateLimit;
use bot_core::{Platform, Secret};
use http::{HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::ratelimit::{Admission, RateLimiter, Ticket, seconds};
use super::route::RouteKey;

/// How long a call waits for another call's answer before asking its bucket again.
const ANSWER_WAIT: Duration = Duration::from_millis(250);
/// The wait a 429 implies when it names none.
const DEFAULT_429_WAIT: Duration = Duration::from_secs(1);
/// The most time a bucket wait leaves before the call's deadline for the request itself.
pub(crate) const MAX_SEND_MARGIN: Duration = Duration::from_secs(1);

/// Discord's JSON error body (`{"code": 50035, "message": "Invalid Form Body", "errors": ...}`),
/// kept in every refusal: read it with [`crate::Error::details`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorBody {
    /// Discord's JSON error code (`50035`, `10015`, ...; `0` for a bare HTTP error).
    #[serde(default)]
    pub code: Option<i64>,
    /// Discord's message.
    #[serde(default)]
    pub message: Option<String>,
    /// Per-field errors of an invalid form body, as Discord nests them.
    #[serde(default)]
    pub errors: Option<Value>,
    /// A 429's wait, in seconds.
    #[serde(default)]
    pub retry_after: Option<f64>,
    /// Whether a 429 is the global limit.
    #[serde(default)]
    pub global: Option<bool>,
}

/// Discord's part of [`bot_core::api::ApiClient`].
pub(crate) struct DiscordSpec {
    global: RateLimit,
    limits: Arc<RateLimiter>,
    /// The longest bucket wait a call sits through (the client's `max_retry_after`); longer, or
    /// past the call's deadline, it fails at once with the wait as its hint.
    max_wait: Duration,
    /// The time a bucket wait must leave before the deadline to send the request: a wait that
    /// ends later fails at once too, since a request sent then would time out, and a
    /// non-idempotent one as maybe delivered.
    send_margin: Duration,
}

impl fmt::Debug for DiscordSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordSpec")
            .field("invalid_requests", &self.limits.invalid_count())
            .field("max_wait", &self.max_wait)
            .field("send_margin", &self.send_margin)
            .finish_non_exhaustive()
    }
}

impl DiscordSpec {
    /// `send_margin` is the time a bucket wait must leave before the deadline (the request
    /// time-out, up to [`MAX_SEND_MARGIN`]).
    pub(crate) fn new(
        global: RateLimit,
        invalid_budget: usize,
        max_wait: Duration,
        send_margin: Duration,
    ) -> Self {
        Self {
            global,
            limits: Arc::new(RateLimiter::new(invalid_budget)),
            max_wait,
            send_margin,
        }
    }

    /// Invalid requests counted in the current window.
    pub(crate) fn invalid_requests(&self) -> usize {
        self.limits.invalid_count()
    }
}

/// A call's claim on its bucket, given back unless an answer settles it (a time-out, a broken
/// connection, a call dropped while in flight).
#[derive(Debug)]
pub(crate) struct Permit {
    limits: Arc<RateLimiter>,
    ticket: Option<Ticket>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.limits.abandon(&ticket);
        }
    }
}

impl ApiSpec for DiscordSpec {
    type Permit = Permit;

    fn platform(&self) -> Platform {
        Platform::DISCORD
    }

    fn user_agent(&self) -> &'static str {
        concat!(
            "DiscordBot (https://example.invalid/botrt, ",
            env!("CARGO_PKG_VERSION"),
            ")"
        )
    }

    fn authorization(&self, token: &Secret) -> Result<HeaderValue, ApiError> {
        header_value(&format!("Bot {}", token.expose()))
    }

    /// The global limit first (nothing awaits between taking a bucket's request and sending, so
    /// a dropped call never keeps one), then the route's bucket.
    ///
    /// A bucket wait is weighed against what is left of the call's deadline, not the deadline
    /// it started with: a call that already waited or retried fails at once with the wait as
    /// its hint instead of sleeping into a time-out. The wait must also leave the send margin
    /// before the deadline, or the request would go out with no time to be answered.
    fn admit(
        &self,
        call: &Call,
        deadline: std::time::Instant,
    ) -> impl Future<Output = Result<Permit, ApiError>> + Send {
        let key = RouteKey::new(call.method(), call.path());
        let deadline = Instant::from_std(deadline);
        async move {
            if key.global {
                // The client core records the whole wait, bucket included.
                self.global.acquire(&Platform::DISCORD, None).await;
            }
            loop {
                match self.limits.admit(&key) {
                    Admission::Go(ticket) => {
                        return Ok(Permit {
                            limits: self.limits.clone(),
                            ticket: Some(ticket),
                        });
                    }
                    Admission::Wait(until) => {
                        let wait = until.saturating_duration_since(Instant::now());
                        if wait > self.max_wait || until + self.send_margin >= deadline {
                            return Err(ApiError::new(
                                ApiErrorKind::RateLimited,
                                "discord: rate limited for longer than the call can wait",
                            )
                            .with_retry_after(Some(wait)));
                        }
                        tokio::time::sleep_until(until).await;
                    }
                    Admission::WaitForAnswer => self.limits.wait_for_answer(ANSWER_WAIT).await,
                    Admission::Refuse(until) => {
                        return Err(ApiError::new(
                            ApiErrorKind::InvalidRequestLimit,
                            "discord: too many invalid requests in 10 minutes; refusing to send",
                        )
                        .with_retry_after(Some(until.saturating_duration_since(Instant::now()))));
                    }
                }
            }
        }
    }

    fn answered(&self, mut permit: Permit, call: &Call, answer: &Answer) {
        if let Some(ticket) = permit.ticket.take() {
            let key = RouteKey::new(call.method(), call.path());
            self.limits.learn(&key, &ticket, &answer.headers);
        }
    }

    fn refusal(&self, call: &Call, answer: &Answer) -> ApiError {
        let body: ErrorBody = serde_json::from_slice(&answer.body).unwrap_or_default();
        let code = body.code;
        let message = body.message.clone();
        let status = answer.status;
        let error = match status {
            StatusCode::TOO_MANY_REQUESTS => {
                let global =
                    body.global == Some(true) || answer.header("x-ratelimit-global").is_some();
                let retry_after = body
                    .retry_after
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .or_else(|| answer.header("retry-after").and_then(seconds))
                    .unwrap_or(DEFAULT_429_WAIT);
                let key = RouteKey::new(call.method(), call.path());
                self.limits.limited(&key, global, retry_after);
                // Counted after the pause is in place, so that the count tells it is.
                if answer.header("x-ratelimit-scope") != Some("shared") {
                    self.limits.invalid();
                }
                ApiError::new(ApiErrorKind::RateLimited, "discord: rate limited")
                    .with_retry_after(Some(retry_after))
            }
            StatusCode::UNAUTHORIZED => {
                self.limits.invalid();
                ApiError::new(
                    ApiErrorKind::Authentication,
                    "discord: the token was refused",
                )
            }
            StatusCode::FORBIDDEN => {
                self.limits.invalid();
                ApiError::new(ApiErrorKind::Api, "discord: the call was forbidden")
            }
            s if s.is_server_error() => {
                ApiError::new(ApiErrorKind::Server, "discord: server error")
                    // A 503 says nothing was done; a 500 or a gateway's 502/504 may hide a
                    // delivery.
                    .with_maybe_delivered(s != StatusCode::SERVICE_UNAVAILABLE)
            }
            _ => ApiError::new(ApiErrorKind::Api, "discord: the call was refused"),
        };
        error
            .with_code(code)
            .with_platform_message(message)
            .with_details(Some(body))
    }
}

/// Whether sending the call twice does no harm: anything but a `POST`, a `POST` that Discord
/// deduplicates by its nonce (with `enforce_nonce`), and the typing indicator.
pub(crate) fn is_idempotent(method: &Method, path: &str, body: Option<&Value>) -> bool {
    *method != Method::POST
        || path.ends_with("/typing")
        || body.is_some_and(|b| {
            b.get("enforce_nonce") == Some(&Value::Bool(true)) && b.get("nonce").is_some()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderMap;
    use serde_json::json;

    fn spec() -> DiscordSpec {
        DiscordSpec::new(
            RateLimit::per_second(50).unwrap(),
            9_000,
            Duration::from_secs(10),
            MAX_SEND_MARGIN,
        )
    }

    fn answer(status: StatusCode, body: Value) -> Answer {
        Answer {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn refusals_keep_discords_code_message_and_body() {
        let call = Call::post("create_message", "/channels/1/messages");
        let error = spec().refusal(
            &call,
            &answer(
                StatusCode::BAD_REQUEST,
                json!({"code": 50035, "message": "Invalid Form Body", "errors": {"content": {}}}),
            ),
        );
        assert_eq!(error.kind(), ApiErrorKind::Api);
        assert_eq!(error.code(), Some(50035));
        assert_eq!(error.platform_message(), Some("Invalid Form Body"));
        let body = error.details::<ErrorBody>().expect("typed body");
        assert_eq!(body.errors, Some(json!({"content": {}})));
    }

    #[test]
    fn a_429_reads_its_wait_from_the_body_before_the_header_and_counts_as_invalid() {
        let spec = spec();
        let call = Call::post("create_message", "/channels/1/messages");
        let mut limited = answer(StatusCode::TOO_MANY_REQUESTS, json!({"retry_after": 1.5}));
        limited
            .headers
            .insert("retry-after", HeaderValue::from_static("9"));
        let error = spec.refusal(&call, &limited);
        assert_eq!(error.kind(), ApiErrorKind::RateLimited);
        assert_eq!(error.retry_after(), Some(Duration::from_millis(1500)));
        assert_eq!(spec.invalid_requests(), 1);

        let mut shared = answer(StatusCode::TOO_MANY_REQUESTS, json!({}));
        shared
            .headers
            .insert("retry-after", HeaderValue::from_static("2"));
        shared
            .headers
            .insert("x-ratelimit-scope", HeaderValue::from_static("shared"));
        let error = spec.refusal(&call, &shared);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(
            spec.invalid_requests(),
            1,
            "a shared 429 is not the bot's fault"
        );
    }

    #[test]
    fn server_errors_may_hide_a_delivery_except_503() {
        let call = Call::post("create_followup", "/webhooks/1/t");
        let spec = spec();
        for (status, maybe) in [
            (StatusCode::INTERNAL_SERVER_ERROR, true),
            (StatusCode::BAD_GATEWAY, true),
            (StatusCode::SERVICE_UNAVAILABLE, false),
        ] {
            let error = spec.refusal(&call, &answer(status, json!({})));
            assert_eq!(
                (error.kind(), error.maybe_delivered()),
                (ApiErrorKind::Server, maybe)
            );
        }
        let error = spec.refusal(&call, &answer(StatusCode::UNAUTHORIZED, json!({})));
        assert_eq!(error.kind(), ApiErrorKind::Authentication);
        assert_eq!(spec.invalid_requests(), 1);
    }

    /// An answer that empties its bucket for `reset_after` seconds.
    fn emptying(reset_after: &'static str) -> Answer {
        let mut emptied = answer(StatusCode::OK, json!({}));
        for (name, value) in [
            ("x-ratelimit-bucket", "b1"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset-after", reset_after),
        ] {
            emptied
                .headers
                .insert(name, HeaderValue::from_static(value));
        }
        emptied
    }

    /// Sends `call` once and empties its bucket for `reset_after` seconds.
    async fn empty_bucket(spec: &DiscordSpec, call: &Call, reset_after: &'static str) {
        let deadline = Instant::now().into_std() + Duration::from_secs(60);
        let permit = spec.admit(call, deadline).await.expect("admitted");
        spec.answered(permit, call, &emptying(reset_after));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_wait_is_weighed_against_what_is_left_of_the_deadline() {
        let spec = spec();
        let call = Call::post("create_message", "/channels/1/messages");
        let started = Instant::now();
        let deadline = started.into_std() + Duration::from_secs(10);

        // 6 s of a 10 s deadline: waited, then sent.
        empty_bucket(&spec, &call, "6").await;
        let permit = spec
            .admit(&call, deadline)
            .await
            .expect("waited and admitted");
        assert_eq!(started.elapsed(), Duration::from_secs(6));

        // Another 6 s would end 2 s past the deadline, though under the 10 s the client waits:
        // refused at once with the wait as its hint, not slept into a time-out.
        spec.answered(permit, &call, &emptying("6"));
        let refused = spec.admit(&call, deadline).await.unwrap_err();
        assert_eq!(refused.kind(), ApiErrorKind::RateLimited);
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(6)));
        assert_eq!(started.elapsed(), Duration::from_secs(6), "no time spent");

        // A fresh deadline has room for it.
        let fresh = Instant::now().into_std() + Duration::from_secs(10);
        spec.admit(&call, fresh).await.expect("waited and admitted");
        assert_eq!(started.elapsed(), Duration::from_secs(12));
    }

    /// A wait ending at the deadline, or less than the margin before it, leaves no time for the
    /// request: refused at once, with the wait as the hint.
    #[tokio::test(start_paused = true)]
    async fn a_bucket_wait_must_leave_time_to_send_before_the_deadline() {
        let call = Call::post("create_message", "/channels/1/messages");
        // Against a 10 s deadline and a 1 s margin, the wait must end before 9 s.
        let cases = [
            ("10", 10_000, false),
            ("9.5", 9_500, false),
            ("9", 9_000, false),
            ("8.5", 8_500, true),
        ];
        for (reset_after, wait_ms, admitted) in cases {
            let spec = spec();
            empty_bucket(&spec, &call, reset_after).await;
            let started = Instant::now();
            let deadline = started.into_std() + Duration::from_secs(10);
            let wait = Duration::from_millis(wait_ms);
            match spec.admit(&call, deadline).await {
                Ok(_) => {
                    assert!(admitted, "{reset_after} s left no time to send");
                    assert_eq!(started.elapsed(), wait);
                }
                Err(refused) => {
                    assert!(!admitted, "{reset_after} s left time to send");
                    assert_eq!(refused.kind(), ApiErrorKind::RateLimited);
                    assert_eq!(refused.retry_after(), Some(wait));
                    assert_eq!(started.elapsed(), Duration::ZERO, "no time spent");
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_wait_longer_than_the_client_waits_is_refused_whatever_the_deadline() {
        let spec = spec();
        let call = Call::post("create_message", "/channels/1/messages");
        empty_bucket(&spec, &call, "11").await;
        let far = Instant::now().into_std() + Duration::from_secs(3600);
        let refused = spec.admit(&call, far).await.unwrap_err();
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(11)));
    }

    #[test]
    fn only_nonce_enforced_posts_and_typing_are_idempotent() {
        let post = Method::POST;
        assert!(!is_idempotent(
            &post,
            "/channels/1/messages",
            Some(&json!({}))
        ));
        assert!(is_idempotent(
            &post,
            "/channels/1/messages",
            Some(&json!({"nonce": "n", "enforce_nonce": true}))
        ));
        assert!(!is_idempotent(
            &post,
            "/channels/1/messages",
            Some(&json!({"nonce": "n"}))
        ));
        assert!(is_idempotent(&post, "/channels/1/typing", None));
        assert!(is_idempotent(
            &Method::PATCH,
            "/channels/1/messages/2",
            None
        ));
    }
}
