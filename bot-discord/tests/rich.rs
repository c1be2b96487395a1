//! Every rich message kind, sent by a bot handler as the answer to a slash command over the
//! HTTP interactions endpoint, arrives in the shape Discord's API reference documents; the
//! buttons, select menus and modals it offers come back as postbacks.
#![allow(clippy::disallowed_methods)] // the server under test runs in one spawned task

use bot_core::api::ConfigureApi as _;
use bot_core::outbound::{Action, Card, PlatformMessage};
use bot_core::testing::{rich_sample, sample_card};
use bot_core::{Bot, Context, Error, Event, EventKind, OutgoingMessage, Platform, Router};
use bot_discord::Discord;
use bot_discord::model::components::{ActionRow, DiscordMessage, Modal, SelectMenu, TextInput};
use bot_discord::testing::{APPLICATION_ID, FakeDiscordApi, InteractionSigner, slash_command};
use serde_json::{Value, json};

const TOKEN: &str = "rich-token";

/// Answers each command with one rich kind, and postbacks with their data and params.
async fn rich(cx: Context, event: Event) -> Result<(), Error> {
    let command = match &event.kind {
        EventKind::Postback(postback) => {
            return cx
                .reply(format!("{} {}", postback.data, postback.params))
                .await;
        }
        EventKind::Command(command) => command.name.clone(),
        _ => return Ok(()),
    };
    if let Some(sample) = rich_sample(&command) {
        return cx.reply(sample).await;
    }
    match command.as_str() {
        "select" => {
            let menu = DiscordMessage::new().content("Size?").row(
                ActionRow::new().component(
                    SelectMenu::new("size")
                        .option("Small", "s")
                        .option("Large", "l"),
                ),
            );
            cx.reply_with(menu).await
        }
        "modal" => {
            let modal =
                Modal::new("feedback", "Feedback").input(TextInput::paragraph("text", "Tell us"));
            cx.reply_with(modal).await
        }
        "line-only" => {
            let sticker = PlatformMessage::new(Platform::LINE, json!({"type": "sticker"}))
                .with_fallback("a sticker");
            cx.reply_with(sticker).await
        }
        _ => Ok(()),
    }
}

struct Endpoint {
    api: FakeDiscordApi,
    signer: InteractionSigner,
    url: String,
    bot: Bot,
    server: tokio::task::JoinHandle<Result<bot_core::ShutdownReport, Error>>,
}

async fn start() -> Endpoint {
    let signer = InteractionSigner::default();
    let api = FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1)
        .await
        .unwrap();
    let discord = Discord::builder(TOKEN)
        .api_base(api.url())
        .application_id(APPLICATION_ID)
        .public_key(
            bot_discord::interactions::PublicKey::from_hex(&signer.public_key_hex()).unwrap(),
        )
        .gateway(false)
        .build()
        .unwrap();
    let router = Router::new().fallback(rich);
    let bot = Bot::builder()
        .adapter(discord)
        .handler(router)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/discord/interactions",
        listener.local_addr().unwrap()
    );
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    Endpoint {
        api,
        signer,
        url,
        bot,
        server,
    }
}

impl Endpoint {
    /// Posts `interaction` and returns the interaction response Discord would get.
    async fn answer(&self, interaction: &Value) -> Value {
        let response = self.signer.post(&self.url, interaction).await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn command(&self, name: &str) -> Value {
        self.answer(&slash_command(name, json!([]), "c1", "u1"))
            .await
    }
}

/// A component or modal interaction (`kind` 3 or 5) as Discord sends it.
fn interaction(kind: u8, id: u64, data: Value) -> Value {
    json!({
        "id": id.to_string(), "application_id": APPLICATION_ID, "type": kind,
        "token": format!("rich-token-{id}"), "version": 1,
        "channel_id": "c1", "channel": {"id": "c1", "type": 0},
        "guild_id": "1", "member": {"user": {"id": "u1", "username": "someone"}},
        "data": data,
    })
}

#[tokio::test]
async fn every_rich_kind_reaches_discord_in_its_documented_shape() {
    let e = start().await;

    let card = e.command("card").await;
    assert_eq!(
        card,
        json!({"type": 4, "data": {
            "embeds": [{"title": "Pizza", "description": "Fresh today",
                        "image": {"url": "https://example.com/p.png"}, "url": "https://example.com/p"}],
            "components": [{"type": 1, "components": [
                {"type": 2, "style": 1, "label": "Order", "custom_id": "order=Pizza"}]}],
        }})
    );

    let carousel = e.command("carousel").await;
    let embeds = carousel["data"]["embeds"].as_array().unwrap();
    assert_eq!(embeds.len(), 3);
    assert_eq!(embeds[2]["title"], "Salad");
    let buttons = carousel["data"]["components"][0]["components"]
        .as_array()
        .unwrap();
    assert_eq!(buttons.len(), 4, "three cards' buttons and the quick reply");
    assert_eq!(buttons[3]["custom_id"], "later");

    let file = e.command("file").await;
    assert_eq!(
        file["data"]["embeds"],
        json!([{"title": "menu.pdf", "url": "https://example.com/menu.pdf"}])
    );

    let typing = e.command("typing").await;
    assert_eq!(typing, json!({"type": 4, "data": {"content": "done"}}));
    let typed = e.api.api().calls_to("/channels/c1/typing");
    assert_eq!(typed.len(), 1, "one trigger typing before the answer");

    let select = e.command("select").await;
    assert_eq!(
        select,
        json!({"type": 4, "data": {"content": "Size?", "components": [{"type": 1, "components": [
            {"type": 3, "custom_id": "size",
             "options": [{"label": "Small", "value": "s"}, {"label": "Large", "value": "l"}]}]}]}})
    );

    let modal = e.command("modal").await;
    assert_eq!(
        modal,
        json!({"type": 9, "data": {"custom_id": "feedback", "title": "Feedback", "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": "text", "label": "Tell us",
                                        "style": 2, "required": true}]}]}})
    );

    let fallback = e.command("line-only").await;
    assert_eq!(
        fallback,
        json!({"type": 4, "data": {"content": "a sticker"}})
    );
    e.bot.idle().await;
    e.bot.request_shutdown();
    e.server.await.unwrap().unwrap();
}

#[tokio::test]
async fn buttons_selects_and_modals_come_back_as_postbacks() {
    let e = start().await;
    let button = e
        .answer(&interaction(
            3,
            1_400_000_000_000_000_001,
            json!({"custom_id": "order=Pizza", "component_type": 2}),
        ))
        .await;
    assert_eq!(button["data"]["content"], "order=Pizza null");
    let select = e
        .answer(&interaction(
            3,
            1_400_000_000_000_000_002,
            json!({"custom_id": "size", "component_type": 3, "values": ["l"]}),
        ))
        .await;
    assert_eq!(select["data"]["content"], r#"size ["l"]"#);
    let submitted = e
        .answer(&interaction(
            5,
            1_400_000_000_000_000_003,
            json!({"custom_id": "feedback", "components": [{"type": 1, "components": [
                {"type": 4, "custom_id": "text", "value": "Great"}]}]}),
        ))
        .await;
    assert_eq!(submitted["data"]["content"], r#"feedback {"text":"Great"}"#);
    e.bot.request_shutdown();
    e.server.await.unwrap().unwrap();
}

#[tokio::test]
async fn messages_discord_cannot_take_are_refused_before_any_call() {
    use bot_core::outbound::Target;
    let api = FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1)
        .await
        .unwrap();
    let http = bot_discord::DiscordHttp::builder(TOKEN)
        .api_base(api.url())
        .build()
        .unwrap();
    let client = bot_discord::DiscordClient::new(http, None, std::sync::Arc::default());
    let modal = Modal::new("m", "Title").input(TextInput::short("a", "A"));
    let refused = [
        // A modal answers an interaction; a channel message cannot be one.
        OutgoingMessage::platform(PlatformMessage::from(modal)),
        OutgoingMessage::carousel((0..11).map(|i| sample_card(&i.to_string()))),
        OutgoingMessage::card(Card::new("t").default_action(Action::Postback("p".into()))),
        OutgoingMessage::platform(PlatformMessage::new(
            Platform::LINE,
            json!({"type": "text"}),
        )),
    ];
    let target = Target::conversation("c1");
    bot_core::testing::assert_refused_before_sending(&client, &target, refused).await;
    assert_eq!(api.api().call_count(), 0);
}
