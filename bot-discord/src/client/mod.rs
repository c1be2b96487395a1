//! [`DiscordClient`]: the [`Outbound`](bot_core::Outbound) of Discord events, over [`DiscordHttp`].
//!
//! A reply to a message posts in its channel; a reply to an interaction (slash command, button,
//! modal) becomes the interaction's response: the HTTP response itself when the handler answers
//! within the endpoint's deadline, a follow-up after a deferral, or the callback endpoint when
//! the interaction is unknown to this process (gateway-delivered, or received by another one).
//!
//! `OutgoingMessage`s map to `content` (split at 2,000 characters, on a line break when there is
//! one), an image embed, and buttons in action rows (5 per row, 5 rows): postback buttons and
//! quick replies carry their data as `custom_id`, link buttons their URL. Messages created in a
//! channel carry a `nonce` derived from the event, the handler's send index and the part (with
//! `enforce_nonce`), so neither the client's retries nor the runtime's retries of a handler post
//! a message twice, while two sends of one handler are two messages.
//!
//! Interaction responses and follow-ups have no idempotency key: the REST client does not send
//! them again after a failure that may hide a delivery ([`Error::maybe_delivered`](crate::Error::maybe_delivered)), and this
//! client remembers every part it sent (or may have sent) by ([`Target::origin`](bot_core::outbound::Target::origin),
//! [`Target::send_index`](bot_core::outbound::Target::send_index), part), for [`SENT_PARTS_TTL`] and at most [`MAX_SENT_PARTS`] of them,
//! so a handler the runtime runs again skips them and sends only what is left. The memory is
//! this process's: a retry in another process, or after a restart, sends them again (channel
//! messages are still deduplicated by their nonce, for the few minutes Discord keeps it).

mod dm;
mod interaction;
mod outbound;
mod post;

use std::sync::Arc;

use bot_core::api::SentKeys;
use bot_core::outbound::PartKey;

use crate::http::DiscordHttp;
use crate::interactions::Pending;

pub use crate::render::{MAX_CONTENT_CHARS, bodies, validate};
pub use bot_core::outbound::{MAX_SENT_PARTS, SENT_PARTS_TTL};
pub use dm::dm;

/// Sends Discord replies. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct DiscordClient {
    http: DiscordHttp,
    application_id: Option<String>,
    pending: Arc<Pending>,
    sent: Arc<SentKeys<PartKey>>,
    dms: Arc<dm::DmChannels>,
}

impl DiscordClient {
    /// A client over `http`; `application_id` is needed to answer interactions.
    pub fn new(http: DiscordHttp, application_id: Option<String>, pending: Arc<Pending>) -> Self {
        Self {
            http,
            application_id,
            pending,
            sent: Arc::default(),
            dms: Arc::default(),
        }
    }

    /// The same client recording its calls in `telemetry` (the adapter's, once the bot has
    /// one); it shares this one's memory of sent parts.
    #[must_use]
    pub fn with_telemetry(&self, telemetry: bot_core::Telemetry) -> Self {
        Self {
            http: self.http.with_telemetry(telemetry),
            ..self.clone()
        }
    }

    /// The id of the application this client answers for, when the adapter was told it.
    pub fn application_id(&self) -> Option<&str> {
        self.application_id.as_deref()
    }

    /// The REST client, for any other call.
    pub fn http(&self) -> &DiscordHttp {
        &self.http
    }
}

impl bot_core::outbound::Instrumented for DiscordClient {
    fn with_telemetry(&self, telemetry: bot_core::Telemetry) -> Self {
        DiscordClient::with_telemetry(self, telemetry)
    }
}
