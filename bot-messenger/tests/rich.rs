//! Every rich message kind, sent by a bot handler through the Messenger adapter to the fake
//! Graph API, arrives in the shape the Send API reference documents; taps on the buttons and
//! quick replies it offers come back as postbacks.

mod support;

use bot_core::api::ConfigureApi as _;
use bot_core::outbound::{Action, Button, Card, PlatformMessage};
use bot_core::testing::{rich_sample, sample_card};
use bot_core::{Bot, Context, Error, Event, EventKind, OutgoingMessage, Platform};
use bot_messenger::model::send::Button as MessengerButton;
use bot_messenger::model::template::MediaTemplate;
use bot_messenger::testing::{FakeMessenger, WebhookBuilder};
use serde_json::json;
use support::{app_secret, messenger, serve};

/// Answers each command with one rich kind, and postbacks with their data.
async fn rich(cx: Context, event: Event) -> Result<(), Error> {
    if let EventKind::Postback(postback) = &event.kind {
        let source = postback.params["source"].as_str().unwrap_or("?");
        return cx.reply(format!("{source}: {}", postback.data)).await;
    }
    let command = event.text_content().unwrap_or_default();
    if let Some(sample) = rich_sample(command) {
        return cx.reply(sample).await;
    }
    match command {
        "media" => {
            let media = MediaTemplate::url("image", "https://www.facebook.com/photo.php?fbid=1")
                .button(MessengerButton::web_url("See", "https://example.com"));
            cx.reply_with(media).await
        }
        "line-only" => {
            let sticker = PlatformMessage::new(Platform::LINE, json!({"type": "sticker"}))
                .with_fallback("a sticker");
            cx.reply_with(sticker).await
        }
        _ => Ok(()),
    }
}

#[tokio::test]
async fn every_rich_kind_reaches_messenger_in_its_documented_shape() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let served = serve(
        Bot::builder()
            .adapter(messenger(&fake).build().unwrap())
            .handler(rich),
    )
    .await;
    let commands = ["card", "carousel", "file", "typing", "media", "line-only"];
    let mut webhook = WebhookBuilder::new();
    for command in commands {
        webhook = webhook.text(&format!("PSID_{command}"), command);
    }
    let webhook = webhook.sign(&app_secret());
    assert_eq!(webhook.post(&served.webhook).await.unwrap(), 200);
    let sent = fake.wait_for_messages(commands.len()).await;
    served.bot.idle().await;
    let to = |command: &str| {
        let psid = format!("PSID_{command}");
        sent.iter()
            .find(|m| m.recipient_id.as_deref() == Some(psid.as_str()))
            .unwrap_or_else(|| panic!("nothing to {psid}: {sent:?}"))
            .message
            .clone()
    };

    let card = to("card");
    assert_eq!(
        card,
        json!({"attachment": {"type": "template", "payload": {
            "template_type": "generic",
            "elements": [{
                "title": "Pizza",
                "subtitle": "Fresh today",
                "image_url": "https://example.com/p.png",
                "default_action": {"type": "web_url", "url": "https://example.com/p"},
                "buttons": [{"type": "postback", "title": "Order", "payload": "order=Pizza"}],
            }],
        }}})
    );
    let carousel = to("carousel");
    let elements = carousel["attachment"]["payload"]["elements"]
        .as_array()
        .unwrap();
    assert_eq!(elements.len(), 3);
    assert_eq!(elements[1]["title"], "Pasta");
    assert_eq!(carousel["quick_replies"][0]["payload"], "later");
    assert_eq!(
        to("file"),
        json!({"attachment": {"type": "file",
               "payload": {"url": "https://example.com/menu.pdf", "is_reusable": true}}})
    );
    assert_eq!(to("typing"), json!({"text": "done"}));
    let actions = fake.sender_actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].action, "typing_on");
    assert_eq!(actions[0].recipient_id.as_deref(), Some("PSID_typing"));
    let media = to("media");
    assert_eq!(media["attachment"]["payload"]["template_type"], "media");
    assert_eq!(
        media["attachment"]["payload"]["elements"][0]["buttons"][0]["url"],
        "https://example.com"
    );
    assert_eq!(to("line-only"), json!({"text": "a sticker"}));

    // The card's button and the carousel's quick reply come back as postbacks with their data.
    let taps = WebhookBuilder::new()
        .postback("PSID_card", "Order", "order=Pizza")
        .quick_reply("PSID_carousel", "Later", "later")
        .sign(&app_secret());
    assert_eq!(taps.post(&served.webhook).await.unwrap(), 200);
    let sent = fake.wait_for_messages(commands.len() + 2).await;
    let answers: Vec<_> = sent[commands.len()..]
        .iter()
        .filter_map(|m| m.text())
        .collect();
    assert!(answers.contains(&"postback: order=Pizza"), "{answers:?}");
    assert!(answers.contains(&"quick_reply: later"), "{answers:?}");
    served.stop().await;
}

#[tokio::test]
async fn messages_messenger_cannot_take_are_refused_before_any_call() {
    use bot_core::outbound::Target;
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = bot_messenger::MessengerClient::builder(support::PAGE_TOKEN)
        .api_base(fake.url())
        .build()
        .unwrap();
    let four_buttons = (0..4).fold(Card::new("t"), |c, i| {
        c.button(Button::postback(i.to_string(), "p"))
    });
    let refused = [
        OutgoingMessage::carousel((0..11).map(|i| sample_card(&i.to_string()))),
        OutgoingMessage::card(four_buttons),
        OutgoingMessage::card(Card::new("t").default_action(Action::Postback("p".into()))),
        OutgoingMessage::platform(PlatformMessage::new(
            Platform::DISCORD,
            json!({"content": "x"}),
        )),
    ];
    let target = Target::conversation("PSID");
    bot_core::testing::assert_refused_before_sending(&client, &target, refused).await;
    assert!(fake.api().calls().is_empty());
}
