//! User profiles.

use bot_core::api::Call;

use super::builder::{MessengerClient, USER_PROFILE};
use crate::error::Error;
use crate::model::send::Profile;

/// The profile fields [`MessengerClient::profile`] asks for.
pub const PROFILE_FIELDS: &str = "first_name,last_name,profile_pic";

impl MessengerClient {
    /// A user's profile: first and last name and picture, as far as the page may see them.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidRequest`] when `psid` is not an id; otherwise as any call;
    /// [`crate::ErrorKind::Decode`] when the answer is not a profile.
    pub async fn profile(&self, psid: &str) -> Result<Profile, Error> {
        if psid.is_empty()
            || !psid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::invalid_request(format!(
                "messenger: {psid:?} is not a user id"
            )));
        }
        let path = format!("/{psid}?fields={PROFILE_FIELDS}");
        self.api.call(Call::get(USER_PROFILE, path)).await?.json()
    }
}
