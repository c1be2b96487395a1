//! The bot end to end, offline: a fake gateway and a fake REST API in, signed interactions over
//! HTTP.

use bot_core::Bot;
use bot_discord::gateway::ShardRange;
use bot_discord::interactions::PublicKey;
use bot_discord::testing::{
    APPLICATION_ID, FakeDiscordApi, FakeGateway, InteractionSigner, WAIT, slash_command,
};
use bot_discord::{ConfigureApi as _, Discord};
use serde_json::{Value, json};

const TOKEN: &str = "test-bot-token";

type Server = tokio::task::JoinHandle<Result<bot_core::ShutdownReport, bot_core::Error>>;

/// The bot on the fakes, served on 127.0.0.1; its interactions URL.
async fn serve(discord: Discord) -> anyhow::Result<(Bot, String, Server)> {
    let bot = {{crate_name}}::bot(discord)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/discord/interactions", listener.local_addr()?);
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    Ok((bot, url, server))
}

#[tokio::test]
async fn a_gateway_message_is_said_back_over_rest() -> anyhow::Result<()> {
    let gateway = FakeGateway::start(TOKEN).await?;
    let api = FakeDiscordApi::start(TOKEN, &gateway.url(), 1, 1).await?;
    let discord = Discord::builder(TOKEN)
        .api_base(api.url())
        .shards(ShardRange::Count(1))
        .build()?;
    let (bot, _, server) = serve(discord).await?;

    gateway.wait_for_readies(1).await;
    let mut sent = api.message_feed(8);
    let author = json!({"id": "7001", "username": "someone"});
    gateway
        .dispatch(
            "MESSAGE_CREATE",
            json!({"id": "1180000000000000001", "channel_id": "100", "guild_id": "1",
                "author": author, "content": "hello"}),
        )
        .await;
    let message = tokio::time::timeout(WAIT, sent.recv())
        .await?
        .expect("the echo is sent");
    assert_eq!(
        (message.channel.as_str(), message.content.as_str()),
        ("100", "hello")
    );
    assert_eq!(api.messages_in("100"), ["hello"]);

    bot.request_shutdown();
    server.await??;
    Ok(())
}

#[tokio::test]
async fn a_slash_command_over_http_is_answered_in_the_response() -> anyhow::Result<()> {
    let signer = InteractionSigner::default();
    let api = FakeDiscordApi::start(TOKEN, "ws://127.0.0.1:9", 1, 1).await?;
    let discord = Discord::builder(TOKEN)
        .api_base(api.url())
        .application_id(APPLICATION_ID)
        .public_key(PublicKey::from_hex(&signer.public_key_hex())?)
        .gateway(false)
        .build()?;
    let (bot, url, server) = serve(discord).await?;

    let options = json!([{"name": "text", "type": 3, "value": "hi there"}]);
    let response = signer
        .post(&url, &slash_command("echo", options, "c1", "u1"))
        .await?;
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_str(&response.text().await?)?;
    assert_eq!(body, json!({"type": 4, "data": {"content": "hi there"}}));

    bot.request_shutdown();
    server.await??;
    Ok(())
}
