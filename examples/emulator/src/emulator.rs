//! [`Emulator`]: the bot under development behind its real adapters, the platforms' fakes in
//! front of them, and the developer's messages sent as the platforms would send them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bot_core::api::ConfigureApi as _;
use bot_core::console::Console;
use bot_core::{Bot, BotBuilder, Secret, ShutdownReport};
use bot_discord::Discord;
use bot_discord::gateway::ShardRange;
use bot_discord::interactions::PublicKey;
use bot_discord::testing::{
    APPLICATION_ID, BOT_USER_ID, FakeDiscordApi, FakeGateway, InteractionSigner, slash_command,
};
use bot_line::Line;
use bot_line::testing::{FakeLine, WebhookBuilder as LineWebhook, text_event};
use bot_messenger::Messenger;
use bot_messenger::testing::{FakeMessenger, WebhookBuilder as MessengerWebhook};
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt as _, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::figures::Figures;
use crate::journal::{Author, Item, Journal};
use crate::watch;

/// The emulator's failures: a fake that cannot start, a bot that cannot be built or served.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The LINE channel secret and access token the emulator signs with and the fake LINE API knows.
pub const LINE_SECRET: &str = "emulator-channel-secret";
/// See [`LINE_SECRET`].
pub const LINE_TOKEN: &str = "emulator-access-token";
/// The LINE user the developer chats as.
pub const LINE_USER: &str = "Ue0000000000000000000000000000001";
/// The Messenger app secret, verify token and page token.
pub const MESSENGER_APP_SECRET: &str = "emulator-app-secret";
/// See [`MESSENGER_APP_SECRET`].
pub const MESSENGER_VERIFY_TOKEN: &str = "emulator-verify-token";
/// See [`MESSENGER_APP_SECRET`].
pub const MESSENGER_PAGE_TOKEN: &str = "emulator-page-token";
/// The page-scoped id the developer chats as on Messenger.
pub const MESSENGER_USER: &str = "24000000000000001";
/// The Discord bot token the fake gateway and REST API accept.
pub const DISCORD_TOKEN: &str = "emulator-bot-token";
/// The Discord user and channel the developer chats as and in.
pub const DISCORD_USER: &str = "1100000000000000001";
/// See [`DISCORD_USER`].
pub const DISCORD_CHANNEL: &str = "1200000000000000001";
/// The Discord guild of [`DISCORD_CHANNEL`].
pub const DISCORD_GUILD: &str = "1";

/// Bytes of typed console lines, and of console output, buffered between the page and the bot.
const CONSOLE_BUFFER: usize = 64 * 1024;

/// The platforms the page offers, in its order.
pub const PLATFORMS: [&str; 4] = ["line", "messenger", "discord", "console"];

/// What a tap on a drawn button or chip asks for.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Tap {
    /// The platform whose message carried it.
    pub platform: String,
    /// The platform's own action type: LINE `postback` or `message`; Messenger `quick_reply`
    /// or `postback`; Discord `component`; console `label`.
    pub action: String,
    /// The label shown.
    pub label: String,
    /// The data carried (postback data, payload, `custom_id`, or the text a message action
    /// sends).
    #[serde(default)]
    pub data: String,
    /// LINE's `displayText` of a postback action: what the user's bubble shows.
    #[serde(default)]
    pub display_text: Option<String>,
}

/// A request the page could not turn into a platform's message.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

struct Inner {
    journal: Journal,
    bot: Bot,
    bot_base: String,
    line: FakeLine,
    graph: FakeMessenger,
    discord: FakeDiscordApi,
    gateway: FakeGateway,
    signer: InteractionSigner,
    console_input: Mutex<DuplexStream>,
    next_discord_id: AtomicU64,
    server: std::sync::Mutex<Option<JoinHandle<Result<ShutdownReport, bot_core::Error>>>>,
    watchers: Vec<JoinHandle<()>>,
}

/// The bot under development, reachable as four platforms' users; see the crate docs.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("bot", &self.inner.bot_base)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts the platforms' fakes, adds the LINE, Messenger, Discord and console adapters
    /// (pointed at the fakes) to `builder`, builds the bot and serves its webhooks on
    /// 127.0.0.1. `builder` carries the developer's handler, limits and state.
    ///
    /// # Errors
    ///
    /// When a fake cannot bind a port, an adapter or the bot cannot be built.
    pub async fn start(builder: BotBuilder, journal: Journal) -> Result<Self, Error> {
        let line = FakeLine::start(LINE_TOKEN).await?;
        let graph = FakeMessenger::start(MESSENGER_PAGE_TOKEN).await?;
        let gateway = FakeGateway::start(DISCORD_TOKEN).await?;
        let discord = FakeDiscordApi::start(DISCORD_TOKEN, &gateway.url(), 1, 1).await?;
        let signer = InteractionSigner::default();
        let (console_input, console_reader) = tokio::io::duplex(CONSOLE_BUFFER);
        let (console_writer, console_output) = tokio::io::duplex(CONSOLE_BUFFER);
        let console = Console::with_io(tokio::io::BufReader::new(console_reader), console_writer);
        let bot = builder
            .adapter(
                Line::builder(LINE_SECRET, LINE_TOKEN)
                    .api_base(line.url())
                    .build()?,
            )
            .adapter(
                Messenger::builder(
                    MESSENGER_APP_SECRET,
                    MESSENGER_VERIFY_TOKEN,
                    MESSENGER_PAGE_TOKEN,
                )
                .api_base(graph.url())
                .build()?,
            )
            .adapter(
                Discord::builder(DISCORD_TOKEN)
                    .api_base(discord.url())
                    .application_id(APPLICATION_ID)
                    .public_key(PublicKey::from_hex(&signer.public_key_hex())?)
                    .shards(ShardRange::Count(1))
                    .build()?,
            )
            .adapter(console)
            .build()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let bot_base = format!("http://{}", listener.local_addr()?);
        // The bot's own server: one long-lived task, stopped by `shutdown`.
        #[allow(clippy::disallowed_methods)]
        let server = tokio::spawn(
            bot.clone()
                .serve_with_shutdown(listener, std::future::pending()),
        );
        let watchers = vec![
            watch::line(line.clone(), journal.clone()),
            watch::messenger(graph.clone(), journal.clone()),
            watch::discord(discord.clone(), journal.clone()),
            watch::console(console_output, journal.clone()),
        ];
        Ok(Self {
            inner: Arc::new(Inner {
                journal,
                bot,
                bot_base,
                line,
                graph,
                discord,
                gateway,
                signer,
                console_input: Mutex::new(console_input),
                next_discord_id: AtomicU64::new(1_400_000_000_000_000_000),
                server: std::sync::Mutex::new(Some(server)),
                watchers,
            }),
        })
    }

    /// The bot under development.
    pub fn bot(&self) -> &Bot {
        &self.inner.bot
    }

    /// The journal the page reads.
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// The bot's webhook server (`http://127.0.0.1:<port>`).
    pub fn bot_url(&self) -> &str {
        &self.inner.bot_base
    }

    /// The runtime's figures now.
    pub fn figures(&self) -> Figures {
        Figures::from_prometheus(&self.inner.bot.telemetry().render_prometheus())
    }

    /// Waits until the Discord gateway session is ready (messages typed before it would wait
    /// in the fake gateway anyway).
    pub async fn discord_ready(&self) {
        self.inner.gateway.wait_for_readies(1).await;
    }

    fn user_item(
        &self,
        platform: &'static str,
        kind: &'static str,
        body: Value,
        via: &str,
        event: Value,
    ) {
        self.inner.journal.push(Item {
            seq: 0,
            platform,
            from: Author::User,
            kind,
            body,
            via: via.to_owned(),
            event: Some(event),
        });
    }

    fn note(&self, platform: &'static str, text: String) {
        self.inner.journal.push(watch::note(platform, text));
    }

    /// Sends `text` typed on `platform` to the bot, as that platform would.
    ///
    /// # Errors
    ///
    /// [`Refused`] for an unknown platform or an empty text; the transport's error when the
    /// bot could not be reached.
    pub async fn send_text(&self, platform: &str, text: &str) -> Result<(), Error> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Refused("type something to send".into()).into());
        }
        match platform {
            "line" => {
                let webhook = LineWebhook::new().text(LINE_USER, text);
                self.post_line(webhook, json!({"text": text})).await
            }
            "messenger" => {
                let webhook = MessengerWebhook::new().text(MESSENGER_USER, text);
                self.post_messenger(webhook, json!({"text": text})).await
            }
            "discord" => match text.strip_prefix('/') {
                Some(command) => self.slash_command(command).await,
                None => self.discord_message(text).await,
            },
            "console" => self.console_line(text).await,
            other => Err(Refused(format!("no platform {other:?}: one of {PLATFORMS:?}")).into()),
        }
    }

    /// Sends a tap on a button or quick reply the page drew.
    ///
    /// # Errors
    ///
    /// [`Refused`] for an action the platform does not have; the transport's error when the
    /// bot could not be reached.
    pub async fn tap(&self, tap: &Tap) -> Result<(), Error> {
        let shown = json!({"text": tap.display_text.clone().unwrap_or_else(|| tap.label.clone()), "tapped": tap.label, "data": tap.data});
        match (tap.platform.as_str(), tap.action.as_str()) {
            ("line", "postback") => {
                let mut event = text_event(LINE_USER, &tap.label);
                if let Some(event) = event.as_object_mut() {
                    event.remove("message");
                    event.insert("type".into(), json!("postback"));
                    event.insert("postback".into(), json!({"data": tap.data}));
                }
                self.post_line(LineWebhook::new().event(event), shown).await
            }
            ("line", "message") => {
                let webhook = LineWebhook::new().text(LINE_USER, &tap.data);
                self.post_line(webhook, json!({"text": tap.data, "tapped": tap.label}))
                    .await
            }
            ("messenger", "quick_reply") => {
                let webhook =
                    MessengerWebhook::new().quick_reply(MESSENGER_USER, &tap.label, &tap.data);
                self.post_messenger(webhook, shown).await
            }
            ("messenger", "postback") => {
                let webhook = MessengerWebhook::new().postback(MESSENGER_USER, &tap.label, &tap.data);
                self.post_messenger(webhook, shown).await
            }
            ("discord", "component") => self.component(tap, shown).await,
            ("console", "label") => self.console_line(&tap.label).await,
            (platform, action) => Err(Refused(format!(
                "no tap {action:?} on {platform:?}: LINE postback/message, Messenger quick_reply/postback, Discord component, console label"
            ))
            .into()),
        }
    }

    async fn post_line(&self, webhook: LineWebhook, shown: Value) -> Result<(), Error> {
        let signed = webhook.sign(&Secret::new(LINE_SECRET));
        let event = signed_request(signed.header, &signed.signature, &signed.body);
        let kind = if shown.get("tapped").is_some() {
            "tap"
        } else {
            "text"
        };
        self.user_item("line", kind, shown, "signed webhook", event);
        let url = format!("{}/line/webhook", self.inner.bot_base);
        let status = signed.post(&url).await?;
        if !(200..300).contains(&status) {
            self.note("line", format!("the webhook answered HTTP {status}"));
        }
        Ok(())
    }

    async fn post_messenger(&self, webhook: MessengerWebhook, shown: Value) -> Result<(), Error> {
        let signed = webhook.sign(&Secret::new(MESSENGER_APP_SECRET));
        let event = signed_request(signed.header, &signed.signature, &signed.body);
        let kind = if shown.get("tapped").is_some() {
            "tap"
        } else {
            "text"
        };
        self.user_item("messenger", kind, shown, "signed webhook", event);
        let url = format!("{}/messenger/webhook", self.inner.bot_base);
        let status = signed.post(&url).await?;
        if !(200..300).contains(&status) {
            self.note("messenger", format!("the webhook answered HTTP {status}"));
        }
        Ok(())
    }

    fn next_discord_id(&self) -> String {
        self.inner
            .next_discord_id
            .fetch_add(1, Ordering::Relaxed)
            .to_string()
    }

    async fn discord_message(&self, text: &str) -> Result<(), Error> {
        let message = json!({
            "id": self.next_discord_id(), "channel_id": DISCORD_CHANNEL, "guild_id": DISCORD_GUILD,
            "author": {"id": DISCORD_USER, "username": "you", "global_name": "You"},
            "content": text, "type": 0, "mentions": [], "attachments": [], "embeds": [],
            "timestamp": "2026-01-01T00:00:00.000000+00:00",
        });
        let event = json!({"gateway": {"op": 0, "t": "MESSAGE_CREATE", "d": message}});
        self.user_item(
            "discord",
            "text",
            json!({"text": text}),
            "gateway dispatch",
            event,
        );
        self.inner.gateway.dispatch("MESSAGE_CREATE", message).await;
        Ok(())
    }

    async fn slash_command(&self, command: &str) -> Result<(), Error> {
        let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
        if name.is_empty() {
            return Err(
                Refused("a slash command needs a name: /name [option:value ...]".into()).into(),
            );
        }
        let interaction = slash_command(name, command_options(rest), DISCORD_CHANNEL, DISCORD_USER);
        let shown = json!({"text": format!("/{command}"), "command": name});
        self.interact(interaction, shown, "slash command").await
    }

    async fn component(&self, tap: &Tap, shown: Value) -> Result<(), Error> {
        let mut interaction = slash_command("component", json!([]), DISCORD_CHANNEL, DISCORD_USER);
        interaction["type"] = json!(3);
        interaction["data"] = json!({"custom_id": tap.data, "component_type": 2});
        interaction["message"] = json!({
            "id": self.next_discord_id(), "channel_id": DISCORD_CHANNEL,
            "author": {"id": BOT_USER_ID, "username": "bot", "bot": true}, "content": "",
        });
        self.interact(interaction, shown, "button interaction")
            .await
    }

    async fn interact(&self, interaction: Value, shown: Value, what: &str) -> Result<(), Error> {
        let body = interaction.to_string();
        let timestamp = InteractionSigner::now();
        let signature = self.inner.signer.sign(&timestamp, body.as_bytes());
        let event = json!({
            "headers": {
                bot_discord::interactions::SIGNATURE_HEADER: signature,
                bot_discord::interactions::TIMESTAMP_HEADER: timestamp,
            },
            "body": interaction,
        });
        let kind = if shown.get("tapped").is_some() {
            "tap"
        } else {
            "text"
        };
        self.user_item("discord", kind, shown, &format!("signed {what}"), event);
        let url = format!("{}/discord/interactions", self.inner.bot_base);
        let response = self.inner.signer.post(&url, &interaction).await?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            self.inner.journal.push(Item {
                seq: 0,
                platform: "discord",
                from: Author::Bot,
                kind: "interaction",
                body: answer,
                via: format!("interaction response · HTTP {status}"),
                event: None,
            });
        } else {
            self.note(
                "discord",
                format!("the interactions endpoint answered HTTP {status}"),
            );
        }
        Ok(())
    }

    async fn console_line(&self, text: &str) -> Result<(), Error> {
        if text.contains('\n') {
            return Err(Refused("one line at a time on the console".into()).into());
        }
        self.user_item(
            "console",
            "text",
            json!({"text": text}),
            "stdin",
            json!({"stdin": format!("{text}\n")}),
        );
        let mut input = self.inner.console_input.lock().await;
        input.write_all(format!("{text}\n").as_bytes()).await?;
        input.flush().await?;
        Ok(())
    }

    /// Shuts the bot down gracefully and stops the watchers; the bot's shutdown report.
    ///
    /// # Errors
    ///
    /// When the bot's server failed.
    pub async fn shutdown(&self) -> Result<Option<ShutdownReport>, Error> {
        self.inner.bot.request_shutdown();
        let server = self
            .inner
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let report = match server {
            Some(server) => Some(server.await??),
            None => None,
        };
        for watcher in &self.inner.watchers {
            watcher.abort();
        }
        Ok(report)
    }

    /// The fakes, for tests that look at what the platforms received.
    pub fn fakes(&self) -> (&FakeLine, &FakeMessenger, &FakeDiscordApi) {
        (&self.inner.line, &self.inner.graph, &self.inner.discord)
    }
}

/// A signed webhook as the side panel shows it: the signature header and the JSON body.
fn signed_request(header: &str, signature: &str, body: &[u8]) -> Value {
    json!({
        "headers": {header: signature, "content-type": "application/json"},
        "body": serde_json::from_slice::<Value>(body).unwrap_or(Value::Null),
    })
}

/// `a:1 b:two words` as Discord's string options; a rest without `name:` is one option `text`.
pub fn command_options(rest: &str) -> Value {
    let rest = rest.trim();
    if rest.is_empty() {
        return json!([]);
    }
    let mut options: Vec<(String, String)> = Vec::new();
    for word in rest.split(' ') {
        match word.split_once(':') {
            Some((name, value))
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                options.push((name.to_owned(), value.to_owned()));
            }
            _ => match options.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(word);
                }
                None => options.push(("text".to_owned(), word.to_owned())),
            },
        }
    }
    Value::Array(
        options
            .into_iter()
            .map(|(name, value)| json!({"name": name, "type": 3, "value": value}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_options_are_named_or_one_text() {
        assert_eq!(command_options(""), json!([]));
        assert_eq!(
            command_options("hello there"),
            json!([{"name": "text", "type": 3, "value": "hello there"}])
        );
        assert_eq!(
            command_options("size:large topping:extra cheese"),
            json!([
                {"name": "size", "type": 3, "value": "large"},
                {"name": "topping", "type": 3, "value": "extra cheese"},
            ])
        );
    }
}
