//! Direct messages to a user: the conversation `@<user id>` ([`dm`]) is the user's DM channel,
//! opened once through `POST /users/@me/channels` and remembered.

use std::collections::HashMap;
use std::sync::Mutex;

use bot_core::ConversationId;

use super::DiscordClient;
use crate::error::Error;

/// DM channels remembered at most; past it the map is cleared (a channel is looked up again,
/// which Discord answers with the same channel).
const MAX_DM_CHANNELS: usize = 10_000;

/// The conversation of a direct message to user `user_id`: sending to it opens (or finds) the
/// user's DM channel and posts there. What [`bot_core::outbox::OutboxMessage`]s to a Discord user
/// use, and any send a handler makes to a user rather than a channel.
///
/// # Examples
///
/// ```
/// assert_eq!(bot_discord::client::dm("80351110224678912").as_str(), "@80351110224678912");
/// ```
pub fn dm(user_id: &str) -> ConversationId {
    ConversationId::new(format!("@{user_id}"))
}

/// The user a conversation names a direct message to, if it is a [`dm`] conversation.
pub(super) fn dm_user(conversation: &str) -> Option<&str> {
    conversation
        .strip_prefix('@')
        .filter(|user| !user.is_empty())
}

/// Users' DM channel ids.
#[derive(Debug, Default)]
pub(super) struct DmChannels(Mutex<HashMap<String, String>>);

impl DiscordClient {
    /// The id of the DM channel with user `user_id`, opened on first use and remembered.
    ///
    /// # Errors
    ///
    /// As [`crate::DiscordHttp::create_dm`], or [`crate::ErrorKind::InvalidRequest`] when
    /// Discord's answer has no channel id.
    pub async fn dm_channel(&self, user_id: &str) -> Result<String, Error> {
        if let Some(id) = self.lock_dms().get(user_id) {
            return Ok(id.clone());
        }
        let channel = self.http.create_dm(user_id).await?;
        let id = channel["id"]
            .as_str()
            .ok_or_else(|| Error::invalid_request("discord: the DM channel has no id"))?
            .to_owned();
        let mut dms = self.lock_dms();
        if dms.len() >= MAX_DM_CHANNELS {
            dms.clear();
        }
        dms.insert(user_id.to_owned(), id.clone());
        Ok(id)
    }

    fn lock_dms(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.dms.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
