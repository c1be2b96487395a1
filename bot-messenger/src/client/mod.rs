//! The Send API client: messages, sender actions, user profiles, the page's setup (Messenger
//! profile, webhook subscription), and the [`bot_core::Outbound`] of Messenger events. Built on
//! the client core [`bot_core::api::ApiClient`]; this crate adds only Meta's side
//! ([`GraphApi`]) and its calls.
//!
//! - **Authentication**: the page access token goes in an `Authorization: Bearer` header, which
//!   the Graph API accepts like the `access_token` query parameter; unlike the query, it never
//!   shows up in URLs, proxy logs or error messages.
//! - **Rate limits**: per-endpoint quotas at Messenger's published per-page limits by default
//!   ([`RateLimits`]: 300 sends a second, 10 for audio, video and file attachments, 100 profile
//!   reads), so refusals are rare; time spent waiting is recorded as
//!   `bot.outbound.ratelimit.wait`.
//! - **Refusals** are read by Graph code first, then by status ([`GraphApi`]): rate limits
//!   (HTTP 429, Graph codes 4, 17, 32, 613, and the Business Use Case codes 80001 pages, 80002
//!   Instagram, 80006 Messenger; without `Retry-After`, the `estimated_time_to_regain_access`
//!   minutes of `X-Business-Use-Case-Usage` are the hint), a bad token (190,
//!   [`crate::ErrorKind::Authentication`]), no such user (100/2018001), outside the 24-hour
//!   window (10/2018278), person unavailable (551), temporary errors (1, 2, 1200). Meta's
//!   [`GraphError`](crate::model::send::GraphError) is the error's
//!   [`details`](crate::Error::details); code and subcode are also
//!   [`crate::Error::code`] and [`crate::Error::subcode`].
//! - **Retries** (the core's: back-off with jitter, `Retry-After` honoured up to
//!   `max_retry_after`) only where a retry cannot send a message twice: rate limits, the server
//!   errors that say nothing was sent (503, Graph codes 2 and 1200) and connections refused
//!   before the request went out. Other server errors (500, a 502 or 504 from a gateway that may
//!   have passed the message on, Graph code 1) may hide a sent message: a message is not resent
//!   after them and counts as possibly delivered ([`crate::Error::maybe_delivered`]), like a
//!   time-out or a connection broken after the request was written. A 2xx whose answer cannot
//!   be read is a sent message without its id. Sender actions, profile and setup reads are
//!   idempotent and retried on time-outs too.
//! - **Deadline**: a call, its retries and rate-limit waits included, ends after the client's
//!   deadline (20 s by default, [`bot_core::api::ConfigureApi::deadline`]), and so does a reply
//!   with all its parts. No retry starts that could not end in time; a `Retry-After` longer than
//!   the time left (or than `max_retry_after`) ends the call at once with the hint, for the
//!   runtime to wait.
//! - **Replies** ([`bot_core::Outbound::send`] for a handled event) go out with
//!   `messaging_type: RESPONSE`; messages that answer no event with `UPDATE`;
//!   [`MessengerClient::send_message`] takes any
//!   [`MessagingType`](crate::model::send::MessagingType), including `MESSAGE_TAG` with its tag.
//! - **No idempotency key**: the Send API has none, so a reply of several messages (a long text
//!   split in parts, an image and a template) goes out one call at a time. The client remembers
//!   the parts it sent for a handler (replies and sends to other conversations alike), by
//!   ([`Target::origin`](bot_core::outbound::Target::origin),
//!   [`Target::send_index`](bot_core::outbound::Target::send_index), part), for
//!   [`SENT_PARTS_TTL`] and at most [`MAX_SENT_PARTS`] of them: when a later part fails and the
//!   runtime retries the handler, the parts that went out already are skipped, not sent again.
//!   A part that may have been delivered is remembered too, and its error stays retryable, so a
//!   retried handler sends only the parts after it. The memory is this process's: a retry
//!   handled by another instance, or after a restart, sends them again. Sends that answer no
//!   event ([`Target::conversation`](bot_core::outbound::Target::conversation)) have no such
//!   key: when a later part of one fails after earlier parts went out, the error is permanent,
//!   so that no retry sends those parts twice.
//!
//! The rooms: `builder.rs` (the client, its builder and rate limits), `spec.rs` (Meta's
//! refusals), `messages.rs` (Send API), `users.rs` (profiles), `setup.rs` (Messenger profile
//! and webhook subscription), `outbound.rs` (replies).

mod builder;
mod messages;
mod outbound;
mod setup;
mod spec;
mod users;

pub use bot_core::api::{ConfigureApi, DEFAULT_DEADLINE, DEFAULT_TIMEOUT, default_retry_policy};
pub use bot_core::outbound::{MAX_SENT_PARTS, SENT_PARTS_TTL};
pub use builder::{DEFAULT_API_BASE, MessengerClient, MessengerClientBuilder, RateLimits};
pub use messages::SEND_PATH;
pub use setup::{MESSENGER_PROFILE_PATH, SUBSCRIBED_APPS_PATH};
pub use spec::{BUSINESS_USE_CASE_USAGE, GraphApi};
pub use users::PROFILE_FIELDS;

pub use crate::render::{to_messenger_messages, validate};
