//! [`ApiClient`]: one retry loop, one deadline, one set of rate limits and one way of reading a
//! failure, for every platform; [`ApiSpec`] is the small part each platform adds.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, StatusCode};

use super::call::{Answer, Call};
use super::config::ApiConfig;
use super::error::{ApiError, ApiErrorKind};
use super::tls::{Load, PlatformVerifier};
use super::transport::{
    Destination, Outgoing, SendFailure, Transport, plain_path, reqwest_client, reqwest_exchange,
};
use crate::event::Platform;
use crate::limits::RetryPolicy;
use crate::outbound::RateLimit;
use crate::ratelimit::{SharedLimit, SharedLimits};
use crate::secret::Secret;
use crate::telemetry::{OutboundCall, Telemetry};

/// What a platform adds to the client core: who it is, how it authorises, how it rate-limits
/// beyond per-endpoint quotas, and how its refusals read.
pub trait ApiSpec: fmt::Debug + Send + Sync + 'static {
    /// What [`ApiSpec::admit`] hands out for one attempt; dropped unused when the attempt ends
    /// without an answer (a time-out, a cancelled call), handed to [`ApiSpec::answered`]
    /// otherwise.
    type Permit: Send;

    /// The platform, for errors, logs and metrics.
    fn platform(&self) -> Platform;

    /// The `User-Agent` of the client's own HTTP client.
    fn user_agent(&self) -> &'static str;

    /// The `Authorization` header for `token` (`Bearer <token>` by default). Marked sensitive so
    /// that no layer below ever prints it.
    ///
    /// # Errors
    ///
    /// [`ApiErrorKind::Config`] when the token cannot be a header value.
    fn authorization(&self, token: &Secret) -> Result<HeaderValue, ApiError> {
        header_value(&format!("Bearer {}", token.expose()))
    }

    /// The header that carries [`Call::idempotency_key`], when the platform deduplicates by one
    /// (LINE's `X-Line-Retry-Key`).
    fn idempotency_header(&self) -> Option<HeaderName> {
        None
    }

    /// Waits until `call` may go out under the platform's own limits (Discord's buckets), after
    /// the per-endpoint quota of [`ApiConfig::limit`]. The call's `deadline` is what is left of
    /// it, retries and earlier waits spent; the client stops waiting for admission a little
    /// before it (no attempt goes out in a call's last fifth, at most its last second). A wait
    /// known to end too late to send should fail at once with its hint rather than sit until
    /// then and end in a time-out.
    ///
    /// # Errors
    ///
    /// The call fails at once with this error (a wait longer than the client waits or than the
    /// deadline allows, a spent budget), carrying its retry hint.
    fn admit(
        &self,
        call: &Call,
        deadline: Instant,
    ) -> impl Future<Output = Result<Self::Permit, ApiError>> + Send;

    /// Learns from an answer (rate-limit headers), with the attempt's permit.
    fn answered(&self, _permit: Self::Permit, _call: &Call, _answer: &Answer) {}

    /// Whether `status` means the call took effect: 2xx by default; LINE adds 409 to a retry key
    /// (an earlier attempt was accepted).
    fn accepted(&self, call: &Call, status: StatusCode) -> bool {
        let _ = call;
        status.is_success()
    }

    /// The error a refused answer (not [`ApiSpec::accepted`]) means: its kind, message, details,
    /// retry hint ([`Answer::retry_after`] or the platform's own), and whether the call may have
    /// taken effect anyway ([`ApiError::with_maybe_delivered`]; a 5xx other than 503 may hide a
    /// delivery).
    fn refusal(&self, call: &Call, answer: &Answer) -> ApiError;
}

/// The HTTP client core: base URL and token, per-endpoint rate limits, one retry loop with
/// back-off and jitter, one deadline per call, `Retry-After` honoured up to a cap, time-outs and
/// transport failures mapped, "maybe delivered" semantics, idempotency keys, and telemetry
/// (`bot.outbound.requests`, `bot.outbound.ratelimit.wait`, `http.client.request.duration`).
///
/// Cloning is cheap; clones share connections and limits.
pub struct ApiClient<S: ApiSpec> {
    shared: Arc<Shared<S>>,
    telemetry: Option<Telemetry>,
}

struct Shared<S> {
    spec: S,
    http: Transport,
    base: String,
    /// `base` parsed once: a call adds its path, never parses the scheme and host again.
    base_url: reqwest::Url,
    /// Whether `base` is an origin alone (no path): a call's path then goes out as it is.
    base_is_origin: bool,
    server_address: String,
    authorization: HeaderValue,
    /// [`ApiSpec::idempotency_header`], asked once.
    key_header: Option<HeaderName>,
    retry: RetryPolicy,
    timeout: Duration,
    deadline: Duration,
    max_retry_after: Duration,
    limits: HashMap<&'static str, EndpointLimit>,
    shared_limits: Option<SharedLimits>,
    channel: Option<String>,
}

/// The smallest quota shared across processes; smaller ones stay per process.
const MIN_SHARED_PER_SECOND: u32 = 3;

/// An endpoint's quota: this process's, or shared by every process of the channel.
enum EndpointLimit {
    Local(RateLimit),
    Shared(SharedLimit),
}

impl<S: ApiSpec> Clone for ApiClient<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            telemetry: self.telemetry.clone(),
        }
    }
}

impl<S: ApiSpec> fmt::Debug for ApiClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("ApiClient")
            .field("spec", &s.spec)
            .field("server_address", &s.server_address)
            .field("channel", &s.channel)
            .field("retry", &s.retry)
            .field("timeout", &s.timeout)
            .field("deadline", &s.deadline)
            .field("max_retry_after", &s.max_retry_after)
            .finish_non_exhaustive()
    }
}

impl<S: ApiSpec> ApiClient<S> {
    /// A client for `spec`'s platform, configured by `config`.
    ///
    /// # Errors
    ///
    /// [`ApiErrorKind::Config`] when the token is empty, the base URL is not http(s), a rate
    /// limit, the time-out or the deadline is zero, the retry policy is invalid, or the HTTP
    /// client cannot be set up.
    pub fn new(spec: S, config: ApiConfig) -> Result<Self, ApiError> {
        let platform = spec.platform();
        let fail = |what: String| ApiError::config(format!("{platform}: {what}"));
        if config.token.is_empty() {
            return Err(fail("the access token is empty".into()));
        }
        let base = config.base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| fail(format!("api base {base:?} is not an http(s) URL")))?;
        let server_address = url.host_str().unwrap_or_default().to_owned();
        config
            .retry
            .validate()
            .map_err(|e| fail(format!("retry policy: {e}")))?;
        if config.timeout.is_zero() || config.deadline.is_zero() {
            return Err(fail(
                "the time-out and the deadline must be above zero".into(),
            ));
        }
        let mut limits = HashMap::new();
        // The channel's label when the client has one (every process of a channel names it
        // alike, whichever token it holds: LINE issues tokens per process and rotates them),
        // otherwise a hash of the token.
        let channel_id = config.shared_limits.is_some().then(|| {
            config.channel.as_ref().map_or_else(
                || channel_id(&config.token),
                |label| format!("channel/{label}"),
            )
        });
        for (endpoint, per_second) in &config.limits {
            if *per_second == 0 {
                return Err(fail(format!(
                    "the rate limit of {endpoint} must be above zero"
                )));
            }
            let limit = match (&config.shared_limits, &channel_id) {
                // A quota of one or two calls a second cannot be shared and kept in every
                // second (see `crate::ratelimit`): such an endpoint (LINE's webhook test) keeps
                // a limit per process.
                (Some(shared), Some(channel_id)) if *per_second >= MIN_SHARED_PER_SECOND => {
                    EndpointLimit::Shared(
                        shared
                            .limit(format!("{platform}:{channel_id}:{endpoint}"), *per_second)
                            .map_err(|e| {
                                fail(format!("the shared rate limit of {endpoint}: {e}"))
                            })?,
                    )
                }
                _ => EndpointLimit::Local(RateLimit::per_second(*per_second).ok_or_else(|| {
                    fail(format!("the rate limit of {endpoint} must be above zero"))
                })?),
            };
            limits.insert(*endpoint, limit);
        }
        if let (Some(shared), Some(telemetry)) = (&config.shared_limits, &config.telemetry) {
            shared.register_metrics(telemetry);
        }
        let mut authorization = spec.authorization(&config.token)?;
        let key_header = spec.idempotency_header();
        authorization.set_sensitive(true);
        let cannot = |e| fail("cannot build the http client".into()).with_source(e);
        let http = match config.http {
            Some(http) => Transport::Reqwest(http),
            None => match Transport::builtin(
                &url,
                config.http2_prior_knowledge,
                &config.root_certificates,
                spec.user_agent(),
                config.timeout,
            )
            .map_err(cannot)?
            {
                Some(h2) => Transport::H2(h2),
                None => {
                    // The base is `http://` (or proxied): the roots are read only if a call
                    // goes to an `https://` origin, unless the base is one.
                    let verifier = PlatformVerifier::new(
                        &config.root_certificates,
                        Load::for_base(url.scheme() == "https"),
                        PlatformVerifier::default_provider(),
                    )
                    .map_err(cannot)?;
                    Transport::Reqwest(
                        reqwest_client(spec.user_agent(), config.timeout, &verifier)
                            .map_err(cannot)?,
                    )
                }
            },
        };
        Ok(Self {
            shared: Arc::new(Shared {
                spec,
                http,
                base,
                base_is_origin: url.path().trim_end_matches('/').is_empty()
                    && url.query().is_none(),
                base_url: url,
                server_address,
                authorization,
                key_header,
                retry: config.retry,
                timeout: config.timeout,
                deadline: config.deadline,
                max_retry_after: config.max_retry_after,
                limits,
                shared_limits: config.shared_limits,
                channel: config.channel,
            }),
            telemetry: config.telemetry,
        })
    }

    /// This client recording its calls in `telemetry`, sharing connections and limits with
    /// `self` (what an adapter does once the bot's telemetry exists).
    #[must_use]
    pub fn with_telemetry(&self, telemetry: Telemetry) -> Self {
        if let Some(shared) = &self.shared.shared_limits {
            shared.register_metrics(&telemetry);
        }
        Self {
            shared: self.shared.clone(),
            telemetry: Some(telemetry),
        }
    }

    /// The platform's part.
    pub fn spec(&self) -> &S {
        &self.shared.spec
    }

    /// The platform.
    pub fn platform(&self) -> Platform {
        self.shared.spec.platform()
    }

    /// The base URL calls go to (no trailing `/`).
    pub fn base(&self) -> &str {
        &self.shared.base
    }

    /// The channel label of this client's metrics, if set.
    pub fn channel(&self) -> Option<&str> {
        self.shared.channel.as_deref()
    }

    /// The telemetry calls are recorded in, if any.
    pub fn telemetry(&self) -> Option<&Telemetry> {
        self.telemetry.as_ref()
    }

    /// The rate limits shared across processes, when the client was given them.
    pub fn shared_limits(&self) -> Option<&SharedLimits> {
        self.shared.shared_limits.as_ref()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.shared.retry
    }

    /// When a call made now gives up, by default (on tokio's clock: in a test with paused time,
    /// deadlines pass as the test's time does).
    pub fn deadline_from_now(&self) -> Instant {
        later(now(), self.shared.deadline)
    }

    /// Makes `call`: waits for its rate limits, sends it, and retries what may succeed and is
    /// safe to send again, until the platform accepts it, refuses it for good, or the deadline
    /// passes.
    ///
    /// - A failure is retried only when [`ApiError::is_retryable`] and the call is idempotent or
    ///   the failure cannot have reached the platform (a refused connection, a 429, a 503).
    /// - The wait is the platform's `Retry-After` when it gave one, the policy's back-off
    ///   otherwise; a hint longer than the client waits
    ///   ([`ConfigureApi::max_retry_after`](super::ConfigureApi::max_retry_after)), or one that
    ///   would end past the deadline, fails the call at once carrying the hint, so that the
    ///   runtime retries the handler later instead of one handler holding a slot for minutes.
    /// - No attempt goes out in the last fifth of the call's time (at most its last second): a
    ///   call its rate limits admit later, or a retry that would start then, gives up unsent, or
    ///   with its last failure. An attempt sent with a few milliseconds left would most likely
    ///   time out after going out, which for a call that is not idempotent means "maybe
    ///   delivered"; unsent, it is safe to make again.
    /// - A 2xx whose body cannot be read counts as success (with an empty body) where
    ///   [`Call::answer_optional`] says so (by default, for calls that are not idempotent).
    ///
    /// # Errors
    ///
    /// The last failure, with [`ApiError::attempts`], and [`ApiError::maybe_delivered`] set when
    /// a call that is not idempotent may have taken effect.
    // Not an `async fn`: one keeps its arguments besides the locals it moves them into, and
    // the call (its body, path and key) would be held twice for the seconds of the answer.
    #[allow(clippy::manual_async_fn)] // see above: the `async fn` is what this avoids
    pub fn call(
        &self,
        mut call: Call,
    ) -> impl Future<Output = Result<Answer, ApiError>> + Send + '_ {
        async move {
            let shared = &*self.shared;
            // Checked once; each attempt writes the header from the key (the call keeps it).
            if let (Some(key), Some(_)) = (&call.idempotency_key, &shared.key_header) {
                call.idempotent = true;
                header_value(key)?;
            }
            let (deadline, send_by) = {
                let started = now();
                let deadline = call
                    .deadline
                    .unwrap_or_else(|| later(started, shared.deadline));
                // Past this, an attempt is not sent: it would have too little of the deadline
                // left for an answer, and would most likely fail after going out (for a call
                // that is not idempotent, as maybe delivered) rather than fail cleanly unsent.
                let send_by = deadline
                    .checked_sub(send_reserve(deadline.saturating_duration_since(started)))
                    .unwrap_or(started);
                (deadline, send_by)
            };
            // A call to the base over the built-in transport holds no URL of its own (it went
            // out with every call in flight: 88 bytes, and its text on the heap); the others
            // hold theirs boxed.
            let url = match &shared.http {
                Transport::H2(_)
                    if call.base.is_none() && shared.base_is_origin && plain_path(&call.path) =>
                {
                    None
                }
                _ => Some(Box::new(self.url(&call)?)),
            };
            let mut attempt = 0;
            loop {
                attempt += 1;
                let permit = match self.admit_until(&call, send_by, deadline).await {
                    Some(Ok(permit)) => permit,
                    Some(Err(e)) => {
                        return Err(e
                            .with_attempts(attempt - 1)
                            .with_platform(shared.spec.platform()));
                    }
                    None => return Err(self.deadline_passed(attempt - 1)),
                };
                // Scoped, as the platform below: not held while the answer is awaited.
                let timeout = {
                    let at = now();
                    if at >= send_by {
                        return Err(self.deadline_passed(attempt - 1));
                    }
                    shared.timeout.min(deadline.saturating_duration_since(at))
                };
                // The attempt, in this future rather than one of its own (which would hold
                // the call's references again): only the exchange, the permit and its start
                // time are held while the platform answers.
                let started = Instant::now();
                let exchanged = {
                    let outgoing = Outgoing {
                        method: &call.method,
                        authorization: &shared.authorization,
                        body: call.body.as_ref(),
                        key: match (&shared.key_header, &call.idempotency_key) {
                            (Some(name), Some(key)) => Some((name, key.as_str())),
                            _ => None,
                        },
                    };
                    let destination = match &url {
                        Some(url) => Destination::Url(url),
                        None => Destination::Base(&call.path),
                    };
                    match (&shared.http, destination) {
                        // Boxed: `reqwest`'s future is large, and not the built-in transport's.
                        (Transport::Reqwest(http), Destination::Url(url)) => {
                            Box::pin(reqwest_exchange(http, url, outgoing, timeout)).await
                        }
                        (Transport::H2(h2), destination) => {
                            h2.exchange(destination, outgoing, timeout).await
                        }
                        // Not made: a `reqwest` client's calls always have their URL.
                        (Transport::Reqwest(_), Destination::Base(_)) => {
                            return Err(ApiError::new(
                                ApiErrorKind::InvalidRequest,
                                "the call has no URL",
                            ));
                        }
                    }
                };
                let failure = match self.answered(&call, permit, started, exchanged) {
                    Ok(answer) => return Ok(answer),
                    Err(failure) => failure.with_platform(shared.spec.platform()),
                };
                let platform = shared.spec.platform();
                let maybe_delivered = failure.maybe_delivered() && !call.idempotent;
                let finish = |e: ApiError| {
                    e.with_attempts(attempt)
                        .with_maybe_delivered(maybe_delivered)
                };
                if !failure.is_retryable()
                    || maybe_delivered
                    || attempt >= shared.retry.max_attempts
                {
                    return Err(finish(failure));
                }
                let delay = match failure.retry_after() {
                    Some(hint) if hint > shared.max_retry_after => {
                        tracing::debug!(
                            %platform, endpoint = call.endpoint, error = %failure, ?hint,
                            "api call rate limited for longer than the client waits; giving up"
                        );
                        return Err(finish(failure));
                    }
                    Some(hint) => hint,
                    None => shared.retry.backoff(attempt),
                };
                if later(now(), delay) >= send_by {
                    tracing::debug!(
                        %platform, endpoint = call.endpoint, error = %failure, ?delay,
                        "api call failed; no time left to retry before the deadline"
                    );
                    let hint = failure.retry_after().unwrap_or(delay);
                    return Err(finish(failure).with_retry_after(Some(hint)));
                }
                tracing::debug!(
                    %platform, endpoint = call.endpoint, error = %failure, attempt, ?delay,
                    "api call failed; retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// Where `call` goes: the client's base URL, parsed once, with the call's path and query; a
    /// call to another base ([`Call::base`]), or a path that is not a plain absolute path, is
    /// parsed whole, as `base + path`.
    fn url(&self, call: &Call) -> Result<reqwest::Url, ApiError> {
        let shared = &*self.shared;
        let invalid = || {
            ApiError::new(
                ApiErrorKind::InvalidRequest,
                format!("{}: the call's URL is not valid", shared.spec.platform()),
            )
        };
        let path = call.path.as_str();
        if let Some(base) = call.base.as_deref() {
            return reqwest::Url::parse(&format!("{base}{path}")).map_err(|_| invalid());
        }
        if !path.starts_with('/') || path.contains('#') {
            return reqwest::Url::parse(&format!("{}{path}", shared.base)).map_err(|_| invalid());
        }
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        let mut url = shared.base_url.clone();
        // `base` has no trailing `/`; the parsed URL of a bare host has the path `/`.
        let prefix = url.path().trim_end_matches('/');
        if prefix.is_empty() {
            url.set_path(path);
        } else {
            url.set_path(&format!("{prefix}{path}"));
        }
        url.set_query(query);
        Ok(url)
    }

    fn deadline_passed(&self, attempts: u32) -> ApiError {
        let platform = self.platform();
        ApiError::new(
            ApiErrorKind::Timeout,
            format!("{platform}: the call's deadline passed before it could be sent"),
        )
        .with_attempts(attempts)
        .with_platform(platform)
    }

    /// [`ApiClient::admit`] given up at `send_by` (`None`); the platform's limits are told the
    /// call's `deadline`, against which they may refuse a wait at once with its hint. A timer is
    /// set only when the call has to wait, not for the calls admitted at once.
    async fn admit_until(
        &self,
        call: &Call,
        send_by: Instant,
        deadline: Instant,
    ) -> Option<Result<S::Permit, ApiError>> {
        // On the heap: its state (limiters, timer) is live only while the call waits to go out,
        // and would otherwise enlarge every in-flight call for the seconds its answer takes.
        let mut admit = Box::pin(self.admit(call, deadline));
        if let std::task::Poll::Ready(admitted) = futures::poll!(admit.as_mut()) {
            return Some(admitted);
        }
        tokio::time::timeout_at(send_by.into(), admit).await.ok()
    }

    /// The endpoint's quota, then the platform's own limits; the whole wait is recorded.
    async fn admit(&self, call: &Call, deadline: Instant) -> Result<S::Permit, ApiError> {
        let started = Instant::now();
        match self.shared.limits.get(call.endpoint) {
            // The whole wait, the platform's own included, is recorded below.
            Some(EndpointLimit::Local(limit)) => limit.acquire(&self.platform(), None).await,
            Some(EndpointLimit::Shared(limit)) => limit.acquire().await,
            None => {}
        }
        let permit = self.shared.spec.admit(call, deadline).await?;
        let waited = started.elapsed();
        if waited > Duration::from_millis(1)
            && let Some(t) = &self.telemetry
        {
            t.outbound_ratelimit_wait(&self.platform(), waited);
        }
        Ok(permit)
    }

    /// What an attempt's exchange means: the answer, or the error to retry or return.
    fn answered(
        &self,
        call: &Call,
        permit: S::Permit,
        started: Instant,
        exchanged: Result<super::transport::Exchanged, SendFailure>,
    ) -> Result<Answer, ApiError> {
        let shared = &*self.shared;
        let platform = shared.spec.platform();
        let (status, headers, body) = match exchanged {
            Ok(exchanged) => exchanged,
            Err(SendFailure {
                timeout,
                maybe_delivered,
                source,
            }) => {
                let kind = if timeout {
                    ApiErrorKind::Timeout
                } else {
                    ApiErrorKind::Transport
                };
                self.record(call, None, Some(error_type(kind)), started);
                return Err(
                    ApiError::new(kind, format!("{platform}: the api call failed"))
                        .with_source(source)
                        .with_maybe_delivered(maybe_delivered),
                );
            }
        };
        let body = match body {
            Ok(body) => body,
            Err((_, e))
                if shared.spec.accepted(call, status)
                    && call.answer_optional.unwrap_or(!call.idempotent) =>
            {
                // The platform took the call; only its answer was lost. Sending it again would
                // repeat it (or, a LINE reply, fail on the token it used).
                tracing::warn!(
                    %platform, endpoint = call.endpoint, error = %e,
                    "the api accepted a call but its answer could not be read"
                );
                bytes::Bytes::new()
            }
            Err((timeout, e)) => {
                let kind = if timeout {
                    ApiErrorKind::Timeout
                } else {
                    ApiErrorKind::Transport
                };
                self.record(call, Some(status), Some(error_type(kind)), started);
                return Err(
                    ApiError::new(kind, format!("{platform}: reading the answer failed"))
                        .with_status(status)
                        .with_source(e)
                        .with_maybe_delivered(true),
                );
            }
        };
        let answer = Answer {
            status,
            headers,
            body,
        };
        shared.spec.answered(permit, call, &answer);
        if shared.spec.accepted(call, status) {
            self.record(call, Some(status), None, started);
            return Ok(answer);
        }
        self.record(call, Some(status), Some(status.as_str()), started);
        Err(shared.spec.refusal(call, &answer).with_status(status))
    }

    fn record(
        &self,
        call: &Call,
        status: Option<StatusCode>,
        error_type: Option<&str>,
        started: Instant,
    ) {
        let Some(t) = &self.telemetry else {
            return;
        };
        let platform = self.platform();
        t.outbound_request(
            &platform,
            status.as_ref().map_or("error", StatusCode::as_str),
        );
        t.outbound_call(&OutboundCall {
            platform: &platform,
            endpoint: call.endpoint,
            method: call.method.as_str(),
            server_address: &self.shared.server_address,
            status: status.map(|s| s.as_u16()),
            error_type,
            channel: self.shared.channel.as_deref(),
            duration: started.elapsed(),
        });
    }
}

/// Now on tokio's clock, which deadlines are measured on: the wall clock, except in tests with
/// paused time, where it moves as the test advances it (and so do the time-outs built on it).
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The least share of a call's time that its attempt is sent with: a call its rate limits
/// admit later than this before its deadline gives up unsent ([`ApiErrorKind::Timeout`] with no
/// attempt made), which its caller can retry, or wait again for, safely.
const SEND_RESERVE_SHARE: u32 = 5;

/// [`SEND_RESERVE_SHARE`]'s cap, for long deadlines: a second is enough for an answer.
const MAX_SEND_RESERVE: Duration = Duration::from_secs(1);

/// The time before its deadline after which a call with `budget` in all sends no attempt.
fn send_reserve(budget: Duration) -> Duration {
    (budget / SEND_RESERVE_SHARE).min(MAX_SEND_RESERVE)
}

/// `now + by`, or a time a century away when that overflows (a `Duration::MAX` setting or hint).
fn later(now: Instant, by: Duration) -> Instant {
    now.checked_add(by)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

fn error_type(kind: ApiErrorKind) -> &'static str {
    match kind {
        ApiErrorKind::Timeout => "timeout",
        _ => "transport",
    }
}

/// `value` as a header value.
///
/// # Errors
///
/// [`ApiErrorKind::Config`] when it holds characters a header cannot.
pub fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::try_from(value)
        .map_err(|_| ApiError::config("a token or key is not a valid header value"))
}

/// A stable id of the channel a token belongs to, for shared rate limit keys: the first 16 hex
/// digits of a SHA-256 of the token (under a domain prefix), never the token itself.
fn channel_id(token: &Secret) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(b"botrt.ratelimit.channel\0")
        .chain_update(token.expose().as_bytes())
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_id_is_stable_and_short_and_never_holds_the_token() {
        let token = Secret::new("channel-access-token-0123456789abcdef");
        let id = channel_id(&token);
        assert_eq!(id, channel_id(&Secret::new(token.expose())));
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!id.contains("0123456789abcdef") && !token.expose().contains(&id));
        assert_ne!(id, channel_id(&Secret::new("another-channel's-token")));
    }
}
