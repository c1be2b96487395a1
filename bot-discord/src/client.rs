//! [`DiscordClient`]: the [`Outbound`] of Discord events, over [`DiscordHttp`].
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
//! them again after a failure that may hide a delivery ([`Error::maybe_delivered`]), and this
//! client remembers every part it sent (or may have sent) by ([`Target::origin`],
//! [`Target::send_index`], part), for [`SENT_PARTS_TTL`] and at most [`MAX_SENT_PARTS`] of them,
//! so a handler the runtime runs again skips them and sends only what is left. The memory is
//! this process's: a retry in another process, or after a restart, sends them again (channel
//! messages are still deduplicated by their nonce, for the few minutes Discord keeps it).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bot_core::event::ConversationId;
use bot_core::outbound::{OutgoingMessage, SentParts, Target};
use bot_core::{EventId, Outbound, Platform};
use serde_json::{Value, json};

use crate::error::Error;
use crate::http::DiscordHttp;
use crate::interactions::{CHANNEL_MESSAGE, Pending, Route};

pub use crate::render::{MAX_CONTENT_CHARS, bodies};
/// Discord's "interaction has already been acknowledged" error code.
const ALREADY_ACKNOWLEDGED: u64 = 40060;
/// Discord's "unknown webhook" error code.
const UNKNOWN_WEBHOOK: u64 = 10015;
/// Follow-ups tried again after an unknown webhook, and the wait before each.
const FOLLOW_UP_TRIES: u32 = 3;
const FOLLOW_UP_WAIT: Duration = Duration::from_millis(500);
pub use bot_core::outbound::{MAX_SENT_PARTS, SENT_PARTS_TTL};

/// Sends Discord replies. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct DiscordClient {
    http: DiscordHttp,
    application_id: Option<String>,
    pending: Arc<Pending>,
    sent: Arc<SentParts>,
}

impl DiscordClient {
    /// A client over `http`; `application_id` is needed to answer interactions.
    pub fn new(http: DiscordHttp, application_id: Option<String>, pending: Arc<Pending>) -> Self {
        Self {
            http,
            application_id,
            pending,
            sent: Arc::default(),
        }
    }

    /// The REST client, for any other call.
    pub fn http(&self) -> &DiscordHttp {
        &self.http
    }

    /// Posts `messages` in `channel_id`. With `send` (the event answered and the handler's send
    /// index, [`Target::send_index`]) each message carries a nonce derived from them, so posting
    /// the same send again (a retry) creates nothing new.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::create_message`], or [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) for buttons over
    /// Discord's limits.
    pub async fn post(
        &self,
        channel_id: &str,
        messages: &[OutgoingMessage],
        send: Option<(&EventId, u32)>,
        reply_to: Option<&str>,
    ) -> Result<(), Error> {
        let bodies = crate::render::bodies(messages)?;
        if bodies.iter().any(crate::render::is_callback) {
            return Err(Error::new(
                crate::ErrorKind::InvalidRequest,
                "discord: a modal answers an interaction; it cannot be posted in a channel",
            ));
        }
        for (part, mut body) in bodies.into_iter().enumerate() {
            let key = send.map(|(event, send_index)| (event.clone(), send_index, part));
            if key.as_ref().is_some_and(|k| self.sent.contains(k)) {
                // An earlier run of this handler posted this part already.
                continue;
            }
            if let Some((event, send_index)) = send {
                body["nonce"] = json!(nonce(event, send_index, part));
                body["enforce_nonce"] = json!(true);
            }
            if let (Some(message), 0) = (reply_to, part) {
                body["message_reference"] =
                    json!({"message_id": message, "fail_if_not_exists": false});
            }
            self.http.create_message(channel_id, &body).await?;
            if let Some(key) = key {
                self.sent.insert(key);
            }
        }
        Ok(())
    }

    /// Makes call `part` of a send once: skipped when this client sent it already for the same
    /// event and send index; remembered once sent, or once it may have been (then the error stays
    /// retryable, the retried handler skipping this part). Without a key, a part after the first
    /// that fails makes the error permanent: a retry would send the first parts twice.
    async fn once(
        &self,
        send: Option<(&EventId, u32)>,
        part: usize,
        call: impl Future<Output = Result<(), Error>>,
    ) -> Result<(), bot_core::Error> {
        let key = send.map(|(event, send_index)| (event.clone(), send_index, part));
        if let Some(key) = &key
            && self.sent.contains(key)
        {
            tracing::debug!(event = %key.0, send_index = key.1, part, "discord part already sent; skipped on this retry");
            return Ok(());
        }
        match call.await {
            Ok(()) => {
                if let Some(key) = key {
                    self.sent.insert(key);
                }
                Ok(())
            }
            Err(e) if e.maybe_delivered() => {
                let recorded = key.is_some();
                if let Some(key) = key {
                    self.sent.insert(key);
                }
                Err(e.into_core(recorded))
            }
            Err(e) if key.is_none() && part > 0 && e.is_retryable() => {
                Err(bot_core::Error::from(e).permanent())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A follow-up, tried again when Discord does not know the interaction's webhook yet: the
    /// HTTP answer that acknowledged it may still be on its way to Discord.
    async fn follow_up(
        &self,
        application_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<(), Error> {
        let mut tries = 0;
        loop {
            match self.http.create_followup(application_id, token, body).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some(UNKNOWN_WEBHOOK) && tries < FOLLOW_UP_TRIES => {
                    tries += 1;
                    tokio::time::sleep(FOLLOW_UP_WAIT).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn answer_interaction(
        &self,
        interaction_id: &str,
        token: &str,
        messages: &[OutgoingMessage],
        send: Option<(&EventId, u32)>,
    ) -> Result<(), bot_core::Error> {
        let application_id = self.application_id.as_deref().ok_or_else(|| {
            Error::config("discord: DISCORD_APPLICATION_ID is needed to answer interactions")
        })?;
        let mut bodies = crate::render::bodies(messages)?.into_iter();
        let Some(first) = bodies.next() else {
            return Ok(());
        };
        // A modal is a response of its own; anything after it goes out as follow-ups.
        let callback = crate::render::is_callback(&first);
        let response = if callback {
            first.clone()
        } else {
            json!({"type": CHANNEL_MESSAGE, "data": first})
        };
        if callback && bodies.as_slice().iter().any(crate::render::is_callback) {
            return Err(Error::new(
                crate::ErrorKind::InvalidRequest,
                "discord: an interaction takes one modal, as its first response",
            )
            .into());
        }
        let respond = async {
            match self.pending.route(interaction_id, response.clone()) {
                Route::Answered => Ok(()),
                Route::FollowUp if callback => Err(Error::new(
                    crate::ErrorKind::InvalidRequest,
                    "discord: a modal must be the first response; this interaction was deferred",
                )),
                Route::FollowUp => self.follow_up(application_id, token, &first).await,
                Route::Callback => match self
                    .http
                    .interaction_callback(interaction_id, token, &response)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) if e.code() == Some(ALREADY_ACKNOWLEDGED) => {
                        self.follow_up(application_id, token, &first).await
                    }
                    Err(e) => Err(e),
                },
            }
        };
        self.once(send, 0, respond).await?;
        for (part, body) in bodies.enumerate() {
            self.once(send, part + 1, self.follow_up(application_id, token, &body))
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Outbound for DiscordClient {
    fn platform(&self) -> Platform {
        Platform::DISCORD
    }

    async fn send(
        &self,
        target: &Target,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), bot_core::Error> {
        if messages.iter().any(OutgoingMessage::is_typing) {
            self.typing(&target.conversation).await?;
        }
        match (&target.reply_token, &target.in_reply_to) {
            (Some(token), Some(interaction)) => {
                self.answer_interaction(
                    interaction.as_str(),
                    token.expose(),
                    &messages,
                    target.origin.as_ref().map(|e| (e, target.send_index)),
                )
                .await?;
            }
            _ => {
                self.post(
                    target.conversation.as_str(),
                    &messages,
                    target.origin.as_ref().map(|e| (e, target.send_index)),
                    target.reply_to_message.as_ref().map(|m| m.as_str()),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// `POST /channels/{id}/typing`.
    async fn typing(&self, conversation: &ConversationId) -> Result<(), bot_core::Error> {
        self.http
            .request(
                http::Method::POST,
                &format!("/channels/{conversation}/typing"),
                None,
            )
            .await?;
        Ok(())
    }
}

/// A nonce for part `part` of the `send_index`-th send for `event`: 25 characters at most, as
/// Discord allows.
fn nonce(event: &EventId, send_index: u32, part: usize) -> String {
    // SHA-256, not `DefaultHasher`: the nonce must be the same in every process and every build
    // that retries this send, or Discord cannot recognise the retry.
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(event.as_str().as_bytes());
    hasher.update(send_index.to_le_bytes());
    hasher.update((part as u64).to_le_bytes());
    let mut nonce = hex::encode(hasher.finalize());
    nonce.truncate(25);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;
    /// SHA-256 of the event id, send index 0 and part 0, hex, first 25 characters.
    const NONCE_OF_FIRST_PART: &str = "049653412f6b5f1cb631f59a5";

    #[test]
    fn nonces_are_short_and_stable_per_event_and_part() {
        let e = EventId::new("1180000000000000000");
        assert_eq!(nonce(&e, 0, 0), nonce(&e, 0, 0));
        assert_ne!(nonce(&e, 0, 0), nonce(&e, 0, 1));
        assert_ne!(nonce(&e, 0, 0), nonce(&e, 1, 0));
        assert!(nonce(&e, 7, 12).len() <= 25);
        // Fixed across builds and processes: a retry elsewhere carries the same nonce.
        assert_eq!(nonce(&e, 0, 0), NONCE_OF_FIRST_PART);
    }
}
