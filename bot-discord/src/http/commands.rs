//! Application commands: what a bot registers to set itself up, globally (reaching every guild
//! within the hour) or in one guild (at once: for development).

use bot_core::api::Call;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::DiscordHttp;
use crate::error::Error;

/// A command to register: a slash command, or a user or message context-menu command.
///
/// # Examples
///
/// ```
/// use bot_discord::http::{CommandOptionSpec, CommandSpec};
///
/// let weather = CommandSpec::slash("weather", "Today's weather")
///     .option(CommandOptionSpec::new(CommandOptionSpec::STRING, "city", "Which city").required());
/// assert_eq!(serde_json::to_value(&weather).unwrap()["options"][0]["required"], true);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandSpec {
    /// 1 to 32 lowercase characters for a slash command.
    pub name: String,
    /// 1 to 100 characters for a slash command; empty for context-menu commands.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// [`CommandSpec::CHAT_INPUT`], [`CommandSpec::USER`] or [`CommandSpec::MESSAGE`].
    #[serde(rename = "type", default = "chat_input")]
    pub kind: u8,
    /// The options (arguments, or subcommands), 25 at most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<CommandOptionSpec>,
    /// The permissions a member needs by default, as a bit set in a string (`"0"`: admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_member_permissions: Option<String>,
}

fn chat_input() -> u8 {
    CommandSpec::CHAT_INPUT
}

impl CommandSpec {
    /// A slash command.
    pub const CHAT_INPUT: u8 = 1;
    /// A command in a user's context menu.
    pub const USER: u8 = 2;
    /// A command in a message's context menu.
    pub const MESSAGE: u8 = 3;

    /// A slash command `/name`.
    pub fn slash(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            kind: Self::CHAT_INPUT,
            options: Vec::new(),
            default_member_permissions: None,
        }
    }

    /// A context-menu command of `kind` ([`CommandSpec::USER`] or [`CommandSpec::MESSAGE`]).
    pub fn context_menu(kind: u8, name: impl Into<String>) -> Self {
        Self {
            kind,
            ..Self::slash(name, "")
        }
    }

    /// Adds an option.
    #[must_use]
    pub fn option(mut self, option: CommandOptionSpec) -> Self {
        self.options.push(option);
        self
    }

    /// Only members with `permissions` (a bit set) may use the command by default.
    #[must_use]
    pub fn default_member_permissions(mut self, permissions: impl Into<String>) -> Self {
        self.default_member_permissions = Some(permissions.into());
        self
    }
}

/// An option of a command: an argument, or a subcommand with options of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandOptionSpec {
    /// The option's type ([`CommandOptionSpec::STRING`], ...).
    #[serde(rename = "type")]
    pub kind: u8,
    /// 1 to 32 lowercase characters.
    pub name: String,
    /// 1 to 100 characters.
    #[serde(default)]
    pub description: String,
    /// Whether the user must give it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The only values allowed, each `{"name": ..., "value": ...}`, 25 at most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<Value>,
    /// A subcommand's (or group's) own options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<CommandOptionSpec>,
}

impl CommandOptionSpec {
    /// A subcommand.
    pub const SUB_COMMAND: u8 = 1;
    /// A group of subcommands.
    pub const SUB_COMMAND_GROUP: u8 = 2;
    /// Text.
    pub const STRING: u8 = 3;
    /// A whole number.
    pub const INTEGER: u8 = 4;
    /// True or false.
    pub const BOOLEAN: u8 = 5;
    /// A user.
    pub const USER: u8 = 6;
    /// A channel.
    pub const CHANNEL: u8 = 7;
    /// A role.
    pub const ROLE: u8 = 8;
    /// A user or a role.
    pub const MENTIONABLE: u8 = 9;
    /// A number.
    pub const NUMBER: u8 = 10;
    /// A file.
    pub const ATTACHMENT: u8 = 11;

    /// An option of `kind`.
    pub fn new(kind: u8, name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            description: description.into(),
            required: false,
            choices: Vec::new(),
            options: Vec::new(),
        }
    }

    /// The user must give it.
    #[must_use]
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Allows `value` (a string or a number, as the option's type), shown as `name`.
    #[must_use]
    pub fn choice(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.choices
            .push(serde_json::json!({"name": name.into(), "value": value.into()}));
        self
    }

    /// Adds an option to a subcommand.
    #[must_use]
    pub fn option(mut self, option: CommandOptionSpec) -> Self {
        self.options.push(option);
        self
    }
}

/// A command as Discord registered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApplicationCommand {
    /// Snowflake.
    pub id: String,
    /// The application's snowflake.
    #[serde(default)]
    pub application_id: String,
    /// The guild, for a guild command.
    #[serde(default)]
    pub guild_id: Option<String>,
    /// The name.
    pub name: String,
    /// The description (empty for context-menu commands).
    #[serde(default)]
    pub description: String,
    /// [`CommandSpec::CHAT_INPUT`], [`CommandSpec::USER`] or [`CommandSpec::MESSAGE`].
    #[serde(rename = "type", default = "chat_input")]
    pub kind: u8,
    /// The options.
    #[serde(default)]
    pub options: Vec<CommandOptionSpec>,
    /// The permissions a member needs by default.
    #[serde(default)]
    pub default_member_permissions: Option<String>,
    /// Changes whenever the command is updated.
    #[serde(default)]
    pub version: String,
}

impl DiscordHttp {
    /// `PUT /applications/{application}/commands`: replaces the global commands with `commands`
    /// (a `[CommandSpec]`, or their JSON). Commands left out are deleted; global commands reach
    /// every guild within about an hour.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`]; [`ErrorKind::Decode`](crate::ErrorKind::Decode) when the
    /// answer is not a list of commands.
    pub async fn register_commands<C: Serialize + ?Sized>(
        &self,
        application_id: &str,
        commands: &C,
    ) -> Result<Vec<ApplicationCommand>, Error> {
        let path = format!("/applications/{application_id}/commands");
        let call = Self::call(Method::PUT, "register_commands", &path, Some(commands))?;
        self.typed(call).await
    }

    /// `GET /applications/{application}/commands`: the global commands.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::register_commands`].
    pub async fn global_commands(
        &self,
        application_id: &str,
    ) -> Result<Vec<ApplicationCommand>, Error> {
        let path = format!("/applications/{application_id}/commands");
        self.typed(Call::get("global_commands", path)).await
    }

    /// `PUT /applications/{application}/guilds/{guild}/commands`: replaces the commands of one
    /// guild, which see them at once (where global commands take up to an hour): register there
    /// while developing. Commands left out are deleted.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::register_commands`]; [`ErrorKind::Api`](crate::ErrorKind::Api) with
    /// status 403 when the bot was not invited to the guild with the `applications.commands`
    /// scope.
    pub async fn register_guild_commands<C: Serialize + ?Sized>(
        &self,
        application_id: &str,
        guild_id: &str,
        commands: &C,
    ) -> Result<Vec<ApplicationCommand>, Error> {
        let path = format!("/applications/{application_id}/guilds/{guild_id}/commands");
        let call = Self::call(
            Method::PUT,
            "register_guild_commands",
            &path,
            Some(commands),
        )?;
        self.typed(call).await
    }

    /// `GET /applications/{application}/guilds/{guild}/commands`: the commands of one guild.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::register_commands`].
    pub async fn guild_commands(
        &self,
        application_id: &str,
        guild_id: &str,
    ) -> Result<Vec<ApplicationCommand>, Error> {
        let path = format!("/applications/{application_id}/guilds/{guild_id}/commands");
        self.typed(Call::get("guild_commands", path)).await
    }

    /// `DELETE /applications/{application}/guilds/{guild}/commands/{command}`: removes one
    /// command of a guild.
    ///
    /// # Errors
    ///
    /// As [`DiscordHttp::request`]; [`ErrorKind::Api`](crate::ErrorKind::Api) with status 404
    /// (Discord code 10063) when no such command exists.
    pub async fn delete_guild_command(
        &self,
        application_id: &str,
        guild_id: &str,
        command_id: &str,
    ) -> Result<(), Error> {
        let path =
            format!("/applications/{application_id}/guilds/{guild_id}/commands/{command_id}");
        let call = Call::new(Method::DELETE, "delete_guild_command", path);
        self.answer(call).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_command_reads_discords_shape_and_ignores_unknown_fields() {
        let fixture = json!({
            "id": "1200000000000000001", "application_id": "1000000000000000002",
            "guild_id": "900", "name": "weather", "description": "Today's weather", "type": 1,
            "version": "1200000000000000009", "default_member_permissions": null,
            "nsfw": false, "contexts": null,
            "options": [{"type": 3, "name": "city", "description": "Which city", "required": true,
                         "choices": [{"name": "Paris", "value": "paris"}]}]
        });
        let command: ApplicationCommand = serde_json::from_value(fixture).unwrap();
        assert_eq!(command.guild_id.as_deref(), Some("900"));
        assert_eq!(command.kind, CommandSpec::CHAT_INPUT);
        assert_eq!(
            command.options[0],
            CommandOptionSpec::new(CommandOptionSpec::STRING, "city", "Which city")
                .required()
                .choice("Paris", "paris")
        );
    }

    #[test]
    fn a_spec_writes_only_what_it_sets() {
        let spec = CommandSpec::context_menu(CommandSpec::USER, "High five");
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"name": "High five", "type": 2})
        );
        let admin = CommandSpec::slash("purge", "Delete messages")
            .default_member_permissions("0")
            .option(
                CommandOptionSpec::new(CommandOptionSpec::SUB_COMMAND, "all", "Everything").option(
                    CommandOptionSpec::new(CommandOptionSpec::BOOLEAN, "bots", "Bots too"),
                ),
            );
        assert_eq!(
            serde_json::to_value(&admin).unwrap(),
            json!({"name": "purge", "description": "Delete messages", "type": 1,
                   "default_member_permissions": "0",
                   "options": [{"type": 1, "name": "all", "description": "Everything",
                                "options": [{"type": 5, "name": "bots", "description": "Bots too"}]}]})
        );
    }
}
