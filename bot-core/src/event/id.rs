//! Identifiers and small values: the string ids, [`Platform`], [`ReplyToken`] and [`Timestamp`].

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::text::Text;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Text);

        impl $name {
            /// Creates the id from any string.
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(Text::new(id.as_ref()))
            }

            /// The id `id`, read from `payload` (the body or frame it came in): a short id is
            /// kept inline, a long one shares `payload`'s buffer instead of a copy. An `id` that
            /// does not lie within `payload` is copied.
            pub fn from_shared(payload: &Bytes, id: &str) -> Self {
                Self(Text::from_shared(payload, id))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The id's UTF-8 bytes, without checking them again (hashing and sizing).
            #[allow(dead_code, reason = "not every id type is hashed or sized")]
            pub(crate) fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Text::from_string(s))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

string_id!(
    /// The platform's id of an event (LINE `webhookEventId`, Messenger `mid`, Discord snowflake).
    ///
    /// Together with the [`Platform`] it is the deduplication key.
    EventId
);
string_id!(
    /// A conversation: a LINE user, group or room, a Messenger PSID, a Discord channel.
    ///
    /// Events of one conversation are handled one at a time, in arrival order, by default.
    ConversationId
);
string_id!(
    /// A user on a platform.
    UserId
);
string_id!(
    /// A message on a platform.
    MessageId
);
string_id!(
    /// Which of a platform's channels an event came through and a reply goes out through: a LINE
    /// channel, a Messenger page, a Discord application, as the adapter names it (by default the
    /// platform's own id of it: LINE's bot user id, the page id, the application id).
    ///
    /// A bot serving one channel per platform may leave it unset.
    ChannelId
);

/// The platform an event came from, such as `line`, `messenger`, `discord` or `console`.
///
/// A string rather than a closed enum, so that adapters for other platforms can be written outside
/// this workspace.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Platform(Cow<'static, str>);

impl Platform {
    /// The LINE Messaging API.
    pub const LINE: Platform = Platform(Cow::Borrowed("line"));
    /// The Facebook Messenger Platform.
    pub const MESSENGER: Platform = Platform(Cow::Borrowed("messenger"));
    /// Discord.
    pub const DISCORD: Platform = Platform(Cow::Borrowed("discord"));
    /// The stdin/stdout console platform for local development.
    pub const CONSOLE: Platform = Platform(Cow::Borrowed("console"));
    /// The platform used by `bot_core::testing` (feature `testing`).
    pub const TEST: Platform = Platform(Cow::Borrowed("test"));

    /// A platform known at compile time.
    pub const fn from_static(name: &'static str) -> Self {
        Platform(Cow::Borrowed(name))
    }

    /// A platform named at run time.
    pub fn new(name: impl Into<String>) -> Self {
        Platform(Cow::Owned(name.into()))
    }

    /// The platform's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The platform's name, borrowed when it is static (metric labels take it without a copy).
    pub(crate) fn name(&self) -> Cow<'static, str> {
        self.0.clone()
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token that lets a handler reply to an event (LINE's `replyToken`, a Discord interaction token).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReplyToken(Text);

impl ReplyToken {
    /// Wraps a token.
    pub fn new(token: impl AsRef<str>) -> Self {
        Self(Text::new(token.as_ref()))
    }

    /// The token `token`, read from `payload` (the body it came in), sharing it when long (see
    /// [`EventId::from_shared`]).
    pub fn from_shared(payload: &Bytes, token: &str) -> Self {
        Self(Text::from_shared(payload, token))
    }

    /// The token. Do not log it: it authorises a reply.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The token's length in bytes (for sizing, without checking its text again).
    pub(crate) fn byte_len(&self) -> usize {
        self.0.as_bytes().len()
    }
}

impl fmt::Debug for ReplyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyToken(..)")
    }
}

/// Milliseconds since the Unix epoch, the resolution every supported platform uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Now, from the system clock.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        if t.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(t.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(t.0.unsigned_abs())
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}
