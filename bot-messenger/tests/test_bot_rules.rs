//! `TestBot` playing Messenger refuses what the Messenger client refuses, with the client's
//! error.

use bot_core::Platform;
use bot_core::outbound::{Button, OutgoingMessage};
use bot_core::testing::assert_rules_refuse_as_the_client;
use bot_messenger::testing::FakeMessenger;
use bot_messenger::{ConfigureApi as _, MessengerClient};

const TOKEN: &str = "rules-token";

fn buttons(count: usize) -> OutgoingMessage {
    (0..count).fold(OutgoingMessage::text("Pick a time"), |m, i| {
        m.button(Button::postback(format!("{}:00", 17 + i), format!("t{i}")))
    })
}

#[tokio::test]
async fn a_messenger_test_bot_refuses_four_buttons_with_the_messenger_clients_error() {
    // The real client on the fake Graph API: it refuses four before any call; three is the
    // limit.
    let fake = FakeMessenger::start(TOKEN).await.unwrap();
    let client = MessengerClient::builder(TOKEN)
        .api_base(fake.url())
        .build()
        .unwrap();
    let refused = assert_rules_refuse_as_the_client(
        Platform::MESSENGER,
        bot_messenger::client::validate,
        &client,
        "24386871164263049",
        buttons(4),
        buttons(3),
    )
    .await;
    assert!(refused.to_string().contains('3'), "{refused}");
    assert!(fake.api().calls().is_empty());
}
