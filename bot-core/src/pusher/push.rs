//! [`Push`]: the message a pusher started with [`PusherBuilder::start_outbound`] sends.

use crate::outbound::{OutgoingMessage, Target};

/// A message to push through [`Outbound::send`](crate::outbound::Outbound::send): a pusher started
/// with [`PusherBuilder::start_outbound`](crate::pusher::PusherBuilder::start_outbound) takes
/// these.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// Where to send (a conversation, usually without a reply token).
    pub target: Target,
    /// What to send.
    pub messages: Vec<OutgoingMessage>,
}

impl Push {
    /// `message` to `conversation`.
    pub fn new(
        conversation: impl Into<crate::event::ConversationId>,
        message: impl Into<OutgoingMessage>,
    ) -> Self {
        Self {
            target: Target::conversation(conversation),
            messages: vec![message.into()],
        }
    }
}
