//! The webhook body, its entries and the messaging items in them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::message::Message;

/// What a webhook body is about: `object`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Object {
    /// A Facebook Page's Messenger conversations.
    Page,
    /// An Instagram professional account's conversations.
    Instagram,
    /// Anything else (`user`, `permissions`, ...), which this adapter does not serve.
    #[serde(untagged)]
    Unknown(String),
}

/// A whole webhook body: `{"object": "page", "entry": [...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct WebhookBody {
    /// What the entries are about.
    pub object: Object,
    /// The entries, one per page (or per page and time slice); Meta may batch several.
    #[serde(default)]
    pub entry: Vec<Entry>,
}

/// One entry of a webhook body: the items of one page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Entry {
    /// The page (or Instagram account) id.
    #[serde(default, deserialize_with = "super::string_or_number_required")]
    pub id: String,
    /// When Meta sent the entry, in milliseconds since the epoch.
    #[serde(default)]
    pub time: i64,
    /// Items of conversations this app owns (or where no handover is in use).
    #[serde(default)]
    pub messaging: Vec<MessagingEvent>,
    /// Items of conversations another app owns (handover protocol): for reading, not answering.
    #[serde(default)]
    pub standby: Vec<MessagingEvent>,
}

/// A party of a messaging item: a user's page-scoped id (PSID), the page, or a `user_ref` of a
/// user known only through the checkbox plugin.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Party {
    /// The PSID (or IGSID, or page id).
    #[serde(
        default,
        deserialize_with = "super::string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<String>,
    /// A user reference (checkbox plugin, optins), when there is no PSID yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ref: Option<String>,
}

impl Party {
    /// The id, or else the user reference.
    pub fn any_id(&self) -> Option<&str> {
        self.id.as_deref().or(self.user_ref.as_deref())
    }
}

/// One item of `messaging[]` (or `standby[]`): who, when, and what happened.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MessagingEvent {
    /// Who caused it: the user, or the page for echoes. Absent on some items (`app_roles`).
    pub sender: Option<Party>,
    /// Who received it: the page, or the user for echoes.
    pub recipient: Option<Party>,
    /// When it happened, in milliseconds; deliveries may lack it.
    pub timestamp: Option<i64>,
    /// What happened.
    pub kind: MessagingKind,
}

/// What a messaging item is, by the key that carries its payload.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MessagingKind {
    /// `message`: a user's message, or an echo of the page's own ([`Message::is_echo`]).
    Message(Message),
    /// `postback`: a button (or persistent menu item, or Get Started) was tapped.
    Postback(Postback),
    /// `reaction`: a reaction was added to or removed from a message.
    Reaction(Reaction),
    /// `read`: the user read the page's messages.
    Read(Read),
    /// `delivery`: the page's messages were delivered.
    Delivery(Delivery),
    /// `referral`: the user came through a link, an ad or a code while in a conversation.
    Referral(Referral),
    /// `optin`: the user opted in (send-to-Messenger plugin, checkbox, notification request).
    Optin(Optin),
    /// `account_linking`: the user linked or unlinked an account.
    AccountLinking(AccountLinking),
    /// `pass_thread_control`: another app passed the conversation to this one.
    PassThreadControl(PassThreadControl),
    /// `take_thread_control`: another app took the conversation from this one.
    TakeThreadControl(TakeThreadControl),
    /// `request_thread_control`: another app asks for the conversation.
    RequestThreadControl(RequestThreadControl),
    /// `app_roles`: the page assigned handover roles; app id → roles.
    AppRoles(BTreeMap<String, Vec<String>>),
    /// A key this crate does not know, with its payload.
    Unknown {
        /// The key (`policy_enforcement`, `game_play`, ...).
        key: String,
        /// Its payload.
        payload: Value,
    },
}

impl MessagingKind {
    /// The key the item carried (`message`, `postback`, ...).
    pub fn key(&self) -> &str {
        match self {
            MessagingKind::Message(_) => "message",
            MessagingKind::Postback(_) => "postback",
            MessagingKind::Reaction(_) => "reaction",
            MessagingKind::Read(_) => "read",
            MessagingKind::Delivery(_) => "delivery",
            MessagingKind::Referral(_) => "referral",
            MessagingKind::Optin(_) => "optin",
            MessagingKind::AccountLinking(_) => "account_linking",
            MessagingKind::PassThreadControl(_) => "pass_thread_control",
            MessagingKind::TakeThreadControl(_) => "take_thread_control",
            MessagingKind::RequestThreadControl(_) => "request_thread_control",
            MessagingKind::AppRoles(_) => "app_roles",
            MessagingKind::Unknown { key, .. } => key,
        }
    }
}

/// Keys every item has, which never name its kind.
const COMMON_KEYS: [&str; 3] = ["sender", "recipient", "timestamp"];

impl MessagingEvent {
    /// Parses one item of `messaging[]` or `standby[]`.
    ///
    /// # Errors
    ///
    /// Fails when the item is not an object, or a known key's payload lacks what it must have.
    pub fn from_value(value: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }

    /// Whether this is an echo of a message the page sent.
    pub fn is_echo(&self) -> bool {
        matches!(&self.kind, MessagingKind::Message(m) if m.is_echo)
    }
}

impl<'de> Deserialize<'de> for MessagingEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut map = Map::<String, Value>::deserialize(d)?;
        let field = |map: &mut Map<String, Value>, key: &str| -> Result<Option<Party>, D::Error> {
            match map.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => Party::deserialize(v).map(Some).map_err(D::Error::custom),
            }
        };
        let sender = field(&mut map, "sender")?;
        let recipient = field(&mut map, "recipient")?;
        let timestamp = map.remove("timestamp").and_then(|t| t.as_i64());
        let kind = kind_of(map).map_err(D::Error::custom)?;
        Ok(MessagingEvent {
            sender,
            recipient,
            timestamp,
            kind,
        })
    }
}

fn kind_of(mut map: Map<String, Value>) -> Result<MessagingKind, serde_json::Error> {
    fn take<T: serde::de::DeserializeOwned>(
        map: &mut Map<String, Value>,
        key: &str,
    ) -> Option<Result<T, serde_json::Error>> {
        map.remove(key).map(T::deserialize)
    }
    // The order matters only for items with several payload keys; `message` goes first.
    macro_rules! known {
        ($($key:literal => $variant:path,)+) => {
            $(if let Some(parsed) = take(&mut map, $key) {
                return parsed.map($variant);
            })+
        };
    }
    known! {
        "message" => MessagingKind::Message,
        "postback" => MessagingKind::Postback,
        "reaction" => MessagingKind::Reaction,
        "read" => MessagingKind::Read,
        "delivery" => MessagingKind::Delivery,
        "referral" => MessagingKind::Referral,
        "optin" => MessagingKind::Optin,
        "account_linking" => MessagingKind::AccountLinking,
        "pass_thread_control" => MessagingKind::PassThreadControl,
        "take_thread_control" => MessagingKind::TakeThreadControl,
        "request_thread_control" => MessagingKind::RequestThreadControl,
        "app_roles" => MessagingKind::AppRoles,
    }
    let key = map
        .keys()
        .find(|k| !COMMON_KEYS.contains(&k.as_str()))
        .cloned()
        .unwrap_or_else(|| "unknown".to_owned());
    let payload = map.remove(&key).unwrap_or(Value::Null);
    Ok(MessagingKind::Unknown { key, payload })
}

/// A tapped button, persistent menu item or Get Started button.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Postback {
    /// The button's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the bot put in the button's `payload`.
    #[serde(default)]
    pub payload: String,
    /// How the user got here, for Get Started taps that came through a link or ad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<Referral>,
    /// The id of the message the tap created, when Meta sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
}

/// A reaction's action.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReactionAction {
    /// Added.
    React,
    /// Removed.
    Unreact,
    /// An action this crate does not know.
    #[serde(untagged)]
    Unknown(String),
}

/// A reaction to a message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Reaction {
    /// The reaction's name: `smile`, `angry`, `sad`, `wow`, `love`, `like`, `dislike`, `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<String>,
    /// The emoji itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// Added or removed.
    pub action: ReactionAction,
    /// The message reacted to.
    #[serde(default)]
    pub mid: String,
}

/// The user read the page's messages up to `watermark` (Instagram names the message instead).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Read {
    /// Every message sent at or before this time (ms) was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<i64>,
    /// Instagram: the message read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
}

/// The page's messages were delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Delivery {
    /// The messages delivered, when Meta lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mids: Vec<String>,
    /// Every message sent at or before this time (ms) was delivered.
    #[serde(default)]
    pub watermark: i64,
}

/// How a user came to the conversation: an m.me link, an ad, a Messenger code.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Referral {
    /// The `ref` parameter of the link.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub referral_ref: Option<String>,
    /// `SHORTLINK`, `ADS`, `MESSENGER_CODE`, `DISCOVER_TAB`, `CUSTOMER_CHAT_PLUGIN`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `OPEN_THREAD`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub referral_type: Option<String>,
    /// The ad, for `ADS`.
    #[serde(
        default,
        deserialize_with = "super::string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub ad_id: Option<String>,
    /// The web page of the chat plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referer_uri: Option<String>,
}

/// The user opted in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Optin {
    /// The plugin's `data-ref`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub optin_ref: Option<String>,
    /// Checkbox plugin: the reference to message the user by, until a PSID is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ref: Option<String>,
    /// `notification_messages` for marketing message opt-ins.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub optin_type: Option<String>,
    /// The payload of a notification request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The token for marketing messages to this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_messages_token: Option<String>,
}

/// Linked or unlinked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LinkStatus {
    /// The user linked their account.
    Linked,
    /// The user unlinked it.
    Unlinked,
    /// A status this crate does not know.
    #[serde(untagged)]
    Unknown(String),
}

/// The user linked or unlinked an account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct AccountLinking {
    /// Linked or unlinked.
    pub status: LinkStatus,
    /// On linking, the code the bot's login page passed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_code: Option<String>,
}

/// Another app passed the conversation to this one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct PassThreadControl {
    /// The app that owns the conversation now.
    #[serde(
        default,
        deserialize_with = "super::string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub new_owner_app_id: Option<String>,
    /// The previous owner's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// Another app took the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct TakeThreadControl {
    /// The app that had it.
    #[serde(
        default,
        deserialize_with = "super::string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_owner_app_id: Option<String>,
    /// The taking app's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// Another app asks for the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct RequestThreadControl {
    /// The app asking.
    #[serde(
        default,
        deserialize_with = "super::string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub requested_owner_app_id: Option<String>,
    /// The asking app's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_parse_by_their_key_and_unknown_keys_are_kept() {
        let item = MessagingEvent::from_value(&json!({
            "sender": {"id": "U1"}, "recipient": {"id": 42}, "timestamp": 7,
            "reaction": {"reaction": "love", "emoji": "\u{2764}", "action": "unreact", "mid": "m_1"}
        }))
        .unwrap();
        assert_eq!(item.recipient.unwrap().id.as_deref(), Some("42"));
        let MessagingKind::Reaction(r) = item.kind else {
            panic!()
        };
        assert_eq!(r.action, ReactionAction::Unreact);

        let unknown = MessagingEvent::from_value(&json!({
            "sender": {"id": "U1"}, "timestamp": 7, "game_play": {"score": 3}
        }))
        .unwrap();
        assert_eq!(unknown.kind.key(), "game_play");
        assert!(
            matches!(unknown.kind, MessagingKind::Unknown { ref payload, .. } if payload["score"] == 3)
        );

        assert!(MessagingEvent::from_value(&json!({"message": 3})).is_err());
        assert!(MessagingEvent::from_value(&json!([1])).is_err());
    }

    #[test]
    fn bodies_with_unknown_objects_and_no_entries_parse() {
        let body: WebhookBody =
            serde_json::from_value(json!({"object": "user", "entry": []})).unwrap();
        assert_eq!(body.object, Object::Unknown("user".into()));
        let body: WebhookBody = serde_json::from_value(json!({"object": "instagram",
            "entry": [{"id": "17841", "time": 1, "messaging": [], "standby": [
                {"sender": {"id": "1"}, "recipient": {"id": "2"}, "timestamp": 1, "message": {"mid": "m"}}]}]}))
        .unwrap();
        assert_eq!(body.object, Object::Instagram);
        assert_eq!(body.entry[0].standby.len(), 1);
    }
}
