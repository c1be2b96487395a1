//! [`WebChatClient`]: the bot's side of web chat, the [`Outbound`] that pushes replies to every
//! open socket of a user.

use std::sync::Arc;

use async_trait::async_trait;
use bot_core::outbound::{OutgoingMessage, Target, render_send};
use bot_core::{ConversationId, EventId, Outbound, Platform};

use crate::error::Error;
use crate::hub::{Delivery, Hub};
use crate::render::{PLATFORM, WireMessage, render};

/// Sends the bot's messages to web chat users: to every socket the user has open on this node,
/// and into the user's history, so that a browser that reconnects gets what it missed.
///
/// A user with no open socket still gets a history (kept for the resume window), so a
/// proactive message reaches them when they come back within it.
///
/// Cloning is cheap.
#[derive(Debug, Clone)]
pub struct WebChatClient {
    hub: Arc<Hub>,
}

impl WebChatClient {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Sends `messages` to `user`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Invalid`] when `user` is not a valid user id or a message cannot be
    /// shown in web chat (nothing is sent then).
    pub async fn send_to(
        &self,
        user: &str,
        messages: &[OutgoingMessage],
    ) -> Result<Delivery, Error> {
        self.send_inner(user, messages, None)
    }

    /// Shows the typing indicator to `user`; how many sockets it reached.
    pub fn typing_to(&self, user: &str) -> usize {
        self.hub.typing(user)
    }

    /// How many sockets `user` has open on this node.
    pub fn sockets_of(&self, user: &str) -> usize {
        self.hub.sockets_of(user)
    }

    /// The users with an open socket on this node, each with how many.
    pub fn online(&self) -> Vec<(String, usize)> {
        self.hub.online()
    }

    fn send_inner(
        &self,
        user: &str,
        messages: &[OutgoingMessage],
        origin: Option<(EventId, u32)>,
    ) -> Result<Delivery, Error> {
        crate::token::check_user_id(user)?;
        let (typing, wire) = render_send(messages, render)?;
        if typing {
            self.hub.typing(user);
        }
        if wire.is_empty() {
            return Ok(Delivery {
                seqs: Vec::new(),
                sockets: self.hub.sockets_of(user),
            });
        }
        let json: Vec<String> = wire.iter().map(to_json).collect();
        Ok(self.hub.deliver(user, &json, origin))
    }
}

fn to_json(message: &WireMessage) -> String {
    serde_json::to_string(message).expect("wire messages serialise")
}

#[async_trait]
impl Outbound for WebChatClient {
    fn platform(&self) -> Platform {
        PLATFORM
    }

    /// Sends to the user whose conversation `target` names (in web chat the conversation is the
    /// user). A handler retried after it sent is not shown the same send twice.
    async fn send(
        &self,
        target: &Target,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), bot_core::Error> {
        let origin = target.origin.clone().map(|o| (o, target.send_index));
        self.send_inner(target.conversation.as_str(), &messages, origin)?;
        Ok(())
    }

    async fn typing(&self, conversation: &ConversationId) -> Result<(), bot_core::Error> {
        self.hub.typing(conversation.as_str());
        Ok(())
    }
}
