//! `TestBot` playing Discord refuses what the Discord client refuses, with the client's error.

use std::sync::Arc;

use bot_core::Platform;
use bot_core::outbound::{Button, OutgoingMessage};
use bot_core::testing::assert_rules_refuse_as_the_client;
use bot_discord::testing::FakeDiscordApi;
use bot_discord::{ConfigureApi as _, DiscordClient, DiscordHttp};

const TOKEN: &str = "rules-token";

fn buttons(count: usize) -> OutgoingMessage {
    (0..count).fold(OutgoingMessage::text("Pick a time"), |m, i| {
        m.button(Button::postback(format!("slot {i}"), format!("t{i}")))
    })
}

#[tokio::test]
async fn a_discord_test_bot_refuses_twenty_six_buttons_with_the_discord_clients_error() {
    // The real client on the fake Discord API: it refuses twenty-six before any call;
    // twenty-five (five rows of five) is the limit.
    let api = FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1)
        .await
        .unwrap();
    let http = DiscordHttp::builder(TOKEN)
        .api_base(api.url())
        .build()
        .unwrap();
    let client = DiscordClient::new(http, None, Arc::default());
    let refused = assert_rules_refuse_as_the_client(
        Platform::DISCORD,
        bot_discord::client::validate,
        &client,
        "100",
        buttons(26),
        buttons(25),
    )
    .await;
    assert!(refused.to_string().contains("25"), "{refused}");
    assert!(api.api().calls().is_empty());
}
