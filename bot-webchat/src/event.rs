//! Mapping browser frames to core [`Event`]s.
//!
//! The conversation and the sender are the user id from the join token; the event id is made of
//! the user id and the browser's id of the message, so that a message the widget sends again
//! after a reconnect (it had no ack yet) is handled once. The frame itself is the event's raw
//! payload.

use bot_core::event::{Other, Postback};
use bot_core::{Event, EventKind, Message};
use serde_json::value::RawValue;

use crate::protocol::Inbound;
use crate::render::PLATFORM;

/// A frame that becomes an event, and the id its ack carries (none for read receipts and
/// typing, which are not acknowledged).
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) event: Event,
    pub(crate) ack: Option<String>,
}

/// The event of `inbound` (the frame `frame` of `user`), or `None` for frames that are not
/// events (heartbeats, joins, typing unless `deliver_typing`).
pub(crate) fn map(
    user: &str,
    frame: &str,
    inbound: Inbound,
    deliver_typing: bool,
) -> Option<Mapped> {
    let (kind, id, acked) = match inbound {
        Inbound::Message { id, text } => (EventKind::Message(Message::text(text)), id, true),
        Inbound::Postback { id, data } => (
            EventKind::Postback(Postback {
                data,
                params: serde_json::Value::Null,
            }),
            id,
            true,
        ),
        Inbound::Read { .. } => (other("read"), None, false),
        Inbound::Typing if deliver_typing => (other("typing"), None, false),
        Inbound::Other { name, id } => {
            let acked = id.is_some();
            (other(&name), id, acked)
        }
        Inbound::Typing | Inbound::Heartbeat | Inbound::Join { .. } => return None,
    };
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let mut kind = kind;
    if let EventKind::Message(message) = &mut kind {
        message.id = Some(id.as_str().into());
    }
    // The user id's length first: no two (user, id) pairs make the same event id.
    let event_id = format!("{}:{user}:{id}", user.len());
    let mut event = Event::from_platform(PLATFORM, event_id, user, kind).with_sender(user);
    if let Ok(raw) = RawValue::from_string(frame.to_owned()) {
        event = event.with_raw_json(raw);
    }
    Some(Mapped {
        event,
        ack: acked.then_some(id),
    })
}

fn other(name: &str) -> EventKind {
    EventKind::Other(Other {
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(frame: &str) -> Option<Mapped> {
        map("u:1", frame, Inbound::parse(frame).unwrap(), false)
    }

    #[test]
    fn a_message_becomes_a_message_event_of_the_user() {
        let frame = r#"{"type":"message","id":"c1","text":"hi"}"#;
        let m = mapped(frame).unwrap();
        assert_eq!(m.ack.as_deref(), Some("c1"));
        assert_eq!(m.event.platform, PLATFORM);
        assert_eq!(m.event.id.as_str(), "3:u:1:c1");
        assert_eq!(m.event.conversation.as_str(), "u:1");
        assert_eq!(m.event.sender.as_ref().unwrap().as_str(), "u:1");
        assert_eq!(m.event.text_content(), Some("hi"));
        assert_eq!(m.event.raw()["id"], "c1");
    }

    #[test]
    fn postbacks_reads_typing_and_unknown_types() {
        let m = mapped(r#"{"type":"postback","data":"order=1"}"#).unwrap();
        assert!(matches!(&m.event.kind, EventKind::Postback(p) if p.data == "order=1"));
        assert!(m.ack.is_some(), "an id is made for the ack");
        let m = mapped(r#"{"type":"read","seq":4}"#).unwrap();
        assert_eq!(m.event.kind.name(), "read");
        assert_eq!(m.event.raw()["seq"], 4);
        assert!(m.ack.is_none());
        assert!(mapped(r#"{"type":"typing"}"#).is_none());
        let typing = r#"{"type":"typing"}"#;
        assert!(map("u", typing, Inbound::parse(typing).unwrap(), true).is_some());
        assert!(mapped(r#"{"type":"heartbeat"}"#).is_none());
        let m = mapped(r#"{"type":"location","id":"l1","lat":1.5}"#).unwrap();
        assert_eq!(m.event.kind.name(), "location");
        assert_eq!(m.ack.as_deref(), Some("l1"));
    }
}
