//! [`WebChatClient`]: the bot's side of web chat, the [`Outbound`] that pushes replies to every
//! open socket of a user.

use std::sync::Arc;

use async_trait::async_trait;
use bot_core::outbound::{OutgoingMessage, Target, render_send};
use bot_core::{ConversationId, EventId, Outbound, Platform};
use serde_json::value::RawValue;

use crate::error::Error;
use crate::fanout::{Envelope, Fanout};
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
    fanout: Option<Arc<dyn Fanout>>,
    /// The cluster that numbers and keeps the messages, when the history is in PostgreSQL.
    #[cfg(feature = "postgres")]
    history: Option<crate::pg::PgCluster>,
}

impl WebChatClient {
    pub(crate) fn new(
        hub: Arc<Hub>,
        fanout: Option<Arc<dyn Fanout>>,
        #[cfg(feature = "postgres")] history: Option<crate::pg::PgCluster>,
    ) -> Self {
        Self {
            hub,
            fanout,
            #[cfg(feature = "postgres")]
            history,
        }
    }

    /// Sends `messages` to `user`: to the user's sockets on this node, then, with a
    /// [`Fanout`], to the other nodes. The [`Delivery`] counts this node's sockets.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Invalid`] when `user` is not a valid user id or a message cannot be
    /// shown in web chat (nothing is sent then); [`crate::ErrorKind::Database`] when the
    /// fan-out failed (this node's sockets have the messages; a retry does not show them twice
    /// when it comes from the same handler send). With the history in PostgreSQL
    /// (`WebChatBuilder::cluster`, feature `postgres`), only when the messages could not be
    /// stored within the write time-out: then they reached no socket, unless the store
    /// committed late (a retry of the same handler send then delivers them once). There the
    /// send returns once the messages are stored and queued for this node's sockets; the other
    /// nodes get them right after (a failed publish is counted, and they read the messages
    /// from the history when a later number shows the hole, when they listen again, or at
    /// their next catch-up, within `PgClusterBuilder::history_catch_up_interval`).
    pub async fn send_to(
        &self,
        user: &str,
        messages: &[OutgoingMessage],
    ) -> Result<Delivery, Error> {
        self.send_inner(user, messages, None).await
    }

    /// Shows the typing indicator to `user` on every node; how many sockets it reached here.
    ///
    /// # Errors
    ///
    /// As [`WebChatClient::send_to`].
    pub async fn typing_to(&self, user: &str) -> Result<usize, Error> {
        let reached = self.hub.typing(user);
        self.publish(user, true, Vec::new(), None).await?;
        Ok(reached)
    }

    /// How many sockets `user` has open on this node.
    pub fn sockets_of(&self, user: &str) -> usize {
        self.hub.sockets_of(user)
    }

    /// The users with an open socket on this node, each with how many.
    pub fn online(&self) -> Vec<(String, usize)> {
        self.hub.online()
    }

    async fn send_inner(
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
        let json: Vec<Box<RawValue>> = wire.iter().map(to_json).collect();
        #[cfg(feature = "postgres")]
        if let Some(history) = &self.history {
            if typing {
                self.publish(user, true, Vec::new(), None).await?;
            }
            if json.is_empty() {
                return Ok(Delivery {
                    seqs: Vec::new(),
                    sockets: self.hub.sockets_of(user),
                });
            }
            // Numbered and kept in PostgreSQL, then delivered on every node by the writer.
            return (history.send(user, json, origin, &self.hub, self.fanout.as_deref())).await;
        }
        let delivery = if json.is_empty() {
            Delivery {
                seqs: Vec::new(),
                sockets: self.hub.sockets_of(user),
            }
        } else {
            let messages: Vec<&str> = json.iter().map(|m| m.get()).collect();
            self.hub.deliver(user, &messages, origin.clone())
        };
        self.publish(user, typing, json, origin).await?;
        Ok(delivery)
    }

    async fn publish(
        &self,
        user: &str,
        typing: bool,
        messages: Vec<Box<RawValue>>,
        origin: Option<(EventId, u32)>,
    ) -> Result<(), Error> {
        let Some(fanout) = &self.fanout else {
            return Ok(());
        };
        let envelope = Envelope {
            node: fanout.node().to_owned(),
            user: user.to_owned(),
            messages,
            typing,
            origin: origin.map(|(id, index)| (id.as_str().to_owned(), index)),
            seqs: Vec::new(),
            ids: Vec::new(),
            at: None,
        };
        fanout.publish(&envelope).await
    }
}

fn to_json(message: &WireMessage) -> Box<RawValue> {
    serde_json::value::to_raw_value(message).expect("wire messages serialise")
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
        self.send_inner(target.conversation.as_str(), &messages, origin)
            .await?;
        Ok(())
    }

    async fn typing(&self, conversation: &ConversationId) -> Result<(), bot_core::Error> {
        self.typing_to(conversation.as_str()).await?;
        Ok(())
    }
}
