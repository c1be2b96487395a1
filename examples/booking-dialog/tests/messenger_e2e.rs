//! The booking end to end on Messenger: signed webhooks into the real adapter, the Send API
//! calls out to the fake Graph API, taps made from the quick replies and buttons it received.
#![allow(clippy::disallowed_methods)] // the bot's server runs in one spawned task

use bot_core::{Bot, Secret};
use bot_messenger::testing::{FakeMessenger, WebhookBuilder};
use bot_messenger::{ConfigureApi as _, Messenger};
use serde_json::Value;

const APP_SECRET: &str = "booking-app-secret";
const PAGE_TOKEN: &str = "booking-page-token";

/// The payload of the quick reply or button titled `title` in a message object.
fn payload(message: &Value, title: &str) -> String {
    let quick = message["quick_replies"].as_array().into_iter().flatten();
    let buttons = message["attachment"]["payload"]["buttons"]
        .as_array()
        .into_iter()
        .flatten();
    let choice = quick
        .chain(buttons)
        .find(|c| c["title"] == title)
        .unwrap_or_else(|| panic!("no {title:?} in {message}"));
    choice["payload"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_booking_through_the_messenger_adapter_and_the_fake_graph_api() {
    let fake = FakeMessenger::start(PAGE_TOKEN).await.unwrap();
    let messenger = Messenger::builder(APP_SECRET, "verify", PAGE_TOKEN)
        .api_base(fake.url())
        .build()
        .unwrap();
    let bot = Bot::builder()
        .adapter(messenger)
        .handler(booking_dialog::handler())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/messenger/webhook",
        listener.local_addr().unwrap()
    );
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    let secret = Secret::new(APP_SECRET);
    let post = |webhook: WebhookBuilder| {
        let (url, secret) = (url.clone(), secret.clone());
        async move {
            assert_eq!(webhook.entry().sign(&secret).post(&url).await.unwrap(), 200);
        }
    };

    post(WebhookBuilder::new().text("P1", "book")).await;
    let asked = fake.wait_for_messages(1).await.remove(0);
    assert_eq!(asked.text(), Some("How many people?"));
    let three = payload(&asked.message, "3");

    post(WebhookBuilder::new().quick_reply("P1", "3", &three)).await;
    let asked = fake.wait_for_messages(2).await.remove(1);
    let template = &asked.message["attachment"]["payload"];
    assert_eq!(template["template_type"], "button");
    assert_eq!(template["text"], "A table for 3: what time?");
    let eight = payload(&asked.message, "8 pm");

    post(WebhookBuilder::new().postback("P1", "8 pm", &eight)).await;
    let asked = fake.wait_for_messages(3).await.remove(2);
    assert_eq!(asked.text(), Some("3 people at 20:00. Shall I book it?"));
    // Typed instead of tapped.
    post(WebhookBuilder::new().text("P1", "Yes")).await;
    let done = fake.wait_for_messages(4).await.remove(3);
    assert_eq!(done.text(), Some("Booked: 3 people at 20:00. See you!"));
    bot.idle().await;
    assert!(bot.dead_letters(10).await.unwrap().is_empty());
    bot.request_shutdown();
    server.await.unwrap().unwrap();
}
