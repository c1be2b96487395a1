//! The booking end to end on Discord: messages and button presses through the fake gateway into
//! the real adapter, answers out to the fake REST API (channel messages, interaction callbacks).
#![allow(clippy::disallowed_methods)] // the bot's server runs in one spawned task

use bot_core::Bot;
use bot_discord::testing::FakeDiscord;
use serde_json::{Value, json};

const TOKEN: &str = "booking-token";

/// The `custom_id` of the button labelled `label` in a message body.
fn custom_id(body: &Value, label: &str) -> String {
    let rows = body["components"].as_array().into_iter().flatten();
    let buttons = rows.flat_map(|row| row["components"].as_array().into_iter().flatten());
    let button = (buttons.clone())
        .find(|b| b["label"] == label)
        .unwrap_or_else(|| panic!("no {label:?} in {body}"));
    button["custom_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn two_members_book_in_one_channel_through_the_discord_adapter() {
    let fakes = FakeDiscord::start(TOKEN).await.unwrap();
    let discord = fakes
        .builder(TOKEN)
        .application_id("1100000000000000001")
        .build()
        .unwrap();
    let FakeDiscord { gateway, api } = fakes;
    let bot = Bot::builder()
        .adapter(discord)
        .handler(booking_dialog::handler())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    gateway.wait_for_readies(1).await;
    let mut ids = 1_180_000_000_000_000_000_u64;
    let mut next_id = || {
        ids += 1;
        ids.to_string()
    };
    let mut calls = api.api().calls().len();
    // Sends one dispatch and returns the body of the one REST call it caused.
    macro_rules! exchange {
        ($name:expr, $data:expr) => {{
            gateway.dispatch($name, $data).await;
            calls += 1;
            let all = api.api().wait_for_calls(calls).await;
            let call = all.last().unwrap().clone();
            (call.request.path.clone(), call.request.json())
        }};
    }
    let message = |id: String, user: &str, text: &str| {
        json!({"id": id, "channel_id": "100", "guild_id": "1",
               "author": {"id": user, "username": user}, "content": text})
    };
    let press = |id: String, user: &str, custom_id: &str| {
        json!({"id": id, "type": 3, "token": format!("tok-{user}"), "channel_id": "100",
               "guild_id": "1", "application_id": "1100000000000000001",
               "member": {"user": {"id": user}},
               "data": {"custom_id": custom_id, "component_type": 2}})
    };

    let (_, asked) = exchange!("MESSAGE_CREATE", message(next_id(), "7001", "book"));
    assert_eq!(asked["content"], "How many people?");
    let two = custom_id(&asked, "2");
    // Bob starts his own booking in the same channel.
    let (_, bob_asked) = exchange!("MESSAGE_CREATE", message(next_id(), "7002", "Book"));
    assert_eq!(bob_asked["content"], "How many people?");

    let (path, asked) = exchange!("INTERACTION_CREATE", press(next_id(), "7001", &two));
    assert!(
        path.ends_with("/callback"),
        "a press is answered through its interaction: {path}"
    );
    assert_eq!(asked["data"]["content"], "A table for 2: what time?");
    let seven = custom_id(&asked["data"], "7 pm");

    // Bob's typed answer is his, not Alice's.
    let (_, bob_asked) = exchange!("MESSAGE_CREATE", message(next_id(), "7002", "5"));
    assert_eq!(bob_asked["content"], "A table for 5: what time?");

    let (_, asked) = exchange!("INTERACTION_CREATE", press(next_id(), "7001", &seven));
    assert_eq!(
        asked["data"]["content"],
        "2 people at 19:00. Shall I book it?"
    );
    let yes = custom_id(&asked["data"], "yes");
    let (_, done) = exchange!("INTERACTION_CREATE", press(next_id(), "7001", &yes));
    assert_eq!(
        done["data"]["content"],
        "Booked: 2 people at 19:00. See you!"
    );

    bot.idle().await;
    assert!(bot.dead_letters(10).await.unwrap().is_empty());
    bot.request_shutdown();
    server.await.unwrap().unwrap();
}
