//! Run with: cargo run -p rich-messages
//!
//! A bot that answers `/card`, `/carousel`, `/file`, `/typing`, `/flex`, `/template` and
//! `/modal` with each kind of rich message, and a tap on an "Order" button with what was
//! ordered. It runs against fake LINE, Messenger and Discord APIs on 127.0.0.1, sends every
//! command on each platform (as a signed webhook, or a signed slash command interaction), and
//! prints the JSON each platform's API received: the same message, rendered three ways.

use bot_core::api::ConfigureApi as _;
use bot_core::outbound::{Action, Button, Card, PlatformMessage, QuickReply};
use bot_core::{Bot, Context, Error, Event, EventKind, OutgoingMessage, Router};
use bot_discord::Discord;
use bot_discord::model::components::{Modal, TextInput};
use bot_discord::testing::{APPLICATION_ID, FakeDiscordApi, InteractionSigner, slash_command};
use bot_line::Line;
use bot_line::model::flex::{Bubble, FlexBox, FlexMessage, FlexSeparator, FlexText};
use bot_line::testing::{FakeLine, WebhookBuilder as LineWebhook};
use bot_messenger::Messenger;
use bot_messenger::model::send::Button as MessengerButton;
use bot_messenger::model::template::MediaTemplate;
use bot_messenger::testing::{FakeMessenger, WebhookBuilder as MessengerWebhook};
use serde_json::Value;

const COMMANDS: [&str; 7] = [
    "card", "carousel", "file", "typing", "flex", "template", "modal",
];

// ANCHOR: router
fn router() -> Router {
    Router::new()
        .command("card", card)
        .command("carousel", carousel)
        .command("file", file)
        .command("typing", typing)
        .command("flex", flex)
        .command("template", template)
        .command("modal", modal)
        .postback_prefix("order:", ordered)
}
// ANCHOR_END: router

// ANCHOR: card
fn pizza(name: &str, toppings: &str) -> Card {
    Card::new(name)
        .text(toppings)
        .image(format!("https://example.com/{}.jpg", name.to_lowercase()))
        .button(Button::postback("Order", format!("order:{name}")))
        .button(Button::link("Details", "https://example.com/menu"))
        .default_action(Action::Url("https://example.com/menu".into()))
}

async fn card(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply(OutgoingMessage::card(pizza(
        "Margherita",
        "Tomato, mozzarella, basil",
    )))
    .await
}
// ANCHOR_END: card

// ANCHOR: carousel
async fn carousel(cx: Context, _event: Event) -> Result<(), Error> {
    let menu = OutgoingMessage::carousel([
        pizza("Margherita", "Tomato, mozzarella, basil"),
        pizza("Marinara", "Tomato, garlic, oregano"),
        pizza("Funghi", "Tomato, mozzarella, mushrooms"),
    ])
    .quick_reply(QuickReply::postback("Surprise me", "order:surprise"));
    cx.reply(menu).await
}
// ANCHOR_END: carousel

// ANCHOR: file
async fn file(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply(OutgoingMessage::file(
        "https://example.com/menu.pdf",
        "menu.pdf",
    ))
    .await
}

async fn typing(cx: Context, _event: Event) -> Result<(), Error> {
    // The indicator goes out first, then the text, in one send.
    cx.reply(OutgoingMessage::typing().with_text("Thought about it: Margherita."))
        .await
}
// ANCHOR_END: file

// ANCHOR: platform
async fn flex(cx: Context, _event: Event) -> Result<(), Error> {
    let receipt = Bubble::new().body(
        FlexBox::vertical()
            .content(FlexText::new("RECEIPT").bold().color("#1DB446"))
            .content(FlexSeparator::new())
            .content(FlexText::new("Margherita  x1  9.50")),
    );
    let message = PlatformMessage::from(FlexMessage::new("Your receipt", receipt))
        .with_fallback("Receipt: Margherita x1, 9.50");
    cx.reply_with(message).await
}

async fn template(cx: Context, _event: Event) -> Result<(), Error> {
    let video = MediaTemplate::url("video", "https://www.facebook.com/example/videos/1").button(
        MessengerButton::web_url("Watch more", "https://example.com/videos"),
    );
    cx.reply_with(
        PlatformMessage::from(video).with_fallback("How we make it: https://example.com/videos"),
    )
    .await
}

async fn modal(cx: Context, _event: Event) -> Result<(), Error> {
    let form = Modal::new("feedback", "How was your pizza?")
        .input(TextInput::paragraph("comment", "Tell us"));
    cx.reply_with(PlatformMessage::from(form).with_fallback("How was your pizza? Just type it."))
        .await
}
// ANCHOR_END: platform

// ANCHOR: postback
async fn ordered(cx: Context, event: Event) -> Result<(), Error> {
    let EventKind::Postback(postback) = &event.kind else {
        return Ok(());
    };
    let pizza = postback.data.trim_start_matches("order:");
    cx.reply(format!("One {pizza}, coming up.")).await
}
// ANCHOR_END: postback

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (line_secret, line_token) = ("demo-channel-secret", "demo-access-token");
    let (app_secret, page_token) = ("demo-app-secret", "demo-page-token");
    let discord_token = "demo-bot-token";
    let fake_line = FakeLine::start(line_token).await?;
    let fake_graph = FakeMessenger::start(page_token).await?;
    let fake_discord = FakeDiscordApi::start(discord_token, "ws://127.0.0.1:9", 1, 1).await?;
    let signer = InteractionSigner::default();
    let public_key = bot_discord::interactions::PublicKey::from_hex(&signer.public_key_hex())?;
    let bot = Bot::builder()
        .adapter(
            Line::builder(line_secret, line_token)
                .api_base(fake_line.url())
                .build()?,
        )
        .adapter(
            Messenger::builder(app_secret, "demo-verify-token", page_token)
                .api_base(fake_graph.url())
                .build()?,
        )
        .adapter(
            Discord::builder(discord_token)
                .api_base(fake_discord.url())
                .application_id(APPLICATION_ID)
                .public_key(public_key)
                .gateway(false)
                .build()?,
        )
        .handler(router())
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    // The bot under demonstration: one long-lived task, stopped at the end.
    #[allow(clippy::disallowed_methods)]
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );

    let show = |platform: &str, json: &Value| {
        println!(
            "{platform}:\n{}",
            serde_json::to_string_pretty(json).unwrap_or_default()
        );
    };
    for (sent, command) in COMMANDS.into_iter().enumerate() {
        println!("===== /{command} =====");
        LineWebhook::new()
            .text("U0123456789abcdef0123456789abcdef", &format!("/{command}"))
            .sign(&bot_core::Secret::new(line_secret))
            .post(&format!("{base}/line/webhook"))
            .await?;
        let replies = fake_line.wait_for_replies(sent + 1).await;
        show(
            "LINE reply messages",
            &Value::Array(replies[sent].messages.clone()),
        );

        MessengerWebhook::new()
            .text("demo-psid", &format!("/{command}"))
            .sign(&bot_core::Secret::new(app_secret))
            .post(&format!("{base}/messenger/webhook"))
            .await?;
        let messages = fake_graph.wait_for_messages(sent + 1).await;
        show("Messenger Send API message", &messages[sent].message);

        let interaction = slash_command(command, Value::Array(vec![]), "c1", "u1");
        let response = signer
            .post(&format!("{base}/discord/interactions"), &interaction)
            .await?;
        show(
            "Discord interaction response",
            &response.json::<Value>().await?,
        );
    }
    println!("===== tapping \"Order\" on Messenger =====");
    MessengerWebhook::new()
        .postback("demo-psid", "Order", "order:Margherita")
        .sign(&bot_core::Secret::new(app_secret))
        .post(&format!("{base}/messenger/webhook"))
        .await?;
    let messages = fake_graph.wait_for_messages(COMMANDS.len() + 1).await;
    show(
        "Messenger Send API message",
        &messages[COMMANDS.len()].message,
    );
    bot.idle().await;
    bot.request_shutdown();
    server.await??;
    Ok(())
}
