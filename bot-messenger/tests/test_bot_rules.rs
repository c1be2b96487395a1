//! `TestBot` playing Messenger refuses what the Messenger client refuses, with the client's
//! error.

use bot_core::outbound::{Button, Target};
use bot_core::testing::{TestBot, text_on};
use bot_core::{Context, ErrorChain, Event, Outbound, OutgoingMessage, Platform};
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
    // What the real client says, against the fake Graph API: refused before any call.
    let fake = FakeMessenger::start(TOKEN).await.unwrap();
    let client = MessengerClient::builder(TOKEN)
        .api_base(fake.url())
        .build()
        .unwrap();
    let refused = (client.send(&Target::conversation("24386871164263049"), vec![buttons(4)]))
        .await
        .unwrap_err();
    assert!(fake.api().calls().is_empty());

    let bot = TestBot::builder()
        .platform_rules(Platform::MESSENGER, bot_messenger::client::validate)
        .handler(|cx: Context, event: Event| async move {
            let count = event.text_content().unwrap_or("0").parse().unwrap_or(0);
            cx.reply(buttons(count)).await
        })
        .build()
        .unwrap();
    bot.send(text_on(Platform::MESSENGER, "24386871164263049", "4"))
        .await
        .unwrap();
    bot.idle().await;
    let dead = bot.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, ErrorChain(&refused).to_string());
    assert!(dead[0].error.contains("3"), "{}", dead[0].error);
    assert_eq!(dead[0].attempts, 1, "a platform's refusal is not retried");
    assert!(bot.sent().is_empty());
    // Three is Messenger's limit, and passes.
    bot.send(text_on(Platform::MESSENGER, "24386871164263049", "3"))
        .await
        .unwrap();
    bot.idle().await;
    assert_eq!(bot.sent().len(), 1);
    bot.shutdown().await;
}
