//! The HTTP client core every adapter's API client is built on.
//!
//! One [`ApiClient`] holds what all platforms share: the base URL and token, per-endpoint rate
//! limits, one retry loop with back-off and jitter, one deadline per call (retries and rate-limit
//! waits included), `Retry-After` honoured up to a cap, time-outs and transport failures mapped,
//! "maybe delivered" semantics for calls the platform cannot deduplicate, idempotency keys, and
//! telemetry (`bot.outbound.requests`, `bot.outbound.ratelimit.wait`, and OpenTelemetry's
//! `http.client.request.duration`). An adapter adds only its [`ApiSpec`]: who it is, how its
//! refusals read, its idempotency header, and its own rate-limit buckets if it has them.
//! [`ApiError`] is the one error of every client; [`SentKeys`] the bounded memory of sends a
//! retried handler must not repeat, and of those in flight that a concurrent attempt of the same
//! handler waits for ([`send_once`]).
//!
//! | | LINE | Messenger | Discord |
//! | --- | --- | --- | --- |
//! | idempotency | `X-Line-Retry-Key` on push and multicast | none (sends remembered) | `nonce` with `enforce_nonce` |
//! | rate limits | per endpoint | per endpoint | global + buckets learned from headers |
//! | maybe delivered | time-out, broken connection, 5xx but 503 | the same, Graph codes 2 and 1200 excepted | the same |
//!
//! # Transport
//!
//! | the client is given | base `https://` | base `http://` |
//! | --- | --- | --- |
//! | nothing | built-in HTTP/2 (ALPN `h2`, `http/1.1`); a server that picks HTTP/1.1 is served by a `reqwest` client built once for it | `reqwest`, HTTP/1.1 |
//! | [`ConfigureApi::http2_prior_knowledge`] | built-in HTTP/2 | built-in HTTP/2 without TLS (h2c) |
//! | a `reqwest::Client` ([`ConfigureApi::http_client`]) | that client | that client |
//! | nothing, with a proxy variable for the base's scheme set | `reqwest` (`HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`, `all_proxy`; `NO_PROXY` applied by it) | `reqwest` (`HTTP_PROXY`, `http_proxy`, `ALL_PROXY`, `all_proxy`) |
//!
//! The built-in transport (on the `h2` crate, TLS by rustls with the platform's roots and those of
//! [`ConfigureApi::add_root_certificate`]) keeps one connection per origin and client, shared by
//! the client's clones and replaced when the server ends it; calls past the server's stream limit
//! queue on it. A request is built once per attempt and sent on one stream, with no redirect or
//! retry layer and no task per request. A stream the server refused unprocessed
//! (`REFUSED_STREAM`, a GOAWAY below it, whatever its code) fails the attempt as a retryable
//! [`ApiErrorKind::Transport`] that was not delivered, so the retry loop sends it again.
//!
//! The platform's root certificates are read as the client is built when its base is
//! `https://`, and only at the first certificate checked when it is `http://` (a client that
//! never opens a TLS connection never reads them: about 20 ms and 0.3 MiB spared); the client's
//! TLS connections, HTTP/2 and HTTP/1.1, share them.

mod call;
mod client;
mod config;
mod deadlines;
mod dispatch;
mod error;
mod send_once;
mod sent;
mod tls;
mod transport;

pub use call::{Answer, Call};
pub use client::{ApiClient, ApiSpec, header_value};
pub use config::{
    ApiConfig, BuildClient, ConfigureApi, DEFAULT_DEADLINE, DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_TIMEOUT, default_retry_policy,
};
pub use dispatch::Dispatch;
pub use error::{ApiError, ApiErrorKind, ErrorDetails};
pub use send_once::send_once;
pub use sent::{KeyState, Mark, SentKeys};
