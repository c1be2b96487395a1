//! The [`Outbound`] of Messenger events: replies of several messages under one deadline, and the
//! parts that went out remembered so that a retried handler skips them.

use async_trait::async_trait;
use bot_core::event::ConversationId;
use bot_core::outbound::{OutgoingMessage, Target};
use bot_core::{Outbound, Platform};

use super::builder::MessengerClient;
use crate::model::send::{MessagingType, Recipient, SenderAction};

#[async_trait]
impl Outbound for MessengerClient {
    fn platform(&self) -> Platform {
        Platform::MESSENGER
    }

    /// Sends each message to the conversation's PSID, with `messaging_type: RESPONSE` when
    /// answering an event and `UPDATE` otherwise, one call at a time under one deadline.
    async fn send(
        &self,
        target: &Target,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), bot_core::Error> {
        let (typing, mapped) = crate::render::render_send(&messages)?;
        if typing {
            self.typing(&target.conversation).await?; // alone, as sender actions must be, and first
        }
        let recipient = Recipient::for_conversation(target.conversation.as_str());
        let deadline = self.api.deadline_from_now();
        let messaging_type = if target.is_reply() {
            MessagingType::Response
        } else {
            MessagingType::Update
        };
        for (part, message) in mapped.iter().enumerate() {
            let key = target
                .origin
                .as_ref()
                .map(|event| (event.clone(), target.send_index, part));
            if let Some(key) = &key
                && self.sent.contains(key)
            {
                // An earlier attempt of this handler sent this part already.
                tracing::debug!(
                    event = %key.0, send_index = key.1, part,
                    "messenger part already sent; skipped on this retry"
                );
                continue;
            }
            match self
                .send_message_until(&recipient, message, &messaging_type, deadline)
                .await
            {
                Ok(_) => {
                    if let Some(key) = key {
                        self.sent.insert(key);
                    }
                }
                Err(e) if e.maybe_delivered() => {
                    // The part may be out: remember it as sent, so that a retry of the handler
                    // skips it (at most once) and sends only the parts after it.
                    let recorded = key.is_some();
                    if let Some(key) = key {
                        self.sent.insert(key);
                    }
                    return Err(e.into_core(recorded));
                }
                Err(e) if key.is_none() && part > 0 && e.is_retryable() => {
                    // Not a reply: nothing remembers the parts before this one, which went out,
                    // so a retried handler would send them again. At most once: permanent.
                    return Err(bot_core::Error::from(e).permanent());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `typing_on`, shown until the next message or for 20 seconds.
    async fn typing(&self, conversation: &ConversationId) -> Result<(), bot_core::Error> {
        let recipient = Recipient::for_conversation(conversation.as_str());
        Ok(self
            .sender_action(&recipient, SenderAction::TypingOn)
            .await?)
    }
}
