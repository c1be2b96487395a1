//! [`OutboxMessage`]: what to send to whom, and [`Queued`]: what a send to the outbox did.

use serde::{Deserialize, Serialize};

use super::OUTBOX_EVENT;
use crate::error::Error;
use crate::event::{ChannelId, ConversationId, Event, EventKind, Platform, Raw};
use crate::outbound::{OutgoingMessage, Target};

/// Longest idempotency key accepted, in bytes.
pub(super) const MAX_KEY_BYTES: usize = 512;
/// Longest campaign name accepted, in bytes.
pub(super) const MAX_CAMPAIGN_BYTES: usize = 200;

/// A proactive message for the outbox: one or more messages to one conversation (a user, a
/// group, a channel) on one platform.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct OutboxMessage {
    pub(super) platform: Platform,
    pub(super) to: ConversationId,
    pub(super) channel: Option<ChannelId>,
    pub(super) messages: Vec<OutgoingMessage>,
    pub(super) key: Option<String>,
    pub(super) message_tag: Option<String>,
}

impl OutboxMessage {
    /// `message` to `to` on `platform` (a LINE user id, a Messenger PSID, a Discord channel id,
    /// a web chat user), through the platform's default channel.
    pub fn new(
        platform: Platform,
        to: impl Into<ConversationId>,
        message: impl Into<OutgoingMessage>,
    ) -> Self {
        Self {
            platform,
            to: to.into(),
            channel: None,
            messages: vec![message.into()],
            key: None,
            message_tag: None,
        }
    }

    /// Adds a message after the others (sent in order, as one send).
    pub fn and(mut self, message: impl Into<OutgoingMessage>) -> Self {
        self.messages.push(message.into());
        self
    }

    /// Sends through `channel` (a LINE channel, a Messenger page, a Discord application) of an
    /// adapter that serves several.
    pub fn via(mut self, channel: impl Into<ChannelId>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// The idempotency key: a second message with the key of one queued (or sent) within the
    /// outbox's key retention is not queued again. Derive it from your own id (an order number,
    /// a reminder's id). Without one, [`super::Outbox::send`] makes a fresh key (no
    /// deduplication) and [`super::Outbox::send_many`] derives one from the campaign and the
    /// recipient.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Messenger's message tag (`ACCOUNT_UPDATE`, `POST_PURCHASE_UPDATE`, `CONFIRMED_EVENT_UPDATE`,
    /// `HUMAN_AGENT`), which lets the message go out after the 24-hour window; without one a
    /// Messenger message goes as `UPDATE`. Other platforms ignore it.
    pub fn message_tag(mut self, tag: impl Into<String>) -> Self {
        self.message_tag = Some(tag.into());
        self
    }

    /// The platform.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The recipient.
    pub fn to(&self) -> &ConversationId {
        &self.to
    }

    /// The messages.
    pub fn messages(&self) -> &[OutgoingMessage] {
        &self.messages
    }

    /// The key, from [`OutboxMessage::key`], the campaign and recipient, or fresh.
    pub(super) fn resolve_key(&self, campaign: Option<&str>) -> String {
        if let Some(key) = &self.key {
            return key.clone();
        }
        match campaign {
            Some(campaign) => format!(
                "{campaign}/{}/{}",
                self.channel.as_ref().map_or("", |c| c.as_str()),
                self.to
            ),
            None => uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The event that waits in the outbox's queue for this message.
    pub(super) fn into_event(self, campaign: Option<&str>) -> Result<Event, Error> {
        if self.messages.is_empty() {
            return Err(Error::config("outbox: a message needs at least one part").permanent());
        }
        if self.to.as_str().is_empty() {
            return Err(Error::config("outbox: the recipient is empty").permanent());
        }
        let key = self.resolve_key(campaign);
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(
                Error::config(format!("outbox: a key must be 1 to {MAX_KEY_BYTES} bytes"))
                    .permanent(),
            );
        }
        let payload = Payload {
            campaign: campaign.map(str::to_owned),
            message_tag: self.message_tag,
            messages: self.messages,
        };
        let raw = serde_json::to_value(&payload)
            .map_err(|e| Error::config("outbox: the message does not serialise").with_source(e))?;
        let mut event = Event::from_platform(
            self.platform,
            key,
            self.to,
            EventKind::Other(crate::event::Other {
                name: OUTBOX_EVENT.to_owned(),
            }),
        );
        event.channel = self.channel;
        event.raw = Raw::new(raw);
        Ok(event)
    }
}

/// What an outbox message carries in its queued event's payload.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Payload {
    /// The campaign it belongs to, if any ([`super::Outbox::cancel`] finds it by this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) campaign: Option<String>,
    /// Messenger's message tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) message_tag: Option<String>,
    pub(super) messages: Vec<OutgoingMessage>,
}

impl Payload {
    /// The payload of a queued outbox event, and where it goes: the event's id names the send,
    /// so that the platform clients derive their idempotency keys from it.
    pub(super) fn of(event: &Event) -> Result<(Target, Vec<OutgoingMessage>), Error> {
        let payload: Payload = serde_json::from_str(event.raw.json()).map_err(|e| {
            Error::config("outbox: a queued message does not parse")
                .with_source(e)
                .permanent()
        })?;
        let mut target = Target::conversation(event.conversation.clone());
        target.channel = event.channel.clone();
        // In a namespace of its own, so that a key equal to an inbound event's id (a natural
        // "once per event" key) never names the same send as that event's handler.
        target.origin = Some(crate::event::EventId::new(format!("outbox/{}", event.id)));
        target.send_index = 0;
        target.message_tag = payload.message_tag.map(String::into_boxed_str);
        Ok((target, payload.messages))
    }
}

/// What a send to the outbox did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Queued {
    /// Messages committed to the outbox.
    pub queued: usize,
    /// Messages whose key was queued before (within the key retention): not queued again.
    pub duplicates: usize,
    /// Messages dropped because the outbox was full ([`crate::Overflow::DropNewest`]).
    pub dropped_newest: usize,
    /// Older waiting messages evicted to make room ([`crate::Overflow::DropOldest`]).
    pub evicted_oldest: usize,
}

impl Queued {
    pub(super) fn add(&mut self, other: Queued) {
        self.queued += other.queued;
        self.duplicates += other.duplicates;
        self.dropped_newest += other.dropped_newest;
        self.evicted_oldest += other.evicted_oldest;
    }
}
