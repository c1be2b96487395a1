//! Serde types of LINE's webhook JSON (incoming) and of the Messaging API (outgoing).
//!
//! Every webhook event type LINE documents has its payload type; unknown event types, message
//! types and enum values parse into `Unknown` variants carrying the name LINE sent, and unknown
//! fields are ignored, so a new LINE feature never fails a webhook. Field names follow LINE's
//! camelCase JSON; the Rust names are snake_case.

/// Declares a string enum of LINE's with an `Unknown` variant for values added later.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $value:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// A value this crate does not know, as LINE sent it.
            Unknown(String),
        }

        impl $name {
            /// The value as LINE spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $value,)+
                    Self::Unknown(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $($value => Self::$variant,)+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Ok(Self::from(&*value))
            }
        }
    };
}

mod channel;
mod event;
pub mod flex;
mod message;
mod rich_menu;
pub mod send;

pub use channel::{MAX_WEBHOOK_URL_CHARS, WebhookEndpoint, WebhookTest};
pub use rich_menu::{
    ImageFormat, MAX_CHAT_BAR_TEXT_CHARS, MAX_RICH_MENU_AREAS, MAX_RICH_MENU_IMAGE_BYTES,
    MAX_RICH_MENU_NAME_CHARS, RichMenu, RichMenuAction, RichMenuArea, RichMenuBounds,
    RichMenuResponse, RichMenuSize,
};

pub use event::{
    AccountLink, Activated, Beacon, BeaconType, CallbackRequest, ChatControl, DeliveryContext,
    EventKind, Follow, LinkResult, MemberUser, Members, Membership, MembershipType, Mode, Module,
    ModuleType, Pnp, Postback, PostbackParams, Source, Things, ThingsType, Unsend,
    VideoPlayComplete, WebhookEvent,
};
pub use message::{
    AudioMessage, ContentProvider, ContentProviderType, Emoji, FileMessage, ImageMessage, ImageSet,
    LocationMessage, Mention, Mentionee, MentioneeType, MessageContent, StickerMessage,
    StickerResourceType, TextMessage, VideoMessage,
};
