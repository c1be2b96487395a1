//! [`Outbound`] for [`DiscordClient`]: an interaction's answer, or a message in the channel.

use async_trait::async_trait;
use bot_core::event::ConversationId;
use bot_core::outbound::{OutgoingMessage, Target};
use bot_core::{Outbound, Platform};

use super::DiscordClient;

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
                let channel = self.channel_of(target.conversation.as_str()).await?;
                self.post(
                    &channel,
                    &messages,
                    target.origin.as_ref().map(|e| (e, target.send_index)),
                    target.reply_to_message.as_ref().map(|m| m.as_str()),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// `POST /channels/{id}/typing` (in the user's DM channel for a [`super::dm`] conversation).
    async fn typing(&self, conversation: &ConversationId) -> Result<(), bot_core::Error> {
        let channel = self.channel_of(conversation.as_str()).await?;
        self.http.trigger_typing(&channel).await?;
        Ok(())
    }
}

impl DiscordClient {
    /// The channel a conversation posts in: itself, or for `@<user>` the user's DM channel.
    async fn channel_of<'a>(
        &self,
        conversation: &'a str,
    ) -> Result<std::borrow::Cow<'a, str>, crate::Error> {
        Ok(match super::dm::dm_user(conversation) {
            Some(user) => std::borrow::Cow::Owned(self.dm_channel(user).await?),
            None => std::borrow::Cow::Borrowed(conversation),
        })
    }
}
