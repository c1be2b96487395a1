//! `TestBot` playing LINE refuses what the LINE client refuses, with the client's error.

use bot_core::api::ConfigureApi as _;
use bot_core::outbound::{Button, Target};
use bot_core::testing::{TestBot, text_on};
use bot_core::{Context, ErrorChain, Event, Outbound, OutgoingMessage, Platform};
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
    // What the real client says, against the fake LINE API: refused before any call.
    let fake = FakeLine::start(TOKEN).await.unwrap();
    let client = LineClient::builder(TOKEN)
        .api_base(fake.url())
        .build()
        .unwrap();
    let refused = (client.send(&Target::conversation("U1"), vec![buttons(5)]))
        .await
        .unwrap_err();
    assert!(fake.api().calls().is_empty());

    let bot = TestBot::builder()
        .platform_rules(Platform::LINE, bot_line::client::validate)
        .handler(|cx: Context, event: Event| async move {
            let count = event.text_content().unwrap_or("0").parse().unwrap_or(0);
            cx.reply(buttons(count)).await
        })
        .build()
        .unwrap();
    bot.send(text_on(Platform::LINE, "U1", "5")).await.unwrap();
    bot.idle().await;
    let dead = bot.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, ErrorChain(&refused).to_string());
    assert!(dead[0].error.contains("4"), "{}", dead[0].error);
    assert_eq!(dead[0].attempts, 1, "a platform's refusal is not retried");
    assert!(bot.sent().is_empty());
    // Four is LINE's limit, and passes.
    bot.send(text_on(Platform::LINE, "U1", "4")).await.unwrap();
    bot.idle().await;
    assert_eq!(bot.sent().len(), 1);
    bot.shutdown().await;
}
