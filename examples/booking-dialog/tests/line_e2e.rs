//! The booking end to end on LINE: signed webhooks into the real adapter, replies out to the
//! fake LINE API, taps made from the very quick replies and buttons LINE received.
#![allow(clippy::disallowed_methods)] // the bot's server runs in one spawned task

use bot_core::{Bot, Secret};
use bot_line::testing::{FakeLine, WebhookBuilder};
use bot_line::{ConfigureApi as _, Line};
use serde_json::Value;

const SECRET: &str = "booking-secret";
const TOKEN: &str = "booking-token";

/// The postback data of the action labelled `label` in `message` (quick replies or a buttons
/// template).
fn action_data(message: &Value, label: &str) -> String {
    let quick = message["quickReply"]["items"]
        .as_array()
        .into_iter()
        .flatten();
    let quick = quick.map(|item| &item["action"]);
    let buttons = message["template"]["actions"]
        .as_array()
        .into_iter()
        .flatten();
    let action = quick
        .chain(buttons)
        .find(|a| a["label"] == label)
        .unwrap_or_else(|| panic!("no {label:?} in {message}"));
    assert_eq!(action["type"], "postback", "{action}");
    action["data"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_booking_through_the_line_adapter_and_the_fake_line_api() {
    let fake = FakeLine::start(TOKEN).await.unwrap();
    let line = Line::builder(SECRET, TOKEN)
        .api_base(fake.url())
        .build()
        .unwrap();
    let bot = Bot::builder()
        .adapter(line)
        .handler(booking_dialog::handler())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/line/webhook", listener.local_addr().unwrap());
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    let secret = Secret::new(SECRET);
    let post = |webhook: WebhookBuilder| {
        let (url, secret) = (url.clone(), secret.clone());
        async move {
            assert_eq!(webhook.sign(&secret).post(&url).await.unwrap(), 200);
        }
    };

    post(WebhookBuilder::new().text("U1", "Book")).await;
    let asked = fake.wait_for_replies(1).await.remove(0);
    assert_eq!(asked.texts(), ["How many people?"]);
    let two = action_data(&asked.messages[0], "2");

    post(WebhookBuilder::new().postback("U1", &two)).await;
    let asked = fake.wait_for_replies(2).await.remove(1);
    let template = &asked.messages[0]["template"];
    assert_eq!(template["type"], "buttons");
    assert_eq!(template["text"], "A table for 2: what time?");
    let seven = action_data(&asked.messages[0], "7 pm");

    // A late tap on the first question changes nothing.
    post(WebhookBuilder::new().postback("U1", &two)).await;
    let stale = fake.wait_for_replies(3).await.remove(2);
    assert_eq!(
        stale.texts()[0],
        "That question was already answered. Here is where we are:"
    );

    post(WebhookBuilder::new().postback("U1", &seven)).await;
    let asked = fake.wait_for_replies(4).await.remove(3);
    assert_eq!(
        asked.texts(),
        ["2 people at 19:00. Shall I book it?"],
        "{:?}",
        asked.messages
    );
    let yes = action_data(&asked.messages[0], "yes");

    post(WebhookBuilder::new().postback("U1", &yes)).await;
    let done = fake.wait_for_replies(5).await.remove(4);
    assert_eq!(done.texts(), ["Booked: 2 people at 19:00. See you!"]);
    bot.idle().await;
    assert!(bot.dead_letters(10).await.unwrap().is_empty());
    // One reply per event: a LINE reply token works once.
    let replies = fake.replies();
    let mut tokens: Vec<&str> = replies.iter().map(|r| r.reply_token.as_str()).collect();
    tokens.dedup();
    assert_eq!(tokens.len(), 5, "a reply token used twice: {replies:?}");
    bot.request_shutdown();
    server.await.unwrap().unwrap();
}
