//! The [`Outbound`] of Messenger events: replies of several messages under one deadline, and the
//! parts that went out remembered so that a retried handler skips them.

use async_trait::async_trait;
use bot_core::api::send_once;
use bot_core::event::ConversationId;
use bot_core::outbound::{OutgoingMessage, Target};
use bot_core::{Outbound, Platform};

use super::builder::MessengerClient;
use crate::model::send::{MessageTag, MessagingType, Recipient, SenderAction};

#[async_trait]
impl Outbound for MessengerClient {
    fn platform(&self) -> Platform {
        Platform::MESSENGER
    }

    /// Sends each message to the conversation's PSID, with `messaging_type: RESPONSE` when
    /// answering an event, `MESSAGE_TAG` with the target's [`Target::message_tag`] when it has
    /// one, and `UPDATE` otherwise, one call at a time under one deadline that covers the typing
    /// indicator too.
    async fn send(
        &self,
        target: &Target,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), bot_core::Error> {
        let (typing, mapped) = crate::render::render_send(&messages)?;
        // One deadline for the whole send, the typing indicator included.
        let deadline = self.api.deadline_from_now();
        let recipient = Recipient::for_conversation(target.conversation.as_str());
        if typing {
            // Alone, as sender actions must be, and first.
            (self.sender_action_until(&recipient, SenderAction::TypingOn, deadline)).await?;
        }
        let messaging_type = if target.is_reply() {
            MessagingType::Response
        } else if let Some(tag) = &target.message_tag {
            MessagingType::MessageTag(MessageTag::parse(tag))
        } else {
            MessagingType::Update
        };
        for (part, message) in mapped.iter().enumerate() {
            let key = target
                .origin
                .as_ref()
                .map(|event| (event.clone(), target.send_index, part));
            let call = self.send_message_until(&recipient, message, &messaging_type, deadline);
            send_once(&self.sent, key, part, deadline, async {
                call.await.map(drop)
            })
            .await?;
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
