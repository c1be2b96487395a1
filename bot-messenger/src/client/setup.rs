//! The page's setup: its Messenger profile (Get Started, greeting, persistent menu, ice
//! breakers) and its webhook subscription. A bot calls these once, when it is deployed; setting
//! the same values again changes nothing, so the calls are retried like reads.

use bot_core::api::Call;
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::builder::MessengerClient;
use crate::error::{Error, ErrorKind};
use crate::model::profile::{MessengerProfile, ProfileField};
use crate::model::subscription::{SubscribedApp, WebhookField};

/// The Messenger Profile API path under the base.
pub const MESSENGER_PROFILE_PATH: &str = "/me/messenger_profile";
/// The page's webhook subscriptions path under the base.
pub const SUBSCRIBED_APPS_PATH: &str = "/me/subscribed_apps";

/// The endpoint (metrics name) of Messenger profile calls.
const MESSENGER_PROFILE: &str = "messenger_profile";
/// The endpoint of webhook subscription calls.
const SUBSCRIBED_APPS: &str = "subscribed_apps";

/// `{"data": [...]}`, how the Graph API answers a read of a list.
#[derive(Deserialize)]
struct Data<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

impl MessengerClient {
    /// Sets the properties `profile` holds (`POST /me/messenger_profile`), leaving the others
    /// as they are.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use bot_messenger::MessengerClient;
    /// use bot_messenger::model::profile::{Greeting, MenuItem, MessengerProfile, PersistentMenu};
    ///
    /// # async fn run(client: MessengerClient) -> Result<(), bot_messenger::Error> {
    /// let profile = MessengerProfile::new()
    ///     .get_started("GET_STARTED")
    ///     .greeting(vec![Greeting::new("default", "Hi {{user_first_name}}, ask me anything")])
    ///     .persistent_menu(vec![PersistentMenu::new(
    ///         "default",
    ///         vec![MenuItem::postback("Talk to a person", "AGENT")],
    ///     )]);
    /// client.set_messenger_profile(&profile).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when Meta would refuse the profile
    /// ([`MessengerProfile::problem`]; nothing sent); a Graph refusal (`Api`, with its
    /// [`crate::model::GraphError`]: a persistent menu without a Get Started button, a token
    /// without `pages_messaging`); otherwise as any call.
    pub async fn set_messenger_profile(&self, profile: &MessengerProfile) -> Result<(), Error> {
        if let Some(problem) = profile.problem() {
            return Err(Error::invalid_request(format!("messenger: {problem}")));
        }
        let call = Call::post(MESSENGER_PROFILE, MESSENGER_PROFILE_PATH)
            .json(profile)?
            .idempotent(true);
        let answer = self.api.call(call).await?;
        succeeded(&answer.json::<Value>()?, "result", &json!("success"))
    }

    /// The page's Messenger profile, with the properties `fields` names
    /// (`GET /me/messenger_profile?fields=...`); [`ProfileField::TYPED`] for all this crate
    /// types. A property that is not set is `None`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when `fields` is empty or names a field that is not a
    /// Graph name; [`ErrorKind::Decode`] when the answer is not a profile; otherwise as any call.
    pub async fn messenger_profile(
        &self,
        fields: &[ProfileField],
    ) -> Result<MessengerProfile, Error> {
        let fields = field_list(fields.iter().map(ProfileField::as_str))?;
        let path = format!("{MESSENGER_PROFILE_PATH}?fields={fields}");
        let answer = self.api.call(Call::get(MESSENGER_PROFILE, path)).await?;
        let Data { data } = answer.json::<Data<MessengerProfile>>()?;
        Ok(data.into_iter().next().unwrap_or_default())
    }

    /// Removes the properties `fields` names from the page's Messenger profile
    /// (`DELETE /me/messenger_profile`).
    ///
    /// # Errors
    ///
    /// As [`MessengerClient::messenger_profile`].
    pub async fn delete_messenger_profile(&self, fields: &[ProfileField]) -> Result<(), Error> {
        field_list(fields.iter().map(ProfileField::as_str))?;
        let names: Vec<&str> = fields.iter().map(ProfileField::as_str).collect();
        let call = Call::new(Method::DELETE, MESSENGER_PROFILE, MESSENGER_PROFILE_PATH)
            .json(&json!({ "fields": names }))?;
        let answer = self.api.call(call).await?;
        succeeded(&answer.json::<Value>()?, "result", &json!("success"))
    }

    /// Subscribes this app to the page's webhooks for `fields`
    /// (`POST /me/subscribed_apps?subscribed_fields=...`), replacing the fields it had;
    /// [`WebhookField::HANDLED`] for every field the adapter parses. The app must subscribe to
    /// the same fields in its own webhook settings too: Meta sends only the fields both name.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when `fields` is empty or names a field that is not a
    /// Graph name; a Graph refusal (`Api`: a token without `pages_manage_metadata`); otherwise
    /// as any call.
    pub async fn subscribe_app(&self, fields: &[WebhookField]) -> Result<(), Error> {
        let fields = field_list(fields.iter().map(WebhookField::as_str))?;
        let path = format!("{SUBSCRIBED_APPS_PATH}?subscribed_fields={fields}");
        let call = Call::post(SUBSCRIBED_APPS, path).idempotent(true);
        let answer = self.api.call(call).await?;
        succeeded(&answer.json::<Value>()?, "success", &json!(true))
    }

    /// The apps subscribed to the page's webhooks, with their fields
    /// (`GET /me/subscribed_apps`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`] when the answer is not a list of apps; otherwise as any call.
    pub async fn subscribed_apps(&self) -> Result<Vec<SubscribedApp>, Error> {
        let call = Call::get(SUBSCRIBED_APPS, SUBSCRIBED_APPS_PATH);
        let answer = self.api.call(call).await?;
        Ok(answer.json::<Data<SubscribedApp>>()?.data)
    }

    /// Unsubscribes this app from the page's webhooks (`DELETE /me/subscribed_apps`).
    ///
    /// # Errors
    ///
    /// As any call.
    pub async fn unsubscribe_app(&self) -> Result<(), Error> {
        let call = Call::new(Method::DELETE, SUBSCRIBED_APPS, SUBSCRIBED_APPS_PATH);
        let answer = self.api.call(call).await?;
        succeeded(&answer.json::<Value>()?, "success", &json!(true))
    }
}

/// `names` joined with commas, each a Graph name (`[a-z0-9_]`), so that it can go in a query
/// string as it is.
fn field_list<'a>(names: impl Iterator<Item = &'a str>) -> Result<String, Error> {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        return Err(Error::invalid_request("messenger: no fields named"));
    }
    if let Some(bad) = names.iter().find(|name| {
        name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    }) {
        return Err(Error::invalid_request(format!(
            "messenger: {bad:?} is not a graph field name"
        )));
    }
    Ok(names.join(","))
}

/// `Ok` when `answer[key]` is `expected` (`{"result": "success"}`, `{"success": true}`).
fn succeeded(answer: &Value, key: &str, expected: &Value) -> Result<(), Error> {
    if answer.get(key) == Some(expected) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Api,
        format!("messenger: the api did not confirm the change: {answer}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_are_graph_names_only() {
        let list = |names: &[&str]| field_list(names.iter().copied());
        assert_eq!(
            list(&["get_started", "greeting"]).unwrap(),
            "get_started,greeting"
        );
        assert!(list(&[]).is_err());
        assert!(list(&["greeting&access_token=x"]).is_err());
        assert!(list(&[""]).is_err());
    }

    #[test]
    fn only_the_documented_confirmation_is_success() {
        assert!(succeeded(&json!({"result": "success"}), "result", &json!("success")).is_ok());
        assert!(succeeded(&json!({"success": true}), "success", &json!(true)).is_ok());
        let refused = succeeded(&json!({"success": false}), "success", &json!(true)).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Api);
    }
}
