//! Channel messages: create, edit, and the typing indicator.

use http::Method;
use serde_json::Value;

use super::client::DiscordHttp;
use crate::error::Error;

impl DiscordHttp {
    /// `POST /channels/{channel}/messages`. Give `body` a `nonce` (and `enforce_nonce: true`) to
    /// make retries safe; [`crate::DiscordClient`] does.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn create_message(&self, channel_id: &str, body: &Value) -> Result<Value, Error> {
        let path = format!("/channels/{channel_id}/messages");
        self.value(Self::call(
            Method::POST,
            "create_message",
            &path,
            Some(body),
        )?)
        .await
    }

    /// `POST /users/@me/channels`: the DM channel with user `recipient_id` (the same channel on
    /// every call), as Discord returns it.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn create_dm(&self, recipient_id: &str) -> Result<Value, Error> {
        let body = serde_json::json!({ "recipient_id": recipient_id });
        self.value(Self::call(
            Method::POST,
            "create_dm",
            "/users/@me/channels",
            Some(&body),
        )?)
        .await
    }

    /// `PATCH /channels/{channel}/messages/{message}`.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn edit_message(
        &self,
        channel_id: &str,
        message_id: &str,
        body: &Value,
    ) -> Result<Value, Error> {
        let path = format!("/channels/{channel_id}/messages/{message_id}");
        self.value(Self::call(
            Method::PATCH,
            "edit_message",
            &path,
            Some(body),
        )?)
        .await
    }

    /// `POST /channels/{channel}/typing`: shows the bot typing for about ten seconds.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn trigger_typing(&self, channel_id: &str) -> Result<(), Error> {
        let path = format!("/channels/{channel_id}/typing");
        self.answer(Self::call::<Value>(Method::POST, "typing", &path, None)?)
            .await
            .map(|_| ())
    }
}
