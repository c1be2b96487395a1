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
//! `deliveryContext.isRedelivery` sets [`Event::redelivered`](bot_core::EventData::redelivered), `timestamp` sets
//! [`Event::occurred_at`](bot_core::EventData::occurred_at), and the reply token is kept. The whole LINE event stays in
//! [`Event::raw`](bot_core::EventData::raw); [`LineEventExt::line_event`] parses it back into a [`WebhookEvent`].

use std::borrow::Cow;

use bot_core::event::Raw;
use bot_core::event::content_id;
use bot_core::event::scan::{self, elements, token, value};
use bot_core::event::{
    Attachment, AttachmentKind, Deleted, Members, Mention, Message, MessageId, Other, Postback,
    ReplyToken, Timestamp, UserId,
};
use bot_core::{ChannelId, Event, EventBuffer, EventData, EventId, EventKind, Platform};
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
    #[serde(borrow, deserialize_with = "raw_events")]
    events: Vec<&'a RawValue>,
}

/// `events[]` as raw values, in a vector with room for a usual batch from the start (serde's
/// own grows it from nothing, which showed in the webhook's profile).
fn raw_events<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<&'de RawValue>, D::Error> {
    struct Events;
    impl<'de> serde::de::Visitor<'de> for Events {
        type Value = Vec<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of events")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(16).min(256));
            while let Some(event) = seq.next_element()? {
                events.push(event);
            }
            Ok(events)
        }
    }
    d.deserialize_seq(Events)
}

/// Parses a webhook body into core events, one per element of `events[]`, in order.
///
/// An event the model cannot read (an unknown type, or a known type missing fields) is still
/// delivered, as `EventKind::Other` with its raw JSON: one odd event never costs the others.
/// Each event keeps its JSON text as [`Event::raw`](bot_core::EventData::raw); no JSON tree is built. The body is copied
/// once; [`events_from_bytes`] shares a body already in [`Bytes`].
///
/// # Errors
///
/// Fails when the body is not JSON or has no `events` array.
pub fn events_from_body(body: &[u8]) -> Result<Vec<Event>, serde_json::Error> {
    events_from_bytes(&Bytes::copy_from_slice(body))
}

/// As [`events_from_body`], from the body as received: each event's [`Event::raw`](bot_core::EventData::raw) and its long
/// ids are slices of `body` (which they keep alive), not copies.
///
/// # Errors
///
/// Fails when the body is not JSON or has no `events` array.
pub fn events_from_bytes(body: &Bytes) -> Result<Vec<Event>, serde_json::Error> {
    parse_body(body, true, None).map(|(events, _)| events)
}

/// As [`events_from_bytes`]; without `keep_standby`, leaves out the events in standby mode and
/// counts them. Every event comes through `channel`, when given: set in the data before they are
/// put in their shared block (set after, each write would copy its event out of the block).
pub(crate) fn parse_body(
    body: &Bytes,
    keep_standby: bool,
    channel: Option<&ChannelId>,
) -> Result<(Vec<Event>, usize), serde_json::Error> {
    let (mut events, standby) = match one_pass(body, keep_standby) {
        Some(parsed) => parsed,
        None => two_passes(body, keep_standby)?,
    };
    if let Some(channel) = channel {
        for event in events.iter_mut() {
            event.channel = Some(channel.clone());
        }
    }
    // The body's events in one block: one allocation, freed once; the vector they were read
    // into stays with the thread for its next body.
    Ok((events.into_events(), standby))
}

/// [`parse_body`] by `events[]` split into raw values first, then each event read: the
/// reference [`one_pass`] must agree with, and the path of every body it does not take (and of
/// every error).
fn two_passes(body: &Bytes, keep_standby: bool) -> Result<(EventBuffer, usize), serde_json::Error> {
    let wire: WireBody<'_> = serde_json::from_slice(body)?;
    let mut events = EventBuffer::take();
    events.reserve(wire.events.len());
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

/// [`parse_body`] in one pass over the body: each element of `events[]` is read where it stands
/// as the fast path's wire event, its span (the event's [`Event::raw`](bot_core::EventData::raw)) known from where the
/// reading ended, instead of `events[]` being split into raw values first and each read again.
/// An event the wire type does not read is skipped as a raw value and goes to the typed model,
/// as in [`two_passes`].
///
/// `None` for anything but a plain well-formed body, which [`two_passes`] then reads (and
/// refuses with serde's own error when it is not a webhook): a body that is not UTF-8 or not
/// an object, a key with escapes or given twice, `destination` after `events`, malformed JSON.
fn one_pass(body: &Bytes, keep_standby: bool) -> Option<(EventBuffer, usize)> {
    /// `destination`, borrowed unless it has escapes (serde's `Cow` always copies).
    #[derive(Deserialize)]
    struct Destination<'a>(#[serde(borrow)] Cow<'a, str>);

    let text = std::str::from_utf8(body).ok()?;
    let mut destination: Option<Cow<'_, str>> = None;
    let mut parsed: Option<(EventBuffer, usize)> = None;
    let end = scan::members(text, 0, |key, at| match key {
        "destination" => {
            if destination.is_some() || parsed.is_some() {
                return None;
            }
            let (Destination(d), end) = value(text, at)?;
            destination = Some(d);
            Some(end)
        }
        "events" => {
            if parsed.is_some() {
                return None;
            }
            let dest = destination.as_deref().unwrap_or("");
            let mut events = EventBuffer::take();
            let mut standby = 0;
            let end = elements(text, at, |start| {
                let (wire, end) = match fast::read(text, start) {
                    Some((wire, end)) => (Some(wire), end),
                    None => (None, value::<&RawValue>(text, start)?.1),
                };
                let json = &text[start..end];
                // The fast path writes its event straight into `events`: an event is about
                // 450 bytes, and each hop by value (an `Option`, a tuple, a binding) copied it.
                let fast = wire.and_then(|wire| {
                    fast::mapped(&mut events, body, dest, wire, json, keep_standby)
                });
                let is_standby = match fast {
                    Some(is_standby) => is_standby,
                    None => {
                        let (mut event, is_standby) = general(dest, json);
                        event.raw = Raw::from_shared(body, json);
                        if !is_standby || keep_standby {
                            events.push(event);
                        }
                        is_standby
                    }
                };
                if is_standby && !keep_standby {
                    standby += 1;
                }
                Some(end)
            })?;
            parsed = Some((events, standby));
            Some(end)
        }
        _ => Some(value::<serde::de::IgnoredAny>(text, at)?.1),
    })?;
    // Nothing but whitespace may follow; `{}` (no `events`) the two passes refuse.
    match token(text, end) {
        None => parsed,
        Some(_) => None,
    }
}

/// Maps one raw LINE event (an element of `events[]`) to a core event.
pub fn to_core_event(destination: &str, raw: Value) -> Event {
    let Ok(text) = serde_json::to_string(&raw) else {
        return unreadable(destination, &raw, "unknown").into();
    };
    let body = Bytes::from(text);
    match std::str::from_utf8(&body) {
        Ok(json) => from_json(&body, destination, json).0.into(),
        Err(_) => unreadable(destination, &raw, "unknown").into(),
    }
}

/// Maps one event's JSON text, a slice of `body`; also says whether it came in standby mode.
fn from_json(body: &Bytes, destination: &str, json: &str) -> (EventData, bool) {
    let (mut event, standby) = match fast::event(body, destination, json) {
        Some(mapped) => mapped,
        None => general(destination, json),
    };
    event.raw = Raw::from_shared(body, json);
    (event, standby)
}

/// Any event, through the typed model.
fn general(destination: &str, json: &str) -> (EventData, bool) {
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

fn map(destination: &str, line: &WebhookEvent, json: &str) -> EventData {
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
    let mut event = EventData::from_platform(Platform::LINE, id, chat, kind);
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
fn unreadable(destination: &str, raw: &Value, event_type: &str) -> EventData {
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
    let mut event = EventData::from_platform(Platform::LINE, id, chat, other(event_type));
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
    use bot_core::{EventData, EventId, EventKind, Platform};
    use bytes::Bytes;
    use serde::Deserialize;
    use serde::de::IgnoredAny;

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
    /// declared too, so that a duplicate key fails here as it fails there (read as
    /// `IgnoredAny`, checked and not kept: a byte each in a struct that is moved several times
    /// per event, not 16).
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code, reason = "some fields are read to be checked, not used")]
    pub(super) struct WireEvent<'a> {
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
        /// Read in the same pass as the event; only an object that reads as a text message
        /// does (anything else fails the event here and goes down the general path).
        #[serde(borrow, default, deserialize_with = "text_object")]
        message: Option<WireText<'a>>,
        #[serde(default)]
        unsend: Option<IgnoredAny>,
        #[serde(default)]
        follow: Option<IgnoredAny>,
        #[serde(default)]
        joined: Option<IgnoredAny>,
        #[serde(default)]
        left: Option<IgnoredAny>,
        #[serde(default)]
        postback: Option<IgnoredAny>,
        #[serde(default)]
        video_play_complete: Option<IgnoredAny>,
        #[serde(default)]
        beacon: Option<IgnoredAny>,
        #[serde(default)]
        link: Option<IgnoredAny>,
        #[serde(default)]
        things: Option<IgnoredAny>,
        #[serde(default)]
        membership: Option<IgnoredAny>,
        #[serde(default)]
        module: Option<IgnoredAny>,
        #[serde(default)]
        delivery: Option<IgnoredAny>,
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

    /// `message` as a [`WireText`], read from an object only: an array would be read by
    /// position, which the model does not do for messages.
    fn text_object<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<WireText<'de>>, D::Error> {
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = Option<WireText<'de>>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a text message object")
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                d.deserialize_map(self)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                WireText::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
            }
        }
        d.deserialize_option(Object)
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
    pub(super) fn event(body: &Bytes, destination: &str, json: &str) -> Option<(EventData, bool)> {
        let wire: WireEvent<'_> = serde_json::from_str(json).ok()?;
        let mut one = Vec::with_capacity(1);
        let standby = mapped(&mut one, body, destination, wire, json, true)?;
        Some((one.pop()?, standby))
    }

    /// Reads the event that starts at `at` in `text` (the whole body) in one pass: the wire
    /// event and where it ends, or `None` when it does not read as a [`WireEvent`] (then it is
    /// skipped as a raw value and left to the general path).
    pub(super) fn read(text: &str, at: usize) -> Option<(WireEvent<'_>, usize)> {
        let mut events =
            serde_json::Deserializer::from_str(text.get(at..)?).into_iter::<WireEvent<'_>>();
        let wire = events.next()?.ok()?;
        Some((wire, at + events.byte_offset()))
    }

    /// The event read as `wire` from `json` (a slice of `body`), mapped and pushed onto `out`
    /// (its raw payload `json`), unless it came in standby mode and `keep_standby` is false;
    /// whether it came in standby mode. `None` when the general path decides (nothing pushed).
    pub(super) fn mapped(
        out: &mut Vec<EventData>,
        body: &Bytes,
        destination: &str,
        wire: WireEvent<'_>,
        json: &str,
        keep_standby: bool,
    ) -> Option<bool> {
        let edited = match &*wire.event_type {
            "message" => false,
            "messageEdited" => true,
            _ => return None,
        };
        let text = wire.message?;
        if text.message_type != "text" {
            return None;
        }
        let (chat, sender) = match &wire.source {
            None => (None, None),
            Some(source) => source_ids(source)?,
        };
        // Nothing below refuses the event: the general path would read it alike.
        let standby = wire.mode.as_deref() == Some("standby");
        if standby && !keep_standby {
            return Some(true);
        }
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
        // Built whole, where it stays: `EventData::from_platform` reads the clock for a time
        // that is replaced here; batched with the body's other events by the caller.
        out.push(EventData {
            id,
            platform: Platform::LINE,
            channel: None,
            conversation: bot_core::ConversationId::from_shared(body, chat),
            sender: sender.map(|user| UserId::from_shared(body, user)),
            kind,
            reply_token: wire
                .reply_token
                .as_ref()
                .map(|token| ReplyToken::from_shared(body, token)),
            occurred_at: Timestamp::from_millis(wire.timestamp),
            redelivered: wire.delivery_context.is_redelivery,
            raw: bot_core::event::Raw::from_shared(body, json),
        });
        Some(standby)
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
mod tests;
