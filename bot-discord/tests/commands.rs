//! Setup calls against the fake API: global and guild command registration, listing, deletion.

use std::time::Duration;

use bot_core::RetryPolicy;
use bot_discord::ConfigureApi as _;
use bot_discord::http::{CommandOptionSpec, CommandSpec, ErrorBody};
use bot_discord::testing::{APPLICATION_ID, FakeDiscordApi};
use bot_discord::{DiscordHttp, ErrorKind};
use http::Method;
use serde_json::json;

const TOKEN: &str = "commands-token";
const GUILD: &str = "900000000000000001";

async fn setup() -> (FakeDiscordApi, DiscordHttp) {
    let api = FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1)
        .await
        .unwrap();
    let http = DiscordHttp::builder(TOKEN)
        .api_base(api.url())
        .retry(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            multiplier: 1.0,
            jitter: 0.0,
        })
        .build()
        .unwrap();
    (api, http)
}

fn weather() -> CommandSpec {
    CommandSpec::slash("weather", "Today's weather").option(
        CommandOptionSpec::new(CommandOptionSpec::STRING, "city", "Which city")
            .required()
            .choice("Paris", "paris"),
    )
}

#[tokio::test]
async fn guild_commands_are_registered_listed_and_deleted_in_their_guild_only() {
    let (api, http) = setup().await;
    let registered = http
        .register_guild_commands(
            APPLICATION_ID,
            GUILD,
            &[weather(), CommandSpec::slash("ping", "Pong")],
        )
        .await
        .unwrap();
    assert_eq!(
        registered
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["weather", "ping"]
    );
    assert!(
        registered
            .iter()
            .all(|c| c.guild_id.as_deref() == Some(GUILD))
    );
    assert_eq!(
        registered[0].options[0].choices,
        [json!({"name": "Paris", "value": "paris"})]
    );
    let put = &api.api().calls_to(&format!(
        "/applications/{APPLICATION_ID}/guilds/{GUILD}/commands"
    ))[0];
    assert_eq!(put.request.method, Method::PUT);
    assert_eq!(
        put.request.header("authorization"),
        Some(format!("Bot {TOKEN}").as_str())
    );
    assert_eq!(put.request.json()[0]["options"][0]["required"], true);

    assert_eq!(
        http.guild_commands(APPLICATION_ID, GUILD).await.unwrap(),
        registered
    );
    assert!(
        http.global_commands(APPLICATION_ID)
            .await
            .unwrap()
            .is_empty(),
        "a guild's commands are not global"
    );

    // Registering again overwrites: the same name keeps its id, a command left out is gone.
    let again = http
        .register_guild_commands(APPLICATION_ID, GUILD, &[weather()])
        .await
        .unwrap();
    assert_eq!(
        (again.len(), again[0].id.as_str()),
        (1, registered[0].id.as_str())
    );
    assert_eq!(api.commands(Some(GUILD)).len(), 1);

    http.delete_guild_command(APPLICATION_ID, GUILD, &again[0].id)
        .await
        .unwrap();
    assert!(
        http.guild_commands(APPLICATION_ID, GUILD)
            .await
            .unwrap()
            .is_empty()
    );
    let error = http
        .delete_guild_command(APPLICATION_ID, GUILD, &again[0].id)
        .await
        .unwrap_err();
    assert_eq!((error.kind(), error.code()), (ErrorKind::Api, Some(10063)));
    assert_eq!(error.status().map(|s| s.as_u16()), Some(404));
    assert_eq!(
        error
            .details::<ErrorBody>()
            .and_then(|b| b.message.as_deref()),
        Some("Unknown application command")
    );
    assert_eq!(error.attempts(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn global_commands_take_typed_specs_or_their_json() {
    let (api, http) = setup().await;
    let typed = http
        .register_commands(APPLICATION_ID, &[weather()])
        .await
        .unwrap();
    assert_eq!(
        (typed[0].name.as_str(), typed[0].guild_id.as_deref()),
        ("weather", None)
    );
    let raw = http
        .register_commands(
            APPLICATION_ID,
            &json!([{"name": "echo", "type": 1, "description": "Says it back"}]),
        )
        .await
        .unwrap();
    assert_eq!(raw[0].name, "echo");
    assert_eq!(http.global_commands(APPLICATION_ID).await.unwrap(), raw);
    assert!(api.commands(Some(GUILD)).is_empty());

    let error = http
        .register_commands(APPLICATION_ID, &json!({"not": "a list"}))
        .await
        .unwrap_err();
    assert_eq!((error.kind(), error.code()), (ErrorKind::Api, Some(50035)));
}
