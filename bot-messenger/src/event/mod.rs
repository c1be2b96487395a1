//! From Messenger webhook items to core [`Event`]s, and back to the typed Messenger item.
//!
//! Every item of every `entry[]`, from `messaging[]`, then `standby[]`, then `changes[]`, becomes
//! one core event, in the order Meta sent them:
//!
//! | Messenger item | core [`EventKind`] | conversation |
//! | --- | --- | --- |
//! | `message` (text, attachments, `reply_to`) | `Message`: text, attachments (image, audio, video, file; a sticker as `Sticker`; a location as a `geo:` URL; `fallback`, `template`, `reel`, `ig_reel`, `share`, `story_mention` as `Other(type)`), reply-to | sender PSID |
//! | `message` with `quick_reply` | `Postback` with `data` = the quick reply's payload, `params` = `{"source": "quick_reply", "text", "mid"}`, so a router's `.postback()` serves quick replies and buttons alike; a quick reply sent as `QuickReply::message` (payload [`TEXT_QUICK_REPLY_PAYLOAD`]) arrives as the `Message` it stands for | sender PSID |
//! | `message` with `is_deleted` (Instagram unsend) | `Deleted` | sender PSID |
//! | `message` with `is_echo` (the page's own message), even one whose `message` the model cannot read | not delivered by default, only counted; with [`crate::MessengerBuilder::deliver_echoes`], `Other { name: "message_echo" }` (never `Message`, so an echo cannot trigger a reply that echoes again) | recipient PSID |
//! | `postback` | `Postback` with `data` = payload, `params` = `{"source": "postback", "title", "referral"?, "mid"?}` | sender PSID |
//! | `reaction` | `Reaction` (`removed` for `unreact`; the emoji, else the reaction's name) | sender PSID |
//! | `read`, `delivery`, `referral`, `optin`, `account_linking`, `pass_thread_control`, `take_thread_control`, `request_thread_control`, `app_roles`, unknown keys | `Other { name: <key> }` | sender PSID (else `user_ref:<ref>` for a user known only by a checkbox plugin's `user_ref`, which replies reach; else the recipient, else the page) |
//! | any item of `changes[]` (`{"field", "value"}`: feed, mention, Instagram comments and other Page or Instagram subscriptions) | `Other { name: "changes_<field>" }` (`changes_feed`, `changes_comments`, ...), with the change as [`Event::raw`](bot_core::EventData::raw); [`MessengerEventExt::messenger_event`] is `None` for them | `value.from.id` (the commenter), else the page |
//! | any item of `standby[]` | not delivered by default, only counted; with [`crate::MessengerBuilder::deliver_standby`], `Other { name: "standby_<key>" }`: another app owns the conversation, so it is for reading, not answering | as above |
//!
//! The event id is the message's `mid` (a postback's `mid` when Meta sends one); items without
//! an id (reads, deliveries, reactions, changes, ...) get a stable hash of the item, so a redelivery is
//! recognised as the same event. `sender.id` is the sender, `timestamp` (else the entry's
//! `time`) is [`Event::occurred_at`](bot_core::EventData::occurred_at). The whole item stays in [`Event::raw`](bot_core::EventData::raw);
//! [`MessengerEventExt::messenger_event`] parses it back into a [`MessagingEvent`].

use bot_core::event::Raw;
use bot_core::event::content_id;
use bot_core::event::scan::{elements, members, token, value};
use bot_core::event::{
    Attachment, AttachmentKind, Deleted, Message, MessageId, Other, Postback, Reaction, Timestamp,
    UserId,
};
use bot_core::{ChannelId, Event, EventBuffer, EventData, EventId, EventKind, Platform};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::model::{self, AttachmentType, MessagingEvent, MessagingKind, Object, ReactionAction};

/// The kind name of an echo delivered with [`crate::MessengerBuilder::deliver_echoes`].
pub const ECHO_KIND: &str = "message_echo";
/// The prefix of conversations known only by a `user_ref` (checkbox plugin optins): replies to
/// `user_ref:<ref>` go to `recipient.user_ref` (see [`crate::model::send::Recipient::for_conversation`]).
pub const USER_REF_PREFIX: &str = "user_ref:";
/// The prefix of the kind names of `standby[]` items.
pub const STANDBY_PREFIX: &str = "standby_";
/// The prefix of the kind names of `changes[]` items (`changes_feed`, `changes_comments`, ...).
pub const CHANGES_PREFIX: &str = "changes_";
/// The payload of quick replies made from [`bot_core::outbound::Action::Message`]: a tap on one
/// arrives as a text message (the chip's title), not as a postback.
pub const TEXT_QUICK_REPLY_PAYLOAD: &str = "botrt.text";

/// Typed access to the Messenger item behind a core [`Event`].
pub trait MessengerEventExt {
    /// The messaging item this event was made from; `None` for events of other platforms and
    /// for `changes[]` items (read those from [`Event::raw`](bot_core::EventData::raw): `{"field", "value"}`).
    ///
    /// # Errors
    ///
    /// Fails when the raw item is not one the model can read (only for events that were
    /// delivered as `Other` because they could not be parsed).
    fn messenger_event(&self) -> Option<Result<MessagingEvent, serde_json::Error>>;

    /// Whether the event came from `standby[]`: another app owns the conversation.
    fn is_messenger_standby(&self) -> bool;

    /// Whether the event is an echo of a message the page sent.
    fn is_messenger_echo(&self) -> bool;

    /// Whether the event is an item of `entry[].changes[]` (a feed or Instagram comments
    /// subscription), delivered as `Other { name: "changes_<field>" }`.
    fn is_messenger_change(&self) -> bool;
}

impl MessengerEventExt for Event {
    fn messenger_event(&self) -> Option<Result<MessagingEvent, serde_json::Error>> {
        (self.platform == Platform::MESSENGER && !self.is_messenger_change())
            .then(|| MessagingEvent::from_value(self.raw()))
    }

    fn is_messenger_standby(&self) -> bool {
        self.platform == Platform::MESSENGER
            && matches!(&self.kind, EventKind::Other(o) if o.name.starts_with(STANDBY_PREFIX))
    }

    fn is_messenger_echo(&self) -> bool {
        self.platform == Platform::MESSENGER
            && matches!(&self.kind, EventKind::Other(o) if o.name == ECHO_KIND)
    }

    fn is_messenger_change(&self) -> bool {
        self.platform == Platform::MESSENGER
            && matches!(&self.kind, EventKind::Other(o) if o.name.starts_with(CHANGES_PREFIX))
    }
}

/// A webhook body, mapped.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Batch {
    /// `object`: `page`, `instagram`, or another value whose entries were not read.
    pub object: Object,
    /// The events, in order, echoes and standby items included (the webhook leaves those out
    /// unless configured to deliver them).
    pub events: Vec<Event>,
}

#[derive(Deserialize)]
struct WireBody<'a> {
    object: Object,
    #[serde(borrow)]
    entry: Vec<WireEntry<'a>>,
}

/// An entry, its items kept as their JSON text: each becomes a tree only while it is mapped, and
/// the event keeps the text (one allocation, not a tree, for as long as it is queued).
#[derive(Deserialize)]
struct WireEntry<'a> {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    time: i64,
    #[serde(borrow, default)]
    messaging: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    standby: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    changes: Vec<&'a RawValue>,
}

/// An item's tree, for mapping; if its text cannot become one (nesting too deep), an object
/// holding the text, so that its hash (the id of an item without one) is still its own.
fn tree(item: &RawValue) -> Value {
    tree_of(item.get())
}

/// [`tree`] of an item's JSON text.
fn tree_of(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|_| json!({ "unreadable": json }))
}

/// Parses a webhook body into core events: every item of every entry, in order, `messaging[]`,
/// then `standby[]`, then `changes[]`.
///
/// Bodies whose `object` is neither `page` nor `instagram` yield no events. An item the model cannot read is still delivered, as
/// `EventKind::Other` with its raw JSON: one odd item never costs the others. The body is copied
/// once; [`parse_bytes`] shares a body already in [`Bytes`].
///
/// # Errors
///
/// Fails when the body is not JSON, or has no `object` or no `entry` array.
pub fn parse_body(body: &[u8]) -> Result<Batch, serde_json::Error> {
    parse_bytes(&Bytes::copy_from_slice(body))
}

/// As [`parse_body`], from the body as received: each event's [`Event::raw`](bot_core::EventData::raw) and its long ids
/// are slices of `body` (which they keep alive), not copies.
///
/// # Errors
///
/// Fails when the body is not JSON, or has no `object` or no `entry` array.
pub fn parse_bytes(body: &Bytes) -> Result<Batch, serde_json::Error> {
    parse_leaving_out(body, Leave::default()).map(|(batch, _)| batch)
}

/// What [`parse_leaving_out`] leaves out of a batch: echoes, `standby[]` items.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Leave {
    pub(crate) echoes: bool,
    pub(crate) standby: bool,
}

/// How many events [`parse_leaving_out`] left out, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LeftOut {
    pub(crate) echoes: usize,
    pub(crate) standby: usize,
}

/// As [`parse_bytes`], without the events `leave` names: they are dropped before the others'
/// data go into their shared blocks, where they would stay alive (uncounted) as long as any
/// event of the block does.
pub(crate) fn parse_leaving_out(
    body: &Bytes,
    leave: Leave,
) -> Result<(Batch, LeftOut), serde_json::Error> {
    let (object, mut events) = match one_pass(body) {
        Some(read) => read,
        None => two_passes(body)?,
    };
    let mut left = LeftOut::default();
    if leave.echoes || leave.standby {
        events.retain(|e| {
            let echo = leave.echoes && other_named(e, |name| name == ECHO_KIND);
            let standby = leave.standby && other_named(e, |name| name.starts_with(STANDBY_PREFIX));
            left.echoes += usize::from(echo);
            left.standby += usize::from(standby);
            !echo && !standby
        });
    }
    Ok((
        Batch {
            object,
            // The body's events in shared blocks: one allocation for many, freed once; the
            // vector they were read into stays with the thread for its next body.
            events: events.into_events(),
        },
        left,
    ))
}

/// Whether `data` is an `Other` event whose name `test` accepts.
fn other_named(data: &EventData, test: impl Fn(&str) -> bool) -> bool {
    matches!(&data.kind, EventKind::Other(o) if test(&o.name))
}

/// [`parse_bytes`] in one pass over the body: each item of `messaging[]` and `standby[]` is
/// read where it stands (a `messaging[]` item as the fast path's wire item), its span (the
/// event's [`Event::raw`](bot_core::EventData::raw)) known from where the reading ended, instead of every entry's lists
/// being split into raw values first and each item read again. Items the wire type does not
/// read, standby items and changes are skipped as raw values and mapped as in [`two_passes`].
///
/// `None` for anything but a plain well-formed body of a `page` or `instagram` object, which
/// [`two_passes`] then reads (and refuses with serde's own error when it is not a webhook): a
/// body that is not UTF-8, a key with escapes or given twice, `object` after `entry` or an
/// entry's `id` or `time` after its lists, malformed JSON, other objects.
fn one_pass(body: &Bytes) -> Option<(Object, EventBuffer)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut object: Option<Object> = None;
    let mut events: Option<EventBuffer> = None;
    let end = members(text, 0, |key, at| match key {
        "object" if object.is_none() && events.is_none() => {
            let (read, end) = value::<Object>(text, at)?;
            if !matches!(read, Object::Page | Object::Instagram) {
                return None;
            }
            object = Some(read);
            Some(end)
        }
        "entry" if object.is_some() && events.is_none() => {
            let mut out = EventBuffer::take();
            let end = elements(text, at, |start| entry(body, text, start, &mut out))?;
            events = Some(out);
            Some(end)
        }
        "object" | "entry" => None,
        _ => value::<serde::de::IgnoredAny>(text, at).map(|(_, end)| end),
    })?;
    // Nothing but whitespace may follow.
    if token(text, end).is_some() {
        return None;
    }
    Some((object?, events?))
}

/// One entry of [`one_pass`], from `at`: its events appended to `out`, in the order of
/// [`two_passes`] (`messaging[]`, then `standby[]`, then `changes[]`). Returns where it ends.
fn entry(body: &Bytes, text: &str, at: usize, out: &mut Vec<EventData>) -> Option<usize> {
    let mut id: Option<Value> = None;
    let mut time: Option<i64> = None;
    let mut page_id = String::new();
    let mut channel: Option<ChannelId> = None;
    // `messaging[]` events go straight into `out` (they come first there); the others wait in
    // lists of their own, appended after them.
    let (mut messaging, mut standby, mut changes) = (false, None, None);
    let end = members(text, at, |key, at| {
        let lists_read = messaging || standby.is_some() || changes.is_some();
        match key {
            "id" if id.is_none() && !lists_read => {
                let (read, end) = value::<Value>(text, at)?;
                page_id = match &read {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                channel = (!page_id.is_empty()).then(|| ChannelId::new(&page_id));
                id = Some(read);
                Some(end)
            }
            "time" if time.is_none() && !lists_read => {
                let (read, end) = value::<i64>(text, at)?;
                time = Some(read);
                Some(end)
            }
            "messaging" | "standby" | "changes" => {
                let context = Context {
                    page_id: &page_id,
                    time: time.unwrap_or(0),
                    standby: key == "standby",
                };
                let read = |events: &mut Vec<EventData>| {
                    elements(text, at, |start| {
                        let end = item(events, body, text, start, key, &context)?;
                        if let Some(event) = events.last_mut() {
                            event.channel.clone_from(&channel);
                        }
                        Some(end)
                    })
                };
                if key == "messaging" {
                    if std::mem::replace(&mut messaging, true) {
                        return None;
                    }
                    return read(out);
                }
                let list = if key == "standby" {
                    &mut standby
                } else {
                    &mut changes
                };
                if list.is_some() {
                    return None;
                }
                let mut events = Vec::new();
                let end = read(&mut events)?;
                *list = Some(events);
                Some(end)
            }
            "id" | "time" => None,
            _ => value::<serde::de::IgnoredAny>(text, at).map(|(_, end)| end),
        }
    })?;
    for list in [standby, changes].into_iter().flatten() {
        out.extend(list);
    }
    Some(end)
}

/// One item of an entry's `list` (`messaging`, `standby` or `changes`), from `at`, mapped as
/// [`two_passes`] maps it and pushed onto `out`; where it ends.
///
/// The fast path writes its event straight into `out`: an event is about 450 bytes, and each
/// hop by value (an `Option`, a tuple, a binding) copied it.
fn item(
    out: &mut Vec<EventData>,
    body: &Bytes,
    text: &str,
    at: usize,
    list: &str,
    context: &Context<'_>,
) -> Option<usize> {
    let read = (list == "messaging")
        .then(|| fast::read(text, at))
        .flatten();
    let (wire, end) = match read {
        Some((wire, end)) => (Some(wire), end),
        None => (None, value::<&RawValue>(text, at)?.1),
    };
    let json = &text[at..end];
    let before = out.len();
    let fast = wire.and_then(|wire| fast::mapped(out, body, wire, context.page_id, context.time));
    if fast.is_none() {
        out.push(match list {
            "changes" => change_event(&tree_of(json), context.page_id, context.time),
            _ => to_core_event(&tree_of(json), context),
        });
    }
    // One event per item, whichever path mapped it: the caller sets its channel the same way.
    debug_assert_eq!(out.len(), before + 1);
    if let Some(event) = out.last_mut() {
        event.raw = Raw::from_shared(body, json);
    }
    Some(end)
}

/// [`parse_bytes`] by every entry's lists split into raw values first, then each item read:
/// the reference [`one_pass`] must agree with, and the path of every body it does not take
/// (and of every error).
fn two_passes(body: &Bytes) -> Result<(Object, EventBuffer), serde_json::Error> {
    let wire: WireBody<'_> = serde_json::from_slice(body)?;
    if !matches!(wire.object, Object::Page | Object::Instagram) {
        return Ok((wire.object, EventBuffer::take()));
    }
    let items: usize = wire
        .entry
        .iter()
        .map(|e| e.messaging.len() + e.standby.len() + e.changes.len())
        .sum();
    let mut events = EventBuffer::take();
    events.reserve(items);
    for entry in wire.entry {
        let page_id = match &entry.id {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        // Every event carries the page it came through; replies go out with that page's token.
        let channel = (!page_id.is_empty()).then(|| ChannelId::new(&page_id));
        let items = entry
            .messaging
            .into_iter()
            .map(|item| (item, false))
            .chain(entry.standby.into_iter().map(|item| (item, true)));
        for (item, standby) in items {
            let fast = (!standby)
                .then(|| fast::event(body, item.get(), &page_id, entry.time))
                .flatten();
            let mut event = fast.unwrap_or_else(|| {
                let context = Context {
                    page_id: &page_id,
                    time: entry.time,
                    standby,
                };
                to_core_event(&tree(item), &context)
            });
            event.raw = Raw::from_shared(body, item.get());
            event.channel.clone_from(&channel);
            events.push(event);
        }
        for change in entry.changes {
            let mut event = change_event(&tree(change), &page_id, entry.time);
            event.raw = Raw::from_shared(body, change.get());
            event.channel.clone_from(&channel);
            events.push(event);
        }
    }
    Ok((wire.object, events))
}

/// An item of `changes[]`: `Other { name: "changes_<field>" }`, in the conversation of
/// `value.from.id` (the commenter) when there is one, else the page's; its id a stable hash of
/// the page and the change.
fn change_event(raw: &Value, page_id: &str, time: i64) -> EventData {
    let field = raw
        .get("field")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
        .unwrap_or("unknown");
    let from = raw
        .pointer("/value/from/id")
        .and_then(|id| match id {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .filter(|id| !id.is_empty());
    let conversation = from.clone().unwrap_or_else(|| page_id.to_owned());
    let id = content_id(&json!({"entry": page_id, "change": &raw}));
    let mut event = EventData::from_platform(
        Platform::MESSENGER,
        id,
        conversation,
        other(&format!("{CHANGES_PREFIX}{field}")),
    );
    event.sender = from.map(UserId::from);
    event.occurred_at = Timestamp::from_millis(time);
    event
}

struct Context<'a> {
    page_id: &'a str,
    time: i64,
    standby: bool,
}

fn to_core_event(raw: &Value, context: &Context<'_>) -> EventData {
    match MessagingEvent::from_value(raw) {
        Ok(item) => map(&item, raw, context),
        Err(error) => {
            let key = raw
                .as_object()
                .and_then(|m| {
                    m.keys()
                        .find(|k| !["sender", "recipient", "timestamp"].contains(&k.as_str()))
                })
                .map_or("unknown", String::as_str);
            // Not the error itself: serde_json quotes the values it could not read.
            tracing::warn!(key, category = ?error.classify(), "messenger item not understood; delivered as other");
            unreadable(raw, key, context)
        }
    }
}

fn map(item: &MessagingEvent, raw: &Value, context: &Context<'_>) -> EventData {
    let sender = item.sender.as_ref().and_then(model::Party::any_id);
    let party = |p: &Option<model::Party>| p.as_ref().and_then(conversation_of);
    let conversation = if item.is_echo() {
        party(&item.recipient).or_else(|| party(&item.sender))
    } else {
        party(&item.sender)
            .or_else(|| match &item.kind {
                MessagingKind::Optin(o) => o.user_ref.as_deref().map(user_ref_conversation),
                _ => None,
            })
            .or_else(|| party(&item.recipient))
    }
    .unwrap_or_else(|| context.page_id.to_owned());
    let (kind, id) = if context.standby {
        (other(&format!("{STANDBY_PREFIX}{}", item.kind.key())), None)
    } else {
        kind_and_id(&item.kind)
    };
    // Items without an id: a hash of the item as sent, the same for a redelivery of it.
    let id = id.map_or_else(|| content_id(raw), EventId::from);
    let mut event = EventData::from_platform(Platform::MESSENGER, id, conversation, kind);
    event.sender = sender.map(UserId::new);
    event.occurred_at = Timestamp::from_millis(item.timestamp.unwrap_or(context.time));
    event
}

/// The conversation of a party: its PSID, else its `user_ref` as `user_ref:<ref>`.
fn conversation_of(party: &model::Party) -> Option<String> {
    party
        .id
        .clone()
        .or_else(|| party.user_ref.as_deref().map(user_ref_conversation))
}

fn user_ref_conversation(user_ref: &str) -> String {
    format!("{USER_REF_PREFIX}{user_ref}")
}

fn kind_and_id(kind: &MessagingKind) -> (EventKind, Option<String>) {
    let mid = |mid: &str| (!mid.is_empty()).then(|| mid.to_owned());
    match kind {
        MessagingKind::Message(m) if m.is_echo => (other(ECHO_KIND), mid(&m.mid)),
        MessagingKind::Message(m) if m.is_deleted => (
            EventKind::Deleted(Deleted {
                message_id: MessageId::new(&m.mid),
            }),
            // The unsend is its own event; the message's mid names the message it removed.
            None,
        ),
        MessagingKind::Message(m) => match &m.quick_reply {
            Some(quick_reply) if quick_reply.payload != TEXT_QUICK_REPLY_PAYLOAD => (
                EventKind::Postback(Postback {
                    data: quick_reply.payload.clone(),
                    params: json!({"source": "quick_reply", "text": m.text, "mid": m.mid}),
                }),
                mid(&m.mid),
            ),
            _ => (EventKind::Message(message(m)), mid(&m.mid)),
        },
        MessagingKind::Postback(p) => {
            let mut params = json!({"source": "postback", "title": p.title});
            if let Some(referral) = &p.referral {
                params["referral"] = json!(referral);
            }
            if let Some(mid) = &p.mid {
                params["mid"] = json!(mid);
            }
            (
                EventKind::Postback(Postback {
                    data: p.payload.clone(),
                    params,
                }),
                p.mid.as_deref().and_then(mid),
            )
        }
        MessagingKind::Reaction(r) => (
            EventKind::Reaction(Reaction {
                message_id: MessageId::new(&r.mid),
                emoji: r
                    .emoji
                    .clone()
                    .or_else(|| r.reaction.clone())
                    .unwrap_or_default(),
                removed: r.action == ReactionAction::Unreact,
            }),
            None,
        ),
        other_kind => (other(other_kind.key()), None),
    }
}

/// An item whose payload the model could not read: delivered as `Other` with what can be
/// salvaged from the raw JSON.
fn unreadable(raw: &Value, key: &str, context: &Context<'_>) -> EventData {
    let id_of = |party: &str| {
        raw.get(party)
            .and_then(|p| p.get("id"))
            .and_then(|id| match id {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    let sender = id_of("sender");
    // An echo stays an echo even when its message cannot be read: never user input.
    let echo = key == "message" && raw["message"]["is_echo"] == Value::Bool(true);
    let conversation = if echo {
        id_of("recipient").or_else(|| sender.clone())
    } else {
        sender.clone().or_else(|| id_of("recipient"))
    }
    .unwrap_or_else(|| context.page_id.to_owned());
    let name = match (context.standby, echo) {
        (true, _) => format!("{STANDBY_PREFIX}{key}"),
        (false, true) => ECHO_KIND.to_owned(),
        (false, false) => key.to_owned(),
    };
    let mut event = EventData::from_platform(
        Platform::MESSENGER,
        content_id(raw),
        conversation,
        other(&name),
    );
    event.sender = sender.map(UserId::from);
    event.occurred_at = Timestamp::from_millis(
        raw.get("timestamp")
            .and_then(Value::as_i64)
            .unwrap_or(context.time),
    );
    event
}

fn other(name: &str) -> EventKind {
    EventKind::Other(Other {
        name: name.to_owned(),
    })
}

fn message(m: &model::Message) -> Message {
    Message {
        id: (!m.mid.is_empty()).then(|| MessageId::new(&m.mid)),
        text: m.text.clone(),
        attachments: m.attachments.iter().map(attachment).collect(),
        mentions: Vec::new(),
        reply_to: m
            .reply_to
            .as_ref()
            .filter(|r| !r.mid.is_empty())
            .map(|r| MessageId::new(&r.mid)),
    }
}

fn attachment(a: &model::Attachment) -> Attachment {
    let payload = a.payload.as_ref();
    let mut out = Attachment {
        kind: AttachmentKind::Other(a.attachment_type.as_str().to_owned()),
        url: payload.and_then(|p| p.url.clone()),
        id: None,
        name: payload.and_then(|p| p.title.clone()),
        mime_type: None,
        size: None,
    };
    match &a.attachment_type {
        AttachmentType::Image => match payload.and_then(|p| p.sticker_id.clone()) {
            Some(sticker) => {
                out.kind = AttachmentKind::Sticker;
                out.id = Some(sticker);
            }
            None => out.kind = AttachmentKind::Image,
        },
        AttachmentType::Audio => out.kind = AttachmentKind::Audio,
        AttachmentType::Video => out.kind = AttachmentKind::Video,
        AttachmentType::File => out.kind = AttachmentKind::File,
        AttachmentType::Location => {
            out.kind = AttachmentKind::Location;
            if let Some(c) = payload.and_then(|p| p.coordinates) {
                // RFC 5870 geo URI: the platform-neutral way to carry the coordinates.
                out.url = Some(format!("geo:{},{}", c.lat, c.long));
            }
        }
        AttachmentType::Fallback => {
            out.url = a.url.clone().or(out.url);
            out.name = a.title.clone().or(out.name);
        }
        _ => out.id = payload.and_then(|p| p.reel_video_id.clone()),
    }
    out
}

/// The hot case read in one pass into borrowed fields: a `messaging[]` item whose `message` is a
/// user's text (no quick reply, attachment, echo or unsend). `None` sends the item down the
/// general path (the typed model), which decides everything else: this path accepts only items
/// that one accepts, and maps them alike.
mod fast {
    use std::borrow::Cow;

    use bot_core::event::{Message, MessageId, Timestamp, UserId};
    use bot_core::{ConversationId, EventData, EventId, EventKind, Platform};
    use bytes::Bytes;
    use serde::Deserialize;
    use serde_json::value::RawValue;

    /// A `messaging[]` item the fast path maps, read in one pass: its parties and message are
    /// read where they stand, not kept as raw text and read again.
    #[derive(Deserialize)]
    pub(super) struct WireItem<'a> {
        #[serde(default, borrow, deserialize_with = "object_or_null")]
        sender: Option<WireParty<'a>>,
        #[serde(default, borrow, deserialize_with = "object_or_null")]
        recipient: Option<WireParty<'a>>,
        #[serde(default, borrow)]
        timestamp: Option<&'a RawValue>,
        #[serde(borrow, deserialize_with = "object")]
        message: WireMessage<'a>,
    }

    /// `T` read from a JSON object only (serde's derived structs also read arrays, by
    /// position, which the model's types are never given here: those go to the general path).
    struct ObjectOnly<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectOnly<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }

    /// An object, or `null` as `None`; anything else fails.
    fn object_or_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        d.deserialize_option(ObjectOnly(std::marker::PhantomData))
    }

    /// An object; anything else (`null` included) fails.
    fn object<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
        d.deserialize_map(ObjectOnly(std::marker::PhantomData))?
            .ok_or_else(|| serde::de::Error::custom("an object"))
    }

    /// A string, borrowed from the body where it has no escapes.
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

    /// `Option<Cow<str>>` borrowed where the text has no escapes (serde's own `Option<Cow>` always
    /// copies).
    fn borrowed<'de: 'a, 'a, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Cow<'a, str>>, D::Error> {
        Ok(Option::<Text<'a>>::deserialize(d)?.map(|text| text.0))
    }

    /// `model::Party`'s fields. The id is a string or `null` here: a number (which the model's
    /// `string_or_number` formats) fails the read, and the general path maps the item.
    #[derive(Deserialize)]
    struct WireParty<'a> {
        #[serde(default, borrow, deserialize_with = "borrowed")]
        id: Option<Cow<'a, str>>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        user_ref: Option<Cow<'a, str>>,
    }

    /// `model::Message`'s fields, borrowed.
    #[derive(Deserialize)]
    #[allow(dead_code, reason = "some fields are read to be checked, not used")]
    struct WireMessage<'a> {
        #[serde(default, borrow)]
        mid: Cow<'a, str>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        text: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        quick_reply: Option<&'a RawValue>,
        #[serde(default, borrow)]
        reply_to: Option<WireReplyTo<'a>>,
        /// `null` kept as `Some`: the model refuses it where an absent list is empty.
        #[serde(default, borrow, deserialize_with = "present")]
        attachments: Option<&'a RawValue>,
        #[serde(default)]
        is_echo: bool,
        #[serde(default, borrow)]
        app_id: Option<&'a RawValue>,
        #[serde(default, borrow, deserialize_with = "borrowed")]
        metadata: Option<Cow<'a, str>>,
        #[serde(default)]
        is_deleted: bool,
        #[serde(default)]
        is_unsupported: bool,
    }

    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue>::deserialize(d).map(Some)
    }

    #[derive(Deserialize)]
    struct WireReplyTo<'a> {
        #[serde(default, borrow)]
        mid: Cow<'a, str>,
    }

    /// The conversation of a party, as `conversation_of` in the general path.
    fn conversation_of(
        body: &Bytes,
        id: Option<&str>,
        party: &WireParty<'_>,
    ) -> Option<ConversationId> {
        match (id, party.user_ref.as_deref()) {
            (Some(id), _) => Some(ConversationId::from_shared(body, id)),
            (None, Some(user_ref)) => {
                Some(ConversationId::from(super::user_ref_conversation(user_ref)))
            }
            (None, None) => None,
        }
    }

    /// The event of a `messaging[]` item; `None` when the general path decides.
    pub(super) fn event(body: &Bytes, json: &str, page_id: &str, time: i64) -> Option<EventData> {
        if !json.starts_with('{') {
            return None;
        }
        let item: WireItem<'_> = serde_json::from_str(json).ok()?;
        let mut one = Vec::with_capacity(1);
        mapped(&mut one, body, item, page_id, time)?;
        one.pop()
    }

    /// Reads the item that starts at `at` in `text` (the whole body) in one pass, if it is an
    /// object that reads as a [`WireItem`]: the item and where it ends.
    pub(super) fn read(text: &str, at: usize) -> Option<(WireItem<'_>, usize)> {
        if text.as_bytes().get(at) != Some(&b'{') {
            return None;
        }
        let mut items =
            serde_json::Deserializer::from_str(text.get(at..)?).into_iter::<WireItem<'_>>();
        let item = items.next()?.ok()?;
        Some((item, at + items.byte_offset()))
    }

    /// The item read as `item` (borrowing from `body`), mapped and pushed onto `out`; `None`
    /// when the general path decides (nothing pushed).
    pub(super) fn mapped(
        out: &mut Vec<EventData>,
        body: &Bytes,
        item: WireItem<'_>,
        page_id: &str,
        time: i64,
    ) -> Option<()> {
        let m = item.message;
        let plain = m.quick_reply.is_none_or(|q| q.get() == "null")
            && m.attachments.is_none_or(|a| a.get() == "[]")
            && !m.is_echo
            && !m.is_deleted
            && !m.mid.is_empty()
            && m.app_id
                .is_none_or(|a| a.get() == "null" || a.get().starts_with('"'));
        if !plain {
            return None;
        }
        let (sender, recipient) = (item.sender, item.recipient);
        let sender_id = sender.as_ref().and_then(|p| p.id.as_deref());
        let recipient_id = recipient.as_ref().and_then(|p| p.id.as_deref());
        // As `as_i64` reads it: integers only.
        let timestamp = item.timestamp.and_then(|t| t.get().parse::<i64>().ok());
        let conversation = sender
            .as_ref()
            .and_then(|p| conversation_of(body, sender_id, p))
            .or_else(|| {
                recipient
                    .as_ref()
                    .and_then(|p| conversation_of(body, recipient_id, p))
            })
            .unwrap_or_else(|| ConversationId::from_shared(body, page_id));
        let message = Message {
            id: Some(MessageId::from_shared(body, &m.mid)),
            text: m.text.map(Cow::into_owned),
            reply_to: m
                .reply_to
                .as_ref()
                .filter(|r| !r.mid.is_empty())
                .map(|r| MessageId::from_shared(body, &r.mid)),
            ..Message::default()
        };
        let sender_any = sender
            .as_ref()
            .and_then(|p| sender_id.or(p.user_ref.as_deref()));
        // Built whole, where it stays: `EventData::from_platform` reads the clock for a time
        // replaced here.
        out.push(EventData {
            id: EventId::from_shared(body, &m.mid),
            platform: Platform::MESSENGER,
            channel: None,
            conversation,
            sender: sender_any.map(|id| UserId::from_shared(body, id)),
            kind: EventKind::Message(message),
            reply_token: None,
            occurred_at: Timestamp::from_millis(timestamp.unwrap_or(time)),
            redelivered: false,
            raw: bot_core::event::Raw::default(),
        });
        Some(())
    }
}

#[cfg(test)]
mod tests;
