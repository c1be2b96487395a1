//! Bot state in scopes, with optimistic concurrency and time-to-live.
//!
//! A [`StateStore`] keeps one JSON document per [`StateKey`]: a conversation (the default, what
//! `cx.conversation_state()` uses), a user on a platform (`cx.user_state()`), a user within one
//! conversation (`cx.user_in_conversation_state()`: on Discord a conversation is a channel shared
//! by everyone in it), or an app-wide key of one's own (`cx.app_key_state("inventory")`).
//!
//! Every document has a version that every write checks: a write based on a stale read fails
//! with [`crate::ErrorKind::StateConflict`] instead of silently overwriting a concurrent one.
//! A write may give the document a time-to-live, after which it reads as absent.
//! [`MemoryStateStore`] is the default (bounded: it forgets the least recently written
//! documents past its capacity); [`crate::pg::PgStateStore`] comes with the `postgres` feature.

mod memory;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::event::{ConversationId, Platform, UserId};

pub use memory::{DEFAULT_MEMORY_STATE_CAPACITY, MemoryStateStore};

/// Whose state a document is: its scope and the ids that name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StateKey {
    /// One conversation (a one-to-one chat, a group, a Discord channel).
    Conversation {
        /// The platform.
        platform: Platform,
        /// The conversation on that platform.
        conversation: ConversationId,
    },
    /// One user on a platform, whatever conversation they write in.
    User {
        /// The platform.
        platform: Platform,
        /// The user on that platform.
        user: UserId,
    },
    /// One user within one conversation: each member of a group has their own.
    UserInConversation {
        /// The platform.
        platform: Platform,
        /// The conversation on that platform.
        conversation: ConversationId,
        /// The user in that conversation.
        user: UserId,
    },
    /// A key of the app's own, shared by every platform and conversation.
    App {
        /// The key's name.
        name: String,
    },
    /// Where the dialogs of a conversation, or of one user in it, stand ([`crate::dialog`]):
    /// kept apart from the app's own state.
    Dialog {
        /// The platform.
        platform: Platform,
        /// The conversation on that platform.
        conversation: ConversationId,
        /// The user, when each member of the conversation has their own dialogs.
        user: Option<UserId>,
    },
}

/// The columns a key is stored under: platform, scope, conversation, subject.
#[cfg(feature = "postgres")]
pub(crate) type KeyColumns<'a> = (&'a str, &'static str, &'a str, &'a str);

impl StateKey {
    /// The key of `conversation` on `platform`.
    pub fn new(platform: Platform, conversation: impl Into<ConversationId>) -> Self {
        Self::Conversation {
            platform,
            conversation: conversation.into(),
        }
    }

    /// The key of `user` on `platform`.
    pub fn user(platform: Platform, user: impl Into<UserId>) -> Self {
        Self::User {
            platform,
            user: user.into(),
        }
    }

    /// The key of `user` within `conversation` on `platform`.
    pub fn user_in_conversation(
        platform: Platform,
        conversation: impl Into<ConversationId>,
        user: impl Into<UserId>,
    ) -> Self {
        Self::UserInConversation {
            platform,
            conversation: conversation.into(),
            user: user.into(),
        }
    }

    /// An app-wide key named `name`.
    pub fn app(name: impl Into<String>) -> Self {
        Self::App { name: name.into() }
    }

    /// The scope's name: `conversation`, `user`, `user_in_conversation`, `app` or `dialog`.
    pub fn scope(&self) -> &'static str {
        match self {
            Self::Conversation { .. } => "conversation",
            Self::User { .. } => "user",
            Self::UserInConversation { .. } => "user_in_conversation",
            Self::App { .. } => "app",
            Self::Dialog { .. } => "dialog",
        }
    }

    /// The key as a backend's columns (an app key has no platform or conversation).
    #[cfg(feature = "postgres")]
    pub(crate) fn columns(&self) -> KeyColumns<'_> {
        match self {
            Self::Conversation {
                platform,
                conversation,
            } => (platform.as_str(), self.scope(), conversation.as_str(), ""),
            Self::User { platform, user } => (platform.as_str(), self.scope(), "", user.as_str()),
            Self::UserInConversation {
                platform,
                conversation,
                user,
            } => (
                platform.as_str(),
                self.scope(),
                conversation.as_str(),
                user.as_str(),
            ),
            Self::App { name } => ("", self.scope(), "", name.as_str()),
            Self::Dialog {
                platform,
                conversation,
                user,
            } => (
                platform.as_str(),
                self.scope(),
                conversation.as_str(),
                user.as_ref().map_or("", UserId::as_str),
            ),
        }
    }
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conversation {
                platform,
                conversation,
            } => write!(f, "{platform}/{conversation}"),
            Self::User { platform, user } => write!(f, "{platform}/user {user}"),
            Self::UserInConversation {
                platform,
                conversation,
                user,
            } => write!(f, "{platform}/{conversation}/user {user}"),
            Self::App { name } => write!(f, "app key {name:?}"),
            Self::Dialog {
                platform,
                conversation,
                user: None,
            } => write!(f, "{platform}/{conversation} dialogs"),
            Self::Dialog {
                platform,
                conversation,
                user: Some(user),
            } => write!(f, "{platform}/{conversation}/user {user} dialogs"),
        }
    }
}

/// A value with the version it was read at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version; pass it to the next write. Versions grow with every write of a key.
    pub version: u64,
}

/// Storage of JSON state by [`StateKey`], with version checks and time-to-live.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug + 'static {
    /// Reads the state of `key`, if any (a document past its time-to-live is none).
    ///
    /// # Errors
    ///
    /// Fails when the backend fails.
    async fn load(&self, key: &StateKey) -> Result<Option<Versioned<serde_json::Value>>, Error>;

    /// Writes the state of `key` if its current version is `expected` (`None`: it must not
    /// exist, or be past its time-to-live), to expire `ttl` after this write (`None`: never).
    /// Returns the new version.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::StateConflict`] when the version does not match; other kinds when
    /// the backend fails.
    async fn save_expiring(
        &self,
        key: &StateKey,
        value: serde_json::Value,
        expected: Option<u64>,
        ttl: Option<Duration>,
    ) -> Result<u64, Error>;

    /// [`StateStore::save_expiring`] without a time-to-live.
    ///
    /// # Errors
    ///
    /// As [`StateStore::save_expiring`].
    async fn save(
        &self,
        key: &StateKey,
        value: serde_json::Value,
        expected: Option<u64>,
    ) -> Result<u64, Error> {
        self.save_expiring(key, value, expected, None).await
    }

    /// Deletes the state of `key` if its version is `expected`. Returns whether something was deleted.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::StateConflict`] when the version does not match.
    async fn delete(&self, key: &StateKey, expected: u64) -> Result<bool, Error>;
}

/// The error of a write that lost its version check.
pub(crate) fn conflict(key: &StateKey, expected: Option<u64>, actual: Option<u64>) -> Error {
    let found = match actual {
        Some(version) => format!(", found {version}"),
        None => String::new(),
    };
    Error::new(
        crate::ErrorKind::StateConflict,
        format!("state of {key} changed concurrently (expected version {expected:?}{found})"),
    )
}
