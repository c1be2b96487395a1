//! The demo bot `cargo run -p emulator` starts: one router answering on every platform with
//! each kind of message the page draws. Replace it with your own handler.

use std::time::Duration;

use bot_core::outbound::{Button, Card, QuickReply};
use bot_core::{Context, Error, Event, EventKind, OutgoingMessage, Router};

// ANCHOR: router
/// `menu` (quick replies), `card` (a card with buttons), `carousel`, `slow` (answers after
/// 3 s: a deferred answer on Discord), taps on `order:` buttons, and an echo of anything else.
pub fn router() -> Router {
    Router::new()
        .command("menu", menu)
        .text_exact("menu", menu)
        .command("card", card)
        .text_exact("card", card)
        .command("carousel", carousel)
        .text_exact("carousel", carousel)
        .command("slow", slow)
        .text_exact("slow", slow)
        .postback_prefix("order:", ordered)
        .text(echo)
}
// ANCHOR_END: router

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    let text = event.text_content().unwrap_or_default().to_owned();
    tracing::info!(chars = text.chars().count(), "echoing");
    cx.reply(text).await
}

async fn menu(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply(
        OutgoingMessage::text("What would you like?")
            .quick_reply(QuickReply::message("Pizza"))
            .quick_reply(QuickReply::postback("Pasta", "order:pasta")),
    )
    .await
}

fn pizza(name: &str, toppings: &str) -> Card {
    Card::new(name)
        .text(toppings)
        .image(format!("https://example.com/{}.jpg", name.to_lowercase()))
        .button(Button::postback(
            "Order",
            format!("order:{}", name.to_lowercase()),
        ))
        .button(Button::link("Details", "https://example.com/menu"))
}

async fn card(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply(OutgoingMessage::card(pizza(
        "Margherita",
        "Tomato, mozzarella, basil",
    )))
    .await
}

async fn carousel(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply(OutgoingMessage::carousel([
        pizza("Margherita", "Tomato, mozzarella, basil"),
        pizza("Marinara", "Tomato, garlic, oregano"),
    ]))
    .await
}

async fn slow(cx: Context, _event: Event) -> Result<(), Error> {
    tracing::info!("thinking for 3 s");
    tokio::time::sleep(Duration::from_secs(3)).await;
    cx.reply("Done thinking.").await
}

async fn ordered(cx: Context, event: Event) -> Result<(), Error> {
    let EventKind::Postback(postback) = &event.kind else {
        return Ok(());
    };
    let dish = postback.data.trim_start_matches("order:");
    tracing::info!(dish, "order taken");
    cx.reply(format!("One {dish}, coming up.")).await
}
