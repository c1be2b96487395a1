//! Typed builders for Discord's message components and modals: action rows, buttons (all
//! styles, link buttons included), string select menus, text inputs, modals, and the message
//! body that carries them, serialised to the JSON of Discord's API reference.
//!
//! A [`DiscordMessage`] or a [`Modal`] converts into a [`PlatformMessage`] for
//! [`Context::reply_with`](bot_core::Context::reply_with). A modal is an interaction response
//! (callback type 9), so it can only answer a slash command or a component interaction, and
//! only as its first response.
//!
//! # Examples
//!
//! ```
//! use bot_discord::model::components::{ActionRow, Button, ButtonStyle, DiscordMessage, SelectMenu};
//!
//! let message = DiscordMessage::new()
//!     .content("Pick a size")
//!     .row(ActionRow::new().component(
//!         SelectMenu::new("size").option("Small", "s").option("Large", "l"),
//!     ))
//!     .row(ActionRow::new().component(Button::new(ButtonStyle::Danger, "Cancel", "cancel")));
//! let json = message.to_json();
//! assert_eq!(json["components"][0]["components"][0]["type"], 3);
//! ```

use bot_core::Platform;
use bot_core::outbound::PlatformMessage;
use serde_json::{Value, json};

/// Action rows in a message or modal at most.
pub const MAX_ROWS: usize = 5;
/// Buttons in an action row at most.
pub const MAX_BUTTONS_PER_ROW: usize = 5;
/// Options of a select menu at most.
pub const MAX_SELECT_OPTIONS: usize = 25;
/// Embeds in a message at most.
pub const MAX_EMBEDS: usize = 10;
/// Longest embed title.
pub const MAX_EMBED_TITLE_CHARS: usize = 256;
/// Longest embed description.
pub const MAX_EMBED_DESCRIPTION_CHARS: usize = 4096;
/// Longest `custom_id`.
pub const MAX_CUSTOM_ID_CHARS: usize = 100;
/// What starts the `custom_id` of a button that says text (a [`QuickReply::message`], or a
/// button whose action is [`Action::Message`]): pressing it arrives as a text `Message`, the
/// rest of the `custom_id` being its text, as a tapped quick reply does on LINE and Messenger.
///
/// [`QuickReply::message`]: bot_core::outbound::QuickReply::message
/// [`Action::Message`]: bot_core::outbound::Action::Message
pub const TEXT_CUSTOM_ID_PREFIX: &str = "botrt:text:";
/// Longest button label.
pub const MAX_BUTTON_LABEL_CHARS: usize = 80;
/// Longest modal title or text input label.
pub const MAX_MODAL_LABEL_CHARS: usize = 45;
/// Interaction callback type of a modal.
pub const MODAL_CALLBACK: u8 = 9;

/// A button's look; a link button opens a URL instead of sending an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ButtonStyle {
    /// Blurple.
    Primary,
    /// Grey.
    Secondary,
    /// Green.
    Success,
    /// Red.
    Danger,
    /// Grey, opens a URL.
    Link,
    /// A style this crate does not know, by number.
    Unknown(u8),
}

impl ButtonStyle {
    /// The number Discord uses.
    pub fn code(self) -> u8 {
        match self {
            Self::Primary => 1,
            Self::Secondary => 2,
            Self::Success => 3,
            Self::Danger => 4,
            Self::Link => 5,
            Self::Unknown(code) => code,
        }
    }
}

/// A component of an action row.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Component {
    /// A button.
    Button(Button),
    /// A string select menu.
    SelectMenu(SelectMenu),
    /// A text input (modals only).
    TextInput(TextInput),
}

impl Component {
    /// The component's JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Button(b) => b.to_json(),
            Self::SelectMenu(s) => s.to_json(),
            Self::TextInput(t) => t.to_json(),
        }
    }
}

macro_rules! into_component {
    ($($ty:ident),+) => {$(
        impl From<$ty> for Component {
            fn from(value: $ty) -> Self {
                Self::$ty(value)
            }
        }
    )+};
}
into_component!(Button, SelectMenu, TextInput);

/// An action row (type 1): up to 5 buttons, or one select menu, or one text input in a modal.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ActionRow {
    /// The components.
    pub components: Vec<Component>,
}

impl ActionRow {
    /// An empty row.
    pub fn new() -> Self {
        Self::default()
    }

    bot_core::setters! {
        /// Adds a component.
        component => components: push_into Component;
    }

    /// The row's JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "type": 1,
            "components": self.components.iter().map(Component::to_json).collect::<Vec<_>>(),
        })
    }
}

/// A button (type 2).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Button {
    /// The look.
    pub style: ButtonStyle,
    /// The text, at most 80 characters.
    pub label: String,
    /// What the interaction carries back (not for link buttons).
    pub custom_id: Option<String>,
    /// What a link button opens.
    pub url: Option<String>,
    /// Shown but not pressable.
    pub disabled: bool,
}

impl Button {
    /// A button in `style` (not [`ButtonStyle::Link`]) sending `custom_id` when pressed.
    pub fn new(style: ButtonStyle, label: impl Into<String>, custom_id: impl Into<String>) -> Self {
        Self {
            style,
            label: label.into(),
            custom_id: Some(custom_id.into()),
            url: None,
            disabled: false,
        }
    }

    /// A link button opening `url`.
    pub fn link(label: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            style: ButtonStyle::Link,
            label: label.into(),
            custom_id: None,
            url: Some(url.into()),
            disabled: false,
        }
    }

    /// Shown but not pressable.
    #[must_use]
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }

    /// The button's JSON.
    pub fn to_json(&self) -> Value {
        let mut json = json!({"type": 2, "style": self.style.code(), "label": self.label});
        if let Some(id) = &self.custom_id {
            json["custom_id"] = json!(id);
        }
        if let Some(url) = &self.url {
            json["url"] = json!(url);
        }
        if self.disabled {
            json["disabled"] = json!(true);
        }
        json
    }
}

/// A string select menu (type 3): the choice arrives as a component interaction whose
/// `values` hold the chosen options' values.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SelectMenu {
    /// What the interaction carries back.
    pub custom_id: String,
    /// The options: (label, value, description), at most 25.
    pub options: Vec<(String, String, Option<String>)>,
    /// Shown while nothing is chosen.
    pub placeholder: Option<String>,
    /// How many options must and may be chosen (Discord's default: 1 and 1).
    pub min_values: Option<u8>,
    /// See `min_values`.
    pub max_values: Option<u8>,
}

impl SelectMenu {
    /// A menu sending `custom_id`.
    pub fn new(custom_id: impl Into<String>) -> Self {
        Self {
            custom_id: custom_id.into(),
            options: Vec::new(),
            placeholder: None,
            min_values: None,
            max_values: None,
        }
    }

    /// Adds an option showing `label` that sends `value`.
    #[must_use]
    pub fn option(mut self, label: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push((label.into(), value.into(), None));
        self
    }

    bot_core::setters! {
        /// Sets the placeholder.
        placeholder: into String;
    }

    /// Lets the user choose between `min` and `max` options.
    #[must_use]
    pub fn choose(mut self, min: u8, max: u8) -> Self {
        self.min_values = Some(min);
        self.max_values = Some(max);
        self
    }

    /// The menu's JSON.
    pub fn to_json(&self) -> Value {
        let options: Vec<Value> = self
            .options
            .iter()
            .map(|(label, value, description)| {
                let mut option = json!({"label": label, "value": value});
                if let Some(description) = description {
                    option["description"] = json!(description);
                }
                option
            })
            .collect();
        let mut json = json!({"type": 3, "custom_id": self.custom_id, "options": options});
        if let Some(placeholder) = &self.placeholder {
            json["placeholder"] = json!(placeholder);
        }
        if let Some(min) = self.min_values {
            json["min_values"] = json!(min);
        }
        if let Some(max) = self.max_values {
            json["max_values"] = json!(max);
        }
        json
    }
}

/// A text input (type 4), in a modal.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TextInput {
    /// What the modal submission carries back for this input.
    pub custom_id: String,
    /// The label above it, at most 45 characters.
    pub label: String,
    /// One line (`false`) or a paragraph (`true`).
    pub paragraph: bool,
    /// Whether it must be filled.
    pub required: bool,
    /// Shown while empty.
    pub placeholder: Option<String>,
}

impl TextInput {
    /// A one-line, required input.
    pub fn short(custom_id: impl Into<String>, label: impl Into<String>) -> Self {
        Self {
            custom_id: custom_id.into(),
            label: label.into(),
            paragraph: false,
            required: true,
            placeholder: None,
        }
    }

    /// A multi-line, required input.
    pub fn paragraph(custom_id: impl Into<String>, label: impl Into<String>) -> Self {
        Self {
            paragraph: true,
            ..Self::short(custom_id, label)
        }
    }

    /// May be left empty.
    #[must_use]
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    bot_core::setters! {
        /// Sets the placeholder.
        placeholder: into String;
    }

    /// The input's JSON.
    pub fn to_json(&self) -> Value {
        let mut json = json!({
            "type": 4,
            "custom_id": self.custom_id,
            "label": self.label,
            "style": if self.paragraph { 2 } else { 1 },
            "required": self.required,
        });
        if let Some(placeholder) = &self.placeholder {
            json["placeholder"] = json!(placeholder);
        }
        json
    }
}

/// A modal: a title and text inputs, one per row; its submission arrives as a `Postback`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Modal {
    /// What the submission carries back.
    pub custom_id: String,
    /// The title, at most 45 characters.
    pub title: String,
    /// The inputs, 1 to 5.
    pub inputs: Vec<TextInput>,
}

impl Modal {
    /// A modal titled `title` sending `custom_id` on submission.
    pub fn new(custom_id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            custom_id: custom_id.into(),
            title: title.into(),
            inputs: Vec::new(),
        }
    }

    bot_core::setters! {
        /// Adds a text input, on a row of its own.
        input => inputs: push TextInput;
    }

    /// The interaction response: `{"type": 9, "data": {custom_id, title, components}}`.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .inputs
            .iter()
            .map(|input| ActionRow::new().component(input.clone()).to_json())
            .collect();
        json!({
            "type": MODAL_CALLBACK,
            "data": {"custom_id": self.custom_id, "title": self.title, "components": rows},
        })
    }
}

/// A message body: content, embeds (as JSON) and action rows.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct DiscordMessage {
    /// The text, at most 2,000 characters.
    pub content: Option<String>,
    /// Embed objects, at most 10.
    pub embeds: Vec<Value>,
    /// Action rows, at most 5.
    pub rows: Vec<ActionRow>,
    /// Only the user who invoked the interaction sees it (flag 64); interactions only.
    pub ephemeral: bool,
}

impl DiscordMessage {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    bot_core::setters! {
        /// Sets the content.
        content: into String;

        /// Adds an embed object.
        embed => embeds: push Value;

        /// Adds an action row.
        row => rows: push ActionRow;
    }

    /// Seen only by the user who invoked the interaction.
    #[must_use]
    pub fn ephemeral(mut self) -> Self {
        self.ephemeral = true;
        self
    }

    /// The message body's JSON.
    pub fn to_json(&self) -> Value {
        let mut json = json!({});
        if let Some(content) = &self.content {
            json["content"] = json!(content);
        }
        if !self.embeds.is_empty() {
            json["embeds"] = json!(self.embeds);
        }
        if !self.rows.is_empty() {
            json["components"] = Value::Array(self.rows.iter().map(ActionRow::to_json).collect());
        }
        if self.ephemeral {
            json["flags"] = json!(64);
        }
        json
    }
}

impl From<DiscordMessage> for PlatformMessage {
    fn from(message: DiscordMessage) -> Self {
        PlatformMessage::new(Platform::DISCORD, message.to_json())
    }
}

impl From<Modal> for PlatformMessage {
    fn from(modal: Modal) -> Self {
        PlatformMessage::new(Platform::DISCORD, modal.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_serialise_to_discords_shapes() {
        let message = DiscordMessage::new()
            .content("hi")
            .row(
                ActionRow::new()
                    .component(Button::new(ButtonStyle::Success, "Yes", "yes"))
                    .component(Button::link("Docs", "https://x").disabled()),
            )
            .row(
                ActionRow::new().component(
                    SelectMenu::new("pick")
                        .option("A", "a")
                        .placeholder("Choose")
                        .choose(1, 2),
                ),
            )
            .ephemeral();
        assert_eq!(
            message.to_json(),
            json!({
                "content": "hi",
                "flags": 64,
                "components": [
                    {"type": 1, "components": [
                        {"type": 2, "style": 3, "label": "Yes", "custom_id": "yes"},
                        {"type": 2, "style": 5, "label": "Docs", "url": "https://x", "disabled": true},
                    ]},
                    {"type": 1, "components": [
                        {"type": 3, "custom_id": "pick", "placeholder": "Choose",
                         "min_values": 1, "max_values": 2,
                         "options": [{"label": "A", "value": "a"}]},
                    ]},
                ],
            })
        );
        let modal = Modal::new("feedback", "Feedback")
            .input(TextInput::short("name", "Name"))
            .input(
                TextInput::paragraph("text", "What happened?")
                    .optional()
                    .placeholder("..."),
            );
        let platform = PlatformMessage::from(modal);
        assert_eq!(platform.platform(), &Platform::DISCORD);
        assert_eq!(
            platform.body(),
            &json!({"type": 9, "data": {"custom_id": "feedback", "title": "Feedback", "components": [
                {"type": 1, "components": [{"type": 4, "custom_id": "name", "label": "Name",
                                            "style": 1, "required": true}]},
                {"type": 1, "components": [{"type": 4, "custom_id": "text", "label": "What happened?",
                                            "style": 2, "required": false, "placeholder": "..."}]},
            ]}})
        );
    }
}
