//! The Messaging API client: reply, push, multicast, profile, content, loading animation, the
//! calls a bot sets itself up with (rich menus, the webhook endpoint), and the
//! [`Outbound`](bot_core::Outbound) of LINE events, on the client core
//! ([`bot_core::api::ApiClient`]).
//!
//! - **Rate limits**: a quota per endpoint, at LINE's published per-channel limits by default
//!   ([`RateLimits`]), so 429s are rare; time spent waiting is recorded as
//!   `bot.outbound.ratelimit.wait`.
//! - **Retries and deadline**: 429 (rate limit), 5xx, time-outs and connection failures are
//!   retried with back-off and jitter ([`ConfigureApi::retry`]) within one deadline per call
//!   ([`ConfigureApi::deadline`]; a reply and its pushes share one). A 429 for the monthly quota
//!   is not retried ([`ErrorKind::QuotaExceeded`]); other 4xx are not retried.
//! - **No double sends**: push and multicast carry `X-Line-Retry-Key`, the same on every retry,
//!   and a 409 answer (the key was accepted before) counts as success. Pushes made for a reply
//!   derive the key from the event id, so a handler retried by the runtime does not send twice
//!   either. A reply token is single-use, so a retried reply can never be delivered twice.
//! - **Reply to push fallback** (opt-in, [`LineClientBuilder::push_fallback`]): when LINE refuses
//!   a reply token on the first attempt (expired after a backlog, or used), the messages are
//!   pushed instead; never when an earlier attempt may have used the token. Push counts against
//!   the message quota, so it is off by default.
//! - **Errors** are the core's [`Error`]: LINE's body with
//!   `error.details::<`[`model::send::ApiError`](crate::model::send::ApiError)`>()`, its
//!   `X-Line-Request-Id` with [`Error::request_id`].
//!
//! [`ErrorKind::QuotaExceeded`]: crate::ErrorKind::QuotaExceeded
//! [`Error`]: crate::Error
//! [`Error::request_id`]: crate::Error::request_id

mod builder;
mod channel;
mod chat;
mod message;
mod outbound;
mod rich_menu;
mod spec;

pub use bot_core::api::{ConfigureApi, DEFAULT_DEADLINE, DEFAULT_TIMEOUT, default_retry_policy};

pub use builder::{
    DEFAULT_API_BASE, DEFAULT_DATA_API_BASE, LineClient, LineClientBuilder, RateLimits,
};
pub use chat::Content;
pub use message::RetryKey;
pub use spec::{ACCEPTED_REQUEST_ID_HEADER, LineSpec, REQUEST_ID_HEADER, RETRY_KEY_HEADER};

pub use crate::render::{to_line_messages, validate};
