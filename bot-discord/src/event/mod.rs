// Over 700 lines: the tree mapping and the borrowed-view mapping of a dispatch stay side by
// side so that they cannot drift apart (the tests check they agree); the tests live in tests.rs.
//! From gateway dispatches and interactions to core [`Event`]s.
//!
//! | Discord | core [`EventKind`] | id | conversation |
//! | --- | --- | --- | --- |
//! | `MESSAGE_CREATE` | `Message` (content, attachments, mentioned users, the referenced message as `reply_to`) | message id | channel |
//! | `MESSAGE_UPDATE` | `Edited` | `<message id>:edit:<edited_timestamp>` | channel |
//! | `MESSAGE_DELETE` | `Deleted` | `<message id>:delete` | channel |
//! | `MESSAGE_REACTION_ADD` / `_REMOVE` | `Reaction` (`removed` on remove) | `<session>:<sequence>` | channel |
//! | `GUILD_MEMBER_ADD` / `_REMOVE` | `MemberJoined` / `MemberLeft` with the user | `<session>:<sequence>` | guild |
//! | `INTERACTION_CREATE`, and HTTP interactions: slash command | `Command` with its options by name (sub-commands nested as objects) | interaction id | channel |
//! | button that says text (`custom_id` starting with [`TEXT_CUSTOM_ID_PREFIX`]: a quick reply made with `QuickReply::message`, a button with `Action::Message`) | `Message` with the text, as a tapped quick reply on LINE and Messenger | interaction id | channel |
//! | component (button, select) | `Postback` with `custom_id` as data and the selected `values` as params | interaction id | channel |
//! | modal submit | `Postback` with `custom_id` as data and the fields by `custom_id` as params | interaction id | channel |
//! | anything else | `Other { name: <dispatch name> }` | `<session>:<sequence>` | channel, else guild, else `discord` |
//!
//! Messages and interactions keep their own snowflake as id, the same in every session. Events
//! without an id of their own are named by session and sequence, which a resume replays
//! unchanged, so a replay is dropped as a duplicate while the same reaction added again later is
//! a new event. Events carry their application as their channel when the shard knows it, and
//! with several applications the ids of gateway events are prefixed with it
//! ([`DispatchContext::scoped_ids`]).
//!
//! Messages by bots, the bot itself included, are not delivered unless asked for
//! ([`crate::gateway::ShardConfig::deliver_bot_messages`]). `occurred_at` comes from the snowflake
//! of the message or interaction. Interactions carry their token as [`Event::reply_token`](bot_core::EventData::reply_token). The
//! whole dispatch data stays in [`Event::raw`](bot_core::EventData::raw); [`DiscordEventExt`] parses it back into
//! [`crate::model`] types.

use bot_core::event::content_id;
use bot_core::event::{
    Attachment, AttachmentKind, Command, Deleted, Members, Mention, Message, MessageId, Other,
    Postback, Reaction, ReplyToken, Timestamp, UserId,
};
use bot_core::{Event, EventData, EventKind, Platform};

use crate::model::components::TEXT_CUSTOM_ID_PREFIX;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::marker::PhantomData;

mod context;

pub use context::DispatchContext;

/// Typed access to the Discord object behind a core [`Event`].
pub trait DiscordEventExt {
    /// The message of a message or edit event (`MESSAGE_CREATE`, `MESSAGE_UPDATE`); `None` for
    /// other events and platforms.
    ///
    /// # Errors
    ///
    /// Fails when the payload is not a message the model can read.
    fn discord_message(&self) -> Option<Result<crate::model::Message, serde_json::Error>>;

    /// The interaction of a command or postback event from an interaction; `None` otherwise.
    ///
    /// # Errors
    ///
    /// Fails when the payload is not an interaction the model can read.
    fn discord_interaction(&self) -> Option<Result<crate::model::Interaction, serde_json::Error>>;
}

impl DiscordEventExt for Event {
    fn discord_message(&self) -> Option<Result<crate::model::Message, serde_json::Error>> {
        let is_message = matches!(self.kind, EventKind::Message(_) | EventKind::Edited(_));
        (self.platform == Platform::DISCORD && is_message).then(|| self.raw.parse())
    }

    fn discord_interaction(&self) -> Option<Result<crate::model::Interaction, serde_json::Error>> {
        let raw = self.raw();
        let from_interaction = raw.get("token").is_some() && raw.get("type").is_some();
        (self.platform == Platform::DISCORD && from_interaction).then(|| self.raw.parse())
    }
}

/// Discord's epoch (2015-01-01) in milliseconds since the Unix epoch.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// The time a snowflake was made.
pub fn snowflake_time(id: &str) -> Option<Timestamp> {
    let id: u64 = id.parse().ok()?;
    let millis = i64::try_from(id >> 22).ok()? + DISCORD_EPOCH_MS;
    Some(Timestamp::from_millis(millis))
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// An id at `pointer`; an empty one counts as missing, so that payloads with `"id": ""` never
/// share one deduplication key.
fn non_empty_id(value: &Value, pointer: &str) -> Option<String> {
    text(value, pointer).filter(|id| !id.is_empty())
}

/// An event id from the session and sequence, when both are known (replays keep them), else
/// `fallback`.
fn sequenced(
    context: &DispatchContext,
    sequence: Option<u64>,
    fallback: impl FnOnce() -> String,
) -> String {
    match (&context.session_id, sequence) {
        (Some(session), Some(sequence)) => format!("{session}:{sequence}"),
        _ => fallback(),
    }
}

/// Maps one gateway dispatch (with its sequence number); `None` for what is not delivered
/// (messages by bots).
pub fn from_dispatch(
    name: &str,
    data: Value,
    sequence: Option<u64>,
    context: &DispatchContext,
) -> Option<Event> {
    let event = map_tree(name, &data, sequence, context)?;
    Some(Event::from(context.stamp(event)).with_raw(data))
}

/// Maps one gateway dispatch from its JSON text, as the shard reads it: the data is read into a
/// typed view that borrows from the text, and the text itself becomes the event's raw payload.
/// The result is the same as [`from_dispatch`] on the parsed tree; `None` also when the text is
/// not JSON a tree can be made of.
pub fn from_dispatch_json(
    name: &str,
    data: &RawValue,
    sequence: Option<u64>,
    context: &DispatchContext,
) -> Option<Event> {
    let event = map_dispatch(name, data.get(), sequence, context).ok()??;
    Some(Event::from(event).with_raw_json(data.to_owned()))
}

/// [`from_dispatch_json`] without the raw payload (the caller attaches the one it keeps).
///
/// The dispatches a bot gets by the million (messages, reactions, members) are read into a
/// borrowed view; the rest, and any payload the view cannot read as the tree would (a field of
/// another type, a duplicate key), go through the tree, so the mapping never differs.
pub(crate) fn map_dispatch(
    name: &str,
    json: &str,
    sequence: Option<u64>,
    context: &DispatchContext,
) -> Result<Option<EventData>, serde_json::Error> {
    if matches!(
        name,
        "MESSAGE_CREATE"
            | "MESSAGE_UPDATE"
            | "MESSAGE_DELETE"
            | "MESSAGE_REACTION_ADD"
            | "MESSAGE_REACTION_REMOVE"
            | "GUILD_MEMBER_ADD"
            | "GUILD_MEMBER_REMOVE"
    ) && let Ok(Obj(view)) = serde_json::from_str::<Obj<View<'_>>>(json)
    {
        return Ok(map_view(name, &view, sequence, context).map(|e| context.stamp(e)));
    }
    let data: Value = serde_json::from_str(json)?;
    Ok(map_tree(name, &data, sequence, context).map(|e| context.stamp(e)))
}

/// The mapping from a parsed tree, without the raw payload.
fn map_tree(
    name: &str,
    data: &Value,
    sequence: Option<u64>,
    context: &DispatchContext,
) -> Option<EventData> {
    let event = match name {
        "MESSAGE_CREATE" => {
            if !context.deliver_bot_messages && by_a_bot(data, context) {
                return None;
            }
            let id = non_empty_id(data, "/id")?;
            base(data, &id, EventKind::Message(message(data)))
        }
        "MESSAGE_UPDATE" => {
            if !context.deliver_bot_messages && by_a_bot(data, context) {
                return None;
            }
            let id = non_empty_id(data, "/id")?;
            let edited = text(data, "/edited_timestamp").unwrap_or_default();
            base(
                data,
                &format!("{id}:edit:{edited}"),
                EventKind::Edited(message(data)),
            )
        }
        "MESSAGE_DELETE" => {
            let id = non_empty_id(data, "/id")?;
            base(
                data,
                &format!("{id}:delete"),
                EventKind::Deleted(Deleted {
                    message_id: MessageId::new(&id),
                }),
            )
        }
        "MESSAGE_REACTION_ADD" | "MESSAGE_REACTION_REMOVE" => {
            let message_id = text(data, "/message_id")?;
            let user = text(data, "/user_id").unwrap_or_default();
            let emoji = text(data, "/emoji/name")
                .or_else(|| text(data, "/emoji/id"))
                .unwrap_or_default();
            let removed = name == "MESSAGE_REACTION_REMOVE";
            let suffix = if removed { "remove" } else { "add" };
            let mut event = base(
                data,
                &sequenced(context, sequence, || {
                    format!("{message_id}:{user}:{emoji}:{suffix}")
                }),
                EventKind::Reaction(Reaction {
                    message_id: MessageId::new(&message_id),
                    emoji,
                    removed,
                }),
            );
            event.sender = (!user.is_empty()).then(|| UserId::new(&user));
            event
        }
        "GUILD_MEMBER_ADD" | "GUILD_MEMBER_REMOVE" => {
            let guild = text(data, "/guild_id")?;
            let user = text(data, "/user/id")?;
            let joined = name == "GUILD_MEMBER_ADD";
            let members = Members {
                users: vec![UserId::new(&user)],
            };
            let kind = if joined {
                EventKind::MemberJoined(members)
            } else {
                EventKind::MemberLeft(members)
            };
            let suffix = if joined { "join" } else { "leave" };
            let id = sequenced(context, sequence, || format!("{guild}:{user}:{suffix}"));
            let mut event = EventData::from_platform(Platform::DISCORD, id, guild.as_str(), kind);
            event.sender = Some(UserId::new(&user));
            event
        }
        "INTERACTION_CREATE" => interaction_event(data)?,
        _ => {
            // Hashed only when no session and sequence name the event.
            let id = sequenced(context, sequence, || {
                let own = non_empty_id(data, "/id")
                    .unwrap_or_else(|| content_id(&json!({"t": name, "d": data})).to_string());
                format!("{name}:{own}")
            });
            let conversation = text(data, "/channel_id")
                .or_else(|| text(data, "/guild_id"))
                .unwrap_or_else(|| "discord".to_owned());
            let kind = EventKind::Other(Other {
                name: name.to_owned(),
            });
            let mut event = EventData::from_platform(Platform::DISCORD, id, conversation, kind);
            if let Some(at) = non_empty_id(data, "/id")
                .as_deref()
                .and_then(snowflake_time)
            {
                event.occurred_at = at;
            }
            event
        }
    };
    Some(event)
}

fn by_a_bot(data: &Value, context: &DispatchContext) -> bool {
    let bot = data.pointer("/author/bot").and_then(Value::as_bool) == Some(true);
    let own = context.bot_user_id.is_some() && text(data, "/author/id") == context.bot_user_id;
    bot || own || data.get("webhook_id").is_some_and(|w| !w.is_null())
}

/// An event in the data's channel, from its author, at the snowflake's time.
fn base(data: &Value, id: &str, kind: EventKind) -> EventData {
    let channel = text(data, "/channel_id").unwrap_or_else(|| "discord".to_owned());
    let mut event = EventData::from_platform(Platform::DISCORD, id, channel, kind);
    event.sender = text(data, "/author/id").map(UserId::from);
    if let Some(at) = non_empty_id(data, "/id")
        .as_deref()
        .and_then(snowflake_time)
    {
        event.occurred_at = at;
    }
    event
}

fn message(data: &Value) -> Message {
    let attachments = data
        .get("attachments")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|a| {
                    let content_type = text(a, "/content_type");
                    let kind = match content_type.as_deref() {
                        Some(t) if t.starts_with("image/") => AttachmentKind::Image,
                        Some(t) if t.starts_with("video/") => AttachmentKind::Video,
                        Some(t) if t.starts_with("audio/") => AttachmentKind::Audio,
                        _ => AttachmentKind::File,
                    };
                    Attachment {
                        kind,
                        url: text(a, "/url"),
                        id: text(a, "/id"),
                        name: text(a, "/filename"),
                        mime_type: content_type,
                        size: a.get("size").and_then(Value::as_u64),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mentions = data
        .get("mentions")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|u| {
                    Some(Mention {
                        user: UserId::new(u.get("id")?.as_str()?),
                        index: None,
                        length: None,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        id: non_empty_id(data, "/id").map(MessageId::from),
        text: text(data, "/content").filter(|c| !c.is_empty()),
        attachments,
        mentions,
        reply_to: text(data, "/message_reference/message_id").map(MessageId::from),
    }
}

/// Maps an interaction (gateway `INTERACTION_CREATE` or an HTTP interaction); `None` for PING.
pub fn from_interaction(data: &Value) -> Option<Event> {
    interaction_event(data).map(|event| Event::from(event).with_raw(data.clone()))
}

/// [`from_interaction`] without the raw payload.
fn interaction_event(data: &Value) -> Option<EventData> {
    let id = non_empty_id(data, "/id")?;
    let interaction_type = data.get("type").and_then(Value::as_u64).unwrap_or(0);
    let kind = match interaction_type {
        1 => return None,
        2 => EventKind::Command(Command {
            name: text(data, "/data/name").unwrap_or_default(),
            options: options(data.pointer("/data/options")),
        }),
        3 => {
            let custom_id = text(data, "/data/custom_id").unwrap_or_default();
            let is_button = data.pointer("/data/component_type").and_then(Value::as_u64) == Some(2);
            match custom_id.strip_prefix(TEXT_CUSTOM_ID_PREFIX) {
                Some(said) if is_button => EventKind::Message(Message::text(said)),
                _ => EventKind::Postback(Postback {
                    data: custom_id,
                    params: data.pointer("/data/values").cloned().unwrap_or(Value::Null),
                }),
            }
        }
        5 => EventKind::Postback(Postback {
            data: text(data, "/data/custom_id").unwrap_or_default(),
            params: Value::Object(modal_fields(data.pointer("/data/components"))),
        }),
        4 => EventKind::Other(Other {
            name: "APPLICATION_COMMAND_AUTOCOMPLETE".to_owned(),
        }),
        other => EventKind::Other(Other {
            name: format!("INTERACTION_{other}"),
        }),
    };
    let channel = text(data, "/channel_id")
        .or_else(|| text(data, "/channel/id"))
        .or_else(|| text(data, "/user/id"))
        .unwrap_or_else(|| "discord".to_owned());
    let mut event = EventData::from_platform(Platform::DISCORD, id.as_str(), channel, kind);
    event.sender = text(data, "/member/user/id")
        .or_else(|| text(data, "/user/id"))
        .map(UserId::from);
    event.reply_token = text(data, "/token").map(ReplyToken::new);
    if let Some(at) = snowflake_time(&id) {
        event.occurred_at = at;
    }
    Some(event)
}

/// A JSON string, borrowed from the frame's text unless it has escapes.
#[derive(Debug)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor(PhantomData))
    }
}

/// An object only: a derived struct would also take an array, field by position, where the
/// tree's pointers find nothing.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjVisitor(PhantomData)).map(Obj)
    }
}

/// The fields of message, reaction and member dispatches the mapping reads, borrowed. Every
/// type is the one the tree mapping accepts; anything else fails the view and takes the tree.
#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    channel_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    guild_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    author: Option<Obj<UserView<'a>>>,
    #[serde(default)]
    webhook_id: Option<IgnoredAny>,
    #[serde(borrow, default)]
    content: Option<Text<'a>>,
    #[serde(borrow, default)]
    edited_timestamp: Option<Text<'a>>,
    #[serde(borrow, default)]
    attachments: Option<Vec<Obj<AttachmentView<'a>>>>,
    #[serde(borrow, default)]
    mentions: Option<Vec<Obj<UserView<'a>>>>,
    #[serde(borrow, default)]
    message_reference: Option<Obj<ReferenceView<'a>>>,
    #[serde(borrow, default)]
    message_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    emoji: Option<Obj<EmojiView<'a>>>,
    #[serde(borrow, default)]
    user: Option<Obj<UserView<'a>>>,
}

#[derive(Deserialize)]
struct UserView<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(default)]
    bot: Option<bool>,
}

#[derive(Deserialize)]
struct AttachmentView<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    filename: Option<Text<'a>>,
    #[serde(borrow, default)]
    content_type: Option<Text<'a>>,
    #[serde(borrow, default)]
    url: Option<Text<'a>>,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct ReferenceView<'a> {
    #[serde(borrow, default)]
    message_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct EmojiView<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
}

fn str_of<'x>(text: &'x Option<Text<'_>>) -> Option<&'x str> {
    text.as_ref().map(|t| t.0.as_ref())
}

fn user_id<'x>(user: &'x Option<Obj<UserView<'_>>>) -> Option<&'x str> {
    user.as_ref().and_then(|u| str_of(&u.0.id))
}

/// The same mapping as [`map_tree`] for the dispatches [`View`] covers.
fn map_view(
    name: &str,
    view: &View<'_>,
    sequence: Option<u64>,
    context: &DispatchContext,
) -> Option<EventData> {
    let own_id = || str_of(&view.id).filter(|id| !id.is_empty());
    let event = match name {
        "MESSAGE_CREATE" | "MESSAGE_UPDATE" => {
            if !context.deliver_bot_messages && view_by_a_bot(view, context) {
                return None;
            }
            let id = own_id()?;
            if name == "MESSAGE_CREATE" {
                view_base(view, id, EventKind::Message(view_message(view)))
            } else {
                let edited = str_of(&view.edited_timestamp).unwrap_or_default();
                view_base(
                    view,
                    &format!("{id}:edit:{edited}"),
                    EventKind::Edited(view_message(view)),
                )
            }
        }
        "MESSAGE_DELETE" => {
            let id = own_id()?;
            view_base(
                view,
                &format!("{id}:delete"),
                EventKind::Deleted(Deleted {
                    message_id: MessageId::new(id),
                }),
            )
        }
        "MESSAGE_REACTION_ADD" | "MESSAGE_REACTION_REMOVE" => {
            let message_id = str_of(&view.message_id)?;
            let user = str_of(&view.user_id).unwrap_or_default();
            let emoji = view.emoji.as_ref().map(|e| &e.0);
            let emoji = emoji
                .and_then(|e| str_of(&e.name).or_else(|| str_of(&e.id)))
                .unwrap_or_default();
            let removed = name == "MESSAGE_REACTION_REMOVE";
            let suffix = if removed { "remove" } else { "add" };
            let mut event = view_base(
                view,
                &sequenced(context, sequence, || {
                    format!("{message_id}:{user}:{emoji}:{suffix}")
                }),
                EventKind::Reaction(Reaction {
                    message_id: MessageId::new(message_id),
                    emoji: emoji.to_owned(),
                    removed,
                }),
            );
            event.sender = (!user.is_empty()).then(|| UserId::new(user));
            event
        }
        "GUILD_MEMBER_ADD" | "GUILD_MEMBER_REMOVE" => {
            let guild = str_of(&view.guild_id)?;
            let user = user_id(&view.user)?;
            let joined = name == "GUILD_MEMBER_ADD";
            let members = Members {
                users: vec![UserId::new(user)],
            };
            let kind = if joined {
                EventKind::MemberJoined(members)
            } else {
                EventKind::MemberLeft(members)
            };
            let suffix = if joined { "join" } else { "leave" };
            let id = sequenced(context, sequence, || format!("{guild}:{user}:{suffix}"));
            let mut event = EventData::from_platform(Platform::DISCORD, id, guild, kind);
            event.sender = Some(UserId::new(user));
            event
        }
        _ => return None,
    };
    Some(event)
}

fn view_by_a_bot(view: &View<'_>, context: &DispatchContext) -> bool {
    let author = view.author.as_ref().map(|a| &a.0);
    let bot = author.and_then(|a| a.bot) == Some(true);
    let own =
        context.bot_user_id.is_some() && user_id(&view.author) == context.bot_user_id.as_deref();
    bot || own || view.webhook_id.is_some()
}

fn view_base(view: &View<'_>, id: &str, kind: EventKind) -> EventData {
    let channel = str_of(&view.channel_id).unwrap_or("discord");
    let mut event = EventData::from_platform(Platform::DISCORD, id, channel, kind);
    event.sender = user_id(&view.author).map(UserId::new);
    if let Some(at) = str_of(&view.id)
        .filter(|id| !id.is_empty())
        .and_then(snowflake_time)
    {
        event.occurred_at = at;
    }
    event
}

fn view_message(view: &View<'_>) -> Message {
    let attachments = view
        .attachments
        .iter()
        .flatten()
        .map(|Obj(a)| {
            let content_type = str_of(&a.content_type);
            let kind = match content_type {
                Some(t) if t.starts_with("image/") => AttachmentKind::Image,
                Some(t) if t.starts_with("video/") => AttachmentKind::Video,
                Some(t) if t.starts_with("audio/") => AttachmentKind::Audio,
                _ => AttachmentKind::File,
            };
            Attachment {
                kind,
                url: str_of(&a.url).map(str::to_owned),
                id: str_of(&a.id).map(str::to_owned),
                name: str_of(&a.filename).map(str::to_owned),
                mime_type: content_type.map(str::to_owned),
                size: a.size,
            }
        })
        .collect();
    let mentions = view
        .mentions
        .iter()
        .flatten()
        .filter_map(|Obj(u)| {
            Some(Mention {
                user: UserId::new(str_of(&u.id)?),
                index: None,
                length: None,
            })
        })
        .collect();
    let reference = view.message_reference.as_ref().map(|r| &r.0);
    Message {
        id: str_of(&view.id)
            .filter(|id| !id.is_empty())
            .map(MessageId::new),
        text: str_of(&view.content)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        attachments,
        mentions,
        reply_to: reference
            .and_then(|r| str_of(&r.message_id))
            .map(MessageId::new),
    }
}

/// Command options by name; sub-commands and groups become nested objects.
fn options(list: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for option in list.and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = option.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = match option.get("value") {
            Some(value) => value.clone(),
            None => Value::Object(options(option.get("options"))),
        };
        out.insert(name.to_owned(), value);
    }
    out
}

/// The text inputs of a modal by `custom_id`.
fn modal_fields(rows: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for row in rows.and_then(Value::as_array).into_iter().flatten() {
        let inputs = row.get("components").and_then(Value::as_array);
        for input in inputs.into_iter().flatten().chain(std::iter::once(row)) {
            if let (Some(id), Some(value)) = (
                input.get("custom_id").and_then(Value::as_str),
                input.get("value"),
            ) {
                out.insert(id.to_owned(), value.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
