//! Where echo-bot registers `/echo` on Discord, from the variables as the adapter reads them: in
//! the dev guild when one is named and the application id is known, globally otherwise, and a
//! dev guild without an application id does not stop the bot from starting.

mod support;

use bot_core::testing::fake_api::FakeApi;
use bot_discord::testing::FakeGateway;
use support::{Bot, answer, free_port};

const APPLICATION: &str = "1100000000000000001";
const TOKEN: &str = "discord-token";

/// Runs echo-bot with Discord's `vars` until it is ready; the registrations it made by then (and
/// the first one, waited for, when `expected` names it), as `METHOD path`.
async fn registrations(vars: &[(&str, &str)], expected: Option<&str>) -> Vec<String> {
    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    let gateways = [(TOKEN, gateway.url())];
    let api = FakeApi::start(move |request| answer(request, &gateways))
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let url = api.url();
    let mut all = vec![
        ("BOT_ADDR", addr.as_str()),
        ("DISCORD_API_BASE", url.as_str()),
        ("DISCORD_TOKEN", TOKEN),
    ];
    all.extend_from_slice(vars);
    let mut bot = Bot::start(&all);
    bot.wait_ready(&reqwest::Client::new(), &addr).await;
    let registered = |api: &FakeApi| -> Vec<String> {
        (api.calls().iter())
            .filter(|c| c.request.path.ends_with("/commands"))
            .map(|c| format!("{} {}", c.request.method, c.request.path))
            .collect()
    };
    match expected {
        Some(expected) => {
            let found = |api: &FakeApi| {
                let calls = registered(api);
                calls.iter().any(|c| c == expected).then_some(calls)
            };
            api.wait_until(expected, found).await
        }
        None => registered(&api),
    }
}

#[tokio::test]
async fn echo_is_registered_where_the_adapter_can_register_it() {
    let global = format!("PUT /applications/{APPLICATION}/commands");
    let in_guild = format!("PUT /applications/{APPLICATION}/guilds/77/commands");

    let named = [
        ("DISCORD_APPLICATION_ID", APPLICATION),
        ("DISCORD_DEV_GUILD_ID", "77"),
    ];
    assert_eq!(registrations(&named, Some(&in_guild)).await, [in_guild]);

    // A blank dev guild is no dev guild, for echo-bot as for the adapter: registered globally.
    let blank = [
        ("DISCORD_APPLICATION_ID", APPLICATION),
        ("DISCORD_DEV_GUILD_ID", " \n"),
    ];
    assert_eq!(registrations(&blank, Some(&global)).await, [global]);

    // Without an application id nothing can be registered, and the bot still starts (guild
    // commands without an id would be a configuration error).
    let without_id = [("DISCORD_DEV_GUILD_ID", "77")];
    assert!(registrations(&without_id, None).await.is_empty());
}
