//! From LINE webhook events to core [`Event`]s, and back to the typed LINE event.
//!
//! | LINE `type` | core [`EventKind`] | conversation |
//! | --- | --- | --- |
//! | `message` | `Message` (text, mentions, quote; media, file, location and sticker as attachments) | group, room or user |
//! | `messageEdited` | `Edited` | group, room or user |
//! | `unsend` | `Deleted` | group, room or user |
//! | `follow` / `unfollow` | `Followed` / `Unfollowed` | user |
//! | `join` / `leave` | `MemberJoined` / `MemberLeft` with no users (the bot itself) | group or room |
//! | `memberJoined` / `memberLeft` | `MemberJoined` / `MemberLeft` with the users | group or room |
//! | `postback` | `Postback` with `params` | group, room or user |
//! | anything else (`beacon`, `accountLink`, `videoPlayComplete`, `things`, `membership`, `module`, `activated`, `deactivated`, `botSuspended`, `botResumed`, `delivery`, unknown types) | `Other { name: <type> }` | the source's chat, else the bot (`destination`) |
//!
//! The event id is `webhookEventId` (so a redelivery is recognised as the same event),
//! `deliveryContext.isRedelivery` sets [`Event::redelivered`], `timestamp` sets
//! [`Event::occurred_at`], and the reply token is kept. The whole LINE event stays in
//! [`Event::raw`]; [`LineEventExt::line_event`] parses it back into a [`WebhookEvent`].

use std::borrow::Cow;

use bot_core::event::Raw;
use bot_core::event::content_id;
use bot_core::event::{
    Attachment, AttachmentKind, Deleted, Members, Mention, Message, MessageId, Other, Postback,
    ReplyToken, Timestamp, UserId,
};
use bot_core::{Event, EventId, EventKind, Platform};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::model::{
    self, ContentProvider, ContentProviderType, MessageContent, Source, WebhookEvent,
};

/// Typed access to the LINE event behind a core [`Event`].
pub trait LineEventExt {
    /// The LINE webhook event this event was made from; `None` for events of other platforms.
    ///
    /// # Errors
    ///
    /// Fails when the raw payload is not a LINE event the model can read (only for events that
    /// were delivered as `Other` because they could not be parsed).
    fn line_event(&self) -> Option<Result<WebhookEvent, serde_json::Error>>;
}

impl LineEventExt for Event {
    fn line_event(&self) -> Option<Result<WebhookEvent, serde_json::Error>> {
        (self.platform == Platform::LINE).then(|| WebhookEvent::from_json(self.raw.json()))
    }
}

#[derive(Deserialize)]
struct WireBody<'a> {
    #[serde(default, borrow)]
    destination: Cow<'a, str>,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// Parses a webhook body into core events, one per element of `events[]`, in order.
///
/// An event the model cannot read (an unknown type, or a known type missing fields) is still
/// delivered, as `EventKind::Other` with its raw JSON: one odd event never costs the others.
/// Each event keeps its JSON text as [`Event::raw`]; no JSON tree is built. The body is copied
/// once; [`events_from_bytes`] shares a body already in [`Bytes`].
///
/// # Errors
///
/// Fails when the body is not JSON or has no `events` array.
pub fn events_from_body(body: &[u8]) -> Result<Vec<Event>, serde_json::Error> {
    events_from_bytes(&Bytes::copy_from_slice(body))
}

/// As [`events_from_body`], from the body as received: each event's [`Event::raw`] and its long
/// ids are slices of `body` (which they keep alive), not copies.
///
/// # Errors
///
/// Fails when the body is not JSON or has no `events` array.
pub fn events_from_bytes(body: &Bytes) -> Result<Vec<Event>, serde_json::Error> {
    parse_body(body, true).map(|(events, _)| events)
}

/// As [`events_from_bytes`]; without `keep_standby`, leaves out the events in standby mode and
/// counts them.
pub(crate) fn parse_body(
    body: &Bytes,
    keep_standby: bool,
) -> Result<(Vec<Event>, usize), serde_json::Error> {
    let wire: WireBody<'_> = serde_json::from_slice(body)?;
    let mut events = Vec::with_capacity(wire.events.len());
    let mut standby = 0;
    for raw in wire.events {
        let (event, is_standby) = from_json(body, &wire.destination, raw.get());
        if is_standby && !keep_standby {
            standby += 1;
        } else {
            events.push(event);
        }
    }
    Ok((events, standby))
}

/// Maps one raw LINE event (an element of `events[]`) to a core event.
pub fn to_core_event(destination: &str, raw: Value) -> Event {
    let Ok(text) = serde_json::to_string(&raw) else {
        return unreadable(destination, &raw, "unknown");
    };
    let body = Bytes::from(text);
    match std::str::from_utf8(&body) {
        Ok(json) => from_json(&body, destination, json).0,
        Err(_) => unreadable(destination, &raw, "unknown"),
    }
}

/// Maps one event's JSON text, a slice of `body`; also says whether it came in standby mode.
fn from_json(body: &Bytes, destination: &str, json: &str) -> (Event, bool) {
    let (mut event, standby) = match fast::event(body, destination, json) {
        Some(mapped) => mapped,
        None => general(destination, json),
    };
    event.raw = Raw::from_shared(body, json);
    (event, standby)
}

/// Any event, through the typed model.
fn general(destination: &str, json: &str) -> (Event, bool) {
    match WebhookEvent::from_json(json) {
        Ok(event) => (map(destination, &event, json), event.is_standby()),
        Err(error) => {
            let raw: Value = serde_json::from_str(json)
                .unwrap_or_else(|_| serde_json::json!({ "unreadable": json }));
            let event_type = raw.get("type").and_then(Value::as_str).unwrap_or("unknown");
            // The message may quote the event's content: log its category only.
            tracing::warn!(
                category = ?error.classify(),
                event_type,
                "line event not understood; delivered as other"
            );
            let standby = raw.get("mode").and_then(Value::as_str) == Some("standby");
            (unreadable(destination, &raw, event_type), standby)
        }
    }
}

/// The id of an event whose `webhookEventId` is missing or empty: its fingerprint.
fn id_of_payload(json: &str) -> EventId {
    match serde_json::from_str::<Value>(json) {
        Ok(raw) => fingerprint(&raw),
        // Read as JSON but not as a tree (too deep): the text itself, so that distinct
        // events never share an id.
        Err(_) => content_id(&Value::String(json.to_owned())),
    }
}

fn map(destination: &str, line: &WebhookEvent, json: &str) -> Event {
    let chat = line
        .source
        .as_ref()
        .and_then(Source::chat_id)
        .unwrap_or(destination);
    let kind = match &line.kind {
        model::EventKind::Message(content) => EventKind::Message(message(content)),
        model::EventKind::MessageEdited(content) => EventKind::Edited(message(content)),
        model::EventKind::Unsend(unsend) => EventKind::Deleted(Deleted {
            message_id: MessageId::new(&unsend.message_id),
        }),
        model::EventKind::Follow(_) => EventKind::Followed,
        model::EventKind::Unfollow => EventKind::Unfollowed,
        model::EventKind::Join => EventKind::MemberJoined(Members::default()),
        model::EventKind::Leave => EventKind::MemberLeft(Members::default()),
        model::EventKind::MemberJoined(m) => EventKind::MemberJoined(members(m)),
        model::EventKind::MemberLeft(m) => EventKind::MemberLeft(members(m)),
        model::EventKind::Postback(p) => EventKind::Postback(Postback {
            data: p.data.clone(),
            params: postback_params(json),
        }),
        _ => other(&line.event_type),
    };
    // An empty id counts as missing: events with `"webhookEventId": ""` must not share one.
    let id = match line.webhook_event_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => EventId::new(id),
        None => id_of_payload(json),
    };
    let mut event = Event::from_platform(Platform::LINE, id, chat, kind);
    if let Some(user) = line.source.as_ref().and_then(Source::user_id) {
        event.sender = Some(UserId::new(user));
    }
    event.reply_token = line.reply_token.as_deref().map(ReplyToken::new);
    event.occurred_at = Timestamp::from_millis(line.timestamp);
    event.redelivered = line.delivery_context.is_redelivery;
    event
}

/// An event whose payload the model could not read: delivered as `Other` with what can be
/// salvaged from the raw JSON.
fn unreadable(destination: &str, raw: &Value, event_type: &str) -> Event {
    let source = raw.get("source");
    let text = |value: Option<&Value>, key: &str| {
        value
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let chat = text(source, "groupId")
        .or_else(|| text(source, "roomId"))
        .or_else(|| text(source, "userId"))
        .unwrap_or_else(|| destination.to_owned());
    let id = text(Some(raw), "webhookEventId").map_or_else(|| fingerprint(raw), EventId::from);
    let mut event = Event::from_platform(Platform::LINE, id, chat, other(event_type));
    event.sender = text(source, "userId").map(UserId::from);
    event.occurred_at =
        Timestamp::from_millis(raw.get("timestamp").and_then(Value::as_i64).unwrap_or(0));
    event.redelivered = raw
        .pointer("/deliveryContext/isRedelivery")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    event
}

/// `postback.params` as JSON (`null` when absent).
fn postback_params(json: &str) -> Value {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(default)]
        postback: Option<WirePostback>,
    }
    #[derive(Deserialize)]
    struct WirePostback {
        #[serde(default)]
        params: Value,
    }
    serde_json::from_str::<Wire>(json)
        .ok()
        .and_then(|w| w.postback)
        .map_or(Value::Null, |p| p.params)
}

fn other(event_type: &str) -> EventKind {
    EventKind::Other(Other {
        name: event_type.to_owned(),
    })
}

/// A stable id for old payloads without `webhookEventId`: a hash of the event without its
/// delivery context, so that a redelivery hashes the same.
fn fingerprint(raw: &Value) -> EventId {
    let mut stripped = raw.clone();
    if let Value::Object(map) = &mut stripped {
        map.remove("deliveryContext");
    }
    content_id(&stripped)
}

fn members(m: &model::Members) -> Members {
    Members {
        users: m.members.iter().map(|u| UserId::new(&u.user_id)).collect(),
    }
}

fn message(content: &MessageContent) -> Message {
    let mut out = Message {
        id: content.id().map(MessageId::new),
        ..Message::default()
    };
    match content {
        MessageContent::Text(t) => {
            out.text = Some(t.text.clone());
            out.reply_to = t.quoted_message_id.as_deref().map(MessageId::new);
            if let Some(mention) = &t.mention {
                out.mentions = mention
                    .mentionees
                    .iter()
                    .filter_map(|m| {
                        Some(Mention {
                            user: UserId::new(m.user_id.as_deref()?),
                            index: Some(m.index),
                            length: Some(m.length),
                        })
                    })
                    .collect();
            }
        }
        MessageContent::Image(m) => {
            out.attachments = vec![media(AttachmentKind::Image, &m.id, &m.content_provider)];
        }
        MessageContent::Video(m) => {
            out.attachments = vec![media(AttachmentKind::Video, &m.id, &m.content_provider)];
        }
        MessageContent::Audio(m) => {
            out.attachments = vec![media(AttachmentKind::Audio, &m.id, &m.content_provider)];
        }
        MessageContent::File(f) => {
            let mut a = attachment(AttachmentKind::File, &f.id);
            a.name = Some(f.file_name.clone());
            a.size = Some(f.file_size);
            out.attachments = vec![a];
        }
        MessageContent::Location(l) => {
            let mut a = attachment(AttachmentKind::Location, &l.id);
            // RFC 5870 geo URI: the platform-neutral way to carry the coordinates.
            a.url = Some(format!("geo:{},{}", l.latitude, l.longitude));
            a.name = l.title.clone().or_else(|| l.address.clone());
            out.attachments = vec![a];
        }
        MessageContent::Sticker(s) => {
            let mut a = attachment(AttachmentKind::Sticker, &s.sticker_id);
            a.name = s.keywords.first().cloned();
            out.text = s.text.clone();
            out.reply_to = s.quoted_message_id.as_deref().map(MessageId::new);
            out.attachments = vec![a];
        }
        _ => {}
    }
    out
}

fn attachment(kind: AttachmentKind, id: &str) -> Attachment {
    Attachment {
        kind,
        url: None,
        id: Some(id.to_owned()),
        name: None,
        mime_type: None,
        size: None,
    }
}

fn media(kind: AttachmentKind, id: &str, provider: &ContentProvider) -> Attachment {
    let mut a = attachment(kind, id);
    if provider.provider_type == ContentProviderType::External {
        a.url.clone_from(&provider.original_content_url);
    }
    a
}

/// The hot case read in one pass into borrowed fields: a `message` or `messageEdited` event
/// whose message is text. `None` sends the event down the general path (the typed model), which
/// decides everything else: this path accepts only events that one accepts, and maps them alike.
mod fast {
    use std::borrow::Cow;

    use bot_core::event::{Mention, Message, MessageId, ReplyToken, Timestamp, UserId};
    use bot_core::{Event, EventId, EventKind, Platform};
    use bytes::Bytes;
    use serde::Deserialize;
    use serde_json::value::RawValue;

    use crate::model::DeliveryContext;

    /// `Option<Cow<str>>` borrowed where the text has no escapes (serde's own `Option<Cow>` always
    /// copies).
    fn borrowed<'de: 'a, 'a, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Cow<'a, str>>, D::Error> {
        #[derive(Deserialize)]
        struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
        Ok(Option::<Text<'a>>::deserialize(d)?.map(|text| text.0))
    }

    /// The fields of `WebhookEvent`'s own wire type, borrowed; the payloads of other types are
    /// declared too, so that a duplicate key fails here as it fails there.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code, reason = "some fields are read to be checked, not used")]
    struct WireEvent<'a> {
        #[serde(rename = "type", borrow)]
        event_type: Cow<'a, str>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        mode: Option<Cow<'a, str>>,
        #[serde(default)]
        timestamp: i64,
        #[serde(default, borrow)]
        source: Option<WireSource<'a>>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        webhook_event_id: Option<Cow<'a, str>>,
        #[serde(default)]
        delivery_context: DeliveryContext,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        reply_token: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        message: Option<&'a RawValue>,
        #[serde(borrow, default)]
        unsend: Option<&'a RawValue>,
        #[serde(borrow, default)]
        follow: Option<&'a RawValue>,
        #[serde(borrow, default)]
        joined: Option<&'a RawValue>,
        #[serde(borrow, default)]
        left: Option<&'a RawValue>,
        #[serde(borrow, default)]
        postback: Option<&'a RawValue>,
        #[serde(borrow, default)]
        video_play_complete: Option<&'a RawValue>,
        #[serde(borrow, default)]
        beacon: Option<&'a RawValue>,
        #[serde(borrow, default)]
        link: Option<&'a RawValue>,
        #[serde(borrow, default)]
        things: Option<&'a RawValue>,
        #[serde(borrow, default)]
        membership: Option<&'a RawValue>,
        #[serde(borrow, default)]
        module: Option<&'a RawValue>,
        #[serde(borrow, default)]
        delivery: Option<&'a RawValue>,
    }

    /// `model::Source`'s wire fields; its rules are applied in [`source`].
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct WireSource<'a> {
        #[serde(rename = "type", default, borrow)]
        source_type: Cow<'a, str>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        user_id: Option<Cow<'a, str>>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        group_id: Option<Cow<'a, str>>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        room_id: Option<Cow<'a, str>>,
    }

    /// `model::TextMessage`'s fields, borrowed, and the `type` it is chosen by.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code, reason = "some fields are read to be checked, not used")]
    struct WireText<'a> {
        #[serde(rename = "type", borrow)]
        message_type: Cow<'a, str>,
        #[serde(borrow)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        text: Cow<'a, str>,
        #[serde(default, borrow)]
        emojis: Vec<WireEmoji<'a>>,
        #[serde(default, borrow)]
        mention: Option<WireMention<'a>>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        quote_token: Option<Cow<'a, str>>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        quoted_message_id: Option<Cow<'a, str>>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        mark_as_read_token: Option<Cow<'a, str>>,
    }

    /// Read only to be refused where `model::Emoji` would be.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code, reason = "read to be checked, not used")]
    struct WireEmoji<'a> {
        index: usize,
        length: usize,
        #[serde(borrow)]
        product_id: Cow<'a, str>,
        #[serde(borrow)]
        emoji_id: Cow<'a, str>,
    }

    #[derive(Deserialize)]
    struct WireMention<'a> {
        #[serde(borrow)]
        mentionees: Vec<WireMentionee<'a>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code, reason = "some fields are read to be checked, not used")]
    struct WireMentionee<'a> {
        index: usize,
        length: usize,
        /// Read as `model::MentioneeType` is: any string, `null` refused.
        #[serde(rename = "type", default, borrow)]
        mentionee_type: Cow<'a, str>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        user_id: Option<Cow<'a, str>>,
        #[serde(default)]
        is_self: Option<bool>,
    }

    /// The event, and whether it came in standby mode; `None` when the general path decides.
    pub(super) fn event(body: &Bytes, destination: &str, json: &str) -> Option<(Event, bool)> {
        let wire: WireEvent<'_> = serde_json::from_str(json).ok()?;
        let edited = match &*wire.event_type {
            "message" => false,
            "messageEdited" => true,
            _ => return None,
        };
        let message = wire.message?.get();
        // An array would be read by position: leave anything but an object to the model.
        if !message.starts_with('{') {
            return None;
        }
        let text: WireText<'_> = serde_json::from_str(message).ok()?;
        if text.message_type != "text" {
            return None;
        }
        let (chat, sender) = match &wire.source {
            None => (None, None),
            Some(source) => source_ids(source)?,
        };
        let message = Message {
            id: Some(MessageId::from_shared(body, &text.id)),
            text: Some(text.text.into_owned()),
            reply_to: text
                .quoted_message_id
                .as_ref()
                .map(|id| MessageId::from_shared(body, id)),
            mentions: text
                .mention
                .map(|mention| {
                    mention
                        .mentionees
                        .iter()
                        .filter_map(|m| {
                            Some(Mention {
                                user: UserId::from_shared(body, m.user_id.as_deref()?),
                                index: Some(m.index),
                                length: Some(m.length),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            ..Message::default()
        };
        let kind = if edited {
            EventKind::Edited(message)
        } else {
            EventKind::Message(message)
        };
        let id = match wire.webhook_event_id.as_ref().filter(|id| !id.is_empty()) {
            Some(id) => EventId::from_shared(body, id),
            None => super::id_of_payload(json),
        };
        let chat = chat.map_or(destination, |c| c);
        let mut event = Event::from_platform(
            Platform::LINE,
            id,
            bot_core::ConversationId::from_shared(body, chat),
            kind,
        );
        event.sender = sender.map(|user| UserId::from_shared(body, user));
        event.reply_token = wire
            .reply_token
            .as_ref()
            .map(|token| ReplyToken::from_shared(body, token));
        event.occurred_at = Timestamp::from_millis(wire.timestamp);
        event.redelivered = wire.delivery_context.is_redelivery;
        Some((event, wire.mode.as_deref() == Some("standby")))
    }

    /// The chat and the sender, by `model::Source`'s rules; `None` where it refuses the source.
    fn source_ids<'s>(source: &'s WireSource<'_>) -> Option<(Option<&'s str>, Option<&'s str>)> {
        let user = source.user_id.as_deref();
        Some(match &*source.source_type {
            "user" => (Some(user?), user),
            "group" => (Some(source.group_id.as_deref()?), user),
            "room" => (Some(source.room_id.as_deref()?), user),
            _ => (user, user),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_with_an_empty_webhook_event_id_get_distinct_ids() {
        let event = |text: &str| {
            json!({"type": "message", "mode": "active", "timestamp": 1, "webhookEventId": "",
                "source": {"type": "user", "userId": "U1"}, "replyToken": "rt",
                "message": {"type": "text", "id": "m", "text": text}})
        };
        let body = json!({"destination": "Ubot", "events": [event("a"), event("b")]});
        let events = events_from_body(body.to_string().as_bytes()).unwrap();
        assert!(!events[0].id.as_str().is_empty());
        assert_ne!(
            events[0].id, events[1].id,
            "one dedup key would drop the second"
        );
    }

    #[test]
    fn a_text_message_maps_with_every_core_field() {
        let events = events_from_body(
            json!({"destination": "Ubot", "events": [{
                "type": "message", "mode": "active", "timestamp": 1_700_000_000_000_i64,
                "source": {"type": "group", "groupId": "G1", "userId": "U1"},
                "webhookEventId": "01HX", "deliveryContext": {"isRedelivery": true},
                "replyToken": "rt-1",
                "message": {"type": "text", "id": "m1", "text": "@bot hi", "quotedMessageId": "m0",
                    "mention": {"mentionees": [{"index": 0, "length": 4, "type": "user", "userId": "Ubot", "isSelf": true},
                                               {"index": 0, "length": 4, "type": "all"}]}}
            }]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let e = &events[0];
        assert_eq!(e.id.as_str(), "01HX");
        assert_eq!(e.platform, Platform::LINE);
        assert_eq!(e.conversation.as_str(), "G1");
        assert_eq!(e.sender.as_ref().map(UserId::as_str), Some("U1"));
        assert_eq!(e.reply_token.as_ref().map(ReplyToken::expose), Some("rt-1"));
        assert_eq!(e.occurred_at.as_millis(), 1_700_000_000_000);
        assert!(e.redelivered);
        let m = e.message().unwrap();
        assert_eq!(m.text.as_deref(), Some("@bot hi"));
        assert_eq!(m.reply_to.as_ref().map(MessageId::as_str), Some("m0"));
        assert_eq!(m.mentions.len(), 1, "@All has no user");
        assert_eq!(e.raw()["message"]["id"], "m1");
        let typed = e.line_event().unwrap().unwrap();
        assert!(matches!(
            typed.kind,
            model::EventKind::Message(MessageContent::Text(_))
        ));
    }

    #[test]
    fn events_without_an_id_get_a_stable_fingerprint() {
        let first =
            json!({"type": "follow", "timestamp": 1, "source": {"type": "user", "userId": "U"}});
        let mut again = first.clone();
        again["deliveryContext"] = json!({"isRedelivery": true});
        let a = to_core_event("Ubot", first);
        let b = to_core_event("Ubot", again);
        assert_eq!(a.id, b.id);
        assert!(a.id.as_str().starts_with("sha256:"));
    }

    #[test]
    fn a_message_of_an_odd_shape_is_an_unknown_message_not_an_unreadable_event() {
        for message in [
            json!({"type": 5, "id": "m1"}),
            json!({"type": "hologram", "id": 7}),
            json!("text"),
        ] {
            let e = to_core_event(
                "Ubot",
                json!({"type": "message", "timestamp": 1, "webhookEventId": "01M",
                       "source": {"type": "user", "userId": "U"}, "message": message}),
            );
            assert!(
                matches!(e.kind, EventKind::Message(_)),
                "{message}: {:?}",
                e.kind
            );
            let typed = e.line_event().unwrap().unwrap();
            assert!(matches!(
                typed.kind,
                model::EventKind::Message(MessageContent::Unknown { .. })
            ));
        }
    }

    #[test]
    fn events_too_deep_for_a_tree_still_get_distinct_ids() {
        let deep = |leaf: &str| {
            format!(
                r#"{{"type":"things","timestamp":1,"source":{{"type":"user","userId":"U"}},"x":{}"{leaf}"{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            )
        };
        let body = format!(
            r#"{{"destination":"Ubot","events":[{},{}]}}"#,
            deep("a"),
            deep("b")
        );
        match events_from_body(body.as_bytes()) {
            // Read as JSON text, the events must not collapse into one id (and one dedup key).
            Ok(events) => {
                assert_eq!(events.len(), 2);
                assert_ne!(events[0].id, events[1].id);
                assert_eq!(events[0].raw.json(), deep("a"));
            }
            // Refused as a whole is as safe: nothing is acknowledged.
            Err(e) => assert!(e.to_string().contains("recursion"), "{e}"),
        }
    }

    #[test]
    fn a_known_type_with_a_broken_payload_is_delivered_as_other() {
        let e = to_core_event(
            "Ubot",
            json!({"type": "postback", "timestamp": 3, "webhookEventId": "01P",
                   "source": {"type": "room", "roomId": "R9", "userId": "U3"}, "postback": 42}),
        );
        assert_eq!(e.kind.name(), "postback");
        assert!(matches!(e.kind, EventKind::Other(_)));
        assert_eq!(e.conversation.as_str(), "R9");
        assert_eq!(e.id.as_str(), "01P");
        assert!(e.line_event().unwrap().is_err());
    }

    #[test]
    fn bodies_that_are_not_webhooks_fail() {
        assert!(events_from_body(b"{not json").is_err());
        assert!(events_from_body(br#"{"destination": "U"}"#).is_err());
        assert!(events_from_body(br#"{"events": {}}"#).is_err());
        assert!(
            events_from_body(br#"{"destination": "U", "events": []}"#)
                .unwrap()
                .is_empty()
        );
    }

    /// Every event both ways: the one-pass path where it applies, the typed model always.
    fn both_paths(event: &Value) -> (Option<(Event, bool)>, (Event, bool)) {
        let body = Bytes::from(event.to_string());
        let json = std::str::from_utf8(&body).unwrap();
        let fast = fast::event(&body, "Ubot", json);
        let general = general("Ubot", json);
        (fast, general)
    }

    #[test]
    fn the_one_pass_path_maps_text_events_as_the_typed_model_does() {
        let text = |source: Value, extra: Value| {
            let mut e = json!({"type": "message", "mode": "active", "timestamp": 1_700_000_000_000_i64,
                "source": source, "webhookEventId": "01HX", "replyToken": "rt-1",
                "deliveryContext": {"isRedelivery": false},
                "message": {"type": "text", "id": "m1", "text": "hi", "quoteToken": "q"}});
            for (k, v) in extra.as_object().unwrap() {
                if k == "message" {
                    for (mk, mv) in v.as_object().unwrap() {
                        e["message"][mk] = mv.clone();
                    }
                } else {
                    e[k] = v.clone();
                }
            }
            e
        };
        let cases = [
            text(json!({"type": "user", "userId": "U1"}), json!({})),
            text(
                json!({"type": "group", "groupId": "G1", "userId": "U1"}),
                json!({}),
            ),
            text(json!({"type": "group", "groupId": "G1"}), json!({})),
            text(
                json!({"type": "room", "roomId": "R1", "userId": "U1"}),
                json!({}),
            ),
            text(json!({"type": "galaxy", "userId": "U1"}), json!({})),
            text(json!({"type": "galaxy"}), json!({})),
            text(json!(null), json!({})),
            text(
                json!({"type": "user", "userId": "U1"}),
                json!({"type": "messageEdited"}),
            ),
            text(
                json!({"type": "user", "userId": "U1"}),
                json!({"mode": "standby", "replyToken": null}),
            ),
            text(
                json!({"type": "user", "userId": "U1"}),
                json!({"webhookEventId": ""}),
            ),
            text(
                json!({"type": "user", "userId": "U1"}),
                json!({"webhookEventId": null}),
            ),
            text(
                json!({"type": "user", "userId": "U1"}),
                json!({"deliveryContext": {"isRedelivery": true}}),
            ),
            text(
                json!({"type": "group", "groupId": "G\"1\\u00e9", "userId": "U\\n1"}),
                json!({"webhookEventId": "01\"HX", "replyToken": "r\\t1",
                       "message": {"id": "m\"1", "text": "say \"hi\"\n\u{e9}\\", "quotedMessageId": "m\"0"}}),
            ),
            text(
                json!({"type": "user", "userId": "U1"}),
                json!({"message": {"quotedMessageId": "m0", "emojis": [{"index": 0, "length": 6, "productId": "p", "emojiId": "e"}],
                       "mention": {"mentionees": [
                           {"index": 0, "length": 4, "type": "user", "userId": "Ubot", "isSelf": true},
                           {"index": 5, "length": 4, "type": "all"},
                           {"index": 9, "length": 2, "userId": "U\"2"}]}}}),
            ),
        ];
        for case in &cases {
            let (fast, general) = both_paths(case);
            let fast = fast.unwrap_or_else(|| panic!("the one-pass path refused {case}"));
            assert!(
                matches!(fast.0.kind, EventKind::Message(_) | EventKind::Edited(_)),
                "{case}"
            );
            assert_eq!(fast, general, "{case}");
        }
        // The escapes come out as the text they stand for.
        let (fast, _) = both_paths(&cases[12]);
        let e = fast.unwrap().0;
        assert_eq!(e.id.as_str(), "01\"HX");
        assert_eq!(e.conversation.as_str(), "G\"1\\u00e9");
        assert_eq!(e.text_content(), Some("say \"hi\"\n\u{e9}\\"));
        assert_eq!(
            e.reply_token.as_ref().map(ReplyToken::expose),
            Some("r\\t1")
        );
    }

    #[test]
    fn the_one_pass_path_leaves_what_it_does_not_read_as_the_model_does_to_the_model() {
        let base = json!({"type": "message", "timestamp": 1, "webhookEventId": "01HX",
            "source": {"type": "user", "userId": "U1"},
            "message": {"type": "text", "id": "m1", "text": "hi"}});
        let with = |pointer: &str, value: Value| {
            let mut e = base.clone();
            *e.pointer_mut(pointer).unwrap() = value;
            e
        };
        let refused = [
            with("/message/id", json!(null)),
            with("/message/text", json!(5)),
            with("/message", json!(["text", "m1", "hi"])),
            with("/message/type", json!("image")),
            with("/source", json!({"type": "group", "userId": "U1"})),
            with("/source", json!({"type": "user"})),
            with("/timestamp", json!(null)),
            with("/type", json!("postback")),
            with(
                "/message",
                json!({"type": "text", "id": "m1", "text": "hi", "mention": {"mentionees": [{"index": 0, "length": 1, "type": null}]}}),
            ),
            with(
                "/message",
                json!({"type": "text", "id": "m1", "text": "hi", "emojis": [{"index": 0}]}),
            ),
        ];
        for case in &refused {
            let (fast, general) = both_paths(case);
            assert!(fast.is_none(), "{case}");
            // What the model decides stays the answer: unknown messages, others, ...
            let _ = general;
        }
        let duplicate = r#"{"type":"message","timestamp":1,"type":"message","source":{"type":"user","userId":"U1"},"message":{"type":"text","id":"m","text":"a"}}"#;
        let body = Bytes::from(duplicate);
        assert!(fast::event(&body, "Ubot", duplicate).is_none());
        assert!(matches!(
            general("Ubot", duplicate).0.kind,
            EventKind::Other(_)
        ));
    }

    #[test]
    fn events_share_the_body_they_came_in() {
        let body = Bytes::from(
            json!({"destination": "Ubot", "events": [
                {"type": "message", "timestamp": 1, "webhookEventId": "01HX",
                 "source": {"type": "user", "userId": "U1"},
                 "message": {"type": "text", "id": "m1", "text": "hi"}},
                {"type": "follow", "timestamp": 2, "webhookEventId": "01HY",
                 "source": {"type": "user", "userId": "U1"}}]})
            .to_string(),
        );
        let events = events_from_bytes(&body).unwrap();
        let within = |s: &str| {
            let (start, at) = (body.as_ptr() as usize, s.as_ptr() as usize);
            at >= start && at + s.len() <= start + body.len()
        };
        for e in &events {
            assert!(
                within(e.raw.json()),
                "the payload is a slice of the body, not a copy"
            );
        }
        assert_eq!(events[1].raw()["type"], "follow");
    }
}
