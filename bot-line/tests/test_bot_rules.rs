//! `TestBot` playing LINE refuses what the LINE client refuses, with the client's error.

use bot_core::Platform;
use bot_core::api::ConfigureApi as _;
use bot_core::outbound::{Button, OutgoingMessage};
use bot_core::testing::assert_rules_refuse_as_the_client;
use bot_line::LineClient;
use bot_line::testing::FakeLine;

const TOKEN: &str = "rules-token";

fn buttons(count: usize) -> OutgoingMessage {
    (0..count).fold(OutgoingMessage::text("Pick a time"), |m, i| {
        m.button(Button::postback(format!("{}:00", 17 + i), format!("t{i}")))
    })
}

#[tokio::test]
async fn a_line_test_bot_refuses_five_buttons_with_the_line_clients_error() {
    // The real client on the fake LINE API: it refuses five before any call; four is the limit.
    let fake = FakeLine::start(TOKEN).await.unwrap();
    let client = LineClient::builder(TOKEN)
        .api_base(fake.url())
        .build()
        .unwrap();
    let refused = assert_rules_refuse_as_the_client(
        Platform::LINE,
        bot_line::client::validate,
        &client,
        "U1",
        buttons(5),
        buttons(4),
    )
    .await;
    assert!(refused.to_string().contains('4'), "{refused}");
    assert!(fake.api().calls().is_empty());
}
