//! Users and chats: profiles, the loading animation, and content users send.

use std::time::Instant;

use bot_core::api::Call;
use bytes::Bytes;
use serde_json::json;

use super::builder::{LineClient, endpoint};
use crate::error::Error;
use crate::model::send::Profile;

/// Content a user sent, downloaded with [`LineClient::content`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Content {
    /// The bytes.
    pub bytes: Bytes,
    /// The MIME type LINE gave, such as `image/jpeg`.
    pub content_type: Option<String>,
}

impl LineClient {
    /// A user's profile.
    ///
    /// # Errors
    ///
    /// As any call; [`crate::ErrorKind::Decode`] when the answer is not a profile.
    pub async fn profile(&self, user_id: &str) -> Result<Profile, Error> {
        let call = Call::get(endpoint::PROFILE, format!("/v2/bot/profile/{user_id}"));
        Self::decode(&self.call(call, None).await?, "profile")
    }

    /// Shows the loading animation in a one-to-one chat for `seconds` (5 to 60, in steps of 5),
    /// or until the bot's next message. Showing it twice does no harm, so the call is retried
    /// like a read.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidRequest`] for a duration LINE does not take; otherwise as any
    /// call.
    pub async fn show_loading(&self, chat_id: &str, seconds: u32) -> Result<(), Error> {
        self.show_loading_until(chat_id, seconds, None).await
    }

    /// As [`LineClient::show_loading`], given up at `deadline` (the deadline of the send it
    /// opens) instead of the client's deadline from now.
    pub(super) async fn show_loading_until(
        &self,
        chat_id: &str,
        seconds: u32,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        if !(5..=60).contains(&seconds) || !seconds.is_multiple_of(5) {
            return Err(Error::invalid_request(format!(
                "line: loading lasts 5 to 60 seconds in steps of 5, not {seconds}"
            )));
        }
        let call = Call::post(endpoint::LOADING, "/v2/bot/chat/loading/start")
            .json(&json!({"chatId": chat_id, "loadingSeconds": seconds}))?
            .idempotent(true);
        self.call(call, deadline).await.map(|_| ())
    }

    /// Downloads what a user sent in an image, video, audio or file message (by message id),
    /// held in memory, from the data API.
    ///
    /// # Errors
    ///
    /// As any call; LINE answers 404 once the content has expired.
    pub async fn content(&self, message_id: &str) -> Result<Content, Error> {
        let path = format!("/v2/bot/message/{message_id}/content");
        let call = self.on_data_api(Call::get(endpoint::CONTENT, path));
        let answer = self.call(call, None).await?;
        Ok(Content {
            content_type: answer
                .header(http::header::CONTENT_TYPE.as_str())
                .map(str::to_owned),
            bytes: answer.body,
        })
    }
}
