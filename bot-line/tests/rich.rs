//! Every rich message kind, sent by a bot handler through the LINE adapter to the fake LINE API,
//! arrives in the shape LINE's Messaging API reference documents.

mod support;

use bot_core::api::ConfigureApi as _;
use bot_core::outbound::{Button, Card, PlatformMessage, Target};
use bot_core::testing::{rich_sample, sample_card};
use bot_core::{Context, Error, Event, OutgoingMessage, Platform};
use bot_line::LineClient;
use bot_line::model::flex::{Bubble, FlexBox, FlexMessage, FlexText};
use bot_line::testing::{LOADING_PATH, WebhookBuilder};
use serde_json::{Value, json};
use support::{Harness, TOKEN, secret};

/// The sample card with a link button too, for LINE's `uri` action.
fn card(title: &str) -> Card {
    sample_card(title).button(Button::link("Menu", "https://example.com/menu"))
}

/// Answers each command with one rich kind.
async fn rich(cx: Context, event: Event) -> Result<(), Error> {
    if let bot_core::EventKind::Postback(postback) = &event.kind {
        return cx.reply(format!("postback {}", postback.data)).await;
    }
    match event.text_content().unwrap_or_default() {
        "card" => cx.reply(OutgoingMessage::card(card("Pizza"))).await,
        "flex" => {
            let bubble =
                Bubble::new().body(FlexBox::vertical().content(FlexText::new("Hi").bold()));
            cx.reply_with(FlexMessage::new("Hi", bubble)).await
        }
        "discord-only" => {
            let embed =
                PlatformMessage::new(Platform::DISCORD, json!({"embeds": [{"title": "x"}]}))
                    .with_fallback("the plain version");
            cx.reply_with(embed).await
        }
        other => match rich_sample(other) {
            Some(sample) => cx.reply(sample).await,
            None => Ok(()),
        },
    }
}

/// Sends `command` from a one-to-one chat and returns the messages of the reply it got.
async fn reply_to(harness: &Harness, command: &str, replies_before: usize) -> Vec<Value> {
    let status = WebhookBuilder::new()
        .text("U00000000000000000000000000000001", command)
        .sign(&secret())
        .post(&harness.url)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let replies = harness.fake.wait_for_replies(replies_before + 1).await;
    replies[replies_before].messages.clone()
}

#[tokio::test]
async fn every_rich_kind_reaches_line_in_its_documented_shape() {
    let harness = Harness::start(rich, |b| b).await;

    let card = reply_to(&harness, "card", 0).await;
    assert_eq!(card.len(), 1);
    assert_eq!(card[0]["type"], "flex");
    assert_eq!(card[0]["altText"], "Pizza");
    let bubble = &card[0]["contents"];
    assert_eq!(bubble["type"], "bubble");
    assert_eq!(
        bubble["hero"],
        json!({"type": "image", "url": "https://example.com/p.png", "size": "full",
               "aspectRatio": "20:13", "aspectMode": "cover"})
    );
    assert_eq!(bubble["body"]["type"], "box");
    assert_eq!(bubble["body"]["contents"][0]["text"], "Pizza");
    assert_eq!(bubble["body"]["contents"][1]["text"], "Fresh today");
    let buttons = &bubble["footer"]["contents"];
    assert_eq!(buttons[0]["type"], "button");
    assert_eq!(
        buttons[0]["action"],
        json!({"type": "postback", "label": "Order", "data": "order=Pizza", "displayText": "Order"})
    );
    assert_eq!(
        buttons[1]["action"],
        json!({"type": "uri", "label": "Menu", "uri": "https://example.com/menu"})
    );
    assert_eq!(bubble["action"]["uri"], "https://example.com/p");

    let carousel = reply_to(&harness, "carousel", 1).await;
    assert_eq!(carousel[0]["contents"]["type"], "carousel");
    let bubbles = carousel[0]["contents"]["contents"].as_array().unwrap();
    assert_eq!(bubbles.len(), 3);
    assert!(bubbles.iter().all(|b| b["type"] == "bubble"));
    assert_eq!(
        carousel[0]["quickReply"]["items"][0]["action"]["data"],
        "later"
    );

    let file = reply_to(&harness, "file", 2).await;
    assert_eq!(
        file,
        [json!({"type": "text", "text": "menu.pdf\nhttps://example.com/menu.pdf"})]
    );

    let typed = reply_to(&harness, "typing", 3).await;
    assert_eq!(typed, [json!({"type": "text", "text": "done"})]);
    let loading = harness.fake.api().calls_to(LOADING_PATH);
    assert_eq!(loading.len(), 1);
    let body: Value = serde_json::from_slice(&loading[0].request.body).unwrap();
    assert_eq!(
        body,
        json!({"chatId": "U00000000000000000000000000000001", "loadingSeconds": 20})
    );

    let flex = reply_to(&harness, "flex", 4).await;
    assert_eq!(
        flex,
        [
            json!({"type": "flex", "altText": "Hi", "contents": {"type": "bubble", "body": {
            "type": "box", "layout": "vertical",
            "contents": [{"type": "text", "text": "Hi", "wrap": true, "weight": "bold"}]}}})
        ]
    );

    let fallback = reply_to(&harness, "discord-only", 5).await;
    assert_eq!(
        fallback,
        [json!({"type": "text", "text": "the plain version"})]
    );
    harness.stop().await;
}

#[tokio::test]
async fn messages_line_cannot_take_are_refused_before_any_call() {
    let fake = bot_line::testing::FakeLine::start(TOKEN).await.unwrap();
    let client = LineClient::builder(TOKEN)
        .api_base(fake.url())
        .build()
        .unwrap();
    let target = Target::conversation("U1");
    let refused = [
        OutgoingMessage::carousel((0..13).map(|i| card(&i.to_string()))),
        OutgoingMessage::carousel([]),
        OutgoingMessage::platform(PlatformMessage::new(
            Platform::MESSENGER,
            json!({"text": "x"}),
        )),
        OutgoingMessage::card(Card::new("x".repeat(40 * 1024))),
    ];
    bot_core::testing::assert_refused_before_sending(&client, &target, refused).await;
    assert!(fake.api().calls().is_empty());
}
