//! Rich menus: the menu under a chat's input field, with tappable areas, as the Messaging API takes
//! and returns it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::send::Action;

/// Most tappable areas of one rich menu.
pub const MAX_RICH_MENU_AREAS: usize = 20;
/// Longest text of the chat bar, in characters.
pub const MAX_CHAT_BAR_TEXT_CHARS: usize = 14;
/// Longest name of a rich menu, in characters.
pub const MAX_RICH_MENU_NAME_CHARS: usize = 300;
/// Largest rich menu image, in bytes.
pub const MAX_RICH_MENU_IMAGE_BYTES: usize = 1024 * 1024;

/// A rich menu to create ([`crate::LineClient::create_rich_menu`]).
///
/// # Examples
///
/// ```
/// use bot_line::model::{RichMenu, RichMenuAction, RichMenuArea, RichMenuBounds, RichMenuSize};
///
/// let menu = RichMenu::new(RichMenuSize::HALF, "main", "Menu").area(RichMenuArea::new(
///     RichMenuBounds::new(0, 0, 2500, 843),
///     RichMenuAction::postback("Order", "action=order"),
/// ));
/// assert_eq!(serde_json::to_value(&menu).unwrap()["chatBarText"], "Menu");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RichMenu {
    /// The size of its image.
    pub size: RichMenuSize,
    /// Whether it shows open when it appears.
    #[serde(default)]
    pub selected: bool,
    /// Its name, for managing menus; users never see it (at most 300 characters).
    pub name: String,
    /// The text of the chat bar that opens and closes it (at most 14 characters).
    pub chat_bar_text: String,
    /// The tappable areas (at most 20).
    #[serde(default)]
    pub areas: Vec<RichMenuArea>,
}

impl RichMenu {
    /// A closed menu of `size` without areas yet.
    pub fn new(
        size: RichMenuSize,
        name: impl Into<String>,
        chat_bar_text: impl Into<String>,
    ) -> Self {
        Self {
            size,
            selected: false,
            name: name.into(),
            chat_bar_text: chat_bar_text.into(),
            areas: Vec::new(),
        }
    }

    /// Shows the menu open when it appears.
    #[must_use]
    pub fn selected(mut self, selected: bool) -> Self {
        self.selected = selected;
        self
    }

    /// Adds a tappable area.
    #[must_use]
    pub fn area(mut self, area: RichMenuArea) -> Self {
        self.areas.push(area);
        self
    }
}

/// A rich menu as LINE keeps it: [`RichMenu`] with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RichMenuResponse {
    /// Its id (`richmenu-...`).
    pub rich_menu_id: String,
    /// The menu.
    #[serde(flatten)]
    pub menu: RichMenu,
}

/// The size of a rich menu's image in pixels: 800 to 2,500 wide, at least 250 high, at least
/// 1.45 times as wide as high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RichMenuSize {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl RichMenuSize {
    /// The full size, 2500 × 1686.
    pub const FULL: Self = Self::new(2500, 1686);
    /// Half the height, 2500 × 843.
    pub const HALF: Self = Self::new(2500, 843);

    /// A size of `width` × `height`.
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }
}

/// Where an area lies on the image, in pixels from its top left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RichMenuBounds {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl RichMenuBounds {
    /// The rectangle at (`x`, `y`) of `width` × `height`.
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }
}

/// A tappable area of a rich menu and what tapping it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RichMenuArea {
    /// Where it is.
    pub bounds: RichMenuBounds,
    /// What tapping it does.
    pub action: RichMenuAction,
}

impl RichMenuArea {
    /// The area at `bounds` doing `action`.
    pub fn new(bounds: RichMenuBounds, action: RichMenuAction) -> Self {
        Self { bounds, action }
    }
}

/// What tapping a rich menu area does: an action object (`{"type": "postback", ...}`), built with
/// the constructors, from an [`Action`], or from any JSON LINE accepts. Kept as JSON so that an
/// action type added later by LINE survives a round trip through [`RichMenuResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RichMenuAction(Value);

impl RichMenuAction {
    /// Sends `text` as the user; `label` is for accessibility.
    pub fn message(label: impl Into<String>, text: impl Into<String>) -> Self {
        Self(json!({"type": "message", "label": label.into(), "text": text.into()}))
    }

    /// Sends a postback event with `data`.
    pub fn postback(label: impl Into<String>, data: impl Into<String>) -> Self {
        Self(json!({"type": "postback", "label": label.into(), "data": data.into()}))
    }

    /// Opens `uri`.
    pub fn uri(label: impl Into<String>, uri: impl Into<String>) -> Self {
        Self(json!({"type": "uri", "label": label.into(), "uri": uri.into()}))
    }

    /// Switches to the rich menu of alias `rich_menu_alias_id`, with a postback event carrying
    /// `data`.
    pub fn switch(rich_menu_alias_id: impl Into<String>, data: impl Into<String>) -> Self {
        Self(json!({
            "type": "richmenuswitch",
            "richMenuAliasId": rich_menu_alias_id.into(),
            "data": data.into(),
        }))
    }

    /// Any action object LINE accepts, as JSON.
    pub fn from_json(value: Value) -> Self {
        Self(value)
    }

    /// The action type (`postback`, `uri`, ...).
    pub fn action_type(&self) -> Option<&str> {
        self.0.get("type").and_then(Value::as_str)
    }

    /// The JSON sent.
    pub fn as_json(&self) -> &Value {
        &self.0
    }
}

impl From<Action> for RichMenuAction {
    fn from(action: Action) -> Self {
        // An `Action` is a plain tagged object; writing it out cannot fail.
        Self(serde_json::to_value(action).unwrap_or(Value::Null))
    }
}

/// The format of a rich menu image ([`crate::LineClient::upload_rich_menu_image`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ImageFormat {
    /// `image/jpeg`.
    Jpeg,
    /// `image/png`.
    Png,
}

impl ImageFormat {
    /// The MIME type.
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rich_menu_reads_and_writes_as_line_documents_it() {
        let fixture = json!({
            "richMenuId": "richmenu-88c05ef6921ae53f8b58a25f3a65faf7",
            "size": {"width": 2500, "height": 1686},
            "selected": false,
            "name": "Nice rich menu",
            "chatBarText": "Tap to open",
            "areas": [{
                "bounds": {"x": 0, "y": 0, "width": 2500, "height": 1686},
                "action": {"type": "postback", "data": "action=buy&itemid=123"},
                "unknownField": true
            }]
        });
        let read: RichMenuResponse = serde_json::from_value(fixture.clone()).unwrap();
        assert_eq!(
            read.rich_menu_id,
            "richmenu-88c05ef6921ae53f8b58a25f3a65faf7"
        );
        assert_eq!(read.menu.size, RichMenuSize::FULL);
        assert_eq!(read.menu.chat_bar_text, "Tap to open");
        let area = &read.menu.areas[0];
        assert_eq!(area.bounds, RichMenuBounds::new(0, 0, 2500, 1686));
        assert_eq!(area.action.action_type(), Some("postback"));
        assert_eq!(area.action.as_json()["data"], "action=buy&itemid=123");

        let written = serde_json::to_value(
            RichMenu::new(RichMenuSize::FULL, "Nice rich menu", "Tap to open").area(
                RichMenuArea::new(
                    RichMenuBounds::new(0, 0, 2500, 1686),
                    RichMenuAction::from_json(
                        json!({"type": "postback", "data": "action=buy&itemid=123"}),
                    ),
                ),
            ),
        )
        .unwrap();
        let mut expected = fixture;
        expected.as_object_mut().unwrap().remove("richMenuId");
        expected["areas"][0]
            .as_object_mut()
            .unwrap()
            .remove("unknownField");
        assert_eq!(written, expected);
    }

    #[test]
    fn actions_of_the_message_api_serve_in_menus_too() {
        let action = RichMenuAction::from(Action::Uri {
            label: "Site".into(),
            uri: "https://example.com".into(),
        });
        assert_eq!(
            action.as_json(),
            &json!({"type": "uri", "label": "Site", "uri": "https://example.com"})
        );
        assert_eq!(
            RichMenuAction::switch("menu-b", "to-b").as_json()["richMenuAliasId"],
            "menu-b"
        );
    }
}
