//! [`DispatchContext`]: what mapping a dispatch needs to know about its shard.

use bot_core::EventData;
use bot_core::event::{ChannelId, EventId};

/// What mapping a dispatch needs to know about the shard.
///
/// Fields are added as the mapping needs them: start from [`DispatchContext::default`] and set
/// those you know.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DispatchContext {
    /// The bot's own user id (from READY).
    pub bot_user_id: Option<String>,
    /// The session (from READY): with a dispatch's sequence, the id of events that have no id
    /// of their own, the same when a resume replays them.
    pub session_id: Option<String>,
    /// Whether messages by bots are delivered.
    pub deliver_bot_messages: bool,
    /// The application the shard serves, when the adapter was told it: its events carry it as
    /// their [`Event::channel`](bot_core::EventData::channel), and are answered through its client.
    pub channel: Option<ChannelId>,
    /// Whether event ids are prefixed with [`DispatchContext::channel`] (`<application>:<id>`):
    /// set when one bot serves several applications, since two of them in one guild see the
    /// same message under the same snowflake, and the runtime would drop the second as a
    /// duplicate. Interactions keep their own id (theirs is one application's, and answering
    /// needs it).
    pub scoped_ids: bool,
}

impl DispatchContext {
    /// `event` with the shard's channel, and its id scoped to it when asked.
    pub(crate) fn stamp(&self, mut event: EventData) -> EventData {
        let Some(channel) = &self.channel else {
            return event;
        };
        if self.scoped_ids && event.reply_token.is_none() {
            event.id = EventId::new(format!("{channel}:{}", event.id));
        }
        event.channel = Some(channel.clone());
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{from_dispatch, from_interaction};
    use serde_json::json;

    #[test]
    fn events_carry_the_application_and_scoped_ids_never_collide() {
        let message = json!({"id": "1180000000000000000", "channel_id": "c1",
            "author": {"id": "7"}, "content": "hi"});
        let of = |app: &str, scoped| DispatchContext {
            channel: Some(ChannelId::new(app)),
            scoped_ids: scoped,
            ..DispatchContext::default()
        };
        let a = from_dispatch("MESSAGE_CREATE", message.clone(), Some(1), &of("A", true)).unwrap();
        let b = from_dispatch("MESSAGE_CREATE", message.clone(), Some(1), &of("B", true)).unwrap();
        assert_eq!(a.channel, Some(ChannelId::new("A")));
        assert_eq!(b.channel, Some(ChannelId::new("B")));
        assert_ne!(a.id, b.id, "two bots seeing one message are two events");
        assert_eq!(a.id.as_str(), "A:1180000000000000000");
        assert_eq!(
            a.message().and_then(|m| m.id.clone()).unwrap().as_str(),
            "1180000000000000000",
            "replies still point at Discord's message"
        );

        let single = from_dispatch("MESSAGE_CREATE", message, Some(1), &of("A", false)).unwrap();
        assert_eq!(single.id.as_str(), "1180000000000000000");
        assert_eq!(single.channel, Some(ChannelId::new("A")));

        let interaction = json!({"id": "1300000000000000001", "application_id": "A", "type": 2,
            "token": "t", "channel_id": "c1", "data": {"name": "ping"}});
        let via_gateway = from_dispatch(
            "INTERACTION_CREATE",
            interaction.clone(),
            Some(2),
            &of("A", true),
        )
        .unwrap();
        assert_eq!(
            via_gateway.id,
            from_interaction(&interaction).unwrap().id,
            "an interaction keeps its id: answering it needs it"
        );
        assert_eq!(via_gateway.channel, Some(ChannelId::new("A")));
    }
}
