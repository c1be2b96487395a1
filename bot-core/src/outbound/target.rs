//! [`Target`]: where an outgoing message goes.

use crate::event::{ChannelId, ConversationId, EventId, MessageId, ReplyToken};

/// Where an outgoing message goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The conversation to post in.
    pub conversation: ConversationId,
    /// The channel to send through (a LINE channel, a Messenger page, a Discord application),
    /// for adapters that serve several; `None` sends through the adapter's default channel. A
    /// handler's sends go through the channel its event came through.
    pub channel: Option<ChannelId>,
    /// The reply token of the event being answered, on platforms that use one.
    pub reply_token: Option<ReplyToken>,
    /// The event being answered, if this is a reply (used as an idempotency key by some clients).
    pub in_reply_to: Option<EventId>,
    /// The message to thread under, if this is a reply.
    pub reply_to_message: Option<MessageId>,
    /// The event whose handler makes this send, replies and sends to other conversations alike
    /// (`None` outside a handler). With `send_index` it names a send the same way when the runtime
    /// retries the handler, so clients derive idempotency keys from it (LINE retry keys, Discord
    /// nonces) that let a retried handler's sends through once.
    pub origin: Option<EventId>,
    /// Which send of the handler this is, from 0, counted per event over replies and sends, so
    /// that two different sends of one handler stay two messages. Taken when the handler calls
    /// `cx.reply(..)` or `cx.send(..)`, not when the send first runs: sends awaited together
    /// (`join!`) keep their numbers on every attempt as long as the handler makes them in the
    /// same order.
    pub send_index: u32,
    /// Messenger's message tag (`ACCOUNT_UPDATE`, `POST_PURCHASE_UPDATE`, ...), which lets a
    /// message the bot starts go out after the 24-hour window; other platforms ignore it.
    pub message_tag: Option<Box<str>>,
}

impl Target {
    /// A message to a conversation, not in reply to anything.
    pub fn conversation(conversation: impl Into<ConversationId>) -> Self {
        Self {
            conversation: conversation.into(),
            channel: None,
            reply_token: None,
            in_reply_to: None,
            reply_to_message: None,
            origin: None,
            send_index: 0,
            message_tag: None,
        }
    }

    /// The same target, sent through `channel`.
    #[must_use]
    pub fn via(mut self, channel: impl Into<ChannelId>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// The same target, with Messenger's message `tag` ([`Target::message_tag`]).
    #[must_use]
    pub fn tagged(mut self, tag: impl Into<Box<str>>) -> Self {
        self.message_tag = Some(tag.into());
        self
    }

    /// Whether this is a reply to an event.
    pub fn is_reply(&self) -> bool {
        self.in_reply_to.is_some()
    }
}
