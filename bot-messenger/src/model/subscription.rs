//! The page's webhook subscription (`/me/subscribed_apps`): which apps get the page's webhooks,
//! and for which fields.
//!
//! Set with [`crate::MessengerClient::subscribe_app`], read with
//! [`crate::MessengerClient::subscribed_apps`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A webhook field a page subscribes an app to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum WebhookField {
    /// `messages`: messages people send.
    Messages,
    /// `messaging_postbacks`: taps of postback buttons, Get Started, menu items, ice breakers.
    MessagingPostbacks,
    /// `messaging_optins`: opt-ins (the send-to-Messenger plugin, notification requests).
    MessagingOptins,
    /// `messaging_referrals`: arrivals through m.me links, ads and plugins.
    MessagingReferrals,
    /// `message_deliveries`: delivery receipts.
    MessageDeliveries,
    /// `message_reads`: read receipts.
    MessageReads,
    /// `message_echoes`: the page's own messages.
    MessageEchoes,
    /// `message_reactions`: reactions to messages.
    MessageReactions,
    /// `messaging_account_linking`: account linking and unlinking.
    MessagingAccountLinking,
    /// `messaging_handovers`: thread control passed between apps.
    MessagingHandovers,
    /// `standby`: conversations another app owns.
    Standby,
    /// Another field, as Meta spells it.
    Other(String),
}

impl WebhookField {
    /// Every field whose items the adapter parses into typed events.
    pub const HANDLED: [WebhookField; 11] = [
        WebhookField::Messages,
        WebhookField::MessagingPostbacks,
        WebhookField::MessagingOptins,
        WebhookField::MessagingReferrals,
        WebhookField::MessageDeliveries,
        WebhookField::MessageReads,
        WebhookField::MessageEchoes,
        WebhookField::MessageReactions,
        WebhookField::MessagingAccountLinking,
        WebhookField::MessagingHandovers,
        WebhookField::Standby,
    ];

    /// The name as Meta spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Messages => "messages",
            Self::MessagingPostbacks => "messaging_postbacks",
            Self::MessagingOptins => "messaging_optins",
            Self::MessagingReferrals => "messaging_referrals",
            Self::MessageDeliveries => "message_deliveries",
            Self::MessageReads => "message_reads",
            Self::MessageEchoes => "message_echoes",
            Self::MessageReactions => "message_reactions",
            Self::MessagingAccountLinking => "messaging_account_linking",
            Self::MessagingHandovers => "messaging_handovers",
            Self::Standby => "standby",
            Self::Other(name) => name,
        }
    }
}

impl From<String> for WebhookField {
    fn from(name: String) -> Self {
        Self::HANDLED
            .into_iter()
            .find(|field| field.as_str() == name)
            .unwrap_or(Self::Other(name))
    }
}

impl From<WebhookField> for String {
    fn from(field: WebhookField) -> Self {
        field.as_str().to_owned()
    }
}

/// An app subscribed to the page's webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SubscribedApp {
    /// The app's id.
    #[serde(default)]
    pub id: String,
    /// The app's name.
    #[serde(default)]
    pub name: String,
    /// The fields it gets webhooks for.
    #[serde(default)]
    pub subscribed_fields: Vec<WebhookField>,
    /// Any other field (`category`, `link`, ...), as Meta sent it.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribed_apps_read_with_known_and_unknown_fields() {
        let app: SubscribedApp = serde_json::from_str(
            r#"{"category": "Business", "link": "https://bot.example/", "name": "Bot",
                "id": "1517776481860111",
                "subscribed_fields": ["messages", "messaging_postbacks", "feed"]}"#,
        )
        .unwrap();
        assert_eq!(
            app.subscribed_fields,
            [
                WebhookField::Messages,
                WebhookField::MessagingPostbacks,
                WebhookField::Other("feed".into())
            ]
        );
        assert_eq!(app.other["category"], "Business");
        let back = serde_json::to_value(&app).unwrap();
        assert_eq!(back["subscribed_fields"][2], "feed");
        for field in WebhookField::HANDLED {
            assert_eq!(WebhookField::from(field.as_str().to_owned()), field);
        }
    }
}
