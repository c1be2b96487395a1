//! `TestBot` playing Discord refuses what the Discord client refuses, with the client's error.

use std::sync::Arc;

use bot_core::outbound::{Button, Target};
use bot_core::testing::{TestBot, text_on};
use bot_core::{Context, ErrorChain, Event, Outbound, OutgoingMessage, Platform};
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
    // What the real client says, against the fake Discord API: refused before any call.
    let api = FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1)
        .await
        .unwrap();
    let http = DiscordHttp::builder(TOKEN)
        .api_base(api.url())
        .build()
        .unwrap();
    let client = DiscordClient::new(http, None, Arc::default());
    let refused = (client.send(&Target::conversation("100"), vec![buttons(26)]))
        .await
        .unwrap_err();
    assert!(api.api().calls().is_empty());

    let bot = TestBot::builder()
        .platform_rules(Platform::DISCORD, bot_discord::client::validate)
        .handler(|cx: Context, event: Event| async move {
            let count = event.text_content().unwrap_or("0").parse().unwrap_or(0);
            cx.reply(buttons(count)).await
        })
        .build()
        .unwrap();
    bot.send(text_on(Platform::DISCORD, "100", "26"))
        .await
        .unwrap();
    bot.idle().await;
    let dead = bot.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, ErrorChain(&refused).to_string());
    assert!(dead[0].error.contains("25"), "{}", dead[0].error);
    assert_eq!(dead[0].attempts, 1, "a platform's refusal is not retried");
    assert!(bot.sent().is_empty());
    // Twenty-five (five rows of five) is Discord's limit, and passes.
    bot.send(text_on(Platform::DISCORD, "100", "25"))
        .await
        .unwrap();
    bot.idle().await;
    assert_eq!(bot.sent().len(), 1);
    bot.shutdown().await;
}
