//! The page's Messenger profile (`/me/messenger_profile`): the Get Started button, the greeting
//! on the welcome screen, the persistent menu and the ice breakers.
//!
//! Set with [`crate::MessengerClient::set_messenger_profile`], read with
//! [`crate::MessengerClient::messenger_profile`], removed with
//! [`crate::MessengerClient::delete_messenger_profile`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The locale Meta shows when the person's own has no entry; greetings and persistent menus must
/// have one.
pub const DEFAULT_LOCALE: &str = "default";
/// Longest greeting text, in characters.
pub const MAX_GREETING_CHARS: usize = 160;
/// Most items of a persistent menu (a flat list since Graph API v8.0).
pub const MAX_MENU_ITEMS: usize = 20;
/// Longest title of a persistent menu item, in characters.
pub const MAX_MENU_TITLE_CHARS: usize = 30;
/// Most ice breaker questions per locale.
pub const MAX_ICE_BREAKERS: usize = 4;
/// Longest ice breaker question, in characters.
pub const MAX_ICE_BREAKER_CHARS: usize = 80;

/// The page's Messenger profile, as set and read. Properties left `None` are not touched when
/// set, and were not asked for (or not set) when read.
///
/// # Examples
///
/// ```
/// use bot_messenger::model::profile::{Greeting, MenuItem, MessengerProfile, PersistentMenu};
///
/// let profile = MessengerProfile::new()
///     .get_started("GET_STARTED")
///     .greeting(vec![Greeting::new("default", "Hello {{user_first_name}}!")])
///     .persistent_menu(vec![PersistentMenu::new(
///         "default",
///         vec![
///             MenuItem::postback("Talk to an agent", "AGENT"),
///             MenuItem::web_url("Shop", "https://shop.example"),
///         ],
///     )]);
/// let json = serde_json::to_value(&profile).unwrap();
/// assert_eq!(json["get_started"]["payload"], "GET_STARTED");
/// assert_eq!(json["persistent_menu"][0]["call_to_actions"][1]["type"], "web_url");
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessengerProfile {
    /// The Get Started button: its postback payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_started: Option<GetStarted>,
    /// The welcome screen's greeting, per locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<Vec<Greeting>>,
    /// The persistent menu, per locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_menu: Option<Vec<PersistentMenu>>,
    /// Questions a person can tap to start a conversation, per locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_breakers: Option<Vec<IceBreakers>>,
    /// Any other property (`whitelisted_domains`, `account_linking_url`, ...), as Meta spells it.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl MessengerProfile {
    /// A profile that sets nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the Get Started button, whose tap arrives as a postback carrying `payload`.
    #[must_use]
    pub fn get_started(mut self, payload: impl Into<String>) -> Self {
        self.get_started = Some(GetStarted {
            payload: payload.into(),
        });
        self
    }

    /// Sets the greeting of every locale (one of them [`DEFAULT_LOCALE`]).
    #[must_use]
    pub fn greeting(mut self, greetings: Vec<Greeting>) -> Self {
        self.greeting = Some(greetings);
        self
    }

    /// Sets the persistent menu of every locale (one of them [`DEFAULT_LOCALE`]); Meta shows it
    /// only when the Get Started button is set too.
    #[must_use]
    pub fn persistent_menu(mut self, menus: Vec<PersistentMenu>) -> Self {
        self.persistent_menu = Some(menus);
        self
    }

    /// Sets the ice breakers of every locale.
    #[must_use]
    pub fn ice_breakers(mut self, ice_breakers: Vec<IceBreakers>) -> Self {
        self.ice_breakers = Some(ice_breakers);
        self
    }

    /// The properties this profile sets.
    pub fn fields(&self) -> Vec<ProfileField> {
        let mut fields = Vec::new();
        if self.get_started.is_some() {
            fields.push(ProfileField::GetStarted);
        }
        if self.greeting.is_some() {
            fields.push(ProfileField::Greeting);
        }
        if self.persistent_menu.is_some() {
            fields.push(ProfileField::PersistentMenu);
        }
        if self.ice_breakers.is_some() {
            fields.push(ProfileField::IceBreakers);
        }
        fields.extend(self.other.keys().map(|k| ProfileField::from(k.as_str())));
        fields
    }

    /// Why Meta would refuse this profile, checked before sending: a greeting or a menu without
    /// the default locale, a greeting over [`MAX_GREETING_CHARS`], a menu over
    /// [`MAX_MENU_ITEMS`] or with a title over [`MAX_MENU_TITLE_CHARS`], over
    /// [`MAX_ICE_BREAKERS`] questions or one over [`MAX_ICE_BREAKER_CHARS`], a payload over
    /// [`super::send::MAX_PAYLOAD_CHARS`], or nothing to set.
    pub fn problem(&self) -> Option<String> {
        use super::send::MAX_PAYLOAD_CHARS;
        let chars = |s: &str| s.chars().count();
        let payload_ok = |p: &str| !p.is_empty() && chars(p) <= MAX_PAYLOAD_CHARS;
        if self.fields().is_empty() {
            return Some("the profile sets nothing".into());
        }
        if let Some(get_started) = &self.get_started
            && !payload_ok(&get_started.payload)
        {
            return Some(format!(
                "the get started payload must be 1 to {MAX_PAYLOAD_CHARS} characters"
            ));
        }
        if let Some(greetings) = &self.greeting {
            if !greetings.iter().any(|g| g.locale == DEFAULT_LOCALE) {
                return Some("the greeting needs a \"default\" locale".into());
            }
            if greetings
                .iter()
                .any(|g| chars(&g.text) > MAX_GREETING_CHARS)
            {
                return Some(format!(
                    "a greeting holds at most {MAX_GREETING_CHARS} characters"
                ));
            }
        }
        if let Some(menus) = &self.persistent_menu {
            if !menus.iter().any(|m| m.locale == DEFAULT_LOCALE) {
                return Some("the persistent menu needs a \"default\" locale".into());
            }
            for menu in menus {
                if menu.call_to_actions.len() > MAX_MENU_ITEMS {
                    return Some(format!(
                        "a persistent menu holds at most {MAX_MENU_ITEMS} items"
                    ));
                }
                for item in &menu.call_to_actions {
                    let (title, payload) = match item {
                        MenuItem::Postback { title, payload } => (title, Some(payload)),
                        MenuItem::WebUrl { title, .. } => (title, None),
                        MenuItem::Unknown(_) => continue,
                    };
                    if title.is_empty() || chars(title) > MAX_MENU_TITLE_CHARS {
                        return Some(format!(
                            "a menu item's title must be 1 to {MAX_MENU_TITLE_CHARS} characters"
                        ));
                    }
                    if payload.is_some_and(|p| !payload_ok(p)) {
                        return Some(format!(
                            "a menu item's payload must be 1 to {MAX_PAYLOAD_CHARS} characters"
                        ));
                    }
                }
            }
        }
        for breakers in self.ice_breakers.iter().flatten() {
            if breakers.call_to_actions.len() > MAX_ICE_BREAKERS {
                return Some(format!(
                    "at most {MAX_ICE_BREAKERS} ice breakers per locale"
                ));
            }
            for question in &breakers.call_to_actions {
                if question.question.is_empty()
                    || chars(&question.question) > MAX_ICE_BREAKER_CHARS
                    || !payload_ok(&question.payload)
                {
                    return Some(format!(
                        "an ice breaker needs a question of 1 to {MAX_ICE_BREAKER_CHARS} characters and a payload"
                    ));
                }
            }
        }
        None
    }
}

/// The Get Started button's postback payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GetStarted {
    /// What the postback carries when the button is tapped.
    #[serde(default)]
    pub payload: String,
}

/// The greeting of one locale; `{{user_first_name}}`, `{{user_last_name}}` and
/// `{{user_full_name}}` are replaced with the person's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Greeting {
    /// `default`, or a locale such as `en_US`.
    #[serde(default)]
    pub locale: String,
    /// The text, at most [`MAX_GREETING_CHARS`] characters.
    #[serde(default)]
    pub text: String,
}

impl Greeting {
    /// The greeting `text` for `locale`.
    pub fn new(locale: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            locale: locale.into(),
            text: text.into(),
        }
    }
}

/// The persistent menu of one locale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PersistentMenu {
    /// `default`, or a locale such as `en_US`.
    #[serde(default)]
    pub locale: String,
    /// Whether the person can only use the menu and buttons, not type.
    #[serde(default)]
    pub composer_input_disabled: bool,
    /// The items, at most [`MAX_MENU_ITEMS`].
    #[serde(default)]
    pub call_to_actions: Vec<MenuItem>,
    /// Any other field (`disabled_surfaces`, ...), as Meta spells it.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl PersistentMenu {
    /// A menu of `items` for `locale`, the composer left enabled.
    pub fn new(locale: impl Into<String>, items: Vec<MenuItem>) -> Self {
        Self {
            locale: locale.into(),
            composer_input_disabled: false,
            call_to_actions: items,
            other: Map::new(),
        }
    }

    /// Disables (or enables) typing: the person can only tap.
    #[must_use]
    pub fn composer_input_disabled(mut self, disabled: bool) -> Self {
        self.composer_input_disabled = disabled;
        self
    }
}

/// An item of the persistent menu.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MenuItem {
    /// Sends a postback carrying `payload` when tapped.
    Postback {
        /// The label, at most [`MAX_MENU_TITLE_CHARS`] characters.
        title: String,
        /// What the postback carries.
        payload: String,
    },
    /// Opens `url` when tapped.
    WebUrl {
        /// The label, at most [`MAX_MENU_TITLE_CHARS`] characters.
        title: String,
        /// The page to open.
        url: String,
        /// How tall the webview is.
        webview_height_ratio: Option<WebviewHeightRatio>,
    },
    /// An item of a type this crate does not know, as Meta sent it.
    Unknown(Value),
}

impl MenuItem {
    /// A postback item.
    pub fn postback(title: impl Into<String>, payload: impl Into<String>) -> Self {
        Self::Postback {
            title: title.into(),
            payload: payload.into(),
        }
    }

    /// A link item, opened full height.
    pub fn web_url(title: impl Into<String>, url: impl Into<String>) -> Self {
        Self::WebUrl {
            title: title.into(),
            url: url.into(),
            webview_height_ratio: None,
        }
    }
}

/// The known item types, as Meta spells them.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum KnownItem {
    Postback {
        title: String,
        payload: String,
    },
    WebUrl {
        title: String,
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webview_height_ratio: Option<WebviewHeightRatio>,
    },
}

impl Serialize for MenuItem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.clone() {
            MenuItem::Postback { title, payload } => {
                KnownItem::Postback { title, payload }.serialize(serializer)
            }
            MenuItem::WebUrl {
                title,
                url,
                webview_height_ratio,
            } => KnownItem::WebUrl {
                title,
                url,
                webview_height_ratio,
            }
            .serialize(serializer),
            MenuItem::Unknown(raw) => raw.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for MenuItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        Ok(match serde_json::from_value::<KnownItem>(raw.clone()) {
            Ok(KnownItem::Postback { title, payload }) => MenuItem::Postback { title, payload },
            Ok(KnownItem::WebUrl {
                title,
                url,
                webview_height_ratio,
            }) => MenuItem::WebUrl {
                title,
                url,
                webview_height_ratio,
            },
            Err(_) => MenuItem::Unknown(raw),
        })
    }
}

/// How tall a webview opens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum WebviewHeightRatio {
    /// Half the screen.
    Compact,
    /// Three quarters of the screen.
    Tall,
    /// The whole screen (the default).
    Full,
    /// A value this crate does not know, as Meta sent it.
    Unknown(String),
}

impl From<String> for WebviewHeightRatio {
    fn from(value: String) -> Self {
        match value.as_str() {
            "compact" => Self::Compact,
            "tall" => Self::Tall,
            "full" => Self::Full,
            _ => Self::Unknown(value),
        }
    }
}

impl From<WebviewHeightRatio> for String {
    fn from(value: WebviewHeightRatio) -> Self {
        match value {
            WebviewHeightRatio::Compact => "compact".into(),
            WebviewHeightRatio::Tall => "tall".into(),
            WebviewHeightRatio::Full => "full".into(),
            WebviewHeightRatio::Unknown(raw) => raw,
        }
    }
}

/// The ice breakers of one locale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IceBreakers {
    /// `default`, or a locale such as `en_US`.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// The questions, at most [`MAX_ICE_BREAKERS`].
    #[serde(default)]
    pub call_to_actions: Vec<IceBreaker>,
}

fn default_locale() -> String {
    DEFAULT_LOCALE.to_owned()
}

impl IceBreakers {
    /// The `questions` for `locale`.
    pub fn new(locale: impl Into<String>, questions: Vec<IceBreaker>) -> Self {
        Self {
            locale: locale.into(),
            call_to_actions: questions,
        }
    }
}

/// One ice breaker: a question a person taps to start, sent as a postback carrying `payload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IceBreaker {
    /// The question shown, at most [`MAX_ICE_BREAKER_CHARS`] characters.
    #[serde(default)]
    pub question: String,
    /// What the postback carries.
    #[serde(default)]
    pub payload: String,
}

impl IceBreaker {
    /// The `question`, answered with a postback carrying `payload`.
    pub fn new(question: impl Into<String>, payload: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            payload: payload.into(),
        }
    }
}

/// A property of the Messenger profile, to read or delete.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProfileField {
    /// `get_started`.
    GetStarted,
    /// `greeting`.
    Greeting,
    /// `persistent_menu`.
    PersistentMenu,
    /// `ice_breakers`.
    IceBreakers,
    /// Another property, as Meta spells it (`whitelisted_domains`, ...).
    Other(String),
}

impl ProfileField {
    /// The properties this crate types.
    pub const TYPED: [ProfileField; 4] = [
        ProfileField::GetStarted,
        ProfileField::Greeting,
        ProfileField::PersistentMenu,
        ProfileField::IceBreakers,
    ];

    /// The name as Meta spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::GetStarted => "get_started",
            Self::Greeting => "greeting",
            Self::PersistentMenu => "persistent_menu",
            Self::IceBreakers => "ice_breakers",
            Self::Other(name) => name,
        }
    }
}

impl From<&str> for ProfileField {
    fn from(name: &str) -> Self {
        match name {
            "get_started" => Self::GetStarted,
            "greeting" => Self::Greeting,
            "persistent_menu" => Self::PersistentMenu,
            "ice_breakers" => Self::IceBreakers,
            other => Self::Other(other.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shape Meta documents, read and written back unchanged.
    const FIXTURE: &str = r#"{
        "get_started": {"payload": "GET_STARTED"},
        "greeting": [{"locale": "default", "text": "Hello {{user_first_name}}!"},
                     {"locale": "fr_FR", "text": "Bonjour !"}],
        "persistent_menu": [{
            "locale": "default",
            "composer_input_disabled": false,
            "call_to_actions": [
                {"type": "postback", "title": "Talk to an agent", "payload": "CARE_HELP"},
                {"type": "web_url", "title": "Shop now", "url": "https://shop.example/",
                 "webview_height_ratio": "full"},
                {"type": "nested", "title": "Old", "call_to_actions": []}
            ]
        }],
        "ice_breakers": [{"locale": "default", "call_to_actions": [
            {"question": "Where are you?", "payload": "WHERE"}
        ]}],
        "whitelisted_domains": ["https://shop.example"]
    }"#;

    #[test]
    fn the_documented_profile_reads_and_writes_back() {
        let raw: Value = serde_json::from_str(FIXTURE).unwrap();
        let profile: MessengerProfile = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(profile.get_started.as_ref().unwrap().payload, "GET_STARTED");
        let menu = &profile.persistent_menu.as_ref().unwrap()[0];
        assert_eq!(
            menu.call_to_actions[0],
            MenuItem::postback("Talk to an agent", "CARE_HELP")
        );
        assert!(matches!(
            &menu.call_to_actions[1],
            MenuItem::WebUrl {
                webview_height_ratio: Some(WebviewHeightRatio::Full),
                ..
            }
        ));
        assert!(matches!(&menu.call_to_actions[2], MenuItem::Unknown(v) if v["type"] == "nested"));
        assert_eq!(
            profile.ice_breakers.as_ref().unwrap()[0].call_to_actions[0].payload,
            "WHERE"
        );
        assert_eq!(
            profile.fields(),
            [
                ProfileField::GetStarted,
                ProfileField::Greeting,
                ProfileField::PersistentMenu,
                ProfileField::IceBreakers,
                ProfileField::Other("whitelisted_domains".into())
            ]
        );
        assert_eq!(serde_json::to_value(&profile).unwrap(), raw);
    }

    #[test]
    fn what_meta_would_refuse_is_found_before_sending() {
        let menu = |items| {
            MessengerProfile::new().persistent_menu(vec![PersistentMenu::new("default", items)])
        };
        assert!(
            MessengerProfile::new().problem().is_some(),
            "nothing to set"
        );
        assert!(MessengerProfile::new().get_started("").problem().is_some());
        assert!(
            MessengerProfile::new()
                .get_started("GO")
                .problem()
                .is_none()
        );
        let greeting = |locale: &str, text: String| {
            MessengerProfile::new().greeting(vec![Greeting::new(locale, text)])
        };
        assert!(
            greeting("en_US", "hi".into()).problem().is_some(),
            "no default locale"
        );
        assert!(
            greeting("default", "x".repeat(MAX_GREETING_CHARS + 1))
                .problem()
                .is_some()
        );
        assert!(
            greeting("default", "x".repeat(MAX_GREETING_CHARS))
                .problem()
                .is_none()
        );
        let items = |n: usize| {
            (0..n)
                .map(|i| MenuItem::postback(format!("{i}"), "P"))
                .collect()
        };
        assert!(menu(items(MAX_MENU_ITEMS)).problem().is_none());
        assert!(menu(items(MAX_MENU_ITEMS + 1)).problem().is_some());
        assert!(
            menu(vec![MenuItem::postback("x".repeat(31), "P")])
                .problem()
                .is_some()
        );
        assert!(
            menu(vec![MenuItem::web_url("", "https://x")])
                .problem()
                .is_some()
        );
        let questions = |n: usize| {
            MessengerProfile::new().ice_breakers(vec![IceBreakers::new(
                "default",
                (0..n)
                    .map(|i| IceBreaker::new(format!("q{i}"), "P"))
                    .collect(),
            )])
        };
        assert!(questions(MAX_ICE_BREAKERS).problem().is_none());
        assert!(questions(MAX_ICE_BREAKERS + 1).problem().is_some());
        assert_eq!(
            serde_json::to_value(
                menu(vec![]).persistent_menu.unwrap()[0]
                    .clone()
                    .composer_input_disabled(true)
            )
            .unwrap(),
            json!({"locale": "default", "composer_input_disabled": true, "call_to_actions": []})
        );
    }
}
