//! Rich menus: create, read, list and delete them, upload their image, make one the default, and
//! link one to a user.
//!
//! A menu is made in three steps: [`LineClient::create_rich_menu`], then
//! [`LineClient::upload_rich_menu_image`] (a menu shows only once it has its image), then
//! [`LineClient::set_default_rich_menu`] or [`LineClient::link_rich_menu`].

use bot_core::api::Call;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use serde::Deserialize;

use super::builder::{LineClient, endpoint};
use crate::error::{Error, ErrorKind};
use crate::model::{
    ImageFormat, MAX_CHAT_BAR_TEXT_CHARS, MAX_RICH_MENU_AREAS, MAX_RICH_MENU_IMAGE_BYTES,
    MAX_RICH_MENU_NAME_CHARS, RichMenu, RichMenuResponse,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RichMenuId {
    rich_menu_id: String,
}

#[derive(Deserialize)]
struct RichMenuList {
    #[serde(default)]
    richmenus: Vec<RichMenuResponse>,
}

impl LineClient {
    /// Creates `menu` and returns its id. Creating is not repeated after a failure that may have
    /// reached LINE (it would make a second menu).
    ///
    /// A menu shows once it has its image ([`LineClient::upload_rich_menu_image`]) and is the
    /// default ([`LineClient::set_default_rich_menu`]) or a user's
    /// ([`LineClient::link_rich_menu`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use bot_line::LineClient;
    /// use bot_line::model::{
    ///     ImageFormat, RichMenu, RichMenuAction, RichMenuArea, RichMenuBounds, RichMenuSize,
    /// };
    ///
    /// # async fn run(client: LineClient, image: bytes::Bytes) -> Result<(), bot_line::Error> {
    /// let menu = RichMenu::new(RichMenuSize::HALF, "main", "Menu")
    ///     .area(RichMenuArea::new(
    ///         RichMenuBounds::new(0, 0, 1250, 843),
    ///         RichMenuAction::postback("Order", "action=order"),
    ///     ))
    ///     .area(RichMenuArea::new(
    ///         RichMenuBounds::new(1250, 0, 1250, 843),
    ///         RichMenuAction::uri("Site", "https://example.com"),
    ///     ));
    /// let id = client.create_rich_menu(&menu).await?;
    /// client.upload_rich_menu_image(&id, ImageFormat::Png, image).await?;
    /// client.set_default_rich_menu(&id).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when the menu breaks LINE's limits (no area or more than
    /// 20, a chat bar text over 14 characters, a name over 300; nothing sent); otherwise as any
    /// call.
    pub async fn create_rich_menu(&self, menu: &RichMenu) -> Result<String, Error> {
        check_menu(menu)?;
        let call = Call::post(endpoint::RICH_MENU, "/v2/bot/richmenu").json(menu)?;
        let answer = self.call(call, None).await?;
        Ok(Self::decode::<RichMenuId>(&answer, "rich menu id")?.rich_menu_id)
    }

    /// The rich menu `rich_menu_id`.
    ///
    /// # Errors
    ///
    /// As any call; [`ErrorKind::Api`] with status 404 when there is no such menu.
    pub async fn rich_menu(&self, rich_menu_id: &str) -> Result<RichMenuResponse, Error> {
        let path = format!("/v2/bot/richmenu/{}", segment(rich_menu_id)?);
        let answer = self
            .call(Call::get(endpoint::RICH_MENU, path), None)
            .await?;
        Self::decode(&answer, "rich menu")
    }

    /// Every rich menu of the channel.
    ///
    /// # Errors
    ///
    /// As any call.
    pub async fn rich_menus(&self) -> Result<Vec<RichMenuResponse>, Error> {
        let call = Call::get(endpoint::RICH_MENU, "/v2/bot/richmenu/list");
        let answer = self.call(call, None).await?;
        Ok(Self::decode::<RichMenuList>(&answer, "rich menu list")?.richmenus)
    }

    /// Deletes the rich menu `rich_menu_id`.
    ///
    /// # Errors
    ///
    /// As any call; [`ErrorKind::Api`] with status 404 when there is no such menu.
    pub async fn delete_rich_menu(&self, rich_menu_id: &str) -> Result<(), Error> {
        let path = format!("/v2/bot/richmenu/{}", segment(rich_menu_id)?);
        let call = Call::new(Method::DELETE, endpoint::RICH_MENU, path);
        self.call(call, None).await.map(|_| ())
    }

    /// Uploads the image of the rich menu `rich_menu_id` to the data API: a JPEG or PNG of the
    /// menu's size, at most 1 MB. LINE takes one image per menu, so a failed upload that may
    /// have reached LINE is not repeated.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] for an empty image or one over 1 MB (nothing sent);
    /// otherwise as any call (LINE answers 400 when the menu has its image already).
    pub async fn upload_rich_menu_image(
        &self,
        rich_menu_id: &str,
        format: ImageFormat,
        image: Bytes,
    ) -> Result<(), Error> {
        if image.is_empty() || image.len() > MAX_RICH_MENU_IMAGE_BYTES {
            return Err(Error::invalid_request(format!(
                "line: a rich menu image has 1 to {MAX_RICH_MENU_IMAGE_BYTES} bytes, got {}",
                image.len()
            )));
        }
        let path = format!("/v2/bot/richmenu/{}/content", segment(rich_menu_id)?);
        let call = Call::post(endpoint::RICH_MENU, path)
            .body(image, HeaderValue::from_static(format.mime_type()));
        self.call(self.on_data_api(call), None).await.map(|_| ())
    }

    /// Makes `rich_menu_id` the menu of every user without a menu of their own.
    ///
    /// # Errors
    ///
    /// As any call.
    pub async fn set_default_rich_menu(&self, rich_menu_id: &str) -> Result<(), Error> {
        let path = format!("/v2/bot/user/all/richmenu/{}", segment(rich_menu_id)?);
        self.setting(Call::post(endpoint::RICH_MENU, path)).await
    }

    /// The id of the default rich menu, or `None` when there is none.
    ///
    /// # Errors
    ///
    /// As any call.
    pub async fn default_rich_menu(&self) -> Result<Option<String>, Error> {
        let call = Call::get(endpoint::RICH_MENU, "/v2/bot/user/all/richmenu");
        match self.call(call, None).await {
            Ok(answer) => Ok(Some(
                Self::decode::<RichMenuId>(&answer, "rich menu id")?.rich_menu_id,
            )),
            // LINE answers 404 when no default is set.
            Err(e) if e.kind() == ErrorKind::Api && e.status() == Some(StatusCode::NOT_FOUND) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the default rich menu (users' own menus stay).
    ///
    /// # Errors
    ///
    /// As any call.
    pub async fn cancel_default_rich_menu(&self) -> Result<(), Error> {
        let call = Call::new(
            Method::DELETE,
            endpoint::RICH_MENU,
            "/v2/bot/user/all/richmenu",
        );
        self.setting(call).await
    }

    /// Shows the rich menu `rich_menu_id` to `user_id`, over the default.
    ///
    /// # Errors
    ///
    /// As any call.
    pub async fn link_rich_menu(&self, user_id: &str, rich_menu_id: &str) -> Result<(), Error> {
        let path = format!(
            "/v2/bot/user/{}/richmenu/{}",
            segment(user_id)?,
            segment(rich_menu_id)?
        );
        self.setting(Call::post(endpoint::RICH_MENU, path)).await
    }

    /// Takes `user_id`'s own rich menu away; the default shows again.
    ///
    /// # Errors
    ///
    /// As any call.
    pub async fn unlink_rich_menu(&self, user_id: &str) -> Result<(), Error> {
        let path = format!("/v2/bot/user/{}/richmenu", segment(user_id)?);
        self.setting(Call::new(Method::DELETE, endpoint::RICH_MENU, path))
            .await
    }

    /// A call that sets something to a value: doing it twice does no harm, so it is retried
    /// like a read.
    async fn setting(&self, call: Call) -> Result<(), Error> {
        self.call(call.idempotent(true), None).await.map(|_| ())
    }
}

/// `id` as one segment of a path: LINE's ids are letters, digits, `-` and `_`; anything else
/// could send the call elsewhere.
pub(super) fn segment(id: &str) -> Result<&str, Error> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(id)
    } else {
        Err(Error::invalid_request(format!(
            "line: {id:?} is not a LINE id"
        )))
    }
}

fn check_menu(menu: &RichMenu) -> Result<(), Error> {
    let fail = |what: String| Err(Error::invalid_request(format!("line: a rich menu {what}")));
    if menu.areas.is_empty() || menu.areas.len() > MAX_RICH_MENU_AREAS {
        return fail(format!(
            "has 1 to {MAX_RICH_MENU_AREAS} areas, got {}",
            menu.areas.len()
        ));
    }
    if menu.chat_bar_text.chars().count() > MAX_CHAT_BAR_TEXT_CHARS {
        return fail(format!(
            "chat bar text has at most {MAX_CHAT_BAR_TEXT_CHARS} characters"
        ));
    }
    if menu.name.chars().count() > MAX_RICH_MENU_NAME_CHARS {
        return fail(format!(
            "name has at most {MAX_RICH_MENU_NAME_CHARS} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_leave_their_path_segment_are_refused() {
        assert!(segment("richmenu-88c05ef6921ae53f8b58a25f3a65faf7").is_ok());
        assert!(segment("U4af4980629_x").is_ok());
        for bad in ["", "../all/richmenu", "a/b", "a?b", "a b"] {
            assert_eq!(
                segment(bad).unwrap_err().kind(),
                ErrorKind::InvalidRequest,
                "{bad}"
            );
        }
    }
}
