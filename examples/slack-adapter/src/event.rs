//! Slack's Events API JSON, and its mapping to core [`Event`]s.

use bot_core::event::Other;
use bot_core::{Event, EventKind, Platform};
use serde::Deserialize;
use serde_json::Value;

// ANCHOR: platform
/// The platform's name on every event and in every metric.
pub const PLATFORM: Platform = Platform::from_static("slack");
// ANCHOR_END: platform

/// What Slack posts to the events URL; unknown fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Envelope {
    /// Sent once when the URL is entered in the app's settings.
    UrlVerification {
        /// What to answer.
        challenge: String,
    },
    /// One event.
    EventCallback {
        /// Unique per event; Slack's retries repeat it.
        event_id: String,
        /// The event itself, kept raw: its shape depends on its type.
        event: Value,
    },
    /// Anything else Slack may add.
    #[serde(other)]
    Other,
}

/// The fields of a `message` or `app_mention` event the mapping reads.
#[derive(Debug, Deserialize)]
struct MessageEvent {
    channel: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    subtype: Option<String>,
}

// ANCHOR: to_events
/// The core events of one `event_callback`: a message or mention becomes a text message in its
/// channel; messages from bots (this one included) and edits are skipped, so the bot never
/// answers itself; any other type arrives as [`EventKind::Other`] with the raw JSON.
pub fn to_events(event_id: &str, event: &Value) -> Vec<Event> {
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let mapped = match kind {
        "message" | "app_mention" => {
            let Ok(message) = serde_json::from_value::<MessageEvent>(event.clone()) else {
                return Vec::new();
            };
            if message.bot_id.is_some() || message.subtype.is_some() {
                return Vec::new();
            }
            let text = message.text.unwrap_or_default();
            let mut mapped = Event::text(PLATFORM, message.channel, text);
            if let Some(user) = message.user {
                mapped = mapped.with_sender(user);
            }
            mapped
        }
        other => {
            let channel = event.get("channel").and_then(Value::as_str).unwrap_or("");
            Event::new(
                PLATFORM,
                channel,
                EventKind::Other(Other {
                    name: other.to_owned(),
                }),
            )
        }
    };
    vec![mapped.with_id(event_id).with_raw(event.clone())]
}
// ANCHOR_END: to_events

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_message_is_text_in_its_channel_from_its_user() {
        let events = to_events(
            "Ev1",
            &json!({"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "1.2", "extra": true}),
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].text_content(), Some("hi"));
        assert_eq!(events[0].conversation.as_str(), "C1");
        assert_eq!(events[0].id.as_str(), "Ev1");
    }

    #[test]
    fn bot_messages_and_edits_are_skipped_and_other_types_kept() {
        assert!(
            to_events(
                "Ev2",
                &json!({"type": "message", "channel": "C1", "bot_id": "B1", "text": "echo"})
            )
            .is_empty()
        );
        assert!(
            to_events(
                "Ev3",
                &json!({"type": "message", "subtype": "message_changed", "channel": "C1"})
            )
            .is_empty()
        );
        let events = to_events("Ev4", &json!({"type": "reaction_added", "channel": "C1"}));
        assert_eq!(events[0].kind.name(), "reaction_added");
    }

    #[test]
    fn unknown_envelopes_parse() {
        let parsed: Envelope =
            serde_json::from_value(json!({"type": "app_rate_limited", "minute_rate_limited": 1}))
                .unwrap();
        assert!(matches!(parsed, Envelope::Other));
    }
}
