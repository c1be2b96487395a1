//! The webhook request body and its events.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::message::MessageContent;

/// A whole webhook request body: `{"destination": ..., "events": [...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct CallbackRequest {
    /// The bot's user id, which received the events.
    #[serde(default)]
    pub destination: String,
    /// The events; empty for the console's URL verification.
    pub events: Vec<WebhookEvent>,
}

string_enum!(
    /// The channel's state for the event's chat.
    Mode {
        /// The bot may reply.
        Active = "active",
        /// Another module channel holds the chat: no reply token; do not send messages.
        Standby = "standby",
    }
);

/// Where an event happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// A one-to-one chat with a user.
    User {
        /// The user.
        user_id: String,
    },
    /// A group chat.
    Group {
        /// The group.
        group_id: String,
        /// The user who caused the event, when given (message events of consenting users).
        user_id: Option<String>,
    },
    /// A multi-person chat (room).
    Room {
        /// The room.
        room_id: String,
        /// The user who caused the event, when given.
        user_id: Option<String>,
    },
    /// A source type this crate does not know.
    Unknown {
        /// `source.type` as LINE sent it.
        source_type: String,
        /// `source.userId`, if any.
        user_id: Option<String>,
    },
}

impl Source {
    /// The chat to answer in: the group, the room or the user.
    pub fn chat_id(&self) -> Option<&str> {
        match self {
            Source::User { user_id } => Some(user_id),
            Source::Group { group_id, .. } => Some(group_id),
            Source::Room { room_id, .. } => Some(room_id),
            Source::Unknown { user_id, .. } => user_id.as_deref(),
        }
    }

    /// The user who caused the event, when LINE says.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Source::User { user_id } => Some(user_id),
            Source::Group { user_id, .. }
            | Source::Room { user_id, .. }
            | Source::Unknown { user_id, .. } => user_id.as_deref(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSource {
    #[serde(rename = "type", default)]
    source_type: String,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    group_id: Option<String>,
    #[serde(default)]
    room_id: Option<String>,
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let wire = WireSource::deserialize(d)?;
        Ok(
            match (wire.source_type.as_str(), wire.group_id, wire.room_id) {
                ("user", _, _) => Source::User {
                    user_id: wire
                        .user_id
                        .ok_or_else(|| D::Error::missing_field("userId"))?,
                },
                ("group", Some(group_id), _) => Source::Group {
                    group_id,
                    user_id: wire.user_id,
                },
                ("room", _, Some(room_id)) => Source::Room {
                    room_id,
                    user_id: wire.user_id,
                },
                ("group", None, _) => return Err(D::Error::missing_field("groupId")),
                ("room", _, None) => return Err(D::Error::missing_field("roomId")),
                (other, _, _) => Source::Unknown {
                    source_type: other.to_owned(),
                    user_id: wire.user_id,
                },
            },
        )
    }
}

/// Redelivery information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeliveryContext {
    /// Whether LINE is sending this event again after a failed delivery.
    #[serde(default)]
    pub is_redelivery: bool,
}

/// One webhook event: the properties every event has, and its kind.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WebhookEvent {
    /// `type` as LINE sent it.
    pub event_type: String,
    /// Active or standby; absent in old payloads.
    pub mode: Option<Mode>,
    /// When the event happened, in milliseconds since the epoch (unchanged on redelivery).
    pub timestamp: i64,
    /// Where it happened; absent for module and bot events.
    pub source: Option<Source>,
    /// The event's unique id (a ULID), the same on redelivery; absent in old payloads.
    pub webhook_event_id: Option<String>,
    /// Redelivery information.
    pub delivery_context: DeliveryContext,
    /// The token to reply with, on replyable events in active mode.
    pub reply_token: Option<String>,
    /// What happened.
    pub kind: EventKind,
}

/// What a webhook event is about, by `type`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// `message`: a user sent a message.
    Message(MessageContent),
    /// `messageEdited`: a user edited a message (group chats); the new content.
    MessageEdited(MessageContent),
    /// `unsend`: a user unsent a message.
    Unsend(Unsend),
    /// `follow`: a user added or unblocked the bot.
    Follow(Follow),
    /// `unfollow`: a user blocked the bot.
    Unfollow,
    /// `join`: the bot joined a group or room.
    Join,
    /// `leave`: the bot was removed from a group or room.
    Leave,
    /// `memberJoined`: users joined a group or room the bot is in.
    MemberJoined(Members),
    /// `memberLeft`: users left a group or room the bot is in.
    MemberLeft(Members),
    /// `postback`: a postback action was taken.
    Postback(Postback),
    /// `videoPlayComplete`: a user watched a video to the end.
    VideoPlayComplete(VideoPlayComplete),
    /// `beacon`: a user came near a LINE Beacon.
    Beacon(Beacon),
    /// `accountLink`: a user linked (or failed to link) their account.
    AccountLink(AccountLink),
    /// `things`: a LINE Things device event (deprecated by LINE).
    Things(Things),
    /// `membership`: a user joined, left or renewed a membership.
    Membership(Membership),
    /// `module`: the module channel was attached to or detached from a bot.
    Module(Module),
    /// `activated`: the module channel got chat control.
    Activated(Activated),
    /// `deactivated`: the module channel lost chat control.
    Deactivated,
    /// `botSuspended`: the bot was suspended.
    BotSuspended,
    /// `botResumed`: the bot was resumed.
    BotResumed,
    /// `delivery`: a LINE notification message (PNP) was delivered.
    Delivery(Pnp),
    /// An event type this crate does not know; the payload is in the raw JSON.
    Unknown,
}

/// `unsend`: which message was unsent.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Unsend {
    /// The unsent message.
    pub message_id: String,
}

/// `follow`: whether the user is a new friend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Follow {
    /// True when the user unblocked the bot; false for a new friend.
    #[serde(default)]
    pub is_unblocked: bool,
}

/// `joined` / `left`: the users.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Members {
    /// The users, as `{"type": "user", "userId": ...}` sources.
    pub members: Vec<MemberUser>,
}

/// One member who joined or left.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MemberUser {
    /// The user.
    pub user_id: String,
}

/// `postback`: the data and the picker's or rich menu's parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Postback {
    /// The action's data.
    pub data: String,
    /// Parameters of a date/time picker or rich menu switch action.
    #[serde(default)]
    pub params: Option<PostbackParams>,
}

/// Parameters of a postback from a date/time picker or a rich menu switch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PostbackParams {
    /// `yyyy-MM-dd` from a date picker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// `HH:mm` from a time picker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `yyyy-MM-ddTHH:mm` from a datetime picker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datetime: Option<String>,
    /// The alias switched to by a rich menu switch action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_rich_menu_alias_id: Option<String>,
    /// Whether the rich menu switch succeeded (`SUCCESS`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `videoPlayComplete`: the video's tracking id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VideoPlayComplete {
    /// The `trackingId` the bot set on the video message.
    pub tracking_id: String,
}

string_enum!(
    /// What a beacon event means.
    BeaconType {
        /// Entered the beacon's range.
        Enter = "enter",
        /// Tapped the beacon banner.
        Banner = "banner",
        /// Stays in range.
        Stay = "stay",
    }
);

/// `beacon`: which beacon and what happened.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Beacon {
    /// Hardware id of the beacon.
    pub hwid: String,
    /// What happened.
    #[serde(rename = "type")]
    pub beacon_type: BeaconType,
    /// Device message, hex.
    #[serde(default)]
    pub dm: Option<String>,
}

string_enum!(
    /// Whether account linking worked.
    LinkResult {
        /// Linked.
        Ok = "ok",
        /// Not linked.
        Failed = "failed",
    }
);

/// `link`: the result of account linking.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct AccountLink {
    /// Linked or not.
    pub result: LinkResult,
    /// The nonce the bot issued.
    pub nonce: String,
}

string_enum!(
    /// What a LINE Things device did.
    ThingsType {
        /// The device was linked.
        Link = "link",
        /// The device was unlinked.
        Unlink = "unlink",
        /// An automatic scenario ran.
        ScenarioResult = "scenarioResult",
    }
);

/// `things`: a LINE Things device event.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Things {
    /// The device.
    pub device_id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub things_type: ThingsType,
    /// The scenario's result, for `scenarioResult`.
    #[serde(default)]
    pub result: Option<Value>,
}

string_enum!(
    /// What happened to a membership.
    MembershipType {
        /// The user joined.
        Joined = "joined",
        /// The user left.
        Left = "left",
        /// The user renewed.
        Renewed = "renewed",
    }
);

/// `membership`: a membership change.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Membership {
    /// What happened.
    #[serde(rename = "type")]
    pub membership_type: MembershipType,
    /// The membership plan.
    pub membership_id: i64,
}

string_enum!(
    /// What happened to a module channel.
    ModuleType {
        /// Attached to a bot.
        Attached = "attached",
        /// Detached from a bot.
        Detached = "detached",
    }
);

/// `module`: a module channel attached or detached.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Module {
    /// Attached or detached.
    #[serde(rename = "type")]
    pub module_type: ModuleType,
    /// The bot's user id.
    pub bot_id: String,
    /// Scopes granted, when attached.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Why it was detached (`bot_deleted`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `chatControl` of an `activated` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ChatControl {
    /// When the chat control expires, in milliseconds since the epoch.
    pub expire_at: i64,
}

/// `activated`: chat control given to the module channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Activated {
    /// Until when.
    pub chat_control: ChatControl,
}

/// `delivery`: a LINE notification message was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Pnp {
    /// The hashed phone number the bot sent to.
    pub data: String,
}

/// One element of `events[]` read in one pass: the common fields, and each type's payload as
/// borrowed JSON text, read into its type once the `type` is known.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent<'a> {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    timestamp: i64,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    webhook_event_id: Option<String>,
    #[serde(default)]
    delivery_context: DeliveryContext,
    #[serde(default)]
    reply_token: Option<String>,
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

impl WebhookEvent {
    /// Parses one element of `events[]`, dispatching on its `type`.
    ///
    /// Unknown types parse as [`EventKind::Unknown`]; unknown fields are ignored.
    ///
    /// # Errors
    ///
    /// Fails when the object lacks `type` or a known type lacks a field LINE always sends.
    pub fn from_value(value: &Value) -> Result<Self, serde_json::Error> {
        Self::from_json(&value.to_string())
    }

    /// As [`WebhookEvent::from_value`], from the event's JSON text: one pass over it, no tree
    /// (what the webhook does for every event).
    ///
    /// # Errors
    ///
    /// Fails when the text is not an object, lacks `type`, or a known type lacks a field LINE
    /// always sends.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        let wire: WireEvent<'_> = serde_json::from_str(json)?;
        let kind = match wire.event_type.as_str() {
            "message" => EventKind::Message(MessageContent::from_json(
                field(wire.message, "message")?.get(),
            )?),
            "messageEdited" => EventKind::MessageEdited(MessageContent::from_json(
                field(wire.message, "message")?.get(),
            )?),
            "unsend" => EventKind::Unsend(payload(wire.unsend, "unsend")?),
            "follow" => EventKind::Follow(match wire.follow {
                Some(follow) => serde_json::from_str(follow.get())?,
                None => Follow::default(),
            }),
            "unfollow" => EventKind::Unfollow,
            "join" => EventKind::Join,
            "leave" => EventKind::Leave,
            "memberJoined" => EventKind::MemberJoined(payload(wire.joined, "joined")?),
            "memberLeft" => EventKind::MemberLeft(payload(wire.left, "left")?),
            "postback" => EventKind::Postback(payload(wire.postback, "postback")?),
            "videoPlayComplete" => EventKind::VideoPlayComplete(payload(
                wire.video_play_complete,
                "videoPlayComplete",
            )?),
            "beacon" => EventKind::Beacon(payload(wire.beacon, "beacon")?),
            "accountLink" => EventKind::AccountLink(payload(wire.link, "link")?),
            "things" => EventKind::Things(payload(wire.things, "things")?),
            "membership" => EventKind::Membership(payload(wire.membership, "membership")?),
            "module" => EventKind::Module(payload(wire.module, "module")?),
            "activated" => EventKind::Activated(serde_json::from_str(json)?),
            "deactivated" => EventKind::Deactivated,
            "botSuspended" => EventKind::BotSuspended,
            "botResumed" => EventKind::BotResumed,
            "delivery" => EventKind::Delivery(payload(wire.delivery, "delivery")?),
            _ => EventKind::Unknown,
        };
        Ok(Self {
            event_type: wire.event_type,
            mode: wire.mode,
            timestamp: wire.timestamp,
            source: wire.source,
            webhook_event_id: wire.webhook_event_id,
            delivery_context: wire.delivery_context,
            reply_token: wire.reply_token,
            kind,
        })
    }

    /// Whether the event arrived in standby mode (no reply token; the bot should not send).
    pub fn is_standby(&self) -> bool {
        self.mode == Some(Mode::Standby)
    }
}

impl<'de> Deserialize<'de> for WebhookEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_value(&value).map_err(serde::de::Error::custom)
    }
}

fn field<'a>(
    payload: Option<&'a RawValue>,
    name: &'static str,
) -> Result<&'a RawValue, serde_json::Error> {
    payload.ok_or_else(|| serde::de::Error::missing_field(name))
}

fn payload<T: serde::de::DeserializeOwned>(
    payload: Option<&RawValue>,
    name: &'static str,
) -> Result<T, serde_json::Error> {
    serde_json::from_str(field(payload, name)?.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_event_types_and_fields_parse() {
        let e = WebhookEvent::from_value(&json!({
            "type": "teleport", "timestamp": 1, "mode": "hyperactive",
            "source": {"type": "galaxy", "userId": "U1"}, "webhookEventId": "01X",
            "brandNew": {"x": 1}
        }))
        .unwrap();
        assert_eq!(e.kind, EventKind::Unknown);
        assert_eq!(e.event_type, "teleport");
        assert_eq!(e.mode, Some(Mode::Unknown("hyperactive".into())));
        assert_eq!(e.source.as_ref().and_then(Source::user_id), Some("U1"));
    }

    #[test]
    fn sources_give_the_chat_to_answer_in() {
        let group: Source =
            serde_json::from_value(json!({"type": "group", "groupId": "G1", "userId": "U1"}))
                .unwrap();
        assert_eq!(group.chat_id(), Some("G1"));
        assert_eq!(group.user_id(), Some("U1"));
        let room: Source = serde_json::from_value(json!({"type": "room", "roomId": "R1"})).unwrap();
        assert_eq!(room.chat_id(), Some("R1"));
        assert_eq!(room.user_id(), None);
        assert!(serde_json::from_value::<Source>(json!({"type": "group"})).is_err());
    }

    #[test]
    fn a_whole_body_parses() {
        let body: CallbackRequest = serde_json::from_value(json!({
            "destination": "Uabc",
            "events": [{"type": "unfollow", "timestamp": 5, "source": {"type": "user", "userId": "U2"}}]
        }))
        .unwrap();
        assert_eq!(body.destination, "Uabc");
        assert_eq!(body.events[0].kind, EventKind::Unfollow);
    }
}
