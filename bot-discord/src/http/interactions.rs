//! Interaction responses: the callback, follow-ups, and the original response.
//!
//! None of these can carry an idempotency key: the client does not send them again after a
//! failure that may hide a delivery ([`crate::Error::maybe_delivered`]).

use http::Method;
use serde_json::Value;

use super::client::DiscordHttp;
use crate::error::Error;

impl DiscordHttp {
    /// `POST /interactions/{id}/{token}/callback`: the initial response to an interaction.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn interaction_callback(
        &self,
        interaction_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<(), Error> {
        let path = format!("/interactions/{interaction_id}/{token}/callback");
        let call = Self::call(Method::POST, "interaction_callback", &path, Some(body))?;
        self.answer(call).await.map(|_| ())
    }

    /// `POST /webhooks/{application}/{token}`: a follow-up message (for 15 minutes).
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn create_followup(
        &self,
        application_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<Value, Error> {
        let path = format!("/webhooks/{application_id}/{token}");
        self.value(Self::call(
            Method::POST,
            "create_followup",
            &path,
            Some(body),
        )?)
        .await
    }

    /// `PATCH /webhooks/{application}/{token}/messages/@original`: edits the first response.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`].
    pub async fn edit_original(
        &self,
        application_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<Value, Error> {
        let path = format!("/webhooks/{application_id}/{token}/messages/@original");
        self.value(Self::call(
            Method::PATCH,
            "edit_original",
            &path,
            Some(body),
        )?)
        .await
    }
}
